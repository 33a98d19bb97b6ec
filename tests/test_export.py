"""`export`: a plain HF model with the rotations folded in gives tarot-hf's numbers under `--model hf`."""

import json

import pytest
import torch
from lm_eval.models.huggingface import HFLM
from transformers import AutoModelForCausalLM

from conftest import tiny_model
from tarot_eval import checkpoint, export
from tarot_eval.cli import main
from tarot_eval.edit import HeadEdit
from tarot_eval.lm import TarotHFLM
from test_lm import _loglikelihoods


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
    with pytest.raises(ValueError, match="adds a bias to o_proj"):
        export.export(ckpt, tmp_path / "merged", str(tmp_path / "qwen"))
