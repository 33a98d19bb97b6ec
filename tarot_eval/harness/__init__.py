"""The lm-eval seam: the `tarot-hf` model, its prefix-tree scoring, the startup hook and the `lm-eval` passthrough."""
