"""The rl trainers (GRPO over the angles, BO over greedy rewards), greedy generation and `tarot-eval rl`.

Tiny random Llama + the in-process tokenizer; rewards are VADER or a toy scorer (share of vowels),
both offline and cheap.
"""

from __future__ import annotations

import argparse
import json
import math

import pytest
import torch
from conftest import tiny_model
from support.locks import held_elsewhere
from support.trainers import NO_GUARD, PROMPTS, VALIDATION, VowelScorer
from tarot_eval.rl import command, generate, layer_choice, train_bo, train_dpo, train_grpo
from tarot_eval.rl.angles import trainable_angles
from tarot_eval.rl.generate import GreedyScore
from tarot_eval.rl.training import RESULT_NAME, RewardSetting, Selection, guarded_selection, save_result
from transformers import AutoModelForCausalLM

from tarot_eval.cli import UsageError
from tarot_eval.edit import checkpoint
from tarot_eval.edit.head_edit import HeadEdit
from tarot_eval.optimize.bo import BOSettings
from tarot_eval.optimize.record import SCORES_NAME, TRACE_NAME, RunConfigError
from tarot_eval.rewards.fluency import Fluency, FluencyGuard, shared_ngram_share
from tarot_eval.rewards.scorers import TextScore
from tarot_eval.run_lock import RunLockedError

BOUNDS = (-math.pi / 4, math.pi / 4)
FAST_BO = BOSettings(n_init=4, num_restarts=2, raw_samples=64)




class ConstantScorer(VowelScorer):
    """Rates every text the same: no edit can beat the base model."""

    name = "toy-constant"

    def score(self, texts):
        return [TextScore(self.name, 0.5, False, 0.5) for _ in texts]




def setting(scorer=None, max_new_tokens=8, validation=(), ship_unimproved=False, guard=NO_GUARD) -> RewardSetting:
    return RewardSetting(scorer or VowelScorer(), PROMPTS, {"set": "toy"}, max_new_tokens=max_new_tokens, batch_size=3,
                         validation_prompts=validation, ship_unimproved=ship_unimproved, guard=guard)


def test_reward_setting_refuses_validation_prompts_that_are_training_prompts():
    with pytest.raises(ValueError, match="both training and validation"):
        setting(validation=PROMPTS[:1])


def test_batched_greedy_generation_matches_one_at_a_time(tiny_tokenizer):
    model = tiny_model("llama")
    batched = generate.greedy_continuations(model, tiny_tokenizer, PROMPTS, max_new_tokens=6, batch_size=4)
    single = [generate.greedy_continuations(model, tiny_tokenizer, [p], max_new_tokens=6)[0] for p in PROMPTS]
    assert batched == single
    assert all(text for text in batched)


def test_greedy_generation_follows_the_attached_edit(tiny_tokenizer):
    model = tiny_model("llama")
    base = generate.greedy_continuations(model, tiny_tokenizer, PROMPTS, max_new_tokens=8)
    edit = HeadEdit("rotation", (0, 1, 2), torch.full((3, 4, 4), math.pi / 4))
    with edit.attached(model):
        edited = generate.greedy_continuations(model, tiny_tokenizer, PROMPTS, max_new_tokens=8)
    assert edited != base
    assert generate.greedy_continuations(model, tiny_tokenizer, PROMPTS, max_new_tokens=8) == base


def test_reward_texts_follow_the_task_convention():
    assert generate.texts_to_score("sentiment", ["A "], ["b"]) == ["A b"]
    assert generate.texts_to_score("toxicity", ["A "], ["b"]) == ["b"]
    with pytest.raises(ValueError, match="unknown reward kind"):
        generate.texts_to_score("humour", ["A"], ["b"])


def test_grpo_trains_only_the_angles_within_bounds(tmp_path, tiny_tokenizer):
    model = tiny_model("llama")
    base_weights = {name: p.detach().clone() for name, p in model.named_parameters()}
    bounds = (-0.05, 0.05)  # tight, so the clamp is exercised by lr 0.04 Adam steps
    settings = train_grpo.GRPOSettings(layers=(0, 1), bounds=bounds, steps=3, learning_rate=0.04,
                                       num_generations=4, prompts_per_step=2, select_every=2)
    result = train_grpo.train(model, tiny_tokenizer, setting(validation=VALIDATION, ship_unimproved=True), settings,
                              tmp_path / "grpo")

    assert dict(model.named_parameters()).keys() == base_weights.keys()
    for name, parameter in model.named_parameters():
        assert torch.equal(parameter, base_weights[name]), name
        assert parameter.requires_grad
    edit = checkpoint.load(tmp_path / "grpo", model)  # fingerprint of the untouched model
    assert edit.params.abs().max() > 0
    assert edit.params.min() >= bounds[0] - 1e-7 and edit.params.max() <= bounds[1] + 1e-7
    assert (edit.params.abs() == bounds[1]).any()  # some angle hit the bound and was clamped
    provenance = checkpoint.TarotConfig.from_pretrained(tmp_path / "grpo").provenance
    assert provenance["trainer"] == "grpo" and provenance["scorer"] == "toy-vowels"
    assert provenance["steps"] == 3 and len(provenance["grpo_log"]) == 3
    assert provenance["train_reward"]["after"]["reward"] == result.after["reward"]
    selection = provenance["selection"]
    assert selection["on"] == "validation" and list(selection["candidates"]) == ["2", "3"]  # every 2 steps and the last
    assert selection["chosen"] == max(selection["candidates"].values())
    assert provenance["improved"] == (selection["chosen"] > selection["base"]) and provenance["shipped"] == "chosen"
    with edit.attached(model):
        assert setting().measure(model, tiny_tokenizer).reward == pytest.approx(result.after["reward"])
        assert setting(validation=VALIDATION).measure(model, tiny_tokenizer, "validation").reward == pytest.approx(
            selection["chosen"])


def test_bo_improves_a_toy_reward_and_resumes(tmp_path, tiny_tokenizer):
    model = tiny_model("llama")
    settings = train_bo.BOTrainSettings(layers=(0, 1), bounds=BOUNDS, space="head", budget=6, bo=FAST_BO)
    result = train_bo.train(model, tiny_tokenizer, setting(), settings, tmp_path / "bo")
    assert result.improved and result.shipped == "chosen" and result.after["reward"] > result.before["reward"]
    trace = [json.loads(line) for line in (tmp_path / "bo" / TRACE_NAME).read_text().splitlines()]
    assert len(trace) == 6 and {e["phase"] for e in trace} == {"init", "bo"}
    assert result.after["reward"] == pytest.approx(max(e["train"] for e in trace))  # chosen on train: no validation
    saved = json.loads((tmp_path / "bo" / RESULT_NAME).read_text())
    assert saved["scorer"] == "toy-vowels" and saved["search_space"] == "head" and len(saved["examples"]) == 3
    assert saved["selection"]["on"] == "train"

    longer = train_bo.train(model, tiny_tokenizer, setting(), settings.__class__(**{**settings.__dict__, "budget": 8}),
                            tmp_path / "bo")
    resumed = [json.loads(line) for line in (tmp_path / "bo" / TRACE_NAME).read_text().splitlines()]
    assert len(resumed) == 8 and resumed[:6] == trace
    assert longer.after["reward"] >= result.after["reward"]
    with pytest.raises(RunConfigError, match="different config"):
        train_bo.train(model, tiny_tokenizer, setting(max_new_tokens=5), settings, tmp_path / "bo")


def test_bo_chooses_among_its_best_train_points_on_validation(tmp_path, tiny_tokenizer):
    model = tiny_model("llama")
    settings = train_bo.BOTrainSettings(layers=(0, 1), bounds=BOUNDS, budget=6, select_k=3, bo=FAST_BO)
    result = train_bo.train(model, tiny_tokenizer, setting(validation=VALIDATION), settings, tmp_path / "bo")
    trace = [json.loads(line) for line in (tmp_path / "bo" / TRACE_NAME).read_text().splitlines()]
    top3 = sorted(range(6), key=lambda i: -trace[i]["train"])[:3]
    selection = result.selection
    assert selection["on"] == "validation" and sorted(map(int, selection["candidates"])) == sorted(top3)
    assert selection["chosen"] == max(selection["candidates"].values())
    assert result.improved == (selection["chosen"] > selection["base"])
    edit = checkpoint.load(tmp_path / "bo", model)
    with edit.attached(model):
        assert setting(validation=VALIDATION).measure(model, tiny_tokenizer, "validation").reward == pytest.approx(
            selection["chosen"] if result.shipped == "chosen" else selection["base"])
    scores = (tmp_path / "bo" / SCORES_NAME).read_text()
    train_bo.train(model, tiny_tokenizer, setting(validation=VALIDATION), settings, tmp_path / "bo")
    assert (tmp_path / "bo" / SCORES_NAME).read_text() == scores  # validation rewards are recorded, not re-measured


def test_an_edit_that_does_not_beat_base_ships_the_identity(tmp_path, tiny_tokenizer):
    model = tiny_model("llama")
    settings = train_bo.BOTrainSettings(layers=(0, 1), bounds=BOUNDS, budget=2, bo=FAST_BO)
    constant = setting(ConstantScorer(), validation=VALIDATION)
    result = train_bo.train(model, tiny_tokenizer, constant, settings, tmp_path / "bo")
    assert not result.improved and result.shipped == "identity" and result.after == result.before
    assert torch.equal(checkpoint.load(tmp_path / "bo", model).params, HeadEdit.identity(model, "rotation", (0, 1)).params)
    provenance = checkpoint.TarotConfig.from_pretrained(tmp_path / "bo").provenance
    assert provenance["improved"] is False and provenance["shipped"] == "identity"

    kept = train_bo.train(model, tiny_tokenizer, setting(ConstantScorer(), validation=VALIDATION, ship_unimproved=True),
                          settings, tmp_path / "kept")
    assert kept.shipped == "chosen" and not kept.improved
    assert checkpoint.load(tmp_path / "kept", model).params.abs().max() > 0


def test_a_folder_another_process_writes_is_refused(tmp_path, tiny_tokenizer):
    model = tiny_model("llama")
    settings = train_bo.BOTrainSettings(layers=(0, 1), bounds=BOUNDS, budget=2, bo=FAST_BO)
    identity = HeadEdit.identity(model, "rotation", (0, 1))
    before = GreedyScore(0.5, 0.0, ["x"] * len(PROMPTS))
    with held_elsewhere(tmp_path / "bo") as holder:
        with pytest.raises(RunLockedError, match=rf"bo is being written by pid {holder.pid} on "):
            train_bo.train(model, tiny_tokenizer, setting(), settings, tmp_path / "bo")
        assert not (tmp_path / "bo" / TRACE_NAME).exists()  # refused before the first evaluation
        with pytest.raises(RunLockedError, match=rf"pid {holder.pid}"):  # GRPO's only write into --out
            save_result(model, tiny_tokenizer, Selection(identity, 0.5, 0.5), BOUNDS, tmp_path / "bo", "grpo",
                        setting(ConstantScorer()), before, 1.0, {})
        assert not (tmp_path / "bo" / RESULT_NAME).exists()
    result = train_bo.train(model, tiny_tokenizer, setting(), settings, tmp_path / "bo")  # the holder is gone
    assert len(result.selection["candidates"]) == 2


def test_cli_runs_bo_end_to_end_with_vader(tmp_path, saved_tiny_llama, data_dir, capsys):
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    out = tmp_path / "imdb"
    args = parser.parse_args(["--reward", "sentiment", "--prompts", "imdb", "--model", str(saved_tiny_llama),
                              "--trainer", "bo",
                              "--out", str(out), "--n-train", "3", "--n-val", "2", "--budget", "5", "--max-new-tokens", "6",
                              "--layers", "0", "--bo-restarts", "2", "--bo-raw-samples", "64"])
    assert command.run(args) == 0
    printed = capsys.readouterr().out
    assert "scorer vader" in printed and "train reward" in printed
    config = checkpoint.TarotConfig.from_pretrained(out)
    assert config.layers == [0]
    assert config.provenance["scorer"] == "vader" and config.provenance["prompts"]["set"] == "imdb"
    prompts = config.provenance["prompts"]
    assert prompts["n_test_excluded"] == 197 and len(prompts["ids"]) == 3 and len(prompts["validation_ids"]) == 2
    assert not set(prompts["ids"]) & set(prompts["validation_ids"])
    assert config.provenance["selection"]["on"] == "validation"


def test_cli_layers_auto_trains_each_block_and_ships_the_best_on_validation(tmp_path, saved_tiny_llama, data_dir,
                                                                          capsys):
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    out = tmp_path / "detox"
    args = parser.parse_args(["--reward", "toxicity", "--model", str(saved_tiny_llama), "--out", str(out),
                              "--n-train", "3", "--n-val", "2", "--budget", "1", "--max-new-tokens", "6",
                              "--samples-per-prompt", "3", "--layers", "auto", "--ship-unimproved"])
    assert command.run(args) == 0  # the default trainer: dpo
    config = checkpoint.TarotConfig.from_pretrained(out)
    choice = config.provenance["layer_choice"]
    num_layers = config.base_model["num_layers"]
    blocks = layer_choice.candidate_blocks(num_layers)
    assert list(choice["candidates"]) == [layer_choice.block_name(b) for b in blocks] and len(blocks) > 1
    assert choice["candidates"][choice["chosen"]] == max(choice["candidates"].values())
    winner = checkpoint.TarotConfig.from_pretrained(out / f"layers-{choice['chosen']}")
    assert config.layers == winner.layers and config.provenance["trainer"] == "dpo"
    model = AutoModelForCausalLM.from_pretrained(saved_tiny_llama)
    assert torch.equal(checkpoint.load(out, model).params, checkpoint.load(out / f"layers-{choice['chosen']}", model).params)
    assert config.provenance["prompts"]["n_test_excluded"] == 400  # every RTP test prompt of tarot_detox set aside
    assert json.loads((out / RESULT_NAME).read_text())["layer_choice"] == choice
    assert "rotations=" in capsys.readouterr().out


def test_layer_blocks_spread_over_the_depth():
    assert layer_choice.candidate_blocks(30) == [tuple(range(0, 5)), tuple(range(12, 17)), tuple(range(20, 25))]
    assert layer_choice.candidate_blocks(2) == [(0,), (1,)]
    assert layer_choice.middle_block(30) == tuple(range(12, 17)) and layer_choice.middle_block(3) == (1,)


def test_cli_without_layers_edits_the_middle_block(tmp_path, saved_tiny_llama, data_dir):
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    out = tmp_path / "imdb"
    args = parser.parse_args(["--reward", "sentiment", "--model", str(saved_tiny_llama), "--out", str(out),
                              "--n-train", "2", "--n-val", "2", "--budget", "1", "--max-new-tokens", "4",
                              "--samples-per-prompt", "2", "--ship-unimproved"])
    assert args.layers is None and command.run(args) == 0
    config = checkpoint.TarotConfig.from_pretrained(out)
    assert config.layers == [1] == list(layer_choice.middle_block(config.base_model["num_layers"]))  # of 3; not 0
    assert config.provenance["diversity"] == 0.5 == train_dpo.DPOSettings((1,), BOUNDS).diversity


def test_cli_refuses_a_reward_that_does_not_fit_the_prompts():
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    with pytest.raises(UsageError, match="--toxicity-checkpoint"):
        command.run(parser.parse_args(["--reward", "sentiment", "--prompts", "imdb", "--out", "x",
                                       "--toxicity-checkpoint", "a.ckpt"]))


def test_dpo_trains_only_the_angles_and_resumes_round_by_round(tmp_path, tiny_tokenizer):
    model = tiny_model("llama")
    base_weights = {name: p.detach().clone() for name, p in model.named_parameters()}
    bounds = (-0.3, 0.3)
    settings = train_dpo.DPOSettings(layers=(0, 1), bounds=bounds, rounds=2, samples_per_prompt=4, learning_rate=0.05,
                                     epochs=2, pairs_per_step=4)
    toy = setting(validation=VALIDATION, ship_unimproved=True)
    result = train_dpo.train(model, tiny_tokenizer, toy, settings, tmp_path / "dpo")

    assert "forward" not in vars(model)  # TRL's patched forward is undone
    for name, parameter in model.named_parameters():
        assert torch.equal(parameter, base_weights[name]), name
        assert parameter.requires_grad
    trace = [json.loads(line) for line in (tmp_path / "dpo" / TRACE_NAME).read_text().splitlines()]
    assert [e["index"] for e in trace] == [0, 1]
    for entry in trace:
        assert entry["pairs"] > 0 and entry["dpo_log"] and set(entry["fluency"]) == {"perplexity", "distinct_2",
                                                                                      "repetition", "words"}
    edit = checkpoint.load(tmp_path / "dpo", model)
    assert 0 < edit.params.abs().max() <= bounds[1] + 1e-7
    provenance = checkpoint.TarotConfig.from_pretrained(tmp_path / "dpo").provenance
    chosen = provenance["selection"]
    assert provenance["trainer"] == "dpo" and chosen["on"] == "validation"
    assert chosen["candidates"] == {str(e["index"]): e["selection"] for e in trace}
    assert chosen["chosen"] == max(chosen["candidates"].values())
    with edit.attached(model):  # the shipped round's validation reward is reproduced by a fresh measurement
        assert toy.measure(model, tiny_tokenizer, "validation").reward == pytest.approx(chosen["chosen"])
    assert result.trainer == "dpo"

    longer = train_dpo.DPOSettings(**{**settings.__dict__, "rounds": 3})
    train_dpo.train(model, tiny_tokenizer, toy, longer, tmp_path / "dpo")
    resumed = [json.loads(line) for line in (tmp_path / "dpo" / TRACE_NAME).read_text().splitlines()]
    assert len(resumed) == 3 and resumed[:2] == trace
    with pytest.raises(RunConfigError, match="different config"):
        train_dpo.train(model, tiny_tokenizer, toy, train_dpo.DPOSettings(**{**settings.__dict__, "beta": 0.5}),
                        tmp_path / "dpo")


def test_dpo_pairs_rank_each_prompts_samples_and_skip_ties():
    pairs = train_dpo.preference_pairs(["p", "q"], [["a", "b", "c", "d"], ["x", "y"]],
                                       [[0.1, 0.9, 0.5, 0.3], [0.2, 0.2]], pairs_per_prompt=2, min_gap=1e-6)
    assert [(p["prompt"], p["chosen"], p["rejected"]) for p in pairs] == [("p", "b", "a"), ("p", "c", "d")]
    assert pairs[0]["gap"] == pytest.approx(0.8)


def test_dpo_diversity_ranks_a_template_below_prompt_specific_text_and_zero_keeps_the_reward_order():
    template = "a testament to the power of community"
    samples = [[f"{template} here", "the acting in this film was wooden"],
               [f"{template} again", "my kids loved the soundtrack"]]
    rewards = [[0.9, 0.7], [0.8, 0.6]]
    shared = shared_ngram_share(samples, 2)
    assert shared[0][0] == pytest.approx(6 / 7) and shared[0][1] == 0.0 and shared[1][1] == 0.0
    assert train_dpo.ranking_values(samples, rewards, 0.0) is rewards
    pairs = train_dpo.preference_pairs(["p", "q"], samples, train_dpo.ranking_values(samples, rewards, 0.5), 1, 1e-6)
    assert [pair["chosen"] for pair in pairs] == [samples[0][1], samples[1][1]]  # 0.9 - 0.5 * 6/7 < 0.7
    pairs = train_dpo.preference_pairs(["p", "q"], samples, rewards, 1, 1e-6)
    assert [pair["chosen"] for pair in pairs] == [samples[0][0], samples[1][0]]
    # shared within one prompt's samples only, or repeated inside one text: neither counts as cross-prompt phrasing
    within = shared_ngram_share([["the plot was thin", "the plot was thin again"], ["so so so so good"]], 2)
    assert within == [[0.0, 0.0], [0.0]]
    repeated = shared_ngram_share([["so so so good", "fine"], ["so so"]], 2)
    assert repeated[0][0] == pytest.approx(1 / 2)  # distinct bigrams {so so, so good}: one shared, counted once


def test_cli_diversity_reaches_the_dpo_settings_and_a_negative_one_is_refused(tmp_path, tiny_tokenizer):
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    for flags, expected in (([], 0.5), (["--diversity", "0"], 0.0), (["--diversity", "0.2"], 0.2)):
        args = parser.parse_args(["--reward", "sentiment", "--out", "x", *flags])
        run = command.trainer_run(args, command.SearchSettings(), (0,), BOUNDS, 1)
        assert run.keywords["settings"].diversity == expected
    with pytest.raises(ValueError, match="diversity >= 0"):
        train_dpo.train(tiny_model("llama"), tiny_tokenizer, setting(),
                        train_dpo.DPOSettings((0,), BOUNDS, diversity=-0.1), tmp_path / "dpo")


def test_the_fluency_guard_refuses_disfluent_or_empty_candidates_and_may_ship_the_identity():
    base = Fluency(perplexity=4.0, distinct_2=0.7, repetition=0.1, words=12.0)
    guard = FluencyGuard()
    assert guard.rejects(Fluency(5.9, 0.7, 0.1, 12.0), base) is None
    assert "perplexity" in guard.rejects(Fluency(6.1, 0.7, 0.1, 12.0), base)
    assert "distinct-2" in guard.rejects(Fluency(4.0, 0.64, 0.1, 12.0), base)
    assert guard.rejects(Fluency(4.0, 0.685, 0.1, 12.0), base) is None
    assert "distinct-2" in guard.rejects(Fluency(4.0, 0.675, 0.1, 12.0), base)  # inside the target's 0.05, outside 0.02
    assert "empty" in guard.rejects(Fluency(math.nan, 0.0, 0.0, 0.0), base)
    guarded = setting(guard=guard)
    params = {0: torch.full((2, 4, 4), 0.1), 1: torch.full((2, 4, 4), 0.2)}
    chosen = guarded_selection(guarded, (0, 1), params, {0: 0.6, 1: 0.9}, {0: base, 1: Fluency(9.0, 0.7, 0.1, 12.0)},
                               0.5, base, "chosen_round")
    assert chosen.chosen_reward == 0.6 and torch.equal(chosen.candidate.params, params[0])
    assert set(chosen.details["rejected"]) == {"1"} and chosen.details["chosen_round"] == 0
    refused = guarded_selection(guarded, (0, 1), {1: params[1]}, {1: 0.9}, {1: Fluency(9.0, 0.7, 0.1, 12.0)},
                                0.5, base, "chosen_round")
    assert refused.details["chosen_round"] is None and refused.candidate.params.abs().max() == 0
    assert refused.chosen_reward == refused.base_reward  # so `decide` ships the identity


def test_dpo_steps_see_fresh_gradients_of_angles_outside_the_model(tiny_tokenizer):
    """lr 0 and one batch of every pair per epoch: each step's gradient is the same, unless one leaked into the next."""
    model = tiny_model("llama")
    pairs = [{"prompt": p, "chosen": " yes indeed", "rejected": " no"} for p in PROMPTS]
    settings = train_dpo.DPOSettings(layers=(0, 1), bounds=BOUNDS, learning_rate=0.0, epochs=3, pairs_per_step=len(pairs))
    with trainable_angles(model, settings.layers) as (angles, _):
        with torch.no_grad():
            angles.fill_(0.2)  # away from the reference, so the DPO gradient is not zero
        log = train_dpo._dpo_round(model, tiny_tokenizer, angles, pairs, settings, round_index=0)
        assert torch.all(angles == 0.2)
    assert not any(name.endswith("params") for name, _ in model.named_parameters())
    norms = [entry["grad_norm"] for entry in log]
    assert len(norms) == 3 and norms[0] > 0
    assert norms == pytest.approx([norms[0]] * 3, rel=1e-5)


def test_the_angle_optimizer_takes_the_trainers_weight_decay(tmp_path):
    """The Trainer sets weight decay per parameter group (0 here); built over the angles alone, the optimizer must too,
    not fall back to AdamW's own 0.01 that would shrink every angle at each step."""
    from tarot_eval.rl.angles import angle_optimizer, training_arguments
    from transformers import TrainingArguments

    args = TrainingArguments(**training_arguments(output_dir=str(tmp_path), learning_rate=0.05))
    angles = torch.nn.Parameter(torch.full((2, 4, 4), 0.5))
    optimizer = angle_optimizer(angles, args)
    assert [group["weight_decay"] for group in optimizer.param_groups] == [args.weight_decay] == [0.0]
    angles.grad = torch.zeros_like(angles)
    optimizer.step()
    assert torch.all(angles == 0.5)


def test_trainable_angles_refuse_initial_angles_of_another_shape_and_leave_the_model_as_it_was():
    model = tiny_model("llama")
    before = {name: p.requires_grad for name, p in model.named_parameters()}
    with pytest.raises(ValueError, match="initial angles of shape"):
        with trainable_angles(model, (0, 1), initial=torch.zeros(3, 4, 4)):
            pass
    assert {name: p.requires_grad for name, p in model.named_parameters()} == before
