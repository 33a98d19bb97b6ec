"""Scorer backed by any HuggingFace sequence-classification model (hub id or local directory).

The paper's sentiment reward was `lvwerra/distilbert-imdb`'s POSITIVE logit; this scorer gives
that logit as the reward and the label's probability as the value. Weights in `pytorch_model.bin`
load with `weights_only=True`: a file that needs other pickle globals is refused, never run.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Sequence
from pathlib import Path

import torch

from tarot_eval.rewards.scorers import BUILTIN_SCORERS, Scorer, ScorerUnavailable, TextScore

# Label names picked when none is given, compared case-insensitively.
DEFAULT_LABELS = {
    "sentiment": ("positive", "pos"),
    "toxicity": ("toxic", "toxicity", "hate", "offensive"),
}


class ClassifierScorer(Scorer):
    """Value = probability of `label` (softmax, or sigmoid for multi-label models).

    Sentiment: flagged when `label` wins, reward = the label's logit.
    Toxicity: flagged when `label` wins, reward = 1 - its probability.
    """

    def __init__(self, model: str, kind: str = "sentiment", label: str | None = None,
                 device: str = "cpu", batch_size: int = 32):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if kind not in DEFAULT_LABELS:
            raise ValueError(f"unknown scorer kind {kind!r}")
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(model)
            self._model = AutoModelForSequenceClassification.from_pretrained(model, weights_only=True).to(device).eval()
        except pickle.UnpicklingError as error:
            files = sorted(Path(model).glob("*.bin")) or [Path(model)]
            unsafe = [name for file in files for name in pickle_globals(file)]
            why = f"need the pickle globals {', '.join(unsafe)}" if unsafe else "hold more than tensors"
            raise ScorerUnavailable(
                f"refusing {', '.join(map(str, files))}: the weights {why}, and unpickling them could run code "
                "from the file; save the model as safetensors (save_pretrained) to use it"
            ) from error
        except OSError as error:
            builtin = ", ".join(BUILTIN_SCORERS[kind])
            raise ScorerUnavailable(
                f"{model!r} is neither a built-in {kind} scorer ({builtin}) nor a loadable "
                f"HuggingFace sequence-classification model: {error}"
            ) from error
        self.kind = kind
        self.name = model
        self._label_index, self.label = _find_label(self._model.config.id2label, label, kind, model)
        self._multi_label = self._model.config.problem_type == "multi_label_classification"
        self._batch_size = batch_size

    @torch.no_grad()
    def score(self, texts: Sequence[str]) -> list[TextScore]:
        scores = []
        for start in range(0, len(texts), self._batch_size):
            batch = list(texts[start:start + self._batch_size])
            inputs = self._tokenizer(batch, return_tensors="pt", padding=True, truncation=True)
            logits = self._model(**inputs.to(self._model.device)).logits.float().cpu()
            probabilities = logits.sigmoid() if self._multi_label else logits.softmax(-1)
            for row_logits, row_probabilities in zip(logits, probabilities):
                value = float(row_probabilities[self._label_index])
                if self._multi_label:
                    flagged = value > 0.5
                else:
                    flagged = int(row_logits.argmax()) == self._label_index
                reward = float(row_logits[self._label_index]) if self.kind == "sentiment" else 1.0 - value
                scores.append(TextScore(scorer=self.name, value=value, flagged=flagged, reward=reward))
        return scores


def pickle_globals(path: Path) -> list[str]:
    """The globals a torch checkpoint needs beyond what `torch.load(weights_only=True)` allows (zip format only)."""
    return torch.serialization.get_unsafe_globals_in_checkpoint(path) if zipfile.is_zipfile(path) else []


def _find_label(id2label: dict, label: str | None, kind: str, model: str) -> tuple[int, str]:
    """Index and exact name of `label` (or of the kind's default label) among the model's labels."""
    wanted = [label.lower()] if label is not None else list(DEFAULT_LABELS[kind])
    for index, name in id2label.items():
        if name.lower() in wanted:
            return int(index), name
    raise ScorerUnavailable(
        f"{model}: no label {' / '.join(wanted)} among its labels {sorted(id2label.values())}; "
        f"pass label=NAME"
    )
