"""A tiny leaderboard: its model and task files, its config, one run of the command, and readers of its output."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import yaml

from support.tasks import tiny_model, tiny_tokenizer, write_task
from tarot_eval.leaderboard.config import load
from tarot_eval.leaderboard.runner import run_leaderboard

TASK = "lb_toy"



FEWSHOT = "lb_toy_fewshot"



def tiny_config(model_dir: Path, tasks_dir: Path) -> dict:
    """base listed last: its cells run after the edited ones, so a checkpoint left folded would show."""
    return {
        "include_path": str(tasks_dir),
        "models": {"tiny": {"pretrained": str(model_dir), "layers": "0-1", "angle_limit": "pi/4"}},
        "tasks": {"zero_shot": [TASK], "few_shot": [FEWSHOT]},
        "optimizer": {"n_train": 4, "n_val": 4, "seed": 0, "budget": 3, "ship_unimproved": True},
        "methods": {
            "rotation": {"method": "rotation", "optimizer": "grad", "lr": 0.2},
            "rescale": {"method": "rescale", "optimizer": "random"},
            "base": None,
        },
        "eval": {"batch_size": 8, "limit": 8},
    }



def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path



def leaderboard(config_path: Path, out: Path) -> str:
    """Run the leaderboard; returns what it printed."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        run_leaderboard(load(config_path), out)
    return printed.getvalue()



def mtimes(out: Path) -> dict[str, int]:
    return {
        str(path.relative_to(out)): path.stat().st_mtime_ns
        for folder in ("checkpoints", "runs")
        for path in (out / folder).rglob("*")
        if path.is_file()
    }



def results(folder: Path) -> dict:
    (found,) = folder.glob("results_*.json")  # the cell's copy; lm-eval's own is in lm_eval_output/
    return json.loads(found.read_text())



def tiny_leaderboard_files(root: Path, tasks: list[str]) -> tuple[Path, Path]:
    """A saved tiny Llama and a folder of tiny train/test tasks under `root`: (model dir, tasks dir)."""
    tokenizer = tiny_tokenizer()
    model_dir = root / "tiny-llama"
    tiny_model(len(tokenizer)).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    tasks_dir = root / "tasks"
    tasks_dir.mkdir()
    for task in tasks:
        write_task(tasks_dir, task, splits=("train", "test"), sizes={"train": 24, "test": 10})
    return model_dir, tasks_dir



def copy_of(setup, tmp_path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(setup["out"], out)  # copy2 keeps the mtimes
    return out
