"""Reward scorers, fluency guards and prompt sets of tarot_eval.rl, on real text and tiny offline models."""

from __future__ import annotations

import csv
import json
import math
import urllib.error
from pathlib import Path

import pytest
import torch
from conftest import tiny_model
from support.rewards import WritesMarker, save_tiny_classifier
from tarot_eval.tasks import prompts

from tarot_eval.rewards import fluency
from tarot_eval.rewards.scorers import ScorerUnavailable, get_scorer

POSITIVE = "This movie was wonderful, the acting is superb and I loved every minute of it."
NEGATIVE = "This movie was terrible, boring and badly acted. I hated every minute of it."
OFFENSIVE = "Shut up, you stupid fucking idiot, you are a piece of shit."
NEUTRAL = "The train to the city leaves at nine in the morning from platform two."
TOXIC_CLASSES = ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]




# --- offline scorers on real text ---------------------------------------------------------

def test_vader_rates_a_positive_review_above_a_negative_one():
    scorer = get_scorer("sentiment")
    positive, negative = scorer.score([POSITIVE, NEGATIVE])
    assert scorer.name == "vader" and positive.scorer == negative.scorer == "vader"
    assert positive.value > 0.75 and negative.value < 0.25
    assert positive.flagged and not negative.flagged
    assert positive.reward > 0 > negative.reward
    assert positive.value == pytest.approx((positive.reward + 1) / 2)


def test_profanity_check_flags_the_offensive_sentence():
    scorer = get_scorer("toxicity")
    offensive, neutral = scorer.score([OFFENSIVE, NEUTRAL])
    assert scorer.name == "profanity-check" and offensive.scorer == "profanity-check"
    assert offensive.value > 0.5 > neutral.value
    assert offensive.flagged and not neutral.flagged
    assert offensive.reward == pytest.approx(1 - offensive.value)
    assert scorer.score([]) == []


def test_unknown_kind_and_unloadable_name_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown scorer kind 'humour'"):
        get_scorer("humour")
    with pytest.raises(ScorerUnavailable, match=r"built-in sentiment scorer \(vader\)"):
        get_scorer("sentiment", str(tmp_path / "no-such-model"))


# --- HuggingFace sequence classifier ------------------------------------------------------

def test_classifier_scorer_reports_the_positive_logit_and_probability(tmp_path):
    model, tokenizer = save_tiny_classifier(tmp_path, ["NEGATIVE", "POSITIVE"])
    scorer = get_scorer("sentiment", str(tmp_path), batch_size=2)
    texts = ["i loved this movie !", "awful film , i hated it", "good", "bad bad bad"]
    scores = scorer.score(texts)
    with torch.no_grad():
        logits = model(**tokenizer(texts, return_tensors="pt", padding=True)).logits
    assert scorer.name == str(tmp_path) and scorer.label == "POSITIVE"
    assert [s.scorer for s in scores] == [str(tmp_path)] * 4
    assert [s.reward for s in scores] == pytest.approx(logits[:, 1].tolist(), abs=1e-5)
    assert [s.value for s in scores] == pytest.approx(logits.softmax(-1)[:, 1].tolist(), abs=1e-5)
    assert [s.flagged for s in scores] == (logits.argmax(-1) == 1).tolist()


def test_classifier_scorer_as_toxicity_uses_the_toxic_label(tmp_path):
    model, tokenizer = save_tiny_classifier(tmp_path, ["nothate", "hate"], seed=1)
    scorer = get_scorer("toxicity", str(tmp_path))
    (score,) = scorer.score(["you are awful"])
    with torch.no_grad():
        probability = model(**tokenizer(["you are awful"], return_tensors="pt")).logits.softmax(-1)[0, 1]
    assert scorer.label == "hate"
    assert score.value == pytest.approx(float(probability), abs=1e-5)
    assert score.reward == pytest.approx(1 - score.value)


def test_classifier_without_the_wanted_label_names_its_labels(tmp_path):
    save_tiny_classifier(tmp_path, ["LABEL_0", "LABEL_1"])
    with pytest.raises(ScorerUnavailable, match=r"no label positive / pos among its labels \['LABEL_0', 'LABEL_1'\]"):
        get_scorer("sentiment", str(tmp_path))
    assert get_scorer("sentiment", str(tmp_path), label="label_1").label == "LABEL_1"


# --- Detoxify -----------------------------------------------------------------------------

def save_tiny_detoxify_checkpoint(tmp_path: Path):
    """A Detoxify checkpoint in its own format (config + state_dict) around a tiny BERT whose
    HF config and tokenizer live in a local folder, so Detoxify loads it without the hub."""
    base = tmp_path / "tiny-bert"
    model, tokenizer = save_tiny_classifier(base, TOXIC_CLASSES, seed=2)
    checkpoint = tmp_path / "tiny-detoxify.ckpt"
    torch.save({
        "config": {
            "arch": {"args": {"model_type": str(base), "model_name": "BertForSequenceClassification",
                              "tokenizer_name": "BertTokenizer", "num_classes": len(TOXIC_CLASSES)}},
            "dataset": {"args": {"classes": TOXIC_CLASSES}},
        },
        "state_dict": model.state_dict(),
    }, checkpoint)
    return checkpoint, base, model, tokenizer


@pytest.mark.parametrize("with_config_dir", [False, True])
def test_detoxify_scores_a_local_checkpoint(tmp_path, with_config_dir):
    checkpoint, base, model, tokenizer = save_tiny_detoxify_checkpoint(tmp_path)
    options = {"checkpoint": str(checkpoint), **({"config_dir": str(base)} if with_config_dir else {})}
    scorer = get_scorer("toxicity", "detoxify", **options)
    texts = ["you are awful", "this film was good", "i hated it !"]
    scores = scorer.score(texts)
    with torch.no_grad():
        expected = model(**tokenizer(texts, return_tensors="pt", padding=True)).logits.sigmoid()[:, 0]
    assert scorer.name == "detoxify:tiny-detoxify.ckpt"
    assert {s.scorer for s in scores} == {"detoxify:tiny-detoxify.ckpt"}
    assert [s.value for s in scores] == pytest.approx(expected.tolist(), abs=1e-5)
    assert [s.flagged for s in scores] == (expected > 0.5).tolist()
    assert scorer.score(texts[:1])[0].value == pytest.approx(scores[0].value, abs=1e-6)


def test_detoxify_offline_without_weights_names_the_choices(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    with pytest.raises(ScorerUnavailable) as error:
        get_scorer("toxicity", "detoxify")
    message = str(error.value)
    assert "Detoxify weights could not be downloaded" in message
    assert "toxic_original-c1212f89.ckpt" in message
    assert "--toxicity-checkpoint" in message and "profanity-check" in message


def test_detoxify_failed_download_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))

    def no_network(url, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    with pytest.raises(ScorerUnavailable, match="Detoxify weights could not be loaded .*profanity-check"):
        get_scorer("toxicity", "detoxify", model_type="unbiased")


def test_detoxify_bad_inputs_are_named(tmp_path):
    with pytest.raises(ScorerUnavailable, match="is not a file"):
        get_scorer("toxicity", "detoxify", checkpoint=str(tmp_path / "missing.ckpt"))
    with pytest.raises(ScorerUnavailable, match="unknown Detoxify model_type 'huge'"):
        get_scorer("toxicity", "detoxify", model_type="huge")
    not_detoxify = tmp_path / "other.ckpt"
    torch.save({"weights": torch.zeros(2)}, not_detoxify)
    with pytest.raises(ScorerUnavailable, match="is not a Detoxify checkpoint"):
        get_scorer("toxicity", "detoxify", checkpoint=str(not_detoxify))




def test_detoxify_reads_the_checkpoint_weights_only(tmp_path, monkeypatch):
    checkpoint, *_ = save_tiny_detoxify_checkpoint(tmp_path)
    calls = []
    real_load = torch.load

    def spy(path, *args, **kwargs):
        calls.append((str(path), kwargs.get("weights_only")))
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    scorer = get_scorer("toxicity", "detoxify", checkpoint=str(checkpoint))
    assert 0 <= scorer.score(["you are awful"])[0].value <= 1
    assert calls[0] == (str(checkpoint), True)
    assert all(path != str(checkpoint) for path, _ in calls[1:])  # Detoxify only sees the weights-only copy


def test_detoxify_refuses_a_checkpoint_that_would_run_code(tmp_path):
    checkpoint, _, model, _ = save_tiny_detoxify_checkpoint(tmp_path)
    marker = tmp_path / "payload-ran"
    crafted = torch.load(checkpoint, weights_only=True)
    crafted["hook"] = WritesMarker(marker)
    torch.save(crafted, checkpoint)
    with pytest.raises(ScorerUnavailable) as error:
        get_scorer("toxicity", "detoxify", checkpoint=str(checkpoint))
    assert str(error.value) == (
        f"refusing Detoxify checkpoint {checkpoint}: it needs the pickle globals posix.system, and unpickling it "
        "could run code from the file; pass --trust-checkpoint (scorer option trust_checkpoint) only for a file you trust"
    )
    assert not marker.exists()
    trusted = get_scorer("toxicity", "detoxify", checkpoint=str(checkpoint), trust_checkpoint=True)
    assert marker.exists()  # the payload is real: Detoxify's own loading runs it
    assert 0 <= trusted.score(["you are awful"])[0].value <= 1


def test_classifier_refuses_pickled_weights_that_would_run_code(tmp_path):
    model, _ = save_tiny_classifier(tmp_path, ["NEGATIVE", "POSITIVE"])
    (tmp_path / "model.safetensors").unlink()
    marker = tmp_path / "payload-ran"
    torch.save({**model.state_dict(), "hook": WritesMarker(marker)}, tmp_path / "pytorch_model.bin")
    with pytest.raises(ScorerUnavailable, match=rf"^refusing {tmp_path / 'pytorch_model.bin'}: the weights need "
                                                r"the pickle globals posix.system, .* save the model as safetensors"):
        get_scorer("sentiment", str(tmp_path))
    assert not marker.exists()
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")  # plain tensors still load from .bin
    assert get_scorer("sentiment", str(tmp_path)).label == "POSITIVE"


# --- fluency guards -----------------------------------------------------------------------

def test_distinct_n_and_repetition_count_words():
    assert fluency.distinct_n(["a b a b"], 1) == pytest.approx(2 / 4)
    assert fluency.distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)
    assert fluency.distinct_n(["The cat", "the dog"], 1) == pytest.approx(3 / 4)
    assert fluency.distinct_n(["", "one"], 2) == 0.0
    assert fluency.repetition_rate("great great great movie") == pytest.approx(1 - 2 / 4)
    assert fluency.repetition_rate("a fine film") == 0.0
    with pytest.raises(ValueError, match="n-gram size"):
        fluency.distinct_n(["a"], 0)


def test_continuation_perplexity_matches_the_model_log_probabilities(tiny_tokenizer):
    model = tiny_model("llama")
    prompts_, continuations = ["The quick brown", "Answer:"], [" fox jumps", " True"]
    result = fluency.continuation_perplexity(model, tiny_tokenizer, prompts_, continuations)
    total_nll, total_tokens = 0.0, 0
    for prompt, continuation, perplexity in zip(prompts_, continuations, result.per_text):
        prompt_ids = tiny_tokenizer(prompt).input_ids
        continuation_ids = tiny_tokenizer(continuation, add_special_tokens=False).input_ids
        ids = torch.tensor([prompt_ids + continuation_ids])
        with torch.no_grad():
            log_probs = model(ids).logits[0].log_softmax(-1)
        nll = -sum(float(log_probs[len(prompt_ids) + i - 1, token]) for i, token in enumerate(continuation_ids))
        assert perplexity == pytest.approx(math.exp(nll / len(continuation_ids)), rel=1e-4)
        total_nll, total_tokens = total_nll + nll, total_tokens + len(continuation_ids)
    assert result.corpus == pytest.approx(math.exp(total_nll / total_tokens), rel=1e-4)
    empty = fluency.continuation_perplexity(model, tiny_tokenizer, ["Answer:"], [""])
    assert math.isnan(empty.per_text[0]) and math.isnan(empty.corpus)
    with pytest.raises(ValueError, match="2 prompts but 1 continuations"):
        fluency.continuation_perplexity(model, tiny_tokenizer, prompts_, continuations[:1])


# --- prompt sets --------------------------------------------------------------------------

def write_imdb(directory: Path, n_train: int, n_test: int) -> None:
    path = directory / "imdb" / "texts.csv"
    path.parent.mkdir(parents=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["label", "text", "is_valid"])
        for i in range(n_train + n_test):
            text = f"Review{i} opens<br /><br />here and then " + "goes on and on " * 20
            writer.writerow(["positive", text, i >= n_train])
        writer.writerow(["negative", "Too short<br />to use.", False])


def test_imdb_openings_are_clean_seeded_and_disjoint(tmp_path):
    write_imdb(tmp_path, n_train=30, n_test=20)
    split = prompts.imdb_prompts(n_train=10, n_test=15, seed=3, data_dir=tmp_path)
    assert split.source == str(tmp_path / "imdb" / "texts.csv")
    assert len(split.train) == 10 and len(split.test) == 15
    assert {p.text for p in split.train}.isdisjoint(p.text for p in split.test)
    for prompt in split.train + split.test:
        assert "<br" not in prompt.text and 2 <= len(prompt.text.split()) <= 7
    review_numbers = {int(p.text.split()[0].removeprefix("Review")) for p in split.test}
    assert review_numbers <= set(range(30, 50))  # test openings come from held-out reviews
    assert prompts.imdb_prompts(n_train=10, n_test=15, seed=3, data_dir=tmp_path) == split
    assert prompts.imdb_prompts(n_train=4, n_test=15, seed=3, data_dir=tmp_path).test == split.test
    assert prompts.imdb_prompts(n_train=10, n_test=15, seed=4, data_dir=tmp_path).test != split.test
    with pytest.raises(ValueError, match="only 20 distinct prompts available, 21 asked for"):
        prompts.imdb_prompts(n_train=0, n_test=21, data_dir=tmp_path)


def test_real_imdb_and_toxicity_prompt_sets(data_dir):
    imdb = prompts.imdb_prompts(data_dir=data_dir)  # by default every distinct opening of the 200 held-out reviews
    assert len(imdb.test) == prompts.TEST_PROMPTS["imdb"] == 197 and len(imdb.train) == 12
    assert {p.text for p in imdb.train}.isdisjoint(p.text for p in imdb.test)
    assert len({p.text for p in imdb.test}) == 197
    with pytest.raises(ValueError, match="only 197 distinct prompts"):
        prompts.imdb_prompts(n_test=198, data_dir=data_dir)
    assert len(prompts.toxicity_prompts(n_train=0, data_dir=data_dir).test) == prompts.TEST_PROMPTS["rtp"] == 400
    with (data_dir / "imdb" / "texts.csv").open(newline="") as handle:
        held_out = [prompts.clean_review(r["text"]) for r in csv.DictReader(handle) if r["is_valid"] == "True"]
    assert all(any(review.startswith(p.text) for review in held_out) for p in imdb.test)

    rtp = prompts.toxicity_prompts(n_train=10, n_test=150, seed=1, data_dir=data_dir)
    assert len(rtp.test) == 150 and len(rtp.train) == 10
    assert {p.text for p in rtp.train}.isdisjoint(p.text for p in rtp.test)
    with (data_dir / "real_toxicity_prompts" / "toxic.jsonl").open() as handle:
        challenging = {json.loads(line)["prompt"]["text"] for line in handle}
    assert {p.text for p in rtp.train + rtp.test} <= challenging
    assert prompts.toxicity_prompts(n_train=0, n_test=150, seed=1, data_dir=data_dir).test == rtp.test


def test_missing_prompt_sources_name_where_they_looked(tmp_path, monkeypatch):
    import datasets
    import huggingface_hub

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "empty-datasets-cache")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    monkeypatch.delenv("TAROT_DATA_DIR", raising=False)
    with pytest.raises(prompts.PromptsUnavailable, match=r"\$TAROT_DATA_DIR is not set.*stanfordnlp/imdb"):
        prompts.imdb_prompts()
    missing = rf"{tmp_path}/real_toxicity_prompts/toxic.jsonl does not exist.*allenai/real-toxicity-prompts"
    with pytest.raises(prompts.PromptsUnavailable, match=missing):
        prompts.toxicity_prompts(data_dir=tmp_path)
