"""`tarot-eval leaderboard` on a tiny random Llama and a tiny local task: runs what is missing, only that."""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import shutil
from pathlib import Path

import pytest
from support.leaderboard import (
    FEWSHOT,
    TASK,
    copy_of,
    leaderboard,
    mtimes,
    results,
    tiny_config,
    tiny_leaderboard_files,
    write_config,
)
from support.locks import held_elsewhere

from tarot_eval import cli
from tarot_eval.edit import checkpoint
from tarot_eval.leaderboard.config import ConfigError, load
from tarot_eval.leaderboard.runner import check_tasks, run_leaderboard, task_manager
from tarot_eval.methods.search import run_settings

LEADERBOARD_FILES = ("leaderboard.md", "leaderboard.csv", "leaderboard.png", "leaderboard.html")












def loglikelihoods(folder: Path, task: str) -> list:
    (found,) = folder.glob(f"samples_{task}_*.jsonl")
    return [json.loads(line)["filtered_resps"] for line in found.read_text().splitlines()]









@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("leaderboard")
    model_dir, tasks_dir = tiny_leaderboard_files(root, [TASK])
    (tasks_dir / f"{FEWSHOT}.yaml").write_text(f"include: {TASK}.yaml\ntask: {FEWSHOT}\nnum_fewshot: 2\nfewshot_split: train\n")
    config = tiny_config(model_dir, tasks_dir)
    config_path = write_config(root / "leaderboard.yaml", config)
    out = root / "out"
    printed = leaderboard(config_path, out)
    return {"root": root, "config": config, "config_path": config_path, "out": out, "printed": printed}


def test_first_run_optimizes_evaluates_and_writes_the_leaderboard(setup):
    out, printed = setup["out"], setup["printed"]
    assert "optimizations: 2 run, 0 skipped; evaluations: 6 run, 0 skipped" in printed
    ran = [line.split()[1:3] for line in printed.splitlines() if line.startswith("running ")]
    assert ran == [  # a method at a time, in config order: an interrupted run holds whole methods
        ["optimize", f"tiny/rotation/{TASK}"], ["evaluate", f"tiny/rotation/{TASK}"], ["evaluate", f"tiny/rotation/{FEWSHOT}"],
        ["optimize", f"tiny/rescale/{TASK}"], ["evaluate", f"tiny/rescale/{TASK}"], ["evaluate", f"tiny/rescale/{FEWSHOT}"],
        ["evaluate", f"tiny/base/{TASK}"], ["evaluate", f"tiny/base/{FEWSHOT}"],
    ]
    for method in ("rotation", "rescale"):
        directory = out / "checkpoints" / "tiny" / method / TASK
        provenance = checkpoint.TarotConfig.from_pretrained(directory).provenance
        assert provenance["budget"] == 3 and provenance["evaluations"] == 3 and provenance["n_train"] == 4
        for task in (TASK, FEWSHOT):  # the few-shot task is evaluated with the zero-shot task's checkpoint
            config = results(out / "runs" / "tiny" / method / task)["config"]
            assert config["tarot_checkpoint_hash"] == checkpoint.checkpoint_hash(directory)
            assert config["limit"] == 8
    assert not (out / "checkpoints" / "tiny" / "base").exists()
    base = results(out / "runs" / "tiny" / "base" / TASK)
    assert base["config"]["tarot_rotations"] is None and base["n-shot"][TASK] == 0
    assert results(out / "runs" / "tiny" / "base" / FEWSHOT)["n-shot"][FEWSHOT] == 2
    # the edit really is applied: per-document log-likelihoods differ from the base model's
    rotated = loglikelihoods(out / "runs" / "tiny" / "rotation" / TASK, TASK)
    assert rotated != loglikelihoods(out / "runs" / "tiny" / "base" / TASK, TASK)
    for name in LEADERBOARD_FILES:
        assert (out / name).stat().st_size > 0
    table = (out / "leaderboard.md").read_text()
    for label in ("tiny", "base", "rotation", "rescale", "0-shot", "2-shot", TASK, FEWSHOT):
        assert label in table
    assert table.strip() in printed  # the table is printed too
    csv_rows = (out / "leaderboard.csv").read_text().splitlines()
    assert len(csv_rows) == 1 + 6 * 2  # header + (3 methods x 2 shot counts) x (one task + average)


def test_second_run_does_no_new_work(setup, tmp_path):
    out = copy_of(setup, tmp_path)
    before = mtimes(out)
    printed = leaderboard(setup["config_path"], out)
    assert "optimizations: 0 run, 2 skipped; evaluations: 0 run, 6 skipped" in printed
    lines = printed.splitlines()
    assert not [line for line in lines if line.startswith("run")]
    assert len([line for line in lines if line.startswith("skip ")]) == 8
    assert mtimes(out) == before
    assert (out / "leaderboard.md").read_text() == (setup["out"] / "leaderboard.md").read_text()


def test_deleting_one_results_folder_recomputes_only_that_cell(setup, tmp_path):
    out = copy_of(setup, tmp_path)
    deleted = out / "runs" / "tiny" / "base" / TASK
    shutil.rmtree(deleted)
    before = mtimes(out)
    printed = leaderboard(setup["config_path"], out)
    assert "optimizations: 0 run, 2 skipped; evaluations: 1 run, 5 skipped" in printed
    assert f"run  evaluate tiny/base/{TASK}: not computed yet" in printed
    after = mtimes(out)
    assert {key: after[key] for key in before} == before  # nothing else touched
    # a fresh model gives the base scores the first run gave after evaluating folded edits: they were unfolded
    assert loglikelihoods(deleted, TASK) == loglikelihoods(setup["out"] / "runs" / "tiny" / "base" / TASK, TASK)


def test_folders_the_config_no_longer_names_are_left_out(setup, tmp_path):
    out = copy_of(setup, tmp_path)
    config = json.loads(json.dumps(setup["config"]))
    del config["methods"]["rescale"]
    printed = leaderboard(write_config(tmp_path / "fewer.yaml", config), out)
    assert "optimizations: 0 run, 1 skipped; evaluations: 0 run, 4 skipped" in printed
    table = (out / "leaderboard-fewer.md").read_text()  # each config its own board
    assert "rotation" in table and "rescale" not in table


def test_a_new_checkpoint_makes_its_evaluations_stale(setup, tmp_path):
    out = copy_of(setup, tmp_path)
    config = dict(setup["config"], optimizer={**setup["config"]["optimizer"], "budget": 4})
    printed = leaderboard(write_config(tmp_path / "more.yaml", config), out)
    assert "optimizations: 2 run, 0 skipped; evaluations: 4 run, 2 skipped" in printed
    assert f"run  optimize tiny/rotation/{TASK}: computed from another settings.budget (folder moved aside)" in printed
    assert f"run  evaluate tiny/rotation/{TASK}: computed from another depends.optimize tiny/rotation/{TASK}" in printed
    provenance = checkpoint.TarotConfig.from_pretrained(out / "checkpoints" / "tiny" / "rotation" / TASK).provenance
    assert provenance["evaluations"] == 4
    (old,) = (out / "checkpoints" / "tiny" / "rotation").glob(f"{TASK}.moved-aside-*")
    assert checkpoint.TarotConfig.from_pretrained(old).provenance["evaluations"] == 3
    for method in ("rotation", "rescale"):
        for task in (TASK, FEWSHOT):  # the stale results are moved aside, not deleted
            (kept,) = (out / "runs" / "tiny" / method).glob(f"{task}.moved-aside-*")
            assert results(kept) == results(setup["out"] / "runs" / "tiny" / method / task)
    assert "moved-aside" not in (out / "leaderboard-more.md").read_text()


def test_an_interrupted_cell_is_redone_from_its_partial_folder_and_whole_cells_are_kept(setup, tmp_path):
    """A cell is computed in `<cell>.partial/` and renamed into place whole: a kill leaves the partial folder,
    which the next run replaces (an evaluation) or resumes (an optimization); no finished cell is touched."""
    out = copy_of(setup, tmp_path)
    cell = out / "runs" / "tiny" / "base" / TASK
    partial = cell.with_name(cell.name + ".partial")
    cell.rename(partial)
    (partial / "tarot_cell.json").unlink()
    (torn,) = partial.glob("samples_*.jsonl")
    torn.write_text(torn.read_text()[: torn.stat().st_size // 2])  # killed mid-line
    before = mtimes(out)
    printed = leaderboard(setup["config_path"], out)
    assert "optimizations: 0 run, 2 skipped; evaluations: 1 run, 5 skipped" in printed
    assert f"run  evaluate tiny/base/{TASK}: resume the interrupted cell" in printed
    assert not partial.exists() and len(loglikelihoods(cell, TASK)) == 8
    after = mtimes(out)
    assert {key: after[key] for key in before if key in after} == {key: before[key] for key in before if key in after}
    assert (out / "leaderboard.md").read_text() == (setup["out"] / "leaderboard.md").read_text()


def test_a_changed_task_prompt_reruns_exactly_that_tasks_cells(setup, tmp_path):
    """A cell's identity hashes the requests it rendered: a new description in the few-shot task's YAML
    re-runs its evaluations (lm-eval would now score other prompts) and nothing else."""
    out = copy_of(setup, tmp_path)
    tasks_dir = tmp_path / "tasks"
    shutil.copytree(setup["root"] / "tasks", tasks_dir)
    fewshot = tasks_dir / f"{FEWSHOT}.yaml"
    fewshot.write_text(fewshot.read_text() + "description: 'Answer the question.\\n\\n'\n")
    config = dict(setup["config"], include_path=str(tasks_dir))
    printed = leaderboard(write_config(tmp_path / "changed.yaml", config), out)
    assert "optimizations: 0 run, 2 skipped; evaluations: 3 run, 3 skipped" in printed
    rerun = sorted(line.split()[2] for line in printed.splitlines() if line.startswith("run  "))
    assert rerun == [f"tiny/{method}/{FEWSHOT}:" for method in ("base", "rescale", "rotation")]
    assert f"run  evaluate tiny/base/{FEWSHOT}: computed from another requests (folder moved aside)" in printed


def test_a_second_leaderboard_on_one_out_is_refused_at_once(setup, tmp_path, capsys):
    out = copy_of(setup, tmp_path)
    command = ["leaderboard", "--config", str(setup["config_path"]), "--out", str(out)]
    with held_elsewhere(out) as holder:
        assert cli.main(command) == 2
        captured = capsys.readouterr()
        assert captured.err.startswith(f"tarot-eval leaderboard: error: {out} is being written by pid {holder.pid} on ")
        assert len(captured.err.strip().splitlines()) == 1 and "skip " not in captured.out
        assert cli.main([*command, "--dry-run"]) == 0
        assert "would run: optimizations: 0 run, 2 skipped" in capsys.readouterr().out  # a dry run needs no lock


def test_changed_optimizer_settings_rerun_the_cell_and_keep_the_old_one(setup, tmp_path):
    out = copy_of(setup, tmp_path)
    config = dict(setup["config"], optimizer={**setup["config"]["optimizer"], "n_train": 5})
    printed = leaderboard(write_config(tmp_path / "changed.yaml", config), out)
    assert f"run  optimize tiny/rotation/{TASK}: computed from another requests, settings.n_train (folder moved aside)" in printed
    assert len(list((out / "checkpoints" / "tiny" / "rotation").glob(f"{TASK}.moved-aside-*"))) == 1


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c.update(modles={}), r"top level: unknown key\(s\) modles"),
        (lambda c: c["models"]["tiny"].update(layer="0-1"), r"models\.tiny: unknown key\(s\) layer"),
        (lambda c: c["methods"]["rotation"].update(learning_rate=0.1),
         r"methods\.rotation\.learning_rate: unknown optimizer setting"),
        (lambda c: c["methods"]["rotation"].update(optimizer="adam"), r"methods\.rotation\.optimizer: 'adam' is not one of"),
        (lambda c: c["optimizer"].update(budget="many"), r"optimizer\.budget: expected int"),
        (lambda c: c["methods"].update(base={"optimizer": "bo"}), r"methods\.base: the base method .* takes no settings"),
        (lambda c: c["tasks"].update(few_shot={FEWSHOT: "lb_other"}),
         rf"tasks\.few_shot\.{FEWSHOT}: .*'lb_other', which is not in tasks\.zero_shot"),
        (lambda c: c["eval"].update(fewshot_as_multiturn=True), r"eval\.fewshot_as_multiturn: needs eval\.apply_chat_template"),
        (lambda c: c["tasks"].update(zero_shot=[TASK, "no_such_task"], few_shot=None), r"tasks: unknown task 'no_such_task'"),
        (lambda c: c["models"]["tiny"].update(layers="0-7"),
         r"models\.tiny with methods\.rotation: --layers '0-7': \[2, 3, 4, 5, 6, 7\] outside"),
    ],
)
def test_invalid_configs_are_refused_naming_the_key(setup, tmp_path, capsys, change, message):
    config = json.loads(json.dumps(setup["config"]))
    change(config)
    assert cli.main(["leaderboard", "--config", str(write_config(tmp_path / "bad.yaml", config)),
                     "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("tarot-eval leaderboard: error: ")
    assert re.search(message, error), error
    assert not (tmp_path / "out").exists()  # refused before any work


def test_dry_run_reports_without_working(setup, tmp_path):
    out = tmp_path / "out"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        run_leaderboard(load(setup["config_path"]), out, dry_run=True)
    assert "would run: optimizations: 2 run, 0 skipped; evaluations: 6 run, 0 skipped" in printed.getvalue()
    assert not out.exists()


def test_config_error_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"missing\.yaml: no such config file"):
        load(tmp_path / "missing.yaml")


MINIMAL = "models:\n  tiny: {pretrained: null}\ntasks:\n  zero_shot: [%s]\nmethods:\n  base: null\n%s"


@pytest.mark.parametrize("text, message", [
    (MINIMAL % ("'../../../../victim'", ""),
     r"tasks\.zero_shot\.\.\./\.\./\.\./\.\./victim: name '\.\./\.\./\.\./\.\./victim' must be"),
    (MINIMAL % ("a/b", ""), r"tasks\.zero_shot\.a/b: name 'a/b' must be letters"),
    (MINIMAL % ("tarot_navigate", "  rotation: {method: rotation}\n  rotation: {method: rescale}\n"),
     r"not valid YAML \(key 'rotation' appears twice in one mapping .* line 8"),
    (MINIMAL.replace("  tiny: {pretrained: null}\n", "  tiny: {pretrained: null}\n  tiny: {pretrained: x}\n") % ("t", ""),
     r"not valid YAML \(key 'tiny' appears twice"),
])
def test_names_that_leave_out_and_repeated_keys_are_refused(tmp_path, text, message):
    """A task name becomes a folder under --out, so one with separators or '..' could write outside it; a key
    written twice would silently lose one entry (PyYAML keeps the last)."""
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"bad\.yaml: {message}"):
        load(path)


def test_a_config_that_is_not_utf8_is_one_line(tmp_path, capsys):
    path = tmp_path / "latin1.yaml"
    path.write_bytes((MINIMAL % ("t", "")).encode() + b"# caf\xe9\n")
    assert cli.main(["leaderboard", "--config", str(path), "--out", str(tmp_path / "out"), "--dry-run"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"tarot-eval leaderboard: error: {path}: not UTF-8 text") and len(error.splitlines()) == 1


SHIPPED = {  # config -> (layers in the model, edited layers, angle limit, training documents): the paper's setups
    "leaderboard_smollm2.yaml": (30, tuple(range(5)), math.pi / 4, 20),
    "leaderboard_qwen2_1.5b.yaml": (28, tuple(range(5)), math.pi / 4, 20),
    "leaderboard_phi3_mini.yaml": (32, tuple(range(6)), math.pi / 4, 20),
    "leaderboard_mistral_7b.yaml": (32, tuple(range(16)), math.pi / 6, 10),
    "leaderboard_llama3_8b.yaml": (32, tuple(range(16)), math.pi / 6, 10),
}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_configs_give_the_papers_settings(name):
    num_layers, layers, limit, n_train = SHIPPED[name]
    config = load(Path(__file__).resolve().parents[1] / "configs" / name)
    assert config.zero_shot == ["tarot_agnews", "tarot_navigate", "tarot_color", "tarot_winowhy", "tarot_entailed_polarity"]
    check_tasks(config, task_manager(config))
    if name == "leaderboard_smollm2.yaml":  # CPU: zero-shot, seeds, the baselines that explain a gain, every optimizer
        assert config.few_shot == {} and config.seeds == [0, 1, 2]
        assert [method.name for method in config.methods] == [
            "base", "calibrate-cf", "calibrate-batch", "rotation", "rotation+calibrate", "icl-6", "lora", "rescale",
            "rotation-random", "rotation-grad", "offset"]
        assert config.method("rotation+calibrate").applies == "calibrate-batch"
    else:
        assert config.few_shot == {f"{task}_fewshot": task for task in config.zero_shot}
        assert [method.name for method in config.methods] == ["base", "rotation", "rescale"]
    (model,) = config.models
    for method in [method for method in config.methods if method.kind == "edit"]:
        settings, budget, _ = run_settings(config.method_settings(method), model, "tarot_navigate", num_layers, config.eval)
        assert method.name.startswith(settings.method) and settings.layers == layers and settings.n_train == n_train
        assert settings.bounds == (pytest.approx((-limit, limit)) if settings.method != "rescale" else (0.0, 1.0))
        assert settings.prompt.apply_chat_template and settings.prompt.fewshot_as_multiturn
        if model.pretrained is not None:  # the paper's models: its objective, training set and budget
            assert (settings.objective, settings.balance, settings.optimizer, settings.space, budget) == (
                "answer-token-prob", True, "bo", "full", 124
            )
            assert settings.bo.kernel_depth == 12
