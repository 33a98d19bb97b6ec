"""The leaderboard's baselines and seeds on a tiny Llama: calibrate, icl, lora, rotation on calibrated scores."""

from __future__ import annotations

import json

import pytest
from support.leaderboard import FEWSHOT, TASK, copy_of, leaderboard, mtimes, results, tiny_leaderboard_files, write_config

from tarot_eval.compare import runs
from tarot_eval.edit import checkpoint
from tarot_eval.leaderboard.config import ConfigError, load
from tarot_eval.leaderboard.plan import PlanError
from tarot_eval.leaderboard.runner import run_leaderboard, task_manager
from tarot_eval.objective import calibration as calibrations
from tarot_eval.objective import task_documents

SEEDS = [0, 1]


def grid_config(model_dir, tasks_dir) -> dict:
    return {
        "include_path": str(tasks_dir),
        "models": {"tiny": {"pretrained": str(model_dir), "layers": "0-1"}},
        "tasks": {"zero_shot": [TASK], "few_shot": [FEWSHOT]},
        "seeds": SEEDS,
        "optimizer": {"n_train": 4, "n_val": 4, "budget": 2, "ship_unimproved": True},
        "methods": {
            "base": None,
            "cal-cf": {"method": "calibrate", "variant": "contextual"},
            "cal-batch": {"method": "calibrate", "variant": "batch"},
            "icl-2": {"method": "icl", "shots": 2},
            "lora": {"method": "lora", "budget": 2, "lr": 0.05, "rank": 2},
            "rotation+cal": {"method": "rotation", "optimizer": "random", "calibrate": "cal-batch"},
        },
        "eval": {"batch_size": 8, "limit": 6},
    }


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    root = tmp_path_factory.mktemp("baselines")
    model_dir, tasks_dir = tiny_leaderboard_files(root, [TASK])
    (tasks_dir / f"{FEWSHOT}.yaml").write_text(f"include: {TASK}.yaml\ntask: {FEWSHOT}\nnum_fewshot: 2\nfewshot_split: train\n")
    config_path = write_config(root / "leaderboard.yaml", grid_config(model_dir, tasks_dir))
    out = root / "out"
    return {"root": root, "config_path": config_path, "out": out, "printed": leaderboard(config_path, out)}


def test_each_method_runs_per_seed_where_it_reads_the_seeds_documents(grid):
    runs = grid["out"] / "runs" / "tiny"
    assert sorted(p.name for p in (runs / "base").iterdir()) == [TASK, FEWSHOT]  # base and contextual: no seed
    assert sorted(p.name for p in (runs / "cal-cf").iterdir()) == [TASK, FEWSHOT]
    for method in ("cal-batch", "lora", "rotation+cal"):
        assert sorted(p.name for p in (runs / method).iterdir()) == ["seed-0", "seed-1"]
        assert sorted(p.name for p in (runs / method / "seed-0").iterdir()) == [TASK, FEWSHOT]
    assert sorted(p.name for p in (runs / "icl-2" / "seed-1").iterdir()) == [TASK]  # a few-shot task has its shots
    assert "calibrations: 6 run, 0 skipped; lora trainings: 2 run, 0 skipped" in grid["printed"]


def test_a_method_runs_a_seed_at_a_time(grid):
    ran = [line.removeprefix("running ").split(" (")[0] for line in grid["printed"].splitlines() if line.startswith("running ")]
    assert [line for line in ran if "/lora/" in line] == [
        "train lora tiny/lora/seed-0/lb_toy", "evaluate tiny/lora/seed-0/lb_toy", "evaluate tiny/lora/seed-0/lb_toy_fewshot",
        "train lora tiny/lora/seed-1/lb_toy", "evaluate tiny/lora/seed-1/lb_toy", "evaluate tiny/lora/seed-1/lb_toy_fewshot"]


def test_calibrated_cells_apply_their_seeds_file_and_the_search_reads_it(grid):
    out = grid["out"]
    for seed in SEEDS:
        cal_dir = out / "checkpoints" / "tiny" / "cal-batch" / f"seed-{seed}" / TASK
        fitted = calibrations.load(cal_dir)
        assert fitted.provenance["seed"] == seed
        run = results(out / "runs" / "tiny" / "cal-batch" / f"seed-{seed}" / TASK)["config"]
        assert run["tarot_calibration_hash"] == calibrations.calibration_hash(cal_dir)
        assert run["model_args"]["calibration"] == str(cal_dir.relative_to(out))  # the cell records paths under out relative
        rotated = out / "checkpoints" / "tiny" / "rotation+cal" / f"seed-{seed}" / TASK
        record = json.loads((rotated / "run.json").read_text())  # by content: the out folder may move
        assert record["calibration_hash"] == calibrations.calibration_hash(cal_dir) and record["seed"] == seed
        assert checkpoint.TarotConfig.from_pretrained(rotated).provenance["calibration"] == str(cal_dir)
        evaluated = results(out / "runs" / "tiny" / "rotation+cal" / f"seed-{seed}" / TASK)["config"]
        assert evaluated["tarot_calibration_hash"] == calibrations.calibration_hash(cal_dir)
        assert evaluated["tarot_rotations"] == str(rotated.relative_to(out))
    # the few-shot task gets its own calibration (its prompt has the demonstrations)
    assert calibrations.load(out / "checkpoints" / "tiny" / "cal-cf" / FEWSHOT).task == FEWSHOT


def test_icl_shows_each_document_the_first_training_documents_of_its_seed(grid):
    manager = task_manager(load(grid["config_path"]))
    task = manager.load(TASK)["tasks"][TASK]
    for seed in SEEDS:
        folder = grid["out"] / "runs" / "tiny" / "icl-2" / f"seed-{seed}" / TASK
        chosen = task_documents.choose_docs(task, 4, 4, seed).train[:2]
        assert json.loads((folder / "tarot_demonstrations.json").read_text())["train_docs"] == [i for i, _ in chosen]
        (samples,) = (folder / "lm_eval_output").rglob(f"samples_{TASK}_*.jsonl")  # lm-eval's own, git-ignored
        (kept,) = folder.glob(f"samples_{TASK}_*.jsonl")  # the cell's compact copy: no document text
        assert all("arguments" not in json.loads(line) and "doc" not in json.loads(line)
                   for line in kept.read_text().splitlines())
        for line in samples.read_text().splitlines():
            context = json.loads(line)["arguments"]["gen_args_0"]["arg_0"]
            assert all(f"Question: {doc['question']}" in context for _, doc in chosen)
        assert results(folder)["n-shot"][TASK] == 2


def test_lora_cells_are_scored_through_peft(grid):
    for seed in SEEDS:
        adapter = grid["out"] / "checkpoints" / "tiny" / "lora" / f"seed-{seed}" / TASK
        assert (adapter / "adapter_config.json").is_file()
        assert json.loads((adapter / "result.json").read_text())["settings"]["seed"] == seed
        config = results(grid["out"] / "runs" / "tiny" / "lora" / f"seed-{seed}" / TASK)["config"]
        assert config["model_args"]["peft"] == str(adapter.relative_to(grid["out"]))


def test_the_board_compares_every_baseline_with_base_on_the_same_task(grid):
    rows = {line.split("|")[2].strip(): line for line in (grid["out"] / "leaderboard.md").read_text().splitlines()
            if line.startswith("| tiny ")}
    assert rows["icl-2"].split("|")[3].strip() == "2-shot"  # its own shots, compared with the 0-shot base of its task
    for method in ("cal-cf", "cal-batch", "icl-2", "lora", "rotation+cal"):
        assert "Δ" in rows[method] and "sig +" in rows[method], method


def test_compare_of_the_runs_folder_labels_cells_by_the_leaderboards_own_names(grid, tmp_path, capsys):
    """A cell's record names its model and method, so a peft adapter's run (whose lm-eval config names no model
    of its own) is the config's model and is tested against base like every other row."""
    from tarot_eval import cli

    found = runs.read_runs(grid["out"] / "runs", "acc")
    labels = {run.source.relative_to(grid["out"] / "runs").parts[1]: (run.model, run.method) for run in found}
    assert labels["icl-2"] == ("tiny", "icl-2") and labels["base"] == ("tiny", "base")
    assert labels["lora"] == ("tiny", "lora")
    assert cli.main(["compare", str(grid["out"] / "runs"), "--out", str(tmp_path / "board")]) == 0
    lora_row = next(line for line in capsys.readouterr().out.splitlines() if "| lora " in line)
    assert lora_row.startswith("| tiny") and "(Δ " in lora_row  # tested against base


def test_a_second_run_of_the_grid_does_no_work(grid, tmp_path):
    out = copy_of(grid, tmp_path)
    before = mtimes(out)
    printed = leaderboard(grid["config_path"], out)
    assert ("optimizations: 0 run, 2 skipped; calibrations: 0 run, 6 skipped; lora trainings: 0 run, 2 skipped; "
            "evaluations: 0 run, 18 skipped") in printed
    assert not [line for line in printed.splitlines() if line.startswith("run ")]
    assert mtimes(out) == before


@pytest.mark.parametrize("change, message", [
    ({"seeds": [0, 0]}, "seeds: a seed is listed twice"),
    ({"seeds": "0-2"}, "seeds: expected a non-empty list"),
    ({"optimizer": {"seed": 3}}, "optimizer.seed: set by seeds:"),
    ({"methods": {"rotation+cal": {"method": "rotation", "calibrate": "cal-x"}}}, "is not a calibrate method listed before it"),
    ({"methods": {"cal": {"method": "calibrate", "variant": "platt"}}}, "methods.cal.variant: 'platt' is not one of"),
    ({"methods": {"icl": {"method": "icl", "shots": 0}}}, "methods.icl.shots: expected a number of demonstrations"),
    ({"methods": {"lora": {"method": "lora", "rank": "8"}}}, "methods.lora.rank: expected int"),
    ({"methods": {"lora": {"method": "lora", "rank": -2}}}, "methods.lora: --rank -2: must be at least 1"),
    ({"methods": {"lora": {"method": "lora", "lr": float("nan")}}}, "methods.lora: --lr nan: must be a finite number above 0"),
    ({"methods": {"icl": {"method": "icl", "shots": 9}}}, "methods.icl.shots: 9 demonstrations, but .* the 4 training"),
    ({"methods": {"rot": {"method": "rotation", "calibration": "x"}}}, "methods.rot.calibration: name a calibrate method"),
    ({"methods": {"rot": {"method": "rotation", "layers": "0,0"}}}, "methods.rot.layers: --layers '0,0': layer"),
    ({"methods": {"rot": {"method": "rotation", "layers": "1-0"}}},
     "methods.rot.layers: --layers '1-0': the range 1-0 is reversed"),
    ({"models": {"tiny": {"pretrained": "x", "dtype": "float33"}}}, "models.tiny.dtype: 'float33' is not a torch dtype"),
    ({"models": {"tiny": {"pretrained": "x", "angle_limit": "pi/0"}}}, "models.tiny.angle_limit: angle limit 'pi/0' is not"),
])
def test_bad_baseline_settings_are_named(grid, tmp_path, change, message):
    raw = grid_config(grid["root"] / "tiny-llama", grid["root"] / "tasks")
    raw.update(change)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("+", r"\+")):
        load(write_config(tmp_path / "bad.yaml", raw))


def test_lora_target_modules_the_model_lacks_are_refused_before_any_work(grid, tmp_path):
    raw = grid_config(grid["root"] / "tiny-llama", grid["root"] / "tasks")
    raw["methods"] = {"base": None, "lora": {"method": "lora", "target_modules": "q_proj,nosuch_proj"}}
    out = tmp_path / "out"
    with pytest.raises(PlanError, match=r"methods\.lora\.target_modules: nosuch_proj not a module of models\.tiny \(its "
                                        r"linear layers: .*q_proj"):
        run_leaderboard(load(write_config(tmp_path / "bad.yaml", raw)), out, dry_run=True)
    assert not out.exists()


def test_fixed_demonstrations_the_training_split_cannot_supply_are_refused_before_any_work(grid, tmp_path):
    raw = grid_config(grid["root"] / "tiny-llama", grid["root"] / "tasks")  # tiny tasks: 24 training documents
    raw["optimizer"] = {**raw["optimizer"], "n_train": 10, "n_val": 10}
    raw["methods"] = {"base": None, "rot-mix": {"method": "rotation", "demonstrations": "mix"}}
    out = tmp_path / "out"
    path = write_config(tmp_path / "mix.yaml", raw)
    with pytest.raises(PlanError, match=rf"{path}: methods\.rot-mix on {TASK}: its 'train' split holds 24 documents, "
                                        r"fewer than 10 training \+ 10 validation \+ the 6 fixed demonstrations"):
        run_leaderboard(load(path), out, dry_run=True)
    assert not out.exists()
    raw["optimizer"] = {**raw["optimizer"], "n_val": 8}  # 10 + 8 + 6 = 24: plans
    run_leaderboard(load(write_config(tmp_path / "fits.yaml", raw)), out, dry_run=True)


def test_a_method_may_set_its_own_layers_and_demonstrations(grid, tmp_path):
    from tarot_eval.methods.search import run_settings

    raw = grid_config(grid["root"] / "tiny-llama", grid["root"] / "tasks")
    raw["methods"] = {"base": None, "rot-L1": {"method": "rotation", "layers": "1"},
                      "rot-mix": {"method": "rotation", "demonstrations": "fixed", "num_fewshot": 2},
                      "rot": {"method": "rotation"}}
    config = load(write_config(tmp_path / "axis.yaml", raw))
    (model,) = config.models
    made = {m.name: run_settings(config.method_settings(m, 0), model, TASK, 2, config.eval)[0] for m in config.methods[1:]}
    assert made["rot-L1"].layers == (1,) and made["rot"].layers == (0, 1)  # the model's 0-1 unless a method says
    assert (made["rot-mix"].prompt.demonstrations, made["rot-mix"].prompt.num_fewshot) == ("fixed", 2)


def test_the_beyond_zero_shot_config_adds_shots_interference_and_depth():
    from pathlib import Path

    from tarot_eval.leaderboard.runner import check_tasks

    config = load(Path(__file__).resolve().parents[1] / "configs" / "leaderboard_smollm2_beyond.yaml")
    check_tasks(config, task_manager(config))
    assert config.seeds == [0, 1, 2]
    assert [m.name for m in config.methods if config.interferes(m)] == ["rotation"]  # interference: the zero-shot edit
    for name in ("rotation-L12-16", "rotation-L25-29"):  # the layer ablation on AG News and Entailed Polarity
        assert config.zero_shot_of(config.method(name)) == ["tarot_agnews", "tarot_entailed_polarity"]
    assert config.few_shot == {f"{task}_fewshot": task for task in config.zero_shot}
    assert config.method("rotation-mix").settings["demonstrations"] == "mix"
    assert "tarot_entailed_polarity" not in config.zero_shot_of(config.method("rotation-mix"))  # 40 training documents
    assert [config.method(name).settings["layers"] for name in ("rotation-L12-16", "rotation-L25-29")] == ["12-16", "25-29"]


def test_every_shipped_method_with_fixed_demonstrations_has_training_documents_left_for_them(data_dir):
    """`fixed` / `mix` prompts take their demonstrations from the training split apart from the training and validation
    documents: each such method's tasks must hold n_train + n_val + the shots (else its cells fail at run time)."""
    from pathlib import Path

    from tarot_eval.objective.task_documents import MIX_SHOTS

    checked = 0
    for path in sorted((Path(__file__).resolve().parents[1] / "configs").glob("leaderboard_*.yaml")):
        config = load(path)
        manager = task_manager(config)
        for method in config.methods:
            settings = config.method_settings(method)
            if settings.get("demonstrations") not in ("fixed", "mix"):
                continue
            shots = max(MIX_SHOTS) if settings["demonstrations"] == "mix" else settings["num_fewshot"]
            for name in config.zero_shot_of(method):
                task = manager.load_task_or_group([name])[name]
                assert len(list(task.training_docs())) >= settings["n_train"] + settings["n_val"] + shots, (path.name, name)
                checked += 1
    assert checked >= 4


@pytest.mark.parametrize("name", ["leaderboard_smollm2_beyond.yaml", "leaderboard_smollm2_budget.yaml",
                                  "leaderboard_qwen2.5_0.5b.yaml"])
def test_configs_that_share_methods_with_the_smollm2_grid_copy_their_settings(name):
    """A method both configs name is the same cell (same out folder) only if its settings are the same: checked here."""
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "configs"
    main, other = load(folder / "leaderboard_smollm2.yaml"), load(folder / name)
    assert other.optimizer == main.optimizer and other.eval == main.eval and other.seeds == main.seeds
    shared = [m.name for m in other.methods if m.name in {n.name for n in main.methods}]
    assert len(shared) >= 2
    for method in shared:
        mine, theirs = main.method(method), other.method(method)
        assert (mine.kind, mine.settings, mine.applies) == (theirs.kind, theirs.settings, theirs.applies), method
    if name == "leaderboard_smollm2_budget.yaml":
        longer = other.method("rotation-124").settings
        assert {**longer, "budget": 24} == {**main.method("rotation").settings, "budget": 24} and longer["budget"] == 124
        assert other.models == main.models
