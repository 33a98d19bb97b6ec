"""Where the tarot task data comes from: a local copy under TAROT_DATA_DIR, else the public source.

With ``TAROT_DATA_DIR`` set, files are read from that folder, laid out as::

    ag_news/test.csv                 AG News test split (class 1-4, title, description)
    bigbench/<task>.json             a BIG-bench JSON task, e.g. bigbench/navigate.json
    bigbench/<task>/<subtask>.json   a subtask, e.g. bigbench/color/rgb.json

Without it, AG News comes from the HuggingFace dataset ``fancyzhx/ag_news`` (test split) and a
BIG-bench task from its ``task.json`` in the google/BIG-bench repository, fetched and cached by
``datasets``. Both routes return the same records, so everything downstream has one code path.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import datasets

DATA_DIR_ENV = "TAROT_DATA_DIR"
AG_NEWS_HUB_ID = "fancyzhx/ag_news"
BIGBENCH_URL = (
    "https://raw.githubusercontent.com/google/BIG-bench/main/"
    "bigbench/benchmark_tasks/{name}/task.json"
)
LAYOUT_HINT = (
    f"set {DATA_DIR_ENV}=<folder> where <folder> holds ag_news/test.csv, bigbench/<task>.json "
    "and bigbench/<task>/<subtask>.json"
)


class TaskDataError(RuntimeError):
    """The data of a tarot task is missing, unreachable or malformed."""


def data_dir() -> Path | None:
    """The folder named by TAROT_DATA_DIR, or None when the variable is unset or empty."""
    value = os.environ.get(DATA_DIR_ENV)
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise TaskDataError(f"{DATA_DIR_ENV}={value} is not a directory; {LAYOUT_HINT}.")
    return path


def read_ag_news() -> list[dict]:
    """AG News test rows as ``{"text": title + " " + description, "label": 0..3}``.

    Labels follow the HuggingFace dataset: 0 World, 1 Sports, 2 Business, 3 Sci/Tech.
    """
    root = data_dir()
    if root is None:
        try:
            rows = datasets.load_dataset(AG_NEWS_HUB_ID, split="test")
        except Exception as err:  # offline, hub down, dataset moved: all the same to the user
            raise _unreachable("AG News", f"the HuggingFace dataset {AG_NEWS_HUB_ID}", err) from err
        return [{"text": row["text"], "label": row["label"]} for row in rows]
    return _read_ag_news_csv(_local_file(root, "ag_news/test.csv"))


def read_bigbench(name: str) -> list[dict]:
    """The examples of BIG-bench JSON task ``name`` ("navigate", or "color/rgb" for a subtask)."""
    root = data_dir()
    if root is None:
        url = BIGBENCH_URL.format(name=name)
        try:
            path = Path(datasets.DownloadManager().download(url))
        except Exception as err:
            raise _unreachable(f"BIG-bench task {name!r}", url, err) from err
    else:
        path = _local_file(root, f"bigbench/{name}.json")
    return _read_bigbench_json(path)


def _local_file(root: Path, relative: str) -> Path:
    path = root / relative
    if not path.is_file():
        raise TaskDataError(f"{path} does not exist; {DATA_DIR_ENV}={root} must hold {relative}.")
    return path


def _unreachable(what: str, source: str, err: Exception) -> TaskDataError:
    return TaskDataError(
        f"Cannot load {what}: {DATA_DIR_ENV} is not set, so it was fetched from {source}, "
        f"which failed ({type(err).__name__}: {err}). Go online once so it gets cached, or "
        f"{LAYOUT_HINT}."
    )


def _read_ag_news_csv(path: Path) -> list[dict]:
    rows = []
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            for line, fields in enumerate(csv.reader(handle), start=1):
                if len(fields) != 3 or fields[0] not in {"1", "2", "3", "4"}:
                    raise TaskDataError(
                        f"{path}, row {line}: expected 3 fields (class 1-4, title, "
                        f"description), got {fields!r:.200}"
                    )
                label, title, description = fields
                rows.append({"text": f"{title} {description}", "label": int(label) - 1})
    except (csv.Error, UnicodeDecodeError) as err:
        raise TaskDataError(f"{path} is not a readable AG News CSV: {err}") from err
    if not rows:
        raise TaskDataError(f"{path} holds no rows.")
    return rows


def _read_bigbench_json(path: Path) -> list[dict]:
    try:
        task = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise TaskDataError(f"{path} is not valid JSON: {err}") from err
    examples = task.get("examples") if isinstance(task, dict) else None
    well_formed = isinstance(examples, list) and examples and all(
        isinstance(example, dict)
        and isinstance(example.get("input"), str)
        and isinstance(example.get("target_scores"), dict)
        and all(isinstance(score, (int, float)) and not isinstance(score, bool) for score in example["target_scores"].values())
        for example in examples
    )
    if not well_formed:
        raise TaskDataError(
            f"{path} is not a BIG-bench multiple-choice task: expected a non-empty "
            '"examples" list of {"input": str, "target_scores": {choice: number}}.'
        )
    return examples
