"""The LoRA baseline: a peft adapter trained on an edit's documents, scored by lm-eval's own `peft=`."""

from __future__ import annotations

import json

import pytest
import torch
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM
from support.calibrated import saved_task_and_model
from support.tasks import load_task

from tarot_eval.baselines.lora import LoraError, LoraSettings, done, train, train_once
from tarot_eval.objective import task_documents

REQUESTS = [("Question: red sky\nAnswer:", " yes"), ("Question: left step\nAnswer:", " no")]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    made = saved_task_and_model(tmp_path_factory.mktemp("lora"), seed=2)
    root, include, model, lm, model_dir = (made[key] for key in ("root", "include", "model", "lm", "model_dir"))
    options = LoraSettings(task="tiny_mc", n_train=8, n_val=6, budget=6, lr=0.05, select_k=3, rank=4, seed=0)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    result = train(model, lm, load_task(include), options, root / "adapter")
    return {"root": root, "include": include, "model": model, "lm": lm, "options": options, "result": result,
            "before": before, "model_dir": model_dir}


def _loglikelihoods(lm) -> list[float]:
    instances = [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(REQUESTS)]
    return [ll for ll, _ in lm.loglikelihood(instances)]


def test_training_raises_the_training_objective_and_selects_on_validation(setup):
    result = setup["result"]
    trace = [entry["train"] for entry in result["trace"]]
    assert len(trace) == 6 and trace[-1] > trace[0] + 0.01  # Adam on the choice cross-entropy learns the 8 documents
    assert result["candidates"] == [0, 2, 5] and result["chosen_step"] in result["candidates"]
    assert result["train_docs"] == [i for i, _ in task_documents.choose_docs(load_task(setup["include"]), 8, 6, 0).train]
    assert set(result["scores"]["base"]) == {"train", "validation"}


def test_the_base_model_is_left_as_it_came(setup):
    model = setup["model"]
    assert not any("lora" in name for name, _ in model.named_modules())
    for name, p in model.named_parameters():
        assert torch.equal(p, setup["before"][name]) and p.requires_grad


def test_lm_evals_own_peft_model_arg_scores_the_saved_adapter(setup):
    from peft import PeftModel

    adapter = setup["root"] / "adapter"
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
    stock = HFLM(pretrained=str(setup["model_dir"]), peft=str(adapter), device="cpu", batch_size=8)
    base = HFLM(pretrained=str(setup["model_dir"]), device="cpu", batch_size=8)
    wrapped = PeftModel.from_pretrained(setup["model"], str(adapter))
    try:
        in_process = _loglikelihoods(setup["lm"])
    finally:
        wrapped.unload()
    assert _loglikelihoods(stock) == pytest.approx(in_process, abs=1e-5)
    assert setup["result"]["shipped"] == "chosen" and setup["result"]["chosen_step"] > 0  # a trained adapter, not B = 0
    assert _loglikelihoods(stock) != pytest.approx(_loglikelihoods(base), abs=1e-6)


def test_a_finished_run_is_kept_and_other_settings_are_refused(setup):
    adapter = setup["root"] / "adapter"
    stamp = (adapter / "result.json").stat().st_mtime_ns
    assert done(adapter, setup["options"], setup["model"])
    assert train_once(setup["model"], setup["lm"], load_task(setup["include"]), setup["options"], adapter) is None
    assert (adapter / "result.json").stat().st_mtime_ns == stamp
    other = LoraSettings(**{**json.loads(json.dumps(setup["options"].record())), "lr": 0.5})
    with pytest.raises(LoraError, match="trained with other settings"):
        done(adapter, other, setup["model"])


def test_an_adapter_of_another_model_is_not_taken_for_this_ones(setup, tmp_path):
    """The done-check compares the model too: another family (other shapes), or the same shapes with other
    weights, is refused rather than answered 'already there'."""
    from conftest import tiny_model as tiny_family

    adapter = setup["root"] / "adapter"
    with pytest.raises(LoraError, match=r"an adapter trained on another model \(its shapes are those of"):
        done(adapter, setup["options"], tiny_family("gpt2"))
    reseeded = saved_task_and_model(tmp_path, seed=7)["model"]
    with pytest.raises(LoraError, match=r"an adapter trained on another model \(layer 0 output projection"):
        done(adapter, setup["options"], reseeded)


def test_the_lora_command_trains_once_and_names_bad_settings(setup, tmp_path, capsys):
    from tarot_eval import cli

    argv = ["lora", "--model", str(setup["model_dir"]), "--task", "tiny_mc", "--include-path", setup["include"],
            "--out", str(tmp_path / "a"), "--n-train", "6", "--n-val", "4", "--budget", "2", "--rank", "2"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "chosen" in printed and f"peft={tmp_path / 'a'}" in printed
    assert cli.main(argv) == 0 and "already there" in capsys.readouterr().out
    assert cli.main([*argv, "--budget", "0"]) == 2
    assert "--budget 0: must be at least 1" in capsys.readouterr().err
