"""The method registry (in the spirit of peft's `register_peft_method`): a config's method kind -> the
`Method` that parses its settings, fits its artifact for a cell and says how an evaluation applies it.

The leaderboard loops over this registry; it names no kind. A new method is a module that subclasses
`Method` and calls `register_method`, plus its key in a config.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tarot_eval.registry import Registry

if TYPE_CHECKING:
    from tarot_eval.methods.jobs import Fit, GridContext

EVALUATE = "evaluate"  # the kind of every evaluation cell, as records and progress lines say it
GUESSED_EVALUATION_CPU_S = 60.0  # before any evaluation is recorded (SmolLM2-135M on a 2-core CPU)


@dataclass(frozen=True)
class MethodSpec:
    """One method of a config: its row name, its kind (a registry key) and its own settings."""

    name: str
    kind: str
    settings: dict | None  # the kind's own settings as the config gives them; None for the unedited base model
    applies: str | None = None  # a method listed before it whose fitted artifact its search and evaluation apply
    tasks: tuple[str, ...] | None = None  # `tasks:` of the method: the zero-shot tasks it runs on (None: all)
    interference: bool | None = None  # `interference:` of the method (None: the config's)


@dataclass(frozen=True)
class FitPlan:
    """What one fit cell is: its options, the settings its identity records, the document draw it reads
    (n_train, n_val, seed, prompt options) and the folders of the cells it reads."""

    options: object
    record: dict
    draw: tuple
    reads: tuple[Path, ...] = ()


class Method:
    """One method kind. Subclasses set the class attributes and override what their kind does."""

    kind: str = ""  # the registry key
    fallback: bool = False  # the kind of a config entry no other kind selects
    reference: bool = False  # the row every other is compared with (the unedited model)
    takes_settings: bool = True  # its config entry is a mapping of settings (with `tasks:`, `interference:`)
    fit_kind: str | None = None  # its fit cells' kind in records and progress lines; None: it fits nothing
    artifact: str | None = None  # what a fit leaves: "checkpoint", "calibration" or "adapter"
    fit_label: str = ""  # that kind counted in the summary ("optimizations")
    guessed_fit_cpu_s: float = 0.0  # a fit's CPU seconds before any is recorded (SmolLM2-135M, 2-core CPU)
    resumable: bool = False  # an interrupted fit continues from its partial folder
    edits: bool = False  # its evaluations apply an edit of a task's checkpoint (interference scores it elsewhere)
    on_few_shot_tasks: bool = True  # also evaluated on the config's few-shot tasks

    def selects(self, name: str, entry) -> bool:
        """Whether the config entry `name: entry` is of this kind (default: it says `method: <kind>`)."""
        return isinstance(entry, dict) and entry.get("method") == self.kind

    def parse(self, name: str, entry: dict, where: str, earlier: list[MethodSpec]) -> MethodSpec:
        """The spec of a config entry (a mapping, `tasks:`/`interference:` taken out, where it takes settings);
        ValueError names `where`."""
        raise NotImplementedError

    def check(self, spec: MethodSpec, optimizer: dict) -> None:
        """Checks against the config's shared optimizer settings; ValueError names the key."""

    def seeded(self, spec: MethodSpec) -> bool:
        """Whether it reads the seed's training documents (else one seed-free cell per task)."""
        return True

    def fit_tasks(self, grid: GridContext, spec: MethodSpec) -> list[str]:
        """The tasks it fits an artifact for."""
        return grid.config.zero_shot_of(spec)

    def fit(self, grid: GridContext, spec: MethodSpec, task: str, seed: int | None) -> FitPlan:
        """The fit cell of `task` under `seed` (only called where `fit_kind` is set)."""
        raise NotImplementedError

    def run_fit(self, loaded, job: Fit, manager, work: Path) -> str | None:
        """Fit `job` into `work` with the loaded model; returns a note worth printing, if any."""
        raise NotImplementedError

    def evaluation_inputs(self, grid: GridContext, spec: MethodSpec, task: str, source: str, seed: int | None) -> dict:
        """What an evaluation of `task` applies (`jobs.Evaluation` fields): `source` is the zero-shot task
        whose fitted artifact a few-shot task uses."""
        return {}


def check_keys(entry: dict, allowed, where: str) -> None:
    """A config entry's keys are among `allowed`; ValueError names the others."""
    unknown = [str(key) for key in entry if key not in allowed]
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; expected one of {', '.join(allowed)}")


METHODS: Registry[Method] = Registry("method kind", "kind")
register_method = METHODS.register


def kind_for(name: str, entry) -> str:
    """The kind of the config entry `name: entry`."""
    for method in sorted(METHODS.values(), key=lambda m: m.fallback):
        if method.fallback or method.selects(name, entry):
            return method.kind
    raise ValueError(f"methods.{name}: no registered method kind takes it")


def method_of(spec: MethodSpec) -> Method:
    return METHODS[spec.kind]


def fit_kinds() -> list[tuple[str, str]]:
    """(kind, label) of every fit kind, in registration order."""
    return [(m.fit_kind, m.fit_label) for m in METHODS.values() if m.fit_kind]


def default_fit_kind() -> str | None:
    """The fit kind of the default method (an entry no other kind selects)."""
    return next((m.fit_kind for m in METHODS.values() if m.fallback), None)


def guessed_cpu_s(kind: str) -> float:
    found = [m.guessed_fit_cpu_s for m in METHODS.values() if m.fit_kind == kind]
    return found[0] if found else GUESSED_EVALUATION_CPU_S
