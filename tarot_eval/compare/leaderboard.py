"""Runs -> leaderboard rows: score per task, averages, improvement over the base run, paired test."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from statistics import mean

from tarot_eval.compare.errors import CompareError
from tarot_eval.compare.runs import Run, merge_runs
from tarot_eval.compare.significance import PairedTest, paired_outcomes, paired_test, same_documents

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cell:
    """One run on one task; the comparison fields are None for base rows or without a base."""

    value: float
    stderr: float | None
    delta: float | None  # value - base value
    relative: float | None  # (value - base) / base * 100
    test: PairedTest | None


@dataclass(frozen=True)
class Row:
    model: str
    method: str
    shots: str
    is_base: bool
    run: Run
    cells: dict[str, Cell]

    @property
    def average(self) -> float:
        return mean(cell.value for cell in self.cells.values())

    @property
    def mean_delta(self) -> float | None:
        return _mean_of(cell.delta for cell in self.cells.values())

    @property
    def mean_relative(self) -> float | None:
        return _mean_of(cell.relative for cell in self.cells.values())


@dataclass(frozen=True)
class Leaderboard:
    metric: str
    base_method: str
    alpha: float
    tasks: list[str]
    rows: list[Row]

    @property
    def in_percent(self) -> bool:
        """Scores within [0, 1] are shown as percentages, unless the per-document values are not 0/1
        (a reward or a probability: a paired t-test was run), which are shown as they are."""
        cells = [cell for row in self.rows for cell in row.cells.values()]
        continuous = any(cell.test is not None and cell.test.name == "paired-t" for cell in cells)
        return not continuous and all(0 <= cell.value <= 1 for cell in cells)

    @property
    def scale(self) -> float:
        return 100.0 if self.in_percent else 1.0


def _mean_of(values) -> float | None:
    present = [value for value in values if value is not None]
    return mean(present) if present else None


def _group_key(run: Run) -> tuple[str, str]:
    return run.model, run.shots


def _cell(run: Run, base: Run | None, task: str, significance: bool) -> Cell:
    score = run.scores[task]
    base_score = base.scores.get(task) if base is not None and base is not run else None
    if base_score is None:
        return Cell(score.value, score.stderr, None, None, None)
    delta = score.value - base_score.value
    relative = delta / base_score.value * 100 if base_score.value else None
    if significance:
        test = paired_test(paired_outcomes(base_score, score))
    else:
        same_documents(base_score, score)
        test = None
    return Cell(score.value, score.stderr, delta, relative, test)


def build(
    runs: list[Run], base_method: str = "base", significance: bool = True, alpha: float = 0.05
) -> Leaderboard:
    """Rows model x shots x method, base first; each non-base row compared to its model's base."""
    if not 0 < alpha < 1:
        raise CompareError(f"--alpha must lie in (0, 1), got {alpha}")
    runs = merge_runs(runs)
    bases = {_group_key(run): run for run in runs if run.method == base_method}
    for key in sorted({_group_key(run) for run in runs} - bases.keys()):
        log.warning("no %r run for %s %s: its rows get no improvement or significance", base_method, *key)
    ordered = sorted(runs, key=lambda run: (*_group_key(run), run.method != base_method, run.method))
    rows = [
        Row(
            model=run.model,
            method=run.method,
            shots=run.shots,
            is_base=run.method == base_method,
            run=run,
            cells={task: _cell(run, bases.get(_group_key(run)), task, significance) for task in sorted(run.scores)},
        )
        for run in ordered
    ]
    tasks = sorted({task for run in runs for task in run.scores})
    for run in runs:
        if missing := [task for task in tasks if task not in run.scores]:
            log.warning("%s lacks %s: its average covers fewer tasks than others", run.source, ", ".join(missing))
    metric = runs[0].scores[next(iter(runs[0].scores))].metric
    return Leaderboard(metric=metric, base_method=base_method, alpha=alpha, tasks=tasks, rows=rows)
