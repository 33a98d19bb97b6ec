"""The grid engine: `--jobs N` worker processes and `--executor ray` give the cells `--jobs 1` gives, bit for bit;
a worker that dies fails its cell only; cells keep no document text."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from pathlib import Path

import pytest
from support.leaderboard import TASK, tiny_config, tiny_leaderboard_files, write_config

from tarot_eval import cli
from tarot_eval.leaderboard.config import load
from tarot_eval.leaderboard.runner import run_leaderboard

DYING = "lb_dies_in_a_worker"


def run(config_path: Path, out: Path, **options) -> tuple[str, object]:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        summary = run_leaderboard(load(config_path), out, **options)
    return printed.getvalue(), summary


def fingerprint(out: Path) -> dict:
    """sha256 of every saved edit and adapter, every cell's per-document predictions, and its identity."""
    found = {}
    for path in sorted(out.rglob("*.safetensors")):
        found[str(path.relative_to(out))] = hashlib.sha256(path.read_bytes()).hexdigest()
    for path in sorted(out.glob("runs/**/samples_*.jsonl")):
        if "lm_eval_output" not in path.parts:
            found[str(path.parent.relative_to(out))] = [(line["doc_id"], line["filtered_resps"])
                                                        for line in map(json.loads, path.read_text().splitlines())]
    for path in sorted(out.rglob("tarot_cell.json")):
        found[f"identity {path.parent.relative_to(out)}"] = json.loads(path.read_text())["identity"]
    return found


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    root = tmp_path_factory.mktemp("engine")
    model_dir, tasks_dir = tiny_leaderboard_files(root, [TASK])
    config = tiny_config(model_dir, tasks_dir)
    config["tasks"] = {"zero_shot": [TASK]}
    config["methods"] = {**config["methods"], "cal": {"method": "calibrate", "variant": "batch"},
                         "rotation+cal": {"method": "rotation", "optimizer": "random", "calibrate": "cal"},
                         "icl-2": {"method": "icl", "shots": 2}}
    config_path = write_config(root / "leaderboard.yaml", config)
    serial = root / "serial"
    printed, summary = run(config_path, serial, jobs=1, threads=1)
    assert not summary.failed
    return {"root": root, "config_path": config_path, "serial": serial, "tasks_dir": tasks_dir, "model_dir": model_dir}


@pytest.mark.slow
def test_two_worker_processes_give_the_cells_one_process_gives(grid):
    out = grid["root"] / "two"
    printed, summary = run(grid["config_path"], out, jobs=2, threads=1)
    assert not summary.failed and "evaluations: 6 run" in printed
    assert fingerprint(out) == fingerprint(grid["serial"])
    assert (out / "leaderboard.md").read_text() == (grid["serial"] / "leaderboard.md").read_text()


def test_cells_keep_no_document_text_and_record_their_cost(grid):
    questions = [json.loads(line)["question"] for line in (grid["tasks_dir"] / f"{TASK}_test.jsonl").read_text().splitlines()]
    kept = [path for path in grid["serial"].rglob("*") if path.is_file() and "lm_eval_output" not in path.parts]
    assert not [path for path in kept for question in questions if question in path.read_text(errors="replace")]
    record = json.loads((grid["serial"] / "runs" / "tiny" / "base" / TASK / "tarot_cell.json").read_text())
    assert record["cost"]["wall_s"] > 0 and record["cost"]["peak_rss_mb"] > 0 and record["ran_on"]["threads"] == 1
    assert set(record["parts"]) == {"kind", "requests", "model", "settings", "depends"}


@pytest.mark.slow
def test_a_worker_that_dies_fails_its_cell_and_the_others_finish(grid, tmp_path, capsys):
    tasks_dir = tmp_path / "tasks"
    tasks_dir.mkdir()
    for file in grid["tasks_dir"].iterdir():
        (tasks_dir / file.name).write_bytes(file.read_bytes())
    (tasks_dir / "dying.py").write_text(
        "import multiprocessing, os\n\n\ndef doc_to_text(doc):\n"
        "    if multiprocessing.parent_process() is not None:  # a worker, not the planning driver\n"
        "        os._exit(3)\n    return 'Question: ' + doc['question'] + '\\nAnswer:'\n")
    (tasks_dir / f"{DYING}.yaml").write_text(
        f"include: {TASK}.yaml\ntask: {DYING}\ndoc_to_text: !function dying.doc_to_text\n")
    config = tiny_config(grid["model_dir"], tasks_dir)
    config["tasks"] = {"zero_shot": [DYING, TASK]}
    config["methods"] = {"base": None}
    out = tmp_path / "out"
    command = ["leaderboard", "--config", str(write_config(tmp_path / "lb.yaml", config)), "--out", str(out), "--jobs", "2"]
    assert cli.main(command) == 1
    printed = capsys.readouterr().out
    assert f"failed: tiny/base/{DYING}: its worker died (exit code 3)" in printed
    assert (out / "runs" / "tiny" / "base" / TASK / "tarot_cell.json").is_file()
    assert not (out / "runs" / "tiny" / "base" / DYING).exists()  # its partial folder is not trusted as a cell


@pytest.mark.parametrize("jobs, threads, message", [(0, None, "--jobs 0: give 1 or more"),
                                                     (1, 0, "--threads 0: give 1 or more")])
def test_bad_job_counts_are_one_line_errors(grid, tmp_path, capsys, jobs, threads, message):
    command = ["leaderboard", "--config", str(grid["config_path"]), "--out", str(tmp_path / "out"), "--jobs", str(jobs)]
    assert cli.main([*command, *([] if threads is None else ["--threads", str(threads)])]) == 2
    error = capsys.readouterr().err
    assert message in error and len(error.strip().splitlines()) == 1


@pytest.mark.slow
def test_ray_tasks_give_the_cells_one_process_gives(grid, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install tarot-eval[ray])")
    monkeypatch.chdir(tmp_path)  # the driver's working folder; workers compute in folders of their own
    out = grid["root"] / "ray"
    try:
        printed, summary = run(grid["config_path"], out, executor="ray", threads=1)
    finally:
        ray.shutdown()
    assert not summary.failed
    assert fingerprint(out) == fingerprint(grid["serial"])
    assert not list(out.rglob(".landing-*")) and not list(out.rglob("*.partial"))


def test_the_cost_estimate_is_per_task_where_a_task_has_finished_cells(tmp_path):
    from types import SimpleNamespace

    from tarot_eval.leaderboard import schedule
    from tarot_eval.methods import registry

    def record(cell: str, task: str, kind: str, cpu_s: float) -> None:
        folder = tmp_path / "runs" / cell
        folder.mkdir(parents=True)
        cost = {"wall_s": cpu_s, "cpu_s": cpu_s, "peak_rss_mb": 100.0}
        parts = {"kind": kind, "settings": {"task": task}}
        (folder / "tarot_cell.json").write_text(json.dumps({"kind": kind, "cell": cell, "parts": parts, "cost": cost}))

    record("m/base/a", "a", "evaluate", 10.0)
    record("m/cal/seed-0/a", "a", "evaluate", 12.0)
    record("m/base/a_fewshot", "a_fewshot", "evaluate", 300.0)
    record("m/rot/seed-0/a/b", "b", "evaluate", 20.0)  # an interference run counts for the task it scored
    costs = schedule.recorded_costs(tmp_path)

    def step(kind: str, task: str):
        return SimpleNamespace(parts={"kind": kind}, job=SimpleNamespace(task=task))

    assert schedule.typical(costs, step("evaluate", "a_fewshot"), "cpu_s") == 300.0
    assert schedule.typical(costs, step("evaluate", "a"), "cpu_s") == 11.0
    assert schedule.typical(costs, step("evaluate", "b"), "cpu_s") == 20.0
    assert schedule.typical(costs, step("evaluate", "c"), "cpu_s") == 16.0  # no cell of c yet: the kind's median
    assert schedule.typical(costs, step("optimize", "a"), "cpu_s") == registry.guessed_cpu_s("optimize")
    todo = [step("evaluate", "a_fewshot")] * 2 + [step("evaluate", "a")] * 2
    assert schedule.estimated_cpu_hours(todo, costs) == pytest.approx((600 + 22) / 3600)
