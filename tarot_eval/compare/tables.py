"""A leaderboard as text tables: headers, cell strings and legend of the scores table (per seed, or
mean ± sd over seeds) and of the reference's seed-paired comparison."""

from __future__ import annotations

from dataclasses import dataclass
from statistics import mean

from tarot_eval.compare.diagnostics import COLLAPSED_SHARE, Answers
from tarot_eval.compare.scoreboard import Row, Scoreboard, TableCell
from tarot_eval.compare.seeds import SeedCell, SeedRow, SeedVersus, Spread, summarize, versus_reference

TEST_NAMES = {"mcnemar": "exact McNemar test (right/wrong per document)",
              "paired-t": "paired t-test on per-document values"}


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[str]]
    base: list[bool]  # which rows are base rows (shown apart in HTML)
    legend: str


def format_p(p_value: float) -> str:
    return "p<0.001" if p_value < 0.001 else f"p={p_value:.3f}"


def digits(scale: float) -> int:
    """Decimals shown: one for percentages, three for raw values (a reward, a probability)."""
    return 1 if scale == 100.0 else 3


def format_cell(cell: TableCell | None, scale: float, alpha: float) -> str:
    if cell is None:
        return "—"
    places = digits(scale)
    text = f"{cell.value * scale:.{places}f}"
    if cell.stderr is not None:
        text += f" ± {cell.stderr * scale:.{places}f}"
    if cell.test is not None:
        text += f" ({format_p(cell.test.p_value)}{'*' if cell.test.p_value < alpha else ''})"
    return text


def signed(value: float, places: int) -> str:
    """`+x.y`; a value that rounds to zero is +0.0, never -0.0."""
    return f"{round(value, places) + 0.0:+.{places}f}"


def format_signed(value: float | None, suffix: str = "", places: int = 1) -> str:
    return "" if value is None else signed(value, places) + suffix


def format_spread(spread: Spread | None, scale: float) -> str:
    if spread is None:
        return ""
    places = digits(scale)
    text = f"{spread.mean * scale:.{places}f}"
    return text if spread.sd is None else f"{text} ± {spread.sd * scale:.{places}f}"


def format_seed_cell(cell: SeedCell | None, scale: float) -> str:
    """`mean ± sd (Δ mean, sig +k/−m of n)`: n seeds tested, k significantly better, m worse."""
    if cell is None:
        return "—"
    parts = []
    if cell.delta is not None:
        parts.append(f"Δ {signed(cell.delta.mean * scale, digits(scale))}")
    if cell.p_values:
        parts.append(f"sig +{cell.better}/−{cell.worse} of {len(cell.p_values)}")
    return format_spread(cell.value, scale) + (f" ({', '.join(parts)})" if parts else "")


def format_versus(cell: SeedCell | None, scale: float) -> str:
    """`Δ mean ± sd, +k/−m of n (p per seed)`: the reference minus the other method."""
    if cell is None or cell.delta is None:
        return "—"
    delta = cell.delta
    places = digits(scale)
    text = f"Δ {signed(delta.mean * scale, places)}" + ("" if delta.sd is None else f" ± {delta.sd * scale:.{places}f}")
    if cell.p_values:
        text += f", +{cell.better}/−{cell.worse} of {len(cell.p_values)} ({', '.join(map(format_p, cell.p_values))})"
    return text


def format_answers(answers: tuple[Answers, ...]) -> str:
    """`#top share · entropy bits`, averaged over seeds; ⚑collapsed (with k/n over several seeds)."""
    if not answers:
        return "—"
    tops = {one.top_answer for one in answers}
    text = (f"#{next(iter(tops))} " if len(tops) == 1 else "") + f"{mean(one.top_share for one in answers) * 100:.1f}%"
    text += f" · {mean(one.entropy_bits for one in answers):.2f} bits"
    collapsed = sum(one.collapsed for one in answers)
    if collapsed:
        text += " ⚑collapsed" + (f" {collapsed}/{len(answers)}" if len(answers) > 1 else "")
    return text


def task_header(board: Scoreboard, task: str) -> str:
    """The task with its chance rate and majority-class rate, where its samples tell them."""
    answers = board.task_answers(task)
    if answers is None:
        return task
    places = digits(board.scale)
    text = f"{task} (chance {answers.chance * board.scale:.{places}f}"
    if answers.majority_rate is not None:
        text += f", majority #{answers.majority_answer} {answers.majority_rate * board.scale:.{places}f}"
    return text + ")"


def seed_text(seeds) -> str:
    return ", ".join(str(seed) for seed in seeds if seed is not None) or "—"


def headers(board: Scoreboard, by_seed: bool) -> list[str]:
    unit = " (%)" if board.in_percent else ""
    delta_unit = "pts" if board.in_percent else "abs"
    seed = [] if not board.seeded else ["Seed" if by_seed else "Seeds"]
    tasks = [header for task in board.tasks for header in (task_header(board, task), f"{task} answers")]
    return ["Model", "Method", "Shots", *seed, *tasks, f"Average{unit}", f"Δ vs base ({delta_unit})", "Δ vs base (rel %)"]


def run_row(board: Scoreboard, row: Row) -> list[str]:
    scale, places = board.scale, digits(board.scale)
    cells = []
    for task in board.tasks:
        cell = row.cells.get(task)
        cells += [format_cell(cell, scale, board.alpha),
                  format_answers(() if cell is None or cell.answers is None else (cell.answers,))]
    mean_delta = None if row.mean_delta is None else row.mean_delta * scale
    summary = [f"{row.average * scale:.{places}f}", format_signed(mean_delta, places=places),
               format_signed(row.mean_relative, "%")]
    seed = [seed_text([row.seed])] if board.seeded else []
    return [row.model, row.method, row.shots, *seed, *cells, *summary]


def seed_row(board: Scoreboard, row: SeedRow) -> list[str]:
    scale, places = board.scale, digits(board.scale)
    cells = []
    for task in board.tasks:
        cell = row.cells.get(task)
        cells += [format_seed_cell(cell, scale), format_answers(() if cell is None else cell.answers)]
    mean_delta = None if row.mean_delta is None else row.mean_delta.mean * scale
    mean_relative = None if row.mean_relative is None else row.mean_relative.mean
    summary = [format_spread(row.average, scale), format_signed(mean_delta, places=places), format_signed(mean_relative, "%")]
    return [row.model, row.method, row.shots, seed_text(row.seeds), *cells, *summary]


def tests_used(cells) -> str:
    return " or ".join(TEST_NAMES[name] for name in sorted({cell.test.name for cell in cells if cell.test is not None}))


def answers_legend(over_seeds: bool) -> str:
    return (
        f" answers: the most predicted choice (#index) and its share of the documents"
        f"{', mean over seeds' if over_seeds else ''}, "
        "and the entropy of the predicted choices in bits (log2 of the number of choices when all are predicted "
        f"equally); ⚑collapsed: one choice takes ≥ {COLLAPSED_SHARE:.0%} of the predictions"
        f"{' (k/n: in k of n seeds)' if over_seeds else ''}. Header: chance = 1 / number of choices; "
        "majority = accuracy of always giving the most frequent gold choice (#index)."
    )


def run_legend(board: Scoreboard) -> str:
    cells = [cell for row in board.rows for cell in row.cells.values()]
    text = f"{board.metric} in %" if board.in_percent else board.metric
    text += ", ± lm-eval's standard error."
    if tests := tests_used(cells):
        text += (
            f" p: {tests} against the {board.base_method!r} run of the same model and shots on the "
            f"same documents (two-sided; * p < {board.alpha:g}; no correction for multiple comparisons)."
        )
    if any(cell.delta is not None for cell in cells):
        text += " Δ: mean over tasks of (score − base), and of (score − base) / base × 100."
    if board.seeded:
        text += " One row per seed, compared to the base run of the same seed (or the base run without a seed)."
    return text + answers_legend(over_seeds=False)


def seed_legend(board: Scoreboard) -> str:
    cells = [cell for row in board.rows for cell in row.cells.values()]
    text = f"{board.metric} in %" if board.in_percent else board.metric
    text += ": mean ± sd over seeds (sample sd; none for one seed)."
    text += (
        f" Δ: mean over seeds of (score − base), each seed against the {board.base_method!r} run of the same seed "
        "(or the base run without a seed)."
    )
    if tests := tests_used(cells):
        text += (
            f" sig +k/−m of n: of n seeds tested, k significantly better and m significantly worse than base ({tests}, "
            f"two-sided, p < {board.alpha:g}, no correction for multiple comparisons)."
        )
    text += " Average and Δ vs base: mean over seeds of each seed's mean over tasks. One row per seed: --by-seed."
    return text + answers_legend(over_seeds=True)


def scores_table(board: Scoreboard, by_seed: bool = False) -> Table:
    """One row per run (per seed) with `by_seed` or without seeds; else one row per model x method x shots."""
    if by_seed or not board.seeded:
        return Table(headers(board, by_seed=True), [run_row(board, row) for row in board.rows],
                     [row.is_base for row in board.rows], run_legend(board))
    rows = summarize(board)
    return Table(headers(board, by_seed=False), [seed_row(board, row) for row in rows], [row.is_base for row in rows],
                 seed_legend(board))


def versus_table(board: Scoreboard) -> Table | None:
    """The reference against every other method, paired seed by seed; only for runs with seeds."""
    found: list[SeedVersus] = versus_reference(board)
    if not board.seeded or not found:
        return None
    rows = [[one.model, one.shots, one.method, seed_text(one.seeds),
             *(format_versus(one.cells.get(task), board.scale) for task in board.tasks),
             format_task_mean(one, board.scale), format_holm(one, board.alpha)] for one in found]
    tests = tests_used([cell for pair in board.versus for cell in pair.cells.values()])
    legend = (
        f"{board.reference} against each other method of the same model and shots on the same documents, paired seed "
        "by seed (a method without seeds pairs with every seed): Δ = "
        f"{board.reference} − method, mean ± sd over the paired seeds"
    )
    if tests:
        legend += (f"; +k/−m of n: seeds where {board.reference} is significantly better / worse "
                   f"(p < {board.alpha:g}, {tests}), then each seed's p")
    legend += ("; task mean: each seed's Δ averaged over the tasks, mean ± sd over the seeds, and the two-sided p of a "
               "one-sample t-test of those per-seed averages against 0")
    if tests:
        legend += (f"; Holm: the row's seed x task tests adjusted together (Holm-Bonferroni), +k/−m of n still below "
                   f"{board.alpha:g}")
    headers = ["Model", "Shots", f"{board.reference} vs", "Seeds", *board.tasks, "task mean", "Holm"]
    return Table(headers, rows, [False] * len(rows), legend + ".")


def format_task_mean(one: SeedVersus, scale: float) -> str:
    """`Δ mean ± sd (t p)` of the task-averaged Δ over the paired seeds."""
    mean_delta = one.task_mean
    if mean_delta is None:
        return "—"
    places = digits(scale)
    text = f"Δ {signed(mean_delta.mean * scale, places)}"
    text += "" if mean_delta.sd is None else f" ± {mean_delta.sd * scale:.{places}f}"
    p_value = one.task_mean_p
    return text + ("" if p_value is None else f" (t {format_p(p_value)})")


def format_holm(one: SeedVersus, alpha: float) -> str:
    better, worse, n = one.holm(alpha)
    return f"+{better}/−{worse} of {n}" if n else "—"
