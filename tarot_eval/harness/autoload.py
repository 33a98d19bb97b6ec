"""Startup hook that makes the stock `lm_eval` command see `tarot-hf` and the tarot tasks.

lm-eval 0.4.13 has no plugin discovery. `tarot_eval_autoload.pth` (installed into
site-packages) calls `install()` in every Python process; it only adds an import
watcher, so processes that never import lm_eval pay nothing beyond that. When
`lm_eval.api.registry` is imported, `tarot-hf` is registered as a lazy placeholder
(nothing heavy is imported); when `lm_eval.tasks.manager` is imported, every
TaskManager built with lm-eval's default tasks also indexes the tarot tasks.

Set TAROT_EVAL_NO_AUTOLOAD=1 to switch it off. Set TAROT_EVAL_NO_DEFAULT_TASKS=1 to index the tarot tasks and
--include_path only (lm-eval's `include_defaults=False`, which its command line does not offer): lm-eval's own
~14,000 task YAMLs are then not read, which takes seconds off every `lm_eval` start.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import inspect
import logging
import os
import sys
from pathlib import Path

DISABLE_ENV = "TAROT_EVAL_NO_AUTOLOAD"
NO_DEFAULT_TASKS_ENV = "TAROT_EVAL_NO_DEFAULT_TASKS"
MODEL_NAME = "tarot-hf"
MODEL_TARGET = "tarot_eval.harness.tarot_hf:TarotHFLM"


def tasks_dir() -> Path:
    """Folder of the tarot task YAMLs (shipped as the `tarot_eval.tasks` package)."""
    spec = importlib.util.find_spec("tarot_eval.tasks")
    return Path(next(iter(spec.submodule_search_locations)))


def register_model(registry) -> None:
    """Add `tarot-hf` to lm-eval's model registry as a lazy "module:Class" entry."""
    # lm-eval only fills its own lazy table when the registry is empty at lookup time,
    # so an entry of ours alone would hide `--model hf`: fill it first.
    import lm_eval.models  # noqa: F401

    if MODEL_NAME not in registry.model_registry:
        registry.model_registry.register(MODEL_NAME, target=MODEL_TARGET)


def _switched_on(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes"}


def include_tarot_tasks(manager_module) -> None:
    """Make TaskManager index the tarot tasks whenever it indexes lm-eval's defaults (and only them, with the
    user's folders, under TAROT_EVAL_NO_DEFAULT_TASKS)."""
    cls = manager_module.TaskManager
    original = cls.__init__
    if getattr(original, "_tarot_tasks", False):
        return
    signature = inspect.signature(original)

    @functools.wraps(original)
    def __init__(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        if bound.arguments.get("include_defaults", True):
            user_paths = bound.arguments.get("include_path") or []
            if not isinstance(user_paths, (list, tuple)):
                user_paths = [user_paths]
            # ours first, so a user's --include_path can still override a tarot task
            bound.arguments["include_path"] = [str(tasks_dir()), *user_paths]
            if _switched_on(NO_DEFAULT_TASKS_ENV):
                bound.arguments["include_defaults"] = False
                logging.getLogger(__name__).warning(
                    "%s is set: lm-eval's own tasks are not indexed, only the tarot tasks and --include_path",
                    NO_DEFAULT_TASKS_ENV)
        original(*bound.args, **bound.kwargs)

    __init__._tarot_tasks = True
    cls.__init__ = __init__


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs a callback right after a watched module has been executed."""

    def __init__(self, callbacks):
        self.callbacks = dict(callbacks)

    def find_spec(self, name, path=None, target=None):
        if name not in self.callbacks:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        callback = self.callbacks.pop(name)
        exec_module = spec.loader.exec_module

        def exec_then_callback(module):
            exec_module(module)
            callback(module)

        spec.loader.exec_module = exec_then_callback
        return spec


def install(force: bool = False) -> None:
    """Watch for lm_eval's registry and task manager; cheap, idempotent.

    `force` ignores TAROT_EVAL_NO_AUTOLOAD (used by `tarot-eval lm-eval`, which asks for it).
    """
    if not force and _switched_on(DISABLE_ENV):
        return
    if any(isinstance(f, _AfterImport) for f in sys.meta_path):
        return
    callbacks = {"lm_eval.api.registry": register_model, "lm_eval.tasks.manager": include_tarot_tasks}
    pending = {}
    for name, callback in callbacks.items():
        if name in sys.modules:
            callback(sys.modules[name])
        else:
            pending[name] = callback
    if pending:
        sys.meta_path.insert(0, _AfterImport(pending))
