"""`load_task`: the tarot tasks and the user's folder first, lm-eval's whole task index only where they fall short."""

from __future__ import annotations

import lm_eval.tasks
import pytest

from tarot_eval.cli import UsageError
from tarot_eval.objective.task_loading import load_task


class FakeManager:
    """Stands in for lm-eval's TaskManager: which indexes were built, and what each holds and loads."""

    built: list[bool] = []
    small: dict = {}  # name -> task, or an Exception that loading it raises (no lm-eval defaults indexed)
    whole: dict = {}  # the same with lm-eval's own tasks

    def __init__(self, include_path=None, include_defaults=True):
        FakeManager.built.append(include_defaults)
        self.tasks = FakeManager.whole if include_defaults else FakeManager.small

    @property
    def all_tasks(self):
        return list(self.tasks)

    def load(self, name):
        found = self.tasks[name]
        if isinstance(found, Exception):
            raise found
        return {"tasks": {name: found}}


@pytest.fixture
def manager(monkeypatch):
    monkeypatch.setattr(lm_eval.tasks, "TaskManager", FakeManager)
    FakeManager.built = []
    return FakeManager


def test_a_task_of_the_users_folder_needs_no_whole_index(manager):
    manager.small, manager.whole = {"mine": "task"}, {"mine": "task", "builtin": "other"}
    assert load_task("mine", "folder") == "task" and manager.built == [False]


def test_lm_evals_own_task_and_a_task_built_on_them_fall_back_to_the_whole_index(manager):
    manager.small = {"mine": KeyError("builtin_subtask")}  # e.g. a group of the user's over lm-eval's tasks
    manager.whole = {"mine": "task", "builtin": "other"}
    assert load_task("builtin", "folder") == "other" and manager.built == [False, True]
    manager.built = []
    assert load_task("mine", "folder") == "task" and manager.built == [False, True]


def test_a_name_nowhere_is_one_usage_error(manager):
    manager.small, manager.whole = {}, {"builtin": "other"}
    with pytest.raises(UsageError, match="'nope': not an lm-eval task nor under --include-path folder"):
        load_task("nope", "folder")


def test_a_broken_template_fails_without_the_whole_index(manager):
    from jinja2 import TemplateSyntaxError

    manager.small, manager.whole = {"mine": TemplateSyntaxError("unexpected '}'", 1)}, {"mine": "task"}
    with pytest.raises(TemplateSyntaxError, match="unexpected '}'"):
        load_task("mine", "folder")
    assert manager.built == [False]
