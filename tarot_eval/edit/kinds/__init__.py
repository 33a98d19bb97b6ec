"""The kinds of per-head edit at the attention output projection's input, one module each, registered by name.

Registration order is the order `--method` lists them in."""

# isort: off
from tarot_eval.edit.kinds import rotation, rescale, offset  # noqa: F401  (each registers its kind)
# isort: on
from tarot_eval.edit.kinds.registry import KINDS, EditKind, kind, names, register_edit_kind  # noqa: F401
