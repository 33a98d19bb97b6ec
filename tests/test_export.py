"""`export`: a plain HF model with the rotations folded in gives tarot-hf's numbers under `--model hf`."""

import json
import re

import pytest
import torch
from conftest import tiny_model
from lm_eval.models.huggingface import HFLM
from support.scores import _loglikelihoods
from transformers import AutoModelForCausalLM

from tarot_eval.cli import main
from tarot_eval.edit import checkpoint, export
from tarot_eval.edit.head_edit import HeadEdit
from tarot_eval.harness.tarot_hf import TarotHFLM


def test_exported_model_scores_like_tarot_hf(tmp_path, saved_tiny_llama):
    model = AutoModelForCausalLM.from_pretrained(saved_tiny_llama)
    edit = HeadEdit.identity(model, "rotation", (0, 2))
    edit.params = torch.linspace(-0.7, 0.7, edit.params.numel()).view_as(edit.params)
    ckpt = checkpoint.save(tmp_path / "ckpt", edit, model)
    assert main(["export", "--rotations", str(ckpt), "--out", str(tmp_path / "merged"), "--model", str(saved_tiny_llama)]) == 0

    merged = _loglikelihoods(HFLM(pretrained=str(tmp_path / "merged"), device="cpu"))
    ours = _loglikelihoods(TarotHFLM(pretrained=str(saved_tiny_llama), rotations=str(ckpt), device="cpu"))
    base = _loglikelihoods(HFLM(pretrained=str(saved_tiny_llama), device="cpu"))
    assert max(abs(a - b) for a, b in zip(merged, ours)) <= 1e-5
    assert max(abs(a - b) for a, b in zip(merged, base)) > 1e-3
    record = json.loads((tmp_path / "merged" / export.EXPORT_RECORD).read_text())
    assert record["checkpoint_hash"] == checkpoint.checkpoint_hash(ckpt)


def test_value_bias_models_are_not_exported_silently(tmp_path, tiny_tokenizer):
    model = tiny_model("qwen2")
    model.save_pretrained(tmp_path / "qwen")
    tiny_tokenizer.save_pretrained(tmp_path / "qwen")
    edit = HeadEdit.identity(model, "rotation", (0,))
    ckpt = checkpoint.save(tmp_path / "ckpt", edit, model)
    with pytest.raises(export.ExportError, match="adds a bias to o_proj"):
        export.export(ckpt, tmp_path / "merged", str(tmp_path / "qwen"))


def test_export_dtype_and_value_bias_refusals_are_one_line(tmp_path, tiny_tokenizer, saved_tiny_llama, ckpt, capsys):
    _refused(capsys, r"--dtype 'float33': not a torch dtype", ckpt, tmp_path / "m1", saved_tiny_llama, "--dtype", "float33")
    model = tiny_model("qwen2")
    model.save_pretrained(tmp_path / "qwen")
    tiny_tokenizer.save_pretrained(tmp_path / "qwen")
    qwen_ckpt = checkpoint.save(tmp_path / "qckpt", HeadEdit.identity(model, "rotation", (0,)), model)
    _refused(capsys, r"qwen2: folding around the value bias adds a bias to o_proj", qwen_ckpt, tmp_path / "m2", tmp_path / "qwen")


@pytest.fixture
def ckpt(tmp_path, saved_tiny_llama):
    model = AutoModelForCausalLM.from_pretrained(saved_tiny_llama)
    edit = HeadEdit.identity(model, "rotation", (0, 2))
    edit.params = torch.full_like(edit.params, 0.5)
    return checkpoint.save(tmp_path / "ckpt", edit, model)


def _export(ckpt, out, model, *flags):
    return main(["export", "--rotations", str(ckpt), "--out", str(out), "--model", str(model), *flags])


def _refused(capsys, pattern, ckpt, out, model, *flags):
    """The export is refused with the CLI's one line (exit 2) matching `pattern`."""
    assert _export(ckpt, out, model, *flags) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]  # after the weight-loading progress bar, if any
    assert line.startswith("tarot-eval export: error: ") and re.search(pattern, line), line


def test_non_empty_out_needs_overwrite_and_is_then_replaced_whole(tmp_path, saved_tiny_llama, ckpt, capsys):
    out = tmp_path / "merged"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    _refused(capsys, r"--out .*merged is not empty; pass --overwrite", ckpt, out, saved_tiny_llama)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    # a folder that is not an earlier export is never replaced, --overwrite or not
    _refused(capsys, r"--out .*merged is not an earlier export \(it has no tarot_export.json\)", ckpt, out, saved_tiny_llama,
             "--overwrite")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    (out / "notes.txt").unlink()
    assert _export(ckpt, out, saved_tiny_llama) == 0
    (out / "notes.txt").write_text("beside an export")
    assert _export(ckpt, out, saved_tiny_llama, "--overwrite") == 0  # an earlier export is replaced whole
    assert not (out / "notes.txt").exists() and (out / export.EXPORT_RECORD).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "merged", "tiny-llama"]  # no staging left behind


def test_the_scratch_of_a_killed_export_is_cleared(tmp_path, saved_tiny_llama, ckpt):
    stale = tmp_path / ".merged.export-killed" / "new"
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"\0" * 1024)  # what a SIGKILL mid-write leaves
    assert _export(ckpt, tmp_path / "merged", saved_tiny_llama) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "merged", "tiny-llama"]


def test_a_failed_write_leaves_the_old_out_untouched(tmp_path, saved_tiny_llama, ckpt, monkeypatch, capsys):
    out = tmp_path / "merged"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / export.EXPORT_RECORD).write_text("{}")  # an earlier export, which --overwrite may replace

    def broken(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(type(AutoModelForCausalLM.from_pretrained(saved_tiny_llama)), "save_pretrained", broken)
    assert _export(ckpt, out, saved_tiny_llama, "--overwrite") == 2  # the CLI reports the OSError in one line
    assert "tarot-eval export: error: disk full" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", export.EXPORT_RECORD]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "merged", "tiny-llama"]


@pytest.mark.parametrize("target", ["base", "parent of base", "checkpoint"])
def test_out_never_replaces_the_inputs_even_with_overwrite(tmp_path, saved_tiny_llama, ckpt, target, capsys):
    out = {"base": saved_tiny_llama, "parent of base": tmp_path, "checkpoint": ckpt}[target]
    weights = (saved_tiny_llama / "model.safetensors").read_bytes()
    what = "checkpoint" if target == "checkpoint" else "base model folder"
    _refused(capsys, f"--out .* is or holds the {what} .*; write the export to another folder", ckpt, out, saved_tiny_llama,
             "--overwrite")
    assert (saved_tiny_llama / "model.safetensors").read_bytes() == weights
    assert checkpoint.TarotConfig.from_pretrained(ckpt).layers == [0, 2]


def test_a_gguf_files_folder_is_the_base_folder(tmp_path, ckpt, capsys):
    folder = tmp_path / "gguf"
    folder.mkdir()
    (folder / "model.gguf").write_bytes(b"GGUF")  # refused before anything is loaded
    _refused(capsys, r"is or holds the base model folder .*gguf", ckpt, folder, folder / "model.gguf", "--overwrite")


def test_exporting_on_an_export_needs_allow_stacked_and_records_the_stack(tmp_path, saved_tiny_llama, ckpt, capsys):
    first = tmp_path / "merged"
    assert _export(ckpt, first, saved_tiny_llama) == 0
    second = tmp_path / "twice"
    _refused(capsys, r"merged already has the edit .*ckpt' folded in .*pass --allow-stacked", ckpt, second, first)
    _refused(capsys, "found on other weights .*--allow-transfer", ckpt, second, first, "--allow-stacked")
    assert not second.exists()
    assert _export(ckpt, second, first, "--allow-stacked", "--allow-transfer") == 0
    record = json.loads((second / export.EXPORT_RECORD).read_text())
    assert record["stacked_on"] == json.loads((first / export.EXPORT_RECORD).read_text())
