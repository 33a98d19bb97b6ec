"""The weight fingerprint's tolerance: dtype casts and devices pass with margin, other weights fail by far."""

import pytest
import torch
from conftest import tiny_model

from tarot_eval.edit import checkpoint
from tarot_eval.edit.checkpoint import WEIGHTS_TOLERANCE
from tarot_eval.edit.head_edit import HeadEdit

LAYERS = (0, 1, 2)


def _gap(a: dict, b: dict) -> float:
    """Largest per-layer rms gap between the random projections of two fingerprints."""
    gaps = []
    for layer in a["layers"]:
        x = torch.tensor(a["layers"][layer]["projections"], dtype=torch.float64)
        y = torch.tensor(b["layers"][layer]["projections"], dtype=torch.float64)
        gaps.append((x - y).square().mean().sqrt().item())
    return max(gaps)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_lower_precision_copy_matches_with_margin(family, dtype):
    reference = checkpoint.weight_fingerprint(tiny_model(family), LAYERS)
    cast = checkpoint.weight_fingerprint(tiny_model(family).to(dtype), LAYERS)
    assert _gap(reference, cast) < WEIGHTS_TOLERANCE / 2  # bf16 rounding measures ~0.001-0.003 here
    assert checkpoint.weight_difference(reference["layers"], cast["layers"]) is None


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_reinitialised_model_fails_by_far(seed):
    reference = checkpoint.weight_fingerprint(tiny_model("llama"), LAYERS)
    other = checkpoint.weight_fingerprint(tiny_model("llama", seed=seed), LAYERS)
    assert _gap(reference, other) > 20 * WEIGHTS_TOLERANCE  # independent weights: projections differ by ~1
    assert checkpoint.weight_difference(reference["layers"], other["layers"]).startswith("layer 0 output projection")


def test_a_five_percent_change_of_one_edited_layer_is_caught():
    model = tiny_model("llama")
    reference = checkpoint.weight_fingerprint(model, LAYERS)
    weight = model.model.layers[2].self_attn.o_proj.weight
    with torch.no_grad():
        weight.add_(torch.randn(weight.shape, generator=torch.Generator().manual_seed(0)) * weight.std() * 0.05)
    assert checkpoint.weight_difference(reference["layers"],
                                        checkpoint.weight_fingerprint(model, LAYERS)["layers"]).startswith("layer 2")


def test_a_scaled_layer_is_caught_by_its_rms():
    model = tiny_model("llama")
    reference = checkpoint.weight_fingerprint(model, LAYERS)
    with torch.no_grad():
        model.model.layers[1].self_attn.o_proj.weight.mul_(1.05)  # projections are rms-normalised: only rms sees it
    why = checkpoint.weight_difference(reference["layers"], checkpoint.weight_fingerprint(model, LAYERS)["layers"])
    assert why.startswith("layer 1 output projection: weight rms")


def test_a_checkpoint_found_in_float32_loads_on_a_bf16_model(tmp_path):
    model = tiny_model("llama")
    edit = HeadEdit.identity(model, "rotation", (0, 2))
    checkpoint.save(tmp_path / "ckpt", edit, model)
    assert checkpoint.load(tmp_path / "ckpt", tiny_model("llama").to(torch.bfloat16)).layers == (0, 2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_same_weights_on_a_gpu_match():
    reference = checkpoint.weight_fingerprint(tiny_model("llama"), LAYERS)
    on_gpu = checkpoint.weight_fingerprint(tiny_model("llama").to("cuda", torch.bfloat16), LAYERS)
    assert checkpoint.weight_difference(reference["layers"], on_gpu["layers"]) is None
