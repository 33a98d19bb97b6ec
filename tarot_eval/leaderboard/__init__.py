"""`tarot-eval leaderboard`: every model x method x task of a config, optimized and evaluated, then compared.

Modules: `config` reads and validates the YAML, `plan` lists the cells and which are done,
`execute` runs a model's missing cells in-process (optimizer, lm-eval), `board` builds the
leaderboard through `tarot_eval.compare`, `runner` ties them together, `command` is the CLI
(`add_arguments`, `run`).
"""

from tarot_eval.leaderboard.command import add_arguments, run

__all__ = ["add_arguments", "run"]
