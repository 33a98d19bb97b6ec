"""Reward against fluency of every candidate an rl run measured on its selection prompts (PNG).

Read from each checkpoint's `result.json` (`selection`: every candidate's reward and fluency,
the base model's, which one was chosen), and for a `--layers auto` run from each block's folder.
x is the candidate's perplexity under the unedited model divided by the base model's (the guard
refuses x > its ratio, drawn as a line); y its reward. Refused candidates are hollow, the shipped
edit a star, the base model at (1, base reward).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

CHOSEN_KEYS = ("chosen_round", "chosen_step", "chosen_evaluation")


@dataclass(frozen=True)
class Candidates:
    """One trained run's measured candidates, as (key, perplexity ratio, reward, refused)."""

    name: str
    base_reward: float
    points: list[tuple[str, float, float, bool]]
    shipped: tuple[float, float] | None  # (ratio, reward) of the shipped edit; None when it is the identity
    max_ratio: float


def read_candidates(name: str, folder: Path) -> list[Candidates]:
    """The candidates of the run in `folder` (one entry per layer block for `--layers auto`)."""
    result = json.loads((folder / "result.json").read_text())
    if "layer_choice" in result:
        return [entry for block in result["layer_choice"]["candidates"]
                for entry in read_candidates(f"{name} {block}", folder / f"layers-{block}")]
    selection = result["selection"]
    fluency = selection.get("fluency") or {}
    base = fluency.get("base")
    if not base:
        return []  # measured before the guard existed: no perplexities to draw
    points = [(key, fluency[key]["perplexity"] / base["perplexity"], reward, key in selection.get("rejected", {}))
              for key, reward in selection["candidates"].items() if key in fluency]
    chosen = next((selection[key] for key in CHOSEN_KEYS if key in selection), None)
    shipped = next(((ratio, reward) for key, ratio, reward, _ in points if key == str(chosen)), None)
    ratio = result.get("guard", {}).get("max_perplexity_ratio", 1.5)
    return [Candidates(name, selection["base"], points, shipped if result["shipped"] == "chosen" else None, ratio)]


def png(runs: list[Candidates], title: str) -> bytes:
    figure = Figure(figsize=(6.4, 4.4))
    axes = figure.add_subplot()
    for index, run in enumerate(runs):
        color = f"C{index % 10}"
        kept = [(x, y) for _, x, y, refused in run.points if not refused]
        refused = [(x, y) for _, x, y, refused_ in run.points if refused_]
        if kept:
            axes.scatter(*zip(*kept), color=color, s=22, label=run.name)
        if refused:
            axes.scatter(*zip(*refused), facecolors="none", edgecolors=color, s=22,
                         label=None if kept else run.name)
        if run.shipped:
            axes.scatter([run.shipped[0]], [run.shipped[1]], marker="*", s=160, color=color, edgecolors="black")
        axes.scatter([1.0], [run.base_reward], marker="x", color=color, s=40)
    if runs:
        axes.axvline(runs[0].max_ratio, color="grey", linestyle="--", linewidth=1, label="guard: perplexity limit")
    axes.set_xlabel("perplexity under the unedited model / base model's (selection prompts)")
    axes.set_ylabel("reward on the selection prompts")
    axes.set_title(title + "\n(dots: candidates; hollow: refused; star: shipped; x: base)", fontsize=9)
    axes.legend(fontsize=7)
    figure.tight_layout()
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    return buffer.getvalue()
