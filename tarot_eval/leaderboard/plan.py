"""The cells of a leaderboard (each method's fits and every evaluation) and which are already done.

Each method kind (`tarot_eval.methods`) says which cells it fits and what its evaluations apply; this
module loops over the config's methods and gives every cell its folder and identity.

Layout under the output folder (`seed-<k>/` only when the config lists seeds, and only for the
methods that read the seed's training documents):
    checkpoints/<model>/<method>/[seed-<k>/]<task>/   a method's fitted artifact (`tarot-eval optimize`,
                                                      `calibrate` or `lora` output)
    runs/<model>/<method>/[seed-<k>/]<task>/          lm-eval `--output_path`: results_*.json + samples_*.jsonl
                                                      (icl: + the demonstrations used, DEMONSTRATIONS_NAME)
    interference/<model>/<method>/[seed-<k>/]<edited task>/<task>/   (`interference: true`) the edit of
                                                      <edited task> scored on another zero-shot task

A cell is done when its folder holds a record (`cells.RECORD_NAME`) of the same identity: the
rendered requests of the documents it reads, the model's file hash, its settings and the identities
of the cells it reads (`identity.py`). Otherwise it runs, in `<folder>.partial/`, and the folder is
renamed into place when whole (what was there moved aside first). Planning only reads.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from tarot_eval.compare import runs
from tarot_eval.leaderboard import cells
from tarot_eval.leaderboard import identity as identities
from tarot_eval.leaderboard.config import EvalSpec, LeaderboardConfig, ModelSpec
from tarot_eval.methods import registry
from tarot_eval.methods.jobs import CHECKPOINTS, RUNS, Demonstrations, Evaluation, Fit, GridCell, GridContext
from tarot_eval.methods.registry import MethodSpec

INTERFERENCE = runs.INTERFERENCE  # an edit's runs on the tasks it was not optimized on
DEMONSTRATIONS_NAME = runs.DEMONSTRATIONS_NAME  # beside an icl run: the demonstrations it was shown


class PlanError(ValueError):
    """The config cannot run against this output folder or these models and tasks."""


@dataclass(frozen=True)
class Step:
    """One cell, what it is computed from (`identity.py`), the cells it reads, and why it runs (None: done)."""

    job: Fit | Evaluation
    reason: str | None
    parts: dict
    identity: str
    depends: tuple[str, ...] = ()  # the `name`s of the steps whose folders it reads

    @property
    def folder(self) -> Path:
        return self.job.folder if isinstance(self.job, Evaluation) else self.job.directory

    @property
    def name(self) -> str:
        """Unique within a plan: the cell's folder (an optimization and its evaluation share `job.cell`)."""
        return str(self.folder)


def kind_of(job) -> str:
    """What a job does, as the leaderboard's progress lines say it: its method's fit kind, or "evaluate"."""
    return registry.METHODS[job.kind].fit_kind if isinstance(job, Fit) else registry.EVALUATE


@dataclass(frozen=True)
class ModelPlan:
    spec: ModelSpec
    fits: list[Step]  # every method's fitted artifacts (checkpoints, calibrations, adapters): what evaluations read
    evaluations: list[Step]

    @property
    def todo(self) -> list[Step]:
        """The cells to run, a method at a time in config order and within it a seed at a time (its
        fits, then its evaluations), so an interrupted leaderboard already holds whole
        methods and, of the method it was in, whole seeds."""
        methods = list(dict.fromkeys(step.job.method for step in self.evaluations))
        steps = [*self.fits, *self.evaluations]

        def order(step: Step):
            seed = step.job.seed
            return methods.index(step.job.method), seed is not None, seed or 0, isinstance(step.job, Evaluation)

        ordered = sorted(steps, key=order)
        return [step for step in ordered if step.reason is not None]


def model_config(model: ModelSpec):
    """The model's transformers config alone (no weights loaded)."""
    from transformers import AutoConfig

    from tarot_eval.models import default_model, loading

    try:
        name, gguf_file = loading.resolve(model.pretrained)
        extra = {"gguf_file": gguf_file} if gguf_file else {}
        return AutoConfig.from_pretrained(name, **extra)
    except (OSError, ValueError, default_model.DefaultModelMissing) as error:
        raise PlanError(f"models.{model.name}: cannot read the config of {model.pretrained or 'the embedded model'}: "
                        f"{str(error).splitlines()[0]}") from None


class Identities:
    """Builds each step's identity parts; the model's identity and rendered requests are computed once."""

    def __init__(self, model: ModelSpec, manager, evaluation: EvalSpec):
        self.model = identities.model_identity(model)
        self.requests = identities.RequestHasher(model, manager)
        self.evaluation = evaluation
        self.by_folder: dict[Path, Step] = {}

    def step(self, job, requests: str, settings: dict, reads: list[Path]) -> Step:
        found = [self.by_folder[folder] for folder in reads if folder is not None and folder in self.by_folder]
        parts = {"kind": kind_of(job), "requests": requests, "model": self.model,
                 "settings": json.loads(json.dumps(settings, default=str)),
                 "depends": {f"{dep.parts['kind']} {dep.job.cell}": dep.identity for dep in found}}
        ident = identities.identity(parts)
        folder = job.folder if isinstance(job, Evaluation) else job.directory
        step = Step(job, cells.reason(folder, parts, ident), parts, ident, tuple(dep.name for dep in found))
        self.by_folder[folder] = step
        return step

    def training(self, task: str, n_train: int, n_val: int, seed: int, prompt) -> str:
        return self.requests.training(task, n_train, n_val, seed, prompt)


def _fits(grid: GridContext, made: Identities) -> list[Step]:
    """Every method's fit cells (what evaluations read), a method and then a seed at a time."""
    steps = []
    for spec in grid.config.methods:
        method = registry.method_of(spec)
        if not method.fit_kind:
            continue
        for seed in grid.config.seeds_of(spec):
            for task in method.fit_tasks(grid, spec):
                try:
                    fit = method.fit(grid, spec, task, seed)
                except ValueError as error:
                    raise PlanError(str(error)) from None
                try:
                    requests = made.training(task, *fit.draw)
                except ValueError as error:  # caught here, before any cell ran, instead of failing the fit cells
                    raise PlanError(f"{grid.config.source}: methods.{spec.name} on {task}: {error} (leave the task out "
                                    f"of the method's `tasks:` or lower n_train / n_val)") from None
                cell = GridCell(grid.model.name, spec.name, task, seed)
                job = Fit(**vars(cell), kind=spec.kind, options=fit.options,
                          directory=grid.out.joinpath(CHECKPOINTS, *cell.parts))
                steps.append(made.step(job, requests, fit.record, list(fit.reads)))
    return steps


def evaluation_settings(job: Evaluation, spec: EvalSpec, method: MethodSpec) -> dict:
    """What an evaluation's numbers depend on besides its requests, model and the cells it reads."""
    return {"task": job.task, "method_kind": method.kind, "edited_on": job.edited_on,
            "demonstrations": None if job.demonstrations is None else demonstrations_settings(job.demonstrations),
            **dataclasses.asdict(spec)}


def demonstrations_settings(demonstrations: Demonstrations) -> dict:
    return {"shots": demonstrations.shots, "n_train": demonstrations.n_train, "n_val": demonstrations.n_val,
            "seed": demonstrations.seed}


def _evaluation(grid: GridContext, spec: MethodSpec, task: str, seed: int | None) -> Evaluation:
    cell = GridCell(grid.model.name, spec.name, task, seed)
    source = grid.config.few_shot.get(task, task)
    inputs = {"checkpoint": None, **registry.method_of(spec).evaluation_inputs(grid, spec, task, source, seed)}
    return Evaluation(**vars(cell), folder=grid.out.joinpath(RUNS, *cell.parts), **inputs)


def _interference(grid: GridContext, spec: MethodSpec, seed: int | None):
    """The edit of each of the method's zero-shot tasks scored on every other zero-shot task."""
    for source in grid.config.zero_shot_of(spec):
        checkpoint_dir = grid.fit_folder(spec.name, source, seed)
        for task in grid.config.zero_shot:
            if task != source:
                folder = grid.out.joinpath(INTERFERENCE, *GridCell(grid.model.name, spec.name, source, seed).parts, task)
                yield Evaluation(grid.model.name, spec.name, task, seed, checkpoint_dir, folder, edited_on=source)


def plan_model(config: LeaderboardConfig, model: ModelSpec, out: Path, manager) -> ModelPlan:
    """Every cell of `model`, each with its identity and why it runs or None; refuses settings the optimizer
    would refuse. Renders every task's requests (no model weights are loaded)."""
    made = Identities(model, manager, config.eval)
    grid = GridContext(config, model, model_config(model), out)
    prepared = _fits(grid, made)
    evaluations = []
    for spec in config.methods:
        method = registry.method_of(spec)
        for seed in config.seeds_of(spec):
            for task in config.tasks_of(spec) if method.on_few_shot_tasks else config.zero_shot_of(spec):
                job = _evaluation(grid, spec, task, seed)
                evaluations.append(made.step(job, made.requests.evaluation(job, config.eval),
                                             evaluation_settings(job, config.eval, spec),
                                             [job.checkpoint, job.calibration, job.adapter]))
            if config.interferes(spec):
                for job in _interference(grid, spec, seed):
                    evaluations.append(made.step(job, made.requests.evaluation(job, config.eval),
                                                 evaluation_settings(job, config.eval, spec), [job.checkpoint]))
    return ModelPlan(model, prepared, evaluations)
