"""Find lm-eval runs under a folder and read each one's scores for a metric.

`lm_eval ... --output_path DIR --log_samples` writes one run as
`DIR/<model_name_sanitized>/results_<date>.json` plus `samples_<task>_<date>.jsonl` beside it
(lm_eval/loggers/evaluation_tracker.py). Every `results_*.json` below the folder is one run, except
under folders named `*.moved-aside-*`: runs that `tarot-eval leaderboard` replaced (kept, never read).
"""

from __future__ import annotations

import fnmatch
import json
import logging
import math
import os
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from tarot_eval.compare.errors import CompareError
from tarot_eval.compare.labels import (
    check_labels_used,
    label_for,
    method_from_config,
    model_from_results,
    run_folder_label,
    seed_from_path,
)

RESULTS_PREFIX = "results_"
MOVED_ASIDE = ".moved-aside-"  # folder-name mark of a replaced run, see `tarot_eval.leaderboard.execute`
INTERFERENCE = "interference"  # folder of an edit's runs on tasks it was not optimized on (`compare --interference`)
LM_EVAL_OUTPUT = "lm_eval_output"  # lm-eval's own output inside a leaderboard cell (`leaderboard/compact.py`)
CELL_RECORD = "tarot_cell.json"  # a leaderboard cell's record (`leaderboard/cells.py`)
PARTIAL = ".partial"  # a leaderboard cell still being computed
DEMONSTRATIONS_NAME = "tarot_demonstrations.json"  # beside an icl run (the leaderboard's): the training documents shown

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskScore:
    """One task's aggregate score in one run, and where its per-document samples live."""

    task: str
    metric: str
    filter: str
    value: float
    stderr: float | None
    n_shot: int
    samples: Path
    n_documents: int | None = None  # lm-eval's effective sample count (after --limit)


@dataclass(frozen=True)
class Run:
    """One lm-eval run: which model, which method (label), which seed (None: no seed folder), and its scores by task."""

    source: Path
    model: str
    method: str
    scores: dict[str, TaskScore]
    seed: int | None = None
    edited_on: str | None = None  # the task its edit was optimized on (tarot-hf's provenance); None: no edit

    @property
    def shots(self) -> str:
        counts = sorted({score.n_shot for score in self.scores.values()})
        return "/".join(str(count) for count in counts) + "-shot"


def _unmatched(flag: str, patterns: list[str], names: list[str], root: Path) -> None:
    if unmatched := [pattern for pattern in patterns if not fnmatch.filter(names, pattern)]:
        raise CompareError(f"{flag} {', '.join(unmatched)} matches no {flag.removeprefix('--')[:-1]} of the runs under "
                           f"{root} (there: {', '.join(names)})")


def _matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def select_tasks(found: list[Run], patterns: list[str], root: Path) -> list[Run]:
    """Only the scores of tasks matching one of `patterns` (names or shell patterns); runs left with none are dropped."""
    _unmatched("--tasks", patterns, sorted({task for run in found for task in run.scores}), root)
    kept = [replace(run, scores={task: score for task, score in run.scores.items() if _matches(task, patterns)})
            for run in found]
    return [run for run in kept if run.scores]


def select_methods(found: list[Run], patterns: list[str], root: Path, base_method: str) -> list[Run]:
    """Only the runs of methods matching one of `patterns`, and always the base method's (the Δ columns need it)."""
    _unmatched("--methods", patterns, sorted({run.method for run in found}), root)
    return [run for run in found if run.method == base_method or _matches(run.method, patterns)]


def find_results(root: Path, interference: bool = False) -> list[Path]:
    """All lm-eval aggregated results files below `root`, sorted; those under `interference/` folders
    (an edit scored on other tasks) only when `interference`."""
    if not root.exists():
        raise CompareError(f"results folder {root} does not exist")
    if not root.is_dir():
        raise CompareError(f"{root} is not a folder; pass the --output_path folder given to lm_eval")
    if not any(root.iterdir()):
        raise CompareError(f"results folder {root} is empty")
    found = sorted(path for path in root.rglob(f"{RESULTS_PREFIX}*.json") if path.is_file())
    found = [path for path in found if not inside_a_cell(path, root)]
    moved = [path for path in found if any(MOVED_ASIDE in part for part in path.relative_to(root).parts[:-1])]
    if moved:
        log.warning("left out %d results file(s) in folders moved aside (%s*)", len(moved), MOVED_ASIDE)
        found = [path for path in found if path not in moved]
    if not interference:
        crossed = [path for path in found if INTERFERENCE in path.relative_to(root).parts[:-1]]
        if crossed:
            log.warning("left out %d results file(s) under %s/ (see --interference)", len(crossed), INTERFERENCE)
            found = [path for path in found if path not in crossed]
    if not found:
        raise CompareError(
            f"no lm-eval results ({RESULTS_PREFIX}*.json) under {root}; "
            "write them with `lm_eval ... --output_path DIR --log_samples`"
        )
    return found


def inside_a_cell(path: Path, root: Path) -> bool:
    """Whether `path` is lm-eval's own output inside a leaderboard cell (which keeps its compact copy beside
    it) or inside a cell still being computed (`<cell>.partial`)."""
    folders = path.relative_to(root).parts[:-1]
    if any(part.endswith(PARTIAL) for part in folders):
        return True
    return any(part == LM_EVAL_OUTPUT and root.joinpath(*folders[:index], CELL_RECORD).is_file()
               for index, part in enumerate(folders))


def leaderboard_cell(source: Path) -> tuple[str, ...] | None:
    """(model, method, ...) of a results file in a leaderboard cell, from the cell's record (the leaderboard's
    own names: a peft adapter's run has no model name of its own), None elsewhere."""
    try:
        record = json.loads((source.parent / CELL_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    cell = record.get("cell") if isinstance(record, dict) else None
    return tuple(cell.split(" (edit of ")[0].split("/")) if isinstance(cell, str) and cell.count("/") >= 2 else None


def split_metric(metric: str) -> tuple[str, str | None]:
    name, _, filter_key = metric.partition(",")
    return name, filter_key or None


def metric_key(entry: dict, metric: str) -> tuple[str, str] | None:
    """(metric, filter) of `metric` in one task's results entry; None if the task lacks it."""
    name, filter_key = split_metric(metric)
    filters = [key.partition(",")[2] for key in entry if key.partition(",")[0] == name and "," in key]
    if filter_key is not None:
        return (name, filter_key) if filter_key in filters else None
    if not filters:
        return None
    if len(filters) == 1:
        return name, filters[0]
    if "none" in filters:
        return name, "none"
    raise CompareError(f"metric {name!r} has several filters ({', '.join(filters)}); pass e.g. --metric {name},{filters[0]}")


def available_metrics(results: dict) -> set[str]:
    return {
        key
        for task in results.get("configs", {})
        for key in results.get("results", {}).get(task, {})
        if "," in key and "_stderr," not in key
    }


def as_stderr(value) -> float | None:
    """lm-eval writes 'N/A' when it did not bootstrap a standard error."""
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def samples_path(source: Path, task: str) -> Path:
    """The samples file lm-eval writes beside the results file `source` for `task`."""
    return source.parent / f"samples_{task}_{source.stem.removeprefix(RESULTS_PREFIX)}.jsonl"


def n_documents(results: dict, task: str) -> int | None:
    """How many documents lm-eval scored for `task` (its effective count, after --limit)."""
    count = (results.get("n-samples", {}).get(task) or {}).get("effective")
    return count if isinstance(count, int) else None


def sample_lines(samples: Path) -> Iterator[tuple[int, dict]]:
    """(line number, sample) of a samples file; a line that is not JSON raises `CompareError` naming it."""
    with samples.open("rb") as lines:
        for number, raw in enumerate(lines, 1):
            try:
                sample = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                raise CompareError(
                    f"{samples}:{number}: not UTF-8 text; the samples file is torn (an evaluation killed while "
                    "writing it?): run that evaluation again"
                ) from None
            except json.JSONDecodeError as error:
                raise CompareError(
                    f"{samples}:{number}: not a JSON line ({error.msg}); the samples file is torn "
                    "(an evaluation killed while writing it?): run that evaluation again"
                ) from None
            if not isinstance(sample, dict) or "doc_id" not in sample:
                raise CompareError(f"{samples}:{number}: not an lm-eval sample (no doc_id)")
            yield number, sample


def documents(samples: Path) -> dict[int, tuple[str | None, str | None]]:
    """doc_id -> (doc_hash, target_hash) of every document in a samples file."""
    return {sample["doc_id"]: (sample.get("doc_hash"), sample.get("target_hash")) for _, sample in sample_lines(samples)}


def read_scores(results: dict, source: Path, metric: str) -> dict[str, TaskScore]:
    """Scores of every task (not group) in the run that reports `metric`."""
    scores = {}
    for task in results.get("configs", {}):
        entry = results.get("results", {}).get(task, {})
        key = metric_key(entry, metric)
        if key is None:
            continue
        name, filter_key = key
        scores[task] = TaskScore(
            task=task,
            metric=name,
            filter=filter_key,
            value=float(entry[f"{name},{filter_key}"]),
            stderr=as_stderr(entry.get(f"{name}_stderr,{filter_key}")),
            n_shot=int(results.get("n-shot", {}).get(task, 0)),
            samples=samples_path(source, task),
            n_documents=n_documents(results, task),
        )
    return scores


def load_results(source: Path) -> dict:
    try:
        results = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise CompareError(f"cannot read lm-eval results {source}: {error}") from error
    if not isinstance(results, dict) or "results" not in results or "configs" not in results:
        raise CompareError(f"{source} is not an lm-eval results file (no 'results'/'configs')")
    return results


def _icl(source: Path, root: Path, method: str | None) -> str | None:
    """'icl' for an unedited run shown the training documents the leaderboard's icl method records
    beside it (lm-eval's own config cannot tell it from base with demonstrations); else `method`."""
    folders = [folder for folder in source.parents if folder == root or root in folder.parents]
    if method == "base" and any((folder / DEMONSTRATIONS_NAME).is_file() for folder in folders[:2]):
        return "icl"
    return method


def read_runs(
    root: Path,
    metric: str,
    method_labels: dict[Path, str] | None = None,
    model_labels: dict[Path, str] | None = None,
    interference: bool = False,
) -> list[Run]:
    """Every run under `root` with its `metric` scores; labels override what the JSON says."""
    method_labels, model_labels = method_labels or {}, model_labels or {}
    sources = find_results(root, interference)
    check_labels_used(method_labels, sources, "--label")
    check_labels_used(model_labels, sources, "--model-label")
    runs, metrics_seen, left_out = [], set(), []
    for source in sources:
        results = load_results(source)
        metrics_seen |= available_metrics(results)
        scores = read_scores(results, source, metric)
        left_out += [f"{source}: {task}" for task in results["configs"] if task not in scores]
        if not scores:
            continue
        method = (
            label_for(source, method_labels)
            or _icl(source, root, method_from_config(results.get("config", {})))
            or run_folder_label(source, root, results)
        )
        cell = leaderboard_cell(source)
        if cell is not None and not label_for(source, method_labels):
            method = cell[1]
        model = label_for(source, model_labels) or (cell[0] if cell else model_from_results(results, source))
        config = results.get("config", {})
        edited_on = (config.get("tarot_provenance") or {}).get("task") if config.get("tarot_rotations") else None
        runs.append(Run(source=source, model=model, method=method, scores=scores, seed=seed_from_path(source, root),
                        edited_on=edited_on))
    if not runs:
        names = sorted({key.partition(",")[0] for key in metrics_seen})
        raise CompareError(
            f"unknown metric {metric!r}: no task under {root} reports it; "
            f"available: {', '.join(names) or 'none'}"
        )
    for where in left_out:
        log.warning("%s does not report %s; left out", where, metric)
    return runs


def merge_runs(found: list[Run]) -> list[Run]:
    """One run per (model, method, shots, seed): single-task runs of the same row are joined.

    The same task scored twice in one row is refused (tell the runs apart with --label).
    """
    groups: dict[tuple[str, str, str, int | None], list[Run]] = defaultdict(list)
    for run in found:
        groups[(run.model, run.method, run.shots, run.seed)].append(run)
    merged = []
    for (model, method, shots, seed), members in groups.items():
        if len(members) == 1:
            merged.append(members[0])
            continue
        scores: dict[str, TaskScore] = {}
        sources: dict[str, Path] = {}
        for run in members:
            for task, score in run.scores.items():
                if task in scores:
                    raise CompareError(
                        f"two runs are both {model} / {method} / {shots}{'' if seed is None else f' / seed-{seed}'} "
                        f"and both score {task}: {sources[task]} and "
                        f"{run.source}; tell them apart with --label PATH=NAME"
                    )
                scores[task], sources[task] = score, run.source
        source = Path(os.path.commonpath([run.source for run in members]))
        merged.append(Run(source=source, model=model, method=method, scores=scores, seed=seed))
    return merged
