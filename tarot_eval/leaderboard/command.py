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
    parser.add_argument("--dry-run", action="store_true", help="only print which cells would run and which are done")


def run(args: argparse.Namespace) -> int:
    from tarot_eval.leaderboard.runner import run_leaderboard

    run_leaderboard(load(args.config), args.out, dry_run=args.dry_run)
    return 0
