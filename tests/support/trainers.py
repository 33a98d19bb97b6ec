"""Prompts, guards and a vowel-counting reward for the rl trainer tests."""

from __future__ import annotations

import math

from tarot_eval.rewards.fluency import FluencyGuard
from tarot_eval.rewards.scorers import Scorer, TextScore

PROMPTS = ("The quick brown fox", "Take 1 step. Turn left.", "What color is this?", "Answer: True or False")



VALIDATION = ("Once upon a time", "The answer is", "Hello there, said")



class VowelScorer(Scorer):
    """Toy reward: the share of letters that are vowels (flagged above one half)."""

    kind = "sentiment"
    name = "toy-vowels"

    def score(self, texts):
        scores = []
        for text in texts:
            letters = [c for c in text.lower() if c.isalpha()]
            share = sum(c in "aeiou" for c in letters) / len(letters) if letters else 0.0
            scores.append(TextScore(self.name, share, share > 0.5, share))
        return scores



NO_GUARD = FluencyGuard(max_perplexity_ratio=math.inf, max_distinct_2_drop=math.inf)  # a random model's text is not fluent
