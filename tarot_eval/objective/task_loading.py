"""One lm-eval task by name, and the model and HFLM that read its documents: what optimize, calibrate and lora load first."""

from __future__ import annotations

from pathlib import Path

from tarot_eval.cli import UsageError


def load_task(name: str, include_path: str | None):
    """The one lm-eval task `name` (a registered name or a YAML file), else a UsageError saying how to find one."""
    from jinja2 import TemplateError
    from lm_eval.tasks import TaskManager

    from tarot_eval.harness.autoload import tasks_dir

    # lm-eval's own task index (some 14,000 YAML files) takes seconds to build: the tarot tasks and the user's folder
    # are looked in first; the whole index serves a name they do not hold, or one they hold but cannot load alone
    # (a group or an include built on lm-eval's own tasks). The user's folder overrides lm-eval's tasks either way. A
    # task whose own Jinja template is wrong fails the same on either index, so it fails at once.
    loaded = None
    small = TaskManager(include_path=[str(tasks_dir()), *([include_path] if include_path else [])], include_defaults=False)
    if name in small.all_tasks or Path(name).is_file():
        try:
            loaded = small.load(name)["tasks"]
        except TemplateError:
            raise
        except Exception:  # retried on the whole index below, which raises what is really wrong
            loaded = None
    if loaded is None:
        manager = TaskManager(include_path=include_path) if include_path else TaskManager()
        if name not in manager.all_tasks and not Path(name).is_file():
            where = f" nor under --include-path {include_path}" if include_path else ""
            raise UsageError(
                f"--task {name!r}: not an lm-eval task{where}; list the tasks with `tarot-eval lm-eval ls tasks` "
                "(its --include_path DIR adds a folder of task YAMLs), and give such a folder here with --include-path DIR"
            )
        loaded = manager.load(name)["tasks"]
    if len(loaded) != 1:
        raise UsageError(f"--task {name!r} names {len(loaded)} tasks ({', '.join(loaded)}); name one task")
    return next(iter(loaded.values()))


def task_model_and_lm(options):
    """What a command that reads one task's documents with a model needs: the task (first: a wrong name fails
    in seconds), the model and tokenizer of `options` (ModelSettings), and lm-eval's HFLM around them."""
    from lm_eval.models.huggingface import HFLM

    from tarot_eval.models.loading import load_model_and_tokenizer

    task = load_task(options.task, options.include_path)
    model, tokenizer = load_model_and_tokenizer(options.model, dtype=options.dtype, device=options.device)
    return task, model, HFLM(pretrained=model, tokenizer=tokenizer, backend="causal", batch_size=options.batch_size)
