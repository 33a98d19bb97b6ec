"""TRL's GRPOTrainer over the rotation angles only (every base weight frozen).

The angles [layers, heads, head_dim/2] are a Parameter registered on the model itself (TRL
needs a real PreTrainedModel: config, generation_config, generate), zero at the start (the
unedited model), and hooked in through `tarot_eval.edit.attach`, so rollouts come from the
edited model and gradients reach only the angles. A callback clamps them to the bounds after
every optimizer step. `beta=0`: no reference model (TRL would reload one from the model's
id, impossible for a GGUF or in-memory model); the angle bound is the regularizer.
Every `select_every` steps (and after the last) the current angles are measured greedily on
the selection prompts (validation, else training) and kept as a candidate; the best candidate,
compared with the base model, is the result: early stopping on validation.
After training the Parameter and hooks are removed, so the model is exactly the base model
again, and the chosen angles are saved as an ordinary tarot checkpoint.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import asdict, dataclass

import torch
from datasets import Dataset
from torch import nn
from transformers import TrainerCallback

from tarot_eval import selection
from tarot_eval.edit import HeadEdit, attach
from tarot_eval.rl.generate import STOP, texts_to_score
from tarot_eval.rl.rewards import Scorer
from tarot_eval.rl.training import RewardSetting, Selection, TrainResult, save_result

ANGLES = "tarot_angles"


@dataclass(frozen=True)
class GRPOSettings:
    layers: tuple[int, ...]
    bounds: tuple[float, float]
    steps: int = 20
    learning_rate: float = 0.05
    # 64 rollouts per step: with 16 the sampled reward did not trend on SmolLM2 (docs/rl.md)
    num_generations: int = 8  # sampled completions per prompt (the GRPO group)
    prompts_per_step: int = 8
    temperature: float = 0.7
    select_every: int = 4  # steps between candidates measured on the selection prompts
    seed: int = 0


class ClampAngles(TrainerCallback):
    """Projects the angles back into [low, high] after each optimizer step."""

    def __init__(self, angles: nn.Parameter, bounds: tuple[float, float]):
        self.angles, self.bounds = angles, bounds

    def on_step_end(self, args, state, control, **kwargs):
        with torch.no_grad():
            self.angles.clamp_(*self.bounds)


class MeasureCandidates(TrainerCallback):
    """Every `every` steps and after the last, the angles' greedy reward on the selection prompts."""

    def __init__(self, angles: nn.Parameter, every: int, measure):
        self.angles, self.every, self.measure = angles, every, measure
        self.candidates: list[dict] = []  # {"step", "reward", "angles"}

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0 or state.global_step >= state.max_steps:
            self.candidates.append({"step": state.global_step, "reward": self.measure(),
                                    "angles": self.angles.detach().clone()})


def reward_function(scorer: Scorer):
    """TRL reward function: the scorer's reward of each completion (cut at the first blank line, as evaluated)."""

    def reward(prompts, completions, **kwargs) -> list[float]:
        cut = [completion.split(STOP)[0] for completion in completions]
        return [s.reward for s in scorer.score(texts_to_score(scorer.kind, prompts, cut))]

    reward.__name__ = f"{scorer.kind}:{scorer.name}"
    return reward


def grpo_config(settings: GRPOSettings, max_new_tokens: int, output_dir: str):
    from trl import GRPOConfig

    return GRPOConfig(
        output_dir=output_dir,
        use_cpu=True,
        bf16=False,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        max_steps=settings.steps,
        learning_rate=settings.learning_rate,
        lr_scheduler_type="constant",
        weight_decay=0.0,
        per_device_train_batch_size=settings.num_generations * settings.prompts_per_step,
        num_generations=settings.num_generations,
        max_completion_length=max_new_tokens,
        temperature=settings.temperature,
        beta=0.0,
        activation_checkpointing=False,  # reentrant checkpointing of frozen blocks would cut the angles' gradient
        use_vllm=False,  # vLLM would not see the hooks
        seed=settings.seed,
        dataloader_num_workers=0,
    )


def train(model: nn.Module, tokenizer, setting: RewardSetting, settings: GRPOSettings, out) -> TrainResult:
    """Train the angles with GRPO on the training prompts; save the checkpoint and result.json in `out`."""
    from trl import GRPOTrainer

    if settings.steps < 1:
        raise ValueError(f"steps must be >= 1, got {settings.steps}")
    if settings.num_generations < 2:
        raise ValueError(f"num_generations must be >= 2 (GRPO compares completions of one prompt), got {settings.num_generations}")
    if settings.select_every < 1:
        raise ValueError(f"select_every must be >= 1 step, got {settings.select_every}")
    if hasattr(model, ANGLES):
        raise ValueError(f"the model already carries a {ANGLES!r} parameter (a GRPO run in progress?)")
    started = time.perf_counter()
    before = setting.measure(model, tokenizer)
    base_reward = before.reward if setting.selected_on == "train" else setting.measure(model, tokenizer, "validation").reward
    edit = HeadEdit.identity(model, "rotation", settings.layers)
    trainable = [p for p in model.parameters() if p.requires_grad]
    for parameter in trainable:
        parameter.requires_grad_(False)
    angles = nn.Parameter(edit.params.clone())
    model.register_parameter(ANGLES, angles)
    handle = attach(model, HeadEdit("rotation", settings.layers, angles))
    was_training = model.training

    def measure() -> float:
        training = model.training
        model.eval()
        try:
            return setting.measure(model, tokenizer, setting.selected_on).reward
        finally:
            model.train(training)

    candidates = MeasureCandidates(angles, settings.select_every, measure)
    try:
        with tempfile.TemporaryDirectory(prefix="tarot-grpo-") as scratch:
            trainer = GRPOTrainer(
                model=model,
                reward_funcs=[reward_function(setting.scorer)],
                args=grpo_config(settings, setting.max_new_tokens, scratch),
                train_dataset=Dataset.from_list([{"prompt": p} for p in setting.train_prompts]),
                processing_class=tokenizer,
                callbacks=[ClampAngles(angles, settings.bounds), candidates],
            )
            trainer.train()
            history = [_step_log(entry) for entry in trainer.state.log_history if "reward" in entry]
    finally:
        handle.remove()
        del model._parameters[ANGLES]
        for parameter in trainable:
            parameter.requires_grad_(True)
        model.train(was_training)
    measured = candidates.candidates  # in step order: ties go to the earliest step
    rewards = [c["reward"] for c in measured]
    best = measured[selection.choose(range(len(measured)), dict(enumerate(rewards)))]
    chosen = Selection(HeadEdit("rotation", settings.layers, best["angles"]), base_reward, best["reward"],
                          {"chosen_step": best["step"],
                           "candidates": {str(c["step"]): c["reward"] for c in candidates.candidates}})
    details = {**{k: v for k, v in asdict(settings).items() if k not in ("layers", "bounds")},
               "layers": list(settings.layers), "bounds": list(settings.bounds), "grpo_log": history}
    return save_result(model, tokenizer, chosen, settings.bounds, out, "grpo", setting, before,
                       time.perf_counter() - started, details)


def _step_log(entry: dict) -> dict:
    """The numbers of one logged GRPO step worth keeping (sampled-completion reward, loss, lengths)."""
    keep = ("step", "reward", "reward_std", "loss", "grad_norm", "completions/mean_length")
    return {k: entry[k] for k in keep if k in entry and not (isinstance(entry[k], float) and math.isnan(entry[k]))}
