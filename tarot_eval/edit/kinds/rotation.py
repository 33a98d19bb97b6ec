"""`rotation`, TaRot's edit: per head a block-diagonal rotation of head_dim/2 angles on the pairs (2i, 2i+1).

    z'[2i]   =  z[2i] cos t + z[2i+1] sin t
    z'[2i+1] = -z[2i] sin t + z[2i+1] cos t
(the convention of the original code); parameters [layers, heads, head_dim/2], bounded by ±angle_limit.
"""

from __future__ import annotations

import torch

from tarot_eval.edit.kinds.registry import EditKind, register_edit_kind


@register_edit_kind
class Rotation(EditKind):
    name = "rotation"
    help = "the paper's edit: head_dim/2 angles per head"

    def param_shape(self, num_layers: int, num_heads: int, head_dim: int) -> tuple[int, ...]:
        if head_dim % 2:
            raise ValueError(f"rotation needs an even head_dim, got {head_dim}")
        return (num_layers, num_heads, head_dim // 2)

    def apply_heads(self, z: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        params = params.to(z.dtype)
        cos, sin = params.cos(), params.sin()
        even, odd = z[..., 0::2], z[..., 1::2]
        return torch.stack((even * cos + odd * sin, odd * cos - even * sin), dim=-1).flatten(-2)

    def linear_part(self, params: torch.Tensor, head_dim: int) -> torch.Tensor:
        cos, sin = params.cos(), params.sin()
        m = torch.zeros(params.shape[0], head_dim, head_dim, dtype=params.dtype, device=params.device)
        even = torch.arange(0, head_dim, 2, device=params.device)
        m[:, even, even] = cos
        m[:, even, even + 1] = -sin
        m[:, even + 1, even] = sin
        m[:, even + 1, even + 1] = cos
        return m
