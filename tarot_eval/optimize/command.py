"""`tarot-eval optimize`: search an edit of a model on a few training documents of an lm-eval task.

Settings come from the flags, or from `--config FILE.yaml` whose keys are the flag names
(dashes or underscores); flags given on the command line win over the file. Re-running the
same command into the same --out resumes the run; a different config there is refused.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from tarot_eval import settings as settings_fields
from tarot_eval.cli import UsageError
from tarot_eval.objective.selection import not_improved_banner
from tarot_eval.objective.task_loading import task_model_and_lm
from tarot_eval.optimize.run import PLOT_NAME
from tarot_eval.optimize.settings import OptimizeSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML file of settings (keys = flag names); flags override it")
    settings_fields.add_arguments(parser, OptimizeSettings)
    parser.add_argument("--compare", nargs="+", metavar="RUN_DIR",
                        help="only draw the traces of these run dirs into --out (a PNG path)")


def resolve(args: argparse.Namespace) -> OptimizeSettings:
    """Flags given on the command line, else the --config file, else the settings' defaults."""
    from_file = {}
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise UsageError(f"--config {path}: no such file")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise UsageError(f"--config {path}: not valid YAML{where}: {getattr(error, 'problem', None) or error}") from error
        if not isinstance(loaded, dict):
            raise UsageError(f"--config {path}: expected a mapping of flag names to values")
        try:
            from_file = settings_fields.checked(OptimizeSettings, loaded, f"--config {path}")
        except settings_fields.SettingsError as error:
            raise UsageError(str(error)) from error
    try:
        return OptimizeSettings(**{**from_file, **settings_fields.given(args, OptimizeSettings)})
    except settings_fields.SettingsError as error:
        raise UsageError(str(error)) from error


def compare(run_dirs: list[str], out: str) -> int:
    from tarot_eval.optimize.plot import plot_traces
    from tarot_eval.optimize.record import TRACE_NAME, TRAIN_VALUE, read_lines

    runs = {}
    for directory in run_dirs:
        trace = read_lines(Path(directory) / TRACE_NAME)
        if not trace:
            raise UsageError(f"--compare {directory}: no {TRACE_NAME} with evaluations")
        runs[Path(directory).name] = [entry[TRAIN_VALUE] for entry in trace]
    print(f"wrote {plot_traces(runs, out, title='training objective per evaluation')}")
    return 0


def run(args: argparse.Namespace) -> int:
    options = resolve(args)
    if args.compare:
        if not options.out:
            raise UsageError("--compare needs --out FILE.png")
        return compare(args.compare, options.out)
    missing = [flag for flag, value in (("--task", options.task), ("--out", options.out)) if not value]
    if missing:
        raise UsageError(f"missing {' and '.join(missing)}")

    from tarot_eval.edit import architectures
    from tarot_eval.optimize.run import optimize

    task, model, lm = task_model_and_lm(options)
    geo = architectures.geometry(model)
    try:
        settings = options.run_settings(geo.num_layers)
    except settings_fields.SettingsError as error:
        raise UsageError(str(error)) from error
    print(
        f"optimizing {settings.method} of layers {list(settings.layers)} of {geo.num_layers} on {settings.task} "
        f"({settings.optimizer}, space {settings.space}, objective {settings.objective}, budget {options.budget})",
        file=sys.stderr,
    )
    result = optimize(model, lm, task, settings, options.out, options.budget, options.select_k, options.batch_size)
    print_summary(result)
    return 0


def print_summary(result) -> None:
    rows = []
    for who in ("base", "chosen"):
        for split in ("train", "validation"):
            if split in result.scores[who]:
                score = result.scores[who][split]
                rows.append(f"  {who:6s} {split:10s} objective {score['value']:.4f}  acc {score['accuracy']:.3f}")
    print("\n".join([f"chosen evaluation #{result.chosen_index} (selected on {result.selected_on})", *rows]))
    for note in result.notes:
        print(f"note: {note}")
    if result.surrogate:
        print(f"surrogate: {json.dumps(result.surrogate)}")
        if result.surrogate.get("collapsed"):
            print(f"BO behaved as random search here: the surrogate learned nothing ({result.surrogate['collapse_reason']})")
    if not result.improved:
        print(not_improved_banner(f"{result.selected_on} documents", result.shipped))
    print(f"checkpoint and run record: {result.directory} (trace plot: {result.directory / PLOT_NAME})")
