"""Uniform random search in the unit cube of the search space: the honest baseline.

Evaluation k draws its point from a generator seeded by (seed, k) alone, so it is the same
point whether the run was resumed or not.
"""

from __future__ import annotations

import time

import torch
from tqdm.auto import tqdm

from tarot_eval.optimize.record import TRAIN_ACCURACY, TRAIN_VALUE, RunRecord


def draw(seed: int, index: int, dim: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed * 1_000_003 + index)
    return torch.rand(dim, generator=generator, dtype=torch.float64)


def evaluate_and_record(record: RunRecord, evaluate, x: torch.Tensor, phase: str, extra: dict | None = None) -> dict:
    """Evaluate point x (`evaluate(x) -> ObjectiveValue`) and append it to the record."""
    start = time.perf_counter()
    evaluation = evaluate(x)
    entry = {
        "phase": phase,
        TRAIN_VALUE: evaluation.value,
        TRAIN_ACCURACY: evaluation.accuracy,
        "wall_s": round(time.perf_counter() - start, 4),
        "time": round(time.time(), 3),
        **(extra or {}),
    }
    record.append(entry, {"x": x})
    return record.trace[-1]


def progress(record: RunRecord, budget: int, label: str):
    bar = tqdm(total=budget, initial=min(len(record.trace), budget), desc=label, unit="eval")
    if record.trace:
        bar.set_postfix(best=f"{max(record.values()):.4f}")
    return bar


def run(evaluate, space, record: RunRecord, budget: int, seed: int) -> None:
    with progress(record, budget, "random") as bar:
        for index in range(len(record.trace), budget):
            evaluate_and_record(record, evaluate, draw(seed, index, space.dim), "random")
            bar.update(1)
            bar.set_postfix(best=f"{max(record.values()):.4f}")
