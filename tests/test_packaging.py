"""setup.py's package discovery: every folder of Python files ships, under the tarot_eval namespace."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _setup_module():
    spec = importlib.util.spec_from_file_location("tarot_setup", ROOT / "setup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # setup() itself runs only as a script
    return module


def test_discovery_finds_every_package_of_the_repository():
    setup = _setup_module()
    mapping = setup.package_dir()
    assert mapping == {"tarot_eval.rl": "rl", "tarot_eval.tasks": "tasks"}
    packages = set(setup.discover_packages(ROOT, mapping))
    assert {"tarot_eval", "tarot_eval.leaderboard", "tarot_eval.compare", "tarot_eval.optimize",
            "tarot_eval.rl", "tarot_eval.tasks", "tarot_eval.tasks.generation"} <= packages
    assert not {name for name in packages if not name.startswith("tarot_eval")}  # nothing generic in site-packages
    # every folder holding Python files is a discovered package (a folder without __init__.py would be dropped)
    folders = {"tarot_eval": ROOT / "tarot_eval", **{name: ROOT / folder for name, folder in mapping.items()}}
    for name, base in folders.items():
        for source in base.rglob("*.py"):
            parts = source.parent.relative_to(base).parts
            assert ".".join((name, *parts)) in packages, f"{source} would not be in the wheel"


def test_a_new_subpackage_of_a_mapped_folder_ships_under_the_namespace(tmp_path):
    setup = _setup_module()
    inits = ["tarot_eval", "tarot_eval/newpkg", "rl", "rl/newpkg", "rl/newpkg/deeper", "tasks", "tests"]
    for folder in inits:
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
        (tmp_path / folder / "__init__.py").touch()
    packages = setup.discover_packages(tmp_path, {"tarot_eval.rl": "rl", "tarot_eval.tasks": "tasks"})
    assert packages == ["tarot_eval", "tarot_eval.newpkg", "tarot_eval.rl", "tarot_eval.rl.newpkg",
                        "tarot_eval.rl.newpkg.deeper", "tarot_eval.tasks"]


def test_the_public_paths_of_tarot_hf_name_one_class():
    """`tarot_eval.lm:TarotHFLM` (the first public path, kept as a shim), the entry point and lm-eval's registry agree."""
    import tomllib
    from lm_eval.api.registry import get_model

    from tarot_eval.harness.tarot_hf import TarotHFLM
    from tarot_eval.lm import TarotHFLM as shimmed

    entry = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["lm_eval.models"]["tarot-hf"]
    module, _, name = entry.partition(":")
    assert shimmed is TarotHFLM and getattr(importlib.import_module(module), name) is TarotHFLM
    assert get_model("tarot-hf") is TarotHFLM
