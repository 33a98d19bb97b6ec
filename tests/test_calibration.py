"""The calibration baseline: fitted on a tiny Llama without test labels, applied inside lm-eval's loglikelihood."""

from __future__ import annotations

import json
import math

import pytest
import torch
from lm_eval.api.instance import Instance
from support.calibrated import saved_task_and_model

from tarot_eval.baselines.calibrate import CalibrateSettings, content_free, fit, fit_once, shared_answers
from tarot_eval.harness.tarot_hf import TarotHFLM
from tarot_eval.objective import calibration as calibrations
from tarot_eval.objective import scoring, task_documents
from tarot_eval.objective.calibration import Calibration, CalibrationError


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return saved_task_and_model(tmp_path_factory.mktemp("calibration"), seed=3)


def _softmax_of_requests(lm, task, docs) -> torch.Tensor:
    """Mean over `docs` of the choice probabilities, from HFLM's own loglikelihood of lm-eval's requests."""
    rows = []
    for index, doc in docs:
        pairs, _ = task_documents.requests_for(task, doc, index, task_documents.PromptOptions(), None)
        instances = [Instance("loglikelihood", doc, pair, i, (task.config.task, index, 1)) for i, pair in enumerate(pairs)]
        rows.append(torch.softmax(torch.tensor([ll for ll, _ in lm.loglikelihood(instances)], dtype=torch.float64), 0))
    return torch.stack(rows).mean(0)


def test_batch_prior_is_the_mean_choice_probability_over_the_seeds_training_documents(setup):
    task, lm = setup["task"], setup["lm"]
    options = CalibrateSettings(task="tiny_mc", variant="batch", n_train=6, n_val=4, seed=1)
    fitted = fit(setup["model"], lm, task, options)
    train = task_documents.choose_docs(task, 6, 4, 1).train
    expected = _softmax_of_requests(lm, task, train)
    assert fitted.provenance["train_docs"] == [i for i, _ in train]
    assert list(fitted.log_prior) == [" no", " yes"]  # keyed by the continuation lm-eval requests
    assert [math.exp(v) for v in fitted.log_prior.values()] == pytest.approx(expected.tolist(), abs=1e-5)


def test_contextual_prior_reads_content_free_versions_of_the_tasks_own_prompt(setup):
    task, lm = setup["task"], setup["lm"]
    fitted = fit(setup["model"], lm, task, CalibrateSettings(task="tiny_mc", variant="contextual"))
    _, pool, _ = task_documents.shuffled_pool(task, 0)
    index, doc = pool[0]
    blanks = [(index, content_free(task, doc, filler)) for filler in ("N/A", "[MASK]", "")]
    assert blanks[0][1]["question"] == "N/A" and blanks[0][1]["label"] == doc["label"]
    expected = _softmax_of_requests(lm, task, blanks)
    assert [math.exp(v) for v in fitted.log_prior.values()] == pytest.approx(expected.tolist(), abs=1e-5)
    assert sum(math.exp(v) for v in fitted.log_prior.values()) == pytest.approx(1.0)


def test_tarot_hf_removes_the_prior_inside_loglikelihood_and_lm_eval_scores_it(setup, tmp_path):
    import lm_eval

    calibrations.save(tmp_path / "cal", Calibration("tiny_mc", "batch", {" no": math.log(0.9), " yes": math.log(0.1)}))
    plain = TarotHFLM(pretrained=str(setup["model_dir"]), device="cpu", batch_size=8)
    calibrated = TarotHFLM(pretrained=str(setup["model_dir"]), device="cpu", batch_size=8, calibration=str(tmp_path / "cal"))
    instances = [Instance("loglikelihood", {}, ("Question: red sky\nAnswer:", cont), i, ("tiny_mc", 0, 1))
                 for i, cont in enumerate((" no", " yes"))]
    raw = [ll for ll, _ in plain.loglikelihood(instances)]
    shifted = [ll for ll, _ in calibrated.loglikelihood(instances)]
    assert shifted == pytest.approx([raw[0] - math.log(0.9), raw[1] - math.log(0.1)])

    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=setup["include"], include_defaults=False)
    results = lm_eval.simple_evaluate(model=calibrated, tasks=["tiny_mc"], task_manager=manager, log_samples=True)
    samples = results["samples"]["tiny_mc"]
    by_hand = [int(max(range(2), key=lambda c: float(s["filtered_resps"][c][0]))) == s["target"] for s in samples]
    assert results["results"]["tiny_mc"]["acc,none"] == pytest.approx(sum(by_hand) / len(by_hand))
    assert results["config"]["tarot_calibration_variant"] == "batch"
    assert results["config"]["tarot_calibration_hash"] == calibrations.calibration_hash(tmp_path / "cal")
    # a prior this strong on " no" turns the predictions to " yes" where the raw scores were close
    base = lm_eval.simple_evaluate(model=plain, tasks=["tiny_mc"], task_manager=manager, log_samples=True)["samples"]["tiny_mc"]
    yes = [sum(float(s["filtered_resps"][1][0]) > float(s["filtered_resps"][0][0]) for s in run) for run in (base, samples)]
    assert yes[1] >= yes[0]


def test_calibration_refuses_another_task_an_unknown_answer_and_a_bad_file(setup, tmp_path):
    cal = Calibration("tiny_mc", "batch", {" no": -0.1, " yes": -2.3}, source="c/calibration.json")
    with pytest.raises(CalibrationError, match="fitted on task 'tiny_mc', applied to 'other'"):
        cal.offset("other", " no")
    with pytest.raises(CalibrationError, match="asks for the answer ' maybe'.*the same answers for every document"):
        cal.offset("tiny_mc", " maybe")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "calibration.json").write_text("{not json")
    with pytest.raises(CalibrationError, match="bad/calibration.json: corrupt JSON"):
        calibrations.load(tmp_path / "bad")
    with pytest.raises(CalibrationError, match="no calibration file"):
        calibrations.load(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="calibration= is empty"):
        TarotHFLM(pretrained=str(setup["model_dir"]), device="cpu", calibration=" ")


def test_tasks_whose_choices_differ_per_document_are_refused(setup):
    class PerDocument:
        config = type("C", (), {"task": "varied"})()

        @staticmethod
        def doc_to_choice(doc):
            return [doc["a"], doc["b"]]

    with pytest.raises(CalibrationError, match="choices differ per document"):
        shared_answers(PerDocument, [{"a": "x", "b": "y"}, {"a": "x", "b": "z"}])
    with pytest.raises(CalibrationError, match="choices come from the document's text"):
        content_free(PerDocument, {"a": "x", "b": "y"}, "N/A")


def test_fit_once_keeps_a_file_of_the_same_settings_and_refuses_other_settings(setup, tmp_path):
    options = CalibrateSettings(task="tiny_mc", variant="batch", n_train=6, n_val=4, seed=0)
    first, fitted = fit_once(setup["model"], setup["lm"], setup["task"], options, tmp_path / "c")
    stamp = (tmp_path / "c" / "calibration.json").stat().st_mtime_ns
    again, fitted_again = fit_once(setup["model"], setup["lm"], setup["task"], options, tmp_path / "c")
    assert fitted and not fitted_again and again.log_prior == first.log_prior
    assert (tmp_path / "c" / "calibration.json").stat().st_mtime_ns == stamp
    with pytest.raises(CalibrationError, match="fitted with other settings"):
        fit_once(setup["model"], setup["lm"], setup["task"], CalibrateSettings(task="tiny_mc", variant="batch", seed=5,
                                                                               n_train=6, n_val=4), tmp_path / "c")
    assert json.loads((tmp_path / "c" / "calibration.json").read_text())["provenance"]["seed"] == 0


def test_the_objective_scores_calibrated_choices(setup):
    task, lm, model = setup["task"], setup["lm"], setup["model"]
    docs = task_documents.choose_docs(task, 8, 0, 0).train
    examples = task_documents.build_examples(task, lm, docs, task_documents.PromptOptions())
    prior = {" no": math.log(0.97), " yes": math.log(0.03)}
    offsets = [torch.tensor([prior[a] for a in example.answers]) for example in examples]
    scorer = scoring.ChoiceScorer(model, examples, 8, 0)
    raw = scorer.score()
    calibrated = raw.calibrated(offsets)
    for loglik, shifted, offset in zip(raw.choice_loglik, calibrated.choice_loglik, offsets):
        assert torch.allclose(shifted, loglik - offset)
    assert calibrated.correct(examples) == [int((ll - o).argmax()) == e.gold
                                            for ll, o, e in zip(raw.choice_loglik, offsets, examples)]


@pytest.mark.slow
def test_the_calibrate_command_then_stock_lm_eval_with_calibration(setup, tmp_path, capsys):
    from conftest import run_console

    from tarot_eval import cli

    out = tmp_path / "cal"
    argv = ["calibrate", "--model", str(setup["model_dir"]), "--task", "tiny_mc", "--include-path", setup["include"],
            "--out", str(out), "--variant", "batch", "--n-train", "6", "--n-val", "4"]
    assert cli.main(argv) == 0
    assert "fitted:" in capsys.readouterr().out
    assert cli.main(argv) == 0 and "already there" in capsys.readouterr().out
    assert cli.main([*argv[:-6], "--variant", "batch", "--n-train", "7", "--n-val", "4"]) == 2
    assert "fitted with other settings" in capsys.readouterr().err
    _, results = run_console(["lm_eval", "--model", "tarot-hf", "--model_args",
                              f"pretrained={setup['model_dir']},calibration={out}", "--tasks", "tiny_mc",
                              "--include_path", setup["include"], "--device", "cpu", "--log_samples"], tmp_path / "eval",
                             env={"TAROT_EVAL_NO_DEFAULT_TASKS": "1"})
    assert results["config"]["tarot_calibration_hash"] == calibrations.calibration_hash(out)
    (samples,) = (tmp_path / "eval").rglob("samples_tiny_mc_*.jsonl")
    prior = calibrations.load(out).log_prior
    plain = TarotHFLM(pretrained=str(setup["model_dir"]), device="cpu", batch_size=8)
    for line in samples.read_text().splitlines()[:4]:  # lm-eval's stored scores are the calibrated ones
        sample = json.loads(line)
        pairs = [(arg["arg_0"], arg["arg_1"]) for arg in sample["arguments"].values()]
        raw = [ll for ll, _ in plain.loglikelihood([Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(pairs)])]
        stored = [float(resp[0]) for resp in sample["filtered_resps"]]
        assert stored == pytest.approx([r - prior[cont] for r, (_, cont) in zip(raw, pairs)], abs=1e-4)


def test_a_calibration_is_refused_on_other_weights_unless_transfer_is_allowed(setup, tmp_path, caplog):
    """Fitted on one model, a calibration records that model's weight fingerprint; another model of the same
    shapes (another seed) is refused in tarot-hf, allow_transfer=true applies it, an old file only warns."""
    options = CalibrateSettings(task="tiny_mc", variant="batch", n_train=4, n_val=4)
    fitted, _ = fit_once(setup["model"], setup["lm"], setup["task"], options, tmp_path / "cal")
    assert set(fitted.provenance["weights"]["layers"]) == {"0", "1"}
    (tmp_path / "other").mkdir()
    other = saved_task_and_model(tmp_path / "other", seed=4)["model_dir"]
    with pytest.raises(CalibrationError, match=r"cal/calibration.json: fitted on .*, whose weights differ from this model's"):
        TarotHFLM(pretrained=str(other), device="cpu", batch_size=8, calibration=str(tmp_path / "cal"))
    TarotHFLM(pretrained=str(other), device="cpu", batch_size=8, calibration=str(tmp_path / "cal"), allow_transfer=True)
    TarotHFLM(pretrained=str(setup["model_dir"]), device="cpu", batch_size=8, calibration=str(tmp_path / "cal"))
    old = Calibration("tiny_mc", "batch", fitted.log_prior, {k: v for k, v in fitted.provenance.items() if k != "weights"})
    calibrations.save(tmp_path / "old", old)
    TarotHFLM(pretrained=str(other), device="cpu", batch_size=8, calibration=str(tmp_path / "old"))
    assert "records no weight fingerprint" in caplog.text
