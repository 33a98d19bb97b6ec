"""`{method: calibrate, variant: contextual|batch}`: no edit; the answer prior (`tarot-eval calibrate`) removed
inside lm-eval's loglikelihood. Fitted per task, few-shot tasks included (their prompts differ)."""

from __future__ import annotations

from pathlib import Path

from tarot_eval.methods.jobs import CHECKPOINTS, Fit, GridContext
from tarot_eval.methods.registry import FitPlan, Method, MethodSpec, check_keys, register_method

KEYS = ("method", "variant")


@register_method
class Calibrate(Method):
    kind = "calibrate"
    fit_kind = "calibrate"
    artifact = "calibration"
    fit_label = "calibrations"
    guessed_fit_cpu_s = 4.0

    def parse(self, name: str, entry: dict, where: str, earlier: list[MethodSpec]) -> MethodSpec:
        from tarot_eval.objective.calibration import VARIANTS

        check_keys(entry, KEYS, where)
        variant = entry.get("variant", "contextual")
        if variant not in VARIANTS:
            raise ValueError(f"{where}.variant: {variant!r} is not one of {', '.join(VARIANTS)}")
        return MethodSpec(name, self.kind, {"variant": variant})

    def seeded(self, spec: MethodSpec) -> bool:
        return spec.settings["variant"] == "batch"  # contextual calibration reads no training documents

    def fit_tasks(self, grid: GridContext, spec: MethodSpec) -> list[str]:
        return grid.config.tasks_of(spec)

    def fit(self, grid: GridContext, spec: MethodSpec, task: str, seed: int | None) -> FitPlan:
        from tarot_eval.baselines.calibrate import CalibrateSettings

        config = grid.config
        shared = config.method_settings(spec, seed)
        options = CalibrateSettings(
            task=task, variant=spec.settings["variant"], batch_size=config.eval.batch_size,
            apply_chat_template=config.eval.apply_chat_template, fewshot_as_multiturn=config.eval.fewshot_as_multiturn,
            system_instruction=config.eval.system_instruction,
            **{key: shared[key] for key in ("n_train", "n_val", "seed") if key in shared},
        )
        return FitPlan(options, options.record(), (options.n_train, options.n_val, options.seed, options.prompt()))

    def run_fit(self, loaded, job: Fit, manager, work: Path) -> str | None:
        from tarot_eval.baselines.calibrate import fit_once

        fit_once(loaded.model, loaded.base_lm, manager.load(job.task)["tasks"][job.task], job.options, work)
        return None

    def evaluation_inputs(self, grid: GridContext, spec: MethodSpec, task: str, source: str, seed: int | None) -> dict:
        return {"calibration": grid.out.joinpath(CHECKPOINTS, *grid.cell(spec, task, seed).parts)}
