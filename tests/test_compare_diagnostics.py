"""Label diagnostics of `tarot-eval compare`: predicted-answer share, entropy, collapse, chance and majority rates.

A real lm-eval run on a task of known gold labels is copied, and in each copy the per-choice
log-likelihoods (`filtered_resps`) of the samples file are rewritten to give chosen predictions.
"""

from __future__ import annotations

import csv
import json
import math
import random
import shutil
import statistics
from collections import Counter
from pathlib import Path

import pytest
from conftest import evaluate_into, write_choice_task
from lm_eval.tasks import TaskManager
from matplotlib.figure import Figure
from support.compare_runs import CHOICES, WORDS, compare

from tarot_eval.compare import chart, runs, scoreboard
from tarot_eval.compare.diagnostics import read_answers

TASK = "toy_labels"
GOLD = [0] * 40 + [1] * 30 + [2] * 20 + [3] * 10  # majority answer #0 at 40%; 4 choices: chance 25%
PREDICTIONS = {  # method -> predicted choice per document
    "majority": [0] * 100,
    "collapsed": [0] * 90 + [1] * 10,
    "almost": [0] * 89 + [1] * 11,
    "spread": [0] * 50 + [1] * 25 + [2] * 25,
}


def entropy(counts: list[int]) -> float:
    total = sum(counts)
    return -sum(count / total * math.log2(count / total) for count in counts if count)


def predict(folder: Path, predicted: list[int]) -> None:
    """Rewrite a run's samples so that document i picks choice predicted[i]; acc and the results follow."""
    (results_file,) = folder.rglob("results_*.json")
    (samples,) = folder.rglob(f"samples_{TASK}_*.jsonl")
    lines = [json.loads(line) for line in samples.read_text().splitlines()]
    for sample in lines:
        choice = predicted[sample["doc_id"]]
        sample["filtered_resps"] = [[str(-1.0 if index == choice else -9.0), "False"] for index in range(len(CHOICES))]
        sample["resps"] = [[response] for response in sample["filtered_resps"]]
        sample["acc"] = float(choice == int(sample["target"]))
    samples.write_text("".join(json.dumps(sample) + "\n" for sample in lines))
    results = json.loads(results_file.read_text())
    accuracy = [sample["acc"] for sample in lines]
    results["results"][TASK]["acc,none"] = statistics.mean(accuracy)
    results["results"][TASK]["acc_stderr,none"] = statistics.stdev(accuracy) / math.sqrt(len(accuracy))
    results_file.write_text(json.dumps(results))


@pytest.fixture(scope="module")
def labelled_root(toy, tmp_path_factory) -> Path:  # noqa: F811
    """A base run of the tiny Llama on 100 documents of known gold labels, and one copy per PREDICTIONS."""
    folder = tmp_path_factory.mktemp("labels")
    rng = random.Random(5)
    docs = [{"question": " ".join(rng.choice(WORDS) for _ in range(6)), "choices": CHOICES, "label": label} for label in GOLD]
    write_choice_task(folder / "tasks", TASK, docs, doc_to_text="{{question}} Answer:", doc_to_choice="choices")
    manager = TaskManager(include_path=str(folder / "tasks"), include_defaults=False)
    root = folder / "results"
    evaluate_into(root / "base", toy["lm"], [TASK], manager)
    for method, predicted in PREDICTIONS.items():
        shutil.copytree(root / "base", root / method)
        predict(root / method, predicted)
    return root


def records(path: Path) -> dict[str, dict]:
    with path.open(newline="") as handle:
        return {record["method"]: record for record in csv.DictReader(handle) if record["task"] == TASK}


def test_share_entropy_and_collapse_flag(labelled_root, tmp_path, capsys):
    code, out, _ = compare(capsys, labelled_root, "--out", tmp_path)
    assert code == 0
    table = records(tmp_path / "leaderboard.csv")
    for method, predicted in PREDICTIONS.items():
        counts = Counter(predicted)
        record = table[method]
        assert int(record["top_answer"]) == 0
        assert float(record["top_share"]) == pytest.approx(counts[0] / 100)
        assert float(record["entropy_bits"]) == pytest.approx(entropy(list(counts.values())))
        assert float(record["chance"]) == pytest.approx(0.25)
        assert (int(record["majority_answer"]), float(record["majority_rate"])) == (0, pytest.approx(0.4))
    assert float(table["spread"]["entropy_bits"]) == pytest.approx(1.5)  # 1/2, 1/4, 1/4
    assert float(table["majority"]["entropy_bits"]) == 0.0
    assert {method: table[method]["collapsed"] for method in PREDICTIONS} == {
        "majority": "True", "collapsed": "True", "almost": "False", "spread": "False"}

    lines = [[cell.strip() for cell in line.split("|")[1:-1]] for line in out.splitlines() if line.startswith("| ")]
    assert lines[0][3:5] == [f"{TASK} (chance 25.0, majority #0 40.0)", f"{TASK} answers"]
    answers = {line[1]: line[4] for line in lines[1:]}
    assert answers["majority"] == "#0 100.0% · 0.00 bits ⚑collapsed"
    assert answers["collapsed"] == f"#0 90.0% · {entropy([90, 10]):.2f} bits ⚑collapsed"
    assert answers["almost"] == f"#0 89.0% · {entropy([89, 11]):.2f} bits"  # 89%: no flag
    assert answers["spread"] == "#0 50.0% · 1.50 bits"
    assert [line[3].split(" ±")[0] for line in lines[1:] if line[1] == "majority"] == ["40.0"]  # = the majority rate
    page = (tmp_path / "leaderboard.html").read_text()
    assert f"<th>{TASK} (chance 25.0, majority #0 40.0)</th>" in page and "<td>#0 90.0% · 0.47 bits ⚑collapsed</td>" in page


def test_text_targets_and_other_tasks(labelled_root, tmp_path):
    (run,) = runs.read_runs(labelled_root / "spread", "acc")
    score = run.scores[TASK]
    copy = tmp_path / score.samples.name
    lines = [json.loads(line) for line in score.samples.read_text().splitlines()]
    for sample in lines:  # a target written as the choice's text, as `doc_to_target: "{{answer}}"` gives
        sample["target"] = CHOICES[int(sample["target"])].strip()
    copy.write_text("".join(json.dumps(sample) + "\n" for sample in lines))
    answers = read_answers(type(score)(**{**score.__dict__, "samples": copy}))
    assert (answers.majority_answer, answers.majority_rate, answers.top_share) == (0, 0.4, 0.5)

    for sample in lines:  # a generate_until sample: one generated string per document
        sample["filtered_resps"] = ["a generated answer"]
    copy.write_text("".join(json.dumps(sample) + "\n" for sample in lines))
    assert read_answers(type(score)(**{**score.__dict__, "samples": copy})) is None
    assert read_answers(type(score)(**{**score.__dict__, "samples": tmp_path / "missing.jsonl"})) is None


def test_chart_marks_chance_and_majority(labelled_root):
    board = scoreboard.build(runs.read_runs(labelled_root, "acc"))
    axes = Figure().add_subplot()
    chart.draw(axes, board)
    levels = {collection.get_label(): collection.get_segments()[0] for collection in axes.collections if collection.get_label()}
    assert levels["chance"][:, 1].tolist() == [25.0, 25.0]
    assert levels["majority class"][:, 1].tolist() == pytest.approx([40.0, 40.0])
    assert levels["chance"][:, 0].tolist() == [-0.45, 0.45]  # across the task's group of bars


def test_chart_hatches_and_flags_collapsed_cells_and_keeps_its_title_whole(labelled_root):
    board = scoreboard.build(runs.read_runs(labelled_root, "acc"))
    axes = Figure(figsize=(6, 4.5)).add_subplot()
    chart.draw(axes, board)
    hatched = {container.get_label(): container.patches[0].get_hatch() for container in axes.containers
               if hasattr(container, "patches") and container.get_label() in PREDICTIONS}
    assert hatched == {"majority": "xx", "collapsed": "xx", "almost": None, "spread": None}
    flagged = sum(text.get_text().endswith("⚑") for text in axes.texts)  # beside the significance mark, if any
    hatched_bars = sum(patch.get_hatch() == "xx" for container in axes.containers if hasattr(container, "patches")
                       for patch in container.patches if not math.isnan(patch.get_height()))
    assert flagged == hatched_bars >= 2
    assert all(len(line) <= 70 for line in axes.get_title(loc="left").splitlines())
