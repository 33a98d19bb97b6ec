"""Fluency guards for generated text: perplexity under a base model, distinct-n, repetition.

A reward can be gamed by degenerate text ("great great great ..."); these numbers show it.
Words are whitespace-separated and lower-cased for distinct-n and repetition.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm


def ngrams(text: str, n: int) -> list[tuple[str, ...]]:
    if n < 1:
        raise ValueError(f"n-gram size must be >= 1, got {n}")
    words = text.lower().split()
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


def shared_ngram_share(groups: Sequence[Sequence[str]], n: int = 2) -> list[list[float]]:
    """For each text of each group, the share of its n-grams that also occur in a text of another group
    (0.0 for a text with none): how much of it is phrasing the other groups use too."""
    grams = [[set(ngrams(text, n)) for text in texts] for texts in groups]
    groups_of: dict[tuple[str, ...], set[int]] = {}
    for index, sets in enumerate(grams):
        for gram in set().union(*sets):
            groups_of.setdefault(gram, set()).add(index)
    return [[sum(len(groups_of[g]) > 1 for g in own) / len(own) if own else 0.0 for own in sets]
            for sets in grams]


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct n-grams over all n-grams across `texts` (Li et al. 2016); 0.0 when there are none."""
    grams = [gram for text in texts for gram in ngrams(text, n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repetition_rate(text: str, n: int = 1) -> float:
    """Share of a text's n-grams that repeat an earlier one in the same text; 0.0 when it has none."""
    grams = ngrams(text, n)
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


@dataclass(frozen=True)
class Perplexity:
    """Per-text perplexity (nan for an empty continuation) and the token-weighted corpus perplexity."""

    per_text: list[float]
    corpus: float


@torch.no_grad()
def continuation_perplexity(model, tokenizer, prompts: Sequence[str], continuations: Sequence[str]) -> Perplexity:
    """Perplexity of each continuation given its prompt under `model` (e.g. the unedited base model).

    Prompt and continuation are tokenized separately and joined, so the continuation's tokens
    are exactly those the model is asked to predict.
    """
    if len(prompts) != len(continuations):
        raise ValueError(f"{len(prompts)} prompts but {len(continuations)} continuations")
    per_text, total_nll, total_tokens = [], 0.0, 0
    for prompt, continuation in tqdm(list(zip(prompts, continuations)), desc="perplexity", leave=False):
        prompt_ids = tokenizer(prompt, return_tensors="pt").input_ids
        continuation_ids = tokenizer(continuation, add_special_tokens=False, return_tensors="pt").input_ids
        if continuation_ids.shape[1] == 0:
            per_text.append(math.nan)
            continue
        if prompt_ids.shape[1] == 0:
            raise ValueError("empty prompt and a tokenizer that adds no BOS: the first token has no context")
        input_ids = torch.cat([prompt_ids, continuation_ids], dim=1).to(model.device)
        labels = input_ids.clone()
        labels[:, : prompt_ids.shape[1]] = -100
        mean_nll = float(model(input_ids=input_ids, labels=labels).loss)
        count = continuation_ids.shape[1]
        per_text.append(math.exp(mean_nll))
        total_nll += mean_nll * count
        total_tokens += count
    corpus = math.exp(total_nll / total_tokens) if total_tokens else math.nan
    return Perplexity(per_text=per_text, corpus=corpus)


@dataclass(frozen=True)
class Fluency:
    """The guards shown beside a reward for one set of continuations."""

    perplexity: float  # token-weighted, under the unedited model; nan when every continuation is empty
    distinct_2: float
    repetition: float  # mean over continuations
    words: float  # mean continuation length

    def as_dict(self) -> dict:
        return {"perplexity": self.perplexity, "distinct_2": self.distinct_2, "repetition": self.repetition,
                "words": self.words}


def measure_fluency(base_model, tokenizer, prompts: Sequence[str], continuations: Sequence[str]) -> Fluency:
    """Perplexity of the continuations under `base_model` (the unedited model), distinct-2, repetition, length."""
    if not continuations:
        raise ValueError("no continuations to measure")
    perplexity = continuation_perplexity(base_model, tokenizer, prompts, continuations).corpus
    return Fluency(
        perplexity=perplexity,
        distinct_2=distinct_n(continuations, 2),
        repetition=sum(repetition_rate(text) for text in continuations) / len(continuations),
        words=sum(len(text.split()) for text in continuations) / len(continuations),
    )


@dataclass(frozen=True)
class FluencyGuard:
    """Selection refuses a candidate whose validation text is much less fluent than the base model's."""

    max_perplexity_ratio: float = 1.5  # perplexity under the unedited model, candidate / base
    # distinct-2 below base by more than this. Tighter than the held-out target (base - 0.05): distinct-2 over 100
    # validation continuations is noisy, and an IMDB edit whose validation distinct-2 rose fell 0.058 held-out (docs/rl.md)
    max_distinct_2_drop: float = 0.02

    def rejects(self, candidate: Fluency, base: Fluency) -> str | None:
        """Why `candidate` is refused against `base`, or None when it passes."""
        if math.isnan(candidate.perplexity):
            return "every continuation is empty"
        if candidate.perplexity > self.max_perplexity_ratio * base.perplexity:
            return f"perplexity {candidate.perplexity:.3g} > {self.max_perplexity_ratio} x base {base.perplexity:.3g}"
        if candidate.distinct_2 < base.distinct_2 - self.max_distinct_2_drop:
            return f"distinct-2 {candidate.distinct_2:.3f} < base {base.distinct_2:.3f} - {self.max_distinct_2_drop}"
        return None
