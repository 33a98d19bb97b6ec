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

from tarot_eval.rewards.fluency import Fluency
from tarot_eval.rewards.scorers import Scorer

MAX_NEW_TOKENS = 24
STOP = "\n\n"
SCORE_PROMPT = {"sentiment": True, "toxicity": False}


def greedy_continuations(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = MAX_NEW_TOKENS,
                         batch_size: int = 16, progress: bool = False) -> list[str]:
    """Each prompt's greedy continuation (decoded, special tokens dropped, cut at the first blank line)."""
    return [texts[0] for texts in continuations(model, tokenizer, prompts, max_new_tokens, batch_size, progress=progress)]


def sampled_continuations(model, tokenizer, prompts: Sequence[str], samples: int, temperature: float,
                          max_new_tokens: int = MAX_NEW_TOKENS, batch_size: int = 16) -> list[list[str]]:
    """`samples` continuations per prompt drawn at `temperature` (full distribution, no top-k/top-p), cut as greedy ones."""
    if samples < 1 or temperature <= 0:
        raise ValueError(f"need samples >= 1 and temperature > 0, got {samples} and {temperature}")
    return continuations(model, tokenizer, prompts, max_new_tokens, batch_size, samples, temperature)


@torch.no_grad()
def continuations(model, tokenizer, prompts: Sequence[str], max_new_tokens: int, batch_size: int,
                  samples: int = 1, temperature: float | None = None, progress: bool = False) -> list[list[str]]:
    """Per prompt, its continuations: greedy (one) without a temperature, else `samples` sampled ones."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_id is None:
        raise ValueError("the tokenizer has neither a pad nor an eos token to pad batches with")
    decoding = (dict(do_sample=False, temperature=None, top_p=None, top_k=None) if temperature is None else
                dict(do_sample=True, temperature=temperature, top_p=1.0, top_k=0, num_return_sequences=samples))
    starts = range(0, len(prompts), batch_size)
    texts: list[str] = []
    for start in tqdm(starts, desc="generate", leave=False, disable=not progress):
        batch = tokenizer(list(prompts[start:start + batch_size]), return_tensors="pt", padding=True,
                          padding_side="left").to(model.device)
        output = model.generate(**batch, max_new_tokens=max_new_tokens, pad_token_id=pad_id, **decoding)
        new_tokens = output[:, batch["input_ids"].shape[1]:]
        texts.extend(text.split(STOP)[0] for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
    per_prompt = 1 if temperature is None else samples
    return [texts[i:i + per_prompt] for i in range(0, len(texts), per_prompt)]


def texts_to_score(kind: str, prompts: Sequence[str], continuations: Sequence[str]) -> list[str]:
    """What the scorer of `kind` rates: prompt + continuation (sentiment) or the continuation (toxicity)."""
    if kind not in SCORE_PROMPT:
        raise ValueError(f"unknown reward kind {kind!r}; choose one of {', '.join(SCORE_PROMPT)}")
    if SCORE_PROMPT[kind]:
        return [prompt + continuation for prompt, continuation in zip(prompts, continuations)]
    return list(continuations)


@dataclass(frozen=True)
class GreedyScore:
    """Mean reward and the share flagged (positive / toxic) of greedy continuations, the texts, their fluency."""

    reward: float
    flagged_rate: float
    continuations: list[str]
    fluency: Fluency | None = None  # measured when asked for (selection needs it)


def greedy_score(model, tokenizer, scorer: Scorer, prompts: Sequence[str], max_new_tokens: int = MAX_NEW_TOKENS,
                 batch_size: int = 16) -> GreedyScore:
    """Generate greedily for `prompts` and rate the results with `scorer` (its kind decides the text)."""
    if not prompts:
        raise ValueError("no prompts to generate for")
    texts = greedy_continuations(model, tokenizer, prompts, max_new_tokens, batch_size)
    scores = scorer.score(texts_to_score(scorer.kind, prompts, texts))
    return GreedyScore(
        reward=sum(s.reward for s in scores) / len(scores),
        flagged_rate=sum(s.flagged for s in scores) / len(scores),
        continuations=texts,
    )
