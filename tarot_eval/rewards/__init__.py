"""Scorers of generated text shared by rl/ and the generation tasks: sentiment, toxicity, fluency."""
