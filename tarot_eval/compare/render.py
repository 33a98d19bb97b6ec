"""Scoreboard -> Markdown tables, long-format CSVs (per run; over seeds), and a self-contained HTML page with the chart."""

from __future__ import annotations

import base64
import csv
from pathlib import Path

import jinja2
from pytablewriter import MarkdownTableWriter
from typepy import String

from tarot_eval.compare.chart import bar_chart
from tarot_eval.compare.diagnostics import Answers
from tarot_eval.compare.scoreboard import Scoreboard, TableCell
from tarot_eval.compare.seeds import SeedCell, summarize, versus_reference
from tarot_eval.compare.tables import Table, scores_table, versus_table

CSV_COLUMNS = (
    "model", "method", "shots", "seed", "task", "metric", "value", "stderr", "delta", "relative_pct",
    "n_docs", "test", "base_better", "other_better", "p_value", "significant",
    "top_answer", "top_share", "entropy_bits", "collapsed", "chance", "majority_answer", "majority_rate", "results_file",
)
SEED_CSV_COLUMNS = (
    "model", "method", "versus", "shots", "task", "metric", "n_seeds", "seeds", "mean", "sd", "delta_mean", "delta_sd",
    "better", "worse", "p_values", "top_share_mean", "collapsed_seeds",
)


def markdown_table(table: Table) -> str:
    writer = MarkdownTableWriter(
        headers=table.headers, value_matrix=table.rows, type_hints=[String] * len(table.headers), margin=1
    )
    return f"{writer.dumps().rstrip()}\n\n{table.legend}\n"


def markdown(board: Scoreboard, by_seed: bool = False) -> str:
    """The scores table (mean ± sd over seeds, or one row per seed with `by_seed`), then the reference's."""
    versus = versus_table(board)
    return markdown_table(scores_table(board, by_seed)) + ("" if versus is None else "\n" + markdown_table(versus))


def _test_fields(cell: TableCell, alpha: float) -> dict:
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


def _answer_fields(answers: Answers | None) -> dict:
    if answers is None:
        return {}
    return {
        "top_answer": answers.top_answer, "top_share": answers.top_share, "entropy_bits": answers.entropy_bits,
        "collapsed": answers.collapsed, "chance": answers.chance,
        "majority_answer": answers.majority_answer, "majority_rate": answers.majority_rate,
    }


def csv_records(board: Scoreboard):
    """One record per (run, task) plus one `average` record per run; raw metric values, not %."""
    for row in board.rows:
        shared = {
            "model": row.model, "method": row.method, "shots": row.shots, "seed": row.seed,
            "metric": board.metric, "results_file": str(row.run.source),
        }
        for task, cell in row.cells.items():
            yield {
                **shared, "task": task, "value": cell.value, "stderr": cell.stderr,
                "delta": cell.delta, "relative_pct": cell.relative, **_test_fields(cell, board.alpha),
                **_answer_fields(cell.answers),
            }
        yield {**shared, "task": "average", "value": row.average, "delta": row.mean_delta, "relative_pct": row.mean_relative}


def _seed_fields(cell: SeedCell) -> dict:
    answers = cell.answers
    return {
        "n_seeds": len(cell.cells), "mean": cell.value.mean, "sd": cell.value.sd,
        "delta_mean": None if cell.delta is None else cell.delta.mean, "delta_sd": None if cell.delta is None else cell.delta.sd,
        "better": cell.better if cell.p_values else None, "worse": cell.worse if cell.p_values else None,
        "p_values": ";".join(f"{p:.6g}" for p in cell.p_values),
        "top_share_mean": sum(one.top_share for one in answers) / len(answers) if answers else None,
        "collapsed_seeds": sum(one.collapsed for one in answers) if answers else None,
    }


def seed_list(seeds) -> str:
    return ";".join("" if seed is None else str(seed) for seed in seeds)


def seed_csv_records(board: Scoreboard):
    """Per (model, method, shots, task) over seeds against base, an `average` record per row, and the
    reference against each other method (method = the reference, versus = the other)."""
    for row in summarize(board):
        shared = {"model": row.model, "method": row.method, "versus": "" if row.is_base else board.base_method,
                  "shots": row.shots, "metric": board.metric, "seeds": seed_list(row.seeds)}
        for task, cell in row.cells.items():
            yield {**shared, "task": task, **_seed_fields(cell)}
        delta = row.mean_delta
        yield {**shared, "task": "average", "n_seeds": len(row.rows), "mean": row.average.mean, "sd": row.average.sd,
               "delta_mean": None if delta is None else delta.mean, "delta_sd": None if delta is None else delta.sd}
    for one in versus_reference(board):
        shared = {"model": one.model, "method": board.reference, "versus": one.method, "shots": one.shots,
                  "metric": board.metric, "seeds": seed_list(one.seeds)}
        for task, cell in one.cells.items():
            yield {**shared, "task": task, **_seed_fields(cell)}


def write_csv(path: Path, columns: tuple[str, ...], records) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(records)


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
{% for table in tables %}<table>
<thead><tr>{% for header in table.headers %}<th>{{ header }}</th>{% endfor %}</tr></thead>
<tbody>
{% for cells, base in zip(table.rows, table.base) %}<tr{% if base %} class="base"{% endif %}>\
{% for cell in cells %}<td>{{ cell }}</td>{% endfor %}</tr>
{% endfor %}</tbody>
</table>
<p>{{ table.legend }}</p>
{% endfor %}<img alt="{{ title }} bar chart" src="data:image/png;base64,{{ png_base64 }}">
<h2>Runs</h2>
<ul>
{% for row in board.rows %}<li>{{ row.model }} · {{ row.method }} · {{ row.shots }}\
{% if row.seed is not none %} · seed {{ row.seed }}{% endif %}: <code>{{ row.run.source }}</code></li>
{% endfor %}</ul>
</body>
</html>
"""


def html(board: Scoreboard, png: bytes, by_seed: bool = False) -> str:
    """A single page: the tables and their legends, the chart embedded as base64, and the source files."""
    template = jinja2.Environment(autoescape=True).from_string(HTML_TEMPLATE)
    return template.render(
        title=f"tarot-eval leaderboard: {board.metric}",
        tables=[table for table in (scores_table(board, by_seed), versus_table(board)) if table is not None],
        zip=zip,
        png_base64=base64.b64encode(png).decode("ascii"),
        board=board,
    )


def write_all(board: Scoreboard, out: Path, by_seed: bool = False, stem: str = "leaderboard") -> dict[str, Path]:
    """Write <stem>.{md,csv,png,html} and <stem>_seeds.csv (the rows over seeds) into `out`;
    returns them by kind."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {kind: out / f"{stem}.{kind}" for kind in ("md", "csv", "png", "html")}
    paths["seeds_csv"] = out / f"{stem}_seeds.csv"
    paths["md"].write_text(markdown(board, by_seed), encoding="utf-8")
    write_csv(paths["csv"], CSV_COLUMNS, csv_records(board))
    write_csv(paths["seeds_csv"], SEED_CSV_COLUMNS, seed_csv_records(board))
    png = bar_chart(board)
    paths["png"].write_bytes(png)
    paths["html"].write_text(html(board, png, by_seed), encoding="utf-8")
    return paths
