"""Generation runs read back for comparison: each run's continuations, task metrics and paired tests.

An lm-eval `--output_path` folder written with `--log_samples` for a `generate_until` task
(`tarot_imdb`, `tarot_detox`) becomes a `RunSamples`; `markdown` puts runs side by side with a
paired test per metric against the first run and the first prompts with every run's continuation.
Extra per-run columns (the perplexity `tarot-eval rl-report` computes with the base model) come in
from the caller, so this module only reads files. Two or more runs against the first (e.g. training seeds)
also get a summary: each metric's change, mean ± sd over the runs, and how many changed significantly.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from tarot_eval.compare.errors import CompareError
from tarot_eval.compare.runs import find_results, load_results, read_scores
from tarot_eval.compare.significance import paired_test

SCALAR = (int, float)


@dataclass(frozen=True)
class RunSamples:
    """One run's task metrics and its continuations by doc_id."""

    name: str
    metrics: dict[str, float]  # aggregate metric -> value, from the results JSON
    prompts: dict[int, str]
    continuations: dict[int, str]
    per_document: dict[str, dict[int, float]]  # metric -> doc_id -> value, for the metrics lm-eval logs per document


def read_run(name: str, root: Path, task: str) -> RunSamples:
    """The newest results file under `root` that scored `task`, and its samples."""
    for source in reversed(find_results(root)):
        results = load_results(source)
        if task not in results["configs"]:
            continue
        entry = results["results"][task]
        metrics = {key.partition(",")[0]: float(value) for key, value in entry.items()
                   if "," in key and "_stderr" not in key and isinstance(value, SCALAR)}
        samples = next(iter(read_scores(results, source, next(iter(metrics))).values())).samples
        if not samples.is_file():
            raise CompareError(f"{samples} is missing: run lm_eval with --log_samples")
        prompts, continuations, per_document = {}, {}, {}
        for line in samples.read_text(encoding="utf-8").splitlines():
            sample = json.loads(line)
            prompts[sample["doc_id"]] = sample["doc"]["prompt"]
            continuations[sample["doc_id"]] = sample["filtered_resps"][0]
            for metric in metrics:
                if isinstance(sample.get(metric), SCALAR):
                    per_document.setdefault(metric, {})[sample["doc_id"]] = float(sample[metric])
        return RunSamples(name, metrics, prompts, continuations, per_document)
    raise CompareError(f"no lm-eval run under {root} scored {task}")


def same_prompts(runs: list[RunSamples]) -> list[RunSamples]:
    """`runs`, refused unless every run generated for the first run's prompts (paired tests need the same ones)."""
    reference = runs[0]
    for other in runs[1:]:
        if other.prompts != reference.prompts:
            raise CompareError(f"{other.name} and {reference.name} did not generate for the same "
                               "prompts (different --limit, prompt seed or data?)")
    return runs


def paired_p(reference: RunSamples, run: RunSamples, metric: str) -> float:
    """Paired test of `metric` per prompt, `run` against `reference` (t-test; McNemar for 0/1 values)."""
    base, other = reference.per_document[metric], run.per_document[metric]
    return paired_test([(base[i], other[i]) for i in sorted(base)]).p_value


def over_runs(runs: list[RunSamples], tested: list[str], alpha: float = 0.05) -> list[str]:
    """Markdown lines: per tested metric, the change of runs[1:] against runs[0] (mean ± sd over the runs) and how
    many of them differ from runs[0] at p < alpha, up and down."""
    others = runs[1:]
    lines = [f"### Over the {len(others)} runs against {runs[0].name}", "",
             f"| metric | change, mean ± sd | p < {alpha:g}: up / down |", "|---|---|---|"]
    for name in tested:
        changes = [run.metrics[name] - runs[0].metrics[name] for run in others]
        significant = [change for run, change in zip(others, changes) if paired_p(runs[0], run, name) < alpha]
        lines.append(f"| {name} | {statistics.mean(changes):+.4g} ± {statistics.stdev(changes):.4g} | "
                     f"{sum(c > 0 for c in significant)} / {sum(c < 0 for c in significant)} of {len(others)} |")
    return [*lines, ""]


def markdown(task: str, runs: list[RunSamples], extra_columns: list[dict], examples: int, legend: str = "") -> str:
    """The runs' metrics, `extra_columns` (one dict per run, the caller's, explained by `legend`) and paired tests as a
    Markdown table, then the first `examples` prompts with every run's continuation."""
    metrics = [name for name in runs[0].metrics if all(name in run.metrics for run in runs)]
    tested = [name for name in metrics if all(name in run.per_document for run in runs)]
    columns = ["run", *metrics, *extra_columns[0], *(f"p {name}" for name in tested)]
    lines = [f"## {task}: {len(runs[0].prompts)} prompts", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for run, extra in zip(runs, extra_columns):
        values = [run.metrics[name] for name in metrics] + list(extra.values())
        tests = [f"{paired_p(runs[0], run, name):.3g}" if run is not runs[0] else "" for name in tested]
        lines.append("| " + " | ".join([run.name, *(f"{value:.4g}" for value in values), *tests]) + " |")
    lines += ["", *([legend] if legend else []),
              f"p METRIC: paired test per prompt against {runs[0].name} (t-test; exact McNemar for 0/1 metrics).", ""]
    if len(runs) >= 3:
        lines += over_runs(runs, tested)
    lines += [f"### First {examples} prompts (greedy)", ""]
    for doc_id in sorted(runs[0].prompts)[:examples]:
        lines.append(f"- `{runs[0].prompts[doc_id]!r}`")
        lines += [f"  - {run.name}: `{run.continuations[doc_id]!r}`" for run in runs]
    return "\n".join(lines) + "\n"
