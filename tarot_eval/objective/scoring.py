"""Batched scoring of multiple-choice requests: every choice's log-likelihood under the model as it is now.

Two scorers compute the same numbers (to float noise; `tests/test_scoring.py`):

- `ChoiceScorer` (used by the optimizer and by `tarot-hf`) computes each distinct input token once
  per evaluation: it builds the radix tree of every choice's inputs (context + continuation less
  its last token) and computes it level by level, each node as a continuation of its ancestors'
  KV caches. So the prefix every document shares (system prompt, task description, fixed
  demonstrations), openings some documents share, each document's own context and the choice
  tokens (the chat template's leading "\\n" once per document) are each computed once.
- `SequenceScorer` is the plain reference: one full context+choice sequence per choice (one logit
  row per document where every choice is one token after the same context).

Gradients flow through every cache, so `grad` training uses the same computation. Logits are
read only at the positions that are scored.
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass, field

import torch
from torch import nn

# The per-document objective terms (see tarot_eval/objective/function.py for their meaning).
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
        """These scores less a calibration's per-choice offsets (`tarot_eval.objective.calibration`), per example."""
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
class _Node:
    """A run of tokens of the requests' prefix tree (a radix-tree node): computed once, as a continuation of
    its ancestors' caches. `reads`: (offset in `tokens`, target token, example, choice, is first token)."""

    tokens: list[int]
    parent: int  # -1: a top node
    children: dict[int, int] = field(default_factory=dict)  # first token -> node
    start: int = 0  # position of its first token
    depth: int = 0
    reads: list[tuple[int, int, int, int, bool]] = field(default_factory=list)


def _prefix_tree(examples: list[Example]) -> tuple[list[_Node], list[int]]:
    """The radix tree of every choice's input tokens, each read placed on the node holding its position:
    (nodes, top nodes)."""
    nodes: list[_Node] = []
    top: dict[int, int] = {}

    def insert(sequence: list[int]) -> None:
        children, parent, i = top, -1, 0
        while i < len(sequence):
            child = children.get(sequence[i])
            if child is None:
                nodes.append(_Node(sequence[i:], parent))
                children[sequence[i]] = len(nodes) - 1
                return
            tokens = nodes[child].tokens
            same = 1
            while same < len(tokens) and i + same < len(sequence) and tokens[same] == sequence[i + same]:
                same += 1
            if same < len(tokens) and i + same < len(sequence):  # the sequence leaves this node inside it: split
                rest = _Node(tokens[same:], child, nodes[child].children)
                nodes.append(rest)
                for grandchild in rest.children.values():
                    nodes[grandchild].parent = len(nodes) - 1
                nodes[child].tokens, nodes[child].children = tokens[:same], {tokens[same]: len(nodes) - 1}
            children, parent, i = nodes[child].children, child, i + same

    for example in examples:
        for choice in range(len(example.pairs)):
            insert(example.inputs(choice))
    for index in _top_down(nodes, list(top.values())):
        node = nodes[index]
        if node.parent >= 0:
            parent = nodes[node.parent]
            node.start, node.depth = parent.start + len(parent.tokens), parent.depth + 1
    for e, example in enumerate(examples):
        for choice in range(len(example.pairs)):
            path, children, position = [], top, 0
            sequence = example.inputs(choice)
            while position < len(sequence):
                index = children[sequence[position]]
                path.append(index)
                position += len(nodes[index].tokens)
                children = nodes[index].children
            for j, (pos, token) in enumerate(example.reads(choice)):
                index = next(i for i in path if nodes[i].start <= pos < nodes[i].start + len(nodes[i].tokens))
                nodes[index].reads.append((pos - nodes[index].start, token, e, choice, j == 0))
    return nodes, list(top.values())


def _top_down(nodes: list[_Node], top: list[int]) -> list[int]:
    order, frontier = [], list(top)
    while frontier:
        order.extend(frontier)
        frontier = [child for index in frontier for child in nodes[index].children.values()]
    return order


class _Scorer:
    """What both scorers hold: the model (through `_Forward`), the examples and how to batch and pad them;
    each scorer plans its batches once (`_prepare`), at construction."""

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
        self._prepare()

    def _prepare(self) -> None:
        raise NotImplementedError


class ChoiceScorer(_Scorer):
    """Scores a model on fixed examples through the prefix tree of their requests (built once): each node's
    tokens are computed once, level by level, as continuations of their ancestors' caches."""

    def _prepare(self) -> None:
        self.nodes, top = _prefix_tree(self.examples)
        self.batches = self._plan(top)
        self.chains = [self._ancestry(index) for index in range(len(self.nodes))]  # each node's ancestors, top first
        self.last_use = {}  # node -> the last batch that reads its keys and values
        for b, batch in enumerate(self.batches):
            for index in batch:
                self.last_use.update(dict.fromkeys(self.chains[index], b))

    @property
    def prefix(self) -> list[int]:
        """The tokens every request opens with (computed once for all)."""
        tops = [node for node in self.nodes if node.parent < 0]
        return tops[0].tokens if len(tops) == 1 and len(self.examples) > 1 else []

    def _plan(self, top: list[int]) -> list[list[int]]:
        """Batches of nodes, level by level, a node's level set by its height (every leaf in the last); within a
        level, nodes of alike lengths together."""
        order = _top_down(self.nodes, top)
        height = [0] * len(self.nodes)  # the longest way down to a leaf
        for index in reversed(order):
            height[index] = max((height[child] + 1 for child in self.nodes[index].children.values()), default=0)
        levels: dict[int, list[int]] = {}
        for index in order:  # each node as late as its descendants allow: alike nodes of any depth batch together
            levels.setdefault(-height[index], []).append(index)
        batches = []
        for depth in sorted(levels):
            ordered = sorted(levels[depth], key=lambda i: (len(self.nodes[i].tokens), self.nodes[i].parent))
            batches += [ordered[s : s + self.batch_size] for s in range(0, len(ordered), self.batch_size)]
        return batches

    @property
    def tokens_computed(self) -> int:
        """Input tokens one evaluation feeds the model (padding excluded): the tree's nodes."""
        return sum(len(node.tokens) for node in self.nodes)

    @property
    def positions_computed(self) -> int:
        """Input positions one evaluation computes, padding included."""
        return sum(len(batch) * max(len(self.nodes[i].tokens) for i in batch) for batch in self.batches)

    def _ancestry(self, index: int) -> tuple[int, ...]:
        chain = []
        while self.nodes[index].parent >= 0:
            index = self.nodes[index].parent
            chain.append(index)
        return tuple(chain[::-1])

    def score(self) -> Scores:
        """One evaluation with the model as it is now (hooks included); keeps the graph if grads are on."""
        reads = _Reads(self.examples)
        kept: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}  # node -> its own tokens' keys and values
        for b, batch in enumerate(self.batches):
            self._score_batch(batch, kept, reads)
            for index in [i for i in kept if self.last_use.get(i, -1) <= b]:
                del kept[index]
        return reads.scores()

    def _past(self, batch: list[int], kept) -> tuple[object, torch.Tensor]:
        """The cache each node continues (its ancestors' keys and values, right-padded) and its mask."""
        device = self.forward.device
        chains = [self.chains[index] for index in batch]
        if not any(chains):  # top nodes only: nothing before them
            return None, torch.zeros((len(batch), 0), dtype=torch.long, device=device)
        distinct = sorted(set(chains))
        widths = [sum(len(self.nodes[a].tokens) for a in chain) for chain in distinct]
        width = max(widths)
        some = next(chain for chain in distinct if chain)[0]  # a kept node: the cache's layers and shapes
        layers = []
        for layer, (no_keys, no_values) in enumerate((k[:, :, :0], v[:, :, :0]) for k, v in kept[some]):
            per_chain = []
            for chain, own in zip(distinct, widths):
                keys = torch.cat([no_keys, *(kept[a][layer][0] for a in chain)], dim=2)
                values = torch.cat([no_values, *(kept[a][layer][1] for a in chain)], dim=2)
                if own < width:
                    pad = (0, 0, 0, width - own)
                    keys, values = torch.nn.functional.pad(keys, pad), torch.nn.functional.pad(values, pad)
                per_chain.append((keys, values))
            if len(distinct) == 1:
                keys, values = per_chain[0]
                layers.append((keys.expand(len(batch), -1, -1, -1), values.expand(len(batch), -1, -1, -1)))
            else:
                rows = torch.tensor([distinct.index(chain) for chain in chains], device=device)
                layers.append((torch.cat([k for k, _ in per_chain])[rows], torch.cat([v for _, v in per_chain])[rows]))
        mask = torch.zeros((len(batch), width), dtype=torch.long, device=device)
        for row, chain in enumerate(chains):
            mask[row, : widths[distinct.index(chain)]] = 1
        return _cache_from(layers), mask

    def _score_batch(self, batch: list[int], kept, reads: _Reads) -> None:
        device = self.forward.device
        nodes = [self.nodes[index] for index in batch]
        ids, own_mask = _padded([node.tokens for node in nodes], self.pad, device)
        cache, past_mask = self._past(batch, kept)
        mask = torch.cat([past_mask, own_mask], dim=1)
        position_ids = (torch.tensor([node.start for node in nodes], device=device)[:, None]
                        + torch.arange(ids.shape[1], device=device))
        wanted = [[offset for offset, *_ in node.reads] for node in nodes]
        keep, columns = _keep_columns(wanted, device) if any(wanted) else (None, None)
        needs_cache = any(node.children for node in nodes)
        logits, cache = self.forward(ids, mask, keep=keep, cache=cache, position_ids=position_ids, want_cache=needs_cache)
        if keep is not None:
            reads.add(logits, [(row, columns[row][offset], token, e, choice, first)
                               for row, node in enumerate(nodes) for offset, token, e, choice, first in node.reads])
        if needs_cache:
            past = past_mask.shape[1]
            layers = _layers_of(cache)
            for row, (index, node) in enumerate(zip(batch, nodes)):
                if node.children:
                    end = past + len(node.tokens)
                    kept[index] = [(k[row : row + 1, :, past:end].clone(), v[row : row + 1, :, past:end].clone())
                                   for k, v in layers]


class SequenceScorer(_Scorer):
    """The reference scorer: one context+choice sequence per choice, right-padded batches."""

    def _prepare(self) -> None:
        self.batches = self._plan(self.batch_size, self.pad)

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
