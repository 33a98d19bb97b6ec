"""Where each model family keeps its attention output projection, head geometry and value bias.

The edit point is the input of the projection that maps concatenated head outputs
back to the residual stream (`o_proj` in Llama-like models, `c_proj` in GPT-2, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

# family -> (path to the decoder layer list, attention attribute, output projection attribute)
LAYOUTS: dict[str, tuple[str, str, str]] = {
    "llama": ("model.layers", "self_attn", "o_proj"),
    "mistral": ("model.layers", "self_attn", "o_proj"),
    "qwen2": ("model.layers", "self_attn", "o_proj"),
    "qwen3": ("model.layers", "self_attn", "o_proj"),
    "phi3": ("model.layers", "self_attn", "o_proj"),
    "gemma": ("model.layers", "self_attn", "o_proj"),
    "gemma2": ("model.layers", "self_attn", "o_proj"),
    "gemma3_text": ("model.layers", "self_attn", "o_proj"),
    "olmo2": ("model.layers", "self_attn", "o_proj"),
    "gpt2": ("transformer.h", "attn", "c_proj"),
}


@dataclass(frozen=True)
class AttentionSite:
    """One layer's edit point."""

    layer: int
    out_proj: nn.Module  # nn.Linear (weight [hidden, heads*head_dim]) or GPT-2 Conv1D (weight [heads*head_dim, hidden])
    value_bias: torch.Tensor | None  # [heads, head_dim], the b_V each query head reads, or None

    @property
    def weight_rows(self) -> torch.Tensor:
        """The projection weight as [heads*head_dim, hidden] (a view: y = z_rows @ weight_rows)."""
        weight = self.out_proj.weight
        return weight if _is_conv1d(self.out_proj) else weight.T


@dataclass(frozen=True)
class HeadGeometry:
    model_type: str
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int


def _is_conv1d(module: nn.Module) -> bool:
    """GPT-2-style projections store their weight [in, out] (transformers' Conv1D), not nn.Linear's [out, in]."""
    return isinstance(module, Conv1D)


def model_type(model: nn.Module) -> str:
    config = getattr(model, "config", None)
    kind = getattr(config, "model_type", None)
    if kind not in LAYOUTS:
        supported = ", ".join(sorted(LAYOUTS))
        raise NotImplementedError(
            f"tarot-eval does not know where {type(model).__name__} (model_type={kind!r}) keeps its "
            f"attention output projection; supported families: {supported}. "
            "Add an entry to tarot_eval.edit.architectures.LAYOUTS."
        )
    return kind


def geometry(model: nn.Module) -> HeadGeometry:
    """Layer count, head count and head size, read from the config and checked against the weights."""
    kind = model_type(model)
    config = model.config
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    num_heads = text_config.num_attention_heads
    num_kv = getattr(text_config, "num_key_value_heads", None) or num_heads
    head_dim = getattr(text_config, "head_dim", None) or text_config.hidden_size // num_heads
    layers = _layer_list(model, kind)
    out_proj = _out_proj(layers[0], kind)
    width = out_proj.weight.shape[0] if _is_conv1d(out_proj) else out_proj.weight.shape[1]
    if width != num_heads * head_dim:
        raise ValueError(
            f"{kind}: output projection takes {width} inputs but config says "
            f"{num_heads} heads x {head_dim} = {num_heads * head_dim}"
        )
    return HeadGeometry(kind, len(layers), num_heads, num_kv, head_dim)


def attention_sites(model: nn.Module, layers: list[int] | tuple[int, ...]) -> list[AttentionSite]:
    """The edit point of each requested layer, in the order given."""
    kind = model_type(model)
    geo = geometry(model)
    blocks = _layer_list(model, kind)
    sites = []
    for index in layers:
        if not 0 <= index < len(blocks):
            raise ValueError(f"layer {index} out of range: {kind} model has {len(blocks)} layers")
        out_proj = _out_proj(blocks[index], kind)
        sites.append(AttentionSite(index, out_proj, _value_bias(blocks[index], kind, geo)))
    return sites


def _layer_list(model: nn.Module, kind: str) -> nn.ModuleList:
    return model.get_submodule(LAYOUTS[kind][0])


def _out_proj(block: nn.Module, kind: str) -> nn.Module:
    _, attn_name, proj_name = LAYOUTS[kind]
    return getattr(getattr(block, attn_name), proj_name)


def _value_bias(block: nn.Module, kind: str, geo: HeadGeometry) -> torch.Tensor | None:
    """b_V per query head ([heads, head_dim]), expanding grouped-query KV heads; None if absent."""
    attn = getattr(block, LAYOUTS[kind][1])
    if kind == "gpt2":
        bias = attn.c_attn.bias
        hidden = geo.num_heads * geo.head_dim
        per_kv = None if bias is None else bias[2 * hidden : 3 * hidden]
    elif hasattr(attn, "v_proj"):
        per_kv = attn.v_proj.bias
    else:  # fused qkv (phi3): its bias, if any, holds v last
        qkv = getattr(attn, "qkv_proj", None)
        bias = None if qkv is None else qkv.bias
        per_kv = None if bias is None else bias[-geo.num_kv_heads * geo.head_dim :]
    if per_kv is None:
        return None
    per_kv = per_kv.detach().view(geo.num_kv_heads, geo.head_dim)
    return per_kv.repeat_interleave(geo.num_heads // geo.num_kv_heads, dim=0)
