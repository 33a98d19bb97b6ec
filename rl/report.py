"""`tarot-eval rl-report`: base vs edited generations side by side, with perplexity under the base model.

    tarot-eval rl-report --task tarot_imdb base=eval/base bo=eval/imdb-bo grpo=eval/imdb-grpo --out report.md

Each RUN is an `lm_eval --output_path` folder (written with `--log_samples`) that scored TASK.
The report holds, per run, the task's own metrics (from the results JSON) plus the fluency guard
lm-eval cannot compute without a second model: the perplexity of each continuation given its
prompt under the unedited model (`--model`, default the embedded SmolLM2), and then the first
`--examples` prompts with every run's continuation. The first run is the reference the others
are matched to, document by document.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from tarot_eval.compare.errors import CompareError
from tarot_eval.compare.runs import find_results, load_results, read_scores
from tarot_eval.rl import candidates_plot

SCALAR = (int, float)


@dataclass(frozen=True)
class RunSamples:
    """One run's task metrics and its continuations by doc_id."""

    name: str
    metrics: dict[str, float]  # aggregate metric -> value, from the results JSON
    prompts: dict[int, str]
    continuations: dict[int, str]
    per_document: dict[str, dict[int, float]]  # metric -> doc_id -> value, for the metrics lm-eval logs per document


def parse_run(item: str) -> tuple[str, Path]:
    name, sep, path = item.partition("=")
    return (name, Path(path)) if sep else (Path(item).name, Path(item))


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


def fluency(model, tokenizer, run: RunSamples) -> dict[str, float]:
    """Corpus (token-weighted) and median per-continuation perplexity under `model`; empty continuations."""
    from tarot_eval.rl.fluency import continuation_perplexity

    ids = sorted(run.prompts)
    perplexity = continuation_perplexity(model, tokenizer, [run.prompts[i] for i in ids],
                                         [run.continuations[i] for i in ids])
    finite = [value for value in perplexity.per_text if not math.isnan(value)]
    return {"ppl_base": perplexity.corpus, "ppl_base_median": statistics.median(finite) if finite else math.nan,
            "empty": len(ids) - len(finite)}


def paired_p(reference: RunSamples, run: RunSamples, metric: str) -> float:
    """Paired test of `metric` per prompt, `run` against `reference` (t-test; McNemar for 0/1 values)."""
    from tarot_eval.compare.significance import paired_test

    base, other = reference.per_document[metric], run.per_document[metric]
    return paired_test([(base[i], other[i]) for i in sorted(base)]).p_value


def markdown(task: str, runs: list[RunSamples], fluencies: list[dict], examples: int) -> str:
    metrics = [name for name in runs[0].metrics if all(name in run.metrics for run in runs)]
    tested = [name for name in metrics if all(name in run.per_document for run in runs)]
    columns = ["run", *metrics, *fluencies[0], *(f"p {name}" for name in tested)]
    lines = [f"## {task}: {len(runs[0].prompts)} prompts", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for run, extra in zip(runs, fluencies):
        values = [run.metrics[name] for name in metrics] + list(extra.values())
        tests = [f"{paired_p(runs[0], run, name):.3g}" if run is not runs[0] else "" for name in tested]
        lines.append("| " + " | ".join([run.name, *(f"{value:.4g}" for value in values), *tests]) + " |")
    lines += ["", "ppl_base: perplexity of the continuations given their prompts under the unedited model "
                  "(token-weighted over all continuations; median per continuation). Empty continuations are left out.",
              f"p METRIC: paired test per prompt against {runs[0].name} (t-test; exact McNemar for 0/1 metrics).",
              "", f"### First {examples} prompts (greedy)", ""]
    for doc_id in sorted(runs[0].prompts)[:examples]:
        lines.append(f"- `{runs[0].prompts[doc_id]!r}`")
        lines += [f"  - {run.name}: `{run.continuations[doc_id]!r}`" for run in runs]
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN", help="NAME=FOLDER or FOLDER (an lm_eval --output_path); the first is the reference")
    parser.add_argument("--task", required=True, help="the generation task the runs scored, e.g. tarot_imdb or tarot_detox")
    parser.add_argument("--model", help="the unedited model for perplexity: HF id, local dir or .gguf (default: the embedded SmolLM2)")
    parser.add_argument("--examples", type=int, default=3, help="prompts shown with every run's continuation (default 3)")
    parser.add_argument("--out", type=Path, help="also write the report to this Markdown file")
    parser.add_argument("--checkpoints", nargs="+", metavar="CKPT", default=[],
                        help="NAME=FOLDER of `tarot-eval rl` checkpoints: their candidates go into --plot")
    parser.add_argument("--plot", type=Path, help="PNG of every checkpoint's candidates: selection reward vs perplexity")


def run(args: argparse.Namespace) -> int:
    if bool(args.checkpoints) != bool(args.plot):
        print("tarot-eval rl-report: error: --checkpoints and --plot go together", file=sys.stderr)
        return 2
    try:
        runs = [read_run(name, root, args.task) for name, root in map(parse_run, args.runs)]
        candidates = [entry for name, folder in map(parse_run, args.checkpoints)
                      for entry in candidates_plot.read_candidates(name, folder)]
    except CompareError as error:
        print(f"tarot-eval rl-report: error: {error}", file=sys.stderr)
        return 2
    except (OSError, ValueError, KeyError) as error:
        print(f"tarot-eval rl-report: error: a --checkpoints folder has no readable result.json ({error})", file=sys.stderr)
        return 2
    reference = runs[0]
    for other in runs[1:]:
        if other.prompts != reference.prompts:
            print(f"tarot-eval rl-report: error: {other.name} and {reference.name} did not generate for the same "
                  f"prompts (different --limit, prompt seed or data?)", file=sys.stderr)
            return 2
    from tarot_eval.default_model import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(args.model)
    report = markdown(args.task, runs, [fluency(model, tokenizer, run) for run in runs], args.examples)
    print(report)
    if args.out:
        args.out.write_text(report, encoding="utf-8")
    if args.plot:
        args.plot.write_bytes(candidates_plot.png(candidates, f"{args.task}: trained candidates"))
        print(f"wrote {args.plot}")
    return 0
