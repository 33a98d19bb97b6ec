"""Uniform random search in the unit cube of the search space: the honest baseline.

Evaluation k draws its point from a generator seeded by (seed, k) alone, so it is the same
point whether the run was resumed or not.
"""

from __future__ import annotations

import torch

from tarot_eval.optimize.loop import evaluate_and_record, progress
from tarot_eval.optimize.record import RunRecord


def draw(seed: int, index: int, dim: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed * 1_000_003 + index)
    return torch.rand(dim, generator=generator, dtype=torch.float64)


def run(evaluate, space, record: RunRecord, budget: int, seed: int) -> None:
    with progress(record, budget, "random") as bar:
        for index in range(len(record.trace), budget):
            evaluate_and_record(record, evaluate, draw(seed, index, space.dim), "random")
            bar.update(1)
            bar.set_postfix(best=f"{max(record.values()):.4f}")
