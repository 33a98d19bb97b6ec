"""The leaderboard config: YAML -> validated dataclasses; every error names the bad key.

    models:      {NAME: {pretrained, layers, angle_limit, dtype, device}}   pretrained null = embedded SmolLM2
    tasks:       {zero_shot: [TASK, ...], few_shot: [TASK_fewshot, ...] or {FEWSHOT_TASK: ZERO_SHOT_TASK}}
    methods:     {base: null, NAME: {optimize settings}, NAME: {method: calibrate|icl, ...}, ...}
                 base = the unedited model; see "methods" below
    seeds:       [0, 1, 2]: per seed another draw of training + validation documents (and search seed)
    interference: true: every edit also evaluated on the other zero-shot tasks (`compare --interference`)
    optimizer:   {optimize settings shared by every method}
    eval:        {batch_size, limit, apply_chat_template, fewshot_as_multiturn, system_instruction}
    include_path: folder(s) of extra task YAMLs (relative to the config file)
    include_defaults: also index lm-eval's built-in tasks (slow: ~15-30 s)

"optimize settings" are the flags of `tarot-eval optimize` (underscores for dashes) that do not
belong to a model, a task or the evaluation (`tarot_eval.methods.search.OPTIMIZER_KEYS`); a method's
own settings win over the shared ones. Each entry of `methods:` is parsed by the registered method
kind that takes it (`tarot_eval.methods`: `base`, `{method: calibrate|icl|lora, ...}`, and any other
entry an edit search); each kind's module documents its keys. Any method with settings may add
`tasks: [TASK, ...]` (a subset of tasks.zero_shot, with their few-shot tasks: e.g. a layer ablation
on two tasks), and an edit method `interference: true|false` (wins over the top-level key).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tarot_eval import settings as settings_fields
from tarot_eval.methods import registry
from tarot_eval.methods.registry import MethodSpec
from tarot_eval.methods.search import check_layers, optimizer_settings
from tarot_eval.optimize.search_space import parse_bounds
from tarot_eval.settings import EditSettings, ModelSettings

FEWSHOT_SUFFIX = "_fewshot"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")  # names become folder names
TOP_KEYS = ("models", "tasks", "methods", "seeds", "interference", "optimizer", "eval", "include_path", "include_defaults")
MODEL_KEYS = ("pretrained", "layers", "angle_limit", "dtype", "device")
TASK_KEYS = ("zero_shot", "few_shot")


class ConfigError(ValueError):
    """A leaderboard config that cannot be run as written."""


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader (no object construction), refusing a key written twice in one mapping: PyYAML
    would keep the last silently, so a method or model listed twice would lose one entry."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one mapping", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    pretrained: str | None = ModelSettings.model  # HF id, local dir or .gguf file; None = embedded SmolLM2-135M-Instruct
    layers: str | None = EditSettings.layers  # as `tarot-eval optimize --layers`
    angle_limit: str = EditSettings.angle_limit
    dtype: str = ModelSettings.dtype
    device: str = ModelSettings.device


@dataclass(frozen=True)
class EvalSpec:
    batch_size: int = 16
    limit: int | float | None = None
    apply_chat_template: bool = False
    fewshot_as_multiturn: bool = False
    system_instruction: str | None = None


@dataclass(frozen=True)
class LeaderboardConfig:
    source: Path
    models: list[ModelSpec]
    zero_shot: list[str]
    few_shot: dict[str, str]  # few-shot task -> the zero-shot task whose checkpoint it is evaluated with
    methods: list[MethodSpec]
    seeds: list[int] | None = None  # None: one draw, the optimizer's seed, no seed-<k> folders
    interference: bool = False  # every edit also evaluated on the other zero-shot tasks
    optimizer: dict = field(default_factory=dict)
    eval: EvalSpec = field(default_factory=EvalSpec)
    include_path: list[str] = field(default_factory=list)
    include_defaults: bool = False

    @property
    def tasks(self) -> list[str]:
        return [*self.zero_shot, *self.few_shot]

    def zero_shot_of(self, method: MethodSpec) -> list[str]:
        """The zero-shot tasks `method` runs on: its own `tasks:` or all of them."""
        return [task for task in self.zero_shot if method.tasks is None or task in method.tasks]

    def tasks_of(self, method: MethodSpec) -> list[str]:
        """Its zero-shot tasks and the few-shot tasks evaluated with their checkpoints."""
        own = self.zero_shot_of(method)
        return [*own, *(task for task, source in self.few_shot.items() if source in own)]

    def interferes(self, method: MethodSpec) -> bool:
        """Whether `method`'s edits are also scored on the other zero-shot tasks."""
        edits = registry.method_of(method).edits
        return edits and (self.interference if method.interference is None else method.interference)

    def method_settings(self, method: MethodSpec, seed: int | None = None) -> dict:
        """Shared optimizer settings overridden by the method's own, and by `seed` when given."""
        return {**self.optimizer, **(method.settings or {}), **({} if seed is None else {"seed": seed})}

    def method(self, name: str) -> MethodSpec:
        return next(method for method in self.methods if method.name == name)

    def seeds_of(self, method: MethodSpec) -> list[int | None]:
        """The seeds a method runs under: each listed seed where it reads them, else one seed-free cell."""
        return list(self.seeds) if self.seeds is not None and registry.method_of(method).seeded(method) else [None]

    @property
    def reference(self) -> str | None:
        """The row the others are compared with (the unedited model), if the config lists it."""
        return next((m.name for m in self.methods if registry.method_of(m).reference), None)


def _mapping(value, where: str, required: bool = True) -> dict:
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _check_keys(mapping: dict, allowed, where: str) -> None:
    unknown = [str(key) for key in mapping if key not in allowed]
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; expected one of {', '.join(allowed)}")


def _check_name(name, where: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ConfigError(f"{where}: name {name!r} must be letters, digits, '.', '_' or '-' (it names a folder)")
    return name


def _typed(value, kinds: tuple[type, ...], where: str, nullable: bool = False):
    if value is None and nullable:
        return None
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        names = " or ".join(kind.__name__ for kind in kinds) + (" or null" if nullable else "")
        raise ConfigError(f"{where}: expected {names}, got {value!r}")
    return value


def _optimizer_settings(raw, where: str) -> dict:
    """Normalized keys; each value checked against its `OptimizeSettings` field (type and choices)."""
    try:
        return optimizer_settings(_mapping(raw, where, required=False), where)
    except settings_fields.SettingsError as error:
        raise ConfigError(str(error)) from None


def _models(raw) -> list[ModelSpec]:
    models = []
    for name, entry in _mapping(raw, "models").items():
        where = f"models.{name}"
        _check_name(name, where)
        entry = _mapping(entry, where, required=False)
        _check_keys(entry, MODEL_KEYS, where)
        values = {
            "pretrained": _typed(entry.get("pretrained"), (str,), f"{where}.pretrained", nullable=True),
            "layers": entry.get("layers"),
            "angle_limit": entry.get("angle_limit", ModelSpec.angle_limit),
            "dtype": _typed(entry.get("dtype", ModelSpec.dtype), (str,), f"{where}.dtype"),
            "device": _typed(entry.get("device", ModelSpec.device), (str,), f"{where}.device"),
        }
        for key in ("layers", "angle_limit"):  # YAML reads 0-4 as text but 3 or 0.5 as numbers
            if values[key] is not None:
                values[key] = str(_typed(values[key], (str, int, float), f"{where}.{key}"))
        _check_value(f"{where}.angle_limit", parse_bounds, values["angle_limit"], "rotation")
        _check_layers(values["layers"], f"{where}.layers")
        import torch

        if not isinstance(getattr(torch, values["dtype"], None), torch.dtype):
            raise ConfigError(f"{where}.dtype: {values['dtype']!r} is not a torch dtype (e.g. float32, bfloat16, float16)")
        models.append(ModelSpec(name=name, **values))
    if not models:
        raise ConfigError("models: name at least one model")
    return models


def _check_value(where: str, check, *args) -> None:
    """Runs `check(*args)`; the ValueError it raises becomes a ConfigError naming `where`."""
    try:
        check(*args)
    except ValueError as error:
        raise ConfigError(f"{where}: {error}") from None


def _check_layers(text: str | None, where: str) -> None:
    try:
        check_layers(text, where)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def _task_list(raw, where: str) -> list[str]:
    if not isinstance(raw, list) or not raw or not all(isinstance(task, str) and task for task in raw):
        raise ConfigError(f"{where}: expected a non-empty list of task names")
    if len(set(raw)) != len(raw):
        raise ConfigError(f"{where}: a task is listed twice")
    for task in raw:  # a task name becomes a folder under --out: nothing may lead outside it
        _check_name(task, f"{where}.{task}")
    return list(raw)


def _tasks(raw) -> tuple[list[str], dict[str, str]]:
    raw = _mapping(raw, "tasks")
    _check_keys(raw, TASK_KEYS, "tasks")
    if "zero_shot" not in raw:
        raise ConfigError("tasks.zero_shot: missing; list the tasks the methods are optimized on")
    zero_shot = _task_list(raw["zero_shot"], "tasks.zero_shot")
    few = raw.get("few_shot")
    if few is None:
        return zero_shot, {}
    if isinstance(few, list):
        few_shot = {task: task.removesuffix(FEWSHOT_SUFFIX) for task in _task_list(few, "tasks.few_shot")}
        for task in few_shot:
            if not task.endswith(FEWSHOT_SUFFIX):
                raise ConfigError(
                    f"tasks.few_shot: {task!r} does not end in {FEWSHOT_SUFFIX!r}; write few_shot as a mapping "
                    "{FEWSHOT_TASK: ZERO_SHOT_TASK} to name the checkpoint it uses"
                )
    else:
        few_shot = {_check_name(task, f"tasks.few_shot.{task}"): source
                    for task, source in _mapping(few, "tasks.few_shot").items()}
    for task, source in few_shot.items():
        if source not in zero_shot:
            raise ConfigError(
                f"tasks.few_shot.{task}: uses the checkpoint optimized on {source!r}, which is not in tasks.zero_shot"
            )
        if task in zero_shot:
            raise ConfigError(f"tasks.few_shot.{task}: already listed in tasks.zero_shot")
    return zero_shot, few_shot


def _methods(raw, zero_shot: list[str]) -> list[MethodSpec]:
    """Each entry parsed by the registered method kind that takes it (`tarot_eval.methods`)."""
    methods: list[MethodSpec] = []
    for name, entry in _mapping(raw, "methods").items():
        where = f"methods.{name}"
        _check_name(name, where)
        method = registry.METHODS[registry.kind_for(name, entry)]
        scope = {}
        if method.takes_settings:
            entry = dict(_mapping(entry, where, required=False))
            scope = _scope(entry, zero_shot, where, method)
        try:
            spec = method.parse(name, entry, where, methods)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        methods.append(dataclasses.replace(spec, **scope))
    if not methods:
        raise ConfigError("methods: name at least one method (base = the unedited model)")
    return methods


def _scope(entry: dict, zero_shot: list[str], where: str, method: registry.Method) -> dict:
    """The method's `tasks:` (a subset of tasks.zero_shot) and `interference:` (edits only), taken out of `entry`."""
    scope = {}
    if "tasks" in entry:
        tasks = _task_list(entry.pop("tasks"), f"{where}.tasks")
        unknown = [task for task in tasks if task not in zero_shot]
        if unknown:
            raise ConfigError(f"{where}.tasks: {', '.join(unknown)} not in tasks.zero_shot")
        scope["tasks"] = tuple(tasks)
    if "interference" in entry:
        if not method.edits:
            raise ConfigError(f"{where}.interference: only an edit is scored on the tasks it was not made for")
        scope["interference"] = _typed(entry.pop("interference"), (bool,), f"{where}.interference")
    return scope


def _seeds(raw, optimizer: dict, methods: list[MethodSpec]) -> list[int] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in raw):
        raise ConfigError(f"seeds: expected a non-empty list of seeds (integers >= 0), got {raw!r}")
    if len(set(raw)) != len(raw):
        raise ConfigError("seeds: a seed is listed twice")
    setters = (["optimizer"] if "seed" in optimizer else []) + [
        f"methods.{m.name}" for m in methods if "seed" in (m.settings or {})]
    if setters:
        raise ConfigError(f"{setters[0]}.seed: set by seeds: when the config lists seeds; remove it")
    return list(raw)


def _eval(raw) -> EvalSpec:
    raw = _mapping(raw, "eval", required=False)
    _check_keys(raw, tuple(EvalSpec.__dataclass_fields__), "eval")
    spec = EvalSpec(
        batch_size=_typed(raw.get("batch_size", EvalSpec.batch_size), (int,), "eval.batch_size"),
        limit=_typed(raw.get("limit"), (int, float), "eval.limit", nullable=True),
        apply_chat_template=_typed(raw.get("apply_chat_template", False), (bool,), "eval.apply_chat_template"),
        fewshot_as_multiturn=_typed(raw.get("fewshot_as_multiturn", False), (bool,), "eval.fewshot_as_multiturn"),
        system_instruction=_typed(raw.get("system_instruction"), (str,), "eval.system_instruction", nullable=True),
    )
    if spec.batch_size < 1:
        raise ConfigError(f"eval.batch_size: must be at least 1, got {spec.batch_size}")
    if spec.limit is not None and spec.limit <= 0:
        raise ConfigError(f"eval.limit: must be positive (a count, or a fraction below 1), got {spec.limit}")
    if spec.fewshot_as_multiturn and not spec.apply_chat_template:
        raise ConfigError("eval.fewshot_as_multiturn: needs eval.apply_chat_template: true")
    return spec


def _include_paths(raw, base: Path) -> list[str]:
    if raw is None:
        return []
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise ConfigError("include_path: expected a folder or a list of folders")
    paths = []
    for item in items:
        path = Path(item) if Path(item).is_absolute() else base / item
        if not path.is_dir():
            raise ConfigError(f"include_path: {item!r} is not a folder (relative paths start at {base})")
        paths.append(str(path))
    return paths


def parse(raw, source: Path) -> LeaderboardConfig:
    """A validated config from the YAML document `raw` read from `source`."""
    raw = _mapping(raw, "top level")
    _check_keys(raw, TOP_KEYS, "top level")
    for key in ("models", "tasks", "methods"):
        if key not in raw:
            raise ConfigError(f"{key}: missing (a config names models, tasks and methods)")
    zero_shot, few_shot = _tasks(raw["tasks"])
    methods = _methods(raw["methods"], zero_shot)
    optimizer = _optimizer_settings(raw.get("optimizer"), "optimizer")
    _check_layers(optimizer.get("layers"), "optimizer.layers")
    for method in methods:
        try:
            registry.method_of(method).check(method, optimizer)
        except ValueError as error:
            raise ConfigError(str(error)) from None
    return LeaderboardConfig(
        source=source,
        models=_models(raw["models"]),
        zero_shot=zero_shot,
        few_shot=few_shot,
        methods=methods,
        seeds=_seeds(raw.get("seeds"), optimizer, methods),
        interference=_typed(raw.get("interference", False), (bool,), "interference"),
        optimizer=optimizer,
        eval=_eval(raw.get("eval")),
        include_path=_include_paths(raw.get("include_path"), source.parent),
        include_defaults=_typed(raw.get("include_defaults", False), (bool,), "include_defaults"),
    )


def load(path: str | Path) -> LeaderboardConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=UniqueKeyLoader)
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text (byte {error.start}: {error.reason})") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(error).split())})") from None
    try:
        return parse(raw, path)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
