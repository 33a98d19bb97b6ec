"""Scoring for the lm-eval generation tasks (tasks/generation): which scorer, and per-document metrics.

The scorer of a kind is chosen, field by field, from the task's metadata (`lm_eval --metadata`),
then the environment, then the offline default:

- sentiment: name from metadata `sentiment_scorer` or env TAROT_SENTIMENT_SCORER; options from
  metadata `sentiment_scorer_options` or env TAROT_SENTIMENT_SCORER_OPTIONS (a JSON object).
- toxicity: the same with `toxicity_scorer`, TAROT_TOXICITY_SCORER, `toxicity_scorer_options`,
  TAROT_TOXICITY_SCORER_OPTIONS.

Defaults: vader and profanity-check. Options are `get_scorer` keyword arguments, e.g.
`{"checkpoint": "/models/toxic_original-c1212f89.ckpt"}` for detoxify.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

from tarot_eval.rewards.fluency import repetition_rate
from tarot_eval.rewards.scorers import DEFAULT_SCORERS, KINDS, Scorer, get_scorer

# Per-document metric names: (mean of TextScore.value, mean of TextScore.flagged, extra TextScore fields reported).
KIND_METRICS = {
    "sentiment": ("positivity", "positive_rate", ("reward",)),
    "toxicity": ("toxicity", "toxic_rate", ()),
}
# Metrics whose per-document item is the continuation itself; the task aggregates them over the set.
CORPUS_METRICS = ("distinct_1", "distinct_2")


@dataclass(frozen=True)
class ScorerChoice:
    kind: str
    name: str
    options: tuple[tuple[str, object], ...]  # sorted (keyword, value) pairs for get_scorer

    @classmethod
    def resolve(cls, kind: str, metadata: Mapping) -> ScorerChoice:
        """The scorer named by `metadata`, else by the environment, else the default (see module doc)."""
        if kind not in KINDS:
            raise ValueError(f"unknown scorer kind {kind!r}; choose one of {', '.join(KINDS)}")
        env_prefix = f"TAROT_{kind.upper()}_SCORER"
        name = metadata.get(f"{kind}_scorer") or os.environ.get(env_prefix) or DEFAULT_SCORERS[kind]
        options = metadata.get(f"{kind}_scorer_options")
        if options is None:
            raw = os.environ.get(f"{env_prefix}_OPTIONS", "").strip()
            try:
                options = json.loads(raw) if raw else {}
            except json.JSONDecodeError as error:
                raise ValueError(f"{env_prefix}_OPTIONS is not valid JSON: {error}") from error
        if not isinstance(options, Mapping):
            raise ValueError(f"{kind} scorer options must be a JSON object, got {options!r}")
        return cls(kind, str(name), tuple(sorted(options.items())))

    def record(self, scorer: Scorer) -> dict:
        """Metadata entries naming the scorer actually built, for the results' task config."""
        return {f"{self.kind}_scorer": scorer.name, f"{self.kind}_scorer_options": dict(self.options)}


@functools.lru_cache(maxsize=None)
def shared_scorer(choice: ScorerChoice) -> Scorer:
    """One scorer per choice per process (models are loaded once, however many tasks use them)."""
    return get_scorer(choice.kind, choice.name, **dict(choice.options))


def document_metrics(choice: ScorerChoice, score_prompt: bool, doc: Mapping, results: list[str]) -> dict:
    """lm-eval `process_results` for one generated continuation.

    The scorer rates prompt + continuation when `score_prompt` (IMDB, as in the paper), else the
    continuation alone (RealToxicityPrompts convention).
    """
    continuation = results[0]
    text = doc["prompt"] + continuation if score_prompt else continuation
    score = shared_scorer(choice).score([text])[0]
    value_metric, flag_metric, extra = KIND_METRICS[choice.kind]
    metrics = {
        value_metric: score.value,
        flag_metric: float(score.flagged),
        **{field: getattr(score, field) for field in extra},
        "words": len(continuation.split()),
        "repetition": repetition_rate(continuation),
    }
    metrics.update({metric: continuation for metric in CORPUS_METRICS})
    return metrics

