"""Generation tasks scored by reward models: `tarot_imdb` (sentiment) and `tarot_detox` (toxicity)."""
