"""Paired significance of one run against its base run on the same documents.

Right/wrong metrics (every per-document value 0 or 1, e.g. acc) get the exact McNemar test;
any other number (a reward, a toxicity probability) gets the paired t-test on the per-document
differences. Values come from lm-eval's per-document samples files; documents are matched by
`doc_id` and must agree on `doc_hash` and `target_hash`, so a pair is the same question and answer.
Without the test (`--no-significance`) the runs must still cover the same documents (`same_documents`).
"""

from __future__ import annotations

from dataclasses import dataclass

from scipy.stats import binomtest, ttest_rel

from tarot_eval.compare.errors import CompareError
from tarot_eval.compare.runs import TaskScore, documents, sample_lines


@dataclass(frozen=True)
class Outcome:
    doc_hash: str
    target_hash: str
    value: float


@dataclass(frozen=True)
class PairedTest:
    """A two-sided paired test of one run against its base run on the same documents."""

    name: str  # "mcnemar" (exact; 0/1 outcomes) or "paired-t"
    n: int  # paired documents
    base_better: int  # documents where the base run scores higher (McNemar: right in base only)
    other_better: int  # documents where the other run scores higher
    p_value: float


def read_outcomes(score: TaskScore) -> dict[int, Outcome]:
    """doc_id -> per-document value of `score`'s metric and filter, from its samples file."""
    if not score.samples.is_file():
        raise CompareError(
            f"samples file {score.samples} is missing (needed to test {score.task}); "
            "run lm_eval with --log_samples, or pass --no-significance"
        )
    outcomes = {}
    for number, sample in sample_lines(score.samples):
        if sample.get("filter") != score.filter:
            continue
        doc_id = sample["doc_id"]
        if score.metric not in sample:
            raise CompareError(f"{score.samples}:{number}: no per-document {score.metric!r}")
        value = sample[score.metric]
        if isinstance(value, str) or not isinstance(value, (int, float)):
            raise CompareError(
                f"{score.samples}:{number}: {score.metric}={value!r} is not a number per document (an "
                "aggregate-only metric such as distinct_n); pick another --metric or pass --no-significance"
            )
        if doc_id in outcomes:
            raise CompareError(f"{score.samples}: doc_id {doc_id} appears twice")
        outcomes[doc_id] = Outcome(sample["doc_hash"], sample["target_hash"], float(value))
    if score.n_documents is not None and len(outcomes) != score.n_documents:
        raise CompareError(f"{score.samples}: holds {len(outcomes)} documents, but its results file reports "
                           f"{score.n_documents} for {score.task} (a samples file cut short?); run that evaluation again")
    return outcomes


def check_same_documents(base: TaskScore, base_docs: dict, other: TaskScore, other_docs: dict) -> None:
    """Refuses two runs whose samples (doc_id -> (doc_hash, target_hash)) are not the same documents."""
    if base_docs.keys() != other_docs.keys():
        only_base = sorted(base_docs.keys() - other_docs.keys())
        only_other = sorted(other_docs.keys() - base_docs.keys())
        raise CompareError(
            f"{other.task}: {other.samples.name} and base {base.samples.name} cover different documents "
            f"({len(only_base)} doc_ids only in base, e.g. {only_base[:5]}; "
            f"{len(only_other)} only in the other, e.g. {only_other[:5]}); was --limit or the dataset different?"
        )
    for doc_id, (doc_hash, target_hash) in base_docs.items():
        twin_doc, twin_target = other_docs[doc_id]
        if (doc_hash, target_hash) != (twin_doc, twin_target):
            what = "document" if doc_hash != twin_doc else "target"
            raise CompareError(
                f"{other.task}: doc_id {doc_id} has a different {what} in {other.samples} "
                f"than in base {base.samples}; the runs did not score the same documents"
            )


def same_documents(base: TaskScore, other: TaskScore) -> None:
    """Without a test: refuses runs on different documents, by their samples files where both have
    one, else by lm-eval's document counts."""
    if base.samples.is_file() and other.samples.is_file():
        check_same_documents(base, documents(base.samples), other, documents(other.samples))
    elif None not in (base.n_documents, other.n_documents) and base.n_documents != other.n_documents:
        raise CompareError(
            f"{other.task}: {other.samples.parent} scored {other.n_documents} documents and base "
            f"{base.samples.parent} {base.n_documents}; was --limit or the dataset different?"
        )


def paired_outcomes(base: TaskScore, other: TaskScore) -> list[tuple[float, float]]:
    """(base value, other value) per document; refuses runs scored on different documents."""
    base_docs, other_docs = read_outcomes(base), read_outcomes(other)
    check_same_documents(
        base, {i: (o.doc_hash, o.target_hash) for i, o in base_docs.items()},
        other, {i: (o.doc_hash, o.target_hash) for i, o in other_docs.items()},
    )
    return [(base_docs[doc_id].value, other_docs[doc_id].value) for doc_id in sorted(base_docs)]


def paired_test(pairs: list[tuple[float, float]]) -> PairedTest:
    """Exact McNemar when every value is 0 or 1, else the paired t-test; p = 1 when no document differs."""
    base_better = sum(1 for base, other in pairs if base > other)
    other_better = sum(1 for base, other in pairs if other > base)
    if all(value in (0.0, 1.0) for pair in pairs for value in pair):
        discordant = base_better + other_better
        p_value = binomtest(other_better, discordant, 0.5).pvalue if discordant else 1.0
        return PairedTest("mcnemar", len(pairs), base_better, other_better, float(p_value))
    differs = base_better + other_better > 0
    p_value = ttest_rel([other for _, other in pairs], [base for base, _ in pairs]).pvalue if differs else 1.0
    return PairedTest("paired-t", len(pairs), base_better, other_better, float(p_value))


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values of one family of tests, in the order given (statsmodels' `multipletests`)."""
    if not p_values:
        return []
    from statsmodels.stats.multitest import multipletests

    return [float(q) for q in multipletests(p_values, method="holm")[1]]


def one_sample_t(values: list[float]) -> float | None:
    """Two-sided p of a one-sample t-test of `values` against 0 (scipy); None with fewer than two values or no spread."""
    from scipy.stats import ttest_1samp

    if len(values) < 2 or len(set(values)) < 2:
        return None
    return float(ttest_1samp(values, 0.0).pvalue)
