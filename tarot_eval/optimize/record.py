"""The run record of an optimization: config, every evaluation as it finishes, resume.

Layout of the output directory (next to the checkpoint files):
- `run.json`: the config that determines the results; a different config is refused.
- `trace.jsonl`: one JSON line per optimizer evaluation (score, accuracy, wall time, extras),
  appended and fsync'ed as each evaluation finishes.
- `points/NNNNN.safetensors`: the evaluated point (and for `grad` the Adam state after the step),
  written and fsync'ed before its trace line, so a trace line always has its point.
- `scores.jsonl`: base-model and validation evaluations, keyed, so a resumed run never redoes them.
A line cut short by a kill is dropped on the next start; everything before it is kept. Any other
damage (an unreadable `run.json`, a bad line before the last, a point file a trace line refers to
that is missing or cut short) raises `RecordError` naming the file: a point is on disk before its
trace line, so such damage is not a kill's, and dropping the evaluations from there on would leave
the validation scores keyed by their indices pointing at points that no longer exist.
A `RunRecord` holds the folder's `run_lock` from opening to `close()` (or until it is dropped), so
a second process writing to the same folder fails at once instead of interleaving its trace.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from tarot_eval import run_lock

CONFIG_NAME = "run.json"
TRACE_NAME = "trace.jsonl"
SCORES_NAME = "scores.jsonl"
POINTS_DIR = "points"
# what every evaluation entry of a trace holds: the objective value and accuracy on the training examples
TRAIN_VALUE, TRAIN_ACCURACY = "train", "train_acc"


class RecordError(ValueError):
    """A file of the run record is damaged beyond what a kill leaves behind."""


class RunConfigError(RecordError):
    """The output directory holds a run with a different config (or more evaluations than asked for)."""


def read_lines(path: Path, repair: bool = False) -> list[dict]:
    """Parsed JSON lines. A torn last line (killed mid-write) is left out, and with `repair` cut off
    the file (only its writer, holding the lock, may); a bad line before the last raises `RecordError`."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    lines = raw.splitlines(keepends=True)
    entries, good_bytes = [], 0
    for number, line in enumerate(lines, 1):
        try:
            if not line.endswith(b"\n"):
                raise ValueError("unterminated line")
            entries.append(json.loads(line))
        except ValueError as error:
            if number < len(lines):
                raise RecordError(f"{path}:{number}: not a JSON line ({error}); the run record is damaged") from None
            break
        good_bytes += len(line)
    if repair and good_bytes < len(raw):
        with open(path, "r+b") as handle:
            handle.truncate(good_bytes)
    return entries


def _append_line(path: Path, entry: dict) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(entry) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


UNSET = (None, "")  # a key recorded (or wanted) with one of these and absent on the other side is the same setting


def _config_differences(stored: dict, wanted: dict) -> list[str]:
    keys = sorted(set(stored) | set(wanted))
    return [f"{k}: recorded {stored.get(k)!r}, now {wanted.get(k)!r}" for k in keys
            if stored.get(k) != wanted.get(k) and not (stored.get(k) in UNSET and wanted.get(k) in UNSET)]


class RunRecord:
    """Opens (or starts) the run in `directory` for `config`; holds the trace recorded so far."""

    def __init__(self, directory: str | Path, config: dict):
        self.directory = Path(directory)
        self.started_here = False  # this record's run.json was written now (not resumed)
        self._lock = run_lock.acquire(self.directory)
        try:
            self._open(json.loads(json.dumps(config)))  # normalize tuples etc. to what JSON stores
        except BaseException:
            self.close()
            raise

    def _open(self, config: dict) -> None:
        (self.directory / POINTS_DIR).mkdir(exist_ok=True)
        config_path = self.directory / CONFIG_NAME
        if config_path.exists():
            try:
                stored = json.loads(config_path.read_text())
            except ValueError as error:
                raise RecordError(f"{config_path}: not JSON ({error}); the run record is damaged") from None
            differences = _config_differences(stored, config)
            if differences:
                raise RunConfigError(
                    f"{self.directory} holds a run with a different config; use another --out or delete it. "
                    "Differences: " + "; ".join(differences)
                )
        else:
            tmp = config_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
            os.replace(tmp, config_path)
            self.started_here = True
        self.config = config
        self.trace = read_lines(self.directory / TRACE_NAME, repair=True)
        for position, entry in enumerate(self.trace):
            if entry.get("index") != position:
                raise RecordError(
                    f"{self.directory / TRACE_NAME}:{position + 1}: entry {position} has index {entry.get('index')}; "
                    "the run record is damaged"
                )
            with self._readable(position) as path, safe_open(str(path), "pt"):
                pass
        self.scores = {entry["key"]: entry for entry in read_lines(self.directory / SCORES_NAME, repair=True)}

    def close(self) -> None:
        """Give back the folder's lock (also done when the record is dropped)."""
        if self._lock is not None:
            run_lock.release(self._lock)
            self._lock = None

    def __enter__(self) -> RunRecord:
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is not None:
            self.discard_if_unused()
        self.close()

    def discard_if_unused(self) -> None:
        """A run started here that failed before its first evaluation leaves no record (its run.json would refuse
        the corrected command); a resumed run's record, or one holding evaluations, is never removed."""
        if not self.started_here or self.trace:
            return
        for name in (CONFIG_NAME, TRACE_NAME, SCORES_NAME):
            (self.directory / name).unlink(missing_ok=True)
        with suppress(OSError):
            (self.directory / POINTS_DIR).rmdir()

    @contextmanager
    def _readable(self, index: int) -> Iterator[Path]:
        """The point file of evaluation `index`; a missing or damaged one raises `RecordError` naming it."""
        path = self.point_path(index)
        try:
            yield path
        except (OSError, SafetensorError) as error:
            raise RecordError(
                f"{path}: the point of evaluation {index} is missing or damaged ({error}); "
                f"move {self.directory} away to start the run afresh"
            ) from None

    def point_path(self, index: int) -> Path:
        return self.directory / POINTS_DIR / f"{index:05d}.safetensors"

    def tensors(self, index: int) -> dict[str, torch.Tensor]:
        with self._readable(index) as path:
            return load_file(str(path))

    def point(self, index: int) -> torch.Tensor:
        return self.tensors(index)["x"]

    def append(self, entry: dict, tensors: dict[str, torch.Tensor]) -> None:
        """Record evaluation number len(trace): its point first, then its trace line."""
        entry = {"index": len(self.trace), **entry}
        path = self.point_path(entry["index"])
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path))
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
        _append_line(self.directory / TRACE_NAME, entry)
        self.trace.append(entry)

    def score(self, key: str, compute) -> dict:
        """The recorded score under `key`, computing (`compute() -> dict`) and recording it if new."""
        if key not in self.scores:
            entry = {"key": key, **compute()}
            _append_line(self.directory / SCORES_NAME, entry)
            self.scores[key] = entry
        return self.scores[key]

    def points(self) -> torch.Tensor:
        """All evaluated points so far, [n, d] float64."""
        return torch.stack([self.point(i).to(torch.float64) for i in range(len(self.trace))])

    def values(self) -> list[float]:
        return [entry[TRAIN_VALUE] for entry in self.trace]
