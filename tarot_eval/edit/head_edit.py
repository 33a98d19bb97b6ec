"""The head edit as a module (pyvene-style): it owns its tensor and applies it at each edited
layer's output projection, either through forward pre-hooks or merged into the weights (peft-style).

`edit.attach(model)` keeps the tensor live (optimization, gradients, reassignment between calls);
`edit.merge(model)` rewrites the projection weights once, so inference costs exactly what the base
model costs, and `unmerge()` restores them bit for bit. Both compute z' = (z - b_V) M + b_V per head,
where b_V is the value bias the head reads (zero for models without one), matching the original
TransformerLens code, which folded value biases out of z before rotating.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from tarot_eval.edit import architectures, kinds


class HeadEdit(nn.Module):
    """An edit of `layers` of one kind (`tarot_eval.edit.kinds`: rotation angles [L, heads, head_dim/2], rescale factors
    [L, heads], ...).

    The tensor is a buffer (reassignable: `edit.params = ...`), or a Parameter of this module when
    `trainable`, so an optimizer trains it without touching the edited model's own parameters.
    """

    def __init__(self, method: str, layers, params: torch.Tensor, trainable: bool = False):
        super().__init__()
        self.method = method
        self.layers = tuple(int(layer) for layer in layers)
        if len(set(self.layers)) != len(self.layers):
            raise ValueError(f"layers repeat: {self.layers}")
        self.kind = kinds.kind(method)
        if params.shape[0] != len(self.layers):
            raise ValueError(f"params cover {params.shape[0]} layers but {len(self.layers)} layers are named")
        if trainable:
            self.params = nn.Parameter(params)
        else:
            self.register_buffer("params", params, persistent=False)

    @classmethod
    def identity(cls, model: nn.Module, method: str, layers, trainable: bool = False) -> "HeadEdit":
        geo = architectures.geometry(model)
        layers = tuple(layers)
        params = kinds.kind(method).identity_params(len(layers), geo.num_heads, geo.head_dim)
        return cls(method, layers, params, trainable=trainable)

    def extra_repr(self) -> str:
        return f"{self.method}, layers={self.layers}, params={tuple(self.params.shape)}"

    def check_fits(self, model: nn.Module) -> None:
        """Raise ValueError if the parameter shape does not match the model's heads."""
        geo = architectures.geometry(model)
        expected = self.kind.param_shape(len(self.layers), geo.num_heads, geo.head_dim)
        if tuple(self.params.shape) != expected:
            raise ValueError(
                f"{self.method} params have shape {tuple(self.params.shape)}, but this "
                f"{geo.model_type} model needs {expected} "
                f"({geo.num_heads} heads, head_dim {geo.head_dim})"
            )

    def forward(self, index: int, x: torch.Tensor, site: architectures.AttentionSite, geo) -> torch.Tensor:
        """The input `x` of edited layer `index`'s output projection, edited per head."""
        z = x.view(*x.shape[:-1], geo.num_heads, geo.head_dim)
        params = self.params[index].to(x.device)
        edited = self.kind.apply_heads(z, params)
        if site.value_bias is not None:
            # (z - b) M + c + b, written as (z M + c) + (b - b M) so identity params stay bit-exact
            b = site.value_bias.to(x.device, x.dtype)
            edited = edited + (b - self.kind.apply_linear(b, params))
        return edited.reshape(x.shape)

    def adds_bias(self, site: architectures.AttentionSite) -> bool:
        """Whether merging into `site` gives its projection a bias it does not have (a value bias or a constant)."""
        return site.out_proj.bias is None and (site.value_bias is not None or self.kind.has_constant)

    def attach(self, model: nn.Module) -> "AttachedEdit":
        """Apply the edit through forward pre-hooks on each edited layer's output projection."""
        return AttachedEdit(model, self)

    @contextmanager
    def attached(self, model: nn.Module):
        handle = self.attach(model)
        try:
            yield handle
        finally:
            handle.remove()

    def merge(self, model: nn.Module) -> "MergedEdit":
        """Rewrite the output projections so the plain forward pass includes the edit (peft's merge)."""
        return MergedEdit(model, self)


class AttachedEdit:
    """Handle for a hooked edit: `remove()` detaches; `params` can be reassigned between calls."""

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
        def pre_hook(module, args):
            (x, *rest) = args
            return (self.edit(index, x, site, self.geometry), *rest)

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


MERGED_ATTR = "_tarot_merged_edits"


def merged_edits(model: nn.Module) -> list["MergedEdit"]:
    """The edits merged into `model`'s weights now (what a weight fingerprint must not see)."""
    return list(getattr(model, MERGED_ATTR, ()))


class MergedEdit:
    """Handle for an edit merged into the weights; `unmerge()` restores the originals exactly."""
    def __init__(self, model: nn.Module, edit: HeadEdit):
        edit.check_fits(model)
        self.edit = edit
        self._model = model
        geo = architectures.geometry(model)
        self._saved: list[tuple[nn.Module, torch.Tensor, torch.Tensor | None, bool]] = []
        params = edit.params.detach()
        with torch.no_grad():
            for index, site in enumerate(architectures.attention_sites(model, edit.layers)):
                self._merge_site(site, params[index], geo)
        if not hasattr(model, MERGED_ATTR):
            setattr(model, MERGED_ATTR, [])
        getattr(model, MERGED_ATTR).append(self)

    def _merge_site(self, site, params, geo) -> None:
        proj = site.out_proj
        had_bias = proj.bias is not None
        self._saved.append((proj, proj.weight.detach().clone(), proj.bias.detach().clone() if had_bias else None, had_bias))
        rows = site.weight_rows  # [heads*head_dim, hidden] view of the weight
        # a copy even when the weight is already float64: the bias shift below needs the unedited rows
        original = rows.detach().to(torch.float64, copy=True).view(geo.num_heads, geo.head_dim, -1)
        params = params.to(rows.device, torch.float64)
        maps = self.edit.kind.linear_part(params, geo.head_dim)
        rows.copy_((maps @ original).reshape(rows.shape).to(rows.dtype))
        # (z - b) M + c + b = z M + (b (I - M) + c): the constant part moves into the projection bias
        constant = self.edit.kind.constant_part(params, geo.head_dim)
        if site.value_bias is not None:
            b = site.value_bias.to(rows.device, torch.float64)
            eye = torch.eye(geo.head_dim, dtype=torch.float64, device=rows.device)
            through = torch.einsum("hd,hde->he", b, eye - maps)
            constant = through if constant is None else constant + through
        if constant is None:
            return
        shift = torch.einsum("hd,hdo->o", constant, original)
        if not had_bias:
            out_features = rows.shape[1]
            proj.bias = nn.Parameter(torch.zeros(out_features, dtype=rows.dtype, device=rows.device))
        proj.bias.add_(shift.to(proj.bias.dtype).to(proj.bias.device))

    def unmerge(self) -> None:
        with torch.no_grad():
            for proj, weight, bias, had_bias in self._saved:
                proj.weight.copy_(weight)
                if had_bias:
                    proj.bias.copy_(bias)
                else:
                    proj.bias = None
        self._saved = []
        merged = getattr(self._model, MERGED_ATTR, [])
        if self in merged:
            merged.remove(self)
