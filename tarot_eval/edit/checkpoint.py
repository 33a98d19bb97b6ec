"""Checkpoint directory: `edit.safetensors` (the parameters) + `tarot_config.json` (what they mean).

Loading validates everything against the model it is applied to and refuses a mismatch
with an error naming both sides. No pickle anywhere.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from tarot_eval.edit import architectures, kinds
from tarot_eval.edit import head_edit as edits
from tarot_eval.edit.head_edit import HeadEdit
from tarot_eval.json_files import read_json

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
CONFIG_NAME = "tarot_config.json"
TENSORS_NAME = "edit.safetensors"
TENSOR_KEY = "params"
REQUIRED_KEYS = ("format_version", "method", "layers", "num_heads", "head_dim", "bounds", "base_model")
BOUND_TOLERANCE = 1e-6
WEIGHTS_SCHEME = "o_proj-random-projections-v1"
PROJECTIONS = 8
PROJECTION_SEED = 20240611
# bf16 rounding moves each projection by ~0.0015 and the rms by far less; another init moves them by ~1.
WEIGHTS_TOLERANCE = 0.01


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


def weight_fingerprint(model: nn.Module, layers) -> dict:
    """Content fingerprint of the output projections of `layers`, robust to dtype and device.

    Per layer: the weight's rms, and PROJECTIONS bilinear projections u^T W v / (|u| |v| rms)
    onto fixed random vectors (numpy's RandomState stream, frozen across numpy versions),
    in float64 on the CPU. Computed on the unedited weights: a model with a folded edit is refused.
    """
    if edits.merged_edits(model):
        raise CheckpointError("the model has an edit folded into its weights; fingerprint it unmerged")
    fingerprint = {}
    for site in architectures.attention_sites(model, list(layers)):
        weight = site.weight_rows.detach().to("cpu", torch.float64)
        state = np.random.RandomState(PROJECTION_SEED)
        u = torch.from_numpy(state.standard_normal((PROJECTIONS, weight.shape[0])))
        v = torch.from_numpy(state.standard_normal((PROJECTIONS, weight.shape[1])))
        rms = weight.square().mean().sqrt().item()
        scale = u.norm(dim=1) * v.norm(dim=1) * rms
        projections = ((u @ weight) * v).sum(dim=1) / scale if rms > 0 else torch.zeros(PROJECTIONS)
        fingerprint[str(site.layer)] = {"rms": rms, "projections": [round(x, 6) for x in projections.tolist()]}
    return {"scheme": WEIGHTS_SCHEME, "layers": fingerprint}


def weight_difference(stored: dict, actual: dict) -> str | None:
    """Why two per-layer fingerprints differ beyond WEIGHTS_TOLERANCE, or None if they match."""
    for layer, mine in stored.items():
        theirs = actual[layer]
        low, high = sorted((mine["rms"], theirs["rms"]))
        if high - low > WEIGHTS_TOLERANCE * high:
            return (f"layer {layer} output projection: weight rms {mine['rms']:.6g} vs {theirs['rms']:.6g} "
                    f"(over {WEIGHTS_TOLERANCE:.0%} apart)")
        gaps = torch.tensor(mine["projections"], dtype=torch.float64) - torch.tensor(theirs["projections"], dtype=torch.float64)
        gap = gaps.square().mean().sqrt().item()
        if gap > WEIGHTS_TOLERANCE:
            return (f"layer {layer} output projection: its {len(gaps)} random projections differ by "
                    f"{gap:.3g} rms (tolerance {WEIGHTS_TOLERANCE})")
    return None


def default_bounds(method: str, angle_limit: float = math.pi / 4) -> tuple[float, float]:
    return kinds.kind(method).bounds(angle_limit)


@dataclass
class TarotConfig:
    """`tarot_config.json`: what the tensor means and the model it was found on (as peft's `PeftConfig`)."""

    method: str
    layers: list[int]
    num_heads: int
    head_dim: int
    bounds: list[float]
    base_model: dict
    provenance: dict = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict:
        """The JSON object, keys in the order every tarot-eval has written them (the checkpoint hash reads the bytes)."""
        return {"format_version": self.format_version, "method": self.method, "layers": list(self.layers),
                "num_heads": self.num_heads, "head_dim": self.head_dim, "bounds": list(self.bounds),
                "base_model": self.base_model, "provenance": self.provenance}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def save_pretrained(self, directory: str | Path) -> None:
        (Path(directory) / CONFIG_NAME).write_text(self.to_json())

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "TarotConfig":
        """The config of checkpoint `directory`; a missing, corrupt or mistyped one is refused naming the file and key."""
        path = Path(directory) / CONFIG_NAME
        if not path.is_file():
            raise CheckpointError(f"{directory}: not a tarot checkpoint (no {CONFIG_NAME})")
        mapping = read_json(path, CheckpointError)
        if not isinstance(mapping, dict):
            raise CheckpointError(f"{path}: a JSON object of config keys expected, "
                                  f"found {type(mapping).__name__} {mapping!r:.40}")
        return cls.from_mapping(mapping, path)

    @classmethod
    def from_mapping(cls, config: dict, path: Path) -> "TarotConfig":
        missing = [key for key in REQUIRED_KEYS if key not in config]
        if missing:
            raise CheckpointError(f"{path}: missing config key(s) {', '.join(missing)}")
        if not _is_int(config["format_version"]) or config["format_version"] != FORMAT_VERSION:
            raise CheckpointError(
                f"{path}: format_version {config['format_version']!r} is not supported (this tarot-eval reads {FORMAT_VERSION})"
            )
        if not isinstance(config["method"], str) or config["method"] not in kinds.names():
            raise CheckpointError(f"{path}: unknown method {config['method']!r}; expected one of {kinds.names()}")
        _check_types(path, config)
        return cls(**{name: config[name] for name in REQUIRED_KEYS}, provenance=config.get("provenance", {}))


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


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
    config = TarotConfig(
        edit.method, list(edit.layers), geo.num_heads, geo.head_dim, list(bounds),
        {**model_identity(model), "weights": weight_fingerprint(model, edit.layers)}, provenance or {},
    )
    _check_values(edit.params, edit.method, bounds)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    params = edit.params.detach().to("cpu", torch.float32).contiguous()
    save_file({TENSOR_KEY: params}, str(directory / TENSORS_NAME), metadata={"format": "pt"})
    config.save_pretrained(directory)
    return directory


def _check_types(path: Path, config: dict) -> None:
    """Refuse config values of the wrong type or shape, naming the file and the key."""

    def bad(key: str, expected: str) -> CheckpointError:
        return CheckpointError(f"{path}: {key} must be {expected}, got {json.dumps(_lookup(config, key))}")

    layers = config["layers"]
    if not isinstance(layers, list) or not layers or not all(_is_int(x) and x >= 0 for x in layers):
        raise bad("layers", "a non-empty list of layer indices (integers >= 0)")
    if len(set(layers)) != len(layers):
        raise bad("layers", "a list of distinct layer indices")
    for key in ("num_heads", "head_dim"):
        if not _is_int(config[key]) or config[key] < 1:
            raise bad(key, "a positive integer")
    bounds = config["bounds"]
    if not isinstance(bounds, list) or len(bounds) != 2 or not all(map(_is_number, bounds)) or bounds[0] > bounds[1]:
        raise bad("bounds", "[low, high], two finite numbers with low <= high")
    base = config["base_model"]
    if not isinstance(base, dict) or not isinstance(base.get("fingerprint"), str):
        raise bad("base_model", "an object with a string fingerprint")
    if "weights" in base:
        weights = base["weights"]
        if not isinstance(weights, dict) or weights.get("scheme") != WEIGHTS_SCHEME:
            raise bad("base_model.weights", f"an object with scheme {WEIGHTS_SCHEME!r}")
        entries = weights.get("layers")
        if not isinstance(entries, dict):
            raise bad("base_model.weights.layers", "an object keyed by layer index")
        for layer, entry in entries.items():
            if not (isinstance(entry, dict) and _is_number(entry.get("rms")) and isinstance(entry.get("projections"), list)
                    and len(entry["projections"]) == PROJECTIONS and all(map(_is_number, entry["projections"]))):
                raise bad(f"base_model.weights.layers.{layer}", f"{{rms: number, projections: {PROJECTIONS} numbers}}")
    if not isinstance(config.get("provenance", {}), dict):
        raise bad("provenance", "an object")


def _lookup(config: dict, dotted: str):
    value = config
    for part in dotted.split("."):
        value = value[part]
    return value


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


def load(directory: str | Path, model: nn.Module, allow_transfer: bool = False) -> HeadEdit:
    """Read a checkpoint and check it belongs to `model`; returns the edit (not yet applied).

    `allow_transfer` accepts a model whose edited layers hold other weights than the ones the
    checkpoint was found on (e.g. another fine-tune of the same base); shapes must still match.
    """
    config = TarotConfig.from_pretrained(directory)
    params = read_params(directory)
    geo = architectures.geometry(model)
    stored, actual = config.base_model, model_identity(model)
    if stored.get("fingerprint") != actual["fingerprint"]:
        raise CheckpointError(
            f"{directory}: made for {stored.get('name')!r} ({stored.get('model_type')}, {stored.get('num_layers')} layers, "
            f"fingerprint {stored.get('fingerprint')}), but the model given is {actual['name']!r} "
            f"({actual['model_type']}, {actual['num_layers']} layers, fingerprint {actual['fingerprint']})"
        )
    for key, model_value in (("num_heads", geo.num_heads), ("head_dim", geo.head_dim)):
        if getattr(config, key) != model_value:
            raise CheckpointError(f"{directory}: checkpoint has {key}={getattr(config, key)}, model has {key}={model_value}")
    layers = config.layers
    if any(not 0 <= layer < geo.num_layers for layer in layers):
        raise CheckpointError(f"{directory}: layers {layers} outside the model's 0..{geo.num_layers - 1}")
    expected = kinds.kind(config.method).param_shape(len(layers), geo.num_heads, geo.head_dim)
    if tuple(params.shape) != expected:
        raise CheckpointError(
            f"{directory}: params shape {tuple(params.shape)} does not match {expected} "
            f"({config.method}, {len(layers)} layers x {geo.num_heads} heads, head_dim {geo.head_dim})"
        )
    _check_values(params, config.method, tuple(config.bounds), where=str(directory))
    if not allow_transfer:
        _check_weights(directory, stored, actual["name"], model, layers)
    return HeadEdit(config.method, tuple(layers), params)


def _check_weights(directory, stored: dict, name: str, model: nn.Module, layers: list[int]) -> None:
    if "weights" not in stored:
        log.warning("%s: saved without a weight fingerprint (older tarot-eval); only shapes were checked", directory)
        return
    if sorted(stored["weights"]["layers"]) != sorted(map(str, layers)):
        raise CheckpointError(
            f"{Path(directory) / CONFIG_NAME}: base_model.weights covers layers {sorted(stored['weights']['layers'])}, "
            f"but the checkpoint edits layers {layers}"
        )
    why = weight_difference(stored["weights"]["layers"], weight_fingerprint(model, layers)["layers"])
    if why is not None:
        raise CheckpointError(
            f"{directory}: found on other weights ({stored.get('name')!r}) than the model given ({name!r}): {why}; "
            "to apply it anyway (e.g. to a fine-tune of the same base) pass allow_transfer=true "
            "(tarot-hf) or --allow-transfer (export)"
        )


def _check_values(params: torch.Tensor, method: str, bounds: tuple[float, float], where: str = "edit") -> None:
    low, high = bounds
    if not torch.isfinite(params).all():
        raise CheckpointError(f"{where}: {method} params contain NaN or inf")
    try:
        kinds.kind(method).check_bounds(bounds)
    except ValueError as error:
        raise CheckpointError(f"{where}: {error}") from None
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
