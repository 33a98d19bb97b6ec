"""Search loops for head edits (BoTorch BO, random search, gradient), their run record and plots.

Entry points: `tarot_eval.optimize.run.optimize` (library) and `tarot_eval.optimize.command`
(the `tarot-eval optimize` subcommand).
"""
