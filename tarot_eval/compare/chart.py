"""Grouped bar chart of a leaderboard (matplotlib's Agg canvas, no pyplot state): PNG bytes.

One group per task plus the average; per model x method x shots a bar at the mean over seeds, a
point per seed, error bars of the sd over seeds (lm-eval's stderr for a single seed); per task a
dashed line at chance and a dotted one at the majority-class rate. A cell whose predictions
collapsed onto one choice (in any seed, as the table's ⚑collapsed) is hatched and marked `⚑` (`⚑k/n`
over seeds): its accuracy is the share of that answer among the gold labels, not a skill.
"""

from __future__ import annotations

import io
import math
import textwrap

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tarot_eval.compare.scoreboard import Scoreboard
from tarot_eval.compare.seeds import SeedCell, SeedRow, Spread, summarize


def series_label(row: SeedRow, board: Scoreboard) -> str:
    """Row name for the legend, leaving out what every row shares."""
    parts = [row.model] if len({r.model for r in board.rows}) > 1 else []
    parts.append(row.method)
    if len({r.shots for r in board.rows}) > 1:
        parts.append(row.shots)
    return " · ".join(parts)


def error_of(spread: Spread | None, cell: SeedCell | None) -> float:
    """The sd over seeds, else the single run's stderr, else nothing (nan)."""
    if spread is None:
        return math.nan
    if spread.sd is not None:
        return spread.sd
    stderr = cell.cells[0].stderr if cell is not None else None
    return math.nan if stderr is None else stderr


def mark_of(cell: SeedCell | None) -> str:
    """`*` for one significant seed, `k/n` for k of n seeds significant (either direction)."""
    if cell is None or not (significant := cell.better + cell.worse):
        return ""
    return "*" if len(cell.p_values) == 1 else f"{significant}/{len(cell.p_values)}"


def collapsed_mark(cell: SeedCell | None) -> str:
    """`⚑` when the cell's one seed collapsed onto one choice, `⚑k/n` for k of n seeds; else nothing."""
    if cell is None or not cell.answers or not (collapsed := sum(one.collapsed for one in cell.answers)):
        return ""
    return "⚑" if len(cell.answers) == 1 else f"⚑{collapsed}/{len(cell.answers)}"


def draw_levels(axes, board: Scoreboard, scale: float) -> None:
    """Chance and majority-class rate of each task, across its group of bars."""
    labelled = set()
    for group, task in enumerate(board.tasks):
        answers = board.task_answers(task)
        if answers is None:
            continue
        for name, level, style in (("chance", answers.chance, "--"), ("majority class", answers.majority_rate, ":")):
            if level is not None:
                axes.hlines(level * scale, group - 0.45, group + 0.45, colors="dimgray", linestyles=style,
                            label=None if name in labelled else name)
                labelled.add(name)


def slots(board: Scoreboard, rows) -> list[list[int]]:
    """Per group of bars (each task, then the average) the rows that have a bar there, in order: a task only the
    6-shot rows scored gets no empty places for the 0-shot ones."""
    present = [[index for index, row in enumerate(rows) if row.cells.get(task) is not None] for task in board.tasks]
    return [*present, [index for index, row in enumerate(rows) if row.average is not None]]


def draw(axes, board: Scoreboard) -> None:
    """Bars at the mean over seeds, a point per seed, error bars, significance marks, chance and majority lines."""
    scale = board.scale
    rows = summarize(board)
    groups = [*board.tasks, "average"]
    present = slots(board, rows)
    width = 0.8 / max(len(members) for members in present)
    for index, row in enumerate(rows):
        cells = [row.cells.get(task) for task in board.tasks]
        spreads = [None if cell is None else cell.value for cell in cells] + [row.average]
        heights = [math.nan if spread is None else spread.mean * scale for spread in spreads]
        errors = [error_of(spread, cell) * scale for spread, cell in zip(spreads, [*cells, None])]
        positions = [group + (members.index(index) - (len(members) - 1) / 2) * width if index in members else group
                     for group, members in enumerate(present)]
        bars = axes.bar(positions, heights, width, yerr=errors, capsize=2, alpha=0.8, label=series_label(row, board))
        for position, spread in zip(positions, spreads):
            if spread is not None and len(spread.values) > 1:
                axes.plot([position] * len(spread.values), [value * scale for value in spread.values],
                          "o", color="black", markersize=3, zorder=3)
        for bar, cell, error in zip(bars, cells, errors):
            collapsed = collapsed_mark(cell)
            if collapsed:
                bar.set_hatch("xx")
                bar.set_edgecolor("black")
            if mark := " ".join(part for part in (mark_of(cell), collapsed) if part):
                top = bar.get_height() + (0.0 if math.isnan(error) else error)
                axes.annotate(mark, (bar.get_x() + bar.get_width() / 2, top), ha="center", va="bottom", fontsize="small")
    if any(collapsed_mark(row.cells.get(task)) for row in rows for task in board.tasks):
        axes.bar([math.nan], [math.nan], color="white", edgecolor="black", hatch="xx",
                 label="⚑ collapsed: one choice ≥ 90% of the predictions")
    draw_levels(axes, board, scale)
    crowded = len(groups) > 4
    axes.set_xticks(range(len(groups)), groups, rotation=20 if crowded else 0, ha="right" if crowded else "center")
    axes.set_ylabel(f"{board.metric} (%)" if board.in_percent else board.metric)
    spread = "mean over seeds (points), error bars sd; k/n: seeds with" if board.seeded else "*"
    title = f"{board.metric} by task ({spread} p < {board.alpha:g} vs {board.base_method}, paired test)"
    axes.set_title("\n".join(textwrap.wrap(title, 70)), loc="left", fontsize="medium")  # wrapped: never cut off
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))


def bar_chart(board: Scoreboard) -> bytes:
    """The chart of `draw` as PNG bytes, as wide as its groups of bars need."""
    bars = sum(len(members) for members in slots(board, summarize(board)))
    figure = Figure(figsize=(max(6.0, 1.5 + 0.6 * (len(board.tasks) + 1) + 0.35 * bars), 4.5))
    FigureCanvasAgg(figure)
    draw(figure.add_subplot(), board)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    return buffer.getvalue()
