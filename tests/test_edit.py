"""Hooks and folding on every supported family, each a tiny random model built from a config."""

import pytest
import torch
from conftest import TINY_CONFIGS, tiny_model

from tarot_eval.edit import architectures, kinds
from tarot_eval.edit.head_edit import HeadEdit

FAMILIES = sorted(TINY_CONFIGS)


def _tokens():
    return torch.randint(3, 300, (2, 9), generator=torch.Generator().manual_seed(1))


def _random_edit(model, method, layers=(0, 2), seed=0):
    edit = HeadEdit.identity(model, method, layers)
    generator = torch.Generator().manual_seed(seed)
    low, high = kinds.kind(method).bounds(torch.pi / 4)
    edit.params = low + (high - low) * torch.rand(edit.params.shape, generator=generator)
    return edit


@pytest.mark.parametrize("family", FAMILIES)
def test_identity_edit_is_bit_identical(family):
    model = tiny_model(family)
    tokens = _tokens()
    with torch.no_grad():
        base = model(tokens).logits
        for method in kinds.names():
            with HeadEdit.identity(model, method, range(3)).attached(model):
                assert torch.equal(model(tokens).logits, base)
            handle = HeadEdit.identity(model, method, range(3)).merge(model)
            assert torch.equal(model(tokens).logits, base)
            handle.unmerge()


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", kinds.names())
def test_hook_equals_fold_and_unfold_restores(family, method):
    model = tiny_model(family)
    tokens = _tokens()
    edit = _random_edit(model, method)
    with torch.no_grad():
        base = model(tokens).logits
        with edit.attached(model):
            hooked = model(tokens).logits
        handle = edit.merge(model)
        folded = model(tokens).logits
        handle.unmerge()
        restored = model(tokens).logits
    assert (hooked - base).abs().max() > 1e-3  # the edit does something
    assert (hooked - folded).abs().max() <= 1e-5
    assert torch.equal(restored, base)


@pytest.mark.parametrize("family", ["qwen2", "gpt2"])
def test_value_bias_is_rotated_around(family):
    """With a value bias b, the projection input becomes (z - b) M + b, as in the TransformerLens original."""
    model = tiny_model(family)
    edit = _random_edit(model, "rotation", layers=(1,))
    site = architectures.attention_sites(model, (1,))[0]
    assert site.value_bias is not None and site.value_bias.abs().sum() > 0

    def projection_input():
        seen = []
        probe = site.out_proj.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
        with torch.no_grad():
            model(_tokens())
        probe.remove()
        return seen[0]

    base_input = projection_input()
    with edit.attached(model):  # hooks run in registration order: the probe sees the edited input
        edited_input = projection_input()
    geo = architectures.geometry(model)
    z = base_input.view(2, 9, geo.num_heads, geo.head_dim)
    b = site.value_bias
    expected = kinds.kind("rotation").apply_heads(z - b, edit.params[0]) + b
    torch.testing.assert_close(edited_input.view_as(expected), expected)


def test_gradients_reach_the_angles():
    model = tiny_model("llama")
    for p in model.parameters():
        p.requires_grad_(False)
    edit = _random_edit(model, "rotation")
    edit.params.requires_grad_(True)
    with edit.attached(model):
        loss = model(_tokens()).logits.logsumexp(-1).mean()
        loss.backward()
    assert edit.params.grad is not None and edit.params.grad.abs().sum() > 0


def test_params_can_be_swapped_between_calls():
    model = tiny_model("llama")
    tokens = _tokens()
    edit = HeadEdit.identity(model, "rotation", (0,))
    with torch.no_grad(), edit.attached(model) as handle:
        base = model(tokens).logits
        handle.params = torch.full_like(edit.params, 0.3)
        moved = model(tokens).logits
        with pytest.raises(ValueError, match="shape"):
            handle.params = torch.zeros(2, 2)
    assert not torch.equal(base, moved)


def test_shape_mismatch_and_bad_layers_are_refused():
    model = tiny_model("llama")
    with pytest.raises(ValueError, match=r"needs \(1, 4, 4\)"):
        HeadEdit("rotation", (0,), torch.zeros(1, 3, 4)).attach(model)
    with pytest.raises(ValueError, match="out of range"):
        HeadEdit("rotation", (7,), torch.zeros(1, 4, 4)).attach(model)
    with pytest.raises(ValueError, match="repeat"):
        HeadEdit("rotation", (0, 0), torch.zeros(2, 4, 4))


def test_unknown_architecture_names_the_family():
    class NotAModel(torch.nn.Module):
        config = type("C", (), {"model_type": "mamba"})()

    with pytest.raises(NotImplementedError, match="mamba"):
        architectures.geometry(NotAModel())
