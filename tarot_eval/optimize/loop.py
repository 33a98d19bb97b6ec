"""The steps every search loop (random, bo, grad) shares: one evaluation appended to the run record, and
the progress bar over the budget that a resumed run starts where the record ends."""

from __future__ import annotations

import time

import torch
from tqdm.auto import tqdm

from tarot_eval.optimize.record import TRAIN_ACCURACY, TRAIN_VALUE, RunRecord


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
