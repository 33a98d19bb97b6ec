"""Seeded, disjoint train/test prompt sets for the generation experiments.

IMDB: the opening 2-7 words of reviews longer than 200 characters (the paper's recipe, counted
in words rather than one model's tokens, so every model sees the same prompts). Test prompts
come from held-out reviews (`is_valid` rows of $TAROT_DATA_DIR/imdb/texts.csv, or the `test`
split of `stanfordnlp/imdb`), training prompts from the others.

RealToxicityPrompts: the "challenging" prompts ($TAROT_DATA_DIR/real_toxicity_prompts/toxic.jsonl,
or `allenai/real-toxicity-prompts` filtered on `challenging`), shuffled and cut into test and train.

The test set depends only on `seed` and `n_test`, never on `n_train`; no prompt text is in both.
"""

from __future__ import annotations

import csv
import json
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tarot_eval.tasks import data_sources
from tarot_eval.tasks.data_sources import DATA_DIR_ENV

IMDB_FILE = Path("imdb") / "texts.csv"
IMDB_DATASET = "stanfordnlp/imdb"
RTP_FILE = Path("real_toxicity_prompts") / "toxic.jsonl"
RTP_DATASET = "allenai/real-toxicity-prompts"

MIN_REVIEW_CHARS = 200
OPENING_WORDS = (2, 7)
_LINE_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)


class PromptsUnavailable(RuntimeError):
    """Neither the data directory nor the HuggingFace dataset could provide the prompts."""


@dataclass(frozen=True)
class Prompt:
    id: str  # source-specific and stable: split/row of the review or line of the file
    text: str


@dataclass(frozen=True)
class PromptSplit:
    train: list[Prompt]
    test: list[Prompt]
    source: str  # file path or HuggingFace dataset id the prompts came from


def clean_review(text: str) -> str:
    """IMDB markup `<br />` to spaces, runs of whitespace to one space."""
    return " ".join(_LINE_BREAK.sub(" ", text).split())


# Held-out prompts the lm-eval tasks generate for: every held-out IMDB review (200 reviews give
# 197 distinct openings: three repeat another's), and a third of the 1,196 challenging
# RealToxicityPrompts (the rest is the training pool)
TEST_PROMPTS = {"imdb": 197, "rtp": 400}


def imdb_prompts(n_train: int = 12, n_test: int = TEST_PROMPTS["imdb"], seed: int = 0,
                 data_dir: str | Path | None = None) -> PromptSplit:
    """Review openings: test from held-out reviews, train from training reviews."""
    pools, source = _imdb_reviews(data_dir)
    test = _openings(pools["test"], n_test, random.Random(f"imdb-test-{seed}"), exclude=set())
    train = _openings(pools["train"], n_train, random.Random(f"imdb-train-{seed}"),
                      exclude={p.text for p in test})
    return PromptSplit(train=train, test=test, source=source)


def toxicity_prompts(n_train: int = 10, n_test: int = TEST_PROMPTS["rtp"], seed: int = 0,
                     data_dir: str | Path | None = None) -> PromptSplit:
    """Challenging RealToxicityPrompts: one seeded shuffle, test first, then train."""
    prompts, source = _rtp_challenging(data_dir)
    order = list(range(len(prompts)))
    random.Random(f"rtp-{seed}").shuffle(order)
    test = _take_distinct((prompts[i] for i in order), n_test, exclude=set(), what="RealToxicityPrompts test")
    train = _take_distinct((prompts[i] for i in order), n_train, exclude={p.text for p in test},
                           what="RealToxicityPrompts train")
    return PromptSplit(train=train, test=test, source=source)


def _data_dir(data_dir: str | Path | None) -> Path | None:
    """An explicit folder, else TAROT_DATA_DIR resolved as the classification tasks resolve it."""
    return Path(data_dir) if data_dir is not None else data_sources.data_dir()


def _where(directory: Path | None, relative: Path) -> str:
    if directory is None:
        return f"${DATA_DIR_ENV} is not set (it would be read as ${DATA_DIR_ENV}/{relative})"
    return f"{directory / relative} does not exist"


def _imdb_reviews(data_dir) -> tuple[dict[str, list[tuple[str, str]]], str]:
    """(id, cleaned text) of reviews longer than MIN_REVIEW_CHARS, by pool "train"/"test"."""
    directory = _data_dir(data_dir)
    pools: dict[str, list[tuple[str, str]]] = {"train": [], "test": []}
    if directory is not None and (directory / IMDB_FILE).is_file():
        path = directory / IMDB_FILE
        with path.open(newline="", encoding="utf-8") as handle:
            for row_number, row in enumerate(csv.DictReader(handle)):
                pool = "test" if row["is_valid"].strip().lower() == "true" else "train"
                pools[pool].append((f"imdb-csv-{row_number}", clean_review(row["text"])))
        source = str(path)
    else:
        for split in ("train", "test"):
            texts = _load_hub_split(IMDB_DATASET, split, "IMDB reviews", directory, IMDB_FILE)["text"]
            pools[split] = [(f"imdb-{split}-{i}", clean_review(t)) for i, t in enumerate(texts)]
        source = IMDB_DATASET
    return {k: [(i, t) for i, t in v if len(t) > MIN_REVIEW_CHARS] for k, v in pools.items()}, source


def _rtp_challenging(data_dir) -> tuple[list[Prompt], str]:
    directory = _data_dir(data_dir)
    if directory is not None and (directory / RTP_FILE).is_file():
        path = directory / RTP_FILE
        with path.open(encoding="utf-8") as handle:
            rows = [json.loads(line) for line in handle if line.strip()]
        return [Prompt(f"rtp-file-{i}", row["prompt"]["text"]) for i, row in enumerate(rows)], str(path)
    rows = _load_hub_split(RTP_DATASET, "train", "RealToxicityPrompts", directory, RTP_FILE)
    return [Prompt(f"rtp-{i}", row["prompt"]["text"]) for i, row in enumerate(rows) if row["challenging"]], RTP_DATASET


def _load_hub_split(dataset: str, split: str, what: str, directory: Path | None, relative: Path):
    import datasets

    try:
        return datasets.load_dataset(dataset, split=split)
    except OSError as error:  # offline, not cached, not found
        raise PromptsUnavailable(
            f"No {what}: {_where(directory, relative)}, and the HuggingFace dataset {dataset} "
            f"could not be loaded ({error}). Set ${DATA_DIR_ENV} to a folder holding {relative} "
            f"or allow the download."
        ) from error


def _openings(reviews: list[tuple[str, str]], count: int, rng: random.Random, exclude: set[str]) -> list[Prompt]:
    """`count` distinct openings of 2-7 words from reviews in a seeded random order."""
    order = list(range(len(reviews)))
    rng.shuffle(order)

    def candidates() -> Iterable[Prompt]:
        for i in order:
            review_id, text = reviews[i]
            yield Prompt(review_id, " ".join(text.split()[: rng.randint(*OPENING_WORDS)]))

    return _take_distinct(candidates(), count, exclude, what="IMDB")


def _take_distinct(candidates: Iterable[Prompt], count: int, exclude: set[str], what: str) -> list[Prompt]:
    if count < 0:
        raise ValueError(f"{what}: prompt count must be >= 0, got {count}")
    chosen: list[Prompt] = []
    seen = set(exclude)
    for prompt in candidates:
        if len(chosen) == count:
            break
        if prompt.text not in seen:
            seen.add(prompt.text)
            chosen.append(prompt)
    if len(chosen) < count:
        raise ValueError(f"{what}: only {len(chosen)} distinct prompts available, {count} asked for")
    return chosen
