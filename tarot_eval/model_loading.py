"""A causal LM and its tokenizer from what users name it by: an HF id, a local dir, a .gguf file, or None
for the embedded default model."""

from __future__ import annotations

from pathlib import Path

from tarot_eval.default_model import converted_dir
from tarot_eval.gguf import load_gguf


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
