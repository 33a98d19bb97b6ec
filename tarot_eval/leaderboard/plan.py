"""The cells of a leaderboard (optimizations and evaluations) and which are already done.

Layout under the output folder (`seed-<k>/` only when the config lists seeds, and only for the
methods that read the seed's training documents):
    checkpoints/<model>/<method>/[seed-<k>/]<task>/   `tarot-eval optimize` output (checkpoint + run record)
                                                      or `tarot-eval calibrate` output (calibration.json)
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

from tarot_eval.calibrate import CalibrateSettings
from tarot_eval.compare import runs
from tarot_eval.leaderboard import cells
from tarot_eval.leaderboard import identity as identities
from tarot_eval.leaderboard.config import CALIBRATE, EDIT, ICL, LORA, EvalSpec, LeaderboardConfig, MethodSpec, ModelSpec
from tarot_eval.lora import LoraSettings
from tarot_eval.optimize.settings import OptimizeSettings, Settings

CHECKPOINTS = "checkpoints"
RUNS = "runs"
INTERFERENCE = runs.INTERFERENCE  # an edit's runs on the tasks it was not optimized on
DEMONSTRATIONS_NAME = runs.DEMONSTRATIONS_NAME  # beside an icl run: the demonstrations it was shown


class PlanError(ValueError):
    """The config cannot run against this output folder or these models and tasks."""


@dataclass(frozen=True)
class GridCell:
    """One model x method x (seed) x task of the grid."""

    model: str
    method: str
    task: str
    seed: int | None

    @property
    def cell(self) -> str:
        return "/".join(self.parts)

    @property
    def parts(self) -> tuple[str, ...]:
        """Its folder below `checkpoints/` or `runs/`."""
        return (self.model, self.method, *(() if self.seed is None else (f"seed-{self.seed}",)), self.task)


@dataclass(frozen=True)
class Optimization(GridCell):
    settings: Settings
    budget: int
    select_k: int
    directory: Path


@dataclass(frozen=True)
class CalibrationFit(GridCell):
    options: CalibrateSettings
    directory: Path


@dataclass(frozen=True)
class LoraTraining(GridCell):
    options: LoraSettings
    directory: Path


@dataclass(frozen=True)
class Demonstrations:
    """icl: the first `shots` training documents of the seed's draw (n_train, n_val, seed)."""

    shots: int
    n_train: int
    n_val: int
    seed: int


@dataclass(frozen=True)
class Evaluation(GridCell):
    checkpoint: Path | None  # None: the unedited model
    folder: Path
    calibration: Path | None = None
    demonstrations: Demonstrations | None = None
    adapter: Path | None = None  # a lora method's peft adapter
    edited_on: str | None = None  # interference: the task the checkpoint was optimized on (not `task`)

    @property
    def cell(self) -> str:
        return "/".join(self.parts) + (f" (edit of {self.edited_on})" if self.edited_on else "")


@dataclass(frozen=True)
class Step:
    """One cell, what it is computed from (`identity.py`), the cells it reads, and why it runs (None: done)."""

    job: Optimization | CalibrationFit | LoraTraining | Evaluation
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
    """What a job does, as the leaderboard's progress lines say it."""
    kinds = {Optimization: "optimize", CalibrationFit: "calibrate", LoraTraining: "train lora"}
    return kinds.get(type(job), "evaluate")


@dataclass(frozen=True)
class ModelPlan:
    spec: ModelSpec
    optimizations: list[Step]  # and calibration fits: what evaluations read
    evaluations: list[Step]

    @property
    def todo(self) -> list[Step]:
        """The cells to run, a method at a time in config order and within it a seed at a time (its
        optimizations, then its evaluations), so an interrupted leaderboard already holds whole
        methods and, of the method it was in, whole seeds."""
        methods = list(dict.fromkeys(step.job.method for step in self.evaluations))
        steps = [*self.optimizations, *self.evaluations]

        def order(step: Step):
            seed = step.job.seed
            return methods.index(step.job.method), seed is not None, seed or 0, isinstance(step.job, Evaluation)

        ordered = sorted(steps, key=order)
        return [step for step in ordered if step.reason is not None]


def optimizer_settings(values: dict, model: ModelSpec, task: str, num_layers: int, evaluation: EvalSpec):
    """(Settings, budget, select_k) of one cell: the method's optimize settings with the model's, task's and
    evaluation's."""
    options = OptimizeSettings(
        **{"layers": model.layers, **values},  # a method's layers win over the model's
        task=task,
        angle_limit=model.angle_limit,
        apply_chat_template=evaluation.apply_chat_template,
        fewshot_as_multiturn=evaluation.fewshot_as_multiturn,
        system_instruction=evaluation.system_instruction,
    )
    return options.run_settings(num_layers), options.budget, options.select_k


def model_config(model: ModelSpec):
    """The model's transformers config alone (no weights loaded)."""
    from transformers import AutoConfig

    from tarot_eval import default_model, model_loading

    try:
        name, gguf_file = model_loading.resolve(model.pretrained)
        extra = {"gguf_file": gguf_file} if gguf_file else {}
        return AutoConfig.from_pretrained(name, **extra)
    except (OSError, ValueError, default_model.DefaultModelMissing) as error:
        raise PlanError(f"models.{model.name}: cannot read the config of {model.pretrained or 'the embedded model'}: "
                        f"{str(error).splitlines()[0]}") from None


def num_layers(model: ModelSpec) -> int:
    return model_config(model).get_text_config().num_hidden_layers


def check_target_modules(model: ModelSpec, method: MethodSpec) -> None:
    """A lora method's target_modules must name modules of the model (checked on an empty skeleton of it)."""
    wanted = (method.settings or {}).get("target_modules")
    if not wanted:
        return
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(model_config(model))
    names = {name.rsplit(".", 1)[-1] for name, _ in skeleton.named_modules()}
    missing = [name.strip() for name in wanted.split(",") if name.strip() not in names]
    if missing:
        raise PlanError(f"methods.{method.name}.target_modules: {', '.join(missing)} not a module of models.{model.name} "
                        f"(its linear layers: {', '.join(sorted({n.rsplit('.', 1)[-1] for n, m in skeleton.named_modules() if isinstance(m, torch.nn.Linear)}))})")


def lora_options(config: LeaderboardConfig, method: MethodSpec, task: str, seed: int | None) -> LoraSettings:
    """The lora cell's settings: the documents (n_train, n_val, seed), objective and select_k shared with the
    edits; its own rank, alpha, lr and budget (an edit's budget counts other steps)."""
    shared = {**config.optimizer, **({} if seed is None else {"seed": seed})}
    documents = {key: shared[key] for key in ("n_train", "n_val", "seed", "objective", "select_k") if key in shared}
    return LoraSettings(task=task, batch_size=config.eval.batch_size, apply_chat_template=config.eval.apply_chat_template,
                        fewshot_as_multiturn=config.eval.fewshot_as_multiturn,
                        system_instruction=config.eval.system_instruction, **{**documents, **method.settings})


def seeds_of(config: LeaderboardConfig, method: MethodSpec) -> list[int | None]:
    """The seeds a method runs under: each listed seed where it reads them, else one seed-free cell."""
    return list(config.seeds) if config.seeds is not None and method.seeded else [None]


def calibrate_options(config: LeaderboardConfig, method: MethodSpec, task: str, seed: int | None) -> CalibrateSettings:
    shared = config.method_settings(method, seed)
    keys = ("n_train", "n_val", "seed")
    return CalibrateSettings(
        task=task, variant=method.settings["variant"], batch_size=config.eval.batch_size,
        apply_chat_template=config.eval.apply_chat_template, fewshot_as_multiturn=config.eval.fewshot_as_multiturn,
        system_instruction=config.eval.system_instruction,
        **{key: shared[key] for key in keys if key in shared},
    )


def calibration_folder(config: LeaderboardConfig, out: Path, model: ModelSpec, name: str, task: str, seed: int | None) -> Path:
    """The folder of calibrate method `name`'s file for `task` under `seed` (or its seed-free one)."""
    method = config.method(name)
    cell = GridCell(model.name, name, task, seed if method.seeded else None)
    return out.joinpath(CHECKPOINTS, *cell.parts)


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


def _fits_and_optimizations(config: LeaderboardConfig, model: ModelSpec, out: Path, layers: int,
                            made: Identities) -> list[Step]:
    steps = []
    for method in config.methods:
        for seed in seeds_of(config, method):
            if method.kind == CALIBRATE:
                for task in config.tasks_of(method):
                    cell = GridCell(model.name, method.name, task, seed)
                    options = calibrate_options(config, method, task, seed)
                    job = CalibrationFit(**vars(cell), options=options, directory=out.joinpath(CHECKPOINTS, *cell.parts))
                    requests = made.training(task, options.n_train, options.n_val, options.seed, options.prompt())
                    steps.append(made.step(job, requests, options.record(), []))
            if method.kind == LORA:
                check_target_modules(model, method)
                for task in config.zero_shot_of(method):
                    cell = GridCell(model.name, method.name, task, seed)
                    options = lora_options(config, method, task, seed)
                    job = LoraTraining(**vars(cell), options=options, directory=out.joinpath(CHECKPOINTS, *cell.parts))
                    requests = made.training(task, options.n_train, options.n_val, options.seed, options.prompt())
                    steps.append(made.step(job, requests, options.record(), []))
            if method.kind != EDIT:
                continue
            values = config.method_settings(method, seed)
            for task in config.zero_shot_of(method):
                calibration = None
                if method.calibrate:
                    calibration = calibration_folder(config, out, model, method.calibrate, task, seed)
                    values = {**values, "calibration": str(calibration)}
                try:
                    settings, budget, select_k = optimizer_settings(values, model, task, layers, config.eval)
                except ValueError as error:
                    raise PlanError(f"models.{model.name} with methods.{method.name}: {error}") from None
                cell = GridCell(model.name, method.name, task, seed)
                job = Optimization(**vars(cell), settings=settings, budget=budget, select_k=select_k,
                                   directory=out.joinpath(CHECKPOINTS, *cell.parts))
                requests = made.training(task, settings.n_train, settings.n_val, settings.seed, settings.prompt)
                recorded = {**settings.record_config(), "budget": budget, "select_k": select_k}
                steps.append(made.step(job, requests, recorded, [calibration]))
    return steps


def evaluation_settings(job: Evaluation, spec: EvalSpec, method: MethodSpec) -> dict:
    """What an evaluation's numbers depend on besides its requests, model and the cells it reads."""
    return {"task": job.task, "method_kind": method.kind, "edited_on": job.edited_on,
            "demonstrations": None if job.demonstrations is None else demonstrations_settings(job.demonstrations),
            **dataclasses.asdict(spec)}


def demonstrations_settings(demonstrations: Demonstrations) -> dict:
    return {"shots": demonstrations.shots, "n_train": demonstrations.n_train, "n_val": demonstrations.n_val,
            "seed": demonstrations.seed}


def _evaluation(config: LeaderboardConfig, model: ModelSpec, out: Path, method: MethodSpec, task: str, seed: int | None):
    cell = GridCell(model.name, method.name, task, seed)
    source = config.few_shot.get(task, task)
    checkpoint_dir = out.joinpath(CHECKPOINTS, *GridCell(model.name, method.name, source, seed).parts) if method.kind == EDIT else None
    calibration = None
    if method.kind == CALIBRATE:
        calibration = out.joinpath(CHECKPOINTS, *cell.parts)
    elif method.calibrate:
        calibration = calibration_folder(config, out, model, method.calibrate, task, seed)
    demonstrations = None
    if method.kind == ICL:
        shared = config.method_settings(method, seed)
        demonstrations = Demonstrations(method.settings["shots"], shared.get("n_train", OptimizeSettings.n_train),
                                        shared.get("n_val", OptimizeSettings.n_val), shared.get("seed", OptimizeSettings.seed))
    adapter = out.joinpath(CHECKPOINTS, *GridCell(model.name, method.name, source, seed).parts) if method.kind == LORA else None
    return Evaluation(**vars(cell), checkpoint=checkpoint_dir, folder=out.joinpath(RUNS, *cell.parts),
                      calibration=calibration, demonstrations=demonstrations, adapter=adapter)


def _interference(config: LeaderboardConfig, model: ModelSpec, out: Path, method: MethodSpec, seed: int | None):
    """The edit of each of the method's zero-shot tasks scored on every other zero-shot task."""
    for source in config.zero_shot_of(method):
        checkpoint_dir = out.joinpath(CHECKPOINTS, *GridCell(model.name, method.name, source, seed).parts)
        for task in config.zero_shot:
            if task != source:
                folder = out.joinpath(INTERFERENCE, *GridCell(model.name, method.name, source, seed).parts, task)
                yield Evaluation(model.name, method.name, task, seed, checkpoint_dir, folder, edited_on=source)


def plan_model(config: LeaderboardConfig, model: ModelSpec, out: Path, manager) -> ModelPlan:
    """Every cell of `model`, each with its identity and why it runs or None; refuses settings the optimizer
    would refuse. Renders every task's requests (no model weights are loaded)."""
    made = Identities(model, manager, config.eval)
    prepared = _fits_and_optimizations(config, model, out, num_layers(model), made)
    evaluations = []
    for method in config.methods:
        for seed in seeds_of(config, method):
            # a few-shot task already has its shots, so icl runs on the zero-shot tasks only
            for task in config.tasks_of(method) if method.kind != ICL else config.zero_shot_of(method):
                job = _evaluation(config, model, out, method, task, seed)
                evaluations.append(made.step(job, made.requests.evaluation(job, config.eval),
                                             evaluation_settings(job, config.eval, method),
                                             [job.checkpoint, job.calibration, job.adapter]))
            if config.interferes(method):
                for job in _interference(config, model, out, method, seed):
                    evaluations.append(made.step(job, made.requests.evaluation(job, config.eval),
                                                 evaluation_settings(job, config.eval, method), [job.checkpoint]))
    return ModelPlan(model, prepared, evaluations)
