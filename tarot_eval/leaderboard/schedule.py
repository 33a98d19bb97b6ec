"""Which cell runs next: cells in plan order whose dependencies are done, one tqdm bar over them all
(done / running / waiting / failed) with an ETA from the recorded cost of finished cells.

A failed cell fails the cells that read it (reported, not run); the rest go on.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from tarot_eval.leaderboard import cells
from tarot_eval.methods import registry

GUESSED_PEAK_MB = 4000.0  # a cell's peak memory before any is recorded


@dataclass(frozen=True)
class Ready:
    name: str
    message: tuple  # (model spec, step, out): what a worker runs


def recorded_costs(out: Path) -> dict[str, list[dict]]:
    """The cost of every finished cell under `out`, by kind, each with the task it scored or fitted (`task`)."""
    found: dict[str, list[dict]] = {}
    for path in out.rglob(cells.RECORD_NAME) if out.is_dir() else []:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and isinstance(record.get("cost"), dict):
            settings = (record.get("parts") or {}).get("settings") or {}
            found.setdefault(record.get("kind"), []).append({**record["cost"], "task": settings.get("task")})
    return found


def typical(costs: dict[str, list[dict]], step, key: str) -> float:
    """The median recorded `key` of the step's kind on its task (a 6-shot evaluation reads far longer prompts than a
    zero-shot one), else of its kind on any task, else the kind's guess."""
    kind = step.parts["kind"]
    recorded = [cost for cost in costs.get(kind, []) if isinstance(cost.get(key), (int, float))]
    same_task = [cost[key] for cost in recorded if cost["task"] == step.job.task]
    if same_task or recorded:
        return statistics.median(same_task or [cost[key] for cost in recorded])
    return registry.guessed_cpu_s(kind)


def estimated_cpu_hours(steps, costs: dict[str, list[dict]]) -> float:
    return sum(typical(costs, step, "cpu_s") for step in steps) / 3600


def peak_memory_mb(costs: dict[str, list[dict]]) -> float:
    """The largest peak resident memory any finished cell recorded (a guess before any is recorded)."""
    values = [cost["peak_rss_mb"] for kind in costs.values() for cost in kind
              if isinstance(cost.get("peak_rss_mb"), (int, float))]
    return max(values) if values else GUESSED_PEAK_MB


class Scheduler:
    """Hands out the plan's cells in order as their dependencies finish; records every outcome."""

    def __init__(self, todo: list[tuple], out: Path, jobs: int):
        self.todo = todo  # (model spec, step) in plan order
        self.out = out
        self.jobs = jobs
        self.steps = {step.name: step for _, step in todo}
        self.state = {step.name: "waiting" for _, step in todo}
        self.depends = {step.name: [dep for dep in step.depends if dep in self.state] for _, step in todo}
        self.failures: dict[str, str] = {}
        self.costs = recorded_costs(out)
        self.bar = tqdm(total=len(todo), desc="cells", unit="cell", dynamic_ncols=True)
        self._show()

    def next_ready(self) -> Ready | None:
        for spec, step in self.todo:
            if self.state[step.name] != "waiting":
                continue
            if any(self.state[dep] == "failed" for dep in self.depends[step.name]):
                self.state[step.name] = "failed"
                self.failures[step.name] = "a cell it reads failed"
                tqdm.write(f"FAILED {step.job.cell}: a cell it reads failed")
                self.bar.update(1)
                continue
            if all(self.state[dep] == "done" for dep in self.depends[step.name]):
                return Ready(step.name, (spec, step, self.out))
        return None

    def started(self, name: str) -> None:
        self.state[name] = "running"
        step = self.steps[name]
        tqdm.write(f"running {step.parts['kind']} {step.job.cell}")
        self._show()

    def finished(self, name: str, cost: dict | None, error: str | None) -> None:
        self.state[name] = "failed" if error else "done"
        if error:
            self.failures[name] = error.splitlines()[0]
            tqdm.write(f"FAILED {self.steps[name].job.cell}: {error.rstrip()}")
        else:
            step = self.steps[name]
            self.costs.setdefault(step.parts["kind"], []).append({**cost, "task": step.job.task})
            tqdm.write(f"done {self.steps[name].job.cell} ({cost['wall_s']:.0f} s wall, {cost['cpu_s']:.0f} s CPU, "
                       f"{cost['peak_rss_mb']:.0f} MB peak)")
        self.bar.update(1)
        self._show()

    def _show(self) -> None:
        counts = {name: sum(value == name for value in self.state.values()) for name in ("running", "waiting", "failed")}
        left = [step for _, step in self.todo if self.state[step.name] in ("waiting", "running")]
        eta = sum(typical(self.costs, step, "wall_s") for step in left)
        self.bar.set_postfix_str(f"running {counts['running']}, waiting {counts['waiting']}, failed {counts['failed']}, "
                                 f"eta ~{eta / max(self.jobs, 1) / 60:.0f} min")

    def close(self) -> None:
        self.bar.close()


def run_serially(scheduler: Scheduler, threads: int, evaluation, manager) -> None:
    """`--jobs 1`: every cell in this process, with `threads` torch threads and the driver's task index."""
    import torch

    from tarot_eval.leaderboard.execute import Worker, run_cell

    torch.set_num_threads(threads)
    worker = Worker(evaluation, [], False, {}, manager)
    while (ready := scheduler.next_ready()) is not None:
        scheduler.started(ready.name)
        spec, step, out = ready.message
        scheduler.finished(ready.name, run_cell(worker, spec, step, out), None)
