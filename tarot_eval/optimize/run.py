"""One optimization run: task -> objective -> search -> selection on validation -> checkpoint + record.

Selection never reads the test split. The search ranks points by the training objective; the
final point is the candidate with the best objective on validation documents held out from the
same training pool (bo/random: the `select_k` best by training score; grad: `select_k` steps
spread along the trajectory, i.e. early stopping on validation). When no candidate beats the
base model on validation, the checkpoint holds the identity edit (the base model's behaviour) with
`improved: false` in its provenance, reported loudly by the command; `ship_unimproved` saves the
chosen edit instead. A run holds `out`'s `run_lock` from start to finish (a second writer fails at
once) and refuses a budget below the evaluations already recorded there: a run is never cut back,
so the provenance's `budget` is never below its `evaluations`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from tarot_eval import run_lock
from tarot_eval.edit import architectures, checkpoint
from tarot_eval.edit.head_edit import HeadEdit
from tarot_eval.objective import calibration as calibrations
from tarot_eval.objective import function, scoring, selection
from tarot_eval.objective import task_documents as objectives
from tarot_eval.optimize import bo as bayesian
from tarot_eval.optimize import grad as gradient
from tarot_eval.optimize import random_search
from tarot_eval.optimize.plot import plot_traces
from tarot_eval.optimize.record import TRAIN_ACCURACY, TRAIN_VALUE, RunConfigError, RunRecord
from tarot_eval.optimize.search_space import SearchSpace
from tarot_eval.optimize.settings import Settings

RESULT_NAME = "result.json"
PLOT_NAME = "trace.png"
logger = logging.getLogger(__name__)


@dataclass
class Result:
    directory: Path
    chosen_index: int
    improved: bool
    shipped: str  # "chosen" or "identity" (no candidate beat the base model)
    selected_on: str
    scores: dict  # base/chosen x train/validation -> {"value", "accuracy"}
    surrogate: dict | None
    notes: list[str]


class Problem:
    """The training and validation objectives of one task on one model, with an edit attached."""

    def __init__(self, model, lm, task, settings: Settings, batch_size: int = 16):
        geo = architectures.geometry(model)
        bad = [layer for layer in settings.layers if not 0 <= layer < geo.num_layers]
        if bad:
            raise ValueError(f"layers {bad} outside the model's 0..{geo.num_layers - 1}")
        self.model = model
        self.settings = settings
        self.edit = HeadEdit.identity(model, settings.method, settings.layers)
        self.space = SearchSpace.parse(
            settings.space, settings.method, self.edit.params.shape, settings.bounds, seed=settings.seed
        )
        self.pad_id = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
        self.batch_size = batch_size
        docs = objectives.choose_docs(task, settings.n_train, settings.n_val, settings.seed)
        if settings.balance:
            _, ordered, _ = objectives.shuffled_pool(task, settings.seed)
            docs = objectives.balance_by_base_model(docs, ordered, lambda pair: self._base_correct(task, lm, pair))
        if settings.prompt.demonstrations != "sampled":
            _, ordered, _ = objectives.shuffled_pool(task, settings.seed)
            wanted = max(objectives.MIX_SHOTS) if settings.prompt.demonstrations == "mix" else settings.prompt.shots(task, -1)
            docs = objectives.with_demonstrations(docs, ordered, wanted)
        self.docs = docs
        if settings.calibration:  # on the unedited weights: a calibration fitted on another model is refused
            calibrations.check_weights(calibrations.load(settings.calibration), model)
        self.train = objectives.build_examples(task, lm, docs.train, settings.prompt, docs.demonstrations)
        self.validation = (
            objectives.build_examples(task, lm, docs.validation, settings.prompt, docs.demonstrations) if docs.validation else []
        )

    def _base_correct(self, task, lm, pair) -> bool:
        examples = objectives.build_examples(task, lm, [pair], self.settings.prompt)
        with torch.no_grad():
            return scoring.ChoiceScorer(self.model, examples, pad_token_id=self.pad_id).score().correct(examples)[0]

    def offsets(self, examples) -> list[torch.Tensor] | None:
        """Per example the calibration's offset of each choice; None without a calibration."""
        if not self.settings.calibration:
            return None
        calibration = calibrations.load(self.settings.calibration)
        return [torch.tensor(calibration.offsets_for(self.settings.task, list(example.answers))) for example in examples]

    def make_objectives(self, handle) -> tuple[function.Objective, function.Objective | None]:
        def make(examples, dtype=None):
            scorer = scoring.ChoiceScorer(self.model, examples, self.batch_size, self.pad_id, dtype=dtype)
            return function.Objective(scorer, handle, self.settings.objective, self.offsets(examples))

        search_dtype = getattr(torch, self.settings.search_dtype) if self.settings.search_dtype else None
        if search_dtype is not None and self.edit.params.device.type == "cpu" and not _fast_low_precision_cpu():
            logger.warning(
                "--search-dtype %s on an %s CPU: without AVX512 its matmuls are emulated and far slower than "
                "float32 (benchmarks/bench_objective.py measures both); use it on GPUs or AVX512-BF16/AMX CPUs",
                self.settings.search_dtype, torch.backends.cpu.get_cpu_capability(),
            )
        # the search may run in bf16; the edit is chosen on validation in the model's own dtype
        return make(self.train, search_dtype), (make(self.validation) if self.validation else None)


def _fast_low_precision_cpu() -> bool:
    """Whether this CPU has the AVX512 kernels that make bf16/fp16 matmuls at least as fast as fp32."""
    return torch.backends.cpu.get_cpu_capability().startswith("AVX512")


def _recorded(record: RunRecord, key: str, evaluate) -> dict:
    """{"value", "accuracy"} of `evaluate()`, computed once per run directory."""
    entry = record.score(key, lambda: asdict(evaluate()))
    return {"value": entry["value"], "accuracy": entry["accuracy"]}


def optimize(model, lm, task, settings: Settings, out: str | Path, budget: int, select_k: int = 5,
             batch_size: int = 16) -> Result:
    """Run (or resume) the search in `out`, choose on validation, save the checkpoint there."""
    if budget < 1:
        raise ValueError(f"budget must be at least 1 evaluation, got {budget}")
    with run_lock.hold(out):  # before any work, so a second writer of `out` fails at once
        problem = Problem(model, lm, task, settings, batch_size)
        config = {
            **settings.record_config(),
            "task_split": problem.docs.split,
            "train_docs": [i for i, _ in problem.docs.train],
            "validation_docs": [i for i, _ in problem.docs.validation],
            "base_model": checkpoint.model_identity(model),
            **({"calibration_hash": calibrations.calibration_hash(settings.calibration)} if settings.calibration else {}),
        }
        with RunRecord(out, config) as record:
            if len(record.trace) > budget:
                raise RunConfigError(
                    f"{out} holds {len(record.trace)} evaluations, more than budget {budget} (a run is never cut "
                    f"back); give a budget of {len(record.trace)} or more, or use another --out"
                )
            return _search_and_save(model, problem, record, budget, select_k)


def _search(problem: Problem, record: RunRecord, budget: int, train) -> None:
    """Run the chosen search loop on the training objective until `record` holds `budget` evaluations."""
    settings = problem.settings

    def evaluate(x):
        return train.evaluate(problem.space.to_params(x).float())

    if settings.optimizer == "random":
        random_search.run(evaluate, problem.space, record, budget, settings.seed)
    elif settings.optimizer == "bo":
        bayesian.run(evaluate, problem.space, record, budget, settings.seed, settings.bo)
    else:
        gradient.run(train.loss_and_evaluation, problem.space, record, budget, settings.grad)


def _run_facts(problem: Problem, record: RunRecord, budget: int) -> dict:
    """What the run was (task, split, objective, search, documents, budget) for the checkpoint's provenance."""
    settings = problem.settings
    return {"task": settings.task, "task_split": problem.docs.split, "objective": settings.objective,
            "optimizer": settings.optimizer, "search_space": settings.space, "seed": settings.seed,
            "n_train": settings.n_train, "n_val": len(problem.validation), "budget": budget,
            "evaluations": len(record.trace), **({"calibration": settings.calibration} if settings.calibration else {})}


def _search_and_save(model, problem: Problem, record: RunRecord, budget: int, select_k: int) -> Result:
    """The search to `budget` evaluations, the choice on validation, the checkpoint: all in `record.directory`."""
    settings, out = problem.settings, record.directory
    started = time.perf_counter()
    with problem.edit.attached(model) as handle:
        train, validation = problem.make_objectives(handle)
        identity = problem.edit.params.clone()
        base = {"train": _recorded(record, "base:train", lambda: train.evaluate(identity))}
        if validation is not None:
            base["validation"] = _recorded(record, "base:validation", lambda: validation.evaluate(identity))

        _search(problem, record, budget, train)
        search_seconds = time.perf_counter() - started

        train_scores = record.values()
        pool = selection.candidates(train_scores, select_k, along_trajectory=settings.optimizer == "grad")
        params = {i: problem.space.to_params(record.point(i)).float() for i in pool}
        if validation is not None:
            val = {i: _recorded(record, f"validation:{i}", lambda i=i: validation.evaluate(params[i])) for i in pool}
            chosen = selection.choose(pool, {i: val[i]["value"] for i in pool}, train_scores)
            selected_on = "validation"
        else:
            chosen = selection.choose(pool, dict(enumerate(train_scores)), train_scores)
            selected_on = "train"
    entry = record.trace[chosen]
    scores = {"base": base, "chosen": {"train": {"value": entry[TRAIN_VALUE], "accuracy": entry[TRAIN_ACCURACY]}}}
    if validation is not None:
        scores["chosen"]["validation"] = val[chosen]
    improved, shipped = selection.decide(scores["chosen"][selected_on]["value"], base[selected_on]["value"],
                                         settings.ship_unimproved)
    surrogate = bayesian.surrogate_quality(record.trace) if settings.optimizer == "bo" else None
    notes = list(problem.docs.notes)
    if settings.optimizer == "grad":
        notes.append("grad is tarot-eval's extension (Adam on the training objective), not the paper's method")
    provenance = {**_run_facts(problem, record, budget), "chosen_evaluation": chosen, "selected_on": selected_on,
                  "scores": scores, "improved": improved, "shipped": shipped, "notes": notes}
    shipped_params = params[chosen] if shipped == "chosen" else identity
    checkpoint.save(out, HeadEdit(settings.method, settings.layers, shipped_params), model, settings.bounds, provenance)
    result = Result(Path(out), chosen, improved, shipped, selected_on, scores, surrogate, notes)
    summary = {
        **{k: v for k, v in asdict(result).items() if k != "directory"},
        "candidates": pool,
        "search_seconds_this_session": round(search_seconds, 2),
        "evaluation_seconds_total": round(sum(e["wall_s"] for e in record.trace), 2),
    }
    (Path(out) / RESULT_NAME).write_text(json.dumps(summary, indent=2) + "\n")
    plot_traces(
        {settings.optimizer: record.values()},
        Path(out) / PLOT_NAME,
        title=f"{settings.task}: {settings.method}, {settings.optimizer} ({settings.space})",
        baseline=base["train"]["value"],
    )
    return result
