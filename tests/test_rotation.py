import math

import pytest
import torch

from tarot_eval import rotation


def test_pair_rotation_matches_the_original_convention():
    z = torch.tensor([[1.0, 2.0, 3.0, 4.0]])  # one head, head_dim 4
    angles = torch.tensor([[math.pi / 2, math.pi / 6]])
    out = rotation.apply_heads("rotation", z, angles)
    c, s = math.cos(math.pi / 6), math.sin(math.pi / 6)
    expected = torch.tensor([[2.0, -1.0, 3 * c + 4 * s, -3 * s + 4 * c]])
    torch.testing.assert_close(out, expected)


def test_matrices_agree_with_elementwise_rotation_and_are_orthogonal():
    torch.manual_seed(0)
    z = torch.randn(2, 5, 3, 8, dtype=torch.float64)
    angles = (torch.rand(3, 4, dtype=torch.float64) - 0.5) * 2
    matrices = rotation.head_matrices("rotation", angles, 8)
    torch.testing.assert_close(rotation.apply_heads("rotation", z, angles), torch.einsum("bphd,hde->bphe", z, matrices))
    eye = torch.eye(8, dtype=torch.float64).expand(3, 8, 8)
    torch.testing.assert_close(matrices @ matrices.transpose(1, 2), eye)
    torch.testing.assert_close(z.norm(dim=-1), rotation.apply_heads("rotation", z, angles).norm(dim=-1))


def test_identity_params_are_bit_exact():
    z = torch.randn(4, 7, 3, 6)
    for method in rotation.METHODS:
        params = rotation.identity_params(method, 1, 3, 6)[0]
        assert torch.equal(rotation.apply_heads(method, z, params), z)


def test_rescale_scales_each_head():
    z = torch.randn(2, 3, 4)
    factors = torch.tensor([0.0, 0.5, 1.0])
    out = rotation.apply_heads("rescale", z, factors)
    torch.testing.assert_close(out, z * factors[:, None])
    torch.testing.assert_close(torch.einsum("phd,hde->phe", z, rotation.head_matrices("rescale", factors, 4)), out)


def test_bad_method_and_odd_head_dim_are_refused():
    with pytest.raises(ValueError, match="unknown method"):
        rotation.param_shape("shear", 1, 2, 4)
    with pytest.raises(ValueError, match="even head_dim"):
        rotation.param_shape("rotation", 1, 2, 5)
