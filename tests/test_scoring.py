"""The prefix-tree scorer computes exactly what one full sequence per choice computes, at the token floor."""

from __future__ import annotations

import random

import pytest
import torch
from conftest import TINY_CONFIGS, VOCAB, tiny_model
from support.tasks import hflm, load_task, tiny_tokenizer, write_task
from support.tasks import tiny_model as tiny_llama_for

from tarot_eval.edit import head_edit
from tarot_eval.objective import task_documents
from tarot_eval.objective.scoring import ChoiceScorer, Example, SequenceScorer, token_floor


def synthetic_examples(seed: int, shared: int, n_docs: int = 5, multi_token: bool = True, lead: list[int] | None = None):
    """Documents whose contexts share `shared` leading tokens, with choices of 1-3 tokens.

    `lead`: tokens every choice starts with (the chat template's "\\n").
    """
    rnd = random.Random(seed)
    prefix = [rnd.randrange(3, VOCAB) for _ in range(shared)]
    examples = []
    for d in range(n_docs):
        context = prefix + [rnd.randrange(3, VOCAB) for _ in range(rnd.randint(1, 9))]
        choices = []
        for _ in range(rnd.randint(2, 5)):
            length = rnd.randint(1, 3) if multi_token else 1
            choices.append((lead or []) + [rnd.randrange(3, VOCAB) for _ in range(length)])
        if multi_token and len(choices) > 2:
            choices[1] = choices[0][:-1] + [rnd.randrange(3, VOCAB)] if len(choices[0]) > 1 else choices[1]
        examples.append(Example(d, [(list(context), c) for c in choices], rnd.randrange(len(choices))))
    return examples


def assert_same_scores(got, want, atol=1e-5):
    for a, b in zip(got.choice_loglik, want.choice_loglik):
        torch.testing.assert_close(a, b, atol=atol, rtol=0)
    for a, b in zip(got.first_token_logprob, want.first_token_logprob):
        torch.testing.assert_close(a, b, atol=atol, rtol=0)


@pytest.mark.parametrize("family", sorted(TINY_CONFIGS))
@pytest.mark.parametrize("shared, multi_token, lead", [(6, True, None), (0, True, None), (4, False, None), (5, True, [7])])
def test_prefix_tree_equals_per_sequence_scoring(family, shared, multi_token, lead):
    model = tiny_model(family)
    examples = synthetic_examples(seed=len(family) + shared, shared=shared, multi_token=multi_token, lead=lead)
    handle = head_edit.HeadEdit.identity(model, "rotation", [0, 1]).attach(model)
    handle.params = (torch.rand_like(handle.params) - 0.5) * 1.5  # a real edit, as the optimizer scores it
    try:
        with torch.no_grad():
            want = SequenceScorer(model, examples, batch_size=3).score()
            for batch_size in (2, 16):
                assert_same_scores(ChoiceScorer(model, examples, batch_size=batch_size).score(), want)
    finally:
        handle.remove()


def test_documents_with_no_common_prefix_and_single_document():
    model = tiny_model("llama")
    examples = synthetic_examples(seed=3, shared=0)
    examples[0].pairs = [([5] + ctx[1:], cont) for ctx, cont in examples[0].pairs]
    examples[1].pairs = [([6] + ctx[1:], cont) for ctx, cont in examples[1].pairs]
    with torch.no_grad():
        scorer = ChoiceScorer(model, examples)
        assert scorer.prefix == []
        assert_same_scores(scorer.score(), SequenceScorer(model, examples).score())
        one = examples[:1]
        assert_same_scores(ChoiceScorer(model, one).score(), SequenceScorer(model, one).score())


def test_gradients_through_the_shared_prefix_cache_match():
    model = tiny_model("qwen2")
    examples = synthetic_examples(seed=1, shared=6)
    grads = []
    for scorer_class in (SequenceScorer, ChoiceScorer):
        params = torch.full((2, 4, 4), 0.3, requires_grad=True)
        handle = head_edit.HeadEdit("rotation", (0, 1), params.detach().clone()).attach(model)
        handle.params = params
        loss = -scorer_class(model, examples, batch_size=2).score().per_example_logterm(examples, "choice-prob").mean()
        loss.backward()
        handle.remove()
        grads.append(params.grad)
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[1], grads[0], atol=1e-5, rtol=1e-4)


def test_tokens_computed_are_the_floor_when_choices_share_a_lead_token():
    """Chat-template shape: every choice is "\\n" + a label token; the floor is context + one "\\n" per document."""
    examples = synthetic_examples(seed=2, shared=8, multi_token=False, lead=[7])
    scorer = ChoiceScorer(tiny_model("llama"), examples)
    floor = token_floor(examples)
    assert floor == 8 + sum(len(ex.pairs[0][0]) - 8 + 1 for ex in examples)
    assert scorer.tokens_computed == floor
    old = SequenceScorer(tiny_model("llama"), examples)
    assert old.tokens_computed == sum(len(ex.pairs) * (len(ex.pairs[0][0]) + 1) for ex in examples)


@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("chat", [False, True])
@pytest.mark.parametrize("choices", [("no", "yes"), ("green apple", "red cherry", "sky")])
def test_matches_lm_eval_loglikelihood_on_its_own_requests(tmp_path, padding_side, chat, choices):
    """The real path: lm-eval's requests (chat template on/off), scored by lm-eval's HFLM and by the scorer."""
    include = write_task(tmp_path, choices=choices)
    task = load_task(include)
    tokenizer = tiny_tokenizer()
    tokenizer.padding_side = padding_side
    model = tiny_llama_for(len(tokenizer))
    lm = hflm(model, tokenizer)
    docs = task_documents.choose_docs(task, n_train=6, n_val=0, seed=0)
    options = task_documents.PromptOptions(apply_chat_template=chat)
    examples = task_documents.build_examples(task, lm, docs.train, options)
    scorer = ChoiceScorer(model, examples, batch_size=4, pad_token_id=tokenizer.pad_token_id)
    if chat:
        assert len(scorer.prefix) > 0  # the chat template's shared opening is computed once
    with torch.no_grad():
        scores = scorer.score()
    from lm_eval.api.instance import Instance

    for (doc_index, doc), loglik in zip(docs.train, scores.choice_loglik):
        pairs, _ = task_documents.requests_for(task, doc, doc_index, options, lm.apply_chat_template)
        requests = [Instance("loglikelihood", doc, pair, i) for i, pair in enumerate(pairs)]
        want = torch.tensor([value for value, _ in lm.loglikelihood(requests, disable_tqdm=True)])
        torch.testing.assert_close(loglik, want, atol=1e-4, rtol=0)


@pytest.mark.parametrize("mode", ["fixed", "mix"])
def test_fixed_demonstrations_form_one_shared_prefix(tmp_path, mode):
    include = write_task(tmp_path)
    task = load_task(include)
    tokenizer = tiny_tokenizer()
    model = tiny_llama_for(len(tokenizer))
    lm = hflm(model, tokenizer)
    split, ordered, _ = task_documents.shuffled_pool(task, seed=0)
    docs = task_documents.with_demonstrations(task_documents.choose_docs(task, n_train=8, n_val=4, seed=0), ordered, 6)
    used = {i for i, _ in docs.train + docs.validation}
    assert len(docs.demonstrations) == 6 and not used & {i for i, _ in docs.demonstrations}
    options = task_documents.PromptOptions(num_fewshot=6, demonstrations=mode)
    examples = task_documents.build_examples(task, lm, docs.train, options, docs.demonstrations)
    shown = [task.doc_to_text(d) for _, d in docs.demonstrations]
    for (doc_index, doc), example in zip(docs.train, examples):
        context = tokenizer.decode(example.pairs[0][0])
        k = options.shots(task, doc_index)
        assert k == (6 if mode == "fixed" else k) and k in task_documents.MIX_SHOTS
        assert all(q in context for q in shown[:k]) and not any(q in context for q in shown[k:])
        assert task.doc_to_text(doc) in context
    scorer = ChoiceScorer(model, examples, batch_size=3, pad_token_id=tokenizer.pad_token_id)
    if mode == "fixed":
        demo_tokens = len(tokenizer("".join(shown))["input_ids"])
        assert len(scorer.prefix) >= demo_tokens * 0.9  # the six demonstrations are computed once
    with torch.no_grad():
        assert_same_scores(scorer.score(), SequenceScorer(model, examples, pad_token_id=tokenizer.pad_token_id).score())


def test_fixed_mode_needs_its_demonstrations(tmp_path):
    task = load_task(write_task(tmp_path))
    tokenizer = tiny_tokenizer()
    docs = task_documents.choose_docs(task, n_train=2, n_val=0, seed=0)
    with pytest.raises(task_documents.ObjectiveError, match="needs 6 fixed demonstrations, 0 were drawn"):
        task_documents.build_examples(task, hflm(tiny_llama_for(len(tokenizer)), tokenizer), docs.train,
                                 task_documents.PromptOptions(num_fewshot=6, demonstrations="fixed"))


def test_bf16_autocast_scores_close_to_fp32_and_keeps_weights_fp32():
    model = tiny_model("llama")
    examples = synthetic_examples(seed=4, shared=6)
    with torch.no_grad():
        fp32 = ChoiceScorer(model, examples).score()
        bf16 = ChoiceScorer(model, examples, dtype=torch.bfloat16).score()
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(fp32.choice_loglik, bf16.choice_loglik))  # it did run in bf16
    assert_same_scores(bf16, fp32, atol=0.15)


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma2", "qwen2"])
@pytest.mark.parametrize("shared", [0, 4])
def test_openings_shared_by_some_documents_are_computed_once(family, shared):
    """Documents in two groups by their opening (as BIG-bench color's "HEX representation: #..."):
    each group's opening is computed once, scores stay the per-sequence ones, tokens are the tree floor."""
    model = tiny_model(family)
    examples = synthetic_examples(seed=11 + shared, shared=shared, n_docs=7, lead=[7])
    openings = ([9, 10, 11], [12, 13])
    for d, example in enumerate(examples):
        opening = openings[d % 2]
        example.pairs = [(ctx[:shared] + opening + ctx[shared:], cont) for ctx, cont in example.pairs]
    handle = head_edit.HeadEdit.identity(model, "rotation", [0, 1]).attach(model)
    handle.params = (torch.rand_like(handle.params) - 0.5) * 1.5
    try:
        with torch.no_grad():
            want = SequenceScorer(model, examples, batch_size=3).score()
            for batch_size in (2, 16):
                scorer = ChoiceScorer(model, examples, batch_size=batch_size)
                assert_same_scores(scorer.score(), want)
        whole = ChoiceScorer(model, examples, batch_size=16)
        for opening in openings:  # one node of the tree holds each opening, after the shared prefix
            holders = [n for n in whole.nodes if n.start == shared and n.tokens[: len(opening)] == list(opening)]
            assert len(holders) == 1
        assert whole.tokens_computed == token_floor(examples)
    finally:
        handle.remove()
