"""Paired significance of one run against its base run on the same documents (exact McNemar).

Outcomes come from lm-eval's per-document samples files; documents are matched by `doc_id`
and must agree on `doc_hash` and `target_hash`, so a pair is the same question and answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from scipy.stats import binomtest

from tarot_eval.compare.errors import CompareError
from tarot_eval.compare.runs import Score


@dataclass(frozen=True)
class Outcome:
    doc_hash: str
    target_hash: str
    correct: bool


@dataclass(frozen=True)
class McNemar:
    """Exact McNemar test: only documents where exactly one of the two runs is right count."""

    n: int  # paired documents
    base_only: int  # right in the base run, wrong in the other
    other_only: int  # wrong in the base run, right in the other
    p_value: float  # two-sided


def read_outcomes(score: Score) -> dict[int, Outcome]:
    """doc_id -> right/wrong for `score`'s metric and filter, from its samples file."""
    if not score.samples.is_file():
        raise CompareError(
            f"samples file {score.samples} is missing (needed to test {score.task}); "
            "run lm_eval with --log_samples, or pass --no-significance"
        )
    outcomes = {}
    with score.samples.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            sample = json.loads(line)
            if sample.get("filter") != score.filter:
                continue
            doc_id = sample["doc_id"]
            if score.metric not in sample:
                raise CompareError(f"{score.samples}:{number}: no per-document {score.metric!r}")
            value = sample[score.metric]
            if value not in (0, 1):  # True/False compare equal to 1/0
                raise CompareError(
                    f"{score.samples}:{number}: {score.metric}={value!r} is not 0/1; McNemar needs "
                    "a right/wrong outcome per document (pick such a --metric or pass --no-significance)"
                )
            if doc_id in outcomes:
                raise CompareError(f"{score.samples}: doc_id {doc_id} appears twice")
            outcomes[doc_id] = Outcome(sample["doc_hash"], sample["target_hash"], bool(value))
    return outcomes


def paired_outcomes(base: Score, other: Score) -> list[tuple[bool, bool]]:
    """(base right, other right) per document; refuses runs scored on different documents."""
    base_docs, other_docs = read_outcomes(base), read_outcomes(other)
    if base_docs.keys() != other_docs.keys():
        only_base = sorted(base_docs.keys() - other_docs.keys())
        only_other = sorted(other_docs.keys() - base_docs.keys())
        raise CompareError(
            f"{other.task}: {other.samples.name} and base {base.samples.name} cover different documents "
            f"({len(only_base)} doc_ids only in base, e.g. {only_base[:5]}; "
            f"{len(only_other)} only in the other, e.g. {only_other[:5]}); was --limit or the dataset different?"
        )
    for doc_id, outcome in base_docs.items():
        twin = other_docs[doc_id]
        if (outcome.doc_hash, outcome.target_hash) != (twin.doc_hash, twin.target_hash):
            what = "document" if outcome.doc_hash != twin.doc_hash else "target"
            raise CompareError(
                f"{other.task}: doc_id {doc_id} has a different {what} in {other.samples} "
                f"than in base {base.samples}; the runs did not score the same documents"
            )
    return [(base_docs[doc_id].correct, other_docs[doc_id].correct) for doc_id in sorted(base_docs)]


def mcnemar(pairs: list[tuple[bool, bool]]) -> McNemar:
    """Exact (binomial) McNemar test on paired right/wrong outcomes."""
    base_only = sum(1 for base, other in pairs if base and not other)
    other_only = sum(1 for base, other in pairs if other and not base)
    discordant = base_only + other_only
    p_value = binomtest(other_only, discordant, 0.5).pvalue if discordant else 1.0
    return McNemar(n=len(pairs), base_only=base_only, other_only=other_only, p_value=float(p_value))
