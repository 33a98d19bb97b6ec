"""The methods a leaderboard compares, one module per kind, registered by the key a config selects it with.

Registration order is the order the leaderboard counts their fits in."""

# isort: off
from tarot_eval.methods import search, calibrate, lora, icl, unedited  # noqa: F401  (each registers its kind)
# isort: on
from tarot_eval.methods.registry import METHODS, MethodSpec, method_of, register_method  # noqa: F401
