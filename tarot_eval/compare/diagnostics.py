"""Label diagnostics of a multiple-choice run: which answers it predicts, and the task's gold answers.

lm-eval's `multiple_choice` samples hold, per document, `filtered_resps` (one `[loglikelihood,
is_greedy]` per choice) and `target` (the gold choice index, or its text; written as a string).
The prediction is the choice of highest log-likelihood, as lm-eval's `acc` scores it
(`ConfigurableTask.process_results`). A run that gives one answer to nearly every document has
collapsed: its accuracy is then the share of that answer among the gold labels.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from tarot_eval.compare.runs import TaskScore, sample_lines

COLLAPSED_SHARE = 0.9  # one answer taking at least this share of the predictions is a collapse


@dataclass(frozen=True)
class Answers:
    """Predicted and gold choice indices of one run on one task (gold: documents whose target is known)."""

    predicted: Counter
    gold: Counter
    chance: float  # mean over documents of 1 / number of choices: uniform guessing's accuracy

    @property
    def top_answer(self) -> int:
        return self.predicted.most_common(1)[0][0]

    @property
    def top_share(self) -> float:
        return self.predicted.most_common(1)[0][1] / self.predicted.total()

    @property
    def entropy_bits(self) -> float:
        total = self.predicted.total()
        return sum(-count / total * math.log2(count / total) for count in self.predicted.values())

    @property
    def collapsed(self) -> bool:
        return self.top_share >= COLLAPSED_SHARE

    @property
    def majority_answer(self) -> int | None:
        return self.gold.most_common(1)[0][0] if self.gold else None

    @property
    def majority_rate(self) -> float | None:
        """Accuracy of always giving the most frequent gold answer."""
        return self.gold.most_common(1)[0][1] / self.gold.total() if self.gold else None


def logliks(sample: dict) -> list[float] | None:
    """Per-choice log-likelihoods of a multiple-choice sample; None for any other kind of sample."""
    responses = sample.get("filtered_resps")
    if not isinstance(responses, list) or len(responses) < 2:
        return None
    if not all(isinstance(response, list) and len(response) == 2 for response in responses):
        return None
    try:
        return [float(response[0]) for response in responses]
    except (TypeError, ValueError):
        return None


def gold_index(sample: dict, n_choices: int) -> int | None:
    """The gold choice: an index, or the one choice whose continuation is the target text (a leaderboard
    cell's compact samples record it as `gold`)."""
    if isinstance(sample.get("gold"), int):
        return sample["gold"] if sample["gold"] < n_choices else None
    target = str(sample.get("target", "")).strip()
    if target.isdigit():
        return int(target) if int(target) < n_choices else None
    arguments = sample.get("arguments")
    continuations = [str(args.get("arg_1", "")).strip() for args in arguments.values()] if isinstance(arguments, dict) else []
    matches = [index for index, text in enumerate(continuations) if text == target]
    return matches[0] if len(matches) == 1 else None


def read_answers(score: TaskScore) -> Answers | None:
    """The answers of `score`'s run from its samples file; None without one or for a task that is not multiple-choice."""
    if not score.samples.is_file():
        return None
    predicted, gold, chances = Counter(), Counter(), []
    for _, sample in sample_lines(score.samples):
        if sample.get("filter") != score.filter:
            continue
        values = logliks(sample)
        if values is None:
            return None
        predicted[max(range(len(values)), key=values.__getitem__)] += 1
        chances.append(1 / len(values))
        if (index := gold_index(sample, len(values))) is not None:
            gold[index] += 1
    if not chances:
        return None
    return Answers(predicted, gold if gold.total() == len(chances) else Counter(), sum(chances) / len(chances))
