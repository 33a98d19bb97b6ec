"""lm-eval YAML tasks shipped with tarot-eval (installed as `tarot_eval.tasks`)."""
