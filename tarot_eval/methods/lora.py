"""`{method: lora, rank, alpha, target_modules, lr, budget, select_k}`: a peft LoRA adapter trained
(`tarot-eval lora`) on the same training documents as the edits, selected on the same validation
documents, evaluated through lm-eval with the adapter applied."""

from __future__ import annotations

from pathlib import Path

from tarot_eval.methods.jobs import Fit, GridContext
from tarot_eval.methods.registry import FitPlan, Method, MethodSpec, check_keys, register_method

KEYS = ("rank", "alpha", "target_modules", "lr", "budget", "select_k")
SHARED_KEYS = ("n_train", "n_val", "seed", "objective", "select_k")  # taken from the config's optimizer settings


def check_target_modules(grid: GridContext, spec: MethodSpec) -> None:
    """target_modules must name modules of the model (checked on an empty skeleton of it)."""
    wanted = (spec.settings or {}).get("target_modules")
    if not wanted:
        return
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(grid.model_config)
    names = {name.rsplit(".", 1)[-1] for name, _ in skeleton.named_modules()}
    missing = [name.strip() for name in wanted.split(",") if name.strip() not in names]
    if missing:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in skeleton.named_modules() if isinstance(m, torch.nn.Linear)})
        raise ValueError(f"methods.{spec.name}.target_modules: {', '.join(missing)} not a module of "
                         f"models.{grid.model.name} (its linear layers: {', '.join(linear)})")


@register_method
class Lora(Method):
    kind = "lora"
    fit_kind = "train lora"
    artifact = "adapter"
    fit_label = "lora trainings"
    guessed_fit_cpu_s = 80.0

    def parse(self, name: str, entry: dict, where: str, earlier: list[MethodSpec]) -> MethodSpec:
        from tarot_eval import settings as settings_fields
        from tarot_eval.baselines.lora import LoraSettings

        check_keys(entry, ("method", *KEYS), where)
        try:
            values = settings_fields.checked(LoraSettings, {k: v for k, v in entry.items() if k != "method"}, where, KEYS)
            LoraSettings(**values)  # its own value checks (rank, lr, ...)
        except settings_fields.SettingsError as error:
            raise ValueError(f"{where}: {error}" if not str(error).startswith(where) else str(error)) from None
        return MethodSpec(name, self.kind, values)

    def fit(self, grid: GridContext, spec: MethodSpec, task: str, seed: int | None) -> FitPlan:
        """Its settings: the documents (n_train, n_val, seed), objective and select_k shared with the edits; its
        own rank, alpha, lr and budget (an edit's budget counts other steps)."""
        from tarot_eval.baselines.lora import LoraSettings

        check_target_modules(grid, spec)
        config = grid.config
        shared = {**config.optimizer, **({} if seed is None else {"seed": seed})}
        documents = {key: shared[key] for key in SHARED_KEYS if key in shared}
        options = LoraSettings(task=task, batch_size=config.eval.batch_size,
                               apply_chat_template=config.eval.apply_chat_template,
                               fewshot_as_multiturn=config.eval.fewshot_as_multiturn,
                               system_instruction=config.eval.system_instruction, **{**documents, **spec.settings})
        return FitPlan(options, options.record(), (options.n_train, options.n_val, options.seed, options.prompt()))

    def run_fit(self, loaded, job: Fit, manager, work: Path) -> str | None:
        from tarot_eval.baselines.lora import train_once

        result = train_once(loaded.model, loaded.base_lm, manager.load(job.task)["tasks"][job.task], job.options, work)
        if result is not None and not result["improved"]:
            return "the trained adapter does not beat the base model on validation documents"
        return None

    def evaluation_inputs(self, grid: GridContext, spec: MethodSpec, task: str, source: str, seed: int | None) -> dict:
        return {"adapter": grid.fit_folder(spec.name, source, seed)}
