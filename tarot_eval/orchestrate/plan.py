"""The cells of a leaderboard (optimizations and evaluations) and which are already done.

Layout under the output folder:
    checkpoints/<model>/<method>/<task>/   `tarot-eval optimize` output: checkpoint + run record
    runs/<model>/<method>/<task>/          lm-eval `--output_path`: results_*.json + samples_*.jsonl

An optimization is done when its checkpoint was made with the same settings and budget (other
settings, or a record of more evaluations than the budget, are refused, never overwritten). An
evaluation is done when its folder holds one results file made with the same checkpoint (by hash)
and eval settings, and beside it the task's samples file, whole (every line JSON) and covering
every document the results report (lm-eval writes the results first and appends the samples, so
a kill leaves results over a partial file); otherwise the folder is moved aside (`execute`) and
evaluated again. Planning only reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tarot_eval import checkpoint
from tarot_eval.compare import runs
from tarot_eval.compare.errors import CompareError
from tarot_eval.optimize.record import CONFIG_NAME as RUN_CONFIG_NAME, TRACE_NAME, RecordError, read_lines
from tarot_eval.optimize.run import RESULT_NAME
from tarot_eval.optimize.settings import OptimizeSettings, Settings
from tarot_eval.orchestrate.config import EvalSpec, LeaderboardConfig, ModelSpec

CHECKPOINTS = "checkpoints"
RUNS = "runs"


class PlanError(ValueError):
    """The config cannot run against this output folder or these models and tasks."""


@dataclass(frozen=True)
class Cell:
    """One model x method x task of the grid."""

    model: str
    method: str
    task: str

    @property
    def cell(self) -> str:
        return f"{self.model}/{self.method}/{self.task}"


@dataclass(frozen=True)
class Optimization(Cell):
    settings: Settings
    budget: int
    select_k: int
    directory: Path


@dataclass(frozen=True)
class Evaluation(Cell):
    checkpoint: Path | None  # None: the unedited model
    folder: Path


@dataclass(frozen=True)
class Step:
    """One cell and why it runs (None: already done, skipped)."""

    job: Optimization | Evaluation
    reason: str | None


@dataclass(frozen=True)
class ModelPlan:
    spec: ModelSpec
    optimizations: list[Step]
    evaluations: list[Step]

    @property
    def todo(self) -> list[Step]:
        """The cells to run, a method at a time in config order (its optimizations, then its
        evaluations), so an interrupted leaderboard already holds whole methods."""
        methods = list(dict.fromkeys(step.job.method for step in self.evaluations))
        steps = [*self.optimizations, *self.evaluations]
        ordered = sorted(steps, key=lambda step: (methods.index(step.job.method), isinstance(step.job, Evaluation)))
        return [step for step in ordered if step.reason is not None]


def optimizer_settings(values: dict, model: ModelSpec, task: str, num_layers: int, evaluation: EvalSpec):
    """(Settings, budget, select_k) of one cell: the method's optimize settings with the model's, task's and
    evaluation's."""
    options = OptimizeSettings(
        **values,
        task=task,
        layers=model.layers,
        angle_limit=model.angle_limit,
        apply_chat_template=evaluation.apply_chat_template,
        fewshot_as_multiturn=evaluation.fewshot_as_multiturn,
        system_instruction=evaluation.system_instruction,
    )
    return options.run_settings(num_layers), options.budget, options.select_k


def num_layers(model: ModelSpec) -> int:
    """The model's layer count from its config alone (no weights loaded)."""
    from transformers import AutoConfig

    from tarot_eval import default_model

    try:
        name, gguf_file = default_model.resolve(model.pretrained)
        extra = {"gguf_file": gguf_file} if gguf_file else {}
        return AutoConfig.from_pretrained(name, **extra).get_text_config().num_hidden_layers
    except (OSError, default_model.DefaultModelMissing) as error:
        raise PlanError(f"models.{model.name}: cannot read the config of {model.pretrained or 'the embedded model'}: {error}") from None


def optimization_reason(job: Optimization) -> str | None:
    """Why the optimization must run; None when its checkpoint is there for these settings and budget."""
    directory = job.directory
    refuse_cut_back(job)
    if not (directory / checkpoint.CONFIG_NAME).is_file() or not (directory / RESULT_NAME).is_file():
        return "resume the interrupted run" if (directory / RUN_CONFIG_NAME).is_file() else "no checkpoint yet"
    if not (directory / RUN_CONFIG_NAME).is_file():
        raise PlanError(f"{directory}: a checkpoint without the {RUN_CONFIG_NAME} run record; move it away to re-optimize")
    try:
        recorded = json.loads((directory / RUN_CONFIG_NAME).read_text())
    except json.JSONDecodeError as error:
        raise PlanError(f"{directory / RUN_CONFIG_NAME}: not JSON ({error}); the run record is damaged") from None
    wanted = json.loads(json.dumps(job.settings.record_config()))
    differences = [f"{key}: {recorded.get(key)!r} there, {value!r} now" for key, value in wanted.items() if recorded.get(key) != value]
    if differences:
        raise PlanError(
            f"{job.cell}: {directory} was optimized with other settings ({'; '.join(differences)}); "
            "delete that folder to re-optimize, or write to another --out"
        )
    done = checkpoint.read_config(directory).get("provenance", {}).get("budget")
    return None if done == job.budget else f"budget {done} -> {job.budget}"


def refuse_cut_back(job: Optimization) -> None:
    """Refuses a run record of more evaluations than the cell's budget (a run is never cut back)."""
    try:
        count = len(read_lines(job.directory / TRACE_NAME))
    except RecordError as error:
        raise PlanError(f"{job.cell}: {error}") from None
    if count > job.budget:
        raise PlanError(
            f"{job.cell}: {job.directory} holds {count} evaluations, more than budget {job.budget} (a run is never "
            f"cut back); set a budget of {count} or more, or delete that folder to re-optimize"
        )


def eval_record(results: dict) -> dict:
    """What an lm-eval results file says about how it was run, in the terms of `wanted_record`."""
    config = results.get("config", {})
    return {
        "checkpoint": config.get("tarot_checkpoint_hash"),
        "limit": config.get("limit"),
        "apply_chat_template": results.get("chat_template") is not None,
        "fewshot_as_multiturn": results.get("fewshot_as_multiturn"),
        "system_instruction": results.get("system_instruction"),
    }


def wanted_record(spec: EvalSpec, checkpoint_hash: str | None) -> dict:
    return {
        "checkpoint": checkpoint_hash,
        "limit": spec.limit,
        "apply_chat_template": spec.apply_chat_template,
        "fewshot_as_multiturn": spec.fewshot_as_multiturn,
        "system_instruction": spec.system_instruction,
    }


def results_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("results_*.json")) if folder.is_dir() else []


def evaluation_reason(job: Evaluation, spec: EvalSpec) -> str | None:
    """Why the evaluation must run; None when its folder holds results of this very setup."""
    found = results_files(job.folder)
    if not found:
        return "no results yet"
    if len(found) > 1:
        return f"{len(found)} results files in one folder"
    try:
        results = json.loads(found[0].read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return "unreadable results file"
    expected = wanted_record(spec, checkpoint.checkpoint_hash(job.checkpoint) if job.checkpoint else None)
    stale = [key for key, value in expected.items() if eval_record(results).get(key) != value]
    return f"made with another {', '.join(stale)}" if stale else incomplete_samples(found[0], results, job.task)


def incomplete_samples(source: Path, results: dict, task: str) -> str | None:
    """Why the samples beside the results file `source` are not all of `task`'s documents; None if they are."""
    samples = runs.samples_path(source, task)
    if not samples.is_file():
        return "results without samples"
    try:
        found = runs.documents(samples)
    except CompareError:
        return f"torn samples file {samples.name}"
    expected = runs.n_documents(results, task)
    if expected is None:
        return f"results without a document count for {task}"
    return None if len(found) == expected else f"samples of {len(found)} of the {expected} documents"


def plan_model(config: LeaderboardConfig, model: ModelSpec, out: Path) -> ModelPlan:
    """Every cell of `model`, each with why it runs or None; refuses settings the optimizer would refuse."""
    layers = num_layers(model)
    optimizations = []
    for method in config.methods:
        if method.is_base:
            continue
        values = config.method_settings(method)
        for task in config.zero_shot:
            try:
                settings, budget, select_k = optimizer_settings(values, model, task, layers, config.eval)
            except ValueError as error:
                raise PlanError(f"models.{model.name} with methods.{method.name}: {error}") from None
            job = Optimization(model.name, method.name, task, settings, budget, select_k,
                               out / CHECKPOINTS / model.name / method.name / task)
            optimizations.append(Step(job, optimization_reason(job)))
    reoptimized = {(step.job.method, step.job.task) for step in optimizations if step.reason is not None}
    evaluations = []
    for method in config.methods:
        for task in config.tasks:
            source = config.few_shot.get(task, task)
            directory = None if method.is_base else out / CHECKPOINTS / model.name / method.name / source
            job = Evaluation(model.name, method.name, task, directory, out / RUNS / model.name / method.name / task)
            reason = "its checkpoint is optimized in this run" if (method.name, source) in reoptimized else evaluation_reason(job, config.eval)
            evaluations.append(Step(job, reason))
    return ModelPlan(model, optimizations, evaluations)
