"""`offset`, LoFiT-style head offsets (arXiv 2406.01563): per head a learned vector added to its output,
z' = z + c, at the rotation's site; parameters [layers, heads, head_dim], each within ±angle_limit's number.
Merging adds W_O c to the projection's bias (one is added where the projection has none)."""

from __future__ import annotations

import torch

from tarot_eval.edit.kinds.registry import EditKind, register_edit_kind


@register_edit_kind
class Offset(EditKind):
    name = "offset"
    has_constant = True
    help = "a learned vector added to each head's output (LoFiT)"

    def param_shape(self, num_layers: int, num_heads: int, head_dim: int) -> tuple[int, ...]:
        return (num_layers, num_heads, head_dim)

    def apply_heads(self, z: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        return z + params.to(z.dtype)

    def apply_linear(self, z: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        return z

    def linear_part(self, params: torch.Tensor, head_dim: int) -> torch.Tensor:
        eye = torch.eye(head_dim, dtype=params.dtype, device=params.device)
        return eye.expand(params.shape[0], head_dim, head_dim)

    def constant_part(self, params: torch.Tensor, head_dim: int) -> torch.Tensor:
        return params
