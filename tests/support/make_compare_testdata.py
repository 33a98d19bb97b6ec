"""Rewrites tests/testdata/compare/: lm-eval output folders of three toy runs and what `tarot-eval compare` makes of them.

    .venv/bin/python tests/support/make_compare_testdata.py

The runs are those `tests/test_compare.py` builds (a tiny Llama, base / a random rotation / a random rescale,
on two 4-way toy tasks), saved by lm-eval's own EvaluationTracker, so the compare tests read real lm-eval
folders without evaluating anything; `leaderboard.md` and `leaderboard.csv` are compare's output on them (paths relative to
this folder), the tables `tests/test_compare_golden.py` holds compare to. Rerun this only when lm-eval's output format or
compare's tables change on purpose, and commit the diff with the reason.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))

import torch  # noqa: E402
from conftest import evaluate_into, tiny_model  # noqa: E402
from lm_eval.models.huggingface import HFLM  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402

from support.compare_runs import TASKS, write_task  # noqa: E402
from tarot_eval import cli  # noqa: E402
from tarot_eval.edit.head_edit import HeadEdit  # noqa: E402

GOLDEN = TESTS / "testdata" / "compare"
RUNS = GOLDEN / "runs"
DRAWS = {"rotation": lambda p: p.uniform_(-3.0, 3.0), "rescale": lambda p: p.uniform_(0.0, 1.0)}


def write_runs(root: Path, tiny_tokenizer) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for seed, name in enumerate(TASKS):
            write_task(Path(tmp) / "tasks", name, seed)
        manager = TaskManager(include_path=str(Path(tmp) / "tasks"), include_defaults=False)
        model = tiny_model("llama")
        lm = HFLM(pretrained=model, tokenizer=tiny_tokenizer, batch_size=16)
        evaluate_into(root / "base", lm, TASKS, manager)
        torch.manual_seed(1)
        for method, draw in DRAWS.items():
            edit = HeadEdit.identity(model, method, [0, 1, 2])
            handle = edit.attach(model)
            handle.params = draw(torch.empty_like(edit.params))
            try:
                evaluate_into(root / method, lm, TASKS, manager)
            finally:
                handle.remove()


def main() -> int:
    import conftest

    shutil.rmtree(RUNS, ignore_errors=True)
    write_runs(RUNS, conftest.make_tiny_tokenizer())
    with tempfile.TemporaryDirectory() as out:
        code = cli.main(["compare", str(RUNS), "--out", out])
        for name in ("leaderboard.md", "leaderboard.csv"):  # results files named relative to the golden folder
            (GOLDEN / name).write_text((Path(out) / name).read_text().replace(str(RUNS), "runs"))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
