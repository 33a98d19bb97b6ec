"""Checkpoint directory: `edit.safetensors` (the parameters) + `tarot_config.json` (what they mean).

Loading validates everything against the model it is applied to and refuses a mismatch
with an error naming both sides. No pickle anywhere.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from tarot_eval import architectures, rotation
from tarot_eval.edit import HeadEdit

FORMAT_VERSION = 1
CONFIG_NAME = "tarot_config.json"
TENSORS_NAME = "edit.safetensors"
TENSOR_KEY = "params"
REQUIRED_KEYS = ("format_version", "method", "layers", "num_heads", "head_dim", "bounds", "base_model")
BOUND_TOLERANCE = 1e-6


class CheckpointError(ValueError):
    """A checkpoint that is malformed or does not belong to the model it is applied to."""


def model_identity(model: nn.Module) -> dict:
    """Name and shape fingerprint of a model: same architecture and sizes => same fingerprint."""
    geo = architectures.geometry(model)
    shapes = sorted((name, list(p.shape)) for name, p in model.named_parameters())
    blob = json.dumps({"geometry": geo.__dict__, "parameters": shapes}, sort_keys=True).encode()
    return {
        "name": str(getattr(model.config, "_name_or_path", "") or type(model).__name__),
        "model_type": geo.model_type,
        "num_layers": geo.num_layers,
        "fingerprint": hashlib.sha256(blob).hexdigest()[:16],
    }


def default_bounds(method: str, angle_limit: float = math.pi / 4) -> tuple[float, float]:
    return (-angle_limit, angle_limit) if method == "rotation" else (0.0, 1.0)


def save(
    directory: str | Path,
    edit: HeadEdit,
    model: nn.Module,
    bounds: tuple[float, float] | None = None,
    provenance: dict | None = None,
) -> Path:
    """Write `edit` (for `model`) as a checkpoint directory; returns the directory."""
    edit.check_fits(model)
    bounds = tuple(float(b) for b in (bounds or default_bounds(edit.method)))
    geo = architectures.geometry(model)
    config = {
        "format_version": FORMAT_VERSION,
        "method": edit.method,
        "layers": list(edit.layers),
        "num_heads": geo.num_heads,
        "head_dim": geo.head_dim,
        "bounds": list(bounds),
        "base_model": model_identity(model),
        "provenance": provenance or {},
    }
    _check_values(edit.params, edit.method, bounds)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    params = edit.params.detach().to("cpu", torch.float32).contiguous()
    save_file({TENSOR_KEY: params}, str(directory / TENSORS_NAME), metadata={"format": "pt"})
    (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    return directory


def read_config(directory: str | Path) -> dict:
    """The JSON config, with every required key present."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{directory}: not a tarot checkpoint (no {CONFIG_NAME})")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: corrupt JSON ({error})") from error
    missing = [key for key in REQUIRED_KEYS if key not in config]
    if missing:
        raise CheckpointError(f"{path}: missing config key(s) {', '.join(missing)}")
    if config["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format_version {config['format_version']} is not supported (this tarot-eval reads {FORMAT_VERSION})"
        )
    if config["method"] not in rotation.METHODS:
        raise CheckpointError(f"{path}: unknown method {config['method']!r}; expected one of {rotation.METHODS}")
    return config


def read_params(directory: str | Path) -> torch.Tensor:
    path = Path(directory) / TENSORS_NAME
    if not path.is_file():
        raise CheckpointError(f"{directory}: missing {TENSORS_NAME}")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: corrupt or truncated safetensors file ({error})") from error
    if TENSOR_KEY not in tensors:
        raise CheckpointError(f"{path}: no tensor named {TENSOR_KEY!r} (found {sorted(tensors)})")
    return tensors[TENSOR_KEY]


def load(directory: str | Path, model: nn.Module) -> HeadEdit:
    """Read a checkpoint and check it belongs to `model`; returns the edit (not yet applied)."""
    config = read_config(directory)
    params = read_params(directory)
    geo = architectures.geometry(model)
    stored, actual = config["base_model"], model_identity(model)
    if stored.get("fingerprint") != actual["fingerprint"]:
        raise CheckpointError(
            f"{directory}: made for {stored.get('name')!r} ({stored.get('model_type')}, {stored.get('num_layers')} layers, "
            f"fingerprint {stored.get('fingerprint')}), but the model given is {actual['name']!r} "
            f"({actual['model_type']}, {actual['num_layers']} layers, fingerprint {actual['fingerprint']})"
        )
    for key, model_value in (("num_heads", geo.num_heads), ("head_dim", geo.head_dim)):
        if config[key] != model_value:
            raise CheckpointError(f"{directory}: checkpoint has {key}={config[key]}, model has {key}={model_value}")
    layers = config["layers"]
    if any(not 0 <= layer < geo.num_layers for layer in layers):
        raise CheckpointError(f"{directory}: layers {layers} outside the model's 0..{geo.num_layers - 1}")
    expected = rotation.param_shape(config["method"], len(layers), geo.num_heads, geo.head_dim)
    if tuple(params.shape) != expected:
        raise CheckpointError(
            f"{directory}: params shape {tuple(params.shape)} does not match {expected} "
            f"({config['method']}, {len(layers)} layers x {geo.num_heads} heads, head_dim {geo.head_dim})"
        )
    _check_values(params, config["method"], tuple(config["bounds"]), where=str(directory))
    return HeadEdit(config["method"], tuple(layers), params)


def _check_values(params: torch.Tensor, method: str, bounds: tuple[float, float], where: str = "edit") -> None:
    low, high = bounds
    if not torch.isfinite(params).all():
        raise CheckpointError(f"{where}: {method} params contain NaN or inf")
    if method == "rescale" and (low < 0 or high > 1):
        raise CheckpointError(f"{where}: rescale bounds {bounds} leave [0, 1]")
    outside = (params < low - BOUND_TOLERANCE) | (params > high + BOUND_TOLERANCE)
    if outside.any():
        worst = params[outside].abs().max().item()
        raise CheckpointError(f"{where}: {int(outside.sum())} {method} params outside bounds {bounds} (e.g. {worst:.4g})")


def checkpoint_hash(directory: str | Path) -> str:
    """sha256 over the tensors file and the config: what results JSON records."""
    digest = hashlib.sha256()
    for name in (TENSORS_NAME, CONFIG_NAME):
        digest.update((Path(directory) / name).read_bytes())
    return digest.hexdigest()
