"""TaRot for lm-evaluation-harness: attention-head rotations, their optimizer and the `tarot-hf` model.

Kept import-free on purpose: the startup hook imports this package in every Python process.
"""

__version__ = "0.1.0"
