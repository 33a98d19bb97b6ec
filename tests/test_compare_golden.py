"""`tarot-eval compare` on committed lm-eval output folders (tests/testdata/compare, written by lm-eval's own
EvaluationTracker through tests/support/make_compare_testdata.py): the tables it writes stay what they were."""

from __future__ import annotations

import shutil
from pathlib import Path

from support.compare_runs import compare

GOLDEN = Path(__file__).resolve().parent / "testdata" / "compare"


def test_compare_writes_the_committed_tables(tmp_path, capsys):
    runs = tmp_path / "runs"
    shutil.copytree(GOLDEN / "runs", runs)  # compare reads its inputs only; a copy keeps the committed ones safe regardless
    code, out, _ = compare(capsys, runs, "--out", tmp_path / "board")
    assert code == 0
    for name in ("leaderboard.md", "leaderboard.csv"):
        written = (tmp_path / "board" / name).read_text().replace(str(runs), "runs")  # the golden names its runs so
        assert written == (GOLDEN / name).read_text(), f"{name} changed"
    assert (GOLDEN / "leaderboard.md").read_text().strip() in out
