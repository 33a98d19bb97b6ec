"""A whole leaderboard: check the tasks, plan every model (all refusals before any work), run what is
missing, then the leaderboard files. Prints one line per cell: `skip` (done) or `run` (and why)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tarot_eval import run_lock
from tarot_eval.leaderboard import board, execute
from tarot_eval.leaderboard.config import LeaderboardConfig
from tarot_eval.leaderboard.plan import CalibrationFit, LoraTraining, ModelPlan, Optimization, PlanError, kind_of, plan_model


@dataclass(frozen=True)
class Summary:
    optimizations_run: int
    optimizations_skipped: int
    evaluations_run: int
    evaluations_skipped: int
    calibrations_run: int = 0
    calibrations_skipped: int = 0
    lora_run: int = 0
    lora_skipped: int = 0

    def __str__(self) -> str:
        extra = "".join(f"{name}: {run} run, {skipped} skipped; " for name, run, skipped in (
            ("calibrations", self.calibrations_run, self.calibrations_skipped),
            ("lora trainings", self.lora_run, self.lora_skipped)) if run + skipped)
        return (
            f"optimizations: {self.optimizations_run} run, {self.optimizations_skipped} skipped; {extra}"
            f"evaluations: {self.evaluations_run} run, {self.evaluations_skipped} skipped"
        )


def task_manager(config: LeaderboardConfig):
    """lm-eval's TaskManager over the tarot tasks and the config's include_path (plus lm-eval's own if asked)."""
    from lm_eval.tasks import TaskManager

    from tarot_eval.autoload import tasks_dir

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
    for step in [*plan.optimizations, *plan.evaluations]:
        kind = kind_of(step.job)
        lines.append(f"skip {kind} {step.job.cell}" if step.reason is None else f"run  {kind} {step.job.cell}: {step.reason}")
    return lines


def summarize(plans: list[ModelPlan]) -> Summary:
    prepared = [step for plan in plans for step in plan.optimizations]
    optimizations = [step for step in prepared if isinstance(step.job, Optimization)]
    calibrations = [step for step in prepared if isinstance(step.job, CalibrationFit)]
    trainings = [step for step in prepared if isinstance(step.job, LoraTraining)]
    evaluations = [step for plan in plans for step in plan.evaluations]
    return Summary(
        optimizations_run=sum(step.reason is not None for step in optimizations),
        optimizations_skipped=sum(step.reason is None for step in optimizations),
        evaluations_run=sum(step.reason is not None for step in evaluations),
        evaluations_skipped=sum(step.reason is None for step in evaluations),
        calibrations_run=sum(step.reason is not None for step in calibrations),
        calibrations_skipped=sum(step.reason is None for step in calibrations),
        lora_run=sum(step.reason is not None for step in trainings),
        lora_skipped=sum(step.reason is None for step in trainings),
    )


def report(plans: list[ModelPlan], dry_run: bool) -> Summary:
    """Print every cell's line and the counts."""
    for plan in plans:
        print("\n".join(describe(plan)), flush=True)
    summary = summarize(plans)
    print(("would run: " if dry_run else "") + str(summary), flush=True)
    return summary


def run_leaderboard(config: LeaderboardConfig, out: Path, manager=None, dry_run: bool = False) -> Summary:
    """Compute the missing cells into `out` and write `out/leaderboard.*`; `dry_run` only reports the plan.

    Planning only reads, so a refusal leaves `out` untouched; the work then holds `out`'s lock to the
    last file, so a second leaderboard on `out` fails at once. A dry run takes no lock.
    """
    manager = manager or task_manager(config)
    check_tasks(config, manager)
    plans = [plan_model(config, model, out) for model in config.models]
    if dry_run:
        return report(plans, dry_run=True)
    with run_lock.hold(out):
        summary = report(plans, dry_run=False)
        for plan in plans:
            execute.execute(plan, config.eval, manager)
        table, files = board.write(config, out)
    print(table)
    print("wrote " + ", ".join(str(path) for path in files.values()), flush=True)
    return summary
