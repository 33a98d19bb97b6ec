"""Scoreboard rows over seeds: each model x method x shots as mean ± sd over its seeds, how many
seeds are significantly better or worse than the comparison, and the reference's seed-paired tests (per cell,
Holm-adjusted over a row's cells, and of the task-averaged Δ over seeds)."""

from __future__ import annotations

from dataclasses import dataclass
from statistics import mean, stdev

from tarot_eval.compare.diagnostics import Answers
from tarot_eval.compare.scoreboard import Row, Scoreboard, TableCell, Versus
from tarot_eval.compare.significance import holm, one_sample_t


@dataclass(frozen=True)
class Spread:
    """One quantity over seeds: its values, their mean and sample sd (None for one seed)."""

    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return mean(self.values)

    @property
    def sd(self) -> float | None:
        return stdev(self.values) if len(self.values) > 1 else None


def spread(values) -> Spread | None:
    present = tuple(value for value in values if value is not None)
    return Spread(present) if present else None


@dataclass(frozen=True)
class SeedCell:
    """One task over seeds: values, Δ vs the comparison, and the per-seed paired tests' verdicts."""

    cells: tuple[TableCell, ...]  # one per seed
    alpha: float

    @property
    def value(self) -> Spread:
        return Spread(tuple(cell.value for cell in self.cells))

    @property
    def delta(self) -> Spread | None:
        return spread(cell.delta for cell in self.cells)

    @property
    def p_values(self) -> tuple[float, ...]:
        return tuple(cell.test.p_value for cell in self.cells if cell.test is not None)

    @property
    def better(self) -> int:
        """Seeds significantly better than the comparison (p < alpha, Δ > 0)."""
        return sum(1 for cell in self.cells if cell.test is not None and cell.test.p_value < self.alpha and cell.delta > 0)

    @property
    def worse(self) -> int:
        return sum(1 for cell in self.cells if cell.test is not None and cell.test.p_value < self.alpha and cell.delta < 0)

    @property
    def answers(self) -> tuple[Answers, ...]:
        return tuple(cell.answers for cell in self.cells if cell.answers is not None)


@dataclass(frozen=True)
class SeedRow:
    """A model x method x shots over its seeds (its per-seed rows), compared to the base."""

    rows: tuple[Row, ...]
    cells: dict[str, SeedCell]

    model = property(lambda self: self.rows[0].model)
    method = property(lambda self: self.rows[0].method)
    shots = property(lambda self: self.rows[0].shots)
    is_base = property(lambda self: self.rows[0].is_base)

    @property
    def seeds(self) -> tuple[int | None, ...]:
        return tuple(row.seed for row in self.rows)

    @property
    def average(self) -> Spread:
        return Spread(tuple(row.average for row in self.rows))

    @property
    def mean_delta(self) -> Spread | None:
        return spread(row.mean_delta for row in self.rows)

    @property
    def mean_relative(self) -> Spread | None:
        return spread(row.mean_relative for row in self.rows)


@dataclass(frozen=True)
class SeedVersus:
    """The reference against one other method of a model and shots, over the paired seeds."""

    pairs: tuple[Versus, ...]
    cells: dict[str, SeedCell]

    model = property(lambda self: self.pairs[0].model)
    shots = property(lambda self: self.pairs[0].shots)
    method = property(lambda self: self.pairs[0].method)

    @property
    def seeds(self) -> tuple[int | None, ...]:
        return tuple(pair.seed for pair in self.pairs)

    def holm(self, alpha: float) -> tuple[int, int, int]:
        """(+k, −m, n): this row's n seed x task tests adjusted together (Holm-Bonferroni), then those below
        `alpha` where the reference is better (+k) or worse (−m)."""
        tests = [(cell.delta, cell.test.p_value) for seeds in self.cells.values() for cell in seeds.cells
                 if cell.test is not None and cell.delta is not None]
        adjusted = holm([p for _, p in tests])
        better = sum(1 for (delta, _), q in zip(tests, adjusted) if q < alpha and delta > 0)
        worse = sum(1 for (delta, _), q in zip(tests, adjusted) if q < alpha and delta < 0)
        return better, worse, len(tests)

    @property
    def task_mean(self) -> Spread | None:
        """Per seed, Δ averaged over the tasks every paired seed has; their mean ± sd over the seeds."""
        shared = [task for task in self.cells if all(task in pair.cells for pair in self.pairs)]
        if not shared:
            return None
        return spread(sum(pair.cells[task].delta for task in shared) / len(shared) for pair in self.pairs)

    @property
    def task_mean_p(self) -> float | None:
        """Two-sided p of the task-averaged Δ over the paired seeds (one-sample t-test; None under two seeds)."""
        mean = self.task_mean
        return None if mean is None else one_sample_t(list(mean.values))


def _grouped(items, key) -> list[tuple]:
    """Items grouped by `key`, groups in order of first appearance."""
    groups: dict = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return [tuple(group) for group in groups.values()]


def _cells(members, tasks: list[str], alpha: float) -> dict[str, SeedCell]:
    return {
        task: SeedCell(tuple(member.cells[task] for member in members if task in member.cells), alpha)
        for task in tasks
        if any(task in member.cells for member in members)
    }


def summarize(board: Scoreboard) -> list[SeedRow]:
    """One row per model x method x shots, in the board's order."""
    groups = _grouped(board.rows, lambda row: (row.model, row.shots, row.method))
    return [SeedRow(rows, _cells(rows, board.tasks, board.alpha)) for rows in groups]


def versus_reference(board: Scoreboard) -> list[SeedVersus]:
    """The reference against each other method, one entry per model x shots x method."""
    groups = _grouped(board.versus, lambda pair: (pair.model, pair.shots, pair.method))
    return [SeedVersus(pairs, _cells(pairs, board.tasks, board.alpha)) for pairs in groups]
