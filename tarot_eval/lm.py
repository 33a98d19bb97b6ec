"""`tarot_eval.lm:TarotHFLM`, the class's first public path, kept for configs and scripts that name it."""

from tarot_eval.harness.tarot_hf import TarotHFLM

__all__ = ["TarotHFLM"]
