"""`rescale`, the ablation baseline: one factor in [0, 1] per head, z' = alpha z; parameters [layers, heads]."""

from __future__ import annotations

import torch

from tarot_eval.edit.kinds.registry import EditKind, register_edit_kind


@register_edit_kind
class Rescale(EditKind):
    name = "rescale"
    identity_value = 1.0
    fixed_bounds = (0.0, 1.0)
    help = "one factor in [0, 1] per head"

    def param_shape(self, num_layers: int, num_heads: int, head_dim: int) -> tuple[int, ...]:
        return (num_layers, num_heads)

    def apply_heads(self, z: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        return z * params.to(z.dtype)[:, None]

    def linear_part(self, params: torch.Tensor, head_dim: int) -> torch.Tensor:
        eye = torch.eye(head_dim, dtype=params.dtype, device=params.device)
        return params[:, None, None] * eye
