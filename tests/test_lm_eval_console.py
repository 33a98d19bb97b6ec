"""The stock `lm_eval` console script sees tarot-hf through the startup hook (real subprocesses), and tarot-hf's
embedded default model matches lm-eval's `hf` on the same GGUF file."""

import json
import os
import subprocess
import sys

import pytest
from conftest import evaluate_into, run_console, write_choice_task

ROWS = [{"input": f"Take {i} steps forward and {i % 3} steps back.", "label": i % 2} for i in range(12)]


@pytest.fixture
def task_dir(tmp_path):
    return write_choice_task(tmp_path / "tasks", "probe_steps", ROWS)


def _common(task_dir, model, model_args):
    return ["lm_eval", "--model", model, "--model_args", model_args, "--tasks", "probe_steps",
            "--include_path", str(task_dir), "--device", "cpu", "--batch_size", "4", "--log_samples"]


def _acc(results, task="probe_steps"):
    return results["results"][task]["acc,none"]


def _per_doc(output_path):
    (samples,) = output_path.rglob("samples_*.jsonl")
    return [json.loads(line)["resps"] for line in samples.read_text().splitlines()]


def _hf_reference(output_path, task_dir, task, model_args, batch_size, model="hf"):
    """lm-eval's own `hf` model (or `model`) in this process, saved as `lm_eval --output_path ... --log_samples` saves
    it: the reference the console runs of tarot-hf are held to (one console start and task index fewer per test)."""
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(task_dir), include_defaults=False)
    results_file = evaluate_into(output_path, model, [task], manager, model_args=model_args, device="cpu", batch_size=batch_size)
    return json.loads(results_file.read_text())


def test_tarot_hf_and_hf_in_the_stock_command(tmp_path, task_dir, saved_tiny_llama):
    # the stock command as a user first runs it: lm-eval's whole task index included (the other console runs of the
    # suite set TAROT_EVAL_NO_DEFAULT_TASKS)
    hf = _hf_reference(tmp_path / "hf", task_dir, "probe_steps", f"pretrained={saved_tiny_llama}", 4)
    _, ours = run_console(_common(task_dir, "tarot-hf", f"pretrained={saved_tiny_llama}"), tmp_path / "ours")
    assert _acc(ours) == _acc(hf)
    mine, theirs = _per_doc(tmp_path / "ours"), _per_doc(tmp_path / "hf")  # document by document, per choice
    assert [[greedy for (_, greedy), in doc] for doc in mine] == [[greedy for (_, greedy), in doc] for doc in theirs]
    assert max(abs(float(a) - float(b)) for x, y in zip(mine, theirs) for ((a, _),), ((b, _),) in zip(x, y)) <= 1e-5
    assert ours["config"]["model"] == "tarot-hf" and ours["config"]["tarot_rotations"] is None


def test_no_default_tasks_indexes_the_tarot_tasks_and_the_include_path_only(task_dir, monkeypatch, caplog):
    from lm_eval.tasks import TaskManager

    monkeypatch.setenv("TAROT_EVAL_NO_DEFAULT_TASKS", "1")
    tasks = TaskManager(include_path=str(task_dir)).all_tasks
    assert {"tarot_navigate", "tarot_agnews_fewshot", "probe_steps"} <= set(tasks) and "hellaswag" not in tasks
    assert "TAROT_EVAL_NO_DEFAULT_TASKS is set: lm-eval's own tasks are not indexed" in caplog.text


def test_switch_off_and_passthrough(tmp_path, task_dir, saved_tiny_llama):
    # switched off, a fresh interpreter's lm-eval has no tarot-hf (what `lm_eval --model tarot-hf` looks up, minus
    # the command's own start and task index)...
    lookup = "from lm_eval.api.registry import get_model; get_model('tarot-hf')"
    proc = subprocess.run([sys.executable, "-c", lookup], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TAROT_EVAL_NO_AUTOLOAD": "1"})
    assert proc.returncode != 0 and "Attempted to load model 'tarot-hf'" in proc.stderr
    # ...and the passthrough registers it itself
    args = _common(task_dir, "tarot-hf", f"pretrained={saved_tiny_llama}")
    _, results = run_console(["tarot-eval", "lm-eval", *args[1:]], tmp_path / "pass",
                             env={"TAROT_EVAL_NO_AUTOLOAD": "1", "TAROT_EVAL_NO_DEFAULT_TASKS": "1"})
    assert results["config"]["model"] == "tarot-hf"


def test_an_unknown_model_arg_is_refused_by_name(saved_tiny_llama):
    """What the stock command raises, through lm-eval's own registry lookup and argument-string parser."""
    from lm_eval.api.registry import get_model

    with pytest.raises(ValueError, match="tarot-hf: unknown model_args rotaions; tarot-hf takes "):
        get_model("tarot-hf").create_from_arg_string(f"pretrained={saved_tiny_llama},rotaions=x", {"device": "cpu"})


@pytest.mark.slow
def test_embedded_default_matches_hf_on_the_gguf(tmp_path, data_dir):
    """Real SmolLM2: tarot-hf with no model_args at all (what `lm_eval --model tarot-hf` builds; the stock command
    itself is run by the tests above) == lm-eval's `hf` on the GGUF file."""
    from tarot_eval.models import default_model

    examples = json.loads((data_dir / "bigbench" / "navigate.json").read_text())["examples"][:24]
    rows = [{"input": e["input"], "label": int(e["target_scores"]["True"] == 1)} for e in examples]
    task_dir = write_choice_task(tmp_path / "tasks", "probe_navigate", rows)
    gguf = default_model.gguf_path()
    hf = _hf_reference(tmp_path / "hf", task_dir, "probe_navigate", f"pretrained={gguf.parent},gguf_file={gguf.name}", 8)
    ours = _hf_reference(tmp_path / "ours", task_dir, "probe_navigate", "", 8, model="tarot-hf")
    assert _acc(ours, "probe_navigate") == _acc(hf, "probe_navigate")
    assert ours["config"]["tarot_base_model"]["source"].startswith("SmolLM2-135M-Instruct")
