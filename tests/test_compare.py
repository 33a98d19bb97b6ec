"""`tarot-eval compare` on real lm-eval output folders written by lm-eval's own EvaluationTracker."""

from __future__ import annotations

import base64
import csv
import json
import math
import shutil
from pathlib import Path

import matplotlib.image
import pytest
import torch
from conftest import evaluate_into
from lm_eval.tasks import TaskManager
from scipy.stats import t as student_t
from support.compare_runs import TASKS, compare, exact_mcnemar_p, per_doc_acc, write_task

from tarot_eval.compare import significance
from tarot_eval.compare.errors import CompareError
from tarot_eval.compare.runs import TaskScore
from tarot_eval.edit import checkpoint
from tarot_eval.edit.head_edit import HeadEdit

GOLDEN_RUNS = Path(__file__).resolve().parent / "testdata" / "compare" / "runs"


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory) -> Path:
    """base, rotation and rescale runs of the `toy` model, one lm_eval output folder each (committed under
    tests/testdata/compare by tests/support/make_compare_testdata.py), copied so a test may change them."""
    root = tmp_path_factory.mktemp("compare_runs") / "results"
    shutil.copytree(GOLDEN_RUNS, root)
    return root




def read_csv(path: Path) -> dict[tuple[str, str], dict]:
    with path.open(newline="") as handle:
        return {(record["method"], record["task"]): record for record in csv.DictReader(handle)}


def results_by_method(root: Path) -> dict[str, dict]:
    return {path.parents[1].name: json.loads(path.read_text()) for path in root.rglob("results_*.json")}






def test_table_matches_results_json(runs_root, tmp_path, capsys):
    code, out, _ = compare(capsys, runs_root, "--out", tmp_path)
    assert code == 0
    table = read_csv(tmp_path / "leaderboard.csv")
    results = results_by_method(runs_root)
    assert {method for method, _ in table} == {"base", "rotation", "rescale"}
    base = {task: results["base"]["results"][task]["acc,none"] for task in TASKS}
    for method, result in results.items():
        values = []
        for task in TASKS:
            record, entry = table[(method, task)], result["results"][task]
            value = entry["acc,none"]
            values.append(value)
            assert float(record["value"]) == value
            assert float(record["stderr"]) == entry["acc_stderr,none"]
            assert f"{value * 100:.1f} ± {entry['acc_stderr,none'] * 100:.1f}" in out
            if method != "base":
                assert float(record["delta"]) == pytest.approx(value - base[task])
                assert float(record["relative_pct"]) == pytest.approx((value - base[task]) / base[task] * 100)
        average = table[(method, "average")]
        assert float(average["value"]) == pytest.approx(sum(values) / len(values))
        if method != "base":
            relative = [(v - base[t]) / base[t] * 100 for v, t in zip(values, TASKS)]
            assert float(average["relative_pct"]) == pytest.approx(sum(relative) / len(relative))
    rows = [line for line in out.splitlines() if line.startswith("| tiny-llama")]
    assert [row.split("|")[2].strip() for row in rows] == ["base", "rescale", "rotation"]


def test_mcnemar_p_values_match_an_independent_count(runs_root, tmp_path, capsys):
    assert compare(capsys, runs_root, "--out", tmp_path)[0] == 0
    table = read_csv(tmp_path / "leaderboard.csv")
    files = {path.parents[1].name: path for path in runs_root.rglob("results_*.json")}
    discordant_total = 0
    for method in ("rotation", "rescale"):
        for task in TASKS:
            base, other = per_doc_acc(files["base"], task), per_doc_acc(files[method], task)
            base_only = sum(1 for doc in base if base[doc] == 1 and other[doc] == 0)
            other_only = sum(1 for doc in base if base[doc] == 0 and other[doc] == 1)
            record = table[(method, task)]
            assert (int(record["base_better"]), int(record["other_better"])) == (base_only, other_only)
            assert record["test"] == "mcnemar"
            assert int(record["n_docs"]) == len(base)
            assert float(record["p_value"]) == pytest.approx(exact_mcnemar_p(base_only, other_only), rel=1e-12)
            discordant_total += base_only + other_only
    assert discordant_total > 0, "the edits changed no answer: the test would not exercise McNemar"


def test_significance_marks_follow_alpha(runs_root, tmp_path, capsys):
    code, out, _ = compare(capsys, runs_root, "--out", tmp_path, "--alpha", "0.99")
    assert code == 0
    records = [r for r in read_csv(tmp_path / "leaderboard.csv").values() if r["p_value"]]
    marked = [r for r in records if float(r["p_value"]) < 0.99]
    assert marked, "no cell below alpha=0.99: nothing to mark"
    assert all(r["significant"] == str(float(r["p_value"]) < 0.99) for r in records)
    assert out.count("*)") == len(marked)


def test_writes_csv_png_and_self_contained_html(runs_root, tmp_path, capsys):
    code, out, _ = compare(capsys, runs_root, "--out", tmp_path / "board")
    assert code == 0
    board = tmp_path / "board"
    png = (board / "leaderboard.png").read_bytes()
    image = matplotlib.image.imread(board / "leaderboard.png")
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    page = (board / "leaderboard.html").read_text()
    assert f'src="data:image/png;base64,{base64.b64encode(png).decode()}"' in page
    assert "<table>" in page and page.count("<tr") == 4  # header + three runs
    for method in ("base", "rotation", "rescale"):
        assert f"<td>{method}</td>" in page
    assert (board / "leaderboard.md").read_text().strip() in out


def test_labels_come_from_lm_eval_config_for_hf_and_tarot_hf(toy, saved_tiny_llama, tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    import tarot_eval.harness.tarot_hf  # noqa: F401  (registers tarot-hf)

    model = AutoModelForCausalLM.from_pretrained(saved_tiny_llama)
    edit = HeadEdit.identity(model, "rotation", [0])
    edit.params = torch.full_like(edit.params, 1.5)
    ckpt = checkpoint.save(tmp_path / "ckpt", edit, model, bounds=(-math.pi, math.pi), provenance={"optimizer": "random"})
    root = tmp_path / "results"
    evaluate_into(root / "first", "hf", ["toy_a"], toy["tasks"], model_args=f"pretrained={saved_tiny_llama}", device="cpu",
                  batch_size=16)
    evaluate_into(root / "second", "tarot-hf", ["toy_a"], toy["tasks"],
                  model_args=f"pretrained={saved_tiny_llama},rotations={ckpt}", device="cpu", batch_size=16)
    code, out, _ = compare(capsys, root, "--out", tmp_path / "board")
    assert code == 0
    table = read_csv(tmp_path / "board" / "leaderboard.csv")
    assert set(table) == {("base", "toy_a"), ("base", "average"),
                          ("rotation (random)", "toy_a"), ("rotation (random)", "average")}
    assert {record["model"] for record in table.values()} == {"tiny-llama"}
    assert table[("rotation (random)", "toy_a")]["p_value"]


def test_label_options_override(runs_root, tmp_path, capsys):
    code, out, _ = compare(capsys, runs_root, "--out", tmp_path, "--label", "rotation=angles", "--model-label", ".=toy-model")
    assert code == 0
    table = read_csv(tmp_path / "leaderboard.csv")
    assert {method for method, _ in table} == {"base", "angles", "rescale"}
    assert {record["model"] for record in table.values()} == {"toy-model"}
    assert table[("angles", "toy_a")]["p_value"]

    code, _, err = compare(capsys, runs_root, "--label", "nowhere=x")
    assert code == 2 and "nowhere is neither a path" in err
    code, _, err = compare(capsys, runs_root, "--label", "rotation=base")
    assert code == 2 and "two runs are both tiny-llama / base / 0-shot" in err


def test_different_document_sets_are_refused(toy, runs_root, tmp_path, capsys):
    limited = tmp_path / "limited"
    shutil.copytree(runs_root / "base", limited / "base")
    evaluate_into(limited / "rotation", toy["lm"], ["toy_a"], toy["tasks"], limit=25)
    code, _, err = compare(capsys, limited, "--out", tmp_path / "board")
    assert code == 2 and "cover different documents" in err and "15 doc_ids only in base" in err
    code, _, err = compare(capsys, limited, "--out", tmp_path / "board", "--no-significance")
    assert code == 2 and "cover different documents" in err and "15 doc_ids only in base" in err
    for samples in limited.rglob("samples_*.jsonl"):  # without samples files: lm-eval's document counts
        samples.unlink()
    code, _, err = compare(capsys, limited, "--out", tmp_path / "board", "--no-significance")
    assert code == 2 and "toy_a: " in err and "scored 25 documents and base" in err and " 40;" in err

    write_task(tmp_path / "edited_tasks", "toy_a", seed=0, edited_doc=7)
    edited = tmp_path / "edited"
    shutil.copytree(runs_root / "base", edited / "base")
    manager = TaskManager(include_path=str(tmp_path / "edited_tasks"), include_defaults=False)
    evaluate_into(edited / "rotation", toy["lm"], ["toy_a"], manager)
    code, _, err = compare(capsys, edited, "--out", tmp_path / "board")
    assert code == 2 and "doc_id 7 has a different document" in err

    code, _, err = compare(capsys, edited, "--out", tmp_path / "board", "--no-significance")
    assert code == 2 and "doc_id 7 has a different document" in err


def test_a_torn_samples_file_is_named(runs_root, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(runs_root, copy)
    (samples,) = (copy / "rotation").rglob("samples_toy_a_*.jsonl")
    lines = samples.read_text().splitlines(keepends=True)
    samples.write_text("".join(lines[:10]) + lines[10][: len(lines[10]) // 2])  # killed while writing line 11
    code, _, err = compare(capsys, copy, "--out", tmp_path / "board")
    assert code == 2 and f"{samples}:11: not a JSON line" in err and "torn" in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = compare(capsys, copy, "--out", tmp_path / "board", "--no-significance")
    assert code == 2 and f"{samples}:11: not a JSON line" in err


def test_a_samples_file_torn_inside_a_utf8_character_is_named(runs_root, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(runs_root, copy)
    (samples,) = (copy / "rotation").rglob("samples_toy_a_*.jsonl")
    lines = samples.read_bytes().splitlines(keepends=True)
    samples.write_bytes(b"".join(lines[:4]) + "é".encode()[:1])  # killed between the two bytes of a character
    code, _, err = compare(capsys, copy, "--out", tmp_path / "board")
    assert code == 2 and f"{samples}:5: not UTF-8 text; the samples file is torn" in err
    assert len(err.strip().splitlines()) == 1


def test_samples_covering_fewer_documents_than_the_results_are_refused(runs_root, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(runs_root, copy)
    (samples,) = (copy / "rotation").rglob("samples_toy_a_*.jsonl")
    samples.write_text("".join(samples.read_text().splitlines(keepends=True)[:3]))  # cut short between lines
    code, _, err = compare(capsys, copy, "--out", tmp_path / "board")
    assert code == 2 and f"{samples}: holds 3 documents, but its results file reports 40 for toy_a" in err


def test_folders_moved_aside_are_left_out(runs_root, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(runs_root, copy)
    shutil.copytree(copy / "rotation", copy / "rotation.moved-aside-20250101T000000.000000Z")
    code, _, _ = compare(capsys, copy, "--out", tmp_path / "board")
    assert code == 0  # not a second rotation run scoring the same tasks
    assert len(read_csv(tmp_path / "board" / "leaderboard.csv")) == 3 * (len(TASKS) + 1)


def test_cli_errors(runs_root, tmp_path, capsys):
    code, _, err = compare(capsys, tmp_path / "missing")
    assert code == 2 and "does not exist" in err
    (tmp_path / "empty").mkdir()
    code, _, err = compare(capsys, tmp_path / "empty")
    assert code == 2 and "is empty" in err
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.json").write_text("{}")
    code, _, err = compare(capsys, tmp_path / "other")
    assert code == 2 and "no lm-eval results" in err

    code, _, err = compare(capsys, runs_root, "--metric", "f1")
    assert code == 2 and "unknown metric 'f1'" in err and "available: acc" in err

    copy = tmp_path / "copy"
    shutil.copytree(runs_root, copy)
    (missing,) = (copy / "rotation").rglob("samples_toy_b_*.jsonl")
    missing.unlink()
    code, _, err = compare(capsys, copy, "--out", tmp_path / "board")
    assert code == 2 and str(missing) in err and "--log_samples" in err
    code, out, _ = compare(capsys, copy, "--out", tmp_path / "board", "--no-significance")
    assert code == 0 and "p=" not in out


def test_non_binary_metrics_get_the_paired_t_test():
    pairs = [(0.1, 0.3), (0.5, 0.4), (0.2, 0.6), (0.0, 0.0), (0.7, 0.9), (-0.4, 0.2)]
    test = significance.paired_test(pairs)
    differences = [other - base for base, other in pairs]
    n = len(differences)
    mean = sum(differences) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in differences) / (n - 1))
    t_statistic = mean / (sd / math.sqrt(n))
    assert test.name == "paired-t" and test.n == n and (test.base_better, test.other_better) == (1, 4)
    assert test.p_value == pytest.approx(2 * student_t.sf(abs(t_statistic), n - 1), rel=1e-9)
    assert significance.paired_test([(0.5, 0.5), (0.2, 0.2)]).p_value == 1.0
    assert significance.paired_test([(1, 0), (0, 1), (0, 1)]).name == "mcnemar"


def test_continuous_metrics_are_shown_as_they_are(runs_root, tmp_path, capsys):
    """Per-document probabilities (not 0/1) get the paired t-test and are not turned into percentages."""
    continuous = tmp_path / "runs"
    shutil.copytree(runs_root, continuous)
    for samples in continuous.rglob("samples_*.jsonl"):
        lines = [json.loads(line) for line in samples.read_text().splitlines()]
        for sample in lines:
            sample["acc"] = 0.25 + 0.5 * sample["acc"] - 0.01 * (sample["doc_id"] % 3)
        samples.write_text("".join(json.dumps(sample) + "\n" for sample in lines))
    code, out, _ = compare(capsys, continuous, "--out", tmp_path / "board")
    assert code == 0
    records = read_csv(tmp_path / "board" / "leaderboard.csv")
    assert {r["test"] for r in records.values() if r["test"]} == {"paired-t"}
    assert "acc, ± lm-eval's standard error. p: paired t-test" in out and "acc in %" not in out
    value = records[("base", TASKS[0])]["value"]
    assert f"{float(value):.3f} ± " in out  # raw values keep three decimals


def test_aggregate_only_metrics_are_refused_for_significance(tmp_path):
    samples = tmp_path / "samples_t_x.jsonl"
    samples.write_text(json.dumps({"doc_id": 0, "filter": "none", "doc_hash": "d", "target_hash": "t",
                                   "distinct_1": "some words"}) + "\n")
    score = TaskScore("t", "distinct_1", "none", 0.5, None, 0, samples)
    with pytest.raises(CompareError, match="not a number per document.*--no-significance"):
        significance.read_outcomes(score)


def test_rows_of_other_shots_are_neither_missing_tasks_nor_empty_places_in_the_chart(tmp_path, caplog):
    """A 6-shot row beside 0-shot rows covers the 6-shot tasks; only a run missing a task its own rows have is warned."""
    import logging

    from tarot_eval.compare import scoreboard
    from tarot_eval.compare.runs import Run, TaskScore

    def run(method: str, shots: int, tasks: list[str]) -> Run:
        scores = {task: TaskScore(task, "acc", "none", 0.5, None, shots, tmp_path / "absent.jsonl") for task in tasks}
        return Run(tmp_path / method / str(shots), "m", method, scores)

    found = [run("base", 0, ["a", "b"]), run("base", 6, ["a_fewshot"]), run("rot", 0, ["a", "b"]),
             run("rot", 6, ["a_fewshot"]), run("half", 0, ["a"])]
    with caplog.at_level(logging.WARNING, logger="tarot_eval.compare.scoreboard"):
        board = scoreboard.build(found, significance=False)
    assert [record.getMessage() for record in caplog.records if "lacks" in record.getMessage()] == [
        f"{tmp_path / 'half' / '0'} lacks b: its average covers fewer tasks than others"]
    assert board.tasks == ["a", "a_fewshot", "b"]

    from matplotlib.figure import Figure

    from tarot_eval.compare import chart
    from tarot_eval.compare.seeds import summarize

    rows = summarize(board)
    names = [(row.method, row.shots) for row in rows]
    present = chart.slots(board, rows)  # per task, then the average: only the rows with a bar there
    assert [[names[index] for index in members] for members in present] == [
        [("base", "0-shot"), ("half", "0-shot"), ("rot", "0-shot")], [("base", "6-shot"), ("rot", "6-shot")],
        [("base", "0-shot"), ("rot", "0-shot")], names]
    axes = Figure().add_subplot()
    chart.draw(axes, board)
    drawn = sorted(bar.get_x() + bar.get_width() / 2 for bar in axes.patches if not math.isnan(bar.get_height()))
    width = 0.8 / len(names)
    assert drawn[3:5] == pytest.approx([1 - width / 2, 1 + width / 2])  # the 6-shot task's two bars, centred on it
