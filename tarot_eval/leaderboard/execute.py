"""Run a model's cells in-process: the model, tokenizer and lm-eval wrapper are loaded once per model.

Optimizations call `tarot_eval.optimize.run.optimize`, calibrations `tarot_eval.calibrate.fit_once`;
evaluations call `lm_eval.simple_evaluate` on a `TarotHFLM` built around the already loaded model
(the checkpoint merged into o_proj for the run, unmerged after; a calibration applied inside its
loglikelihood; icl cells given their fixed demonstrations through the task's sampler) and save through lm-eval's own `EvaluationTracker`, as `lm_eval --output_path
DIR --log_samples` does. No request cache is used: lm-eval keys it on the request alone, so
differently edited models would share answers. A folder about to be evaluated again is moved aside
(`move_aside`), never deleted.
"""

from __future__ import annotations

import contextlib
import datetime
import json
from pathlib import Path

from tqdm.auto import tqdm

from tarot_eval.compare.runs import MOVED_ASIDE
from tarot_eval.leaderboard.config import EvalSpec, ModelSpec
from tarot_eval.leaderboard.plan import (
    DEMONSTRATIONS_NAME, CalibrationFit, Evaluation, LoraTraining, ModelPlan, Optimization, demonstrations_settings, kind_of,
)


class LoadedModel:
    """One model, its tokenizer and an unedited `TarotHFLM` over them, shared by all its cells."""

    def __init__(self, spec: ModelSpec, evaluation: EvalSpec):
        from tarot_eval import model_loading

        self.spec = spec
        self.evaluation = evaluation
        self.model, self.tokenizer = model_loading.load_model_and_tokenizer(spec.pretrained, spec.dtype, spec.device)
        name, gguf_file = model_loading.resolve(spec.pretrained)
        self.base_args = {"pretrained": name, **({"gguf_file": gguf_file} if gguf_file else {})}
        self.base_lm = self.lm()

    def lm(self, rotations: Path | None = None, calibration: Path | None = None):
        """A `TarotHFLM` over the loaded model; with `rotations`, that checkpoint is merged in until `tarot_handle.unmerge()`;
        with `calibration`, that file's answer prior is removed from every log-likelihood."""
        from tarot_eval.lm import TarotHFLM

        return TarotHFLM(
            pretrained=self.model,
            tokenizer=self.tokenizer,
            backend="causal",
            batch_size=self.evaluation.batch_size,
            rotations=None if rotations is None else str(rotations),
            calibration=None if calibration is None else str(calibration),
        )

    def model_args(self, job: Evaluation) -> dict:
        """The `--model_args` that reproduce `job` with `lm_eval --model tarot-hf`, as its results record them."""
        return {**self.base_args, **({"rotations": str(job.checkpoint)} if job.checkpoint else {}),
                **({"calibration": str(job.calibration)} if job.calibration else {}),
                **({"peft": str(job.adapter)} if job.adapter else {})}


def optimize(loaded: LoadedModel, job: Optimization, manager) -> None:
    from tarot_eval.optimize.run import optimize as run_optimization

    task = manager.load(job.task)["tasks"][job.task]
    result = run_optimization(
        loaded.model, loaded.base_lm, task, job.settings, job.directory, job.budget, job.select_k, loaded.evaluation.batch_size
    )
    if not result.improved:
        tqdm.write(f"  note: {job.cell}: the chosen edit does not beat the base model on {result.selected_on} documents")


def fit_calibration(loaded: LoadedModel, job: CalibrationFit, manager) -> None:
    from tarot_eval.calibrate import fit_once

    task = manager.load(job.task)["tasks"][job.task]
    fit_once(loaded.model, loaded.base_lm, task, job.options, job.directory)


def train_lora(loaded: LoadedModel, job: LoraTraining, manager) -> None:
    from tarot_eval.lora import train_once

    task = manager.load(job.task)["tasks"][job.task]
    result = train_once(loaded.model, loaded.base_lm, task, job.options, job.directory)
    if result is not None and not result["improved"]:
        tqdm.write(f"  note: {job.cell}: the trained adapter does not beat the base model on validation documents")


@contextlib.contextmanager
def adapter_applied(loaded: LoadedModel, adapter: Path | None):
    """Within the block the loaded model runs with the peft adapter in `adapter` (as lm-eval's `peft=` loads
    it, `PeftModel.from_pretrained`); after it, the adapter's layers are taken out again."""
    if adapter is None:
        yield
        return
    from peft import PeftModel

    wrapped = PeftModel.from_pretrained(loaded.model, str(adapter))
    try:
        yield
    finally:
        wrapped.unload()


def icl_task(job: Evaluation, manager):
    """The task object of an icl evaluation, every document given the same first `shots` training documents
    of the seed's draw (the optimizer's `choose_docs`), and those documents' indices."""
    from tarot_eval import objective as objectives

    task = manager.load(job.task)["tasks"][job.task]
    spec = job.demonstrations
    chosen = objectives.choose_docs(task, spec.n_train, spec.n_val, spec.seed).train[: spec.shots]
    if len(chosen) < spec.shots:
        raise objectives.ObjectiveError(f"{job.cell}: {spec.shots} demonstrations asked for, n_train is {spec.n_train}")
    task.set_config(key="num_fewshot", value=spec.shots)
    return task, chosen


def move_aside(folder: Path) -> Path | None:
    """Rename a folder of results about to be replaced to `<folder>.moved-aside-<UTC time>` (never
    deleted; `tarot-eval compare` skips it); returns the new path, None when there was nothing."""
    if not folder.is_dir() or not any(folder.iterdir()):
        return None
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    target = folder.with_name(f"{folder.name}{MOVED_ASIDE}{stamp}")
    folder.rename(target)
    return target


def evaluate(loaded: LoadedModel, job: Evaluation, manager) -> None:
    """lm-eval on one task into `job.folder` (what was there moved aside first), results JSON plus samples."""
    import lm_eval
    from lm_eval.loggers import EvaluationTracker

    from tarot_eval.objective import fixed_demonstrations

    if moved := move_aside(job.folder):
        tqdm.write(f"  moved the previous {job.cell} results to {moved}")
    lm = loaded.base_lm if job.checkpoint is None and job.calibration is None else loaded.lm(job.checkpoint, job.calibration)
    spec = loaded.evaluation
    tracker = EvaluationTracker(output_path=str(job.folder))
    task, demonstrations = (job.task, None) if job.demonstrations is None else icl_task(job, manager)
    try:
        with contextlib.nullcontext() if demonstrations is None else fixed_demonstrations(task, [doc for _, doc in demonstrations]), \
                adapter_applied(loaded, job.adapter):
            results = lm_eval.simple_evaluate(
                model=lm,
                model_args=loaded.model_args(job),
                tasks=[task],
                batch_size=spec.batch_size,
                device=loaded.spec.device,
                limit=spec.limit,
                log_samples=True,
                evaluation_tracker=tracker,
                apply_chat_template=spec.apply_chat_template,
                fewshot_as_multiturn=spec.fewshot_as_multiturn,
                system_instruction=spec.system_instruction,
                task_manager=manager,
            )
    finally:
        if lm.tarot_handle is not None:
            lm.tarot_handle.unmerge()
    samples = results.pop("samples")
    tracker.save_results_aggregated(results=results, samples=samples)
    for task_name in results["configs"]:
        tracker.save_results_samples(task_name=task_name, samples=samples[task_name])
    if demonstrations is not None:  # after the samples: a kill before it leaves the cell to be run again
        record = {**demonstrations_settings(job.demonstrations), "train_docs": [index for index, _ in demonstrations]}
        (job.folder / DEMONSTRATIONS_NAME).write_text(json.dumps(record, indent=2) + "\n")


def execute(plan: ModelPlan, evaluation: EvalSpec, manager) -> None:
    """Run the cells of `plan` that are not done, in `plan.todo` order."""
    todo = plan.todo
    if not todo:
        return
    loaded = LoadedModel(plan.spec, evaluation)
    for step in tqdm(todo, desc=f"{plan.spec.name} cells", unit="cell"):
        job = step.job
        tqdm.write(f"running {kind_of(job)} {job.cell} ({step.reason})")
        if isinstance(job, Optimization):
            optimize(loaded, job, manager)
        elif isinstance(job, CalibrationFit):
            fit_calibration(loaded, job, manager)
        elif isinstance(job, LoraTraining):
            train_lora(loaded, job, manager)
        else:
            evaluate(loaded, job, manager)
