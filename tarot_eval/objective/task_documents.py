"""A task's documents and prompts for an objective: the draw, the demonstrations, lm-eval's own requests.

Training and validation examples come from the task's training split (or, when the task
has none, its validation split — announced with a warning), never from its test split.
Each document becomes exactly the (context, continuation) requests lm-eval itself builds
(`fewshot_context` + `construct_requests`), tokenized once the way HFLM tokenizes them, so
the objective sees what evaluation will see.
"""

from __future__ import annotations

import logging
import random
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from tarot_eval.objective.scoring import Example

logger = logging.getLogger(__name__)


class ObjectiveError(ValueError):
    """A task or split that cannot yield an objective (wrong output type, too few documents...)."""


# ---------------------------------------------------------------- documents and prompts


@dataclass
class DocSplit:
    """Which task split the objective reads, and the documents (with their index in it) chosen."""

    split: str
    train: list[tuple[int, dict]]
    validation: list[tuple[int, dict]]
    pool_size: int
    notes: list[str] = field(default_factory=list)
    demonstrations: list[tuple[int, dict]] = field(default_factory=list)


def check_task(task) -> None:
    if getattr(task, "OUTPUT_TYPE", None) != "multiple_choice":
        raise ObjectiveError(
            f"task {task.config.task!r} has output_type {getattr(task, 'OUTPUT_TYPE', None)!r}; "
            "the rotation objective needs a multiple_choice task"
        )


def training_pool(task) -> tuple[str, list[dict], list[str]]:
    """The documents the optimizer may read: the training split, else the validation split. Never test."""
    notes = []
    if task.has_training_docs():
        name, docs = task.config.training_split, task.training_docs()
    elif task.has_validation_docs():
        name, docs = task.config.validation_split, task.validation_docs()
        notes.append(
            f"task {task.config.task!r} has no training split; training and selection examples "
            f"come from its validation split {name!r} (do not report scores on that split)"
        )
        logger.warning(notes[-1])
    else:
        raise ObjectiveError(
            f"task {task.config.task!r} has neither a training_split nor a validation_split; "
            "the optimizer never reads the test split, so it has nothing to learn from"
        )
    if task.has_test_docs() and name == task.config.test_split:
        raise ObjectiveError(f"task {task.config.task!r} uses split {name!r} both for training and for test")
    return name, list(docs), notes


def shuffled_pool(task, seed: int) -> tuple[str, list[tuple[int, dict]], list[str]]:
    """The training pool as (index in split, doc) pairs in a seeded order."""
    check_task(task)
    split, docs, notes = training_pool(task)
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    return split, [(i, docs[i]) for i in order], notes


def choose_docs(task, n_train: int, n_val: int, seed: int) -> DocSplit:
    """Seeded disjoint draw of training and validation documents from the training pool."""
    if n_train < 1 or n_val < 0:
        raise ObjectiveError(f"need n_train >= 1 and n_val >= 0, got {n_train} and {n_val}")
    split, ordered, notes = shuffled_pool(task, seed)
    if n_train + n_val > len(ordered):
        raise ObjectiveError(
            f"task {task.config.task!r}: split {split!r} has {len(ordered)} documents, "
            f"fewer than n_train + n_val = {n_train} + {n_val}"
        )
    return DocSplit(split, ordered[:n_train], ordered[n_train : n_train + n_val], len(ordered), notes)


def balance_by_base_model(docs: DocSplit, ordered: list[tuple[int, dict]], is_correct) -> DocSplit:
    """The paper's training set: scan `ordered` until half the training documents are answered right
    by the base model and half wrong (`is_correct(doc_pair) -> bool`); validation takes the next ones."""
    n_train, n_val = len(docs.train), len(docs.validation)
    wanted = {True: n_train - n_train // 2, False: n_train // 2}
    picked, rest = [], []
    for pair in ordered:
        if len(picked) < n_train:
            verdict = bool(is_correct(pair))
            if wanted[verdict] > 0:
                wanted[verdict] -= 1
                picked.append(pair)
                continue
        rest.append(pair)
        if len(picked) == n_train and len(rest) >= n_val:
            break
    if len(picked) < n_train or len(rest) < n_val:
        raise ObjectiveError(
            f"could not balance: the training pool has too few documents the base model gets "
            f"{'right' if wanted[True] else 'wrong'} for {n_train} training + {n_val} validation documents"
        )
    notes = docs.notes + ["training documents balanced: half answered right, half wrong by the base model"]
    return DocSplit(docs.split, picked, rest[:n_val], docs.pool_size, notes)


def with_demonstrations(docs: DocSplit, ordered: list[tuple[int, dict]], k: int) -> DocSplit:
    """`docs` plus the first `k` documents of `ordered` used for neither training nor validation:
    the fixed demonstrations of the `fixed` and `mix` prompt modes (never a document's own answer)."""
    taken = {index for index, _ in docs.train + docs.validation}
    free = [pair for pair in ordered if pair[0] not in taken]
    if len(free) < k:
        raise ObjectiveError(
            f"split {docs.split!r}: {len(free)} documents are left after training and validation, "
            f"fewer than the {k} fixed demonstrations asked for"
        )
    return replace(docs, demonstrations=free[:k])


DEMONSTRATIONS = ("sampled", "fixed", "mix")
MIX_SHOTS = (0, 2, 4, 6)


@dataclass(frozen=True)
class PromptOptions:
    """How lm-eval will build the prompts; mirror the flags given to `lm_eval`.

    `demonstrations`: `sampled` draws each document's demonstrations with the task's own sampler
    (as `lm_eval --num_fewshot` does); `fixed` gives every document the same `num_fewshot`
    demonstrations (`DocSplit.demonstrations`), so they form one prefix computed once per
    evaluation; `mix` (the paper's training prompts) gives each document the first 0, 2, 4 or 6
    of them, chosen per document by a seeded draw.
    """

    num_fewshot: int | None = None  # None: the task's own num_fewshot
    apply_chat_template: bool = False
    fewshot_as_multiturn: bool = False
    system_instruction: str | None = None
    demonstrations: str = "sampled"

    def __post_init__(self):
        if self.demonstrations not in DEMONSTRATIONS:
            raise ValueError(f"demonstrations={self.demonstrations!r}; expected one of {DEMONSTRATIONS}")

    def shots(self, task, doc_index: int) -> int:
        """How many demonstrations document `doc_index` gets."""
        if self.demonstrations == "mix":
            return random.Random(doc_index).choice(MIX_SHOTS)
        return self.num_fewshot if self.num_fewshot is not None else (task.config.num_fewshot or 0)


class _FixedSampler:
    """Stands in for a task's few-shot sampler: always the same documents, in order."""

    def __init__(self, docs: list[dict]):
        self.docs = docs

    def set_rnd(self, _seed) -> None:
        """lm-eval seeds every task's sampler; the same documents in order need no seed."""

    def sample(self, n: int, **_):
        if n > len(self.docs):
            raise ObjectiveError(f"{n} demonstrations asked for, but only {len(self.docs)} fixed ones were drawn")
        return self.docs[:n]


@contextmanager
def fixed_demonstrations(task, docs: list[dict]):
    """Within the block, `task.fewshot_context` uses `docs` as every document's demonstrations."""
    saved = task.sampler
    task.sampler = _FixedSampler(docs)
    try:
        yield
    finally:
        task.sampler = saved


def requests_for(task, doc: dict, doc_index: int, options: PromptOptions, chat_template) -> tuple[list[tuple[str, str]], int]:
    """lm-eval's own (context, continuation) strings for `doc` (one per choice) and the gold index."""
    num_fewshot = options.shots(task, doc_index)
    template = chat_template if options.apply_chat_template else None
    context = task.fewshot_context(
        doc,
        num_fewshot,
        system_instruction=options.system_instruction,
        apply_chat_template=options.apply_chat_template,
        fewshot_as_multiturn=options.fewshot_as_multiturn,
        chat_template=template,
        gen_prefix=task.doc_to_prefix(doc),
    )
    instances = task.construct_requests(
        doc=doc,
        ctx=context,
        metadata=(task.config.task, doc_index, 1),
        apply_chat_template=options.apply_chat_template,
        chat_template=template,
    )
    choices = task.doc_to_choice(doc)
    pairs = [tuple(inst.arguments[:2]) for inst in instances[: len(choices)]]  # drop acc_mutual_info extras
    return pairs, gold_index(task, doc, choices)


def gold_index(task, doc: dict, choices: list[str]) -> int:
    target = task.doc_to_target(doc)
    if isinstance(target, str) and target in choices:
        target = choices.index(target)
    if not isinstance(target, int) or not 0 <= target < len(choices):
        raise ObjectiveError(
            f"task {task.config.task!r}: doc_to_target gave {target!r}, which is not one index into "
            f"the {len(choices)} choices (multi-target documents are not supported)"
        )
    return target


def build_examples(
    task, lm, docs: list[tuple[int, dict]], options: PromptOptions, demonstrations: list[tuple[int, dict]] = ()
) -> list[Example]:
    """Tokenize each document's requests with `lm` (an lm-eval HFLM), exactly as its loglikelihood does.
    `demonstrations`: the fixed ones (`with_demonstrations`), needed by the `fixed` and `mix` modes."""
    needed = max(MIX_SHOTS) if options.demonstrations == "mix" else options.shots(task, -1)
    if options.demonstrations != "sampled" and len(demonstrations) < needed:
        raise ObjectiveError(
            f"demonstrations={options.demonstrations!r} needs {needed} fixed demonstrations, {len(demonstrations)} were drawn"
        )
    examples = []
    for doc_index, doc in docs:
        if options.demonstrations == "sampled":
            pairs, gold = requests_for(task, doc, doc_index, options, lm.apply_chat_template)
        else:
            with fixed_demonstrations(task, [d for _, d in demonstrations]):
                pairs, gold = requests_for(task, doc, doc_index, options, lm.apply_chat_template)
        encoded = [lm._encode_pair(context, continuation) for context, continuation in pairs]
        if any(len(cont) == 0 for _, cont in encoded):
            raise ObjectiveError(f"task {task.config.task!r}, document {doc_index}: a choice encodes to no tokens")
        examples.append(Example(doc_index, [(list(c), list(t)) for c, t in encoded], gold, tuple(cont for _, cont in pairs)))
    return examples
