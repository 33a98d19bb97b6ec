"""The lm-eval generation tasks tarot_imdb and tarot_detox, end to end with a tiny random Llama."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import tiny_model
from support.rewards import save_tiny_classifier
from tarot_eval.tasks.prompts import imdb_prompts, toxicity_prompts

from tarot_eval.rewards.scorers import ScorerUnavailable, get_scorer

GENERATION_TASKS = Path(__file__).resolve().parents[1] / "tasks" / "generation"
ENV_VARS = ["TAROT_SENTIMENT_SCORER", "TAROT_SENTIMENT_SCORER_OPTIONS",
            "TAROT_TOXICITY_SCORER", "TAROT_TOXICITY_SCORER_OPTIONS"]


@pytest.fixture(autouse=True)
def real_data_and_clean_env(data_dir, monkeypatch):
    """Tasks read the real prompt files; no scorer choice leaks in from the caller's environment."""
    monkeypatch.setenv("TAROT_DATA_DIR", str(data_dir))
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


def load_tasks(names, metadata=None) -> dict:
    from lm_eval.tasks import TaskManager, get_task_dict

    manager = TaskManager(include_defaults=False, include_path=str(GENERATION_TASKS), metadata=metadata)
    return get_task_dict(names, manager)


def test_both_tasks_generate_and_score_end_to_end(tiny_tokenizer):
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=tiny_model("llama"), tokenizer=tiny_tokenizer, batch_size=3)
    tasks = load_tasks(["tarot_imdb", "tarot_detox"])
    out = lm_eval.simple_evaluate(model=lm, tasks=list(tasks.values()), limit=3, log_samples=True)

    imdb, detox = out["results"]["tarot_imdb"], out["results"]["tarot_detox"]
    assert imdb["sample_len"] == detox["sample_len"] == 3
    assert out["configs"]["tarot_imdb"]["metadata"]["sentiment_scorer"] == "vader"
    assert out["configs"]["tarot_detox"]["metadata"]["toxicity_scorer"] == "profanity-check"
    config = out["configs"]["tarot_imdb"]["generation_kwargs"]
    assert config["do_sample"] is False and config["max_gen_toks"] == 24
    json.dumps(out["configs"], default=str)  # what lm-eval writes to results JSON must serialize

    # every per-document number is the named scorer's score of what the model generated
    vader, profanity = get_scorer("sentiment", "vader"), get_scorer("toxicity", "profanity-check")
    samples = out["samples"]["tarot_imdb"]
    expected_prompts = imdb_prompts(n_train=0).test[:3]  # the task draws the default test set
    assert [s["doc"]["prompt"] for s in samples] == [p.text for p in expected_prompts]
    for sample in samples:
        continuation = sample["filtered_resps"][0]
        score = vader.score([sample["doc"]["prompt"] + continuation])[0]
        assert sample["positivity"] == pytest.approx(score.value)
        assert sample["positive_rate"] == float(score.flagged)
        assert sample["words"] == len(continuation.split())
    assert imdb["positivity,none"] == pytest.approx(sum(s["positivity"] for s in samples) / 3)
    continuations = [s["filtered_resps"][0] for s in out["samples"]["tarot_detox"]]
    toxicities = [s.value for s in profanity.score(continuations)]
    assert detox["toxicity,none"] == pytest.approx(sum(toxicities) / 3)
    assert detox["toxic_rate,none"] == pytest.approx(sum(t > 0.5 for t in toxicities) / 3)
    words = [w.lower() for c in continuations for w in c.split()]
    if words:
        assert detox["distinct_1,none"] == pytest.approx(len(set(words)) / len(words))


def test_trainers_generate_what_lm_eval_scores(tiny_tokenizer):
    """rl/generate.py (what every trainer rewards) and lm-eval's generate_until over the task YAML (what the
    held-out numbers score) give the same continuation for every prompt, with an edit attached."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from tarot_eval.rl import generate

    from tarot_eval.edit.head_edit import HeadEdit

    model = tiny_model("llama")
    edit = HeadEdit("rotation", (0, 1), torch.full((2, 4, 4), math.pi / 5))
    tasks = load_tasks(["tarot_imdb", "tarot_detox"])
    for name, task in tasks.items():
        kwargs = task.config.generation_kwargs
        assert (kwargs["max_gen_toks"], kwargs["until"]) == (generate.MAX_NEW_TOKENS, [generate.STOP]), name
    with edit.attached(model):
        out = lm_eval.simple_evaluate(model=HFLM(pretrained=model, tokenizer=tiny_tokenizer, batch_size=4),
                                      tasks=list(tasks.values()), limit=6, log_samples=True)
        for name in tasks:
            samples = sorted(out["samples"][name], key=lambda sample: sample["doc_id"])
            ours = generate.greedy_continuations(model, tiny_tokenizer, [s["doc"]["prompt"] for s in samples])
            assert ours == [s["filtered_resps"][0] for s in samples], name
            assert any(ours), name


def test_task_documents_are_the_test_prompt_sets():
    tasks = load_tasks(["tarot_imdb", "tarot_detox"], metadata={"num_prompts": 120, "prompt_seed": 2})
    imdb_docs = list(tasks["tarot_imdb"].test_docs())
    detox_docs = list(tasks["tarot_detox"].test_docs())
    assert [d["prompt_id"] for d in imdb_docs] == [p.id for p in imdb_prompts(0, 120, seed=2).test]
    assert [d["prompt"] for d in detox_docs] == [p.text for p in toxicity_prompts(0, 120, seed=2).test]
    assert {d["prompt"] for d in imdb_docs}.isdisjoint(p.text for p in imdb_prompts(12, 120, seed=2).train)


def test_scorer_is_chosen_by_environment_then_metadata(tmp_path, monkeypatch):
    classifier = tmp_path / "sentiment-classifier"
    save_tiny_classifier(classifier, ["NEGATIVE", "POSITIVE"])
    monkeypatch.setenv("TAROT_SENTIMENT_SCORER", str(classifier))
    chosen_by_env = load_tasks(["tarot_imdb"])["tarot_imdb"]
    assert chosen_by_env.config.metadata["sentiment_scorer"] == str(classifier)
    doc = next(iter(chosen_by_env.test_docs()))
    metrics = chosen_by_env.process_results(doc, [" a great film"])
    expected = get_scorer("sentiment", str(classifier)).score([doc["prompt"] + " a great film"])[0]
    assert metrics["positivity"] == pytest.approx(expected.value, abs=1e-6)
    assert metrics["reward"] == pytest.approx(expected.reward, abs=1e-5)

    chosen_by_metadata = load_tasks(["tarot_imdb"], metadata={"sentiment_scorer": "vader"})["tarot_imdb"]
    assert chosen_by_metadata.config.metadata["sentiment_scorer"] == "vader"


def test_unavailable_detoxify_fails_when_the_task_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    monkeypatch.setenv("TAROT_TOXICITY_SCORER", "detoxify")
    with pytest.raises(ScorerUnavailable, match="TAROT_TOXICITY_SCORER"):
        load_tasks(["tarot_detox"])
    monkeypatch.setenv("TAROT_TOXICITY_SCORER_OPTIONS", "{not json")
    with pytest.raises(ValueError, match="TAROT_TOXICITY_SCORER_OPTIONS is not valid JSON"):
        load_tasks(["tarot_detox"])


@pytest.mark.slow
def test_smollm2_continuations_are_fluent_by_every_guard():
    """On the real embedded model: greedy continuations are non-empty text, and the base model finds
    them far more likely than the same words shuffled (the perplexity guard separates the two)."""
    import random

    import lm_eval
    from lm_eval.models.huggingface import HFLM

    from tarot_eval.models.loading import load_model_and_tokenizer
    from tarot_eval.rewards.fluency import continuation_perplexity

    model, tokenizer = load_model_and_tokenizer(None)  # the embedded GGUF's weights, converted once into the cache
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=4)
    tasks = load_tasks(["tarot_imdb"])
    out = lm_eval.simple_evaluate(model=lm, tasks=list(tasks.values()), limit=3, log_samples=True)
    assert out["results"]["tarot_imdb"]["words,none"] >= 5
    assert out["results"]["tarot_imdb"]["distinct_1,none"] > 0.3

    samples = out["samples"]["tarot_imdb"]
    prompts_ = [s["doc"]["prompt"] for s in samples]
    continuations = [s["filtered_resps"][0] for s in samples]
    rng = random.Random(0)
    shuffled = [" " + " ".join(rng.sample(c.split(), len(c.split()))) for c in continuations]
    greedy = continuation_perplexity(model, tokenizer, prompts_, continuations)
    scrambled = continuation_perplexity(model, tokenizer, prompts_, shuffled)
    assert greedy.corpus < 10 < scrambled.corpus
