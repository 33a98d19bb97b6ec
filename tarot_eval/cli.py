"""`tarot-eval` command: thin argument parsing; each subcommand lives in the module that does the work.

A subcommand module exposes `add_arguments(parser)` and `run(args) -> int`; it is only
imported when its subcommand runs, so `tarot-eval --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = {
    "lm-eval": ("tarot_eval.passthrough", "run the stock lm_eval command (tarot-hf and tarot tasks registered)"),
    "optimize": ("tarot_eval.optimize.command", "search a head edit on a task's training documents"),
    "leaderboard": ("tarot_eval.orchestrate", "optimize and evaluate a config's model x method x task grid (only what is missing), then compare"),
    "rl": ("tarot_eval.rl.command", "train rotation angles for a generation reward (sentiment, toxicity) with BO or TRL GRPO"),
    "rl-report": ("tarot_eval.rl.report", "base vs edited generations: task metrics, perplexity under the base model, examples"),
    "compare": ("tarot_eval.compare", "leaderboard from lm_eval output folders: table, paired significance test, csv, png, html"),
    "export": ("tarot_eval.export", "fold a checkpoint into the weights and save a plain HF model"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tarot-eval",
        description="TaRot attention-head edits for lm-eval: optimize, evaluate, compare, export.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=name != "lm-eval")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "lm-eval":  # everything after it belongs to lm_eval, --help included
        from tarot_eval.passthrough import run_lm_eval

        return run_lm_eval(argv[1:])
    parser = build_parser()
    if argv and argv[0] in SUBCOMMANDS:
        module = importlib.import_module(SUBCOMMANDS[argv[0]][0])
        command_parser = argparse.ArgumentParser(prog=f"tarot-eval {argv[0]}", description=SUBCOMMANDS[argv[0]][1])
        module.add_arguments(command_parser)
        return module.run(command_parser.parse_args(argv[1:])) or 0
    parser.parse_args(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
