"""The cells of a leaderboard (optimizations and evaluations) and which are already done.

Layout under the output folder (`seed-<k>/` only when the config lists seeds, and only for the
methods that read the seed's training documents):
    checkpoints/<model>/<method>/[seed-<k>/]<task>/   `tarot-eval optimize` output (checkpoint + run record)
                                                      or `tarot-eval calibrate` output (calibration.json)
    runs/<model>/<method>/[seed-<k>/]<task>/          lm-eval `--output_path`: results_*.json + samples_*.jsonl
                                                      (icl: + the demonstrations used, DEMONSTRATIONS_NAME)
    interference/<model>/<method>/[seed-<k>/]<edited task>/<task>/   (`interference: true`) the edit of
                                                      <edited task> scored on another zero-shot task

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

from tarot_eval import calibration as calibrations, checkpoint, model_info
from tarot_eval.calibrate import CalibrateSettings
from tarot_eval.compare import runs
from tarot_eval.compare.errors import CompareError
from tarot_eval.optimize.record import CONFIG_NAME as RUN_CONFIG_NAME, TRACE_NAME, RecordError, read_lines
from tarot_eval.optimize.run import RESULT_NAME
from tarot_eval.optimize.settings import OptimizeSettings, Settings
from tarot_eval.lora import LoraError, LoraSettings, done as lora_done
from tarot_eval.leaderboard.config import CALIBRATE, EDIT, ICL, LORA, EvalSpec, LeaderboardConfig, MethodSpec, ModelSpec

CHECKPOINTS = "checkpoints"
RUNS = "runs"
INTERFERENCE = runs.INTERFERENCE  # an edit's runs on the tasks it was not optimized on
DEMONSTRATIONS_NAME = runs.DEMONSTRATIONS_NAME  # beside an icl run: the demonstrations it was shown
REDONE = {EDIT: "its checkpoint is optimized in this run", CALIBRATE: "its calibration is fitted in this run",
          LORA: "its adapter is trained in this run"}


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
    """One cell and why it runs (None: already done, skipped)."""

    job: Optimization | CalibrationFit | LoraTraining | Evaluation
    reason: str | None


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


def num_layers(model: ModelSpec) -> int:
    """The model's layer count from its config alone (no weights loaded)."""
    from transformers import AutoConfig

    from tarot_eval import default_model, model_loading

    try:
        name, gguf_file = model_loading.resolve(model.pretrained)
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
    if job.settings.calibration and calibrations.path_of(job.settings.calibration).is_file():
        wanted["calibration_hash"] = calibrations.calibration_hash(job.settings.calibration)
    # a setting added since that run was recorded counts as its default there
    defaults = json.loads(json.dumps(Settings(task=job.settings.task).record_config()))
    differences = [f"{key}: {recorded.get(key, defaults.get(key))!r} there, {value!r} now" for key, value in wanted.items()
                   if recorded.get(key, defaults.get(key)) != value]
    if differences:
        raise PlanError(
            f"{job.cell}: {directory} was optimized with other settings ({'; '.join(differences)}); "
            "delete that folder to re-optimize, or write to another --out"
        )
    done = checkpoint.TarotConfig.from_pretrained(directory).provenance.get("budget")
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


def lora_reason(job: LoraTraining) -> str | None:
    """Why the adapter must be trained; None when it is there from these settings."""
    try:
        return None if lora_done(job.directory, job.options) else "no adapter yet"
    except LoraError as error:
        raise PlanError(f"{job.cell}: {error}") from None


def lora_options(config: LeaderboardConfig, method: MethodSpec, task: str, seed: int | None) -> LoraSettings:
    """The lora cell's settings: the documents (n_train, n_val, seed), objective and select_k shared with the
    edits; its own rank, alpha, lr and budget (an edit's budget counts other steps)."""
    shared = {**config.optimizer, **({} if seed is None else {"seed": seed})}
    documents = {key: shared[key] for key in ("n_train", "n_val", "seed", "objective", "select_k") if key in shared}
    return LoraSettings(task=task, batch_size=config.eval.batch_size, apply_chat_template=config.eval.apply_chat_template,
                        fewshot_as_multiturn=config.eval.fewshot_as_multiturn,
                        system_instruction=config.eval.system_instruction, **{**documents, **method.settings})


def calibration_reason(job: CalibrationFit) -> str | None:
    """Why the calibration must be fitted; None when its file is there from these settings."""
    path = calibrations.path_of(job.directory)
    if not path.is_file():
        return "no calibration yet"
    try:
        found = calibrations.load(job.directory)
    except calibrations.CalibrationError as error:
        raise PlanError(f"{job.cell}: {error}") from None
    wanted = json.loads(json.dumps(job.options.record()))
    if {key: found.provenance.get(key) for key in wanted} != wanted:
        raise PlanError(f"{job.cell}: {path} was fitted with other settings; delete it to fit again, or write to another --out")
    return None


def eval_record(results: dict) -> dict:
    """What an lm-eval results file says about how it was run, in the terms of `wanted_record`."""
    config = results.get("config", {})
    return {
        "checkpoint": config.get(model_info.CHECKPOINT_HASH),
        "calibration": config.get(model_info.CALIBRATION_HASH),
        "limit": config.get("limit"),
        "apply_chat_template": results.get("chat_template") is not None,
        "fewshot_as_multiturn": results.get("fewshot_as_multiturn"),
        "system_instruction": results.get("system_instruction"),
    }


def wanted_record(spec: EvalSpec, checkpoint_hash: str | None, calibration_hash: str | None = None) -> dict:
    return {
        "checkpoint": checkpoint_hash,
        "calibration": calibration_hash,
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
    expected = wanted_record(spec, checkpoint.checkpoint_hash(job.checkpoint) if job.checkpoint else None,
                             calibrations.calibration_hash(job.calibration) if job.calibration else None)
    stale = [key for key, value in expected.items() if eval_record(results).get(key) != value]
    if job.demonstrations is not None and demonstrations_record(job.folder) != demonstrations_settings(job.demonstrations):
        stale.append("demonstrations")
    return f"made with another {', '.join(stale)}" if stale else incomplete_samples(found[0], results, job.task)


def demonstrations_settings(demonstrations: Demonstrations) -> dict:
    return {"shots": demonstrations.shots, "n_train": demonstrations.n_train, "n_val": demonstrations.n_val,
            "seed": demonstrations.seed}


def demonstrations_record(folder: Path) -> dict | None:
    """The settings of the demonstrations an icl evaluation used (its DEMONSTRATIONS_NAME file), None if absent."""
    try:
        recorded = json.loads((folder / DEMONSTRATIONS_NAME).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return {key: recorded.get(key) for key in ("shots", "n_train", "n_val", "seed")}


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


def _fits_and_optimizations(config: LeaderboardConfig, model: ModelSpec, out: Path, layers: int) -> list[Step]:
    steps = []
    for method in config.methods:
        for seed in seeds_of(config, method):
            if method.kind == CALIBRATE:
                for task in config.tasks_of(method):
                    cell = GridCell(model.name, method.name, task, seed)
                    job = CalibrationFit(**vars(cell), options=calibrate_options(config, method, task, seed),
                                         directory=out.joinpath(CHECKPOINTS, *cell.parts))
                    steps.append(Step(job, calibration_reason(job)))
            if method.kind == LORA:
                for task in config.zero_shot_of(method):
                    cell = GridCell(model.name, method.name, task, seed)
                    job = LoraTraining(**vars(cell), options=lora_options(config, method, task, seed),
                                       directory=out.joinpath(CHECKPOINTS, *cell.parts))
                    steps.append(Step(job, lora_reason(job)))
            if method.kind != EDIT:
                continue
            values = config.method_settings(method, seed)
            for task in config.zero_shot_of(method):
                if method.calibrate:
                    values = {**values, "calibration": str(calibration_folder(config, out, model, method.calibrate, task, seed))}
                try:
                    settings, budget, select_k = optimizer_settings(values, model, task, layers, config.eval)
                except ValueError as error:
                    raise PlanError(f"models.{model.name} with methods.{method.name}: {error}") from None
                cell = GridCell(model.name, method.name, task, seed)
                job = Optimization(**vars(cell), settings=settings, budget=budget, select_k=select_k,
                                   directory=out.joinpath(CHECKPOINTS, *cell.parts))
                steps.append(Step(job, optimization_reason(job)))
    return steps


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


def plan_model(config: LeaderboardConfig, model: ModelSpec, out: Path) -> ModelPlan:
    """Every cell of `model`, each with why it runs or None; refuses settings the optimizer would refuse."""
    prepared = _fits_and_optimizations(config, model, out, num_layers(model))
    redone = {(step.job.method, step.job.task, step.job.seed) for step in prepared if step.reason is not None}
    evaluations = []
    for method in config.methods:
        for seed in seeds_of(config, method):
            # a few-shot task already has its shots, so icl runs on the zero-shot tasks only
            for task in config.tasks_of(method) if method.kind != ICL else config.zero_shot_of(method):
                job = _evaluation(config, model, out, method, task, seed)
                source = config.few_shot.get(task, task)
                calibrated_by = method.name if method.kind == CALIBRATE else method.calibrate
                if (method.name, source, seed) in redone:
                    reason = REDONE[method.kind]
                elif calibrated_by and (calibrated_by, task, seed if config.method(calibrated_by).seeded else None) in redone:
                    reason = "its calibration is fitted in this run"
                else:
                    reason = evaluation_reason(job, config.eval)
                evaluations.append(Step(job, reason))
            if config.interferes(method):
                for job in _interference(config, model, out, method, seed):
                    redo = (method.name, job.edited_on, seed) in redone
                    evaluations.append(Step(job, REDONE[EDIT] if redo else evaluation_reason(job, config.eval)))
    return ModelPlan(model, prepared, evaluations)
