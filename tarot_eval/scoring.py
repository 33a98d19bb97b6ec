"""Batched scoring of multiple-choice requests: every choice's log-likelihood under the model as it is now.

Two scorers compute the same numbers (to float noise; `tests/test_scoring.py`):

- `ChoiceScorer` (used by the optimizer) walks the prefix tree of the requests and computes each
  distinct token about once per evaluation: the prefix every document shares (system prompt,
  task description, fixed demonstrations) in one forward pass whose KV cache every document
  reuses; then each document's own context once; then only the choice tokens that are inputs
  (all but each choice's last), as continuations of that document's cache. Shared choice
  tokens such as the chat template's leading "\\n" are computed once per document.
- `SequenceScorer` is the plain reference: one full context+choice sequence per choice (one logit
  row per document where every choice is one token after the same context).

Gradients flow through every cache, so `grad` training uses the same computation. Logits are
read only at the positions that are scored.
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass

import torch
from torch import nn

# The per-document objective terms (see tarot_eval/objective.py for their meaning).
OBJECTIVES = ("choice-prob", "answer-token-prob")


@dataclass
class Example:
    """One document as token ids: per choice a (context, continuation) pair; `gold` indexes the choices."""

    doc_index: int
    pairs: list[tuple[list[int], list[int]]]
    gold: int
    answers: tuple[str, ...] = ()  # each choice's continuation string, as lm-eval requests it

    @property
    def single_row(self) -> bool:
        """All choices are one token after the same context: one logit row decides."""
        first_context = self.pairs[0][0]
        return all(len(cont) == 1 and ctx == first_context for ctx, cont in self.pairs)

    @property
    def first_tokens_distinct(self) -> bool:
        firsts = [cont[0] for _, cont in self.pairs]
        return len(set(firsts)) == len(firsts)

    def inputs(self, choice: int) -> list[int]:
        """The tokens fed to the model for `choice`: context + continuation, less the last token."""
        context, continuation = self.pairs[choice]
        return (context + continuation)[:-1]

    def reads(self, choice: int) -> list[tuple[int, int]]:
        """(input position, target token) for each continuation token of `choice`."""
        context, continuation = self.pairs[choice]
        return [(len(context) - 1 + j, token) for j, token in enumerate(continuation)]


@dataclass
class Scores:
    """Per-document log-probabilities of one evaluation."""

    choice_loglik: list[torch.Tensor]  # per example [choices]: summed log-likelihood of each continuation
    first_token_logprob: list[torch.Tensor]  # per example [choices]: log p(first token) over the vocabulary
    choice_greedy: list[list[bool]] | None = None  # per example, per choice: every token is the argmax (lm-eval's is_greedy)

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

    def calibrated(self, offsets: list[torch.Tensor]) -> Scores:
        """These scores less a calibration's per-choice offsets (`tarot_eval.calibration`), per example."""
        return Scores([loglik - offset for loglik, offset in zip(self.choice_loglik, offsets)], self.first_token_logprob,
                      self.choice_greedy)

    def value(self, examples: list[Example], objective: str) -> float:
        return self.per_example_logterm(examples, objective).exp().mean().item()

    def correct(self, examples: list[Example]) -> list[bool]:
        """lm-eval's `acc`: the right choice has the highest summed log-likelihood."""
        return [int(loglik.argmax()) == ex.gold for ex, loglik in zip(examples, self.choice_loglik)]

    def accuracy(self, examples: list[Example]) -> float:
        hits = self.correct(examples)
        return sum(hits) / len(hits)


def token_floor(examples: list[Example]) -> int:
    """Distinct input tokens of all requests: the nodes of their prefix tree (the least any scorer computes)."""
    root: dict = {}
    nodes = 0
    for example in examples:
        for choice in range(len(example.pairs)):
            node = root
            for token in example.inputs(choice):
                if token not in node:
                    node[token] = {}
                    nodes += 1
                node = node[token]
    return nodes


def common_prefix_length(sequences: list[list[int]]) -> int:
    shortest = min(len(seq) for seq in sequences)
    for i in range(shortest):
        if any(seq[i] != sequences[0][i] for seq in sequences[1:]):
            return i
    return shortest


def _group_openings(owns: list[list[int]], limits: list[int]) -> tuple[list[list[int]], list[int]]:
    """Groups of documents whose own contexts open with the same tokens: (group prefixes, group of each).

    Greedy over the documents in token order: a document joins the open group when that saves more
    tokens (members x shared opening) than it costs the members already there; a document alone has
    an empty group prefix. `limits[e]`: the longest opening document e may give its group."""
    order = sorted(range(len(owns)), key=lambda e: owns[e])
    groups: list[list[int]] = []
    members: list[int] = []
    group_of = [0] * len(owns)
    length = 0

    def close():
        groups.append(owns[members[0]][:length] if len(members) > 1 else [])
        for e in members:
            group_of[e] = len(groups) - 1

    for e in order:
        if members:
            joined = min(length if len(members) > 1 else limits[members[0]], limits[e],
                         common_prefix_length([owns[members[0]], owns[e]]))
            if joined > 0 and len(members) * joined > (len(members) - 1) * length:
                members.append(e)
                length = joined
                continue
            close()
        members, length = [e], limits[e]
    if members:
        close()
    return groups, group_of


class _Reads:
    """Accumulates per-token log-probabilities into per-example, per-choice sums."""

    def __init__(self, examples: list[Example]):
        self.loglik = [[[] for _ in ex.pairs] for ex in examples]
        self.first = [[None] * len(ex.pairs) for ex in examples]
        self.greedy = [[True] * len(ex.pairs) for ex in examples]

    def add(self, logits: torch.Tensor, reads: list[tuple[int, int, int, int, int, bool]]) -> None:
        """`logits` [rows, kept, vocab]; each read: (row, kept column, token, example, choice, is first token)."""
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        index = torch.tensor([r[:3] for r in reads], device=logprobs.device)
        values = logprobs[index[:, 0], index[:, 1], index[:, 2]]
        argmax = logits.detach().argmax(dim=-1)[index[:, 0], index[:, 1]] == index[:, 2]
        for value, top, (_, _, _, e, choice, is_first) in zip(values, argmax.tolist(), reads):
            self.loglik[e][choice].append(value)
            self.greedy[e][choice] = self.greedy[e][choice] and top
            if is_first:
                self.first[e][choice] = value

    def scores(self) -> Scores:
        return Scores(
            choice_loglik=[torch.stack([torch.stack(parts).sum() for parts in per]) for per in self.loglik],
            first_token_logprob=[torch.stack(per) for per in self.first],
            choice_greedy=self.greedy,
        )


class _Forward:
    """The model's forward with only the needed logits kept, in the scorer's autocast dtype."""

    def __init__(self, model: nn.Module, dtype: torch.dtype | None):
        self.model = model
        self.device = next(model.parameters()).device
        parameters = inspect.signature(model.forward).parameters
        self.keeps_logits = "logits_to_keep" in parameters
        self.cache_key = "cache" if "cache" in parameters else "past_key_values"
        self.dtype = dtype

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def __call__(self, input_ids, attention_mask, keep=None, cache=None, position_ids=None, want_cache=False):
        """(logits at `keep` [B, R, vocab] or None, the cache after this call or None)."""
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask, "use_cache": want_cache or cache is not None}
        if cache is not None:
            kwargs[self.cache_key] = cache
        if position_ids is not None:
            kwargs["position_ids"] = position_ids
        if self.keeps_logits:
            kwargs["logits_to_keep"] = keep if keep is not None else 1
        with self.autocast():
            out = self.model(**kwargs)
        new_cache = (getattr(out, "cache", None) or getattr(out, "past_key_values", None)) if want_cache else None
        if keep is None:
            return None, new_cache
        logits = out.logits
        if not self.keeps_logits:
            logits = logits.gather(1, keep[..., None].expand(-1, -1, logits.shape[-1]))
        return logits, new_cache


def _cache_from(layers: list[tuple[torch.Tensor, torch.Tensor]]):
    from transformers import DynamicCache

    return DynamicCache(layers)


def _shared_cache(prefix_layers, rows: int):
    """The shared prefix's cache seen by `rows` batch rows (a view, not a copy), or None without a prefix."""
    if prefix_layers is None:
        return None
    return _cache_from([(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in prefix_layers])


def _layers_of(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layer.keys, layer.values) for layer in cache.layers]


def _padded(rows: list[list[int]], pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids.to(device), mask.to(device)


def _keep_columns(positions: list[list[int]], device) -> tuple[torch.Tensor, list[dict[int, int]]]:
    """Per row the distinct positions to read, padded by repetition, and position -> column maps."""
    distinct = [sorted(set(p)) or [0] for p in positions]
    width = max(len(d) for d in distinct)
    keep = torch.tensor([d + [d[-1]] * (width - len(d)) for d in distinct], dtype=torch.long, device=device)
    return keep, [{pos: col for col, pos in enumerate(d)} for d in distinct]


@dataclass
class _DocPlan:
    """One document: its group (documents whose contexts open alike after the shared prefix), its own
    context after that group's prefix, the choice-token rows that follow it, and where each choice
    token is read: (choice, is first, token, row or -1 for the context, position)."""

    example: int
    group: int
    context: list[int]
    paths: list[list[int]]
    reads: list[tuple[int, bool, int, int, int]]


class ChoiceScorer:
    """Scores a model on fixed examples through the prefix tree of their requests (built once)."""

    def __init__(
        self,
        model: nn.Module,
        examples: list[Example],
        batch_size: int = 16,
        pad_token_id: int = 0,
        dtype: torch.dtype | None = None,
    ):
        if not examples:
            raise ValueError("no examples to score")
        self.model = model
        self.examples = examples
        self.batch_size = batch_size
        self.pad = pad_token_id
        self.forward = _Forward(model, dtype)
        self.prefix, self.groups, self.docs = self._plan()

    def _plan(self) -> tuple[list[int], list[list[int]], list[_DocPlan]]:
        contexts, first_reads = [], []
        for example in self.examples:
            inputs = [example.inputs(c) for c in range(len(example.pairs))]
            contexts.append(inputs[0][: common_prefix_length(inputs)])
            first_reads.append(min(pos for c in range(len(example.pairs)) for pos, _ in example.reads(c)))
        lowest_read = min(first_reads)
        # every document keeps at least one token of its own, and no read falls inside the shared prefix
        shared = min(common_prefix_length(contexts), min(len(c) for c in contexts) - 1, lowest_read)
        shared = shared if len(self.examples) > 1 else 0
        prefix = contexts[0][:shared]
        owns = [context[shared:] for context in contexts]
        # a group prefix leaves each document one token of its own and holds none of its reads
        limits = [min(len(own) - 1, read - shared) for own, read in zip(owns, first_reads)]
        groups, group_of = _group_openings(owns, limits)
        docs = []
        for e, (example, context) in enumerate(zip(self.examples, contexts)):
            start = shared + len(groups[group_of[e]])
            tails = {tuple(example.inputs(c)[len(context) :]) for c in range(len(example.pairs))}
            paths = sorted(t for t in tails if t and not any(o != t and o[: len(t)] == t for o in tails))
            reads = []
            for c in range(len(example.pairs)):
                tail = tuple(example.inputs(c)[len(context) :])
                row = next((i for i, p in enumerate(paths) if p[: len(tail)] == tail), -1) if tail else -1
                for j, (pos, token) in enumerate(example.reads(c)):
                    if pos < len(context):
                        reads.append((c, j == 0, token, -1, pos - start))
                    else:
                        reads.append((c, j == 0, token, row, pos - len(context)))
            docs.append(_DocPlan(e, group_of[e], context[start:], [list(p) for p in paths], reads))
        docs.sort(key=lambda d: (len(d.context), d.group))  # by length, for little padding; a group split over two batches is computed in both
        return prefix, groups, docs

    def _chunks(self) -> list[list[_DocPlan]]:
        return [self.docs[start : start + self.batch_size] for start in range(0, len(self.docs), self.batch_size)]

    def _chunk_groups(self, chunk: list[_DocPlan]) -> list[int]:
        """The groups whose prefixes this chunk computes (none when every one of them is empty)."""
        present = sorted({d.group for d in chunk})
        return present if any(self.groups[g] for g in present) else []

    @property
    def tokens_computed(self) -> int:
        """Input tokens one evaluation feeds the model (padding excluded)."""
        total = len(self.prefix)
        for chunk in self._chunks():
            total += sum(len(self.groups[g]) for g in self._chunk_groups(chunk))
            total += sum(len(d.context) + sum(len(p) for p in d.paths) for d in chunk)
        return total

    @property
    def positions_computed(self) -> int:
        """Input positions one evaluation computes, padding included."""
        total = len(self.prefix)
        for chunk in self._chunks():
            present = self._chunk_groups(chunk)
            total += len(present) * max((len(self.groups[g]) for g in present), default=0)
            total += len(chunk) * max(len(d.context) for d in chunk)
            rows = [p for d in chunk for p in d.paths]
            for r in range(0, len(rows), self.batch_size):
                part = rows[r : r + self.batch_size]
                total += len(part) * max(len(p) for p in part)
        return total

    def score(self) -> Scores:
        """One evaluation with the model as it is now (hooks included); keeps the graph if grads are on."""
        device = self.forward.device
        reads = _Reads(self.examples)
        prefix_layers = None
        if self.prefix:
            ids = torch.tensor([self.prefix], dtype=torch.long, device=device)
            _, cache = self.forward(ids, torch.ones_like(ids), want_cache=True)
            prefix_layers = _layers_of(cache)
        for chunk in self._chunks():
            self._score_documents(chunk, prefix_layers, reads)
        return reads.scores()

    def _group_caches(self, chunk: list[_DocPlan], present: list[int], prefix_layers):
        """Each present group's prefix once, after the shared prefix: (cache rows per document, their mask)."""
        device, shared = self.forward.device, len(self.prefix)
        ids, own_mask = _padded([self.groups[g] for g in present], self.pad, device)
        mask = torch.cat([torch.ones((len(present), shared), dtype=torch.long, device=device), own_mask], dim=1)
        cache = _shared_cache(prefix_layers, len(present))
        position_ids = (shared + torch.arange(ids.shape[1], device=device))[None, :].expand(len(present), -1)
        _, cache = self.forward(ids, mask, cache=cache, position_ids=position_ids, want_cache=True)
        rows = torch.tensor([present.index(d.group) for d in chunk], dtype=torch.long, device=device)
        return _cache_from([(k[rows], v[rows]) for k, v in _layers_of(cache)]), mask[rows]

    def _score_documents(self, chunk: list[_DocPlan], prefix_layers, reads: _Reads) -> None:
        device, shared = self.forward.device, len(self.prefix)
        ids, own_mask = _padded([d.context for d in chunk], self.pad, device)
        present = self._chunk_groups(chunk)
        position_ids = None
        starts = [shared + (len(self.groups[d.group]) if present else 0) for d in chunk]
        if present:
            cache, before = self._group_caches(chunk, present, prefix_layers)
            position_ids = torch.tensor(starts, device=device)[:, None] + torch.arange(ids.shape[1], device=device)[None, :]
        else:
            before = torch.ones((len(chunk), shared), dtype=torch.long, device=device)
            cache = _shared_cache(prefix_layers, len(chunk))
        mask = torch.cat([before, own_mask], dim=1)
        keep, columns = _keep_columns([[pos for *_, row, pos in d.reads if row < 0] for d in chunk], device)
        needs_paths = any(d.paths for d in chunk)
        logits, cache = self.forward(ids, mask, keep=keep, cache=cache, position_ids=position_ids, want_cache=needs_paths)
        reads.add(logits, [(i, columns[i][pos], token, d.example, c, first)
                           for i, d in enumerate(chunk) for c, first, token, row, pos in d.reads if row < 0])
        if not needs_paths:
            return
        layers = _layers_of(cache)
        rows = [(i, r) for i, d in enumerate(chunk) for r in range(len(d.paths))]
        for start in range(0, len(rows), self.batch_size):
            self._score_paths(chunk, rows[start : start + self.batch_size], layers, mask, starts, reads)

    def _score_paths(self, chunk, rows, layers, doc_mask, doc_starts, reads: _Reads) -> None:
        """Choice tokens as continuations of their documents' caches (positions continue each document's own)."""
        device = self.forward.device
        doc_rows = torch.tensor([i for i, _ in rows], dtype=torch.long, device=device)
        paths = [chunk[i].paths[r] for i, r in rows]
        ids, path_mask = _padded(paths, self.pad, device)
        mask = torch.cat([doc_mask[doc_rows], path_mask], dim=1)
        starts = torch.tensor([doc_starts[i] + len(chunk[i].context) for i, _ in rows], device=device)
        position_ids = starts[:, None] + torch.arange(ids.shape[1], device=device)[None, :]
        cache = _cache_from([(k[doc_rows], v[doc_rows]) for k, v in layers])
        wanted = [[pos for *_, row, pos in chunk[i].reads if row == r] for i, r in rows]
        keep, columns = _keep_columns(wanted, device)
        logits, _ = self.forward(ids, mask, keep=keep, cache=cache, position_ids=position_ids)
        reads.add(logits, [(k, columns[k][pos], token, chunk[i].example, c, first)
                           for k, (i, r) in enumerate(rows) for c, first, token, row, pos in chunk[i].reads if row == r])


class SequenceScorer:
    """The reference scorer: one context+choice sequence per choice, right-padded batches."""

    def __init__(
        self,
        model: nn.Module,
        examples: list[Example],
        batch_size: int = 16,
        pad_token_id: int = 0,
        dtype: torch.dtype | None = None,
    ):
        if not examples:
            raise ValueError("no examples to score")
        self.model = model
        self.examples = examples
        self.forward = _Forward(model, dtype)
        self.batches = self._plan(batch_size, pad_token_id)

    def _sequences(self):
        """(example, input ids, [(position, token, choice, is_first)]) per forward sequence."""
        for e, example in enumerate(self.examples):
            if example.single_row:
                context = example.pairs[0][0]
                yield e, context, [(len(context) - 1, cont[0], c, True) for c, (_, cont) in enumerate(example.pairs)]
                continue
            for c in range(len(example.pairs)):
                yield e, example.inputs(c), [(pos, token, c, j == 0) for j, (pos, token) in enumerate(example.reads(c))]

    def _plan(self, batch_size: int, pad: int):
        sequences = sorted(self._sequences(), key=lambda item: len(item[1]))
        device = self.forward.device
        batches = []
        for start in range(0, len(sequences), batch_size):
            chunk = sequences[start : start + batch_size]
            ids, mask = _padded([s for _, s, _ in chunk], pad, device)
            keep, columns = _keep_columns([[pos for pos, *_ in r] for _, _, r in chunk], device)
            flat = [(row, columns[row][pos], token, e, c, first)
                    for row, (e, _, r) in enumerate(chunk) for pos, token, c, first in r]
            batches.append((ids, mask, keep, flat))
        return batches

    @property
    def tokens_computed(self) -> int:
        return sum(int(mask.sum()) for _, mask, _, _ in self.batches)

    @property
    def positions_computed(self) -> int:
        return sum(ids.numel() for ids, _, _, _ in self.batches)

    def score(self) -> Scores:
        reads = _Reads(self.examples)
        for ids, mask, keep, flat in self.batches:
            logits, _ = self.forward(ids, mask, keep=keep)
            reads.add(logits, flat)
        return reads.scores()
