import math

import pytest
import torch

from tarot_eval.edit import kinds


def test_pair_rotation_matches_the_original_convention():
    z = torch.tensor([[1.0, 2.0, 3.0, 4.0]])  # one head, head_dim 4
    angles = torch.tensor([[math.pi / 2, math.pi / 6]])
    out = kinds.kind("rotation").apply_heads(z, angles)
    c, s = math.cos(math.pi / 6), math.sin(math.pi / 6)
    expected = torch.tensor([[2.0, -1.0, 3 * c + 4 * s, -3 * s + 4 * c]])
    torch.testing.assert_close(out, expected)


def test_matrices_agree_with_elementwise_rotation_and_are_orthogonal():
    torch.manual_seed(0)
    z = torch.randn(2, 5, 3, 8, dtype=torch.float64)
    angles = (torch.rand(3, 4, dtype=torch.float64) - 0.5) * 2
    matrices = kinds.kind("rotation").linear_part(angles, 8)
    torch.testing.assert_close(kinds.kind("rotation").apply_heads(z, angles), torch.einsum("bphd,hde->bphe", z, matrices))
    eye = torch.eye(8, dtype=torch.float64).expand(3, 8, 8)
    torch.testing.assert_close(matrices @ matrices.transpose(1, 2), eye)
    torch.testing.assert_close(z.norm(dim=-1), kinds.kind("rotation").apply_heads(z, angles).norm(dim=-1))


def test_identity_params_are_bit_exact():
    z = torch.randn(4, 7, 3, 6)
    for method in kinds.names():
        params = kinds.kind(method).identity_params(1, 3, 6)[0]
        assert torch.equal(kinds.kind(method).apply_heads(z, params), z)


def test_rescale_scales_each_head():
    z = torch.randn(2, 3, 4)
    factors = torch.tensor([0.0, 0.5, 1.0])
    out = kinds.kind("rescale").apply_heads(z, factors)
    torch.testing.assert_close(out, z * factors[:, None])
    torch.testing.assert_close(torch.einsum("phd,hde->phe", z, kinds.kind("rescale").linear_part(factors, 4)), out)


def test_bad_method_and_odd_head_dim_are_refused():
    with pytest.raises(ValueError, match="unknown edit kind"):
        kinds.kind("shear").param_shape(1, 2, 4)
    with pytest.raises(ValueError, match="even head_dim"):
        kinds.kind("rotation").param_shape(1, 2, 5)


def test_offset_adds_its_vector_to_each_head_and_merges_into_a_new_bias():
    from conftest import tiny_model

    from tarot_eval.edit import architectures
    from tarot_eval.edit.head_edit import HeadEdit

    z = torch.randn(2, 5, 3, 4)
    offsets = torch.randn(3, 4)
    kind = kinds.kind("offset")
    torch.testing.assert_close(kind.apply_heads(z, offsets), z + offsets)
    torch.testing.assert_close(torch.einsum("bphd,hde->bphe", z, kind.linear_part(offsets, 4)) + kind.constant_part(offsets, 4),
                               kind.apply_heads(z, offsets))
    model = tiny_model("llama")  # o_proj without a bias: the merge adds one, the unmerge takes it away
    edit = HeadEdit.identity(model, "offset", (1,))
    edit.params = torch.randn(edit.params.shape) * 0.3
    site = architectures.attention_sites(model, (1,))[0]
    assert site.out_proj.bias is None and edit.adds_bias(site)
    tokens = torch.randint(3, 300, (2, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        with edit.attached(model):
            hooked = model(tokens).logits
        handle = edit.merge(model)
        assert site.out_proj.bias is not None
        torch.testing.assert_close(model(tokens).logits, hooked, atol=1e-5, rtol=0)
        handle.unmerge()
    assert site.out_proj.bias is None


def test_offset_bounds_follow_the_limit_and_rescale_keeps_its_own():
    assert kinds.kind("offset").bounds(0.5) == (-0.5, 0.5)
    assert kinds.kind("rescale").bounds(0.5) == (0.0, 1.0)
    with pytest.raises(ValueError, match=r"rescale bounds \(0.0, 1.5\) leave \[0.0, 1.0\]"):
        kinds.kind("rescale").check_bounds((0.0, 1.5))
