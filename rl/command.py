"""`tarot-eval rl`: train rotation angles for a generation reward (positive sentiment, low toxicity).

    tarot-eval rl --reward sentiment --prompts imdb --out ckpt/imdb              # DPO, embedded model
    tarot-eval rl --reward toxicity --prompts rtp --layers auto --out ckpt/detox
    lm_eval --model tarot-hf --model_args rotations=ckpt/imdb --tasks tarot_imdb

Trains on the training prompts and chooses the result on validation prompts from the same pool;
the test prompts (the ones `tarot_imdb` / `tarot_detox` generate for, `--n-test` of them) are
set aside before either is drawn.
"""

from __future__ import annotations

import argparse
import functools
import sys

from tarot_eval.rl.layer_choice import AUTO
from tarot_eval.rl.settings import DPO_FLAGS, GRPO_FLAGS, DPOSettings, GRPOSettings
from tarot_eval.tasks.prompts import TEST_PROMPTS

from tarot_eval import settings as shared
from tarot_eval.cli import UsageError
from tarot_eval.objective.selection import not_improved_banner
from tarot_eval.optimize.settings import SearchSettings

PROMPT_SETS = ("imdb", "rtp")
DEFAULT_PROMPTS = {"sentiment": "imdb", "toxicity": "rtp"}
DEFAULT_N_TRAIN = 32  # the paper used 12 (imdb) and 10 (rtp), with no validation prompts
DEFAULT_N_VAL = 100  # 24 let chance pick edits that were worse on test; ~25 s per candidate (docs/rl.md)
DEFAULT_BUDGET = {"bo": 60, "grpo": shared.fields(GRPOSettings)["steps"].default,
                  "dpo": shared.fields(DPOSettings)["rounds"].default}
TRAINERS = ("dpo", "grpo", "bo")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reward", required=True, choices=("sentiment", "toxicity"),
                        help="sentiment: make continuations positive; toxicity: make them non-toxic")
    parser.add_argument("--prompts", choices=PROMPT_SETS, help="prompt set (default: imdb for sentiment, rtp for toxicity)")
    parser.add_argument("--out", required=True, help="output directory: checkpoint, result.json (and BO's run record)")
    parser.add_argument("--trainer", choices=TRAINERS, default="dpo",
                        help="dpo: rounds of reward-ranked pairs and TRL's DPOTrainer on the angles (default); "
                             "grpo: TRL's GRPOTrainer on the angles; bo: the paper's black-box search")
    parser.add_argument("--sentiment-scorer", help="vader (default) or a HF sequence-classification model id/dir")
    parser.add_argument("--toxicity-scorer", help="profanity-check (default), detoxify, or a HF model id/dir")
    parser.add_argument("--toxicity-checkpoint", help="local Detoxify .ckpt (implies --toxicity-scorer detoxify)")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="unpickle --toxicity-checkpoint as Detoxify does, which runs any code the file holds "
                             "(default: load tensors and plain values only, refusing anything else)")
    parser.add_argument("--toxicity-config-dir", help="Detoxify: local folder with the base model's HF config and tokenizer")
    parser.add_argument("--n-train", type=int, default=DEFAULT_N_TRAIN,
                        help=f"training prompts (default {DEFAULT_N_TRAIN}; the paper: 12 imdb, 10 rtp)")
    parser.add_argument("--n-val", type=int, default=DEFAULT_N_VAL,
                        help=f"validation prompts from the training pool that choose the result (default {DEFAULT_N_VAL}; "
                             "0: choose on the training prompts, as the paper)")
    parser.add_argument("--ship-unimproved", action="store_true",
                        help="save the chosen edit even when it does not beat the base model (default: the identity)")
    parser.add_argument("--n-test", type=int,
                        help="test prompts set aside (default: the lm-eval tasks' set, imdb "
                             f"{TEST_PROMPTS['imdb']}, rtp {TEST_PROMPTS['rtp']})")
    parser.add_argument("--prompt-seed", type=int, default=0, help="prompt split seed (the lm-eval tasks use 0)")
    parser.add_argument("--data-dir", help="folder with imdb/ and real_toxicity_prompts/ (default $TAROT_DATA_DIR, else the hub)")
    parser.add_argument("--max-new-tokens", type=int, default=24, help="generated tokens per prompt (default 24)")
    parser.add_argument("--batch-size", type=int, default=16, help="prompts per greedy generation batch")
    parser.add_argument("--budget", type=int,
                        help=f"dpo: rounds (default {DEFAULT_BUDGET['dpo']}); grpo: optimizer steps (default "
                             f"{DEFAULT_BUDGET['grpo']}); bo: reward evaluations (default {DEFAULT_BUDGET['bo']})")
    shared.add_arguments(parser, DPOSettings, DPO_FLAGS)
    shared.add_arguments(parser, GRPOSettings, [name for name in GRPO_FLAGS if name not in DPO_FLAGS])
    parser.add_argument("--layers", help="edited layers: '0-4', '0,2,5', 'all', or 'auto' (train a block at the start, "
                                         "the middle and two thirds in; ship the best on validation); default: the "
                                         "middle sixth of the layers (SmolLM2: 12-16 of 30)")
    shared.add_arguments(parser, shared.EditSettings, [name for name in shared.fields(shared.EditSettings) if name != "layers"])
    for group in (shared.ModelSettings, SearchSettings):  # the same flags as `optimize`
        shared.add_arguments(parser, group)


def scorer_request(args: argparse.Namespace) -> tuple[str | None, dict]:
    """(scorer name, get_scorer options) from the flags of the chosen reward; flags of the other kind are refused."""
    toxicity_flags = [flag for flag, value in (("--toxicity-scorer", args.toxicity_scorer),
                                               ("--toxicity-checkpoint", args.toxicity_checkpoint),
                                               ("--toxicity-config-dir", args.toxicity_config_dir),
                                               ("--trust-checkpoint", args.trust_checkpoint)) if value]
    if args.reward == "sentiment":
        if toxicity_flags:
            raise UsageError(f"{', '.join(toxicity_flags)} given with --reward sentiment; use --sentiment-scorer")
        return args.sentiment_scorer, {}
    if args.sentiment_scorer:
        raise UsageError("--sentiment-scorer given with --reward toxicity; use --toxicity-scorer")
    if args.trust_checkpoint and not args.toxicity_checkpoint:
        raise UsageError("--trust-checkpoint applies to --toxicity-checkpoint, which is not given")
    detoxify_options = {k: v for k, v in (("checkpoint", args.toxicity_checkpoint),
                                          ("config_dir", args.toxicity_config_dir),
                                          ("trust_checkpoint", args.trust_checkpoint)) if v}
    name = args.toxicity_scorer or ("detoxify" if detoxify_options else None)
    if detoxify_options and name != "detoxify":
        raise UsageError(f"--toxicity-checkpoint/--toxicity-config-dir/--trust-checkpoint are Detoxify's; "
                         f"--toxicity-scorer is {name!r}")
    return name, detoxify_options


def run(args: argparse.Namespace) -> int:
    from tarot_eval.rl import layer_choice
    from tarot_eval.rl.training import RewardSetting
    from tarot_eval.tasks import prompts as prompt_sets

    from tarot_eval.edit import architectures
    from tarot_eval.models.loading import load_model_and_tokenizer
    from tarot_eval.optimize.search_space import SearchSpace, parse_bounds
    from tarot_eval.rewards.scorers import get_scorer

    name, options = scorer_request(args)
    loading, edit, search = (group(**shared.given(args, group)) for group in
                             (shared.ModelSettings, shared.EditSettings, SearchSettings))
    prompt_set = args.prompts or DEFAULT_PROMPTS[args.reward]
    n_train, n_val = args.n_train, args.n_val
    if n_train < 1 or n_val < 0:
        raise UsageError(f"need --n-train >= 1 and --n-val >= 0, got {n_train} and {n_val}")
    budget = args.budget if args.budget is not None else DEFAULT_BUDGET[args.trainer]
    for flag, value in (("--max-new-tokens", args.max_new_tokens), ("--batch-size", args.batch_size)):
        if value is not None and value < 1:
            raise UsageError(f"{flag} {value}: must be at least 1")
    scorer = get_scorer(args.reward, name, **options)
    load_split = prompt_sets.imdb_prompts if prompt_set == "imdb" else prompt_sets.toxicity_prompts
    try:
        n_test = args.n_test if args.n_test is not None else prompt_sets.TEST_PROMPTS[prompt_set]
        split = load_split(n_train=n_train + n_val, n_test=n_test, seed=args.prompt_seed, data_dir=args.data_dir)
    except ValueError as error:  # more prompts asked for than the set holds
        raise UsageError(str(error)) from error
    train, validation = split.train[:n_train], split.train[n_train:]
    setting = RewardSetting(
        scorer=scorer,
        train_prompts=tuple(p.text for p in train),
        validation_prompts=tuple(p.text for p in validation),
        prompts={"set": prompt_set, "source": split.source, "seed": args.prompt_seed,
                 "n_test_excluded": n_test, "ids": [p.id for p in train],
                 "validation_ids": [p.id for p in validation]},
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        ship_unimproved=args.ship_unimproved,
    )
    model, tokenizer = load_model_and_tokenizer(loading.model, dtype=loading.dtype, device=loading.device)
    geo = architectures.geometry(model)
    try:
        auto = edit.layers == AUTO
        if auto:
            blocks = layer_choice.candidate_blocks(geo.num_layers)
        else:
            blocks = [edit.layer_indices(geo.num_layers) if edit.layers is not None
                      else layer_choice.middle_block(geo.num_layers)]
        bounds = parse_bounds(edit.angle_limit, "rotation")
        SearchSpace.parse(search.space, "rotation", (1,), bounds)  # only checks the spec
    except ValueError as error:
        raise UsageError(str(error)) from error
    where = " or ".join(layer_choice.block_name(block) for block in blocks)
    print(f"training rotations of layers {where} of {geo.num_layers} (±{bounds[1]:.4g} rad) with {args.trainer} "
          f"for reward {args.reward} (scorer {scorer.name}) on {n_train} {prompt_set} prompts "
          f"(choosing on {n_val or 'the training'} {'validation ' if n_val else ''}prompts), budget {budget}",
          file=sys.stderr)

    def train(layers, out):
        return trainer_run(args, search, layers, bounds, budget)(model, tokenizer, setting, out=out)

    if auto:
        result = layer_choice.train_blocks(train, blocks, args.out)
    else:
        result = train(blocks[0], args.out)
    print_summary(result, args.reward, loading.model)
    return 0


def trainer_run(args: argparse.Namespace, search: SearchSettings, layers, bounds, budget: int):
    """`train(model, tokenizer, setting, out)` of the chosen trainer, its settings taken from the flags."""
    from tarot_eval.rl import train_bo, train_dpo, train_grpo

    if args.trainer == "bo":
        settings = train_bo.BOTrainSettings(
            layers=layers, bounds=bounds, space=search.space, budget=budget, seed=search.seed, select_k=search.select_k,
            bo=search.bo_settings())
        return functools.partial(train_bo.train, settings=settings)
    if args.trainer == "grpo":
        settings = GRPOSettings(layers=layers, bounds=bounds, steps=budget, seed=search.seed,
                                **shared.given(args, GRPOSettings, GRPO_FLAGS))
        return functools.partial(train_grpo.train, settings=settings)
    settings = DPOSettings(layers=layers, bounds=bounds, rounds=budget, seed=search.seed,
                           **shared.given(args, DPOSettings, DPO_FLAGS))
    return functools.partial(train_dpo.train, settings=settings)


def print_summary(result, reward: str, model: str | None) -> None:
    task = "tarot_imdb" if reward == "sentiment" else "tarot_detox"
    flagged = "positive" if reward == "sentiment" else "toxic"
    lines = [
        f"trainer {result.trainer}, scorer {result.scorer}, {result.seconds:.1f} s",
        f"  train reward   base {result.before['reward']:.4f}  edited {result.after['reward']:.4f}",
        f"  {flagged + ' rate':14s} base {result.before['flagged_rate']:.3f}  edited {result.after['flagged_rate']:.3f}",
        f"  chosen on {result.selection['on']}: reward base {result.selection['base']:.4f}  "
        f"candidate {result.selection['chosen']:.4f}  -> shipped {result.shipped}",
    ]
    for example in result.examples:
        lines.append(f"  prompt {example['prompt']!r}\n    base:   {example['before']!r}\n    edited: {example['after']!r}")
    print("\n".join(lines))
    if not result.improved:
        print(not_improved_banner(f"{result.selection['on']} reward", result.shipped))
    model_args = (f"pretrained={model}," if model else "") + f"rotations={result.directory}"
    print(f"checkpoint: {result.directory}\nevaluate on the held-out prompts: "
          f"lm_eval --model tarot-hf --model_args {model_args} --tasks {task}")
