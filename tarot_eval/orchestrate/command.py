"""`tarot-eval leaderboard --config FILE.yaml --out DIR`: argument parsing and error reporting only."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tarot_eval.checkpoint import CheckpointError
from tarot_eval.compare.errors import CompareError
from tarot_eval.objective import ObjectiveError
from tarot_eval.optimize.record import RecordError
from tarot_eval.orchestrate.config import ConfigError, load
from tarot_eval.orchestrate.plan import PlanError
from tarot_eval.run_lock import RunLockedError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="leaderboard YAML (see configs/leaderboard_*.yaml)")
    parser.add_argument(
        "--out", required=True, type=Path,
        help="output folder: checkpoints/, runs/ (lm-eval --output_path folders) and leaderboard.{md,csv,png,html}",
    )
    parser.add_argument("--dry-run", action="store_true", help="only print which cells would run and which are done")


def run(args: argparse.Namespace) -> int:
    from tarot_eval.orchestrate.runner import run_leaderboard

    try:
        run_leaderboard(load(args.config), args.out, dry_run=args.dry_run)
    except (ConfigError, PlanError, ObjectiveError, CompareError, CheckpointError, RecordError, RunLockedError) as error:
        print(f"tarot-eval leaderboard: error: {error}", file=sys.stderr)
        return 2
    return 0
