"""A whole leaderboard: check the tasks, plan every model (all refusals before any work), run what is
missing, then the leaderboard files. Prints one line per cell: `skip` (done) or `run` (and why)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tarot_eval import run_lock
from tarot_eval.leaderboard import board, schedule
from tarot_eval.leaderboard.config import LeaderboardConfig
from tarot_eval.leaderboard.local_pool import LocalPool
from tarot_eval.leaderboard.plan import ModelPlan, PlanError, plan_model
from tarot_eval.methods import registry


@dataclass(frozen=True)
class Summary:
    """Cells per kind that ran (or would run) and that were skipped as done; cells that failed."""

    run: dict
    skipped: dict
    failed: tuple = ()

    def __str__(self) -> str:
        kinds = [*registry.fit_kinds(), (registry.EVALUATE, "evaluations")]
        always = {registry.default_fit_kind(), registry.EVALUATE}  # shown even at 0
        return "; ".join(f"{label}: {self.run.get(kind, 0)} run, {self.skipped.get(kind, 0)} skipped"
                         for kind, label in kinds if kind in always or self.run.get(kind) or self.skipped.get(kind))

    def count(self, kind: str) -> tuple[int, int]:
        return self.run.get(kind, 0), self.skipped.get(kind, 0)


def task_manager(config: LeaderboardConfig):
    """lm-eval's TaskManager over the tarot tasks and the config's include_path (plus lm-eval's own if asked)."""
    from lm_eval.tasks import TaskManager

    from tarot_eval.harness.autoload import tasks_dir

    return TaskManager(include_path=[str(tasks_dir()), *config.include_path], include_defaults=config.include_defaults)


def check_tasks(config: LeaderboardConfig, manager) -> None:
    known = set(manager.all_subtasks)
    for task in config.tasks:
        if task in known:
            continue
        if task in set(manager.all_groups) | set(manager.all_tags):
            raise PlanError(f"tasks: {task!r} is a group of tasks; list the tasks themselves")
        hint = "" if config.include_defaults else " (set include_defaults: true for lm-eval's built-in tasks)"
        raise PlanError(f"tasks: unknown task {task!r}: not a tarot task nor under include_path{hint}")


def describe(plan: ModelPlan) -> list[str]:
    lines = []
    for step in [*plan.fits, *plan.evaluations]:
        kind = step.parts["kind"]
        lines.append(f"skip {kind} {step.job.cell}" if step.reason is None else f"run  {kind} {step.job.cell}: {step.reason}")
    return lines


def summarize(plans: list[ModelPlan], failed=()) -> Summary:
    steps = [step for plan in plans for step in [*plan.fits, *plan.evaluations]]
    run, skipped = Counter(), Counter()
    for step in steps:
        (run if step.reason is not None else skipped)[step.parts["kind"]] += 1
    return Summary(dict(run), dict(skipped), tuple(failed))


def report(plans: list[ModelPlan], dry_run: bool, out: Path) -> Summary:
    """Print every cell's line and the counts (a dry run: and the CPU hours of what is missing)."""
    for plan in plans:
        print("\n".join(describe(plan)), flush=True)
    summary = summarize(plans)
    print(("would run: " if dry_run else "") + str(summary), flush=True)
    if dry_run:
        todo = [step for plan in plans for step in plan.todo]
        hours = schedule.estimated_cpu_hours(todo, schedule.recorded_costs(out))
        print(f"estimated: {hours:.2f} CPU hours for the {len(todo)} cells to run", flush=True)
    return summary


def choose_jobs(jobs: int, threads: int | None, out: Path) -> tuple[int, int]:
    """(jobs, threads per job): threads default to the cores divided by the jobs; more jobs than cores is
    warned about, and jobs whose recorded peak memory would not fit the machine are lowered."""
    if jobs < 1:
        raise PlanError(f"--jobs {jobs}: give 1 or more worker processes")
    if threads is not None and threads < 1:
        raise PlanError(f"--threads {threads}: give 1 or more torch threads per job")
    cores = os.cpu_count() or 1
    if jobs > cores:
        print(f"warning: --jobs {jobs} is more than the {cores} cores; each job gets {threads or 1} thread(s)", flush=True)
    available = available_memory_mb()
    per_job = schedule.peak_memory_mb(schedule.recorded_costs(out))
    if available is not None and jobs > 1 and jobs * per_job > available:
        fitting = max(1, int(available // per_job))
        print(f"--jobs {jobs} lowered to {fitting}: each job peaks at ~{per_job:.0f} MB and {available:.0f} MB are available",
              flush=True)
        jobs = fitting
    return jobs, threads or max(1, cores // jobs)


def available_memory_mb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def run_leaderboard(config: LeaderboardConfig, out: Path, manager=None, dry_run: bool = False, jobs: int = 1,
                    threads: int | None = None, executor: str = "local", ray_address: str | None = None) -> Summary:
    """Compute the missing cells into `out` and write `out/leaderboard-<config>.*`; `dry_run` only reports the plan.

    Planning only reads, so a refusal leaves `out` untouched; the work then holds `out`'s lock to the
    last file, so a second leaderboard on `out` fails at once. A dry run takes no lock. Cells run in
    this process (`jobs` 1), in `jobs` worker processes, or as Ray tasks (`executor` "ray").
    """
    jobs, threads = choose_jobs(jobs, threads, out)
    if executor == "ray":
        from tarot_eval.leaderboard import ray_pool

        ray_pool.check_available()
    with contextlib.ExitStack() as held:
        if not dry_run and out.is_dir():  # a folder being written is refused before planning (which takes a while)
            held.enter_context(run_lock.hold(out))
        manager = manager or task_manager(config)
        check_tasks(config, manager)
        plans = [plan_model(config, model, out, manager) for model in config.models]
        if dry_run:
            return report(plans, dry_run=True, out=out)
        held.enter_context(run_lock.hold(out))  # a re-entrant hold: out exists now either way
        summary = report(plans, dry_run=False, out=out)
        todo = [(plan.spec, step) for plan in plans for step in plan.todo]
        scheduler = schedule.Scheduler(todo, out, jobs)
        try:
            if executor == "ray":
                ray_pool.RayPool(ray_address, threads, config, out).run(scheduler)
            elif jobs == 1:
                schedule.run_serially(scheduler, threads, config.eval, manager)
            else:
                LocalPool(jobs, threads, config.eval, config.include_path, config.include_defaults).run(scheduler)
        finally:
            scheduler.close()
        table, files = board.write(config, out)
    print(table)
    print("wrote " + ", ".join(str(path) for path in files.values()), flush=True)
    for name, why in scheduler.failures.items():
        print(f"failed: {scheduler.steps[name].job.cell}: {why}", flush=True)
    return dataclasses.replace(summary, failed=tuple(scheduler.failures))
