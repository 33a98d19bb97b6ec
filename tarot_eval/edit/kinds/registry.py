"""The edit-kind registry: a checkpoint's or a setting's `method` name -> the `EditKind` that owns its
parametrization, bounds, per-head map and the affine form a merge folds into the projection."""

from __future__ import annotations

import torch

from tarot_eval.registry import Registry


class EditKind:
    """One kind of per-head edit of the output projection's input z (one layer: [..., heads, head_dim]):
    z' = z M + c per head, M from `linear_part`, c from `constant_part` (None: no constant)."""

    name: str = ""
    identity_value: float = 0.0  # the parameter value that leaves the model unchanged
    fixed_bounds: tuple[float, float] | None = None  # bounds whatever the limit asked for (rescale's [0, 1])
    help: str = ""  # one line for --method
    has_constant: bool = False  # `constant_part` is not None (a merge adds it to the projection bias)

    def param_shape(self, num_layers: int, num_heads: int, head_dim: int) -> tuple[int, ...]:
        raise NotImplementedError

    def identity_params(self, num_layers: int, num_heads: int, head_dim: int) -> torch.Tensor:
        return torch.full(self.param_shape(num_layers, num_heads, head_dim), self.identity_value)

    def apply_heads(self, z: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """One layer's edit of z [..., heads, head_dim]; identity params return z bit for bit."""
        raise NotImplementedError

    def apply_linear(self, z: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """z M alone (without the constant): what the value bias b_V goes through."""
        return self.apply_heads(z, params)

    def linear_part(self, params: torch.Tensor, head_dim: int) -> torch.Tensor:
        """The per-head matrices M, [heads, head_dim, head_dim]."""
        raise NotImplementedError

    def constant_part(self, params: torch.Tensor, head_dim: int) -> torch.Tensor | None:
        """The per-head constants c, [heads, head_dim], or None."""
        return None

    def bounds(self, limit: float) -> tuple[float, float]:
        """The parameter bounds for the model's edit limit (`angle_limit`)."""
        return self.fixed_bounds or (-limit, limit)

    def check_bounds(self, bounds: tuple[float, float]) -> None:
        """ValueError when `bounds` leave what this kind allows."""
        if self.fixed_bounds is not None and (bounds[0] < self.fixed_bounds[0] or bounds[1] > self.fixed_bounds[1]):
            raise ValueError(f"{self.name} bounds {tuple(bounds)} leave {list(self.fixed_bounds)}")


KINDS: Registry[EditKind] = Registry("edit kind", "name")
register_edit_kind = KINDS.register
names = KINDS.names


def kind(name: str) -> EditKind:
    """The registered edit kind `name` (a ValueError naming the registered ones otherwise)."""
    return KINDS[name]
