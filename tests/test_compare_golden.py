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


def test_tasks_keeps_only_the_named_tasks_and_an_unmatched_pattern_is_one_line(tmp_path, capsys):
    runs = tmp_path / "runs"
    shutil.copytree(GOLDEN / "runs", runs)
    code, out, _ = compare(capsys, runs, "--out", tmp_path / "board", "--tasks", "*_b")
    assert code == 0
    header, _, *rows = [line for line in out.splitlines() if line.startswith("|")][:5]
    assert "toy_b (chance" in header and "toy_a" not in header
    full = {line.split("|")[2].strip(): line for line in (GOLDEN / "leaderboard.md").read_text().splitlines()
            if line.startswith("| tiny")}
    for row in rows[:3]:  # the toy_b cell and its answers are the full table's, the average is toy_b's alone
        method, toy_b = row.split("|")[2].strip(), row.split("|")[4].strip()
        assert toy_b == full[method].split("|")[6].strip()
    code, out, err = compare(capsys, runs, "--tasks", "toy_b,fewshot_*")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "--tasks fewshot_* matches no task of the runs" in err and "(there: toy_a, toy_b)" in err


def test_methods_keeps_the_named_methods_and_always_the_base(tmp_path, capsys):
    runs = tmp_path / "runs"
    shutil.copytree(GOLDEN / "runs", runs)
    code, out, _ = compare(capsys, runs, "--out", tmp_path / "board", "--methods", "rot*")
    assert code == 0
    rows = [line for line in out.splitlines() if line.startswith("| tiny")]
    assert [row.split("|")[2].strip() for row in rows[:2]] == ["base", "rotation"] and "rescale" not in out
    golden = {line for line in (GOLDEN / "leaderboard.md").read_text().splitlines() if line.startswith("| tiny")}
    assert set(rows[:2]) <= golden  # the same rows as in the whole table
    code, out, err = compare(capsys, runs, "--methods", "lora")
    assert code == 2 and out == "" and "--methods lora matches no method of the runs" in err
    assert "(there: base, rescale, rotation)" in err
