"""Leaderboard -> Markdown table, long-format CSV, and a self-contained HTML page with the chart."""

from __future__ import annotations

import base64
import csv
from pathlib import Path

import jinja2
from pytablewriter import MarkdownTableWriter
from typepy import String

from tarot_eval.compare.chart import bar_chart
from tarot_eval.compare.leaderboard import Cell, Leaderboard

CSV_COLUMNS = (
    "model", "method", "shots", "task", "metric", "value", "stderr", "delta", "relative_pct",
    "n_docs", "test", "base_better", "other_better", "p_value", "significant", "results_file",
)


TEST_NAMES = {"mcnemar": "exact McNemar test (right/wrong per document)",
              "paired-t": "paired t-test on per-document values"}


def format_p(p_value: float) -> str:
    return "p<0.001" if p_value < 0.001 else f"p={p_value:.3f}"


def digits(scale: float) -> int:
    """Decimals shown: one for percentages, three for raw values (a reward, a probability)."""
    return 1 if scale == 100.0 else 3


def format_cell(cell: Cell | None, scale: float, alpha: float) -> str:
    if cell is None:
        return "—"
    places = digits(scale)
    text = f"{cell.value * scale:.{places}f}"
    if cell.stderr is not None:
        text += f" ± {cell.stderr * scale:.{places}f}"
    if cell.test is not None:
        text += f" ({format_p(cell.test.p_value)}{'*' if cell.test.p_value < alpha else ''})"
    return text


def format_signed(value: float | None, suffix: str = "", places: int = 1) -> str:
    return "" if value is None else f"{value:+.{places}f}{suffix}"


def headers(board: Leaderboard) -> list[str]:
    unit = " (%)" if board.in_percent else ""
    delta_unit = "pts" if board.in_percent else "abs"
    return ["Model", "Method", "Shots", *board.tasks, f"Average{unit}", f"Δ vs base ({delta_unit})", "Δ vs base (rel %)"]


def display_rows(board: Leaderboard) -> list[list[str]]:
    """The table as text, one list per row, in `headers` order."""
    scale = board.scale
    table = []
    for row in board.rows:
        cells = [format_cell(row.cells.get(task), scale, board.alpha) for task in board.tasks]
        mean_delta = None if row.mean_delta is None else row.mean_delta * scale
        places = digits(scale)
        summary = [f"{row.average * scale:.{places}f}", format_signed(mean_delta, places=places),
                   format_signed(row.mean_relative, "%")]
        table.append([row.model, row.method, row.shots, *cells, *summary])
    return table


def legend(board: Leaderboard) -> str:
    cells = [cell for row in board.rows for cell in row.cells.values()]
    text = f"{board.metric} in %" if board.in_percent else board.metric
    text += ", ± lm-eval's standard error."
    tests = sorted({cell.test.name for cell in cells if cell.test is not None})
    if tests:
        how = " or ".join(TEST_NAMES[name] for name in tests)
        text += (
            f" p: {how} against the {board.base_method!r} run of the same model and shots on the "
            f"same documents (two-sided; * p < {board.alpha:g}; no correction for multiple comparisons)."
        )
    if any(cell.delta is not None for cell in cells):
        text += " Δ: mean over tasks of (score − base), and of (score − base) / base × 100."
    return text


def markdown(board: Leaderboard) -> str:
    columns = headers(board)
    writer = MarkdownTableWriter(
        headers=columns, value_matrix=display_rows(board), type_hints=[String] * len(columns), margin=1
    )
    return f"{writer.dumps().rstrip()}\n\n{legend(board)}\n"


def _test_fields(cell: Cell, alpha: float) -> dict:
    test = cell.test
    if test is None:
        return {}
    return {
        "n_docs": test.n,
        "test": test.name,
        "base_better": test.base_better,
        "other_better": test.other_better,
        "p_value": test.p_value,
        "significant": test.p_value < alpha,
    }


def csv_records(board: Leaderboard):
    """One record per (row, task) plus one `average` record per row; raw metric values, not %."""
    for row in board.rows:
        shared = {
            "model": row.model, "method": row.method, "shots": row.shots,
            "metric": board.metric, "results_file": str(row.run.source),
        }
        for task, cell in row.cells.items():
            yield {
                **shared, "task": task, "value": cell.value, "stderr": cell.stderr,
                "delta": cell.delta, "relative_pct": cell.relative, **_test_fields(cell, board.alpha),
            }
        yield {**shared, "task": "average", "value": row.average, "delta": row.mean_delta, "relative_pct": row.mean_relative}


def write_csv(board: Leaderboard, path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(csv_records(board))


HTML_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{ title }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; }
td:nth-child(-n+3) { text-align: left; }
tr.base td { background: #fafafa; font-style: italic; }
img { max-width: 100%; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
<table>
<thead><tr>{% for header in headers %}<th>{{ header }}</th>{% endfor %}</tr></thead>
<tbody>
{% for row, cells in rows %}<tr{% if row.is_base %} class="base"{% endif %}>{% for cell in cells %}<td>{{ cell }}</td>{% endfor %}</tr>
{% endfor %}</tbody>
</table>
<p>{{ legend }}</p>
<img alt="{{ title }} bar chart" src="data:image/png;base64,{{ png_base64 }}">
<h2>Runs</h2>
<ul>
{% for row in board.rows %}<li>{{ row.model }} · {{ row.method }} · {{ row.shots }}: <code>{{ row.run.source }}</code></li>
{% endfor %}</ul>
</body>
</html>
"""


def html(board: Leaderboard, png: bytes) -> str:
    """A single page: the table, the legend, the chart embedded as base64, and the source files."""
    template = jinja2.Environment(autoescape=True).from_string(HTML_TEMPLATE)
    return template.render(
        title=f"tarot-eval leaderboard: {board.metric}",
        headers=headers(board),
        rows=list(zip(board.rows, display_rows(board))),
        legend=legend(board),
        png_base64=base64.b64encode(png).decode("ascii"),
        board=board,
    )


def write_all(board: Leaderboard, out: Path) -> dict[str, Path]:
    """Write leaderboard.{md,csv,png,html} into `out`; returns them by kind."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {kind: out / f"leaderboard.{kind}" for kind in ("md", "csv", "png", "html")}
    paths["md"].write_text(markdown(board), encoding="utf-8")
    write_csv(board, paths["csv"])
    png = bar_chart(board)
    paths["png"].write_bytes(png)
    paths["html"].write_text(html(board, png), encoding="utf-8")
    return paths
