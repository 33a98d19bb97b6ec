"""Attach a head edit to a model with forward pre-hooks, or fold it into the output projection.

Hooks keep the parameters live (for optimization, gradients included); folding rewrites
the projection weight once so inference costs exactly what the base model costs.
Both compute z' = (z - b_V) M + b_V per head, where b_V is the value bias the head
reads (zero for models without one), matching the original TransformerLens code,
which folded value biases out of z before rotating.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from tarot_eval import architectures, rotation


@dataclass
class HeadEdit:
    """An edit of `layers`: rotation angles [L, heads, head_dim/2] or rescale factors [L, heads]."""

    method: str
    layers: tuple[int, ...]
    params: torch.Tensor

    def __post_init__(self):
        self.layers = tuple(int(layer) for layer in self.layers)
        if len(set(self.layers)) != len(self.layers):
            raise ValueError(f"layers repeat: {self.layers}")
        if self.method not in rotation.METHODS:
            raise ValueError(f"unknown method {self.method!r}; expected one of {rotation.METHODS}")
        if self.params.shape[0] != len(self.layers):
            raise ValueError(
                f"params cover {self.params.shape[0]} layers but {len(self.layers)} layers are named"
            )

    @classmethod
    def identity(cls, model: nn.Module, method: str, layers) -> "HeadEdit":
        geo = architectures.geometry(model)
        layers = tuple(layers)
        params = rotation.identity_params(method, len(layers), geo.num_heads, geo.head_dim)
        return cls(method, layers, params)

    def check_fits(self, model: nn.Module) -> None:
        """Raise ValueError if the parameter shape does not match the model's heads."""
        geo = architectures.geometry(model)
        expected = rotation.param_shape(self.method, len(self.layers), geo.num_heads, geo.head_dim)
        if tuple(self.params.shape) != expected:
            raise ValueError(
                f"{self.method} params have shape {tuple(self.params.shape)}, but this "
                f"{geo.model_type} model needs {expected} "
                f"({geo.num_heads} heads, head_dim {geo.head_dim})"
            )


class AttachedEdit:
    """Handle for hooked edits: `remove()` detaches; `params` can be reassigned between calls."""

    def __init__(self, model: nn.Module, edit: HeadEdit):
        edit.check_fits(model)
        self.edit = edit
        self.model = model
        self.geometry = architectures.geometry(model)
        self._handles = self._register()

    def _register(self) -> list:
        return [
            site.out_proj.register_forward_pre_hook(self._hook(i, site))
            for i, site in enumerate(architectures.attention_sites(self.model, self.edit.layers))
        ]

    @property
    def params(self) -> torch.Tensor:
        return self.edit.params

    @params.setter
    def params(self, value: torch.Tensor) -> None:
        if value.shape != self.edit.params.shape:
            raise ValueError(f"params shape {tuple(value.shape)} != {tuple(self.edit.params.shape)}")
        self.edit.params = value

    def _hook(self, index: int, site: architectures.AttentionSite):
        heads, head_dim = self.geometry.num_heads, self.geometry.head_dim

        def pre_hook(module, args):
            (x, *rest) = args
            z = x.view(*x.shape[:-1], heads, head_dim)
            params = self.edit.params[index].to(x.device)
            edited = rotation.apply_heads(self.edit.method, z, params)
            if site.value_bias is not None:
                # (z - b) M + b, written as z M + (b - b M) so identity params stay bit-exact
                b = site.value_bias.to(x.device, x.dtype)
                edited = edited + (b - rotation.apply_heads(self.edit.method, b, params))
            return (edited.reshape(x.shape), *rest)

        return pre_hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    @contextmanager
    def suspended(self):
        """The unedited model inside the block (e.g. to rate text under the base model); the edit is back after."""
        if not self._handles:
            raise ValueError("the edit is not attached")
        self.remove()
        try:
            yield
        finally:
            self._handles = self._register()


def attach(model: nn.Module, edit: HeadEdit) -> AttachedEdit:
    """Apply `edit` through forward pre-hooks on each edited layer's output projection."""
    return AttachedEdit(model, edit)


@contextmanager
def attached(model: nn.Module, edit: HeadEdit):
    handle = attach(model, edit)
    try:
        yield handle
    finally:
        handle.remove()


FOLDED_ATTR = "_tarot_folded_edits"


def folded_edits(model: nn.Module) -> list["FoldedEdit"]:
    """The edits folded into `model`'s weights now (what a weight fingerprint must not see)."""
    return list(getattr(model, FOLDED_ATTR, ()))


class FoldedEdit:
    """Handle for an edit folded into the weights; `unfold()` restores the originals exactly."""

    def __init__(self, model: nn.Module, edit: HeadEdit):
        edit.check_fits(model)
        self.edit = edit
        self._model = model
        geo = architectures.geometry(model)
        self._saved: list[tuple[nn.Module, torch.Tensor, torch.Tensor | None, bool]] = []
        params = edit.params.detach()
        with torch.no_grad():
            for index, site in enumerate(architectures.attention_sites(model, edit.layers)):
                self._fold_site(site, params[index], geo)
        if not hasattr(model, FOLDED_ATTR):
            setattr(model, FOLDED_ATTR, [])
        getattr(model, FOLDED_ATTR).append(self)

    def _fold_site(self, site, params, geo) -> None:
        proj = site.out_proj
        had_bias = proj.bias is not None
        self._saved.append((proj, proj.weight.detach().clone(), proj.bias.detach().clone() if had_bias else None, had_bias))
        rows = site.weight_rows  # [heads*head_dim, hidden] view of the weight
        # a copy even when the weight is already float64: the bias shift below needs the unedited rows
        original = rows.detach().to(torch.float64, copy=True).view(geo.num_heads, geo.head_dim, -1)
        maps = rotation.head_matrices(self.edit.method, params.to(rows.device, torch.float64), geo.head_dim)
        rows.copy_((maps @ original).reshape(rows.shape).to(rows.dtype))
        if site.value_bias is None:
            return
        # (z - b) M + b = z M + b (I - M): the constant part moves into the projection bias
        b = site.value_bias.to(rows.device, torch.float64)
        eye = torch.eye(geo.head_dim, dtype=torch.float64, device=rows.device)
        shift = torch.einsum("hd,hde,heo->o", b, eye - maps, original)
        if not had_bias:
            out_features = rows.shape[1]
            proj.bias = nn.Parameter(torch.zeros(out_features, dtype=rows.dtype, device=rows.device))
        proj.bias.add_(shift.to(proj.bias.dtype).to(proj.bias.device))

    def unfold(self) -> None:
        with torch.no_grad():
            for proj, weight, bias, had_bias in self._saved:
                proj.weight.copy_(weight)
                if had_bias:
                    proj.bias.copy_(bias)
                else:
                    proj.bias = None
        self._saved = []
        folded = getattr(self._model, FOLDED_ATTR, [])
        if self in folded:
            folded.remove(self)


def fold(model: nn.Module, edit: HeadEdit) -> FoldedEdit:
    """Rewrite the output projections so the plain forward pass includes `edit`."""
    return FoldedEdit(model, edit)
