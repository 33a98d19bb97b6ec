"""Iterated reward-ranked preference optimization: TRL's DPOTrainer over the rotation angles only.

Each round samples `samples_per_prompt` continuations of every training prompt from the current
edited model, rates them with the reward (optionally less a penalty for phrasing shared with other
prompts' samples, `diversity`), pairs the best with the worst of each prompt (then the second best
with the second worst, ...; ties are not pairs), and takes DPO steps on those pairs
over the angles alone (`rl.angles`: base weights frozen). The reference is the unedited model:
the trainer is built with the angles set to zero, so TRL's `precompute_ref_log_probs` computes
the reference log-probabilities once per round from the base model, then the angles are put back
and trained. After each round the angles are measured greedily on the selection prompts
(validation, else training) with the fluency guards; the best round the guard passes, compared
with the base model, is shipped (`training.guarded_selection`).

Why this spends samples better than GRPO here: every paid-for sample enters a pair and is used for
`epochs` passes of gradient steps, and the pairs' reference log-probabilities cost one forward
pass per round, while a GRPO step uses its group of rollouts for one gradient step and is then
done with them; and unlike BO it uses the gradient through every angle, not one scalar per round.

Resumable: each finished round is a line of the run record (`trace.jsonl`, its angles under
`points/`), so a killed run resumes after its last finished round; `rounds` may grow on resume,
any other changed setting is refused.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict

import torch
from datasets import Dataset
from tarot_eval.rl.angles import AngleStep, angle_optimizer, trainable_angles, training_arguments
from tarot_eval.rl.generate import GreedyScore, sampled_continuations, texts_to_score
from tarot_eval.rl.settings import DPOSettings
from tarot_eval.rl.training import RewardSetting, TrainResult, guarded_selection, save_result, timed_entry
from torch import nn
from tqdm.auto import trange
from transformers import PrinterCallback

from tarot_eval.edit import checkpoint
from tarot_eval.optimize.record import TRAIN_VALUE, RunRecord
from tarot_eval.rewards.fluency import Fluency, shared_ngram_share


def ranking_values(samples: list[list[str]], rewards: list[list[float]], diversity: float) -> list[list[float]]:
    """What a prompt's samples are ranked by: the reward, less `diversity` x the sample's share of bigrams
    that another prompt's samples also contain (`fluency.shared_ngram_share`)."""
    if not diversity:
        return rewards
    shared = shared_ngram_share(samples, 2)
    return [[r - diversity * s for r, s in zip(values, shares)] for values, shares in zip(rewards, shared)]


def preference_pairs(prompts, samples, rewards, pairs_per_prompt: int, min_gap: float) -> list[dict]:
    """{"prompt", "chosen", "rejected", "gap"} from each prompt's samples ranked by `rewards` (high first)."""
    pairs = []
    for prompt, texts, values in zip(prompts, samples, rewards):
        order = sorted(range(len(texts)), key=lambda i: (-values[i], i))
        for rank in range(min(pairs_per_prompt, len(order) // 2)):
            high, low = order[rank], order[-1 - rank]
            if values[high] - values[low] > min_gap and texts[high] != texts[low]:
                pairs.append({"prompt": prompt, "chosen": texts[high], "rejected": texts[low],
                              "gap": values[high] - values[low]})
    return pairs


def dpo_config(settings: DPOSettings, round_index: int, n_pairs: int, output_dir: str):
    from trl import DPOConfig

    return DPOConfig(**training_arguments(
        output_dir=output_dir,
        num_train_epochs=settings.epochs,
        per_device_train_batch_size=min(settings.pairs_per_step, n_pairs),
        learning_rate=settings.learning_rate,
        beta=settings.beta,
        precompute_ref_log_probs=True,  # once per round, from the unedited model (see `_dpo_round`)
        seed=settings.seed * 1000 + round_index,
        disable_tqdm=True,
    ))


def _dpo_round(model: nn.Module, tokenizer, angles: nn.Parameter, pairs: list[dict], settings: DPOSettings,
               round_index: int) -> list[dict]:
    """DPO steps on `pairs`, the reference being the unedited model; returns the logged loss/margins per step."""
    from trl import DPOTrainer

    current = angles.detach().clone()
    patched_forward = "forward" in vars(model)  # TRL patches model.forward (its fused LM head); undone after
    with tempfile.TemporaryDirectory(prefix="tarot-dpo-") as scratch:
        with torch.no_grad():
            angles.zero_()
        try:  # built on the unedited model: the reference log-probabilities are the base model's
            args = dpo_config(settings, round_index, len(pairs), scratch)
            trainer = DPOTrainer(model=model, args=args,
                                 train_dataset=Dataset.from_list([{k: p[k] for k in ("prompt", "chosen", "rejected")}
                                                                  for p in pairs]),
                                 processing_class=tokenizer, callbacks=[AngleStep(angles, settings.bounds)],
                                 optimizers=(angle_optimizer(angles, args), None))
        finally:
            with torch.no_grad():
                angles.copy_(current)
        trainer.remove_callback(PrinterCallback)  # it prints every step's log dict; the rounds' tqdm bar is enough
        try:
            trainer.train()
        finally:
            if not patched_forward:
                vars(model).pop("forward", None)
    keep = ("loss", "rewards/margins", "rewards/accuracies", "grad_norm")
    return [{k: entry[k] for k in keep if k in entry} for entry in trainer.state.log_history if "loss" in entry]


def train(model: nn.Module, tokenizer, setting: RewardSetting, settings: DPOSettings, out) -> TrainResult:
    """Run (or resume) the rounds in `out`; save the chosen round's checkpoint and result.json there."""
    if settings.rounds < 1 or settings.samples_per_prompt < 2 or settings.pairs_per_prompt < 1 or settings.diversity < 0:
        raise ValueError(f"need rounds >= 1, samples_per_prompt >= 2, pairs_per_prompt >= 1, diversity >= 0; got "
                         f"{settings.rounds}, {settings.samples_per_prompt}, {settings.pairs_per_prompt}, "
                         f"{settings.diversity}")
    config = {"trainer": "dpo", **asdict(settings), **setting.describe(), "base_model": checkpoint.model_identity(model)}
    config.pop("rounds")  # a resumed run may add rounds
    with RunRecord(out, config) as record:  # a new run that fails before its first round leaves no record
        return _train(model, tokenizer, setting, settings, out, record)


def _train(model, tokenizer, setting: RewardSetting, settings: DPOSettings, out, record: RunRecord) -> TrainResult:
    on = setting.selected_on
    started = time.perf_counter()
    base = record.score("base:train", lambda: timed_entry(lambda: setting.measure(model, tokenizer, fluency=on == "train")))
    base_on = base if on == "train" else record.score(
        f"base:{on}", lambda: timed_entry(lambda: setting.measure(model, tokenizer, on, fluency=True)))
    done = len(record.trace)
    initial = record.point(done - 1) if done else None
    prompts = setting.train_prompts
    with trainable_angles(model, settings.layers, initial) as (angles, handle):
        for round_index in trange(done, settings.rounds, desc="dpo rounds", initial=done, total=settings.rounds):
            round_started = time.perf_counter()
            model.eval()
            torch.manual_seed(settings.seed * 1000 + round_index)
            samples = sampled_continuations(model, tokenizer, prompts, settings.samples_per_prompt,
                                            settings.temperature, setting.max_new_tokens, setting.batch_size)
            rewards = [[s.reward for s in setting.scorer.score(texts_to_score(setting.scorer.kind, [p] * len(texts), texts))]
                       for p, texts in zip(prompts, samples)]
            ranked = ranking_values(samples, rewards, settings.diversity)
            pairs = preference_pairs(prompts, samples, ranked, settings.pairs_per_prompt, settings.min_gap)
            log = _dpo_round(model, tokenizer, angles, pairs, settings, round_index) if pairs else []
            model.eval()
            measured = setting.measure(model, tokenizer, on, handle, fluency=True)
            sampled = [value for values in rewards for value in values]
            record.append({TRAIN_VALUE: sum(sampled) / len(sampled), "pairs": len(pairs),
                           "selection": measured.reward, "flagged_rate": measured.flagged_rate,
                           "fluency": measured.fluency.as_dict(), "dpo_log": log,
                           "wall_s": round(time.perf_counter() - round_started, 3)},
                          {"x": angles.detach().clone()})
    rounds = range(settings.rounds)
    chosen = guarded_selection(
        setting, settings.layers, {r: record.point(r).float() for r in rounds},
        {r: record.trace[r]["selection"] for r in rounds}, {r: Fluency(**record.trace[r]["fluency"]) for r in rounds},
        base_on["reward"], Fluency(**base_on["fluency"]), "chosen_round")
    before = GreedyScore(base["reward"], base["flagged_rate"], base["continuations"])
    details = {**{k: v for k, v in asdict(settings).items() if k not in ("layers", "bounds")},
               "layers": list(settings.layers), "bounds": list(settings.bounds),
               "rounds_log": [{k: entry[k] for k in ("index", "train", "pairs", "selection", "wall_s")}
                              for entry in record.trace[:settings.rounds]],
               "session_seconds": round(time.perf_counter() - started, 2)}
    seconds = sum(entry.get("wall_s", 0.0) for entry in [*record.scores.values(), *record.trace[:settings.rounds]])
    return save_result(model, tokenizer, chosen, settings.bounds, out, "dpo", setting, before, seconds, details)

