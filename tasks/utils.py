"""Callables the tarot task YAMLs name with ``!function``: dataset loaders and the few-shot sampler.

Every loader returns a ``datasets.DatasetDict`` with a ``train`` split (the pool that the
optimizer and few-shot demonstrations draw from) and a ``test`` split, disjoint and fixed by
``SPLIT_SEED``. Each document is ``{"id", "input", "choices", "label"}``: ``choices`` are the
label words and ``label`` indexes the gold one.

lm-eval calls a loader with the task's ``metadata`` and ``dataset_kwargs`` as keywords; the
metadata (version, model arguments, ``--metadata``) is accepted and ignored.
"""

from __future__ import annotations

import html
import random
import re
from collections import defaultdict

from datasets import Dataset, DatasetDict
from lm_eval.api.samplers import ContextSampler
from tarot_eval.tasks.data_sources import TaskDataError, read_ag_news, read_bigbench

SPLIT_SEED = 1234


def load_ag_news(
    label_words: list[str], train_size: int, test_size: int, **_metadata
) -> DatasetDict:
    """AG News test split as a tarot task; ``label_words`` name the classes World..Sci/Tech."""
    if len(label_words) != 4:
        raise TaskDataError(f"AG News has 4 classes, got label_words={label_words!r}.")
    docs = [
        {
            "id": f"ag_news:{row_index}",
            "input": clean_ag_news_text(row["text"]),
            "choices": list(label_words),
            "label": row["label"],
        }
        for row_index, row in enumerate(read_ag_news())
    ]
    groups = list(range(len(docs)))
    return split_docs("ag_news", docs, groups, train_size, test_size)


def load_bigbench(
    bigbench_task: str,
    train_size: int,
    test_size: int | None = None,
    subtasks: list[str] | None = None,
    label_words: dict[str, str] | None = None,
    **_metadata,
) -> DatasetDict:
    """A BIG-bench JSON multiple-choice task (or the union of its ``subtasks``) as a tarot task.

    ``label_words`` maps BIG-bench choices to the words scored, in the order given; items
    whose choices differ from its keys are dropped. Without it each item keeps its own
    choices. Items without exactly one best-scored choice are dropped, and so are repeated
    inputs (all copies when they disagree on the answer). The same row of sibling subtasks
    (e.g. color rgb[i] and hex[i], one colour in two encodings) always lands on the same side.
    ``test_size=None`` puts every item not in the training pool into the test split.
    """
    names = [f"{bigbench_task}/{sub}" for sub in subtasks] if subtasks else [bigbench_task]
    docs, groups = [], []
    for name in names:
        for row_index, example in enumerate(read_bigbench(name)):
            doc = _bigbench_doc(example, label_words)
            if doc is not None:
                docs.append({"id": f"{name}:{row_index}", **doc})
                groups.append(row_index)
    docs, groups = _drop_repeated_inputs(docs, groups)
    return split_docs(bigbench_task, docs, groups, train_size, test_size)


def split_docs(
    source: str, docs: list[dict], groups: list, train_size: int, test_size: int | None
) -> DatasetDict:
    """Disjoint train/test splits: shuffle the groups with SPLIT_SEED, fill train, then test.

    A group never straddles the splits. The training pool does not depend on ``test_size``.
    """
    members = defaultdict(list)
    for doc, group in zip(docs, groups, strict=True):
        members[group].append(doc)
    order = list(members)
    random.Random(SPLIT_SEED).shuffle(order)
    train, test = [], []
    for group in order:
        if len(train) < train_size:
            side, room = train, train_size - len(train)
        elif test_size is None or len(test) < test_size:
            side, room = test, (len(members[group]) if test_size is None else test_size - len(test))
        else:
            break
        side.extend(members[group][:room])
    if len(train) < train_size or not test or (test_size is not None and len(test) < test_size):
        raise TaskDataError(
            f"{source}: {len(docs)} usable items cannot fill a training pool of {train_size} "
            f"and a test split of {test_size if test_size is not None else 'at least 1'}."
        )
    return DatasetDict({"train": Dataset.from_list(train), "test": Dataset.from_list(test)})


def clean_ag_news_text(text: str) -> str:
    r"""Undo AG News' escaping.

    A ``\`` marks a line break; a character reference lost its ``&`` to a space
    (``Japan #39;s`` is ``Japan&#39;s``); other HTML entities are intact.
    """
    text = re.sub(r"\s*\\+\s*", " ", text)
    return html.unescape(re.sub(r" #(\d+);", r"&#\1;", text))


class TrainPoolSampler(ContextSampler):
    """lm-eval's random few-shot sampler, refusing to be asked for more docs than the pool has.

    The stock sampler fails with Python's bare "Sample larger than population" there.
    """

    def sample(self, n: int, eval_doc=None, df=None, **kwargs):
        available = len(df) if df else len(self.fewshot_docs())
        if n > available:
            raise ValueError(
                f"num_fewshot={n} asks for more demonstrations than the {available} documents "
                f"in this task's training pool; use --num_fewshot {available} or less."
            )
        return super().sample(n, eval_doc=eval_doc, df=df, **kwargs)


def _bigbench_doc(example: dict, label_words: dict[str, str] | None) -> dict | None:
    scores = example["target_scores"]
    best = max(scores.values(), default=0)
    gold = [choice for choice, score in scores.items() if score == best]
    if best <= 0 or len(gold) != 1:
        return None
    if label_words is None:
        choices = list(scores)
        return {"input": example["input"], "choices": choices, "label": choices.index(gold[0])}
    if set(scores) != set(label_words):
        return None
    return {
        "input": example["input"],
        "choices": list(label_words.values()),
        "label": list(label_words).index(gold[0]),
    }


def _drop_repeated_inputs(docs: list[dict], groups: list) -> tuple[list[dict], list]:
    answers = defaultdict(set)
    for doc in docs:
        answers[doc["input"]].add(doc["choices"][doc["label"]])
    seen, kept_docs, kept_groups = set(), [], []
    for doc, group in zip(docs, groups, strict=True):
        if len(answers[doc["input"]]) == 1 and doc["input"] not in seen:
            seen.add(doc["input"])
            kept_docs.append(doc)
            kept_groups.append(group)
    return kept_docs, kept_groups
