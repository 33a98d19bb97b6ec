"""Toy lm-eval runs for the compare tests: 4-way tasks, the `toy` fixture (tasks, a tiny Llama in HFLM) and helpers."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
from conftest import tiny_model, write_choice_task
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager

from tarot_eval import cli

TASKS = ("toy_a", "toy_b")



WORDS = "quick brown fox jumps over the lazy dog step turn left red green blue color".split()



CHOICES = [" True", " False", " Yes", " No"]



def write_task(folder: Path, name: str, seed: int, n_docs: int = 40, edited_doc: int | None = None) -> None:
    """A 4-way multiple_choice YAML task over a local JSON file; `edited_doc` gets a changed question."""
    rng = random.Random(seed)
    docs = [
        {"question": " ".join(rng.choice(WORDS) for _ in range(6)), "choices": CHOICES, "label": rng.randrange(4)}
        for _ in range(n_docs)
    ]
    if edited_doc is not None:
        docs[edited_doc]["question"] += " again"
    write_choice_task(folder, name, docs, doc_to_text="{{question}} Answer:", doc_to_choice="choices")



@pytest.fixture(scope="module")
def toy(tmp_path_factory, tiny_tokenizer):
    """Task folder, task manager and one tiny Llama wrapped in lm-eval's HFLM."""
    root = tmp_path_factory.mktemp("compare")
    for seed, name in enumerate(TASKS):
        write_task(root / "tasks", name, seed)
    model = tiny_model("llama")
    lm = HFLM(pretrained=model, tokenizer=tiny_tokenizer, batch_size=16)
    return {"root": root, "model": model, "lm": lm,
            "tasks": TaskManager(include_path=str(root / "tasks"), include_defaults=False)}



def compare(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main(["compare", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err



def per_doc_acc(results_file: Path, task: str) -> dict[int, float]:
    date = results_file.stem.removeprefix("results_")
    lines = (results_file.parent / f"samples_{task}_{date}.jsonl").read_text().splitlines()
    return {sample["doc_id"]: sample["acc"] for sample in map(json.loads, lines)}



def exact_mcnemar_p(base_only: int, other_only: int) -> float:
    """Two-sided exact binomial p-value from the binomial formula (independent of scipy)."""
    n, k = base_only + other_only, min(base_only, other_only)
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)
