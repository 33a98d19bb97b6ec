"""Reward-scorer helpers: a scorer that marks its calls, a tiny saved sequence classifier."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import torch
import transformers

WORDS = "the a movie film was is good great bad awful i you loved hated it this , . !".split()



def save_tiny_classifier(path: Path, labels: list[str], seed: int = 0):
    """A tiny random BERT sequence classifier with a word-piece tokenizer, saved offline to `path`."""
    vocab = {token: i for i, token in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])}
    tokenizer = transformers.BertTokenizer(vocab=vocab)
    config = transformers.BertConfig(
        vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=64,
        id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)},
    )
    torch.manual_seed(seed)
    model = transformers.BertForSequenceClassification(config).eval()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return model, tokenizer



class WritesMarker:
    """Unpickling this runs `touch marker`: the payload of a crafted checkpoint."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)
