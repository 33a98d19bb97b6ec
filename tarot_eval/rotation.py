"""Per-head linear maps of TaRot: block-diagonal pair rotations and the rescaling baseline.

Pure torch, no model knowledge. A head's output z (row vector, length head_dim) becomes
z·M. For rotations M is block-diagonal with 2x2 blocks on adjacent pairs (2i, 2i+1):
    z'[2i]   =  z[2i] cos t + z[2i+1] sin t
    z'[2i+1] = -z[2i] sin t + z[2i+1] cos t
(the convention of the original code). For rescaling M = alpha * I, alpha in [0, 1].
"""

from __future__ import annotations

import torch

METHODS = ("rotation", "rescale")


def param_shape(method: str, num_layers: int, num_heads: int, head_dim: int) -> tuple[int, ...]:
    """Shape of the parameter tensor for `method` on `num_layers` edited layers."""
    if method == "rotation":
        if head_dim % 2:
            raise ValueError(f"rotation needs an even head_dim, got {head_dim}")
        return (num_layers, num_heads, head_dim // 2)
    if method == "rescale":
        return (num_layers, num_heads)
    raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")


def identity_params(method: str, num_layers: int, num_heads: int, head_dim: int) -> torch.Tensor:
    """Parameters that leave the model unchanged: zero angles or unit scales."""
    shape = param_shape(method, num_layers, num_heads, head_dim)
    return torch.zeros(shape) if method == "rotation" else torch.ones(shape)


def apply_heads(method: str, z: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Apply one layer's edit to z of shape [..., heads, head_dim].

    params: [heads, head_dim/2] angles (rotation) or [heads] factors (rescale).
    Zero angles return values bit-identical to z.
    """
    params = params.to(z.dtype)
    if method == "rescale":
        return z * params[:, None]
    if method != "rotation":
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    cos, sin = params.cos(), params.sin()
    even, odd = z[..., 0::2], z[..., 1::2]
    rotated = torch.stack((even * cos + odd * sin, odd * cos - even * sin), dim=-1)
    return rotated.flatten(-2)


def head_matrices(method: str, params: torch.Tensor, head_dim: int) -> torch.Tensor:
    """The per-head matrices M, shape [heads, head_dim, head_dim], with z' = z @ M."""
    num_heads = params.shape[0]
    if method == "rescale":
        eye = torch.eye(head_dim, dtype=params.dtype, device=params.device)
        return params[:, None, None] * eye
    if method != "rotation":
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    cos, sin = params.cos(), params.sin()
    m = torch.zeros(num_heads, head_dim, head_dim, dtype=params.dtype, device=params.device)
    even = torch.arange(0, head_dim, 2, device=params.device)
    m[:, even, even] = cos
    m[:, even, even + 1] = -sin
    m[:, even + 1, even] = sin
    m[:, even + 1, even + 1] = cos
    return m
