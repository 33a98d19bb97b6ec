"""Offline sentiment scorer: VADER's lexicon and rules, no model weights."""

from __future__ import annotations

from collections.abc import Sequence

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from tarot_eval.rewards.scorers import Scorer, TextScore

# VADER's authors' threshold: compound >= 0.05 is positive.
POSITIVE_COMPOUND = 0.05


class VaderScorer(Scorer):
    """Positivity = (compound + 1) / 2; positive when compound >= 0.05; reward = compound."""

    kind = "sentiment"
    name = "vader"

    def __init__(self):
        self._analyzer = SentimentIntensityAnalyzer()

    def score(self, texts: Sequence[str]) -> list[TextScore]:
        scores = []
        for text in texts:
            compound = self._analyzer.polarity_scores(text)["compound"]
            scores.append(
                TextScore(
                    scorer=self.name,
                    value=(compound + 1.0) / 2.0,
                    flagged=compound >= POSITIVE_COMPOUND,
                    reward=compound,
                )
            )
        return scores
