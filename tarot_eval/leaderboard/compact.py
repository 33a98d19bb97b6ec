"""The committed form of an evaluation cell: lm-eval's results JSON and a compact samples file, no data.

lm-eval's samples files repeat every test document (`doc`, `arguments`), which must not be copied into
the repository (AG News is licensed for non-commercial use; BIG-bench asks that its canary stay out of
training corpora). The cell keeps, per document: doc_id, lm-eval's doc/prompt/target hashes, the gold
choice index, the filter, per-choice (log-likelihood, is_greedy) pairs, and the per-document metrics.
`compare` and the done-checks read these files as they read lm-eval's own; lm-eval's output folder
(`lm_eval_output/`) stays beside them, ignored by git. Absolute paths under the output folder are
written relative to it, so cells computed on other machines compare equal.
"""

from __future__ import annotations

import json
from pathlib import Path

from tarot_eval.compare.diagnostics import gold_index, logliks
from tarot_eval.compare.runs import RESULTS_PREFIX, sample_lines

KEPT = ("doc_id", "doc_hash", "prompt_hash", "target_hash", "filter", "metrics")


def compact_sample(sample: dict) -> dict:
    """One document's line without its text: hashes, gold index, per-choice scores and metrics."""
    kept = {key: sample[key] for key in KEPT if key in sample}
    values = logliks(sample)
    if values is not None:
        kept["filtered_resps"] = [[float(value), bool(greedy)] for value, greedy in sample["filtered_resps"]]
        kept["gold"] = gold_index(sample, len(values))
        if isinstance(sample.get("target"), int):
            kept["target"] = sample["target"]
    else:  # a generation: the model's own output, never the document
        kept["filtered_resps"] = sample.get("filtered_resps")
    for metric in sample.get("metrics", []):
        if metric in sample:
            kept[metric] = sample[metric]
    return kept


def relative_text(text: str, roots: list[Path]) -> str:
    """`text` with every absolute `root/` prefix removed (paths recorded relative to the output folder)."""
    for root in roots:
        text = text.replace(str(root) + "/", "").replace(str(root), ".")
    return text


def compact_run(lm_output: Path, cell: Path, roots: list[Path]) -> list[Path]:
    """Write the results JSON and compact samples of the lm-eval run under `lm_output` into `cell`."""
    (results_file,) = sorted(lm_output.rglob(f"{RESULTS_PREFIX}*.json"))
    written = [cell / results_file.name]
    written[0].write_text(relative_text(results_file.read_text(encoding="utf-8"), roots), encoding="utf-8")
    for samples in sorted(results_file.parent.glob("samples_*.jsonl")):
        lines = [json.dumps(compact_sample(sample), ensure_ascii=False) for _, sample in sample_lines(samples)]
        target = cell / samples.name
        target.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        written.append(target)
    return written
