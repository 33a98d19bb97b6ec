"""`tarot-eval lora`: the direct fine-tuning baseline, a PEFT LoRA adapter trained on the same documents as an edit.

The same training and validation documents as `tarot-eval optimize --seed` (`choose_docs`), the
same objective (the mean negative log of the per-document objective term: cross-entropy over
the choices for `choice-prob`), the same budget accounting and selection as `--optimizer grad`:
one step = one forward and backward pass over the training documents; `select_k` steps spread
along the trajectory are compared on validation, the best ships only if it beats the base model
there (else the untrained adapter, B = 0: the base model's behaviour). The adapter is peft's own
(`LoraConfig`, `get_peft_model`, `save_pretrained`), so lm-eval scores it with its own model_arg:

    tarot-eval lora --task tarot_agnews --out lora/agnews
    lm_eval --model hf --model_args pretrained=...,peft=lora/agnews --tasks tarot_agnews

A run is done when `result.json` is there; an interrupted one trains again from step 0 (its
steps are seconds to minutes; nothing else is in the folder until the adapter is saved).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from tarot_eval import run_lock
from tarot_eval import settings as settings_fields
from tarot_eval.edit import architectures, checkpoint
from tarot_eval.json_files import read_json
from tarot_eval.objective import scoring, selection
from tarot_eval.objective import task_documents as objectives
from tarot_eval.optimize.record import TRAIN_ACCURACY, TRAIN_VALUE
from tarot_eval.settings import DocumentSettings, ModelSettings, PromptSettings, setting

log = logging.getLogger(__name__)
RESULT_NAME = "result.json"
ADAPTER_CONFIG = "adapter_config.json"  # what peft's save_pretrained writes


class LoraError(ValueError):
    """A LoRA run that cannot start (settings, or an output folder holding another run)."""


@dataclass(frozen=True)
class LoraSettings(ModelSettings, DocumentSettings, PromptSettings):
    """Every setting of `tarot-eval lora`, with its default."""

    out: str | None = setting(None, "output folder: the adapter (peft save_pretrained) + result.json")
    rank: int = setting(8, "LoRA rank r")
    alpha: float = setting(16.0, "LoRA alpha (scale alpha / r)")
    target_modules: str | None = setting(None, "comma-separated module names (default: peft's for the model family)")
    lr: float = setting(0.002, "Adam learning rate of the adapter")
    budget: int = setting(8, "training steps (each one forward + backward over the training documents, as grad's)")
    select_k: int = setting(5, "steps spread along the trajectory compared on validation")
    objective: str = setting("choice-prob", "training objective; see docs/optimize.md", choices=scoring.OBJECTIVES)
    seed: int = setting(0, "seed of the documents drawn and of the adapter's initialisation")

    def __post_init__(self):
        for name in ("budget", "rank", "n_val", "n_train", "select_k"):
            if getattr(self, name) < 1:
                raise settings_fields.SettingsError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be at least 1")
        for name in ("lr", "alpha"):
            if not math.isfinite(getattr(self, name)) or getattr(self, name) <= 0:
                raise settings_fields.SettingsError(f"--{name} {getattr(self, name)}: must be a finite number above 0")

    def record(self) -> dict:
        """What determines the adapter (the model is recorded beside it)."""
        return {k: v for k, v in asdict(self).items()
                if k not in ("model", "dtype", "device", "out", "include_path", "batch_size")}

    def prompt(self) -> objectives.PromptOptions:
        return objectives.PromptOptions(None, self.apply_chat_template, self.fewshot_as_multiturn, self.system_instruction)


def lora_config(options: LoraSettings):
    from peft import LoraConfig

    targets = [name.strip() for name in options.target_modules.split(",")] if options.target_modules else None
    return LoraConfig(r=options.rank, lora_alpha=options.alpha, lora_dropout=0.0, target_modules=targets,
                      task_type="CAUSAL_LM")


def _trainable_state(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def _load_state(model, state: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in state:
                p.copy_(state[name])


def _value(scorer, examples, objective: str) -> dict:
    with torch.no_grad():
        scores = scorer.score()
    return {"value": scores.value(examples, objective), "accuracy": scores.accuracy(examples)}


def train(model, lm, task, options: LoraSettings, out: str | Path) -> dict:
    """Train, select and save the adapter of `model` into `out`; returns the result record.
    `model` is wrapped for the run and unwrapped after (its own weights are never changed)."""
    from peft import get_peft_model

    docs = objectives.choose_docs(task, options.n_train, options.n_val, options.seed)
    train_examples = objectives.build_examples(task, lm, docs.train, options.prompt())
    val_examples = objectives.build_examples(task, lm, docs.validation, options.prompt())
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    torch.manual_seed(options.seed)
    trainable, was_training = {name: p.requires_grad for name, p in model.named_parameters()}, model.training
    wrapped = get_peft_model(model, lora_config(options))  # injects the LoRA layers into `model`'s own modules
    try:
        train_scorer = scoring.ChoiceScorer(model, train_examples, options.batch_size, pad)
        val_scorer = scoring.ChoiceScorer(model, val_examples, options.batch_size, pad)
        initial = _trainable_state(wrapped)  # B = 0: the adapter is the identity
        base = {"train": _value(train_scorer, train_examples, options.objective),
                "validation": _value(val_scorer, val_examples, options.objective)}
        optimizer = torch.optim.Adam([p for p in wrapped.parameters() if p.requires_grad], lr=options.lr)
        trace, states, started = [], [], time.perf_counter()
        for _ in range(options.budget):
            start = time.perf_counter()
            states.append(_trainable_state(wrapped))  # the point this step evaluates
            optimizer.zero_grad()
            scores = train_scorer.score()
            logterm = scores.per_example_logterm(train_examples, options.objective)
            loss = -logterm.mean()
            loss.backward()
            optimizer.step()
            trace.append({"phase": "lora", TRAIN_VALUE: logterm.detach().exp().mean().item(),
                          TRAIN_ACCURACY: scores.accuracy(train_examples), "loss": loss.item(),
                          "wall_s": round(time.perf_counter() - start, 4)})
        train_scores = [entry[TRAIN_VALUE] for entry in trace]
        pool = selection.candidates(train_scores, options.select_k, along_trajectory=True)
        val = {}
        for i in pool:
            _load_state(wrapped, states[i])
            val[i] = _value(val_scorer, val_examples, options.objective)
        chosen = selection.choose(pool, {i: val[i]["value"] for i in pool}, train_scores)
        improved, shipped = selection.decide(val[chosen]["value"], base["validation"]["value"], False)
        _load_state(wrapped, states[chosen] if shipped == "chosen" else initial)
        wrapped.save_pretrained(str(out))
    finally:
        wrapped.unload()  # the LoRA layers out again: `model` is the base model as it came
        for name, p in model.named_parameters():
            p.requires_grad_(trainable[name])
        model.train(was_training)
    result = {"settings": options.record(), "train_docs": [i for i, _ in docs.train],
              "validation_docs": [i for i, _ in docs.validation], "base_model": checkpoint.model_identity(model),
              "weights": checkpoint.weight_fingerprint(model, range(architectures.geometry(model).num_layers)),
              "chosen_step": chosen, "candidates": pool, "improved": improved, "shipped": shipped,
              "scores": {"base": base, "chosen": {"train": {"value": trace[chosen][TRAIN_VALUE],
                                                            "accuracy": trace[chosen][TRAIN_ACCURACY]},
                                                  "validation": val[chosen]}},
              "trace": trace, "train_seconds": round(time.perf_counter() - started, 2)}
    (Path(out) / RESULT_NAME).write_text(json.dumps(result, indent=2) + "\n")
    return result


def done(out: str | Path, options: LoraSettings, model) -> bool:
    """Whether `out` holds this run's adapter, trained on `model`; one from other settings or another model is
    refused, never overwritten (one written before the model was recorded is taken, with a warning)."""
    path = Path(out) / RESULT_NAME
    if not path.is_file():
        return False
    result = read_json(path, LoraError, "; move the folder away to train again")
    if result.get("settings") != json.loads(json.dumps(options.record())):
        raise LoraError(f"{path}: trained with other settings; delete that folder to train again, or use another --out")
    mine = checkpoint.model_identity(model)
    if not isinstance(result.get("base_model"), dict) or not isinstance(result.get("weights"), dict):
        log.warning("%s records no weight fingerprint of its model (written before it was): not checked", path)
        return True
    why = (f"its shapes are those of {result['base_model'].get('name')}"
           if result["base_model"].get("fingerprint") != mine["fingerprint"] else None)
    if why is None:
        stored = result["weights"].get("layers", {})
        actual = checkpoint.weight_fingerprint(model, [int(layer) for layer in stored])
        why = checkpoint.weight_difference(stored, actual["layers"])
    if why:
        raise LoraError(f"{path}: an adapter trained on another model ({why}); delete that folder to train again, "
                        "or use another --out")
    return True


def train_once(model, lm, task, options: LoraSettings, out: str | Path) -> dict | None:
    """`train` unless `out` already holds this run on this model (None then); holds `out`'s lock throughout."""
    with run_lock.hold(out):
        return None if done(out, options, model) else train(model, lm, task, options, out)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    settings_fields.add_arguments(parser, LoraSettings)


def run(args: argparse.Namespace) -> int:
    from tarot_eval.cli import UsageError
    from tarot_eval.objective.task_loading import task_model_and_lm

    try:
        options = LoraSettings(**settings_fields.given(args, LoraSettings))
    except settings_fields.SettingsError as error:
        raise UsageError(str(error)) from error
    missing = [flag for flag, value in (("--task", options.task), ("--out", options.out)) if not value]
    if missing:
        raise UsageError(f"missing {' and '.join(missing)}")
    task, model, lm = task_model_and_lm(options)
    result = train_once(model, lm, task, options, options.out)
    if result is None:
        print(f"already there: {options.out}")
        return 0
    for who in ("base", "chosen"):
        for split, score in result["scores"][who].items():
            print(f"  {who:6s} {split:10s} objective {score['value']:.4f}  acc {score['accuracy']:.3f}")
    if not result["improved"]:
        print(selection.not_improved_banner("validation documents", result["shipped"], flag=None,
                                            kept_as="the untrained adapter (B = 0)"))
    print(f"adapter: {options.out} (lm_eval --model hf --model_args pretrained=...,peft={options.out})")
    return 0
