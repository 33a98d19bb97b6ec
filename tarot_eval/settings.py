"""Settings that own their defaults: frozen dataclasses whose fields carry their help, read alike
from command-line flags, `--config` YAML files and the leaderboard config.

A field is declared with `setting(default, help, choices=..., flag=..., text=...)`. `from_mapping`
validates a mapping against a settings class (unknown keys, types, choices; each error names its
key); `add_arguments` turns the same fields into argparse flags whose default is None, so a value
given on the command line can be told from one left to the file or the field's default. The
groups every command shares live here: the model to load (`ModelSettings`), the edited layers
(`EditSettings`, with `parse_layers`), the task and the documents a fit draws from it
(`DocumentSettings`: optimize, calibrate and lora) and how lm-eval renders and batches its prompts
(`PromptSettings`); the black-box search's group (`SearchSettings`) lives with the optimizer, in
`tarot_eval/optimize/settings.py`.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping


class SettingsError(ValueError):
    """A setting of the wrong name, type or value; the message names the key."""


def setting(default, help: str, *, choices: tuple | None = None, flag: str | None = None,
            aliases: tuple[str, ...] = (), text: bool = False):
    """A settings field: its default, its help, its allowed values; `flag` overrides the flag name
    (`--` + the field name with dashes); `text` fields also take YAML numbers (0.5, 3) as text."""
    metadata = {"help": help, "choices": choices, "flag": flag, "aliases": aliases, "text": text}
    return dataclasses.field(default=default, metadata=metadata)


def flag_name(spec: dataclasses.Field) -> str:
    return spec.metadata.get("flag") or "--" + spec.name.replace("_", "-")


def fields(cls, names: Iterable[str] | None = None) -> dict[str, dataclasses.Field]:
    """The settings fields of `cls` by name (all of them, or `names` in that order)."""
    every = {spec.name: spec for spec in dataclasses.fields(cls)}
    return every if names is None else {name: every[name] for name in names}


def _kinds(hint) -> tuple[tuple[type, ...], bool]:
    """(accepted types, nullable) of a field's annotation."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = typing.get_args(hint)
        return tuple(a for a in args if a is not type(None)), type(None) in args
    return (hint,), False


def _check(value, spec: dataclasses.Field, hint, where: str):
    kinds, nullable = _kinds(hint)
    if value is None and (nullable or spec.default is None):
        return None
    if spec.metadata.get("text") and isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)  # YAML reads 0-4 as text but 3 or 0.5 as numbers
    accepted = (*kinds, int) if float in kinds else kinds
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, accepted):
        names = " or ".join(kind.__name__ for kind in kinds) + (" or null" if nullable else "")
        raise SettingsError(f"{where}: expected {names}, got {value!r}")
    choices = spec.metadata.get("choices")
    if choices and value not in choices:
        raise SettingsError(f"{where}: {value!r} is not one of {', '.join(map(str, choices))}")
    return value


def checked(cls, mapping: Mapping, where: str, names: Iterable[str] | None = None,
            unknown: str = "{where}: unknown setting(s) {keys}") -> dict:
    """The entries of `mapping` (keys with dashes or underscores) validated against the fields of `cls`
    (or only `names` of them): {field name: value}; an unknown key is refused with `unknown`."""
    allowed = fields(cls, names)
    hints = typing.get_type_hints(cls)
    normalized = {str(key).replace("-", "_"): value for key, value in mapping.items()}
    strangers = [str(key) for key in mapping if str(key).replace("-", "_") not in allowed]
    if strangers:
        raise SettingsError(unknown.format(where=where, keys=", ".join(strangers), allowed=", ".join(sorted(allowed))))
    prefix = f"{where}." if where else ""
    return {name: _check(value, allowed[name], hints[name], f"{prefix}{name}") for name, value in normalized.items()}


def from_mapping(cls, mapping: Mapping, where: str = ""):
    """An instance of `cls` from a mapping of (some of) its settings; the rest keep their defaults."""
    return cls(**checked(cls, mapping, where))


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls, names: Iterable[str] | None = None) -> None:
    """One flag per settings field of `cls` (or `names`), default None; the help says the field's default."""
    hints = typing.get_type_hints(cls)
    for name, spec in fields(cls, names).items():
        kinds, _ = _kinds(hints[name])
        help_text = spec.metadata["help"]
        if spec.default is not None and spec.default is not False and spec.default != "" and "default" not in help_text:
            help_text += f" (default {spec.default})"
        options = {"dest": name, "help": help_text, "default": None}
        if bool in kinds:
            options["action"] = "store_true"
        else:
            options["type"] = kinds[0] if kinds[0] in (int, float) else str
            if spec.metadata.get("choices"):
                options["choices"] = spec.metadata["choices"]
        parser.add_argument(flag_name(spec), *spec.metadata.get("aliases", ()), **options)


def given(args: argparse.Namespace, cls, names: Iterable[str] | None = None) -> dict:
    """The settings of `cls` that were set on the command line (flags left out are None)."""
    return {name: getattr(args, name) for name in fields(cls, names) if getattr(args, name, None) is not None}


@dataclasses.dataclass(frozen=True)
class ModelSettings:
    """The model a command loads."""

    model: str | None = setting(None, "HF id, local model dir or .gguf file (default: the embedded SmolLM2-135M-Instruct)")
    dtype: str = setting("float32", "torch dtype to load the model in")
    device: str = setting("cpu", "torch device")


@dataclasses.dataclass(frozen=True)
class DocumentSettings:
    """The task a fit reads, where extra task YAMLs live, and how many of its training documents it draws."""

    task: str | None = setting(None, "an lm-eval multiple_choice task name")
    include_path: str | None = setting(None, "extra folder of lm-eval task YAMLs")
    n_train: int = setting(20, "training documents")
    n_val: int = setting(20, "held-out training-pool documents for validation (selection, batch calibration's draw)")


@dataclasses.dataclass(frozen=True)
class PromptSettings:
    """How lm-eval renders the prompts (as its command's flags of the same names) and the batch they are scored in."""

    apply_chat_template: bool = setting(False, "as lm_eval --apply_chat_template")
    fewshot_as_multiturn: bool = setting(False, "as lm_eval --fewshot_as_multiturn")
    system_instruction: str | None = setting(None, "as lm_eval --system_instruction")
    batch_size: int = setting(16, "sequences per forward pass")


@dataclasses.dataclass(frozen=True)
class EditSettings:
    """Which layers an edit touches and how far its angles may turn."""

    layers: str | None = setting(None, "edited layers: '0-4', '0,2,5' or 'all' (default: the first sixth of the layers)",
                                 text=True)
    angle_limit: str = setting("pi/4", "rotation bound, e.g. pi/4 or 0.5 (rescale is always [0, 1])", text=True)

    def layer_indices(self, num_layers: int) -> tuple[int, ...]:
        return parse_layers(self.layers, num_layers)


def parse_layers(text: str | None, num_layers: int) -> tuple[int, ...]:
    """Layer indices from '0-4', '0,2,5' or 'all'; None: the first sixth of the layers (at least one)."""
    if text is None:
        return tuple(range(max(1, round(num_layers / 6))))
    text = text.strip()
    if text == "all":
        return tuple(range(num_layers))
    layers: list[int] = []
    try:
        for part in text.split(","):
            low, dash, high = part.strip().partition("-")
            if dash and int(high) < int(low):
                raise SettingsError(f"--layers {text!r}: the range {part.strip()} is reversed (an empty edit); "
                                    f"write {high}-{low}")
            layers.extend(range(int(low), int(high) + 1) if dash else [int(low)])
    except ValueError as error:
        if isinstance(error, SettingsError):
            raise
        raise SettingsError(f"--layers {text!r}: write e.g. 0-4, 0,2,5 or all") from None
    repeated = sorted({layer for layer in layers if layers.count(layer) > 1})
    if repeated:
        raise SettingsError(f"--layers {text!r}: layer(s) {repeated} listed more than once")
    bad = [layer for layer in layers if not 0 <= layer < num_layers]
    if bad:
        raise SettingsError(f"--layers {text!r}: {bad} outside the model's 0..{num_layers - 1}")
    return tuple(layers)
