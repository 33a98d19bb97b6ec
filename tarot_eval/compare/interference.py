"""What an edit for one task costs (or gives) on the others: a task x task matrix of Δ vs base per method.

Every run of an edit says which task its checkpoint was optimized on (`tarot_provenance.task`,
from `tarot-hf`'s model info); a run is one cell of its method's matrix: row = that task (edited
on), column = the task scored (evaluated on). Each cell is compared with the base run of its
model on the column's task (same shots) on the same documents (exact McNemar), per seed; the matrix
holds the mean Δ over seeds and how many seeds are significantly better / worse. The diagonal is
the edit on its own task; the leaderboard writes the off-diagonal runs under `interference/`
(`INTERFERENCE`), which the ordinary table leaves out.
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
    tasks: list[str]
    entries: dict[tuple[str, str], Entry]  # (edited on, evaluated on) -> entry


def build(found: list[Run], base_method: str = "base", alpha: float = 0.05) -> list[Matrix]:
    """One matrix per model x method whose runs say which task their edit was optimized on."""
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
    matrices = []
    for (model, method), entries in sorted(grouped.items()):
        tasks = sorted({task for pair in entries for task in pair})
        matrices.append(Matrix(model, method, tasks, entries))
    return matrices


def markdown(matrices: list[Matrix], scale: float = 100.0) -> str:
    """Per model x method a table: rows = edited on, columns = evaluated on, cells = Δ vs base (pts)."""
    blocks = []
    for matrix in matrices:
        header = f"| {matrix.model} · {matrix.method}: edited on ↓ / evaluated on → | " + " | ".join(matrix.tasks) + " |"
        lines = [header, "|" + "---|" * (len(matrix.tasks) + 1)]
        for source in matrix.tasks:
            cells = [matrix.entries[(source, target)].text(scale) if (source, target) in matrix.entries else "—"
                     for target in matrix.tasks]
            lines.append(f"| {source} | " + " | ".join(cells) + " |")
        blocks.append("\n".join(lines))
    legend = ("Δ vs base in points: mean over seeds of (edited − base) on the column's task, the edit optimized on the "
              "row's task; (+k/−m of n): seeds significantly better / worse than base (exact McNemar, same documents).")
    return "\n\n".join(blocks) + "\n\n" + legend


def heatmap(matrices: list[Matrix], scale: float = 100.0) -> bytes:
    """One panel per matrix: mean Δ vs base (pts) coloured around 0, written in each cell."""
    figure = Figure(figsize=(4.2 * len(matrices), 4.0), layout="constrained")
    FigureCanvasAgg(figure)
    limit = max(abs(mean(e.deltas)) * scale for m in matrices for e in m.entries.values()) or 1.0
    axes_list = figure.subplots(1, len(matrices), squeeze=False)[0]
    for axes, matrix in zip(axes_list, matrices):
        values = [[mean(matrix.entries[(s, t)].deltas) * scale if (s, t) in matrix.entries else float("nan")
                   for t in matrix.tasks] for s in matrix.tasks]
        image = axes.imshow(values, cmap="RdBu", vmin=-limit, vmax=limit)
        for i, row in enumerate(values):
            for j, value in enumerate(row):
                if value == value:
                    axes.text(j, i, f"{value:+.1f}", ha="center", va="center", fontsize=7)
        short = [task.removeprefix("tarot_") for task in matrix.tasks]
        axes.set_xticks(range(len(short)), short, rotation=45, ha="right", fontsize=7)
        axes.set_yticks(range(len(short)), short, fontsize=7)
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
