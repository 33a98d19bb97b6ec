"""The leaderboard of a config's cells, through `tarot_eval.compare`, named by its models and methods.

Each cell is its own lm-eval run of one task; `compare` joins the runs of one model, method and
shot count into one row. Folders under `OUT/runs` that the config no longer names are left out.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tarot_eval.compare import render, runs, scoreboard
from tarot_eval.leaderboard.config import LeaderboardConfig
from tarot_eval.methods.jobs import RUNS, GridCell

METRIC = "acc"


def read_cells(config: LeaderboardConfig, runs_root: Path) -> list[runs.Run]:
    """The run of every model x method x seed x task of the config, labelled with the config's names."""
    found = []
    for model in config.models:
        for method in config.methods:
            for seed in config.seeds_of(method):
                for task in config.tasks_of(method):
                    folder = runs_root.joinpath(*GridCell(model.name, method.name, task, seed).parts)
                    if folder.is_dir():  # icl has no few-shot cells
                        for run in runs.read_runs(folder, METRIC):
                            found.append(dataclasses.replace(run, model=model.name, method=method.name, seed=seed))
    return found


def stem(config: LeaderboardConfig) -> str:
    """The board's file name: one per config, so configs sharing an output folder keep their own."""
    name = config.source.stem.removeprefix("leaderboard_")
    return "leaderboard" if name == "leaderboard" else f"leaderboard-{name}"


def write(config: LeaderboardConfig, out: Path) -> tuple[str, dict[str, Path]]:
    """Write `out/leaderboard-<config>.{md,csv,png,html}`; returns the Markdown table and the files."""
    board = scoreboard.build(read_cells(config, out / RUNS), base_method=config.reference or "")
    return render.markdown(board), render.write_all(board, out, stem=stem(config))
