"""Which model, method and seed a run is: user labels first, then lm-eval's record, then the folder.

lm-eval records `config.model` ("hf", "tarot-hf"), `config.model_args`, and merges the
model's `get_model_info()` into `config`; for `tarot-hf` that adds `tarot_rotations`,
`tarot_method`, `tarot_provenance` and `tarot_base_model`.
"""

from __future__ import annotations

import re
from pathlib import Path

from lm_eval.utils import simple_parse_args_string

from tarot_eval.compare.errors import CompareError
from tarot_eval.harness import model_info

# model_args keys naming the weights, most specific first (an adapter is its own model)
MODEL_ARG_KEYS = ("gguf_file", "peft", "delta", "pretrained")
SEED_FOLDER = re.compile(r"seed-(\d+)")  # `tarot-eval leaderboard` writes runs/<model>/<method>/seed-<k>/<task>/...


def parse_labels(items: list[str] | None, root: Path, option: str) -> dict[Path, str]:
    """`PATH=NAME` assignments -> {resolved path: name}; PATH may be relative to `root`."""
    labels = {}
    for item in items or []:
        raw_path, sep, name = item.rpartition("=")
        if not sep or not raw_path or not name:
            raise CompareError(f"{option} {item!r}: expected PATH=NAME")
        path = Path(raw_path)
        if not path.is_absolute() and (root / path).exists():
            path = root / path
        if not path.exists():
            raise CompareError(f"{option} {item!r}: {raw_path} is neither a path nor a path under {root}")
        labels[path.resolve()] = name
    return labels


def label_for(source: Path, labels: dict[Path, str]) -> str | None:
    """The label whose path is `source` or its closest enclosing folder."""
    source = source.resolve()
    matching = [path for path in labels if path == source or path in source.parents]
    return labels[max(matching, key=lambda path: len(path.parts))] if matching else None


def check_labels_used(labels: dict[Path, str], sources: list[Path], option: str) -> None:
    resolved = [source.resolve() for source in sources]
    for path in labels:
        if not any(path == source or path in source.parents for source in resolved):
            raise CompareError(f"{option} {path}={labels[path]}: no results file is at or under {path}")


def model_args(config: dict) -> dict:
    args = config.get("model_args") or {}
    return dict(args) if isinstance(args, dict) else simple_parse_args_string(str(args))


def short_name(path_or_id: str) -> str:
    return Path(path_or_id.rstrip("/")).name.removesuffix(".gguf")


def model_from_results(results: dict, source: Path) -> str:
    """Short model name: the weights named in model_args, else what the model reported, else lm-eval's folder."""
    config = results.get("config", {})
    args = model_args(config)
    for key in MODEL_ARG_KEYS:
        if isinstance(args.get(key), str) and args[key]:
            return short_name(args[key])
    if (config.get(model_info.BASE_MODEL) or {}).get("name"):  # tarot-hf on its embedded default model
        return short_name(config[model_info.BASE_MODEL]["name"])
    if results.get("model_source") == "CUSTOM" and config.get("model"):
        return str(config["model"])  # an in-process model: lm-eval records its _name_or_path
    return source.parent.name


def method_from_config(config: dict) -> str | None:
    """'base' for a plain `hf` run or `tarot-hf` without rotations; the edit kind otherwise (with
    ' + calibrate (<variant>)' for a calibrated run, 'calibrate (<variant>)' alone, 'lora' for a peft adapter)."""
    calibrated = f"calibrate ({config.get(model_info.CALIBRATION_VARIANT)})" if config.get(model_info.CALIBRATION) else None
    if model_args(config).get("peft"):
        return "lora"
    if model_info.ROTATIONS in config or model_info.METHOD in config:
        if not config.get(model_info.ROTATIONS):
            return calibrated or "base"
        kind = config.get(model_info.METHOD) or "tarot"
        optimizer = (config.get(model_info.PROVENANCE) or {}).get("optimizer")
        edit = f"{kind} ({optimizer})" if optimizer else kind
        return f"{edit} + {calibrated}" if calibrated else edit
    if config.get("model") == "hf":
        return "base"
    return None


def seed_from_path(source: Path, root: Path) -> int | None:
    """The k of the first `seed-<k>` folder between `root` and the results file `source`; None without one."""
    for part in source.relative_to(root).parts[:-1]:
        if match := SEED_FOLDER.fullmatch(part):
            return int(match.group(1))
    return None


def run_folder_label(source: Path, root: Path, results: dict) -> str:
    """The --output_path folder of a run, relative to `root` (lm-eval adds a model folder below it),
    without its `seed-<k>` folders: the seeds of a method are one method."""
    folder = source.parent
    if folder.name == results.get("model_name_sanitized") and folder != root:
        folder = folder.parent
    parts = [part for part in folder.relative_to(root).parts if not SEED_FOLDER.fullmatch(part)]
    return "/".join(parts) or folder.name
