"""What both rl trainers share: the reward setting they train on, and how a result is saved.

The train reward is always measured the same way, for the base model and for the trained
edit alike: the mean scorer reward of greedy continuations of the training prompts. An edit
whose train reward does not beat the base model's is still saved, with `improved: false`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from tarot_eval import checkpoint
from tarot_eval.edit import HeadEdit, attached
from tarot_eval.rl.generate import MAX_NEW_TOKENS, GreedyScore, greedy_score
from tarot_eval.rl.rewards import Scorer

RESULT_NAME = "result.json"
EXAMPLES = 3


@dataclass(frozen=True)
class RewardSetting:
    """The scorer and training prompts a trainer maximizes the reward on; `prompts` describes their origin."""

    scorer: Scorer
    train_prompts: tuple[str, ...]
    prompts: dict = field(default_factory=dict)  # e.g. {"set", "source", "seed", "ids"}
    max_new_tokens: int = MAX_NEW_TOKENS
    batch_size: int = 16

    def __post_init__(self):
        if not self.train_prompts:
            raise ValueError("no training prompts")

    def measure(self, model: nn.Module, tokenizer) -> GreedyScore:
        """Greedy train reward of `model` as it is now (with whatever edit is attached)."""
        return greedy_score(model, tokenizer, self.scorer, self.train_prompts, self.max_new_tokens, self.batch_size)

    def describe(self) -> dict:
        return {
            "reward": self.scorer.kind,
            "scorer": self.scorer.name,
            "prompts": self.prompts,
            "n_train": len(self.train_prompts),
            "max_new_tokens": self.max_new_tokens,
        }


@dataclass
class TrainResult:
    directory: Path
    trainer: str
    scorer: str
    before: dict  # {"reward", "flagged_rate"} of the base model on the training prompts
    after: dict  # the same for the saved edit
    improved: bool
    seconds: float
    examples: list[dict]  # {"prompt", "before", "after"} greedy continuations


def save_result(model: nn.Module, tokenizer, edit: HeadEdit, bounds: tuple[float, float], out: str | Path,
                trainer: str, setting: RewardSetting, before: GreedyScore, seconds: float,
                details: dict) -> TrainResult:
    """Measure `edit`'s train reward, save it as a checkpoint in `out` (provenance included) and result.json."""
    with attached(model, edit):
        after = setting.measure(model, tokenizer)
    summary = {
        "before": {"reward": before.reward, "flagged_rate": before.flagged_rate},
        "after": {"reward": after.reward, "flagged_rate": after.flagged_rate},
    }
    improved = after.reward > before.reward
    provenance = {"trainer": trainer, **setting.describe(), **details, "train_reward": summary, "improved": improved,
                  "seconds": round(seconds, 2)}
    checkpoint.save(out, edit, model, bounds, provenance)
    examples = [
        {"prompt": prompt, "before": old, "after": new}
        for prompt, old, new in list(zip(setting.train_prompts, before.continuations, after.continuations))[:EXAMPLES]
    ]
    result = TrainResult(Path(out), trainer, setting.scorer.name, summary["before"], summary["after"], improved,
                         round(seconds, 2), examples)
    payload = {**provenance, "examples": examples}
    (Path(out) / RESULT_NAME).write_text(json.dumps(payload, indent=2) + "\n")
    return result
