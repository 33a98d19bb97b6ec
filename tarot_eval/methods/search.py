"""An edit searched by `tarot-eval optimize` (rotation or rescale; BO, random search or gradient): any config
entry without a `method:` key another kind takes. Its settings are the optimize flags; `calibrate: NAME`
(a calibrate method listed before it) runs the search on choice scores calibrated by that method's file
for the same task and seed, and applies the same calibration in the evaluation."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from tarot_eval import settings as settings_fields
from tarot_eval.methods.jobs import Fit, GridContext
from tarot_eval.methods.registry import METHODS, FitPlan, Method, MethodSpec, register_method
from tarot_eval.optimize.record import POINTS_DIR
from tarot_eval.optimize.settings import OptimizeSettings

# optimize settings set elsewhere in the config (model section, task lists, eval section) or not at all
# (`layers` and `num_fewshot` may be set per method: a layer-ablation axis, an edit searched with demonstrations)
NOT_OPTIMIZER_KEYS = frozenset(
    {"model", "dtype", "device", "task", "include_path", "out", "angle_limit",
     "apply_chat_template", "fewshot_as_multiturn", "system_instruction", "batch_size"}
)
OPTIMIZER_KEYS = tuple(name for name in settings_fields.fields(OptimizeSettings) if name not in NOT_OPTIMIZER_KEYS)
# what a finished optimization does not keep: the plot (redrawn from its record) and the per-evaluation
# parameter files (the record holds every evaluation's value; the checkpoint is the chosen one)
DROPPED = ("trace.png", POINTS_DIR)


def optimizer_settings(raw: dict, where: str) -> dict:
    """Normalized keys; each value checked against its `OptimizeSettings` field (type and choices)."""
    return settings_fields.checked(OptimizeSettings, raw, where, OPTIMIZER_KEYS,
                                   unknown="{where}.{keys}: unknown optimizer setting; expected one of {allowed}")


def check_layers(text: str | None, where: str) -> None:
    """A layer spec's syntax, reversed ranges and repeats, before any model is read (its bound comes with the model)."""
    if text is not None:
        try:
            settings_fields.parse_layers(str(text), sys.maxsize)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None


def run_settings(values: dict, model, task: str, num_layers: int, evaluation):
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


@register_method
class Search(Method):
    kind = "edit"
    fallback = True
    fit_kind = "optimize"
    artifact = "checkpoint"
    fit_label = "optimizations"
    guessed_fit_cpu_s = 100.0
    resumable = True
    edits = True

    def parse(self, name: str, entry: dict, where: str, earlier: list[MethodSpec]) -> MethodSpec:
        if "calibration" in entry:  # an optimize setting, but here only `calibrate:` also calibrates the evaluation
            raise ValueError(f"{where}.calibration: name a calibrate method listed before it with calibrate: NAME "
                             "(calibration: would calibrate the search but not the evaluation)")
        entry = dict(entry)
        applies = entry.pop("calibrate", None)
        calibrations = [method.name for method in earlier if METHODS[method.kind].artifact == "calibration"]
        if applies is not None and applies not in calibrations:
            raise ValueError(f"{where}.calibrate: {applies!r} is not a calibrate method listed before it "
                             f"(listed: {', '.join(calibrations) or 'none'})")
        settings = optimizer_settings(entry, where)
        check_layers(settings.get("layers"), f"{where}.layers")
        return MethodSpec(name, self.kind, settings, applies)

    def fit(self, grid: GridContext, spec: MethodSpec, task: str, seed: int | None) -> FitPlan:
        values = grid.config.method_settings(spec, seed)
        calibration = None
        if spec.applies:
            calibration = grid.fit_folder(spec.applies, task, seed)
            values = {**values, "calibration": str(calibration)}
        try:
            settings, budget, select_k = run_settings(values, grid.model, task, grid.num_layers, grid.config.eval)
        except ValueError as error:
            raise ValueError(f"models.{grid.model.name} with methods.{spec.name}: {error}") from None
        recorded = {**settings.record_config(), "budget": budget, "select_k": select_k}
        draw = (settings.n_train, settings.n_val, settings.seed, settings.prompt)
        return FitPlan((settings, budget, select_k), recorded, draw, (calibration,) if calibration else ())

    def run_fit(self, loaded, job: Fit, manager, work: Path) -> str | None:
        from tarot_eval.optimize.run import optimize

        settings, budget, select_k = job.options
        task = manager.load(job.task)["tasks"][job.task]
        result = optimize(loaded.model, loaded.base_lm, task, settings, work, budget, select_k, loaded.evaluation.batch_size)
        for name in DROPPED:
            if (work / name).is_dir():
                shutil.rmtree(work / name)
            (work / name).unlink(missing_ok=True)
        if not result.improved:
            return f"the chosen edit does not beat the base model on {result.selected_on} documents"
        return None

    def evaluation_inputs(self, grid: GridContext, spec: MethodSpec, task: str, source: str, seed: int | None) -> dict:
        inputs = {"checkpoint": grid.fit_folder(spec.name, source, seed)}
        if spec.applies:
            inputs["calibration"] = grid.fit_folder(spec.applies, task, seed)
        return inputs
