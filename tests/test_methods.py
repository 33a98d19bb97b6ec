"""The method registry: every config entry is parsed by the kind that takes it, and a kind registered
outside the leaderboard package plans and evaluates with no change to it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from support.leaderboard import tiny_leaderboard_files, write_config

import tarot_eval.leaderboard
from tarot_eval.leaderboard.config import ConfigError, load
from tarot_eval.leaderboard.plan import plan_model
from tarot_eval.leaderboard.runner import task_manager
from tarot_eval.methods import registry
from tarot_eval.methods.registry import Method, MethodSpec, check_keys, register_method

TASKS = ["lb_a", "lb_b"]
REPO = Path(__file__).resolve().parent.parent


def test_the_shipped_config_maps_each_entry_to_its_kind():
    config = load(REPO / "configs" / "leaderboard_smollm2.yaml")
    kinds = {method.name: method.kind for method in config.methods}
    assert kinds["base"] == "base" and kinds["calibrate-batch"] == "calibrate" and kinds["icl-6"] == "icl"
    assert kinds["lora"] == "lora" and kinds["rescale"] == "edit" and kinds["rotation-grad"] == "edit"
    assert config.method("rotation+calibrate").applies == "calibrate-batch"
    assert kinds["offset"] == "edit" and config.method("offset").settings["method"] == "offset"  # an edit kind, searched
    assert config.reference == "base"


def test_no_module_of_the_leaderboard_package_names_a_method_kind():
    kinds = set(registry.METHODS) | {kind for kind, _ in registry.fit_kinds()}
    for path in Path(tarot_eval.leaderboard.__file__).parent.glob("*.py"):
        named = {node.value for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Constant)}
        assert not named & kinds, f"{path.name} names {sorted(named & kinds)}"


@pytest.fixture
def echo_kind():
    """A kind the leaderboard has never heard of: the unedited model under its own row, one seed-free cell per task."""

    @register_method
    class Echo(Method):
        kind = "echo"

        def parse(self, name, entry, where, earlier):
            check_keys(entry, ("method",), where)
            return MethodSpec(name, self.kind, {})

        def seeded(self, spec):
            return False

    yield Echo
    registry.METHODS.unregister("echo")


def test_a_new_kind_plugs_in_by_registering_alone(tmp_path, echo_kind):
    model_dir, tasks_dir = tiny_leaderboard_files(tmp_path, TASKS)
    config = {
        "include_path": str(tasks_dir), "seeds": [0, 1],
        "models": {"tiny": {"pretrained": str(model_dir), "layers": "0-1"}},
        "tasks": {"zero_shot": TASKS},
        "optimizer": {"n_train": 4, "n_val": 4, "budget": 3},
        "methods": {"base": None, "mirror": {"method": "echo"}},
    }
    lb = load(write_config(tmp_path / "lb.yaml", config))
    assert lb.method("mirror").kind == "echo"
    planned = plan_model(lb, lb.models[0], tmp_path / "out", task_manager(lb))
    mirrored = [step for step in planned.evaluations if step.job.method == "mirror"]
    assert [step.job.cell for step in mirrored] == ["tiny/mirror/lb_a", "tiny/mirror/lb_b"]  # seed-free, as it says
    assert all(step.parts["settings"]["method_kind"] == "echo" and step.job.checkpoint is None for step in mirrored)
    base = {step.job.task: step.parts["requests"] for step in planned.evaluations if step.job.method == "base"}
    assert all(step.parts["requests"] == base[step.job.task] for step in mirrored)  # the same requests as base
    assert not [step for step in planned.fits if step.job.method == "mirror"]

    config["methods"]["mirror"] = {"method": "echo", "shots": 2}
    with pytest.raises(ConfigError, match=r"methods\.mirror: unknown key\(s\) shots; expected one of method"):
        load(write_config(tmp_path / "bad.yaml", config))
