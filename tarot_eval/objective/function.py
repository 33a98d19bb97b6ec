"""The optimization objective: edit parameters -> its value on a fixed example set.

Scoring (tarot_eval/objective/scoring.py) walks the prefix tree of the examples' requests, so each distinct token
is computed about once per evaluation. Per document two log-probabilities are kept: of each
whole choice (summed, lm-eval's `acc`), and of each choice's first token over the whole vocabulary.

Objectives (all "higher is better", averaged over documents):
- `choice-prob` (default): probability of the right answer among the choices,
  softmax over the choices' summed log-likelihoods.
- `answer-token-prob`: the paper's objective, probability of the right answer's first
  token over the whole vocabulary; where two choices share a first token it uses the
  probability of the whole right continuation instead (the first token cannot tell them apart).
Gradient training minimizes the mean negative log of the same per-document quantity
(cross-entropy over the choices for `choice-prob`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tarot_eval.objective.scoring import OBJECTIVES, ChoiceScorer, Scores


@dataclass
class ObjectiveValue:
    """Objective value and accuracy of one parameter setting on one example set."""

    value: float
    accuracy: float


class Objective:
    """Maps edit parameters to the objective on a fixed example set (the edit is already attached)."""

    def __init__(self, scorer: ChoiceScorer, handle, objective: str = "choice-prob", offsets: list[torch.Tensor] | None = None):
        if objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {objective!r}; expected one of {OBJECTIVES}")
        self.scorer = scorer
        self.handle = handle  # tarot_eval.edit.head_edit.AttachedEdit
        self.objective = objective
        self.offsets = offsets  # per example, a calibration's per-choice offsets (None: uncalibrated)
        self.calls = 0

    def _scores(self) -> Scores:
        scores = self.scorer.score()
        return scores if self.offsets is None else scores.calibrated(self.offsets)

    @torch.no_grad()
    def evaluate(self, params: torch.Tensor) -> ObjectiveValue:
        self.handle.params = params.detach()
        self.calls += 1
        scores = self._scores()
        return ObjectiveValue(scores.value(self.scorer.examples, self.objective), scores.accuracy(self.scorer.examples))

    def loss_and_evaluation(self, params: torch.Tensor) -> tuple[torch.Tensor, ObjectiveValue]:
        """Mean negative log objective term (differentiable in `params`) and the evaluation at `params`."""
        self.handle.params = params
        self.calls += 1
        scores = self._scores()
        logterm = scores.per_example_logterm(self.scorer.examples, self.objective)
        evaluation = ObjectiveValue(logterm.detach().exp().mean().item(), scores.accuracy(self.scorer.examples))
        return -logterm.mean(), evaluation

