"""`tarot-eval export`: fold a checkpoint into the weights and save a plain HF model any engine can run.

    tarot-eval export --rotations ckpt/navigate --out merged/ [--model PRETRAINED] [--overwrite]
    lm_eval --model hf --model_args pretrained=merged/ --tasks tarot_navigate   # same numbers as tarot-hf

The model is written to a temporary folder beside `--out` and renamed into place, so `--out`
never holds half a model or a mix of old and new files. A non-empty `--out` needs `--overwrite`,
which replaces only an earlier export (a folder holding `tarot_export.json`);
a `--out` that is, or holds, the base model's folder or the checkpoint is always refused (that
would destroy the export's own inputs). The exported folder records its edit in
`tarot_export.json`; exporting or evaluating another checkpoint on top of it is refused unless
stacking is asked for.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

from tarot_eval.edit import architectures, checkpoint
from tarot_eval.json_files import read_json
from tarot_eval.models import default_model, loading

EXPORT_RECORD = "tarot_export.json"


class ExportError(ValueError):
    """An export that would overwrite something it must not, or stack edits unasked."""


def model_folder(pretrained: str | None) -> Path | None:
    """The local folder `pretrained` loads from (a .gguf file's folder; the default's conversion), else None."""
    name, _ = loading.resolve(pretrained)
    folder = Path(name)
    return folder.resolve() if folder.is_dir() else None


def exported_edit(folder: Path | None) -> dict | None:
    """The export record of a model folder: the edit already folded into its weights, or None."""
    path = None if folder is None else Path(folder) / EXPORT_RECORD
    if path is None or not path.is_file():
        return None
    return read_json(path, ExportError)


def stacking_refusal(folder: Path, record: dict, rotations, flag: str) -> ExportError:
    return ExportError(
        f"{folder} already has the edit {record.get('rotations')!r} folded in (see its {EXPORT_RECORD}); applying "
        f"{str(rotations)!r} on top would stack two edits; pass {flag} if that is what you mean"
    )


def _check_destination(out: Path, protected: dict[str, Path], overwrite: bool) -> None:
    for what, path in protected.items():
        if out == path or out in path.parents:
            raise ExportError(f"--out {out} is or holds the {what} {path}; write the export to another folder")
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise ExportError(f"--out {out} is not empty; pass --overwrite to replace it, or choose an empty folder")
        if not (out / EXPORT_RECORD).is_file():
            raise ExportError(f"--out {out} is not an earlier export (it has no {EXPORT_RECORD}); --overwrite replaces "
                              "only an export, so choose an empty folder")


def _write_in_place(out: Path, write) -> None:
    """Run `write(folder)` on a temporary folder beside `out`, then swap it in; the old `out` goes last."""
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}.export-*"):  # the scratch of an export that was killed (model-sized)
        shutil.rmtree(stale, ignore_errors=True)
    scratch = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.export-"))
    staging, aside = scratch / "new", scratch / "old"
    try:
        staging.mkdir()
        write(staging)
        if out.exists():
            os.replace(out, aside)
        try:
            os.replace(staging, out)
        except OSError:
            if aside.exists():
                os.replace(aside, out)
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def export(
    rotations: str | Path,
    out: str | Path,
    pretrained: str | None = None,
    dtype: str = "float32",
    overwrite: bool = False,
    allow_stacked: bool = False,
    allow_transfer: bool = False,
) -> Path:
    """Save `pretrained` with `rotations` folded into its attention output projections."""
    out = Path(out).resolve()
    base_folder = model_folder(pretrained)
    protected = {"base model folder": base_folder} if base_folder is not None else {}
    protected["checkpoint"] = Path(rotations).resolve()
    _check_destination(out, protected, overwrite)
    checkpoint.TarotConfig.from_pretrained(rotations)  # a malformed checkpoint fails before the model loads
    stacked_on = exported_edit(base_folder)
    if stacked_on is not None and not allow_stacked:
        raise stacking_refusal(base_folder, stacked_on, rotations, "--allow-stacked")
    model, tokenizer = loading.load_model_and_tokenizer(pretrained, dtype=dtype)
    head_edit = checkpoint.load(rotations, model, allow_transfer=allow_transfer)
    sites = architectures.attention_sites(model, head_edit.layers)
    adding = [site for site in sites if head_edit.adds_bias(site)]
    if adding:
        why = "around the value bias" if adding[0].value_bias is not None else f"the {head_edit.method} constants"
        raise ExportError(
            f"{model.config.model_type}: folding {why} adds a bias to o_proj, which this "
            "architecture's HF class cannot load; evaluate with `--model tarot-hf` instead of exporting"
        )
    record = {
        "rotations": str(rotations),
        "checkpoint_hash": checkpoint.checkpoint_hash(rotations),
        "base_model": {**checkpoint.model_identity(model), "weights": checkpoint.weight_fingerprint(model, head_edit.layers)},
        "source": pretrained or f"{default_model.DEFAULT_NAME} (embedded)",
    }
    if stacked_on is not None:
        record["stacked_on"] = stacked_on
    head_edit.merge(model)

    def write(folder: Path) -> None:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        (folder / EXPORT_RECORD).write_text(json.dumps(record, indent=2) + "\n")

    _write_in_place(out, write)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rotations", required=True, help="tarot checkpoint directory")
    parser.add_argument("--out", required=True, help="directory for the merged HF model (must be empty or absent)")
    parser.add_argument("--model", default=None, help="base model: HF id, local dir or .gguf (default: embedded SmolLM2)")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out (never the base model's folder)")
    parser.add_argument("--allow-stacked", action="store_true",
                        help="export on top of a model that already has an edit folded in")
    parser.add_argument("--allow-transfer", action="store_true",
                        help="apply a checkpoint found on other weights of the same shapes (e.g. another fine-tune)")


def run(args: argparse.Namespace) -> int:
    out = export(args.rotations, args.out, args.model, args.dtype, args.overwrite, args.allow_stacked, args.allow_transfer)
    print(f"wrote {out} (rotations from {args.rotations} folded into o_proj)")
    return 0
