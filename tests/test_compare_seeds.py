"""`tarot-eval compare` over seeds: runs in `seed-<k>` folders written by lm-eval's own EvaluationTracker."""

from __future__ import annotations

import csv
import json
import re
import statistics
from pathlib import Path

import pytest
from conftest import evaluate_into, tiny_model
from lm_eval.models.huggingface import HFLM
from matplotlib.figure import Figure
from support.compare_runs import TASKS, compare, exact_mcnemar_p, per_doc_acc

from tarot_eval.compare import chart, runs, scoreboard
from tarot_eval.compare.labels import run_folder_label, seed_from_path
from tarot_eval.compare.runs import Run, TaskScore, merge_runs

SEEDS = {"rotation": (0, 1, 2), "rescale": (0, 1)}
# the tiny Llama standing in for each seed's run: inits whose answers differ from the base model's (init 0)
MODEL_INIT = {("rotation", 0): 13, ("rotation", 1): 17, ("rotation", 2): 19, ("rescale", 0): 21, ("rescale", 1): 27}


@pytest.fixture(scope="module")
def seeded_root(toy) -> Path:  # noqa: F811
    """A seed-free base run, then rotation with seeds 0-2 and rescale with seeds 0-1. compare reads files only,
    so each seed's run stands in with its own randomly initialized tiny Llama (MODEL_INIT)."""
    root, tokenizer = toy["root"] / "seeded", toy["lm"].tokenizer
    evaluate_into(root / "base", toy["lm"], TASKS, toy["tasks"])
    for (method, seed), init in MODEL_INIT.items():
        lm = HFLM(pretrained=tiny_model("llama", seed=init), tokenizer=tokenizer, batch_size=16)
        evaluate_into(root / method / f"seed-{seed}", lm, TASKS, toy["tasks"])
    return root


def results_files(root: Path) -> dict[tuple[str, int | None], Path]:
    """(method, seed) -> results file, from the folder layout alone."""
    found = {}
    for path in root.rglob("results_*.json"):
        parts = path.relative_to(root).parts
        seed = int(parts[1].removeprefix("seed-")) if parts[1].startswith("seed-") else None
        found[(parts[0], seed)] = path
    return found


def accuracy(path: Path, task: str) -> float:
    return json.loads(path.read_text())["results"][task]["acc,none"]


def mcnemar(base_file: Path, other_file: Path, task: str) -> tuple[float, float]:
    """(p, other − base accuracy) from the per-document samples, counted here."""
    base, other = per_doc_acc(base_file, task), per_doc_acc(other_file, task)
    base_only = sum(1 for doc in base if base[doc] == 1 and other[doc] == 0)
    other_only = sum(1 for doc in base if base[doc] == 0 and other[doc] == 1)
    return exact_mcnemar_p(base_only, other_only), (other_only - base_only) / len(base)


def read_records(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def table_lines(out: str, table: int = 0) -> list[list[str]]:
    """The header and body rows of the `table`-th Markdown table of `out`, as stripped cells."""
    lines = out.split("\n\n")[0::2][table].splitlines()  # tables and legends alternate
    return [[part.strip() for part in line.split("|")[1:-1]] for line in lines[:1] + lines[2:]]


def table_rows(out: str, table: int = 0) -> list[list[str]]:
    return table_lines(out, table)[1:]


def test_seed_comes_from_the_first_seed_folder_below_the_root(tmp_path):
    root = tmp_path / "seed-9" / "results"
    assert seed_from_path(root / "rotation" / "seed-3" / "toy_a" / "seed-5" / "m" / "results_x.json", root) == 3
    assert seed_from_path(root / "rotation" / "m" / "results_x.json", root) is None  # seed-9 lies above the root
    assert seed_from_path(root / "seed-x" / "myseed-4" / "seed-4b" / "results_x.json", root) is None
    assert seed_from_path(root / "seed-12" / "results_x.json", root) == 12
    results = {"model_name_sanitized": "m"}
    assert run_folder_label(root / "rotation" / "seed-3" / "m" / "results_x.json", root, results) == "rotation"
    assert run_folder_label(root / "seed-3" / "rotation" / "m" / "results_x.json", root, results) == "rotation"


def test_merge_joins_single_task_runs_of_one_seed_only(tmp_path):
    def run(task: str, seed: int | None) -> Run:
        score = TaskScore(task, "acc", "none", 0.5, None, 0, tmp_path / f"samples_{task}.jsonl")
        return Run(tmp_path / f"seed-{seed}" / task / "results_x.json", "m", "rotation", {task: score}, seed)

    merged = merge_runs([run("a", 0), run("b", 0), run("a", 1), run("a", None)])
    assert sorted((one.seed is None, one.seed or 0, sorted(one.scores)) for one in merged) == [
        (False, 0, ["a", "b"]), (False, 1, ["a"]), (True, 0, ["a"])]


def test_read_runs_sets_the_seed(seeded_root):
    found = runs.read_runs(seeded_root, "acc")
    assert sorted((run.method, run.seed is None, run.seed or 0) for run in found) == sorted(
        [("base", True, 0)] + [(method, False, seed) for method, seeds in SEEDS.items() for seed in seeds])


def test_mean_and_sd_over_seeds_with_significance_counts(seeded_root, tmp_path, capsys):
    code, out, _ = compare(capsys, seeded_root, "--out", tmp_path, "--alpha", "0.5")
    assert code == 0
    files = results_files(seeded_root)
    records = {(r["method"], r["versus"], r["task"]): r for r in read_records(tmp_path / "leaderboard_seeds.csv")}
    rows = {row[1]: row for row in table_rows(out)}
    assert list(rows) == ["base", "rescale", "rotation"]  # one row per method, not per seed
    columns = table_lines(out)[0]
    tested = 0
    for method, seeds in SEEDS.items():
        assert rows[method][3] == ", ".join(map(str, seeds))
        for task in TASKS:
            values = [accuracy(files[(method, seed)], task) for seed in seeds]
            base = accuracy(files[("base", None)], task)
            tests = [mcnemar(files[("base", None)], files[(method, seed)], task) for seed in seeds]
            better = sum(1 for p, delta in tests if p < 0.5 and delta > 0)
            worse = sum(1 for p, delta in tests if p < 0.5 and delta < 0)
            record = records[(method, "base", task)]
            assert float(record["mean"]) == pytest.approx(statistics.mean(values))
            assert float(record["sd"]) == pytest.approx(statistics.stdev(values))
            assert float(record["delta_mean"]) == pytest.approx(statistics.mean(values) - base)
            assert [float(p) for p in record["p_values"].split(";")] == pytest.approx([p for p, _ in tests], rel=1e-5)
            assert (int(record["better"]), int(record["worse"]), int(record["n_seeds"])) == (better, worse, len(seeds))
            cell = (f"{statistics.mean(values) * 100:.1f} ± {statistics.stdev(values) * 100:.1f} "
                    f"(Δ {(statistics.mean(values) - base) * 100:+.1f}, sig +{better}/−{worse} of {len(seeds)})")
            assert rows[method][columns.index(next(c for c in columns if c.startswith(f"{task} (")))] == cell
            tested += better + worse
    assert tested > 0, "no seed differs significantly from base at alpha 0.5: the counts are not exercised"
    averages = [statistics.mean(accuracy(files[("rotation", seed)], task) for task in TASKS) for seed in SEEDS["rotation"]]
    assert rows["rotation"][columns.index("Average (%)")] == (
        f"{statistics.mean(averages) * 100:.1f} ± {statistics.stdev(averages) * 100:.1f}")
    assert rows["base"][3] == "—" and "±" not in rows["base"][4]  # one run: no sd


def test_by_seed_shows_one_row_per_seed(seeded_root, tmp_path, capsys):
    code, out, _ = compare(capsys, seeded_root, "--out", tmp_path, "--by-seed")
    assert code == 0
    files = results_files(seeded_root)
    rows = table_rows(out)
    assert [(row[1], row[3]) for row in rows] == [
        ("base", "—"), ("rescale", "0"), ("rescale", "1"), ("rotation", "0"), ("rotation", "1"), ("rotation", "2")]
    for method, seed in [(row[1], row[3]) for row in rows]:
        source = files[(method, None if seed == "—" else int(seed))]
        entry = json.loads(source.read_text())["results"][TASKS[0]]
        assert [row[4] for row in rows if (row[1], row[3]) == (method, seed)][0].startswith(
            f"{entry['acc,none'] * 100:.1f} ± {entry['acc_stderr,none'] * 100:.1f}")
    records = read_records(tmp_path / "leaderboard.csv")
    assert len(records) == 6 * (len(TASKS) + 1)
    assert sorted({(r["method"], r["seed"]) for r in records}) == [
        ("base", ""), ("rescale", "0"), ("rescale", "1"), ("rotation", "0"), ("rotation", "1"), ("rotation", "2")]
    assert (tmp_path / "leaderboard.md").read_text().strip() in out


def test_reference_is_tested_against_every_method_seed_by_seed(seeded_root, tmp_path, capsys):
    code, out, _ = compare(capsys, seeded_root, "--out", tmp_path, "--alpha", "0.5")
    assert code == 0
    files = results_files(seeded_root)
    records = {(r["versus"], r["task"]): r for r in read_records(tmp_path / "leaderboard_seeds.csv") if r["method"] == "rotation"}
    # the seed-free base pairs with every rotation seed; rescale pairs seed k with seed k (0 and 1; it has no seed 2)
    pairs = {"base": [(None, seed) for seed in SEEDS["rotation"]], "rescale": [(0, 0), (1, 1)]}
    for other, seeds in pairs.items():
        for task in TASKS:
            tests = [mcnemar(files[(other, theirs)], files[("rotation", ours)], task) for theirs, ours in seeds]
            record = records[(other, task)]
            assert record["seeds"] == ";".join(str(ours) for _, ours in seeds)
            assert [float(p) for p in record["p_values"].split(";")] == pytest.approx([p for p, _ in tests], rel=1e-5)
            assert float(record["delta_mean"]) == pytest.approx(statistics.mean(delta for _, delta in tests))
            assert int(record["better"]) == sum(1 for p, delta in tests if p < 0.5 and delta > 0)
            assert int(record["worse"]) == sum(1 for p, delta in tests if p < 0.5 and delta < 0)
    versus = table_rows(out, 1)
    assert [row[:4] for row in versus] == [["tiny-llama", "0-shot", "base", "0, 1, 2"],
                                           ["tiny-llama", "0-shot", "rescale", "0, 1"]]
    for row, other in zip(versus, pairs):
        record = records[(other, TASKS[0])]
        p_values = ", ".join(f"p={float(p):.3f}" if float(p) >= 0.001 else "p<0.001" for p in record["p_values"].split(";"))
        assert row[4].endswith(f", +{record['better']}/−{record['worse']} of {len(pairs[other])} ({p_values})")

    code, out, _ = compare(capsys, seeded_root, "--out", tmp_path, "--reference", "rescale")
    assert code == 0
    header, *rows = table_lines(out, 1)
    assert header[2] == "rescale vs" and [row[2:4] for row in rows] == [["base", "0, 1"], ["rotation", "0, 1"]]


def test_task_mean_and_holm_columns_count_from_the_samples(seeded_root, tmp_path, capsys):
    """task mean: each seed's Δ averaged over the tasks, mean ± sd, and a t-test over the seeds; Holm: the row's
    seed x task McNemar tests adjusted together. Both recomputed here from the samples files (scipy, by hand)."""
    from scipy.stats import ttest_1samp

    code, out, _ = compare(capsys, seeded_root, "--out", tmp_path, "--alpha", "0.5")
    assert code == 0
    files = results_files(seeded_root)
    header, *rows = table_lines(out, 1)
    assert header[-2:] == ["task mean", "Holm"] and len(rows) == 2
    pairs = {"base": [(None, seed) for seed in SEEDS["rotation"]], "rescale": [(0, 0), (1, 1)]}
    for row, (other, seeds) in zip(rows, pairs.items()):
        tests = {(ours, task): mcnemar(files[(other, theirs)], files[("rotation", ours)], task)
                 for theirs, ours in seeds for task in TASKS}
        per_seed = [sum(tests[(ours, task)][1] for task in TASKS) / len(TASKS) for _, ours in seeds]
        p_value = ttest_1samp(per_seed, 0.0).pvalue
        shown = re.fullmatch(r"Δ ([+-][\d.]+) ± ([\d.]+) \(t p=([\d.]+)\)", row[-2])
        assert shown, row[-2]  # one decimal shown: equal to within its rounding (accuracies differ in float noise)
        assert float(shown[1]) == pytest.approx(statistics.mean(per_seed) * 100, abs=0.051)
        assert float(shown[2]) == pytest.approx(statistics.stdev(per_seed) * 100, abs=0.051)
        assert float(shown[3]) == pytest.approx(p_value, abs=0.0006)
        ordered = sorted(tests.values())  # Holm by hand: the i-th smallest p times (n - i), kept monotone
        adjusted, running = [], 0.0
        for i, (p, delta) in enumerate(ordered):
            running = max(running, min(1.0, (len(ordered) - i) * p))
            adjusted.append((delta, running))
        better = sum(1 for delta, q in adjusted if q < 0.5 and delta > 0)
        worse = sum(1 for delta, q in adjusted if q < 0.5 and delta < 0)
        assert row[-1] == f"+{better}/−{worse} of {len(tests)}"


def test_bad_reference_is_one_line_error(seeded_root, tmp_path, capsys):
    code, _, err = compare(capsys, seeded_root, "--out", tmp_path, "--reference", "nope")
    assert code == 2 and "--reference 'nope': no run has that method; methods: base, rescale, rotation" in err
    assert len(err.strip().splitlines()) == 1


def test_chart_draws_a_point_per_seed(seeded_root):
    board = scoreboard.build(runs.read_runs(seeded_root, "acc"))
    axes = Figure().add_subplot()
    chart.draw(axes, board)
    files = results_files(seeded_root)
    points = sorted(tuple(line.get_ydata()) for line in axes.lines if line.get_marker() == "o")  # a dot per seed
    per_task = [tuple(accuracy(files[(method, seed)], task) * 100 for seed in seeds)
                for method, seeds in SEEDS.items() for task in TASKS]
    averages = [tuple(statistics.mean(accuracy(files[(method, seed)], task) * 100 for task in TASKS) for seed in seeds)
                for method, seeds in SEEDS.items()]
    expected = sorted(per_task + averages)
    assert len(points) == len(expected) == 6
    for drawn, values in zip(points, expected):
        assert drawn == pytest.approx(values)
    assert chart.bar_chart(board)[:8] == b"\x89PNG\r\n\x1a\n"


def test_baseline_runs_are_labelled_by_what_their_results_say():
    from tarot_eval.compare.labels import method_from_config

    calibrated = {"tarot_rotations": None, "tarot_calibration": "c/calibration.json", "tarot_calibration_variant": "batch"}
    assert method_from_config(calibrated) == "calibrate (batch)"
    edited = {**calibrated, "tarot_rotations": "r", "tarot_method": "rotation", "tarot_provenance": {"optimizer": "bo"}}
    assert method_from_config(edited) == "rotation (bo) + calibrate (batch)"
    assert method_from_config({"model": "hf", "model_args": "pretrained=m,peft=adapters/a"}) == "lora"
    assert method_from_config({"tarot_rotations": None}) == "base"
