"""Run one grid cell in the process it is given: the model, tokenizer and lm-eval wrapper are loaded once
per model and process, and shared by the cells it runs.

Each cell works in `<folder>.partial/` (`cells.open_partial`; an interrupted optimization resumes from
its record there) and is renamed into place when whole, with its record (identity, cost, commit and
machine). A fit runs its method's `run_fit` (`tarot_eval.methods`); evaluations call
`lm_eval.simple_evaluate` on a `TarotHFLM` built around the loaded model (the checkpoint merged into
o_proj for the run, unmerged after; a calibration applied inside its loglikelihood; icl cells given
their fixed demonstrations through the task's sampler) and save through lm-eval's own
`EvaluationTracker` into `lm_eval_output/`, of which the cell keeps the compact form (`compact.py`).
No request cache is used: lm-eval keys it on the request alone, so differently edited models would
share answers.
"""

from __future__ import annotations

import contextlib
import json
import resource
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from tarot_eval.compare.runs import LM_EVAL_OUTPUT
from tarot_eval.leaderboard import cells, compact
from tarot_eval.leaderboard.config import EvalSpec, ModelSpec
from tarot_eval.leaderboard.plan import DEMONSTRATIONS_NAME, Evaluation, Fit, Step, demonstrations_settings
from tarot_eval.methods import registry


class LoadedModel:
    """One model, its tokenizer and an unedited `TarotHFLM` over them, shared by all its cells."""

    def __init__(self, spec: ModelSpec, evaluation: EvalSpec):
        from tarot_eval.models import loading

        self.spec = spec
        self.evaluation = evaluation
        self.model, self.tokenizer = loading.load_model_and_tokenizer(spec.pretrained, spec.dtype, spec.device)
        name, gguf_file = loading.resolve(spec.pretrained)
        self.base_args = {"pretrained": name, **({"gguf_file": gguf_file} if gguf_file else {})}
        self.base_lm = self.lm()

    def lm(self, rotations: Path | None = None, calibration: Path | None = None):
        """A `TarotHFLM` over the loaded model; with `rotations`, that checkpoint is merged in until `tarot_handle.unmerge()`;
        with `calibration`, that file's answer prior is removed from every log-likelihood."""
        from tarot_eval.harness.tarot_hf import TarotHFLM

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


def task_with_demonstrations(job: Evaluation, manager):
    """The task object of an evaluation with fixed demonstrations, every document given the same first `shots` training documents
    of the seed's draw (the optimizer's `choose_docs`), and those documents' indices."""
    from tarot_eval.objective import task_documents as objectives

    task = manager.load(job.task)["tasks"][job.task]
    spec = job.demonstrations
    chosen = objectives.choose_docs(task, spec.n_train, spec.n_val, spec.seed).train[: spec.shots]
    if len(chosen) < spec.shots:
        raise objectives.ObjectiveError(f"{job.cell}: {spec.shots} demonstrations asked for, n_train is {spec.n_train}")
    task.set_config(key="num_fewshot", value=spec.shots)
    return task, chosen


def evaluate(loaded: LoadedModel, job: Evaluation, manager, work: Path, out: Path) -> None:
    """lm-eval on one task into `work/lm_eval_output` (results JSON plus samples), kept in `work` in compact form."""
    import lm_eval
    from lm_eval.loggers import EvaluationTracker

    from tarot_eval.objective.task_documents import fixed_demonstrations

    lm = loaded.base_lm if job.checkpoint is None and job.calibration is None else loaded.lm(job.checkpoint, job.calibration)
    spec = loaded.evaluation
    tracker = EvaluationTracker(output_path=str(work / LM_EVAL_OUTPUT))
    task, demonstrations = (job.task, None) if job.demonstrations is None else task_with_demonstrations(job, manager)
    try:
        with contextlib.nullcontext() if demonstrations is None else fixed_demonstrations(
                task, [doc for _, doc in demonstrations]), \
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
    compact.compact_run(work / LM_EVAL_OUTPUT, work, [out.resolve(), out.absolute(), work.resolve()])
    if demonstrations is not None:
        record = {**demonstrations_settings(job.demonstrations), "train_docs": [index for index, _ in demonstrations]}
        (work / DEMONSTRATIONS_NAME).write_text(json.dumps(record, indent=2) + "\n")


@dataclass
class Worker:
    """What one process keeps between the cells it runs: the loaded models (by name) and lm-eval's task index."""

    evaluation: EvalSpec
    include_path: list[str]
    include_defaults: bool
    models: dict
    manager: object = None

    def task_manager(self):
        if self.manager is None:
            from lm_eval.tasks import TaskManager

            from tarot_eval.harness.autoload import tasks_dir

            self.manager = TaskManager(include_path=[str(tasks_dir()), *self.include_path],
                                       include_defaults=self.include_defaults)
        return self.manager

    def loaded(self, spec: ModelSpec) -> LoadedModel:
        if spec.name not in self.models:
            self.models[spec.name] = LoadedModel(spec, self.evaluation)
        return self.models[spec.name]


def peak_memory_reset() -> None:
    """Start a new peak-resident-memory window for this process (Linux: VmHWM), where the kernel allows it."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_memory_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_cell(worker: Worker, spec: ModelSpec, step: Step, out: Path) -> dict:
    """Run `step` in its partial folder and rename it into place; returns its cost (raises on failure)."""
    job = step.job
    method = registry.METHODS[job.kind] if isinstance(job, Fit) else None
    work = cells.open_partial(step.folder, step.identity, resumable=method is not None and method.resumable)
    peak_memory_reset()
    started, usage = time.monotonic(), resource.getrusage(resource.RUSAGE_SELF)
    loaded, manager = worker.loaded(spec), worker.task_manager()
    if method is not None:
        note = method.run_fit(loaded, job, manager, work)
        if note:
            tqdm.write(f"  note: {job.cell}: {note}")
    else:
        evaluate(loaded, job, manager, work, out)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cost = {"wall_s": round(time.monotonic() - started, 2),
            "cpu_s": round(after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime, 2),
            "peak_rss_mb": round(peak_memory_mb(), 1)}
    cells.write_record(work, step.parts["kind"], job.cell, step.parts, step.identity, cost)
    moved = cells.put_in_place(work, step.folder)
    if moved is not None:
        tqdm.write(f"  moved the previous {job.cell} folder to {moved}")
    return cost


