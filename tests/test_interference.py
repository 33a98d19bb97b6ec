"""Interference: every edit scored on the other tasks, as a task x task matrix of Δ vs base (tiny Llama)."""

from __future__ import annotations

import pytest
from support.leaderboard import leaderboard, results, tiny_leaderboard_files, write_config

from tarot_eval import cli
from tarot_eval.compare import interference, runs
from tarot_eval.compare.errors import CompareError
from tarot_eval.edit import checkpoint
from tarot_eval.leaderboard.config import ConfigError, load
from tarot_eval.leaderboard.plan import plan_model
from tarot_eval.leaderboard.runner import task_manager

TASKS = ["lb_a", "lb_b"]


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    root = tmp_path_factory.mktemp("interference")
    model_dir, tasks_dir = tiny_leaderboard_files(root, TASKS)
    config = {
        "include_path": str(tasks_dir), "interference": True, "seeds": [0, 1],
        "models": {"tiny": {"pretrained": str(model_dir), "layers": "0-1"}},
        "tasks": {"zero_shot": TASKS},
        "optimizer": {"n_train": 4, "n_val": 4, "budget": 3, "ship_unimproved": True},
        "methods": {"base": None, "rotation": {"method": "rotation", "optimizer": "random"}},
        "eval": {"batch_size": 8},
    }
    out = root / "out"
    printed = leaderboard(write_config(root / "lb.yaml", config), out)
    return {"root": root, "out": out, "printed": printed}


def test_each_edit_is_scored_on_the_other_tasks_with_its_own_checkpoint(grid):
    out = grid["out"]
    for seed in (0, 1):
        for source, target in (("lb_a", "lb_b"), ("lb_b", "lb_a")):
            folder = out / "interference" / "tiny" / "rotation" / f"seed-{seed}" / source / target
            config = results(folder)["config"]
            ckpt = out / "checkpoints" / "tiny" / "rotation" / f"seed-{seed}" / source
            assert config["tarot_checkpoint_hash"] == checkpoint.checkpoint_hash(ckpt)
            assert config["tarot_provenance"]["task"] == source
    assert "evaluations: 10 run, 0 skipped" in grid["printed"]  # base 2 + own 2x2 + crossed 2x2
    assert "(edit of lb_a)" in grid["printed"]


def test_the_matrix_pairs_every_cell_with_base_on_its_column_task(grid, capsys):
    found = runs.read_runs(grid["out"], "acc", interference=True)
    (matrix,) = interference.build(found)
    assert matrix.method == "rotation"  # a leaderboard cell: the config's own method name
    assert matrix.edited_on == TASKS and matrix.evaluated_on == TASKS
    assert set(matrix.entries) == {(s, t) for s in TASKS for t in TASKS}
    base = {task: results(grid["out"] / "runs" / "tiny" / "base" / task)["results"][task]["acc,none"] for task in TASKS}
    for (source, target), entry in matrix.entries.items():
        scored = [results(grid["out"] / ("runs" if source == target else f"interference/tiny/rotation/seed-{seed}/{source}")
                          / ("tiny/rotation/seed-%d/%s" % (seed, target) if source == target else target))
                  ["results"][target]["acc,none"] for seed in (0, 1)]
        assert entry.deltas == pytest.approx([value - base[target] for value in scored])
        assert 0 <= entry.better + entry.worse <= 2
    assert cli.main(["compare", str(grid["out"]), "--interference", "--out", str(grid["root"] / "board")]) == 0
    printed = capsys.readouterr().out
    assert "edited on ↓ / evaluated on →" in printed and "of 2)" in printed
    assert (grid["root"] / "board" / "interference.png").stat().st_size > 0


def test_rows_are_the_tasks_edited_on_and_an_edit_never_crossed_gets_no_matrix(grid):
    found = runs.read_runs(grid["out"], "acc", interference=True)
    (matrix,) = interference.build([run for run in found if run.edited_on != "lb_b"])
    assert matrix.edited_on == ["lb_a"] and matrix.evaluated_on == TASKS  # lb_b: a column, not an empty row
    assert set(matrix.entries) == {("lb_a", "lb_a"), ("lb_a", "lb_b")}
    assert [line.split(" | ")[0] for line in interference.markdown([matrix]).splitlines()[2:3]] == ["| lb_a"]
    own_tasks_only = [run for run in found if "interference" not in run.source.relative_to(grid["out"]).parts]
    assert {run.edited_on for run in own_tasks_only} == {None, *TASKS}  # base runs and each edit on its own task
    with pytest.raises(CompareError, match="scored only on the task its edit was optimized on"):
        interference.build(own_tasks_only)


def test_the_ordinary_table_leaves_the_crossed_runs_out(grid, capsys):
    assert cli.main(["compare", str(grid["out"]), "--out", str(grid["root"] / "plain")]) == 0
    assert "left out" not in capsys.readouterr().out
    assert all("interference" not in run.source.relative_to(grid["out"]).parts for run in runs.read_runs(grid["out"], "acc"))



def test_a_method_may_run_on_some_tasks_and_choose_its_own_interference(tmp_path):
    model_dir, tasks_dir = tiny_leaderboard_files(tmp_path, [*TASKS, "lb_c"])
    for task in TASKS:  # planning renders every cell's requests, so the few-shot tasks must exist
        (tasks_dir / f"{task}_shots.yaml").write_text(f"include: {task}.yaml\ntask: {task}_shots\n"
                                                      "num_fewshot: 2\nfewshot_split: train\n")
    config = {
        "include_path": str(tasks_dir), "interference": True,
        "models": {"tiny": {"pretrained": str(model_dir), "layers": "0-1"}},
        "tasks": {"zero_shot": [*TASKS, "lb_c"], "few_shot": {"lb_a_shots": "lb_a", "lb_b_shots": "lb_b"}},
        "optimizer": {"n_train": 4, "n_val": 4, "budget": 3},
        "methods": {"base": None,
                    "rotation": {"method": "rotation", "optimizer": "random", "interference": False},
                    "ablation": {"method": "rotation", "optimizer": "random", "layers": "1", "tasks": ["lb_a"]},
                    "cf": {"method": "calibrate", "variant": "contextual", "tasks": ["lb_b"]}},
    }
    lb = load(write_config(tmp_path / "lb.yaml", config))
    planned = plan_model(lb, lb.models[0], tmp_path / "out", task_manager(lb))

    def cells(method, steps):
        return [step.job.cell for step in steps if step.job.method == method]

    assert cells("ablation", planned.fits) == ["tiny/ablation/lb_a"]
    assert cells("ablation", planned.evaluations) == [
        "tiny/ablation/lb_a", "tiny/ablation/lb_a_shots", "tiny/ablation/lb_b (edit of lb_a)",
        "tiny/ablation/lb_c (edit of lb_a)"]
    assert len(cells("rotation", planned.fits)) == 3 and not any(
        "edit of" in cell for cell in cells("rotation", planned.evaluations))  # its own interference: false
    assert cells("cf", planned.fits) == ["tiny/cf/lb_b", "tiny/cf/lb_b_shots"]
    assert cells("cf", planned.evaluations) == ["tiny/cf/lb_b", "tiny/cf/lb_b_shots"]
    assert len(cells("base", planned.evaluations)) == 5

    for key, value, message in (("tasks", ["lb_z"], "methods.cf.tasks: lb_z not in tasks.zero_shot"),
                                ("interference", True, "methods.cf.interference: only an edit")):
        bad = {**config, "methods": {**config["methods"], "cf": {**config["methods"]["cf"], key: value}}}
        with pytest.raises(ConfigError, match=message):
            load(write_config(tmp_path / "bad.yaml", bad))
