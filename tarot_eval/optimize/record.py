"""The run record of an optimization: config, every evaluation as it finishes, resume.

Layout of the output directory (next to the checkpoint files):
- `run.json`: the config that determines the results; a different config is refused.
- `trace.jsonl`: one JSON line per optimizer evaluation (score, accuracy, wall time, extras),
  appended and fsync'ed as each evaluation finishes.
- `points/NNNNN.safetensors`: the evaluated point (and for `grad` the Adam state after the step),
  written and fsync'ed before its trace line, so a trace line always has its point.
- `scores.jsonl`: base-model and validation evaluations, keyed, so a resumed run never redoes them.
A line cut short by a kill is dropped on the next start; everything before it is kept.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

CONFIG_NAME = "run.json"
TRACE_NAME = "trace.jsonl"
SCORES_NAME = "scores.jsonl"
POINTS_DIR = "points"


class RunConfigError(ValueError):
    """The output directory holds a run with a different config."""


def read_lines(path: Path) -> list[dict]:
    """Parsed JSON lines; a torn last line (killed mid-write) is cut off the file."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    entries, good_bytes = [], 0
    for line in raw.splitlines(keepends=True):
        try:
            if not line.endswith(b"\n"):
                raise ValueError("unterminated line")
            entries.append(json.loads(line))
        except ValueError:
            break
        good_bytes += len(line)
    if good_bytes < len(raw):
        with open(path, "r+b") as handle:
            handle.truncate(good_bytes)
    return entries


def _append_line(path: Path, entry: dict) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(entry) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _config_differences(stored: dict, wanted: dict) -> list[str]:
    keys = sorted(set(stored) | set(wanted))
    return [f"{k}: recorded {stored.get(k)!r}, now {wanted.get(k)!r}" for k in keys if stored.get(k) != wanted.get(k)]


class RunRecord:
    """Opens (or starts) the run in `directory` for `config`; holds the trace recorded so far."""

    def __init__(self, directory: str | Path, config: dict):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / POINTS_DIR).mkdir(exist_ok=True)
        config_path = self.directory / CONFIG_NAME
        config = json.loads(json.dumps(config))  # normalize tuples etc. to what JSON stores
        if config_path.exists():
            stored = json.loads(config_path.read_text())
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
        self.config = config
        self.trace = read_lines(self.directory / TRACE_NAME)
        for position, entry in enumerate(self.trace):
            if entry["index"] != position:
                raise RunConfigError(f"{self.directory / TRACE_NAME}: entry {position} has index {entry['index']}")
        self.scores = {entry["key"]: entry for entry in read_lines(self.directory / SCORES_NAME)}

    def point_path(self, index: int) -> Path:
        return self.directory / POINTS_DIR / f"{index:05d}.safetensors"

    def tensors(self, index: int) -> dict[str, torch.Tensor]:
        return load_file(str(self.point_path(index)))

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
        return [entry["train"] for entry in self.trace]
