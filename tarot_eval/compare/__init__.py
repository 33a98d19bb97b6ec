"""`tarot-eval compare`: lm-eval results folders -> leaderboard (Markdown, CSV, PNG, HTML).

Modules: `runs` reads lm-eval's output files, `labels` names each run's model and method,
`significance` pairs per-document values and tests them (exact McNemar for right/wrong, the
paired t-test otherwise), `scoreboard` builds the rows, `chart` draws the bars, `render`
writes the files, `command` is the CLI (`add_arguments`, `run`). `generations` reads generation runs
back for `tarot-eval rl-report`.
"""

from tarot_eval.compare.command import add_arguments, run

__all__ = ["add_arguments", "run"]
