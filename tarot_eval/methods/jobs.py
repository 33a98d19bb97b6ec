"""The cells a method plans: a grid coordinate, a fit of a method's artifact, an evaluation, and the grid
context a method reads while planning them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tarot_eval.methods.registry import MethodSpec, method_of

CHECKPOINTS = "checkpoints"  # fitted artifacts: checkpoints/<model>/<method>/[seed-<k>/]<task>/
RUNS = "runs"  # evaluations: runs/<model>/<method>/[seed-<k>/]<task>/


@dataclass(frozen=True)
class GridCell:
    """One model x method x (seed) x task of the grid."""

    model: str
    method: str
    task: str
    seed: int | None

    @property
    def cell(self) -> str:
        return "/".join(self.parts)

    @property
    def parts(self) -> tuple[str, ...]:
        """Its folder below `checkpoints/` or `runs/`."""
        return (self.model, self.method, *(() if self.seed is None else (f"seed-{self.seed}",)), self.task)


@dataclass(frozen=True)
class Fit(GridCell):
    """A method's artifact for one cell (a checkpoint, a calibration, an adapter), fitted into `directory`."""

    kind: str  # the method kind that fits it (a registry key)
    options: object
    directory: Path


@dataclass(frozen=True)
class Demonstrations:
    """Fixed demonstrations: the first `shots` training documents of the seed's draw (n_train, n_val, seed)."""

    shots: int
    n_train: int
    n_val: int
    seed: int


@dataclass(frozen=True)
class Evaluation(GridCell):
    checkpoint: Path | None  # None: the unedited model
    folder: Path
    calibration: Path | None = None
    demonstrations: Demonstrations | None = None
    adapter: Path | None = None  # a peft adapter
    edited_on: str | None = None  # interference: the task the checkpoint was optimized on (not `task`)

    @property
    def cell(self) -> str:
        return "/".join(self.parts) + (f" (edit of {self.edited_on})" if self.edited_on else "")


@dataclass(frozen=True)
class GridContext:
    """What a method reads while planning the cells of one model: the config, the model, its transformers
    config (no weights) and the output folder."""

    config: object  # leaderboard.config.LeaderboardConfig
    model: object  # leaderboard.config.ModelSpec
    model_config: object  # transformers.PretrainedConfig
    out: Path

    @property
    def num_layers(self) -> int:
        return self.model_config.get_text_config().num_hidden_layers

    def cell(self, spec: MethodSpec, task: str, seed: int | None) -> GridCell:
        """The grid cell of `spec` on `task` under `seed` (seed-free where the method reads no seed)."""
        return GridCell(self.model.name, spec.name, task, seed if method_of(spec).seeded(spec) else None)

    def fit_folder(self, name: str, task: str, seed: int | None) -> Path:
        """The folder of method `name`'s fitted artifact for `task` under `seed` (or its seed-free one)."""
        return self.out.joinpath(CHECKPOINTS, *self.cell(self.config.method(name), task, seed).parts)
