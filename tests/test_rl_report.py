"""`tarot-eval rl-report`: base and edited lm-eval generation runs side by side, perplexity under the base model."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
from conftest import evaluate_into
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager
from tarot_eval.rl import candidates_plot, report, train_dpo
from tarot_eval.rl.training import RewardSetting
from transformers import AutoModelForCausalLM, AutoTokenizer

from tarot_eval.compare.significance import paired_test
from tarot_eval.edit.head_edit import HeadEdit
from tarot_eval.rewards.fluency import continuation_perplexity

GENERATION_TASKS = Path(__file__).resolve().parents[1] / "tasks" / "generation"


def run_report(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    report.add_arguments(parser)
    return report.run(parser.parse_args(argv))


def samples_of(results_file: Path, task: str) -> list[dict]:
    date = results_file.stem.removeprefix("results_")
    return [json.loads(line) for line in (results_file.parent / f"samples_{task}_{date}.jsonl").read_text().splitlines()]


def table_rows(markdown: str) -> dict[str, dict[str, str]]:
    lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[1:]]
    return {row[0]: dict(zip(header, row)) for row in rows}


def test_report_pairs_runs_and_rates_them_under_the_base_model(tmp_path, saved_tiny_llama, data_dir, monkeypatch, capsys):
    monkeypatch.setenv("TAROT_DATA_DIR", str(data_dir))
    monkeypatch.delenv("TAROT_SENTIMENT_SCORER", raising=False)
    model = AutoModelForCausalLM.from_pretrained(saved_tiny_llama).eval()
    tokenizer = AutoTokenizer.from_pretrained(saved_tiny_llama)
    manager = TaskManager(include_defaults=False, include_path=str(GENERATION_TASKS))
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=4)
    base_file = evaluate_into(tmp_path / "base", lm, ["tarot_imdb"], manager, limit=4)
    with HeadEdit("rotation", (0, 1, 2), torch.full((3, 4, 4), math.pi / 4)).attached(model):
        edited_file = evaluate_into(tmp_path / "edited", lm, ["tarot_imdb"], manager, limit=4)

    out = tmp_path / "report.md"
    assert run_report(["--task", "tarot_imdb", f"base={tmp_path / 'base'}", f"rot={tmp_path / 'edited'}",
                       "--model", str(saved_tiny_llama), "--examples", "2", "--out", str(out)]) == 0
    text = out.read_text()
    assert capsys.readouterr().out.strip() == text.strip()
    rows = table_rows(text)
    assert list(rows) == ["base", "rot"]
    for name, results_file in (("base", base_file), ("rot", edited_file)):
        samples = samples_of(results_file, "tarot_imdb")
        expected = continuation_perplexity(model, tokenizer, [s["doc"]["prompt"] for s in samples],
                                           [s["filtered_resps"][0] for s in samples])
        assert float(rows[name]["ppl_base"]) == float(f"{expected.corpus:.4g}")
        reward = json.loads(results_file.read_text())["results"]["tarot_imdb"]["reward,none"]
        assert float(rows[name]["reward"]) == float(f"{reward:.4g}")
    base_samples, edited_samples = samples_of(base_file, "tarot_imdb"), samples_of(edited_file, "tarot_imdb")
    expected_p = paired_test([(b["reward"], e["reward"]) for b, e in zip(base_samples, edited_samples)]).p_value
    assert rows["rot"]["p reward"] == f"{expected_p:.3g}" and rows["base"]["p reward"] == ""
    changed = [(b, e) for b, e in zip(base_samples, edited_samples) if b["filtered_resps"] != e["filtered_resps"]]
    assert changed, "the edit changed no continuation: the report would compare identical runs"
    for sample in base_samples[:2]:
        assert repr(sample["doc"]["prompt"]) in text and repr(sample["filtered_resps"][0]) in text
    assert repr(base_samples[2]["doc"]["prompt"]) not in text  # --examples 2

    evaluate_into(tmp_path / "short", lm, ["tarot_imdb"], manager, limit=2)
    assert run_report(["--task", "tarot_imdb", str(tmp_path / "base"), str(tmp_path / "short"),
                       "--model", str(saved_tiny_llama)]) == 2
    assert "same prompts" in capsys.readouterr().err
    assert run_report(["--task", "tarot_detox", str(tmp_path / "base"), "--model", str(saved_tiny_llama)]) == 2
    assert "scored tarot_detox" in capsys.readouterr().err


def test_report_plots_every_trained_candidate_against_its_perplexity(tmp_path, saved_tiny_llama, data_dir, monkeypatch,
                                                                     capsys):
    from support.trainers import NO_GUARD, PROMPTS, VALIDATION, VowelScorer

    model = AutoModelForCausalLM.from_pretrained(saved_tiny_llama).eval()
    tokenizer = AutoTokenizer.from_pretrained(saved_tiny_llama)
    setting = RewardSetting(VowelScorer(), PROMPTS, validation_prompts=VALIDATION, max_new_tokens=6, guard=NO_GUARD,
                            ship_unimproved=True)
    train_dpo.train(model, tokenizer, setting, train_dpo.DPOSettings(layers=(0, 1), bounds=(-0.3, 0.3), rounds=2,
                                                                   samples_per_prompt=3), tmp_path / "dpo")
    result = json.loads((tmp_path / "dpo" / "result.json").read_text())
    [run] = candidates_plot.read_candidates("dpo", tmp_path / "dpo")
    fluency = result["selection"]["fluency"]
    assert [(key, reward) for key, _, reward, _ in run.points] == list(result["selection"]["candidates"].items())
    assert run.points[0][1] == fluency["0"]["perplexity"] / fluency["base"]["perplexity"]
    assert run.shipped == next((x, y) for key, x, y, _ in run.points if key == str(result["selection"]["chosen_round"]))

    monkeypatch.setenv("TAROT_DATA_DIR", str(data_dir))
    manager = TaskManager(include_defaults=False, include_path=str(GENERATION_TASKS))
    evaluate_into(tmp_path / "base", HFLM(pretrained=model, tokenizer=tokenizer, batch_size=4), ["tarot_imdb"], manager,
                  limit=2)
    plot = tmp_path / "candidates.png"
    assert run_report(["--task", "tarot_imdb", str(tmp_path / "base"), "--model", str(saved_tiny_llama),
                       "--checkpoints", f"dpo={tmp_path / 'dpo'}", "--plot", str(plot)]) == 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert run_report(["--task", "tarot_imdb", str(tmp_path / "base"), "--plot", str(plot)]) == 2
    assert "go together" in capsys.readouterr().err


def test_runs_over_seeds_get_the_mean_change_and_a_count_of_significant_ones():
    import statistics

    from scipy.stats import ttest_rel

    from tarot_eval.compare.generations import RunSamples, markdown

    ids = range(40)
    base_values = {i: (i % 7) / 7 for i in ids}

    def run(name, shift, scale):
        values = {i: base_values[i] + shift + scale * ((i * 37) % 11 - 5) for i in ids}
        return RunSamples(name, {"reward": statistics.mean(values.values())}, {i: f"prompt {i}" for i in ids},
                          {i: "text" for i in ids}, {"reward": values})

    base = run("base", 0.0, 0.0)
    seeds = [run("seed-0", 0.2, 0.01), run("seed-1", 0.001, 0.05), run("seed-2", -0.3, 0.02)]
    text = markdown("tarot_imdb", [base, *seeds], [{} for _ in range(4)], examples=1)
    changes = [seed.metrics["reward"] - base.metrics["reward"] for seed in seeds]
    p_values = [ttest_rel([base_values[i] for i in ids], [seed.per_document["reward"][i] for i in ids]).pvalue
                for seed in seeds]
    assert [p < 0.05 for p in p_values] == [True, False, True]  # one up, one not, one down
    assert "### Over the 3 runs against base" in text
    assert (f"| reward | {statistics.mean(changes):+.4g} ± {statistics.stdev(changes):.4g} | 1 / 1 of 3 |"
            in text.splitlines())
    assert "Over the" not in markdown("tarot_imdb", [base, seeds[0]], [{}, {}], examples=1)  # one run: no summary
