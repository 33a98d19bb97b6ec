"""`--executor ray`: the grid's cells as Ray tasks (the engine lm-eval uses for vLLM data parallelism).

Each cell is one task asking for `--threads` CPUs (and one GPU for a model on a CUDA device). Workers
share no filesystem with the driver: a task gets the folders of the cells it reads as a tar archive,
runs in a temporary folder of its own, and sends its finished cell folder back the same way; the
driver writes it into `--out` (through a partial folder, renamed into place whole). Ray keeps its
worker processes between tasks, so each keeps its loaded models. `ray` is an optional extra:
`pip install tarot-eval[ray]`.
"""

from __future__ import annotations

import dataclasses
import io
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from tarot_eval.leaderboard import cells
from tarot_eval.leaderboard.plan import PlanError

_WORKERS: dict = {}  # in a Ray worker process: the execute.Worker kept between tasks


def check_available() -> None:
    try:
        import ray  # noqa: F401
    except ImportError:
        raise PlanError("--executor ray needs Ray: pip install 'tarot-eval[ray]' (or pip install ray)") from None


def pack(root: Path, folders: list[Path]) -> bytes:
    """A tar archive of `folders` (paths relative to `root`), without lm-eval's own output folders."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for folder in folders:
            archive.add(folder, arcname=str(folder.relative_to(root)),
                        filter=lambda info: None if "/lm_eval_output" in f"/{info.name}" else info)
    return buffer.getvalue()


def unpack(blob: bytes, root: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as archive:
        archive.extractall(root, filter="data")  # no links out, no absolute paths, no devices


def relocated(value, old: Path, new: Path):
    """`value` (a step, its job and their settings) with every path under `old` moved under `new`."""
    if isinstance(value, Path):
        return new / value.relative_to(old) if value.is_relative_to(old) else value
    if isinstance(value, str) and value.startswith(f"{old}/"):
        return str(new / Path(value).relative_to(old))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {field.name: relocated(getattr(value, field.name), old, new)
                   for field in dataclasses.fields(value) if field.init}
        return dataclasses.replace(value, **changes)
    if isinstance(value, (list, tuple)):
        return type(value)(relocated(item, old, new) for item in value)
    return value


def run_remote(spec, step, out: str, inputs: bytes, threads: int, evaluation, include_path, include_defaults) -> bytes:
    """In a Ray worker: run one cell in a temporary folder laid out like `out`; returns the finished cell."""
    import torch

    from tarot_eval.leaderboard.execute import Worker, run_cell

    torch.set_num_threads(threads)
    key = (evaluation, tuple(include_path), include_defaults)
    if key not in _WORKERS:
        _WORKERS[key] = Worker(evaluation, list(include_path), include_defaults, {})
    scratch = Path(tempfile.mkdtemp(prefix="tarot-cell-"))
    try:
        unpack(inputs, scratch)
        moved = relocated(step, Path(out), scratch)
        run_cell(_WORKERS[key], spec, moved, scratch)
        return pack(scratch, [moved.folder])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class RayPool:
    """Submits every ready cell as a Ray task and writes each finished one into `out`."""

    def __init__(self, address: str | None, threads: int, config, out: Path):
        import ray

        try:
            ray.init(address=address, include_dashboard=False, ignore_reinit_error=True,
                     **({} if address else {"num_cpus": os.cpu_count()}))
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise PlanError(f"--ray-address {address}: cannot join that Ray cluster ({str(error).splitlines()[0]})") from None
        self.ray, self.threads, self.config = ray, threads, config
        self.given, self.out = out, out.absolute()  # the steps' paths are under `out` as given
        self.remote = ray.remote(max_retries=0)(run_remote)

    def submit(self, ready):
        spec, step, out = ready.message
        reads = [Path(name) for name in step.depends]
        gpus = 1 if str(spec.device).startswith("cuda") else 0
        return self.remote.options(num_cpus=self.threads, num_gpus=gpus).remote(
            spec, step, str(self.given), pack(self.out, [folder.absolute() for folder in reads]), self.threads,
            self.config.eval, tuple(self.config.include_path), self.config.include_defaults)

    def run(self, scheduler) -> None:
        running = {}
        try:
            while True:
                while (ready := scheduler.next_ready()) is not None:
                    running[self.submit(ready)] = ready.message[1]
                    scheduler.started(ready.name)
                if not running:
                    return
                (finished,), _ = self.ray.wait(list(running), num_returns=1)
                step = running.pop(finished)
                try:
                    blob = self.ray.get(finished)
                except Exception as error:  # a task's exception or its worker's death fails that cell only
                    scheduler.finished(step.name, None, f"{type(error).__name__}: {str(error).strip()}")
                    continue
                scheduler.finished(step.name, self.receive(step, blob), None)
        finally:
            for reference in running:
                self.ray.cancel(reference, force=True)

    def receive(self, step, blob: bytes) -> dict:
        """Write a finished cell sent back by a worker into `out`, renamed into place whole; returns its cost."""
        landing = Path(tempfile.mkdtemp(dir=self.out, prefix=".landing-"))
        try:
            unpack(blob, landing)
            partial = cells.partial_of(step.folder)
            shutil.rmtree(partial, ignore_errors=True)
            partial.parent.mkdir(parents=True, exist_ok=True)
            os.replace(landing / step.folder.relative_to(self.given), partial)
            cells.put_in_place(partial, step.folder)
        finally:
            shutil.rmtree(landing, ignore_errors=True)
        return cells.read_record(step.folder)["cost"]
