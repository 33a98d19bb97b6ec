"""`tarot-eval lm-eval ...`: the stock lm_eval command line, with tarot-hf and the tarot tasks registered."""

from __future__ import annotations

import sys


def run_lm_eval(argv: list[str]) -> int:
    from tarot_eval import autoload

    autoload.install(force=True)  # also when TAROT_EVAL_NO_AUTOLOAD is set or the .pth is missing
    from lm_eval.__main__ import cli_evaluate

    sys.argv = ["lm_eval", *argv]
    result = cli_evaluate()
    return result if isinstance(result, int) else 0
