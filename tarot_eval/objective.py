"""The optimization objective, built from an lm-eval multiple_choice task object.

Training and validation examples come from the task's training split (or, when the task
has none, its validation split — announced with a warning), never from its test split.
Each document becomes exactly the (context, continuation) requests lm-eval itself builds
(`fewshot_context` + `construct_requests`), tokenized once the way HFLM tokenizes them, so
the objective sees what evaluation will see.

Scoring is batched: when every choice of a document is one token after the same context,
one forward pass reads all choices from one logit row; otherwise each choice costs a
forward pass of context + choice and contributes its summed log-likelihood (lm-eval's
`acc`). Per document two log-probabilities are kept: of each whole choice, and of each
choice's first token over the whole vocabulary.

Objectives (all "higher is better", averaged over documents):
- `choice-prob` (default): probability of the right answer among the choices,
  softmax over the choices' summed log-likelihoods.
- `answer-token-prob`: the paper's objective, probability of the right answer's first
  token over the whole vocabulary; where two choices share a first token it uses the
  probability of the whole right continuation instead (the first token cannot tell them apart).
Gradient training minimizes the mean negative log of the same per-document quantity
(cross-entropy over the choices for `choice-prob`).
"""

from __future__ import annotations

import inspect
import logging
import random
from dataclasses import dataclass, field

import torch
from torch import nn

logger = logging.getLogger(__name__)

OBJECTIVES = ("choice-prob", "answer-token-prob")


class ObjectiveError(ValueError):
    """A task or split that cannot yield an objective (wrong output type, too few documents...)."""


@dataclass
class Example:
    """One document as token ids: per choice a (context, continuation) pair; `gold` indexes the choices."""

    doc_index: int
    pairs: list[tuple[list[int], list[int]]]
    gold: int

    @property
    def single_row(self) -> bool:
        """All choices are one token after the same context: one logit row decides."""
        first_context = self.pairs[0][0]
        return all(len(cont) == 1 and ctx == first_context for ctx, cont in self.pairs)

    @property
    def first_tokens_distinct(self) -> bool:
        firsts = [cont[0] for _, cont in self.pairs]
        return len(set(firsts)) == len(firsts)


@dataclass
class Scores:
    """Per-document log-probabilities of one evaluation."""

    choice_loglik: list[torch.Tensor]  # per example [choices]: summed log-likelihood of each continuation
    first_token_logprob: list[torch.Tensor]  # per example [choices]: log p(first token) over the vocabulary

    def per_example_logterm(self, examples: list[Example], objective: str) -> torch.Tensor:
        """log of the per-document objective term, shape [examples] (differentiable)."""
        terms = []
        for example, loglik, first in zip(examples, self.choice_loglik, self.first_token_logprob):
            if objective == "choice-prob":
                terms.append(torch.log_softmax(loglik, dim=0)[example.gold])
            elif objective == "answer-token-prob":
                source = first if example.first_tokens_distinct else loglik
                terms.append(source[example.gold])
            else:
                raise ValueError(f"unknown objective {objective!r}; expected one of {OBJECTIVES}")
        return torch.stack(terms)

    def value(self, examples: list[Example], objective: str) -> float:
        return self.per_example_logterm(examples, objective).exp().mean().item()

    def correct(self, examples: list[Example]) -> list[bool]:
        """lm-eval's `acc`: the right choice has the highest summed log-likelihood."""
        return [int(loglik.argmax()) == ex.gold for ex, loglik in zip(examples, self.choice_loglik)]

    def accuracy(self, examples: list[Example]) -> float:
        hits = self.correct(examples)
        return sum(hits) / len(hits)


# ---------------------------------------------------------------- documents and prompts


@dataclass
class DocSplit:
    """Which task split the objective reads, and the documents (with their index in it) chosen."""

    split: str
    train: list[tuple[int, dict]]
    validation: list[tuple[int, dict]]
    pool_size: int
    notes: list[str] = field(default_factory=list)


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


@dataclass(frozen=True)
class PromptOptions:
    """How lm-eval will build the prompts; mirror the flags given to `lm_eval`."""

    num_fewshot: int | None = None  # None: the task's own num_fewshot
    apply_chat_template: bool = False
    fewshot_as_multiturn: bool = False
    system_instruction: str | None = None


def requests_for(task, doc: dict, doc_index: int, options: PromptOptions, chat_template) -> tuple[list[tuple[str, str]], int]:
    """lm-eval's own (context, continuation) strings for `doc` (one per choice) and the gold index."""
    num_fewshot = options.num_fewshot if options.num_fewshot is not None else (task.config.num_fewshot or 0)
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


def build_examples(task, lm, docs: list[tuple[int, dict]], options: PromptOptions) -> list[Example]:
    """Tokenize each document's requests with `lm` (an lm-eval HFLM), exactly as its loglikelihood does."""
    examples = []
    for doc_index, doc in docs:
        pairs, gold = requests_for(task, doc, doc_index, options, lm.apply_chat_template)
        encoded = [lm._encode_pair(context, continuation) for context, continuation in pairs]
        if any(len(cont) == 0 for _, cont in encoded):
            raise ObjectiveError(f"task {task.config.task!r}, document {doc_index}: a choice encodes to no tokens")
        examples.append(Example(doc_index, [(list(c), list(t)) for c, t in encoded], gold))
    return examples


# ---------------------------------------------------------------- batched scoring


@dataclass
class _Batch:
    input_ids: torch.Tensor  # [B, T], right-padded
    attention_mask: torch.Tensor  # [B, T]
    read_positions: torch.Tensor  # [B, R]: positions whose logits are read (padded by repeating)
    # one entry per read: (row, column in read_positions, target token, example, choice, is first token)
    reads: list[tuple[int, int, int, int, int, bool]]


class ChoiceScorer:
    """Scores a model on fixed examples; the tokenization and batches are built once."""

    def __init__(self, model: nn.Module, examples: list[Example], batch_size: int = 16, pad_token_id: int = 0):
        if not examples:
            raise ObjectiveError("no examples to score")
        self.model = model
        self.examples = examples
        self.keeps_logits = "logits_to_keep" in inspect.signature(model.forward).parameters
        self.batches = self._plan(batch_size, pad_token_id)

    @property
    def num_sequences(self) -> int:
        return sum(batch.input_ids.shape[0] for batch in self.batches)

    def _sequences(self):
        """(input ids, [(position, token, choice, is_first)]) per forward sequence, with its example."""
        for e, example in enumerate(self.examples):
            if example.single_row:
                context = example.pairs[0][0]
                reads = [(len(context) - 1, cont[0], c, True) for c, (_, cont) in enumerate(example.pairs)]
                yield e, context, reads
                continue
            for c, (context, cont) in enumerate(example.pairs):
                whole = context + cont
                reads = [(len(context) - 1 + j, token, c, j == 0) for j, token in enumerate(cont)]
                yield e, whole[:-1], reads

    def _plan(self, batch_size: int, pad_token_id: int) -> list[_Batch]:
        sequences = sorted(self._sequences(), key=lambda item: len(item[1]))
        device = next(self.model.parameters()).device
        batches = []
        for start in range(0, len(sequences), batch_size):
            chunk = sequences[start : start + batch_size]
            width = max(len(ids) for _, ids, _ in chunk)
            num_reads = max(len({pos for pos, *_ in reads}) for _, _, reads in chunk)
            input_ids = torch.full((len(chunk), width), pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            positions = torch.zeros((len(chunk), num_reads), dtype=torch.long)
            flat_reads = []
            for row, (e, ids, reads) in enumerate(chunk):
                input_ids[row, : len(ids)] = torch.tensor(ids)
                mask[row, : len(ids)] = 1
                distinct = sorted({pos for pos, *_ in reads})
                positions[row] = torch.tensor(distinct + [distinct[-1]] * (num_reads - len(distinct)))
                for pos, token, choice, first in reads:
                    flat_reads.append((row, distinct.index(pos), token, e, choice, first))
            batches.append(_Batch(input_ids.to(device), mask.to(device), positions.to(device), flat_reads))
        return batches

    def _logits(self, batch: _Batch) -> torch.Tensor:
        """Logits at the read positions, [B, R, vocab]."""
        if self.keeps_logits:
            out = self.model(
                input_ids=batch.input_ids,
                attention_mask=batch.attention_mask,
                logits_to_keep=batch.read_positions,
                use_cache=False,
            )
            return out.logits
        logits = self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False).logits
        index = batch.read_positions[..., None].expand(-1, -1, logits.shape[-1])
        return logits.gather(1, index)

    def score(self) -> Scores:
        """One pass over all batches with the model as it is now (hooks included); keeps the graph if grads are on."""
        n = [len(ex.pairs) for ex in self.examples]
        loglik = [[[] for _ in range(k)] for k in n]
        first = [[None] * k for k in n]
        for batch in self.batches:
            logprobs = torch.log_softmax(self._logits(batch).float(), dim=-1)
            rows = torch.tensor([r[0] for r in batch.reads], device=logprobs.device)
            cols = torch.tensor([r[1] for r in batch.reads], device=logprobs.device)
            tokens = torch.tensor([r[2] for r in batch.reads], device=logprobs.device)
            values = logprobs[rows, cols, tokens]
            for value, (_, _, _, e, choice, is_first) in zip(values, batch.reads):
                loglik[e][choice].append(value)
                if is_first:
                    first[e][choice] = value
        return Scores(
            choice_loglik=[torch.stack([torch.stack(parts).sum() for parts in per]) for per in loglik],
            first_token_logprob=[torch.stack(per) for per in first],
        )


@dataclass
class Evaluation:
    """Objective value and accuracy of one parameter setting on one example set."""

    value: float
    accuracy: float


class Objective:
    """Maps edit parameters to the objective on a fixed example set (the edit is already attached)."""

    def __init__(self, scorer: ChoiceScorer, handle, objective: str = "choice-prob"):
        if objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {objective!r}; expected one of {OBJECTIVES}")
        self.scorer = scorer
        self.handle = handle  # tarot_eval.edit.AttachedEdit
        self.objective = objective
        self.calls = 0

    @torch.no_grad()
    def evaluate(self, params: torch.Tensor) -> Evaluation:
        self.handle.params = params.detach()
        self.calls += 1
        scores = self.scorer.score()
        return Evaluation(scores.value(self.scorer.examples, self.objective), scores.accuracy(self.scorer.examples))

    def loss_and_evaluation(self, params: torch.Tensor) -> tuple[torch.Tensor, Evaluation]:
        """Mean negative log objective term (differentiable in `params`) and the evaluation at `params`."""
        self.handle.params = params
        self.calls += 1
        scores = self.scorer.score()
        logterm = scores.per_example_logterm(self.scorer.examples, self.objective)
        evaluation = Evaluation(logterm.detach().exp().mean().item(), scores.accuracy(self.scorer.examples))
        return -logterm.mean(), evaluation

