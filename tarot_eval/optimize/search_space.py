"""Coordinates the optimizers search in: a point x in the unit cube [0, 1]^d maps to edit parameters.

- `full`: one coordinate per parameter (the paper's space: every angle of every head pair).
- `head`: one value per head, shared by all its coordinates (rotation: its pairs); same as `full` for
  a kind with one parameter per head (rescale).
- `layer`: one value per edited layer, shared by all its heads and pairs.
- `embed:D`: a fixed random linear embedding of D coordinates into the full space (REMBO-style),
  clipped to the bounds; seeded, so the same spec always gives the same map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from tarot_eval.edit import kinds

KINDS = ("full", "head", "layer", "embed")


def parse_bounds(text: str | float, method: str) -> tuple[float, float]:
    """'pi/4', '0.785' or a number -> the bounds of `method`'s parameters (symmetric; rescale's are always [0, 1])."""
    kind = kinds.kind(method)
    if kind.fixed_bounds is not None:
        return kind.fixed_bounds
    if isinstance(text, (int, float)):
        limit = float(text)
    else:
        cleaned = text.strip().lower().replace(" ", "")
        try:
            if "pi" in cleaned:
                numerator, _, denominator = cleaned.partition("/")
                factor = numerator.replace("*", "").replace("pi", "") or "1"
                limit = float(factor) * math.pi / (float(denominator) if denominator else 1.0)
            else:
                limit = float(cleaned)
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"angle limit {text!r} is not a number or a multiple of pi like 'pi/4'") from None
    if not 0 < limit <= math.pi:
        raise ValueError(f"angle limit must be in (0, pi], got {limit}")
    return kind.bounds(limit)


@dataclass(frozen=True)
class SearchSpace:
    kind: str
    method: str
    shape: tuple[int, ...]  # parameter shape, e.g. [layers, heads, head_dim/2]
    bounds: tuple[float, float]
    embed_dim: int = 0
    seed: int = 0

    @classmethod
    def parse(cls, spec: str, method: str, shape, bounds, seed: int = 0) -> "SearchSpace":
        kind, _, size = spec.partition(":")
        if kind not in KINDS:
            raise ValueError(f"unknown search space {spec!r}; expected one of full, head, layer, embed:D")
        if kind == "embed":
            if not size.isdigit() or int(size) < 1:
                raise ValueError(f"search space {spec!r}: write embed:D with D a positive integer, e.g. embed:16")
            return cls(kind, method, tuple(shape), tuple(bounds), int(size), seed)
        if size:
            raise ValueError(f"search space {spec!r}: only embed takes a size")
        return cls(kind, method, tuple(shape), tuple(bounds))

    @property
    def one_per_head(self) -> bool:
        """The kind has one parameter per head ([layers, heads]): `head` is then `full`."""
        return len(self.shape) == 2

    @property
    def spec(self) -> str:
        return f"embed:{self.embed_dim}" if self.kind == "embed" else self.kind

    @property
    def dim(self) -> int:
        if self.kind == "full" or (self.kind == "head" and self.one_per_head):
            return math.prod(self.shape)
        if self.kind == "head":
            return math.prod(self.shape[:2])
        if self.kind == "layer":
            return self.shape[0]
        return self.embed_dim

    def _embedding(self) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed)
        matrix = torch.randn(math.prod(self.shape), self.embed_dim, generator=generator, dtype=torch.float64)
        return matrix / math.sqrt(self.embed_dim / 3.0)  # unit variance for x uniform in the cube

    def to_params(self, x: torch.Tensor) -> torch.Tensor:
        """Parameters for point x (differentiable in x), shape `self.shape`."""
        if x.shape != (self.dim,):
            raise ValueError(f"point has shape {tuple(x.shape)}, search space {self.spec} has dimension {self.dim}")
        low, high = self.bounds
        if self.kind == "embed":
            z = (self._embedding().to(x.dtype) @ (2 * x - 1)).clamp(-1, 1)
            return ((low + high) / 2 + (high - low) / 2 * z).view(self.shape)
        values = low + (high - low) * x
        if self.kind == "full" or (self.kind == "head" and self.one_per_head):
            return values.view(self.shape)
        if self.kind == "head":
            return values.view(*self.shape[:2], 1).expand(self.shape)
        return values.view(-1, *([1] * (len(self.shape) - 1))).expand(self.shape)

    def identity_point(self) -> torch.Tensor | None:
        """The point whose parameters leave the model unchanged, if this space contains one."""
        identity = torch.full(self.shape, kinds.kind(self.method).identity_value)
        low, high = self.bounds
        if self.kind == "embed":
            x = torch.full((self.dim,), 0.5, dtype=torch.float64)
        else:
            x = torch.full((self.dim,), (float(identity.flatten()[0]) - low) / (high - low), dtype=torch.float64)
        if not (0 <= x).all() or not (x <= 1).all():
            return None
        return x if torch.allclose(self.to_params(x).float(), identity, atol=1e-7) else None
