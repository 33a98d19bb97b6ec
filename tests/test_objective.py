"""The objective: built from a real lm-eval task object, scored on a tiny random model."""

from __future__ import annotations

import pytest
import torch
from support.tasks import hflm, load_task, tiny_model, tiny_tokenizer, write_task

from tarot_eval.edit import head_edit as edit
from tarot_eval.objective import function, scoring, task_documents


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_task")
    include = write_task(root)
    tokenizer = tiny_tokenizer()
    model = tiny_model(len(tokenizer))
    return {"root": root, "include": include, "task": load_task(include), "tokenizer": tokenizer, "model": model}


def independent_choice_logliks(model, tokenizer, task, doc) -> torch.Tensor:
    """Each choice's log-likelihood from a full forward of context + choice, one sequence at a time."""
    context = task.doc_to_text(doc)
    values = []
    for choice in task.doc_to_choice(doc):
        ctx_ids = tokenizer(context)["input_ids"]
        whole = tokenizer(context + task.config.target_delimiter + choice)["input_ids"]
        cont = whole[len(ctx_ids):]
        logits = model(torch.tensor([whole])).logits[0].log_softmax(-1)
        values.append(sum(logits[len(ctx_ids) - 1 + j, t].item() for j, t in enumerate(cont)))
    return torch.tensor(values)


@pytest.mark.parametrize("choices", [("no", "yes"), ("green apple", "red cherry", "sky")])
def test_objective_matches_independent_computation(tmp_path, choices):
    include = write_task(tmp_path, choices=choices)
    task = load_task(include)
    tokenizer = tiny_tokenizer()
    model = tiny_model(len(tokenizer))
    docs = task_documents.choose_docs(task, n_train=6, n_val=2, seed=0)
    examples = task_documents.build_examples(task, hflm(model, tokenizer), docs.train, task_documents.PromptOptions())
    single = [ex.single_row for ex in examples]
    assert all(single) if len(choices) == 2 else not any(single)
    scorer = scoring.ChoiceScorer(model, examples, batch_size=4, pad_token_id=tokenizer.pad_token_id)
    with torch.no_grad():
        scores = scorer.score()
        expected = [independent_choice_logliks(model, tokenizer, task, doc) for _, doc in docs.train]
    for got, want in zip(scores.choice_loglik, expected):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    golds = [ex.gold for ex in examples]
    assert golds == [doc["label"] for _, doc in docs.train]
    want_prob = torch.stack([w.softmax(0)[g] for w, g in zip(expected, golds)]).mean().item()
    assert scores.value(examples, "choice-prob") == pytest.approx(want_prob, abs=1e-5)
    want_acc = sum(int(w.argmax()) == g for w, g in zip(expected, golds)) / len(golds)
    assert scores.accuracy(examples) == want_acc


def test_answer_token_prob_is_first_token_probability_over_vocabulary(tiny):
    task, model, tokenizer = tiny["task"], tiny["model"], tiny["tokenizer"]
    docs = task_documents.choose_docs(task, n_train=4, n_val=0, seed=1)
    examples = task_documents.build_examples(task, hflm(model, tokenizer), docs.train, task_documents.PromptOptions())
    scorer = scoring.ChoiceScorer(model, examples, pad_token_id=tokenizer.pad_token_id)
    with torch.no_grad():
        value = scorer.score().value(examples, "answer-token-prob")
        want = []
        for ex in examples:
            context, cont = ex.pairs[ex.gold]
            probs = model(torch.tensor([context])).logits[0, -1].softmax(-1)
            want.append(probs[cont[0]].item())
    assert value == pytest.approx(sum(want) / len(want), abs=1e-6)


def test_training_docs_never_include_test_docs(tiny):
    task = tiny["task"]
    test_ids = {doc["id"] for doc in task.test_docs()}
    docs = task_documents.choose_docs(task, n_train=20, n_val=10, seed=3)
    assert docs.split == "train"
    train_ids = [doc["id"] for _, doc in docs.train]
    val_ids = [doc["id"] for _, doc in docs.validation]
    assert not (set(train_ids) | set(val_ids)) & test_ids
    assert not set(train_ids) & set(val_ids)
    assert all(i.startswith("train-") for i in train_ids + val_ids)


def test_falls_back_to_validation_split_and_says_so(tmp_path):
    include = write_task(tmp_path, name="no_train", splits=("validation", "test"))
    task = load_task(include, "no_train")
    docs = task_documents.choose_docs(task, n_train=4, n_val=4, seed=0)
    assert docs.split == "validation"
    assert docs.notes and "no training split" in docs.notes[0]
    assert all(doc["id"].startswith("validation-") for _, doc in docs.train + docs.validation)


def test_refuses_a_pool_too_small_and_a_test_only_task(tmp_path, tiny):
    with pytest.raises(task_documents.ObjectiveError, match="fewer than"):
        task_documents.choose_docs(tiny["task"], n_train=40, n_val=1, seed=0)
    include = write_task(tmp_path, name="test_only", splits=("test",))
    with pytest.raises(task_documents.ObjectiveError, match="never reads the test split"):
        task_documents.choose_docs(load_task(include, "test_only"), n_train=2, n_val=0, seed=0)


def test_balanced_training_set_is_half_right_half_wrong(tiny):
    task, model, tokenizer = tiny["task"], tiny["model"], tiny["tokenizer"]
    lm = hflm(model, tokenizer)
    _, ordered, _ = task_documents.shuffled_pool(task, seed=0)

    def is_correct(pair):
        examples = task_documents.build_examples(task, lm, [pair], task_documents.PromptOptions())
        with torch.no_grad():
            return scoring.ChoiceScorer(model, examples).score().correct(examples)[0]

    docs = task_documents.choose_docs(task, n_train=6, n_val=4, seed=0)
    balanced = task_documents.balance_by_base_model(docs, ordered, is_correct)
    verdicts = [is_correct(pair) for pair in balanced.train]
    assert sorted(verdicts) == [False] * 3 + [True] * 3
    train_ids = {i for i, _ in balanced.train}
    assert len(balanced.validation) == 4 and not train_ids & {i for i, _ in balanced.validation}


def test_chat_template_prompts_match_lm_eval(tiny):
    task, model, tokenizer = tiny["task"], tiny["model"], tiny["tokenizer"]
    lm = hflm(model, tokenizer)
    docs = task_documents.choose_docs(task, n_train=2, n_val=0, seed=0)
    options = task_documents.PromptOptions(apply_chat_template=True)
    examples = task_documents.build_examples(task, lm, docs.train, options)
    task.build_all_requests(limit=None, apply_chat_template=True, chat_template=lm.apply_chat_template)
    contexts = {inst.arguments[0] for inst in task.instances}
    context_text = tokenizer.decode(examples[0].pairs[0][0])
    assert "<|user|>" in context_text and "<|assistant|>" in context_text
    pairs, _ = task_documents.requests_for(task, docs.train[0][1], docs.train[0][0], options, lm.apply_chat_template)
    assert pairs[0][0].startswith("<|user|>Question:")
    assert contexts  # lm-eval built chat contexts in the same format
    assert next(iter(contexts)).startswith("<|user|>Question:")


def test_gradients_reach_the_edit(tiny):
    task, model, tokenizer = tiny["task"], tiny["model"], tiny["tokenizer"]
    docs = task_documents.choose_docs(task, n_train=4, n_val=0, seed=0)
    examples = task_documents.build_examples(task, hflm(model, tokenizer), docs.train, task_documents.PromptOptions())
    head_edit = edit.HeadEdit.identity(model, "rotation", [0, 1])
    with head_edit.attached(model) as handle:
        obj = function.Objective(scoring.ChoiceScorer(model, examples), handle)
        params = head_edit.params.clone().requires_grad_(True)
        loss, evaluation = obj.loss_and_evaluation(params)
        loss.backward()
        assert params.grad is not None and params.grad.abs().sum() > 0
        assert evaluation.value == pytest.approx(obj.evaluate(params).value, abs=1e-6)
