"""The optimizers, the run record (resume, refusal) and the end-to-end run on a tiny model."""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from support.tasks import hflm, load_task, tiny_model, tiny_tokenizer, write_task
from support.toys import OPTIMUM, Toy, ToySpace

from tarot_eval.cli import UsageError
from tarot_eval.edit import checkpoint
from tarot_eval.objective import task_documents
from tarot_eval.optimize import bo, command, grad, random_search
from tarot_eval.optimize.record import TRACE_NAME, RecordError, RunConfigError, RunRecord
from tarot_eval.optimize.run import Problem, Settings, optimize
from tarot_eval.optimize.search_space import SearchSpace, parse_bounds
from tarot_eval.settings import parse_layers

FAST_BO = bo.BOSettings(n_init=4, num_restarts=4, raw_samples=128)






def run_toy(optimizer: str, directory, budget: int, seed: int = 0) -> tuple[RunRecord, Toy]:
    record = RunRecord(directory, {"toy": optimizer, "seed": seed})
    toy = Toy()
    if optimizer == "bo":
        bo.run(toy, ToySpace, record, budget, seed, FAST_BO)
    else:
        random_search.run(toy, ToySpace, record, budget, seed)
    return record, toy


# ------------------------------------------------------------------ search spaces


@pytest.mark.parametrize(
    "spec, method, dim",
    [("full", "rotation", 2 * 4 * 3), ("head", "rotation", 2 * 4), ("layer", "rotation", 2), ("embed:5", "rotation", 5),
     ("full", "rescale", 8), ("head", "rescale", 8), ("layer", "rescale", 2)],
)
def test_search_space_maps_the_cube_into_the_bounds(spec, method, dim):
    shape = (2, 4, 3) if method == "rotation" else (2, 4)
    bounds = parse_bounds("pi/6", method)
    space = SearchSpace.parse(spec, method, shape, bounds, seed=1)
    assert space.dim == dim
    for x in (torch.zeros(dim), torch.ones(dim), torch.rand(dim, generator=torch.Generator().manual_seed(0))):
        params = space.to_params(x.double())
        assert params.shape == shape
        assert bounds[0] - 1e-9 <= params.min() and params.max() <= bounds[1] + 1e-9
    identity = space.identity_point()
    if method == "rotation":
        assert identity is not None and torch.equal(space.to_params(identity), torch.zeros(shape, dtype=torch.float64))
    else:  # rescale identity = all factors 1: the cube's corner x = 1
        assert identity is not None and torch.equal(space.to_params(identity), torch.ones(shape, dtype=torch.float64))


def test_search_space_rejects_bad_specs():
    with pytest.raises(ValueError, match="unknown search space"):
        SearchSpace.parse("diagonal", "rotation", (1, 2, 2), (-1, 1))
    with pytest.raises(ValueError, match="embed:D"):
        SearchSpace.parse("embed", "rotation", (1, 2, 2), (-1, 1))
    with pytest.raises(ValueError, match="multiple of pi"):
        parse_bounds("quarter", "rotation")
    assert parse_bounds("pi/4", "rotation") == pytest.approx((-math.pi / 4, math.pi / 4))


# ------------------------------------------------------------------ optimizers on a toy objective


def test_bo_maximizes_and_beats_random_search(tmp_path):
    budget = 16
    record, _ = run_toy("bo", tmp_path / "bo", budget)
    random_bests = [max(run_toy("random", tmp_path / f"random{s}", budget, seed=s)[0].values()) for s in range(5)]
    bo_best = max(record.values())
    assert bo_best > sum(random_bests) / len(random_bests)
    assert bo_best > max(record.values()[: FAST_BO.n_init])  # BO steps improved on the initial draws
    quality = bo.surrogate_quality(record.trace)
    assert quality["n"] == budget - FAST_BO.n_init
    assert quality["median_noise"] < 0.1  # standardized units: the GP explains the function, not noise
    assert quality["pearson"] > 0.3


def test_held_out_quality_separates_signal_from_noise():
    X = torch.rand(40, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    smooth = -((X - OPTIMUM) ** 2).sum(-1)
    noise = torch.randn(40, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert bo.held_out_quality(X, smooth, n_fit=30)["r2"] > 0.5
    assert bo.held_out_quality(X, noise, n_fit=30)["r2"] < 0.2
    # the paper's depth-12 kernel collapses
    assert bo.held_out_quality(X, smooth, n_fit=30,
                               settings=bo.BOSettings(surrogate="bnn", kernel_depth=12, noise="learned"))["r2"] < 0.2


def test_trust_region_shrinks_after_failures():
    settings = bo.BOSettings(trust_region=True, failure_tolerance=2)
    trace = [{"phase": "init", "train": 1.0}] + [{"phase": "bo", "train": 0.5}] * 4
    assert bo.trust_region_length(trace, settings) == pytest.approx(settings.initial_length / 4)


@pytest.mark.parametrize("optimizer", ["random", "bo"])
def test_resume_neither_repeats_nor_loses_evaluations(tmp_path, optimizer):
    first, toy_first = run_toy(optimizer, tmp_path / "run", budget=5)
    assert toy_first.calls == 5
    resumed, toy_resumed = run_toy(optimizer, tmp_path / "run", budget=8)
    assert toy_resumed.calls == 3
    assert resumed.trace[:5] == first.trace
    uninterrupted, _ = run_toy(optimizer, tmp_path / "straight", budget=8)
    assert [e["train"] for e in resumed.trace] == pytest.approx([e["train"] for e in uninterrupted.trace], abs=1e-6)


def test_a_line_torn_by_a_kill_is_dropped_and_redone(tmp_path):
    record, _ = run_toy("random", tmp_path / "run", budget=4)
    with open(tmp_path / "run" / TRACE_NAME, "a") as handle:
        handle.write('{"index": 4, "phase": "ran')  # killed mid-write
    reopened = RunRecord(tmp_path / "run", {"toy": "random", "seed": 0})
    assert reopened.trace == record.trace
    resumed, toy = run_toy("random", tmp_path / "run", budget=5)
    assert toy.calls == 1 and len(resumed.trace) == 5
    assert all(json.loads(line) for line in (tmp_path / "run" / TRACE_NAME).read_text().splitlines())


def test_a_different_config_in_the_same_directory_is_refused(tmp_path):
    run_toy("random", tmp_path / "run", budget=2, seed=0)
    with pytest.raises(RunConfigError, match="seed: recorded 0, now 1"):
        run_toy("random", tmp_path / "run", budget=2, seed=1)


# ------------------------------------------------------------------ on a tiny model and a tiny lm-eval task


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("task")
    task = load_task(write_task(root))
    tokenizer = tiny_tokenizer()
    model = tiny_model(len(tokenizer), seed=3)
    return task, model, hflm(model, tokenizer)


def settings(**overrides) -> Settings:
    base = dict(task="tiny_mc", layers=(0, 1), space="full", n_train=8, n_val=6, seed=0, bo=FAST_BO,
                grad=grad.GradSettings(lr=0.1))
    return Settings(**{**base, **overrides})


def test_grad_raises_the_training_objective(setup, tmp_path):
    task, model, lm = setup
    result = optimize(model, lm, task, settings(optimizer="grad"), tmp_path / "grad", budget=10)
    trace = RunRecord(tmp_path / "grad", json.loads((tmp_path / "grad" / "run.json").read_text())).values()
    assert trace[-1] > trace[0] + 0.01
    assert trace[0] == pytest.approx(result.scores["base"]["train"]["value"], abs=1e-6)  # grad starts at the identity
    provenance = checkpoint.TarotConfig.from_pretrained(tmp_path / "grad").provenance
    assert any("extension" in note for note in provenance["notes"])


def test_grad_resume_continues_the_same_trajectory(setup, tmp_path):
    task, model, lm = setup

    def trace(directory, budget):
        problem = Problem(model, lm, task, settings(optimizer="grad"))
        record = RunRecord(directory, {"grad": 1})
        with problem.edit.attached(model) as handle:
            train, _ = problem.make_objectives(handle)
            grad.run(train.loss_and_evaluation, problem.space, record, budget, problem.settings.grad)
        return record, train.calls

    straight, _ = trace(tmp_path / "straight", 6)
    trace(tmp_path / "resumed", 3)
    resumed, calls = trace(tmp_path / "resumed", 6)
    assert calls == 3
    assert resumed.values() == pytest.approx(straight.values(), abs=1e-6)


@pytest.mark.parametrize("optimizer, method, space", [("random", "rotation", "head"), ("bo", "rescale", "head"),
                                                      ("grad", "offset", "full")])
def test_checkpoint_reproduces_the_recorded_score(setup, tmp_path, optimizer, method, space):
    task, model, lm = setup
    bounds = parse_bounds("pi/4", method)
    run_settings = settings(optimizer=optimizer, method=method, bounds=bounds, space=space)
    result = optimize(model, lm, task, run_settings, tmp_path / "run", budget=6, select_k=3)
    provenance = checkpoint.TarotConfig.from_pretrained(tmp_path / "run").provenance
    assert provenance["improved"] == result.improved
    assert (provenance["scores"]["chosen"]["validation"]["value"] > provenance["scores"]["base"]["validation"]["value"]
            or not result.improved)
    assert provenance["shipped"] == ("chosen" if result.improved else "identity")
    loaded = checkpoint.load(tmp_path / "run", model)
    problem = Problem(model, lm, task, run_settings)
    with loaded.attached(model) as handle:
        _, validation = problem.make_objectives(handle)
        score = validation.evaluate(loaded.params)
    shipped = result.scores["chosen" if result.improved else "base"]["validation"]["value"]
    assert score.value == pytest.approx(shipped, abs=1e-5)
    again = optimize(model, lm, task, run_settings, tmp_path / "run", budget=6, select_k=3)
    assert again.scores == result.scores  # a finished run re-run evaluates nothing new


def test_an_edit_that_does_not_beat_base_is_not_shipped(setup, tmp_path):
    """Factors within 1e-6 of 1 cannot beat the base model by more than float noise: the identity
    is saved, unless --ship-unimproved asks for the chosen edit."""
    task, model, lm = setup
    inert = settings(optimizer="random", method="rescale", bounds=(1 - 1e-6, 1.0), space="layer")
    result = optimize(model, lm, task, inert, tmp_path / "safe", budget=3, select_k=2)
    assert not result.improved and result.shipped == "identity"
    assert checkpoint.TarotConfig.from_pretrained(tmp_path / "safe").provenance["shipped"] == "identity"
    shipped = checkpoint.load(tmp_path / "safe", model).params
    assert torch.equal(shipped, torch.ones_like(shipped))
    kept = optimize(model, lm, task, replace(inert, ship_unimproved=True), tmp_path / "kept", budget=3, select_k=2)
    assert not kept.improved and kept.shipped == "chosen"
    assert (checkpoint.load(tmp_path / "kept", model).params < 1).any()


def test_command_merges_config_file_and_flags(tmp_path):
    (tmp_path / "setup.yaml").write_text("task: tarot_navigate\nlayers: 0-4\nangle-limit: pi/6\nbudget: 50\n")
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = command.resolve(parser.parse_args(["--config", str(tmp_path / "setup.yaml"), "--budget", "7"]))
    assert (args.task, args.layers, args.angle_limit, args.budget, args.optimizer) == ("tarot_navigate", "0-4", "pi/6", 7, "bo")
    assert parse_layers(args.layers, 30) == (0, 1, 2, 3, 4)
    assert parse_layers(None, 30) == (0, 1, 2, 3, 4)
    (tmp_path / "bad.yaml").write_text("tsak: x\n")
    with pytest.raises(UsageError, match="unknown setting"):
        command.resolve(parser.parse_args(["--config", str(tmp_path / "bad.yaml")]))
    with pytest.raises(ValueError, match="outside"):
        parse_layers("0-40", 30)


# ------------------------------------------------------------------ one writer per run folder, damaged records

OPTIMIZE_IN_A_PROCESS = """
import pathlib, sys, time
sys.path.insert(0, sys.argv[1])
from support.tasks import hflm, load_task, tiny_model, tiny_tokenizer
from tarot_eval.optimize import random_search
from tarot_eval.optimize.run import Settings, optimize

include, out, go = sys.argv[2], pathlib.Path(sys.argv[3]), sys.argv[4:]
if go:  # hold the search (and the lock) until the test creates the file `go`
    search = random_search.run

    def paused(*args, **kwargs):
        (out / "searching").touch()
        while not pathlib.Path(go[0]).exists():
            time.sleep(0.05)
        search(*args, **kwargs)

    random_search.run = paused
tokenizer = tiny_tokenizer()
model = tiny_model(len(tokenizer), seed=3)
settings = Settings(task="tiny_mc", layers=(0, 1), n_train=8, n_val=6, optimizer="random", space="layer")
optimize(model, hflm(model, tokenizer), load_task(include), settings, out, budget=4, select_k=2)
"""


@pytest.mark.slow
def test_a_second_optimize_process_on_one_out_fails_at_once_and_the_first_completes(tmp_path):
    (tmp_path / "task").mkdir()
    include, out, go = write_task(tmp_path / "task"), tmp_path / "run", tmp_path / "go"
    command = [sys.executable, "-c", OPTIMIZE_IN_A_PROCESS, str(Path(__file__).parent), include, str(out)]
    first = subprocess.Popen([*command, str(go)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (out / "searching").exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    second = subprocess.run(command, capture_output=True, text=True, timeout=240)
    go.touch()
    _, first_err = first.communicate(timeout=240)
    assert first.returncode == 0, first_err
    assert second.returncode != 0
    assert second.stderr.strip().splitlines()[-1].startswith(
        f"tarot_eval.run_lock.RunLockedError: {out} is being written by pid {first.pid} on "
    )
    indices = [json.loads(line)["index"] for line in (out / TRACE_NAME).read_text().splitlines()]
    assert indices == [0, 1, 2, 3]
    assert checkpoint.TarotConfig.from_pretrained(out).provenance["evaluations"] == 4


def test_a_damaged_record_is_refused_naming_the_file(tmp_path):
    config = {"toy": "random", "seed": 0}
    run_toy("random", tmp_path / "run", budget=4)
    point = RunRecord(tmp_path / "run", config).point_path(2)
    intact = point.read_bytes()
    point.write_bytes(intact[: len(intact) // 2])  # cut short after its trace line was written
    with pytest.raises(RecordError, match=rf"{point}: the point of evaluation 2 is missing or damaged"):
        RunRecord(tmp_path / "run", config)
    point.unlink()
    with pytest.raises(RecordError, match=rf"{point}: the point of evaluation 2 is missing or damaged"):
        RunRecord(tmp_path / "run", config)
    point.write_bytes(intact)
    trace = tmp_path / "run" / TRACE_NAME
    lines = trace.read_text().splitlines(keepends=True)
    trace.write_text(lines[0] + lines[1][:9] + "\n" + "".join(lines[2:]))  # a bad line before the last
    with pytest.raises(RecordError, match=rf"{trace}:2: not a JSON line"):
        RunRecord(tmp_path / "run", config)
    assert trace.read_text().count("\n") == 4  # nothing cut off
    trace.write_text(lines[0] + lines[0] + "".join(lines[2:]))  # index 0 twice (two writers, before the lock)
    with pytest.raises(RecordError, match=rf"{trace}:2: entry 1 has index 0"):
        RunRecord(tmp_path / "run", config)
    (tmp_path / "run" / "run.json").write_text('{"toy": "ran')
    with pytest.raises(RecordError, match=r"run\.json: not JSON"):
        RunRecord(tmp_path / "run", config)


def test_a_lower_budget_on_a_finished_run_is_refused(setup, tmp_path):
    task, model, lm = setup
    run_settings = settings(optimizer="random", space="layer")
    optimize(model, lm, task, run_settings, tmp_path / "run", budget=4, select_k=2)
    with pytest.raises(RunConfigError, match=r"holds 4 evaluations, more than budget 3 .*a budget of 4 or more"):
        optimize(model, lm, task, run_settings, tmp_path / "run", budget=3, select_k=2)
    provenance = checkpoint.TarotConfig.from_pretrained(tmp_path / "run").provenance
    assert (provenance["budget"], provenance["evaluations"]) == (4, 4)  # the checkpoint is left as it was


def test_fixed_demonstrations_and_a_bf16_search_ship_an_edit_scored_in_fp32(setup, tmp_path, monkeypatch, caplog):
    """Few-shot training prompts share one fixed demonstration block; the bf16 search's choice is
    re-scored on validation in the model's own dtype, and that is what the checkpoint records."""
    task, model, lm = setup
    prompt = task_documents.PromptOptions(num_fewshot=3, demonstrations="fixed")
    run_settings = replace(settings(optimizer="random", space="head"), prompt=prompt, search_dtype="bfloat16")
    result = optimize(model, lm, task, run_settings, tmp_path / "run", budget=4, select_k=2)
    problem = Problem(model, lm, task, run_settings)
    demos = {i for i, _ in problem.docs.demonstrations}
    assert len(demos) == 3 and not demos & {i for i, _ in problem.docs.train + problem.docs.validation}
    train, validation = problem.make_objectives(None)
    assert train.scorer.forward.dtype == torch.bfloat16 and validation.scorer.forward.dtype is None
    with monkeypatch.context() as patch, caplog.at_level("WARNING"):
        patch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
        problem.make_objectives(None)
    assert "--search-dtype bfloat16 on an AVX2 CPU: without AVX512" in caplog.text
    assert len(train.scorer.prefix) > 0  # the demonstrations are one shared prefix
    loaded = checkpoint.load(tmp_path / "run", model)
    with loaded.attached(model) as handle:
        _, validation = problem.make_objectives(handle)
        score = validation.evaluate(loaded.params)
    shipped = result.scores["chosen" if result.improved else "base"]["validation"]["value"]
    assert score.value == pytest.approx(shipped, abs=1e-6)
