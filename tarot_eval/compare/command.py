"""`tarot-eval compare RESULTS_DIR`: argument parsing and the steps, nothing else (errors: `tarot_eval.cli`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tarot_eval.compare import interference, labels, render, runs, scoreboard


def names(text: str) -> list[str]:
    """A comma-separated list of names or shell patterns."""
    return [part.strip() for part in text.split(",") if part.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("results_dir", type=Path, metavar="RESULTS_DIR",
        help="folder holding lm_eval --output_path folders (searched recursively for results_*.json)")
    add("--out", type=Path, default=None,
        help="where to write leaderboard.{md,csv,png,html} (default: RESULTS_DIR/leaderboard)")
    add("--metric", default="acc",
        help="lm-eval metric, optionally with its filter, e.g. acc, acc_norm, exact_match,strict-match (default: acc)")
    add("--label", action="append", metavar="PATH=METHOD",
        help="method name for the run(s) at or under PATH (a results file or folder); repeatable")
    add("--model-label", action="append", metavar="PATH=MODEL",
        help="model name for the run(s) at or under PATH; repeatable")
    add("--tasks", type=names, default=None, metavar="TASK[,TASK]",
        help="compare only these tasks: names or shell patterns, e.g. '*_fewshot' (default: all)")
    add("--methods", type=names, default=None, metavar="METHOD[,METHOD]",
        help="compare only these methods (names or shell patterns) and the --base one (default: all)")
    add("--base", default="base", help="method name of the baseline each model is compared to (default: base)")
    add("--alpha", type=float, default=0.05, help="significance level marked with * (default: 0.05)")
    add("--reference", default=None, metavar="METHOD",
        help=f"method tested, seed by seed, against every other method "
             f"(default: {scoreboard.DEFAULT_REFERENCE}, when a run has it)")
    add("--by-seed", action="store_true", help="one row per seed instead of mean ± sd over the seeds (seed-<k> folders)")
    add("--interference", action="store_true",
        help="the task x task matrix of each edit's Δ vs base (edited on x evaluated on), with interference/ runs; "
             "writes interference.{md,png}")
    add("--no-significance", action="store_true",
        help="skip the paired significance test (no samples files needed; the runs must still cover the same documents)")


def run(args: argparse.Namespace) -> int:
    """Bad input raises CompareError, which `tarot-eval` reports in one line."""
    root = args.results_dir
    found = runs.read_runs(
        root,
        args.metric,
        method_labels=labels.parse_labels(args.label, root, "--label"),
        model_labels=labels.parse_labels(args.model_label, root, "--model-label"),
        interference=args.interference,
    )
    if args.tasks:
        found = runs.select_tasks(found, args.tasks, root)
    if args.methods:
        found = runs.select_methods(found, args.methods, root, args.base)
    if args.interference:
        matrices = interference.build(found, base_method=args.base, alpha=args.alpha)
        paths = interference.write(matrices, args.out or root / "leaderboard")
        print(interference.markdown(matrices))
        print("wrote " + ", ".join(str(path) for path in paths.values()), file=sys.stderr)
        return 0
    board = scoreboard.build(
        found, base_method=args.base, significance=not args.no_significance, alpha=args.alpha, reference=args.reference
    )
    paths = render.write_all(board, args.out or root / "leaderboard", by_seed=args.by_seed)
    print(render.markdown(board, by_seed=args.by_seed))
    print("wrote " + ", ".join(str(path) for path in paths.values()), file=sys.stderr)
    return 0
