"""Scale-out on CPU: `accelerate launch --num_processes 2 -m lm_eval` gives one process's scores, with
tarot-hf and a checkpoint, and with the exported model under the stock `--model hf` (real subprocesses).

On CPU, accelerate's data-parallel launch is `ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu ...`
(torchrun processes, gloo backend); `--cpu` alone starts a single process unless it is given an MPI
hostfile. The scores are asserted first; whether lm-eval really split the documents between the two
processes is checked after, and reported as an expected failure where lm-eval 0.4.13 does not split.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
from conftest import SHARED_DATA, run_console, tiny_model

from tarot_eval.cli import main
from tarot_eval.edit import checkpoint
from tarot_eval.edit.head_edit import HeadEdit

pytestmark = pytest.mark.slow

TASK = "tarot_navigate"
LIMIT = "16"
NOT_SPLIT = (
    "lm-eval 0.4.13's HFLM takes its rank and world size from accelerate only when "
    "torch.cuda.device_count() > 1, so on CPU each process is rank 0 of 1 and scores every document"
)


def _lm_eval(model: str, model_args: str) -> list[str]:
    return ["lm_eval", "--model", model, "--model_args", model_args, "--tasks", TASK, "--limit", LIMIT,
            "--device", "cpu", "--batch_size", "4", "--log_samples"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _two_processes(command: list[str], output_path: Path):
    """`command` (an lm_eval call) under accelerate's CPU data-parallel launcher, 2 processes."""
    launch = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
              "-m", *command]
    return run_console(launch, output_path, env={"ACCELERATE_USE_CPU": "1", "TAROT_EVAL_NO_DEFAULT_TASKS": "1"})


def _per_doc(output_path: Path) -> dict[int, tuple[float, list[float]]]:
    """doc_id -> (acc, log-likelihood of each choice)."""
    (samples,) = output_path.rglob(f"samples_{TASK}_*.jsonl")
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    return {row["doc_id"]: (row["acc"], [float(resp[0][0]) for resp in row["resps"]]) for row in rows}


def _assert_same_scores(results, output_path: Path, baseline) -> None:
    assert results["results"][TASK]["acc,none"] == baseline["acc"]
    ours, theirs = _per_doc(output_path), baseline["per_doc"]
    assert sorted(ours) == sorted(theirs) == list(range(int(LIMIT)))  # every document once
    for doc_id, (acc, logliks) in theirs.items():
        assert ours[doc_id][0] == acc
        assert ours[doc_id][1] == pytest.approx(logliks, rel=1e-4, abs=1e-4)  # other batches, other padding


def _check_split(proc) -> None:
    if f"Building contexts for {TASK} on rank 1" not in proc.stderr:
        pytest.xfail(NOT_SPLIT)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, tiny_tokenizer):
    """A tiny Llama, a rotation checkpoint for it, and one process's tarot-hf scores with it (in this process)."""
    data = Path(os.environ.get("TAROT_DATA_DIR") or SHARED_DATA)
    if not data.is_dir():
        pytest.skip(f"real data not found at {data}: set TAROT_DATA_DIR to a copy of shared/data")
    root = tmp_path_factory.mktemp("scaleout")
    model = tiny_model("llama")
    model.save_pretrained(root / "model")
    tiny_tokenizer.save_pretrained(root / "model")
    edit = HeadEdit.identity(model, "rotation", (0, 1, 2))
    edit.params = torch.linspace(-0.7, 0.7, edit.params.numel()).view_as(edit.params)
    ckpt = checkpoint.save(root / "ckpt", edit, model, provenance={"task": TASK})
    model_args = f"pretrained={root / 'model'},rotations={ckpt}"
    results = _one_process(model_args)
    rows = results["samples"][TASK]
    return {"root": root, "ckpt": ckpt, "model_args": model_args, "acc": results["results"][TASK]["acc,none"],
            "per_doc": {row["doc_id"]: (row["acc"], [float(resp[0][0]) for resp in row["resps"]]) for row in rows}}


def _one_process(model_args: str) -> dict:
    """lm-eval's scores in this process (what `lm_eval` without a launcher computes), samples included."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    from tarot_eval.harness.autoload import tasks_dir

    manager = TaskManager(include_path=str(tasks_dir()), include_defaults=False)
    return lm_eval.simple_evaluate(model="tarot-hf", model_args=model_args, tasks=[TASK], task_manager=manager,
                                   limit=int(LIMIT), device="cpu", batch_size=4, log_samples=True)


def test_tarot_hf_on_two_processes_scores_like_one(baseline, tmp_path):
    proc, results = _two_processes(_lm_eval("tarot-hf", baseline["model_args"]), tmp_path / "two")
    assert results["config"]["tarot_checkpoint_hash"] == checkpoint.checkpoint_hash(baseline["ckpt"])  # recorded by the
    assert results["config"]["tarot_fold"] is True and results["config"]["tarot_method"] == "rotation"  # stock command
    _assert_same_scores(results, tmp_path / "two", baseline)
    _check_split(proc)


def test_exported_model_under_hf_on_two_processes_scores_like_tarot_hf(baseline, tmp_path):
    merged = tmp_path / "merged"
    assert main(["export", "--rotations", str(baseline["ckpt"]), "--model", str(baseline["root"] / "model"),
                 "--out", str(merged)]) == 0
    proc, results = _two_processes(_lm_eval("hf", f"pretrained={merged}"), tmp_path / "two")
    assert results["config"]["model"] == "hf"
    _assert_same_scores(results, tmp_path / "two", baseline)
    _check_split(proc)
