"""Grouped bar chart of a leaderboard (matplotlib's Agg canvas, no pyplot state): PNG bytes."""

from __future__ import annotations

import io
import math

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tarot_eval.compare.leaderboard import Leaderboard, Row


def series_label(row: Row, board: Leaderboard) -> str:
    """Row name for the legend, leaving out what every row shares."""
    parts = [row.model] if len({r.model for r in board.rows}) > 1 else []
    parts.append(row.method)
    if len({r.shots for r in board.rows}) > 1:
        parts.append(row.shots)
    return " · ".join(parts)


def bar_chart(board: Leaderboard) -> bytes:
    """Grouped bars (one group per task, plus the average), stderr error bars, * on significant cells."""
    scale = board.scale
    groups = [*board.tasks, "average"]
    width = 0.8 / len(board.rows)
    figure = Figure(figsize=(max(6.0, 1.5 + len(groups) * (0.6 + 0.35 * len(board.rows))), 4.5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for index, row in enumerate(board.rows):
        cells = [row.cells.get(task) for task in board.tasks]
        heights = [math.nan if c is None else c.value * scale for c in cells] + [row.average * scale]
        errors = [math.nan if c is None or c.stderr is None else c.stderr * scale for c in cells] + [math.nan]
        positions = [group + (index - (len(board.rows) - 1) / 2) * width for group in range(len(groups))]
        bars = axes.bar(positions, heights, width, yerr=errors, capsize=2, label=series_label(row, board))
        for bar, cell, error in zip(bars, cells, errors):
            if cell is not None and cell.test is not None and cell.test.p_value < board.alpha:
                top = bar.get_height() + (0.0 if math.isnan(error) else error)
                axes.annotate("*", (bar.get_x() + bar.get_width() / 2, top), ha="center", va="bottom")
    crowded = len(groups) > 4
    axes.set_xticks(range(len(groups)), groups, rotation=20 if crowded else 0, ha="right" if crowded else "center")
    axes.set_ylabel(f"{board.metric} (%)" if board.in_percent else board.metric)
    axes.set_title(f"{board.metric} by task (* p < {board.alpha:g} vs {board.base_method}, paired test)")
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    return buffer.getvalue()
