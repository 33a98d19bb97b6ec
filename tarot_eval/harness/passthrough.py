"""`tarot-eval lm-eval ...`: the stock lm_eval command line, with tarot-hf and the tarot tasks registered."""

from __future__ import annotations

import sys

UNKNOWN_TASKS = "Tasks not found: "  # how lm-eval 0.4.13's config check starts its unknown-task ValueError


def run_lm_eval(argv: list[str]) -> int:
    from tarot_eval.cli import UsageError
    from tarot_eval.harness import autoload

    autoload.install(force=True)  # also when TAROT_EVAL_NO_AUTOLOAD is set or the .pth is missing
    from lm_eval.__main__ import cli_evaluate

    sys.argv = ["lm_eval", *argv]
    try:
        result = cli_evaluate()
    except ValueError as error:
        if not str(error).startswith(UNKNOWN_TASKS):
            raise
        raise UsageError(f"{error}; list the tasks with `tarot-eval lm-eval ls tasks` "
                         "(--include_path DIR adds a folder of task YAMLs)") from error
    return result if isinstance(result, int) else 0
