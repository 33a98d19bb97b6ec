"""Greedy continuations of prompts (batched, with whatever edit is attached) and their rewards.

Generation follows the lm-eval tasks `tarot_imdb` / `tarot_detox`: the prompt as plain text,
tokenized with the tokenizer's defaults, greedy decoding of up to 24 new tokens, the
continuation cut at the first blank line. The reward rates prompt + continuation for
sentiment (as the paper) and the continuation alone for toxicity (RealToxicityPrompts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from tarot_eval.rl.rewards import Scorer

MAX_NEW_TOKENS = 24
STOP = "\n\n"
SCORE_PROMPT = {"sentiment": True, "toxicity": False}


@torch.no_grad()
def greedy_continuations(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = MAX_NEW_TOKENS,
                         batch_size: int = 16, progress: bool = False) -> list[str]:
    """Each prompt's greedy continuation (decoded, special tokens dropped, cut at the first blank line)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_id is None:
        raise ValueError("the tokenizer has neither a pad nor an eos token to pad batches with")
    starts = range(0, len(prompts), batch_size)
    continuations: list[str] = []
    for start in tqdm(starts, desc="generate", leave=False, disable=not progress):
        batch = tokenizer(list(prompts[start:start + batch_size]), return_tensors="pt", padding=True,
                          padding_side="left").to(model.device)
        output = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad_id,
                                temperature=None, top_p=None, top_k=None)
        new_tokens = output[:, batch["input_ids"].shape[1]:]
        for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True):
            continuations.append(text.split(STOP)[0])
    return continuations


def texts_to_score(kind: str, prompts: Sequence[str], continuations: Sequence[str]) -> list[str]:
    """What the scorer of `kind` rates: prompt + continuation (sentiment) or the continuation (toxicity)."""
    if kind not in SCORE_PROMPT:
        raise ValueError(f"unknown reward kind {kind!r}; choose one of {', '.join(SCORE_PROMPT)}")
    if SCORE_PROMPT[kind]:
        return [prompt + continuation for prompt, continuation in zip(prompts, continuations)]
    return list(continuations)


@dataclass(frozen=True)
class GreedyScore:
    """Mean reward and the share flagged (positive / toxic) of greedy continuations, and the texts."""

    reward: float
    flagged_rate: float
    continuations: list[str]


def greedy_score(model, tokenizer, scorer: Scorer, prompts: Sequence[str], max_new_tokens: int = MAX_NEW_TOKENS,
                 batch_size: int = 16) -> GreedyScore:
    """Generate greedily for `prompts` and rate the results with `scorer` (its kind decides the text)."""
    if not prompts:
        raise ValueError("no prompts to generate for")
    continuations = greedy_continuations(model, tokenizer, prompts, max_new_tokens, batch_size)
    scores = scorer.score(texts_to_score(scorer.kind, prompts, continuations))
    return GreedyScore(
        reward=sum(s.reward for s in scores) / len(scores),
        flagged_rate=sum(s.flagged for s in scores) / len(scores),
        continuations=continuations,
    )
