"""A calibration file: the model's prior over a task's answer strings, removed from its choice scores.

    DIR/calibration.json  {"format_version", "task", "variant", "log_prior": {continuation: log p}, "provenance"}

`log_prior` is keyed by each answer exactly as lm-eval requests it (the continuation string, with
the task's target delimiter). Calibrated, a choice scores `loglikelihood - log_prior[answer]`:
contextual calibration (Zhao et al. 2021) with a diagonal correction, for which lm-eval's `acc`
(the argmax over choices) is the calibrated prediction. `tarot-hf` applies it inside
`loglikelihood` (`calibration=DIR`), so lm-eval's results and samples hold the calibrated scores;
the rotation objective applies the same offsets (`offsets_for`). A continuation the file does not
hold is refused: a task whose answers differ per document cannot be calibrated this way.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tarot_eval.json_files import read_json

FORMAT_VERSION = 1
FILE_NAME = "calibration.json"
log = logging.getLogger(__name__)
VARIANTS = ("contextual", "batch")  # content-free inputs / mean choice probabilities over training documents


class CalibrationError(ValueError):
    """A calibration file that is malformed or does not fit the requests it is applied to."""


@dataclass(frozen=True)
class Calibration:
    task: str
    variant: str
    log_prior: dict[str, float]  # continuation -> log of the mean normalized probability of that answer
    provenance: dict = field(default_factory=dict)
    source: str = ""  # where it was read from (not saved)

    def offset(self, task: str, continuation: str) -> float:
        """What calibration subtracts from a request's log-likelihood; refuses another task or answer."""
        if task != self.task:
            raise CalibrationError(f"{self.source or FILE_NAME}: fitted on task {self.task!r}, applied to {task!r}")
        if continuation not in self.log_prior:
            raise CalibrationError(
                f"{self.source or FILE_NAME}: task {task!r} asks for the answer {continuation!r}, which the calibration "
                f"does not hold ({', '.join(map(repr, self.log_prior))}); calibration needs the same answers for every document"
            )
        return self.log_prior[continuation]

    def offsets_for(self, task: str, continuations: list[str]) -> list[float]:
        return [self.offset(task, continuation) for continuation in continuations]


WEIGHTS_KEY = "weights"  # provenance: `checkpoint.weight_fingerprint` of the unedited model it was fitted on


def check_weights(calibration: Calibration, model, allow_transfer: bool = False) -> None:
    """Refuses `calibration` on a model whose weights are not the ones it was fitted on (checked on the unedited
    weights, so before a rotation is merged); `allow_transfer` applies it anyway. A calibration written before
    fingerprints were recorded is applied with a warning."""
    from tarot_eval.edit import checkpoint

    stored = calibration.provenance.get(WEIGHTS_KEY)
    where = calibration.source or FILE_NAME
    if not isinstance(stored, dict) or not isinstance(stored.get("layers"), dict):
        log.warning("%s records no weight fingerprint (written before they were): not checked against the model", where)
        return
    try:
        actual = checkpoint.weight_fingerprint(model, [int(layer) for layer in stored["layers"]])
        why = checkpoint.weight_difference(stored["layers"], actual["layers"])
    except (KeyError, ValueError, IndexError, TypeError) as error:
        why = f"its fingerprint does not fit this model ({error})"
    if why and not allow_transfer:
        name = (calibration.provenance.get("base_model") or {}).get("name", "another model")
        raise CalibrationError(f"{where}: fitted on {name}, whose weights differ from this model's ({why}); "
                               "pass allow_transfer=true (tarot-hf) or --allow-transfer to apply it anyway")


def log_prior_from(probabilities: dict[str, float]) -> dict[str, float]:
    """Log of the probabilities normalized over the answers (the constant cancels in the argmax)."""
    total = sum(probabilities.values())
    return {answer: math.log(p / total) for answer, p in probabilities.items()}


def save(directory: str | Path, calibration: Calibration) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    record = {"format_version": FORMAT_VERSION, **{k: v for k, v in asdict(calibration).items() if k != "source"}}
    path = directory / FILE_NAME
    staged = path.with_suffix(".json.tmp")
    staged.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    staged.replace(path)  # never a half-written file under the real name
    return path


def path_of(location: str | Path) -> Path:
    location = Path(location)
    return location / FILE_NAME if location.is_dir() or location.suffix != ".json" else location


def load(location: str | Path) -> Calibration:
    """The calibration in folder `location` (or the JSON file itself); errors name the file and key."""
    path = path_of(location)
    if not path.is_file():
        raise CalibrationError(f"{path}: no calibration file (write one with `tarot-eval calibrate`)")
    record = read_json(path, CalibrationError)
    if not isinstance(record, dict) or record.get("format_version") != FORMAT_VERSION:
        raise CalibrationError(f"{path}: not a version-{FORMAT_VERSION} calibration file")
    if not isinstance(record.get("task"), str) or record.get("variant") not in VARIANTS:
        raise CalibrationError(f"{path}: task must be a task name and variant one of {', '.join(VARIANTS)}")
    prior = record.get("log_prior")
    if not isinstance(prior, dict) or len(prior) < 2 or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in prior.values()
    ):
        raise CalibrationError(f"{path}: log_prior must map at least two answers to finite numbers")
    return Calibration(record["task"], record["variant"], {str(k): float(v) for k, v in prior.items()},
                       record.get("provenance", {}), source=str(path))


def calibration_hash(location: str | Path) -> str:
    """Content hash of the file's answers and priors (what changes the scores)."""
    calibration = load(location)
    blob = json.dumps({"task": calibration.task, "log_prior": calibration.log_prior}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
