"""The rl trainers' settings, declared once: each field's default and help, read by the trainers and, as flags,
by `tarot-eval rl`."""

from __future__ import annotations

from dataclasses import dataclass

from tarot_eval.settings import setting

LR_HELP = "dpo, grpo: Adam learning rate on the angles in radians (default: dpo 0.02, grpo 0.05)"
TEMPERATURE_HELP = "dpo, grpo: sampling temperature (default: dpo 1.0, grpo 0.7)"


@dataclass(frozen=True)
class DPOSettings:
    """Rounds of reward-ranked preference pairs, each trained with TRL's DPOTrainer on the angles."""

    layers: tuple[int, ...]
    bounds: tuple[float, float]
    rounds: int = setting(6, "rounds of sampling, ranking and training (the command's --budget)")
    samples_per_prompt: int = setting(8, "dpo: sampled continuations per prompt and round")
    temperature: float = setting(1.0, TEMPERATURE_HELP)
    pairs_per_prompt: int = setting(2, "dpo: preference pairs per prompt and round (best vs worst, second best vs second worst)")
    min_gap: float = setting(1e-6, "a pair's ranking-value difference (reward less the diversity penalty) must exceed this")
    learning_rate: float = setting(0.02, LR_HELP, flag="--lr")
    beta: float = setting(0.1, "dpo: strength of the pull towards the unedited model (DPO's KL strength)")
    epochs: int = setting(2, "dpo: passes over a round's pairs")
    pairs_per_step: int = setting(16, "pairs per optimizer step")
    seed: int = 0
    # 0.5: a template sample (bigram share ~0.8) loses ~0.4, about half a typical spread of rewards within a prompt,
    # while natural text (share 0.14 +- 0.11 over 32 IMDB reviews cut into 8 pieces of 14 words) moves by a few hundredths
    diversity: float = setting(0.5, "dpo: weight of a sample's share of bigrams other prompts' samples also use, taken off its "
                                    "reward when ranking pairs, so phrasing that fits every prompt stops winning "
                                    "(0: the reward alone)")


@dataclass(frozen=True)
class GRPOSettings:
    """TRL's GRPOTrainer on the angles, candidates measured on the selection prompts as it goes."""

    layers: tuple[int, ...]
    bounds: tuple[float, float]
    steps: int = setting(20, "optimizer steps (the command's --budget)")
    learning_rate: float = setting(0.05, LR_HELP, flag="--lr")
    # 64 rollouts per step: with 16 the sampled reward did not trend on SmolLM2 (docs/rl.md)
    num_generations: int = setting(8, "grpo: sampled completions per prompt (the GRPO group)")
    prompts_per_step: int = setting(8, "grpo: prompts per optimizer step")
    temperature: float = setting(0.7, TEMPERATURE_HELP)
    select_every: int = setting(4, "grpo: steps between candidates measured on validation (early stopping)")
    seed: int = 0


# The flags `tarot-eval rl` offers for each trainer (the rest are internal or come from other groups);
# --lr and --temperature are shared, with each trainer's own default.
DPO_FLAGS = ("samples_per_prompt", "pairs_per_prompt", "beta", "epochs", "diversity", "learning_rate", "temperature")
GRPO_FLAGS = ("num_generations", "prompts_per_step", "select_every", "learning_rate", "temperature")
