"""TRL's GRPOTrainer over the rotation angles only (every base weight frozen).

The angles [layers, heads, head_dim/2] are the Parameter of a trainable `HeadEdit` hooked into
the model (`rl.angles`: TRL needs a real PreTrainedModel, so the edit is attached to it, never
registered in it), zero at the start (the unedited model): rollouts come from the edited model
and the trainer's optimizer holds only the angles. A callback clips their gradient and clamps
them to the bounds at every optimizer step. `beta=0`: no reference model (TRL would reload one from the model's
id, impossible for a GGUF or in-memory model); the angle bound is the regularizer.
Every `select_every` steps (and after the last) the current angles are measured greedily on
the selection prompts (validation, else training), fluency guards included, and kept as a
candidate; the best candidate the guard passes, compared with the base model, is the result:
early stopping on validation.
After training the hooks are removed, so the model is exactly the base model
again, and the chosen angles are saved as an ordinary tarot checkpoint.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import asdict

from datasets import Dataset
from tarot_eval.rl.angles import AngleStep, angle_optimizer, trainable_angles, training_arguments
from tarot_eval.rl.generate import STOP, texts_to_score
from tarot_eval.rl.settings import GRPOSettings
from tarot_eval.rl.training import RewardSetting, TrainResult, guarded_selection, save_result
from torch import nn
from transformers import TrainerCallback

from tarot_eval.rewards.scorers import Scorer


class MeasureCandidates(TrainerCallback):
    """Every `every` steps and after the last, the angles' greedy reward on the selection prompts."""

    def __init__(self, angles: nn.Parameter, every: int, measure):
        self.angles, self.every, self.measure = angles, every, measure
        self.candidates: list[dict] = []  # {"step", "score" (GreedyScore with fluency), "angles"}

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0 or state.global_step >= state.max_steps:
            self.candidates.append({"step": state.global_step, "score": self.measure(),
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

    return GRPOConfig(**training_arguments(
        output_dir=output_dir,
        max_steps=settings.steps,
        learning_rate=settings.learning_rate,
        per_device_train_batch_size=settings.num_generations * settings.prompts_per_step,
        num_generations=settings.num_generations,
        max_completion_length=max_new_tokens,
        temperature=settings.temperature,
        beta=0.0,
        use_vllm=False,  # vLLM would not see the hooks
        seed=settings.seed,
    ))


def train(model: nn.Module, tokenizer, setting: RewardSetting, settings: GRPOSettings, out) -> TrainResult:
    """Train the angles with GRPO on the training prompts; save the checkpoint and result.json in `out`."""
    from trl import GRPOTrainer

    if settings.steps < 1:
        raise ValueError(f"steps must be >= 1, got {settings.steps}")
    if settings.num_generations < 2:
        raise ValueError(f"num_generations must be >= 2 (GRPO compares completions of one prompt), "
                         f"got {settings.num_generations}")
    if settings.select_every < 1:
        raise ValueError(f"select_every must be >= 1 step, got {settings.select_every}")
    started = time.perf_counter()
    on = setting.selected_on
    base = setting.measure(model, tokenizer, on, fluency=True)
    before = base if on == "train" else setting.measure(model, tokenizer)
    with trainable_angles(model, settings.layers) as (angles, handle):
        def measure():
            training = model.training
            model.eval()
            try:
                return setting.measure(model, tokenizer, on, handle, fluency=True)
            finally:
                model.train(training)

        candidates = MeasureCandidates(angles, settings.select_every, measure)
        with tempfile.TemporaryDirectory(prefix="tarot-grpo-") as scratch:
            args = grpo_config(settings, setting.max_new_tokens, scratch)
            trainer = GRPOTrainer(
                model=model,
                reward_funcs=[reward_function(setting.scorer)],
                args=args,
                train_dataset=Dataset.from_list([{"prompt": p} for p in setting.train_prompts]),
                processing_class=tokenizer,
                callbacks=[AngleStep(angles, settings.bounds), candidates],
                optimizers=(angle_optimizer(angles, args), None),
            )
            trainer.train()
            history = [_step_log(entry) for entry in trainer.state.log_history if "reward" in entry]
    measured = {c["step"]: c for c in candidates.candidates}  # in step order: ties go to the earliest step
    chosen = guarded_selection(setting, settings.layers, {step: c["angles"] for step, c in measured.items()},
                               {step: c["score"].reward for step, c in measured.items()},
                               {step: c["score"].fluency for step, c in measured.items()},
                               base.reward, base.fluency, "chosen_step")
    details = {**{k: v for k, v in asdict(settings).items() if k not in ("layers", "bounds")},
               "layers": list(settings.layers), "bounds": list(settings.bounds), "grpo_log": history}
    return save_result(model, tokenizer, chosen, settings.bounds, out, "grpo", setting, before,
                       time.perf_counter() - started, details)


def _step_log(entry: dict) -> dict:
    """The numbers of one logged GRPO step worth keeping (sampled-completion reward, loss, lengths)."""
    keep = ("step", "reward", "reward_std", "loss", "grad_norm", "completions/mean_length")
    return {k: entry[k] for k in keep if k in entry and not (isinstance(entry[k], float) and math.isnan(entry[k]))}
