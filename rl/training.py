"""What every rl trainer shares: the reward setting they train on, how the result is chosen and saved.

The reward is always measured the same way, for the base model and every candidate edit alike:
the mean scorer reward of greedy continuations of a prompt set. A trainer maximizes it on the
training prompts; the result is chosen on validation prompts held out from the same pool (never
the test prompts), as `tarot-eval optimize` does. When no candidate beats the base model on the
selection prompts, the checkpoint holds the identity edit (`shipped: identity`, `improved: false`)
unless `ship_unimproved` is set. Saving holds the `--out` folder's `run_lock` (BO holds it from the
start through its run record), so two runs never interleave their checkpoint and result.json.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from tarot_eval.rl.generate import MAX_NEW_TOKENS, GreedyScore, greedy_score
from torch import nn

from tarot_eval import run_lock
from tarot_eval.edit import checkpoint
from tarot_eval.edit.head_edit import AttachedEdit, HeadEdit
from tarot_eval.objective import selection
from tarot_eval.rewards.fluency import Fluency, FluencyGuard, measure_fluency
from tarot_eval.rewards.scorers import Scorer

RESULT_NAME = "result.json"
EXAMPLES = 3


@dataclass(frozen=True)
class RewardSetting:
    """The scorer, the training and validation prompts, and how a trainer's result is chosen."""

    scorer: Scorer
    train_prompts: tuple[str, ...]
    prompts: dict = field(default_factory=dict)  # e.g. {"set", "source", "seed", "ids"}
    max_new_tokens: int = MAX_NEW_TOKENS
    batch_size: int = 16
    validation_prompts: tuple[str, ...] = ()  # from the training pool; empty: choose on the training prompts
    ship_unimproved: bool = False
    guard: FluencyGuard = field(default_factory=FluencyGuard)

    def __post_init__(self):
        if not self.train_prompts:
            raise ValueError("no training prompts")
        overlap = set(self.train_prompts) & set(self.validation_prompts)
        if overlap:
            raise ValueError(f"{len(overlap)} prompts are both training and validation prompts")

    @property
    def selected_on(self) -> str:
        return "validation" if self.validation_prompts else "train"

    def measure(self, model: nn.Module, tokenizer, split: str = "train", edit: AttachedEdit | None = None,
                fluency: bool = False) -> GreedyScore:
        """Greedy reward of `model` as it is now (with whatever edit is attached) on the `split` prompts;
        with `fluency`, also the guards, perplexity rated by the model with `edit` suspended (the unedited one)."""
        prompts = {"train": self.train_prompts, "validation": self.validation_prompts}[split]
        score = greedy_score(model, tokenizer, self.scorer, prompts, self.max_new_tokens, self.batch_size)
        if not fluency:
            return score
        with edit.suspended() if edit is not None else nullcontext():
            return replace(score, fluency=measure_fluency(model, tokenizer, prompts, score.continuations))

    def describe(self) -> dict:
        return {
            "reward": self.scorer.kind,
            "scorer": self.scorer.name,
            "prompts": self.prompts,
            "n_train": len(self.train_prompts),
            "n_val": len(self.validation_prompts),
            "selected_on": self.selected_on,
            "ship_unimproved": self.ship_unimproved,
            "max_new_tokens": self.max_new_tokens,
            "guard": asdict(self.guard),
        }


@dataclass(frozen=True)
class Selection:
    """The trainer's chosen candidate and the rewards that chose it (on `RewardSetting.selected_on`)."""

    candidate: HeadEdit
    base_reward: float
    chosen_reward: float
    details: dict = field(default_factory=dict)  # e.g. the other candidates' rewards


def timed_entry(measure) -> dict:
    """`measure()`'s GreedyScore as a run-record entry (JSON values), with the seconds it took."""
    start = time.perf_counter()
    score = measure()
    fluency = {"fluency": score.fluency.as_dict()} if score.fluency else {}
    return {"reward": score.reward, "flagged_rate": score.flagged_rate, "continuations": score.continuations,
            **fluency, "wall_s": round(time.perf_counter() - start, 4)}


def guarded_selection(setting: RewardSetting, layers: Sequence[int], params: Mapping[int, torch.Tensor],
                      rewards: Mapping[int, float], fluency: Mapping[int, Fluency], base_reward: float,
                      base_fluency: Fluency | None, label: str,
                      train_scores: Sequence[float] | None = None) -> Selection:
    """The candidate (`params` by key) to ship: the best reward among those the fluency guard passes;
    the identity when it passes none. `label` names the key in the details (e.g. "chosen_round")."""
    if base_fluency is None:  # a record from before the guard: nothing to compare with
        fluency = {}
    rejected = {i: why for i in params if i in fluency and (why := setting.guard.rejects(fluency[i], base_fluency))}
    passing = [i for i in params if i not in rejected]
    best = selection.choose(passing, rewards, train_scores) if passing else None
    details = {label: best, "candidates": {str(i): rewards[i] for i in params},
               "fluency": {"base": base_fluency.as_dict() if base_fluency else None,
                           **{str(i): f.as_dict() for i, f in fluency.items()}},
               "rejected": {str(i): why for i, why in rejected.items()}}
    if best is None:
        identity = next(iter(params.values())).new_zeros(next(iter(params.values())).shape)
        return Selection(HeadEdit("rotation", tuple(layers), identity), base_reward, base_reward, details)
    return Selection(HeadEdit("rotation", tuple(layers), params[best]), base_reward, rewards[best], details)


@dataclass
class TrainResult:
    directory: Path
    trainer: str
    scorer: str
    before: dict  # {"reward", "flagged_rate"} of the base model on the training prompts
    after: dict  # the same for the saved edit
    selection: dict  # {"on", "base", "chosen", ...}: the rewards the choice was made on
    improved: bool  # the chosen candidate beats the base model on the selection prompts
    shipped: str  # "chosen", or "identity" when not improved (and not ship_unimproved)
    seconds: float
    examples: list[dict]  # {"prompt", "before", "after"} greedy continuations


def save_result(model: nn.Module, tokenizer, chosen: Selection, bounds: tuple[float, float], out: str | Path,
                trainer: str, setting: RewardSetting, before: GreedyScore, seconds: float,
                details: dict) -> TrainResult:
    """Save the chosen edit (or the identity when it did not improve) in `out` with provenance and result.json."""
    with run_lock.hold(out):
        improved, shipped = selection.decide(chosen.chosen_reward, chosen.base_reward, setting.ship_unimproved)
        candidate = chosen.candidate
        edit = candidate if shipped == "chosen" else HeadEdit.identity(model, candidate.method, candidate.layers)
        if shipped == "chosen":
            with edit.attached(model):
                after = setting.measure(model, tokenizer)
        else:
            after = before
        summary = {
            "before": {"reward": before.reward, "flagged_rate": before.flagged_rate},
            "after": {"reward": after.reward, "flagged_rate": after.flagged_rate},
        }
        chosen_by = {"on": setting.selected_on, "base": chosen.base_reward, "chosen": chosen.chosen_reward,
                     **chosen.details}
        provenance = {"trainer": trainer, **setting.describe(), **details, "train_reward": summary,
                      "selection": chosen_by, "improved": improved, "shipped": shipped, "seconds": round(seconds, 2)}
        checkpoint.save(out, edit, model, bounds, provenance)
        examples = [
            {"prompt": prompt, "before": old, "after": new}
            for prompt, old, new in list(zip(setting.train_prompts, before.continuations, after.continuations))[:EXAMPLES]
        ]
        result = TrainResult(Path(out), trainer, setting.scorer.name, summary["before"], summary["after"], chosen_by,
                             improved, shipped, round(seconds, 2), examples)
        payload = {**provenance, "examples": examples}
        (Path(out) / RESULT_NAME).write_text(json.dumps(payload, indent=2) + "\n")
        return result
