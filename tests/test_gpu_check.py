"""benchmarks/gpu_check.py on CPU with tiny shapes: every check of every model runs, hooks equal the fold."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
MODELS = ("qwen2-1.5b", "phi-3-mini", "llama-3-8b")
CHECKS = ("build", "hook==fold", "objective", "grad step", "lm-eval", "bo propose")


@pytest.mark.slow
def test_gpu_check_tiny_cpu_runs_every_check(tmp_path):
    rows_file = tmp_path / "rows.json"
    env = {**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "datasets")}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--tiny", "--json", str(rows_file)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    table = proc.stdout.split("== gpu_check summary")[1].splitlines()
    for model in MODELS:
        for check in CHECKS:
            matching = [line for line in table if line.split()[:1] == [model] and f" {check} " in line]
            assert len(matching) == 1, f"table has no single row for {model} {check}:\n" + "\n".join(table)
            assert "ERROR" not in matching[0] and "SKIPPED" not in matching[0], matching[0]
    rows = {(row["model"], row["check"]): row for row in json.loads(rows_file.read_text())}
    for model in MODELS:
        hook_fold = rows[(model, "hook==fold")]["values"]
        assert hook_fold["max_abs_diff"] < 1e-4, hook_fold  # float32: hooks and fold agree to rounding
        assert hook_fold["edit_effect"] > 100 * hook_fold["max_abs_diff"], hook_fold  # ...and the edit does move logits
        assert hook_fold["unfold_diff"] == 0.0, hook_fold
        assert rows[(model, "objective")]["values"]["evaluations_per_s"] > 0
        assert rows[(model, "grad step")]["values"]["peak_gib"] > 0
        assert rows[(model, "lm-eval")]["values"]["ratio"] > 0
    assert rows[("llama-3-8b", "bo propose")]["values"]["dim"] == 2 * 4 * 8  # 2 layers x 4 heads x 8 pairs
