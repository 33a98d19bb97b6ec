"""Reward scorers for generated text: the score record, the scorer interface and the factory.

Two kinds of scorer exist. A "sentiment" scorer rates how positive a text is, a "toxicity"
scorer how toxic it is. Every scorer has a `name`, and every score it gives carries that name,
so no result can claim a scorer it did not use. Scorer implementations live in
`sentiment.py`, `toxicity.py` and `classifier.py` and are imported only when asked for.
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Sequence
from dataclasses import dataclass

KINDS = ("sentiment", "toxicity")
DEFAULT_SCORERS = {"sentiment": "vader", "toxicity": "profanity-check"}

# name -> "module:Class" within tarot_eval.rewards; any other name is a HuggingFace
# sequence-classification model id or local path (see classifier.py).
BUILTIN_SCORERS = {
    "sentiment": {"vader": "sentiment:VaderScorer"},
    "toxicity": {
        "profanity-check": "toxicity:ProfanityCheckScorer",
        "detoxify": "toxicity:DetoxifyScorer",
    },
}


class ScorerUnavailable(RuntimeError):
    """A scorer cannot be built here: unknown name, missing weights, no network."""


@dataclass(frozen=True)
class TextScore:
    """One text's score.

    `value` is the positivity (sentiment) or toxicity (toxicity), in [0, 1].
    `flagged` is the scorer's own decision: judged positive (sentiment) or toxic (toxicity).
    `reward` is what a trainer maximises: for sentiment the scorer's raw positivity signal
    (a classifier's positive-label logit, as in the paper; VADER's compound score), for
    toxicity 1 - toxicity.
    """

    scorer: str
    value: float
    flagged: bool
    reward: float


class Scorer(abc.ABC):
    """Rates texts; `name` identifies the scorer in every score and result it produces."""

    kind: str
    name: str

    @abc.abstractmethod
    def score(self, texts: Sequence[str]) -> list[TextScore]:
        """One TextScore per text, in order."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, name={self.name!r})"


def get_scorer(kind: str, name: str | None = None, **options) -> Scorer:
    """Build the scorer `name` of `kind` ("sentiment" or "toxicity"); None picks the offline default.

    Built-in names: sentiment "vader"; toxicity "profanity-check", "detoxify" (options
    `model_type`, `checkpoint`, `config_dir`, `device`). Any other name is taken as a
    HuggingFace sequence-classification model id or local directory (options `label`,
    `device`, `batch_size`).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown scorer kind {kind!r}; choose one of {', '.join(KINDS)}")
    name = name or DEFAULT_SCORERS[kind]
    target = BUILTIN_SCORERS[kind].get(name)
    if target is None:
        from tarot_eval.rewards.classifier import ClassifierScorer

        return ClassifierScorer(name, kind=kind, **options)
    module_name, class_name = target.split(":")
    module = importlib.import_module(f"tarot_eval.rewards.{module_name}")
    return getattr(module, class_name)(**options)
