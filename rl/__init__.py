"""Reward-driven rotation search for generation (installed as `tarot_eval.rl`)."""
