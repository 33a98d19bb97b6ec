"""What an edit for one task costs (or gives) on the others: a task x task matrix of Δ vs base per method.

Every run of an edit says which task its checkpoint was optimized on (`tarot_provenance.task`,
from `tarot-hf`'s model info); a run is one cell of its method's matrix: row = that task (edited
on), column = the task scored (evaluated on); rows hold only the tasks some edit was optimized on (a
few-shot task scored with a zero-shot edit is a column, not an empty row). Each cell is compared with the base run of its
model on the column's task (same shots) on the same documents (exact McNemar), per seed; the matrix
holds the mean Δ over seeds and how many seeds are significantly better / worse. The diagonal is
the edit on its own task; the leaderboard writes the off-diagonal runs under `interference/`
(`INTERFERENCE`), which the ordinary table leaves out. A method scored only on its own tasks has
nothing to add to the leaderboard and gets no matrix.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tarot_eval.compare.errors import CompareError
from tarot_eval.compare.runs import Run
from tarot_eval.compare.significance import paired_outcomes, paired_test

MARKDOWN_NAME, PNG_NAME = "interference.md", "interference.png"


@dataclass
class Entry:
    """One (edited on, evaluated on) cell over its seeds."""

    deltas: list[float] = field(default_factory=list)
    better: int = 0
    worse: int = 0

    def text(self, scale: float) -> str:
        return f"{mean(self.deltas) * scale:+.1f} (+{self.better}/−{self.worse} of {len(self.deltas)})"


@dataclass(frozen=True)
class Matrix:
    model: str
    method: str
    edited_on: list[str]  # rows
    evaluated_on: list[str]  # columns
    entries: dict[tuple[str, str], Entry]  # (edited on, evaluated on) -> entry


def build(found: list[Run], base_method: str = "base", alpha: float = 0.05) -> list[Matrix]:
    """One matrix per model x method with an edit scored on a task other than the one it was optimized on."""
    bases = {(run.model, task, score.n_shot): score for run in found if run.method == base_method
             for task, score in run.scores.items()}
    grouped: dict[tuple[str, str], dict[tuple[str, str], Entry]] = {}
    for run in found:
        if run.method == base_method or run.edited_on is None:
            continue
        for task, score in run.scores.items():
            base = bases.get((run.model, task, score.n_shot))
            if base is None:
                continue
            test = paired_test(paired_outcomes(base, score))
            entry = grouped.setdefault((run.model, run.method), {}).setdefault((run.edited_on, task), Entry())
            entry.deltas.append(score.value - base.value)
            significant = test.p_value < alpha
            entry.better += significant and test.other_better > test.base_better
            entry.worse += significant and test.base_better > test.other_better
    if not grouped:
        raise CompareError("no edited run with a base run on its task: interference needs tarot-hf runs of checkpoints "
                           "(their results name the task an edit was optimized on) and base runs of the same tasks")
    matrices = [Matrix(model, method, sorted({source for source, _ in entries}), sorted({target for _, target in entries}),
                       entries)
                for (model, method), entries in sorted(grouped.items())
                if any(source != target for source, target in entries)]
    if not matrices:
        raise CompareError("every edited run was scored only on the task its edit was optimized on: interference needs "
                           "the crossed runs a leaderboard writes with `interference: true` (under interference/)")
    return matrices


def markdown(matrices: list[Matrix], scale: float = 100.0) -> str:
    """Per model x method a table: rows = edited on, columns = evaluated on, cells = Δ vs base (pts)."""
    blocks = []
    for matrix in matrices:
        columns = matrix.evaluated_on
        header = f"| {matrix.model} · {matrix.method}: edited on ↓ / evaluated on → | " + " | ".join(columns) + " |"
        lines = [header, "|" + "---|" * (len(columns) + 1)]
        for source in matrix.edited_on:
            cells = [matrix.entries[(source, target)].text(scale) if (source, target) in matrix.entries else "—"
                     for target in columns]
            lines.append(f"| {source} | " + " | ".join(cells) + " |")
        blocks.append("\n".join(lines))
    legend = ("Δ vs base in points: mean over seeds of (edited − base) on the column's task, the edit optimized on the "
              "row's task; (+k/−m of n): seeds significantly better / worse than base (exact McNemar, same documents).")
    return "\n\n".join(blocks) + "\n\n" + legend


def heatmap(matrices: list[Matrix], scale: float = 100.0) -> bytes:
    """One panel per matrix: mean Δ vs base (pts) coloured around 0, written in each cell with +k/−m (seeds
    significantly better / worse) where any seed is."""
    columns = max(len(matrix.evaluated_on) for matrix in matrices)
    rows = max(len(matrix.edited_on) for matrix in matrices)
    figure = Figure(figsize=((2.0 + 0.6 * columns) * len(matrices) + 1.2, 3.0 + 0.5 * rows), layout="constrained")
    FigureCanvasAgg(figure)
    limit = max(abs(mean(e.deltas)) * scale for m in matrices for e in m.entries.values()) or 1.0
    axes_list = figure.subplots(1, len(matrices), squeeze=False)[0]
    for axes, matrix in zip(axes_list, matrices):
        values = [[mean(matrix.entries[(s, t)].deltas) * scale if (s, t) in matrix.entries else float("nan")
                   for t in matrix.evaluated_on] for s in matrix.edited_on]
        image = axes.imshow(values, cmap="RdBu", vmin=-limit, vmax=limit)
        for i, source in enumerate(matrix.edited_on):
            for j, target in enumerate(matrix.evaluated_on):
                if (entry := matrix.entries.get((source, target))) is not None:
                    tested = f"\n+{entry.better}/−{entry.worse}" if entry.better or entry.worse else ""
                    axes.text(j, i, f"{values[i][j]:+.1f}{tested}", ha="center", va="center", fontsize=7)
        columns = [task.removeprefix("tarot_") for task in matrix.evaluated_on]
        rows = [task.removeprefix("tarot_") for task in matrix.edited_on]
        axes.set_xticks(range(len(columns)), columns, rotation=45, ha="right", fontsize=7)
        axes.set_yticks(range(len(rows)), rows, fontsize=7)
        axes.set_xlabel("evaluated on")
        axes.set_ylabel("edited on")
        axes.set_title(f"{matrix.method}", fontsize=9)
    figure.colorbar(image, ax=list(axes_list), shrink=0.8, label="Δ vs base (pts)")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    return buffer.getvalue()


def write(matrices: list[Matrix], out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = {"md": out / MARKDOWN_NAME, "png": out / PNG_NAME}
    files["md"].write_text(markdown(matrices) + "\n", encoding="utf-8")
    files["png"].write_bytes(heatmap(matrices))
    return files
