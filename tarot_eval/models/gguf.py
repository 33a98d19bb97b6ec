"""A GGUF file loaded as a plain (de-quantized, float) transformers model and its tokenizer."""

from __future__ import annotations

from pathlib import Path


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
