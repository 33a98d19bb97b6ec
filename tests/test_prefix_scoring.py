"""tarot-hf's prefix-tree log-likelihoods are HFLM's: the same (log-likelihood, is_greedy) per request, in order."""

from __future__ import annotations

import random

import pytest
import torch
from conftest import TINY_CONFIGS, tiny_model
from lm_eval.api.instance import Instance

from tarot_eval.edit import checkpoint, head_edit
from tarot_eval.harness.tarot_hf import TarotHFLM
from tarot_eval.objective import calibration as calibrations

WORDS = "the quick brown fox jumps over lazy dog red green blue answer question true false".split()
ANSWERS = [" yes", " no", " red", " green blue"]


def requests(seed: int = 0, n_docs: int = 9) -> list[Instance]:
    """Documents behind one shared system prompt, 2-4 choices each (one of two tokens), and an empty context."""
    rnd = random.Random(seed)
    system = "<s>system: Answer the question with one of the choices given.</s><s>user: "
    made = []
    for doc in range(n_docs):
        context = system + " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(2, 9))) + "</s><s>assistant:"
        for choice in ANSWERS[: 2 + doc % 3]:
            made.append(Instance("loglikelihood", {}, (context, choice), len(made), ("toy", doc, 1)))
    made.append(Instance("loglikelihood", {}, ("", " yes"), len(made), ("toy", n_docs, 1)))
    return made


def scored(lm: TarotHFLM, batch: list[Instance]) -> list[tuple[float, bool]]:
    try:
        return lm.loglikelihood(batch, disable_tqdm=True)
    finally:
        if lm.tarot_handle is not None:  # the model is shared by both paths: take the edit out again
            lm.tarot_handle.unmerge() if lm.tarot_fold else lm.tarot_handle.remove()


def assert_same(fast, stock, atol=1e-5):
    assert [greedy for _, greedy in fast] == [greedy for _, greedy in stock]
    assert max(abs(a - b) for (a, _), (b, _) in zip(fast, stock)) <= atol


@pytest.fixture
def edited(tmp_path):
    def make(model, kind="rotation"):
        made = head_edit.HeadEdit.identity(model, kind, [0, 1])
        torch.manual_seed(3)
        made.params = (torch.rand_like(made.params) - 0.5) * 1.5
        return str(checkpoint.save(tmp_path / kind, made, model))
    return make


CASES = [(family, variant) for family in sorted(TINY_CONFIGS) for variant in ("base", "merged", "calibrated")] + [
    (family, variant) for family in ("llama", "qwen2", "gpt2")  # GQA, value bias, Conv1D
    for variant in ("attached", "offset")]


@pytest.mark.parametrize("family, variant", CASES)
def test_the_prefix_tree_gives_hflms_answers(family, variant, tiny_tokenizer, edited, tmp_path):
    model = tiny_model(family)
    options = {}
    if variant in ("merged", "attached", "calibrated", "offset"):
        options = {"rotations": edited(model, "offset" if variant == "offset" else "rotation"), "fold": variant != "attached"}
    if variant == "calibrated":
        prior = calibrations.log_prior_from({answer: 1.0 + index for index, answer in enumerate(ANSWERS)})
        calibrations.save(tmp_path / "cal", calibrations.Calibration("toy", "batch", prior))
        options["calibration"] = str(tmp_path / "cal")
    batch = requests(seed=len(family))
    answers = {}
    for stock in (True, False):
        lm = TarotHFLM(pretrained=model, tokenizer=tiny_tokenizer, backend="causal", batch_size=3, stock_scoring=stock, **options)
        answers[stock] = scored(lm, batch)
        assert lm.tarot_requests == ({"prefix-tree": 0, "stock": len(batch)} if stock
                                     else {"prefix-tree": len(batch), "stock": 0})
    assert_same(answers[False], answers[True])


def test_requests_hflm_would_truncate_are_left_to_it(tiny_tokenizer):
    model = tiny_model("llama")
    batch = requests(seed=1)
    lengths = [len(tiny_tokenizer(request.args[0] + request.args[1]).input_ids) for request in batch]
    limit = sorted(lengths)[len(lengths) // 2]  # about half of the requests are longer
    answers = {}
    for stock in (True, False):
        lm = TarotHFLM(pretrained=model, tokenizer=tiny_tokenizer, backend="causal", batch_size=4, max_length=limit,
                       stock_scoring=stock)
        answers[stock] = scored(lm, batch)
    assert_same(answers[False], answers[True])
    assert 0 < lm.tarot_requests["stock"] < len(batch)
    info = lm.get_model_info()
    assert info["tarot_scorer"] == "prefix-tree" and 0 < info["tarot_prefix_tree_share"] < 1


def test_the_cache_hook_sees_every_answer(tiny_tokenizer):
    lm = TarotHFLM(pretrained=tiny_model("qwen2"), tokenizer=tiny_tokenizer, backend="causal", batch_size=2)
    seen = []
    lm.cache_hook.add_partial = lambda kind, key, value: seen.append((kind, key, value))
    batch = requests(seed=2)
    answers = scored(lm, batch)
    assert sorted(seen) == sorted(("loglikelihood", request.args, answer) for request, answer in zip(batch, answers))


def test_a_peft_adapter_is_scored_alike(tiny_tokenizer, tmp_path):
    """lm-eval's own `peft=` (the adapter loaded by HFLM over a model folder): both paths score the adapted model."""
    from peft import LoraConfig, get_peft_model

    tiny_model("llama").save_pretrained(tmp_path / "base")
    tiny_tokenizer.save_pretrained(tmp_path / "base")
    adapted = get_peft_model(tiny_model("llama"), LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    adapted.save_pretrained(tmp_path / "adapter")
    batch = requests(seed=5)
    answers = {}
    for stock, adapter in ((True, True), (False, True), (False, False)):
        extra = {"peft": str(tmp_path / "adapter")} if adapter else {}
        lm = TarotHFLM(pretrained=str(tmp_path / "base"), batch_size=3, device="cpu", stock_scoring=stock, **extra)
        answers[stock, adapter] = scored(lm, batch)
    assert_same(answers[False, True], answers[True, True])
    assert max(abs(a - b) for (a, _), (b, _) in zip(answers[False, True], answers[False, False])) > 1e-3  # it adapts


def test_stock_scoring_is_hflm_bit_for_bit(tiny_tokenizer):
    from lm_eval.models.huggingface import HFLM

    model, batch = tiny_model("qwen2"), requests(seed=6)
    hf = HFLM(pretrained=model, tokenizer=tiny_tokenizer, backend="causal", batch_size=3).loglikelihood(batch, disable_tqdm=True)
    stock = TarotHFLM(pretrained=model, tokenizer=tiny_tokenizer, backend="causal", batch_size=3, stock_scoring=True)
    assert scored(stock, batch) == hf


def test_batch_size_auto_is_detected_as_hflm_detects_it(tiny_tokenizer):
    model, batch = tiny_model("llama"), requests(seed=7)
    answers = {}
    for stock in (True, False):
        lm = TarotHFLM(pretrained=model, tokenizer=tiny_tokenizer, backend="causal", batch_size="auto", max_batch_size=8,
                       max_length=256, stock_scoring=stock)
        answers[stock] = scored(lm, batch)
        assert lm.tarot_requests["prefix-tree" if not stock else "stock"] == len(batch)
    assert_same(answers[False], answers[True])
