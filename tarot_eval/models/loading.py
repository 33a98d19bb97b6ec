"""A causal LM and its tokenizer from what users name it by: an HF id, a local dir, a .gguf file, or None
for the embedded default model."""

from __future__ import annotations

from pathlib import Path

from tarot_eval.models.default_model import converted_dir
from tarot_eval.models.gguf import load_gguf


def resolve(pretrained: str | None) -> tuple[str, str | None]:
    """(pretrained, gguf_file) for transformers / lm-eval: None -> embedded default; a .gguf path -> (dir, name)."""
    if pretrained is None or pretrained == "":
        return str(converted_dir()), None
    text = str(pretrained)
    if text.startswith((".", "/", "~")) and not Path(text).expanduser().exists():
        raise FileNotFoundError(f"model not found: {pretrained} (no such file or folder)")
    if str(pretrained).endswith(".gguf"):
        path = Path(pretrained).expanduser()  # configs name cached files as ~/.cache/...
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file not found: {pretrained}")
        return str(path.parent), path.name
    return str(pretrained), None


class ModelLoadingError(ValueError):
    """A model setting that names nothing loadable (an unknown dtype)."""


def torch_dtype(dtype):
    """The torch dtype named `dtype` ("float32", "bfloat16", ...), or `dtype` itself when it already is one."""
    import torch

    found = getattr(torch, dtype, None) if isinstance(dtype, str) else dtype
    if not isinstance(found, torch.dtype):
        raise ModelLoadingError(f"--dtype {dtype!r}: not a torch dtype (e.g. float32, bfloat16, float16)")
    return found


def load_model_and_tokenizer(pretrained: str | None = None, dtype="float32", device: str = "cpu"):
    """Model (eval mode) and tokenizer from an HF id, a local dir, a .gguf file, or None for the default."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = torch_dtype(dtype)
    name, gguf_file = resolve(pretrained)
    if gguf_file is not None:
        model, tokenizer = load_gguf(Path(name) / gguf_file, dtype=dtype)
    else:
        tokenizer = AutoTokenizer.from_pretrained(name)
        model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype)
    return model.to(device).eval(), tokenizer
