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
import math
import statistics
import sys
from pathlib import Path

from tarot_eval.rl import candidates_plot

from tarot_eval.compare.errors import CompareError
from tarot_eval.compare.generations import RunSamples, markdown, read_run, same_prompts


def parse_run(item: str) -> tuple[str, Path]:
    name, sep, path = item.partition("=")
    return (name, Path(path)) if sep else (Path(item).name, Path(item))


FLUENCY_LEGEND = ("ppl_base: perplexity of the continuations given their prompts under the unedited model "
                  "(token-weighted over all continuations; median per continuation). Empty continuations are left out.")


def fluency(model, tokenizer, run: RunSamples) -> dict[str, float]:
    """Corpus (token-weighted) and median per-continuation perplexity under `model`; empty continuations."""
    from tarot_eval.rewards.fluency import continuation_perplexity

    ids = sorted(run.prompts)
    perplexity = continuation_perplexity(model, tokenizer, [run.prompts[i] for i in ids],
                                         [run.continuations[i] for i in ids])
    finite = [value for value in perplexity.per_text if not math.isnan(value)]
    return {"ppl_base": perplexity.corpus, "ppl_base_median": statistics.median(finite) if finite else math.nan,
            "empty": len(ids) - len(finite)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN",
                        help="NAME=FOLDER or FOLDER (an lm_eval --output_path); the first is the reference")
    parser.add_argument("--task", required=True, help="the generation task the runs scored, e.g. tarot_imdb or tarot_detox")
    parser.add_argument("--model",
                        help="the unedited model for perplexity: HF id, local dir or .gguf (default: the embedded SmolLM2)")
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
        runs = same_prompts([read_run(name, root, args.task) for name, root in map(parse_run, args.runs)])
        candidates = [entry for name, folder in map(parse_run, args.checkpoints)
                      for entry in candidates_plot.read_candidates(name, folder)]
    except CompareError as error:
        print(f"tarot-eval rl-report: error: {error}", file=sys.stderr)
        return 2
    except (OSError, ValueError, KeyError) as error:
        print(f"tarot-eval rl-report: error: a --checkpoints folder has no readable result.json ({error})", file=sys.stderr)
        return 2
    from tarot_eval.models.loading import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(args.model)
    report = markdown(args.task, runs, [fluency(model, tokenizer, run) for run in runs], args.examples, FLUENCY_LEGEND)
    print(report)
    if args.out:
        args.out.write_text(report, encoding="utf-8")
    if args.plot:
        args.plot.write_bytes(candidates_plot.png(candidates, f"{args.task}: trained candidates"))
        print(f"wrote {args.plot}")
    return 0
