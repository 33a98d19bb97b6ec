"""CONTRIBUTING.md's module table is the one docs/architecture.py generates from the code."""

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _generator():
    spec = importlib.util.spec_from_file_location("architecture", REPO / "docs" / "architecture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_contributing_module_table_matches_the_code():
    assert _generator().main(["--check"]) == 0, "run: python docs/architecture.py"


def test_the_table_reads_imports_and_layers_from_the_code():
    generator = _generator()
    rows = {line.split(" | ")[1].strip("`"): line for line in generator.table().splitlines()[2:]}
    assert set(rows) >= {"tarot_eval/edit/head_edit.py", "rl/train_dpo.py", "tasks/prompts.py", "tarot_eval/compare/runs.py"}
    assert rows["tarot_eval/registry.py"].startswith("| 0 |") and rows["tarot_eval/registry.py"].endswith("| — |")
    assert rows["tarot_eval/edit/kinds/registry.py"].endswith("| registry |")
    assert rows["tarot_eval/edit/head_edit.py"].endswith("| edit.architectures, edit.kinds |")
    assert "rl.angles" in rows["rl/train_dpo.py"] and rows["tarot_eval/compare/runs.py"].startswith("| — |")
