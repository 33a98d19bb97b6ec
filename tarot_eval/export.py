"""`tarot-eval export`: fold a checkpoint into the weights and save a plain HF model any engine can run.

    tarot-eval export --rotations ckpt/navigate --out merged/ [--model PRETRAINED]
    lm_eval --model hf --model_args pretrained=merged/ --tasks tarot_navigate   # same numbers as tarot-hf
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tarot_eval import architectures, checkpoint, default_model, edit

EXPORT_RECORD = "tarot_export.json"


def export(rotations: str | Path, out: str | Path, pretrained: str | None = None, dtype: str = "float32") -> Path:
    """Save `pretrained` with `rotations` folded into its attention output projections."""
    model, tokenizer = default_model.load_model_and_tokenizer(pretrained, dtype=dtype)
    head_edit = checkpoint.load(rotations, model)
    sites = architectures.attention_sites(model, head_edit.layers)
    if any(site.value_bias is not None and site.out_proj.bias is None for site in sites):
        raise ValueError(
            f"{model.config.model_type}: folding around the value bias adds a bias to o_proj, which this "
            "architecture's HF class cannot load; evaluate with `--model tarot-hf` instead of exporting"
        )
    edit.fold(model, head_edit)
    out = Path(out)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    record = {
        "rotations": str(rotations),
        "checkpoint_hash": checkpoint.checkpoint_hash(rotations),
        "base_model": checkpoint.model_identity(model),
        "source": pretrained or f"{default_model.DEFAULT_NAME} (embedded)",
    }
    (out / EXPORT_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rotations", required=True, help="tarot checkpoint directory")
    parser.add_argument("--out", required=True, help="directory for the merged HF model")
    parser.add_argument("--model", default=None, help="base model: HF id, local dir or .gguf (default: embedded SmolLM2)")
    parser.add_argument("--dtype", default="float32")


def run(args: argparse.Namespace) -> int:
    out = export(args.rotations, args.out, args.model, args.dtype)
    print(f"wrote {out} (rotations from {args.rotations} folded into o_proj)")
    return 0
