"""`tarot-hf`'s log-likelihoods through the prefix-tree scorer: what requests share is computed once.

lm-eval's HFLM tokenizes each (context, continuation) request and scores it as one padded sequence,
so the system prompt, the task description and shared demonstrations are recomputed for every
document. Here the tokenized requests (HFLM's own `_encode_pair`, so the tokens are the same) are
grouped by context into documents and scored by `scoring.ChoiceScorer`, which computes the prefix tree
of a block's requests once per node: the prefix every document shares, openings some share, each
document's context and its choice tokens, each as a continuation of its ancestors' caches. The answer is HFLM's
contract: per request `(sum of the continuation's log-probs, is_greedy)`, in request order, each passed to
lm-eval's `cache_hook`. Requests HFLM would truncate (longer than
`max_length + 1` tokens) are left to HFLM, as is every request of a non-causal model.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from tarot_eval.objective.scoring import ChoiceScorer, Example

DOCUMENTS_PER_BLOCK = 16  # x batch size: the documents of one prefix tree (bounds its plan and the caches it keeps)


def documents(requests) -> list[tuple[list[int], list[tuple[int, list[int]]]]]:
    """Requests grouped by their context tokens, in first-seen order: (context, [(request index, continuation)])."""
    grouped: dict[tuple[int, ...], list[tuple[int, list[int]]]] = {}
    for index, (_, context, continuation) in enumerate(requests):
        grouped.setdefault(tuple(context), []).append((index, list(continuation)))
    return [(list(context), members) for context, members in grouped.items()]


def is_out_of_memory(error: Exception) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error).lower()


def score_block(model, block, batch_size: int, pad: int, counts: dict) -> list[tuple[list[float], list[bool]]]:
    """Per document of `block` its continuations' summed log-likelihoods and is_greedy flags; halves the
    batch on out-of-memory, as HFLM's automatic batch size does, down to one document. Adds the input
    tokens fed to the model to `counts` ("tokens"; "positions" with padding)."""
    examples = [Example(number, [(context, continuation) for _, continuation in members], 0)
                for number, (context, members) in enumerate(block)]
    while True:
        try:
            with torch.no_grad():
                scorer = ChoiceScorer(model, examples, batch_size, pad)
                scores = scorer.score()
            counts["tokens"] = counts.get("tokens", 0) + scorer.tokens_computed
            counts["positions"] = counts.get("positions", 0) + scorer.positions_computed
            return [(loglik.tolist(), greedy) for loglik, greedy in zip(scores.choice_loglik, scores.choice_greedy)]
        except RuntimeError as error:
            if not is_out_of_memory(error) or batch_size == 1:
                raise
            batch_size //= 2
            if torch.cuda.is_available():
                torch.cuda.empty_cache()


def loglikelihood_tokens(model, requests, batch_size: int, pad: int, max_length: int, cache_hook, disable_tqdm: bool,
                         counts: dict):
    """(answers by request index, indices left to HFLM) for HFLM-tokenized `requests`; `counts` as `score_block`'s."""
    fits = [index for index, (_, context, continuation) in enumerate(requests)
            if len(context) + len(continuation) <= max_length + 1]
    left = sorted(set(range(len(requests))) - set(fits))
    grouped = documents([requests[index] for index in fits])
    answers: dict[int, tuple[float, bool]] = {}
    block_size = max(1, batch_size * DOCUMENTS_PER_BLOCK)
    with tqdm(total=len(fits), desc="Running loglikelihood requests (prefix tree)", disable=disable_tqdm) as bar:
        for start in range(0, len(grouped), block_size):
            block = grouped[start : start + block_size]
            for (_, members), (logliks, greedy) in zip(block, score_block(model, block, batch_size, pad, counts)):
                for (position, _), value, top in zip(members, logliks, greedy):
                    index = fits[position]
                    answers[index] = (float(value), bool(top))
                    cache_hook.add_partial("loglikelihood", requests[index][0], answers[index])
                bar.update(len(members))
    return answers, left
