"""The paper's setting: the greedy train reward as a black-box objective of the angles, maximized by BO.

Reuses the optimizer's BoTorch loop, search spaces, run record and candidate pool unchanged, so a
run killed part-way resumes from its `--out` directory (same config, validation scores included)
and a different config there is refused. The `select_k` points with the best train reward are
compared on the validation prompts and the best there that the fluency guard passes is the
candidate (without validation prompts: the best train reward; ties: the earliest); no test
prompt is ever generated for.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from tarot_eval.rl.generate import GreedyScore
from tarot_eval.rl.training import RewardSetting, TrainResult, guarded_selection, save_result, timed_entry
from torch import nn

from tarot_eval.edit import checkpoint
from tarot_eval.edit.head_edit import HeadEdit
from tarot_eval.objective import selection
from tarot_eval.objective.function import ObjectiveValue
from tarot_eval.optimize import bo as bayesian
from tarot_eval.optimize.record import RunRecord
from tarot_eval.optimize.search_space import SearchSpace
from tarot_eval.rewards.fluency import Fluency


@dataclass(frozen=True)
class BOTrainSettings:
    layers: tuple[int, ...]
    bounds: tuple[float, float]
    budget: int  # reward evaluations, random initial points included (the command's default: rl/command.py)
    space: str = "layer"  # one angle per layer: low-dimensional enough for the GP to learn
    seed: int = 0
    select_k: int = 5  # best-by-train points compared on the validation prompts
    bo: bayesian.BOSettings = field(default_factory=bayesian.BOSettings)


def train(model: nn.Module, tokenizer, setting: RewardSetting, settings: BOTrainSettings, out) -> TrainResult:
    """Run (or resume) BO in `out`; save the best point's checkpoint and result.json there."""
    if settings.budget < 1:
        raise ValueError(f"budget must be at least 1 evaluation, got {settings.budget}")
    edit = HeadEdit.identity(model, "rotation", settings.layers)
    space = SearchSpace.parse(settings.space, "rotation", edit.params.shape, settings.bounds, seed=settings.seed)
    config = {"trainer": "bo", **asdict(settings), **setting.describe(), "base_model": checkpoint.model_identity(model)}
    config.pop("budget")  # a resumed run may extend its budget
    with RunRecord(out, config) as record:  # a new run that fails before its first evaluation leaves no record
        started = time.perf_counter()
        with edit.attached(model) as handle:
            def measure(params, split: str = "train", fluency: bool = False) -> GreedyScore:
                handle.params = params
                return setting.measure(model, tokenizer, split, handle, fluency)

            identity = edit.params.clone()
            base = record.score("base:train", lambda: timed_entry(lambda: measure(identity)))

            def evaluate(x) -> ObjectiveValue:
                score = measure(space.to_params(x).float())
                return ObjectiveValue(score.reward, score.flagged_rate)

            bayesian.run(evaluate, space, record, settings.budget, settings.seed, settings.bo)
            train_scores = record.values()
            pool = selection.candidates(train_scores, settings.select_k)
            params = {i: space.to_params(record.point(i)).float().clone() for i in pool}
            if setting.validation_prompts:
                def validation(key: str, params_) -> dict:
                    return record.score(key, lambda: timed_entry(lambda: measure(params_, "validation", fluency=True)))

                base_entry = validation("base:validation", identity)
                entries = {i: validation(f"validation:{i}", params[i]) for i in pool}
                base_reward, rewards = base_entry["reward"], {i: entries[i]["reward"] for i in pool}
                fluency = {i: Fluency(**entries[i]["fluency"]) for i in pool if "fluency" in entries[i]}
                base_fluency = Fluency(**base_entry["fluency"]) if "fluency" in base_entry else None
            else:  # chosen on the training reward alone, as the paper (no fluency guard)
                base_reward, rewards, fluency, base_fluency = base["reward"], {i: train_scores[i] for i in pool}, {}, None
        chosen = guarded_selection(setting, settings.layers, params, rewards, fluency, base_reward, base_fluency,
                                   "chosen_evaluation", train_scores)
        before = GreedyScore(base["reward"], base["flagged_rate"], base["continuations"])
        details = {
            "search_space": space.spec,
            "layers": list(settings.layers),
            "bounds": list(settings.bounds),
            "seed": settings.seed,
            "budget": settings.budget,
            "evaluations": len(record.trace),
            "select_k": settings.select_k,
            "bo": settings.bo.as_dict(),
            "surrogate": bayesian.surrogate_quality(record.trace),
            "session_seconds": round(time.perf_counter() - started, 2),
        }
        # every reward evaluation of every session of a resumed run
        seconds = sum(entry.get("wall_s", 0.0) for entry in [*record.scores.values(), *record.trace])
        return save_result(model, tokenizer, chosen, settings.bounds, out, "bo", setting, before, seconds, details)

