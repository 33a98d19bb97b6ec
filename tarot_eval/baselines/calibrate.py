"""`tarot-eval calibrate`: fit a model's prior over a task's answers (`tarot_eval.objective.calibration`),
never reading test labels.

- contextual (Zhao et al. 2021): the task's own prompt with content-free inputs: every text field
  of a training-pool document replaced by each of "N/A", "[MASK]" and "", choice probabilities averaged;
- batch: the mean choice probabilities over the seed's training documents, the same `choose_docs`
  draw as `tarot-eval optimize --seed` makes, so a leaderboard seed's calibration and edit read
  the same documents.

    tarot-eval calibrate --task tarot_agnews --out cal/agnews [--variant batch --seed 0]
    lm_eval --model tarot-hf --model_args calibration=cal/agnews --tasks tarot_agnews
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from tarot_eval import run_lock
from tarot_eval import settings as settings_fields
from tarot_eval.edit import architectures, checkpoint
from tarot_eval.objective import calibration as calibrations
from tarot_eval.objective import scoring
from tarot_eval.objective import task_documents as objectives
from tarot_eval.objective.calibration import Calibration, CalibrationError
from tarot_eval.settings import DocumentSettings, ModelSettings, PromptSettings, setting

CONTENT_FREE = ("N/A", "[MASK]", "")


@dataclass(frozen=True)
class CalibrateSettings(ModelSettings, DocumentSettings, PromptSettings):
    """Every setting of `tarot-eval calibrate`, with its default."""

    out: str | None = setting(None, "output folder for calibration.json")
    variant: str = setting("contextual", "contextual (content-free inputs) or batch (mean over training documents)",
                           choices=calibrations.VARIANTS)
    seed: int = setting(0, "batch: seed of the documents drawn")
    num_fewshot: int | None = setting(None, "demonstrations per prompt (default: the task's own)")

    def prompt(self) -> objectives.PromptOptions:
        return objectives.PromptOptions(self.num_fewshot, self.apply_chat_template, self.fewshot_as_multiturn,
                                        self.system_instruction)

    def record(self) -> dict:
        """The settings that determine the fitted prior (the batch draw only matters for `batch`)."""
        kept = {"task": self.task, "variant": self.variant, "prompt": asdict(self.prompt())}
        if self.variant == "batch":
            kept.update(n_train=self.n_train, n_val=self.n_val, seed=self.seed)
        return kept


def shared_answers(task, docs: list[dict]) -> list[str]:
    """The choices every document offers; refuses a task whose choices differ per document."""
    first = task.doc_to_choice(docs[0])
    for doc in docs[1:]:
        if task.doc_to_choice(doc) != first:
            raise CalibrationError(
                f"task {task.config.task!r}: the choices differ per document ({first!r} vs {task.doc_to_choice(doc)!r}); "
                "a prior over answer strings cannot calibrate it"
            )
    return first


def content_free(task, doc: dict, filler: str) -> dict:
    """`doc` with every text field replaced by `filler`; refused where that changes the choices."""
    blank = {key: filler if isinstance(value, str) else value for key, value in doc.items()}
    if task.doc_to_choice(blank) != task.doc_to_choice(doc):
        raise CalibrationError(f"task {task.config.task!r}: its choices come from the document's text; use --variant batch")
    return blank


def fit(model, lm, task, options: CalibrateSettings) -> Calibration:
    """The calibration of `model` (with `lm`, its HFLM) on `task` under `options`."""
    split, pool, _ = objectives.shuffled_pool(task, options.seed)
    shared_answers(task, [doc for _, doc in pool])
    prompt = options.prompt()
    if options.variant == "contextual":
        index, doc = pool[0]
        docs = [(index, content_free(task, doc, filler)) for filler in CONTENT_FREE]
        used = {"content_free_inputs": list(CONTENT_FREE), "template_doc": index}
    else:
        docs = objectives.choose_docs(task, options.n_train, options.n_val, options.seed).train
        used = {"train_docs": [i for i, _ in docs]}
    pairs, _ = objectives.requests_for(task, docs[0][1], docs[0][0], prompt, lm.apply_chat_template)
    continuations = [continuation for _, continuation in pairs]
    examples = objectives.build_examples(task, lm, docs, prompt)
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    with torch.no_grad():
        scores = scoring.ChoiceScorer(model, examples, options.batch_size, pad).score()
    mean = torch.stack([torch.softmax(loglik.double(), dim=0) for loglik in scores.choice_loglik]).mean(dim=0)
    probabilities = dict(zip(continuations, mean.tolist()))
    geometry = architectures.geometry(model)
    provenance = {**options.record(), "task_split": split, **used, "choice_probabilities": probabilities,
                  "base_model": checkpoint.model_identity(model),
                  calibrations.WEIGHTS_KEY: checkpoint.weight_fingerprint(model, range(geometry.num_layers))}
    return Calibration(task.config.task, options.variant, calibrations.log_prior_from(probabilities), provenance)


def fit_once(model, lm, task, options: CalibrateSettings, out: str | Path) -> tuple[Calibration, bool]:
    """(calibration in `out`, whether it was fitted now): a file there from the same settings is kept;
    one from other settings is refused, never overwritten."""
    with run_lock.hold(out):
        path = calibrations.path_of(out)
        if path.is_file():
            found = calibrations.load(out)
            recorded = {key: found.provenance.get(key) for key in options.record()}
            if recorded != json.loads(json.dumps(options.record())):
                raise CalibrationError(f"{path}: fitted with other settings ({recorded}); delete it or use another --out")
            return found, False
        calibration = fit(model, lm, task, options)
        calibrations.save(out, calibration)
        return calibrations.load(out), True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    settings_fields.add_arguments(parser, CalibrateSettings)


def run(args: argparse.Namespace) -> int:
    from tarot_eval.cli import UsageError
    from tarot_eval.objective.task_loading import task_model_and_lm

    options = CalibrateSettings(**settings_fields.given(args, CalibrateSettings))
    missing = [flag for flag, value in (("--task", options.task), ("--out", options.out)) if not value]
    if missing:
        raise UsageError(f"missing {' and '.join(missing)}")
    task, model, lm = task_model_and_lm(options)
    calibration, fitted = fit_once(model, lm, task, options, options.out)
    print(f"{'fitted' if fitted else 'already there'}: {calibration.source} ({calibration.variant})")
    for answer, p in calibration.provenance["choice_probabilities"].items():
        print(f"  {answer!r}: prior {p:.4f}")
    return 0
