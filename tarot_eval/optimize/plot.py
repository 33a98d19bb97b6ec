"""PNG of optimization traces: every evaluation (dots) and the best so far (line), one colour per run."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_traces(runs: dict[str, list[float]], path: str | Path, title: str = "", baseline: float | None = None) -> Path:
    """`runs`: label -> training objective of each evaluation, in order."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for color, (label, values) in zip(plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4, runs.items()):
        steps = range(1, len(values) + 1)
        best = [max(values[: i + 1]) for i in range(len(values))]
        ax.scatter(steps, values, s=8, alpha=0.35, color=color)
        ax.plot(steps, best, color=color, label=f"{label} (best {best[-1]:.3f})")
    if baseline is not None:
        ax.axhline(baseline, color="grey", linestyle="--", linewidth=1, label=f"base model {baseline:.3f}")
    ax.set_xlabel("objective evaluation")
    ax.set_ylabel("training objective (best so far)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
