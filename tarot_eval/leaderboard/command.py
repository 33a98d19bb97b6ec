"""`tarot-eval leaderboard --config FILE.yaml --out DIR`: argument parsing only (errors: `tarot_eval.cli`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from tarot_eval.leaderboard.config import load


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="leaderboard YAML (see configs/leaderboard_*.yaml)")
    parser.add_argument(
        "--out", required=True, type=Path,
        help="output folder: checkpoints/, runs/ (lm-eval --output_path folders) and leaderboard.{md,csv,png,html}",
    )
    parser.add_argument("--dry-run", action="store_true",
                        help="only print which cells would run and which are done, and the CPU hours of what is missing")
    parser.add_argument("--jobs", type=int, default=1,
                        help="cells run at once, each in its own worker process (default 1: in this process)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per job (default: the cores divided by --jobs)")
    parser.add_argument("--executor", choices=("local", "ray"), default="local",
                        help="local: --jobs worker processes here; ray: Ray tasks (pip install tarot-eval[ray])")
    parser.add_argument("--ray-address", default=None, help="Ray cluster to join (e.g. auto); default: a local Ray instance")


def run(args: argparse.Namespace) -> int:
    from tarot_eval.leaderboard.runner import run_leaderboard

    summary = run_leaderboard(load(args.config), args.out, dry_run=args.dry_run, jobs=args.jobs, threads=args.threads,
                              executor=args.executor, ray_address=args.ray_address)
    return 1 if summary.failed else 0
