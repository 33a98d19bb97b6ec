"""Runs -> leaderboard rows, one per seed: score per task, averages, improvement over the base run,
paired test, label diagnostics; and the reference method against every other method, seed by seed.

Seeds pair k with k; a method whose only run has no seed pairs with every seed of the other method.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from statistics import mean

from tarot_eval.compare.diagnostics import Answers, read_answers
from tarot_eval.compare.errors import CompareError
from tarot_eval.compare.runs import Run, merge_runs
from tarot_eval.compare.significance import PairedTest, paired_outcomes, paired_test, same_documents

log = logging.getLogger(__name__)

DEFAULT_REFERENCE = "rotation"  # the method compared with every other one when --reference is not given


@dataclass(frozen=True)
class TableCell:
    """One run on one task; the comparison fields are None for base rows or without a base."""

    value: float
    stderr: float | None
    delta: float | None  # value - base value
    relative: float | None  # (value - base) / base * 100
    test: PairedTest | None
    answers: Answers | None = None  # None without a multiple-choice samples file


@dataclass(frozen=True)
class Row:
    model: str
    method: str
    shots: str
    is_base: bool
    run: Run
    cells: dict[str, TableCell]
    seed: int | None = None

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
class Versus:
    """The reference method against another method of the same model and shots on one seed:
    cells of the reference's values, Δ = reference − other, test on the same documents."""

    model: str
    shots: str
    method: str
    seed: int | None
    cells: dict[str, TableCell]


@dataclass(frozen=True)
class Scoreboard:
    metric: str
    base_method: str
    alpha: float
    tasks: list[str]
    rows: list[Row]
    reference: str | None = None
    versus: list[Versus] = field(default_factory=list)

    @property
    def seeded(self) -> bool:
        return any(row.seed is not None for row in self.rows)

    def task_answers(self, task: str) -> Answers | None:
        """The diagnostics of one run on `task`: its gold answers and chance are every run's (same documents)."""
        return next((row.cells[task].answers for row in self.rows if task in row.cells and row.cells[task].answers), None)

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


def seed_order(seed: int | None) -> tuple[bool, int]:
    return seed is not None, seed or 0


def paired(seed: int | None, by_seed: dict[int | None, Run]) -> Run | None:
    """The run of `by_seed` to pair with `seed`: the same seed, or the only run when it has no seed."""
    return by_seed[None] if by_seed.keys() == {None} else by_seed.get(seed)


def seed_pairs(first: dict[int | None, Run], second: dict[int | None, Run]) -> list[tuple[int | None, Run, Run]]:
    """(seed, run of first, run of second) for every seed either method has a pair for."""
    pairs = [(seed, paired(seed, first), paired(seed, second)) for seed in sorted(first.keys() | second.keys(), key=seed_order)]
    return [(seed, one, other) for seed, one, other in pairs if one is not None and other is not None]


def _cell(run: Run, base: Run | None, task: str, significance: bool, answers: Answers | None = None) -> TableCell:
    score = run.scores[task]
    base_score = base.scores.get(task) if base is not None and base is not run else None
    if base_score is None:
        return TableCell(score.value, score.stderr, None, None, None, answers)
    delta = score.value - base_score.value
    relative = delta / base_score.value * 100 if base_score.value else None
    if significance:
        test = paired_test(paired_outcomes(base_score, score))
    else:
        same_documents(base_score, score)
        test = None
    return TableCell(score.value, score.stderr, delta, relative, test, answers)


def _versus(runs: list[Run], reference: str, significance: bool) -> list[Versus]:
    """The reference method against each other method of its model on the tasks both scored, paired seed by
    seed (a baseline with demonstrations, e.g. icl at 6 shots, meets the 0-shot reference on the same task)."""
    by_method: dict[tuple[str, str, str], dict[int | None, Run]] = {}
    for run in runs:
        by_method.setdefault((*_group_key(run), run.method), {})[run.seed] = run
    found = []
    for (model, shots, method), others in sorted(by_method.items(), key=lambda item: item[0]):
        if method == reference:
            continue
        references = [mine for (owner, _shots, name), mine in sorted(by_method.items(), key=lambda item: item[0])
                      if owner == model and name == reference]
        for mine in references:
            for seed, ours, theirs in seed_pairs(mine, others):
                shared = sorted(ours.scores.keys() & theirs.scores.keys())
                if shared:
                    found.append(Versus(model, shots, method, seed,
                                        {task: _cell(ours, theirs, task, significance) for task in shared}))
    return found


class _Bases:
    """The base runs of each model and task: a cell is compared to the base run that scored its task
    (the same shots where the base has several, else its only one), of the same seed where the base has seeds."""

    def __init__(self, runs: list[Run], base_method: str):
        self.by_task: dict[tuple[str, str], dict[str, dict[int | None, Run]]] = {}
        for run in runs:
            if run.method == base_method:
                for task in run.scores:
                    self.by_task.setdefault((run.model, task), {}).setdefault(run.shots, {})[run.seed] = run

    def base(self, run: Run, task: str) -> Run | None:
        options = self.by_task.get((run.model, task), {})
        by_seed = options.get(run.shots) or (next(iter(options.values())) if len(options) == 1 else None)
        return None if by_seed is None else paired(run.seed, by_seed)


def build(
    runs: list[Run], base_method: str = "base", significance: bool = True, alpha: float = 0.05,
    reference: str | None = None,
) -> Scoreboard:
    """Rows model x shots x method x seed, base first; each cell compared to the base run of its model and task
    (same seed); `reference` (default: DEFAULT_REFERENCE where a run has it) against every other method."""
    if not 0 < alpha < 1:
        raise CompareError(f"--alpha must lie in (0, 1), got {alpha}")
    runs = merge_runs(runs)
    methods = sorted({run.method for run in runs})
    if reference is not None and reference not in methods:
        raise CompareError(f"--reference {reference!r}: no run has that method; methods: {', '.join(methods)}")
    reference = reference or (DEFAULT_REFERENCE if DEFAULT_REFERENCE in methods else None)
    bases = _Bases(runs, base_method)
    ordered = sorted(runs, key=lambda run: (*_group_key(run), run.method != base_method, run.method, seed_order(run.seed)))
    rows = []
    for run in ordered:
        found = {task: bases.base(run, task) for task in sorted(run.scores)}
        if run.method != base_method and not any(found.values()):
            log.warning("no %r run for %s %s (seed %s): its row gets no improvement or significance",
                        base_method, *_group_key(run), run.seed)
        cells = {task: _cell(run, found[task], task, significance, read_answers(run.scores[task])) for task in sorted(run.scores)}
        rows.append(Row(run.model, run.method, run.shots, run.method == base_method, run, cells, run.seed))
    tasks = sorted({task for run in runs for task in run.scores})
    group_tasks: dict[tuple, set[str]] = {}
    for run in runs:
        group_tasks.setdefault(_group_key(run), set()).update(run.scores)
    for run in runs:  # against the runs of its own model and shots: a 6-shot run lacks no 0-shot task
        if missing := sorted(group_tasks[_group_key(run)] - set(run.scores)):
            log.warning("%s lacks %s: its average covers fewer tasks than others", run.source, ", ".join(missing))
    metric = runs[0].scores[next(iter(runs[0].scores))].metric
    versus = _versus(runs, reference, significance) if reference else []
    return Scoreboard(metric, base_method, alpha, tasks, rows, reference, versus)
