"""`tarot-eval optimize`: search an edit of a model on a few training documents of an lm-eval task.

Settings come from the flags, or from `--config FILE.yaml` whose keys are the flag names
(dashes or underscores); flags given on the command line win over the file. Re-running the
same command into the same --out resumes the run; a different config there is refused.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from tarot_eval.cli import UsageError
from tarot_eval.objective import DEMONSTRATIONS, OBJECTIVES
from tarot_eval.optimize.bo import NOISE_MODELS, SURROGATES
from tarot_eval.optimize.run import OPTIMIZERS, PLOT_NAME

# Flag defaults live here, not in argparse, so a --config file can tell set flags from unset ones.
DEFAULTS = {
    "dtype": "float32",
    "device": "cpu",
    "method": "rotation",
    "angle_limit": "pi/4",
    "optimizer": "bo",
    "objective": "choice-prob",
    "n_train": 20,
    "n_val": 20,
    "budget": 124,
    "seed": 0,
    "select_k": 5,
    "batch_size": 16,
    "bo_init": 4,
    "bo_restarts": 20,
    "bo_raw_samples": 1024,
    "bo_kernel_depth": 3,
    "bo_surrogate": "vanilla",
    "bo_noise": "fixed",
    "lr": 0.02,
    "space": "layer",
    "balance": False,
    "ship_unimproved": False,
    "apply_chat_template": False,
    "fewshot_as_multiturn": False,
    "demonstrations": "sampled",
    "search_dtype": "",
    "trust_region": False,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML file of settings (keys = flag names); flags override it")
    parser.add_argument("--model", help="HF id, local model dir or .gguf file (default: the embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--dtype", help="torch dtype to load the model in (default float32)")
    parser.add_argument("--device", help="torch device (default cpu)")
    parser.add_argument("--task", help="an lm-eval multiple_choice task name")
    parser.add_argument("--include-path", help="extra folder of lm-eval task YAMLs")
    parser.add_argument("--method", choices=("rotation", "rescale"))
    parser.add_argument("--layers", help="edited layers: '0-4', '0,2,5' or 'all' (default: the first sixth of the layers)")
    parser.add_argument("--angle-limit", help="rotation bound, e.g. pi/4 or 0.5 (rescale is always [0, 1])")
    parser.add_argument("--optimizer", choices=OPTIMIZERS)
    parser.add_argument(
        "--space",
        "--bo-space",
        dest="space",
        help="search coordinates: layer (default), head, embed:D or full (the paper's); see docs/optimize.md",
    )
    parser.add_argument("--objective", choices=OBJECTIVES)
    parser.add_argument("--n-train", type=int, help="training documents (default 20)")
    parser.add_argument("--n-val", type=int, help="held-out validation documents for selection (default 20; 0 = select on train)")
    parser.add_argument("--budget", type=int, help="objective evaluations (grad: steps); default 124 = 4 + 120 as in the paper")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--balance", action="store_true", default=None, help="training documents half right, half wrong for the base model (the paper's choice)")
    parser.add_argument("--ship-unimproved", action="store_true", default=None, help="save the chosen edit even when it does not beat the base model on validation (default: save the identity edit)")
    parser.add_argument("--num-fewshot", type=int, help="demonstrations per prompt (default: the task's own)")
    parser.add_argument("--demonstrations", choices=DEMONSTRATIONS, help="sampled (lm-eval's sampler per document, the default), fixed (the same --num-fewshot documents outside train/validation for every document: one shared prefix) or mix (the paper's: 0, 2, 4 or 6 of them per document)")
    parser.add_argument("--search-dtype", choices=("bfloat16", "float16"), help="run the search's training evaluations under autocast in this dtype; validation selection and base scores stay in --dtype")
    parser.add_argument("--apply-chat-template", action="store_true", default=None, help="as lm_eval --apply_chat_template")
    parser.add_argument("--fewshot-as-multiturn", action="store_true", default=None, help="as lm_eval --fewshot_as_multiturn")
    parser.add_argument("--system-instruction", help="as lm_eval --system_instruction")
    parser.add_argument("--select-k", type=int, help="candidates compared on validation (default 5)")
    parser.add_argument("--batch-size", type=int, help="sequences per forward pass (default 16)")
    parser.add_argument("--bo-init", type=int, help="BO: random initial points (default 4)")
    parser.add_argument("--bo-restarts", type=int, help="BO: acquisition optimizer restarts (default 20)")
    parser.add_argument("--bo-raw-samples", type=int, help="BO: raw samples for the acquisition (default 1024)")
    parser.add_argument("--bo-kernel-depth", type=int, help="BO: depth of the infinite-width BNN kernel (default 3; the paper's 12 collapses)")
    parser.add_argument("--bo-surrogate", choices=SURROGATES, help="BO: GP surrogate: bnn (the paper's kernel), vanilla (BoTorch's default, dimension-scaled priors), saas (MAP SAAS); default vanilla; see docs/optimize.md")
    parser.add_argument("--bo-noise", choices=NOISE_MODELS, help="BO: fixed (deterministic objective, the default) or learned (sampled rewards)")
    parser.add_argument("--trust-region", action="store_true", default=None, help="BO: TuRBO-style trust region around the best point")
    parser.add_argument("--lr", type=float, help="grad: Adam learning rate in unit-cube coordinates (default 0.02)")
    parser.add_argument("--out", help="output directory: checkpoint + run record")
    parser.add_argument("--compare", nargs="+", metavar="RUN_DIR", help="only draw the traces of these run dirs into --out (a PNG path)")


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Flags given on the command line, else the --config file, else DEFAULTS."""
    from_file = {}
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise UsageError(f"--config {path}: no such file")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise UsageError(f"--config {path}: not valid YAML{where}: {getattr(error, 'problem', None) or error}") from error
        if not isinstance(loaded, dict):
            raise UsageError(f"--config {path}: expected a mapping of flag names to values")
        from_file = {key.replace("-", "_"): value for key, value in loaded.items()}
        unknown = sorted(set(from_file) - set(vars(args)) - {"config"})
        if unknown:
            raise UsageError(f"--config {path}: unknown setting(s) {', '.join(unknown)}")
    given = {key: value for key, value in vars(args).items() if value is not None}
    merged = {**{key: None for key in vars(args)}, **DEFAULTS, **from_file, **given}
    for key in ("layers", "angle_limit"):  # YAML may read 0-4 or 0.5 as numbers
        if merged[key] is not None:
            merged[key] = str(merged[key])
    return argparse.Namespace(**merged)


def parse_layers(text: str | None, num_layers: int) -> tuple[int, ...]:
    if text is None:
        return tuple(range(max(1, round(num_layers / 6))))
    text = text.strip()
    if text == "all":
        return tuple(range(num_layers))
    layers: list[int] = []
    try:
        for part in text.split(","):
            low, dash, high = part.strip().partition("-")
            layers.extend(range(int(low), int(high) + 1) if dash else [int(low)])
    except ValueError as error:
        raise ValueError(f"--layers {text!r}: write e.g. 0-4, 0,2,5 or all") from error
    bad = [layer for layer in layers if not 0 <= layer < num_layers]
    if bad:
        raise ValueError(f"--layers {text!r}: {bad} outside the model's 0..{num_layers - 1}")
    return tuple(layers)


def build_settings(args: argparse.Namespace, num_layers: int):
    """The run `Settings` from resolved flags (see `resolve`); shared with `tarot-eval leaderboard`.

    A value the settings refuse (layers, angle limit, space, ...) is a `UsageError`.
    """
    try:
        return _settings(args, num_layers)
    except ValueError as error:
        raise UsageError(str(error)) from error


def _settings(args: argparse.Namespace, num_layers: int):
    from tarot_eval.objective import PromptOptions
    from tarot_eval.optimize.bo import BOSettings
    from tarot_eval.optimize.grad import GradSettings
    from tarot_eval.optimize.run import Settings
    from tarot_eval.optimize.search_space import SearchSpace, parse_bounds

    SearchSpace.parse(args.space, args.method, (1,), (0.0, 1.0))  # only checks the spec; the shape comes with the model
    return Settings(
        task=args.task,
        method=args.method,
        layers=parse_layers(args.layers, num_layers),
        bounds=parse_bounds(args.angle_limit, args.method),
        optimizer=args.optimizer,
        space=args.space,
        objective=args.objective,
        n_train=args.n_train,
        n_val=args.n_val,
        seed=args.seed,
        balance=args.balance,
        ship_unimproved=args.ship_unimproved,
        prompt=PromptOptions(args.num_fewshot, args.apply_chat_template, args.fewshot_as_multiturn, args.system_instruction,
                             args.demonstrations),
        search_dtype=args.search_dtype or "",
        bo=BOSettings(n_init=args.bo_init, num_restarts=args.bo_restarts, raw_samples=args.bo_raw_samples,
                      kernel_depth=args.bo_kernel_depth, trust_region=args.trust_region,
                      surrogate=args.bo_surrogate, noise=args.bo_noise),
        grad=GradSettings(lr=args.lr),
    )


def compare(run_dirs: list[str], out: str) -> int:
    from tarot_eval.optimize.plot import plot_traces
    from tarot_eval.optimize.record import TRACE_NAME, read_lines

    runs = {}
    for directory in run_dirs:
        trace = read_lines(Path(directory) / TRACE_NAME)
        if not trace:
            raise UsageError(f"--compare {directory}: no {TRACE_NAME} with evaluations")
        runs[Path(directory).name] = [entry["train"] for entry in trace]
    print(f"wrote {plot_traces(runs, out, title='training objective per evaluation')}")
    return 0


def load_task(name: str, include_path: str | None):
    """The one lm-eval task `name` (a registered name or a YAML file), else a UsageError saying how to find one."""
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=include_path) if include_path else TaskManager()
    if name not in manager.all_tasks and not Path(name).is_file():
        where = f" nor under --include-path {include_path}" if include_path else ""
        raise UsageError(
            f"--task {name!r}: not an lm-eval task{where}; list the tasks with `tarot-eval lm-eval ls tasks` "
            "(its --include_path DIR adds a folder of task YAMLs), and give such a folder here with --include-path DIR"
        )
    loaded = manager.load(name)["tasks"]
    if len(loaded) != 1:
        raise UsageError(f"--task {name!r} names {len(loaded)} tasks ({', '.join(loaded)}); name one task")
    return next(iter(loaded.values()))


def run(args: argparse.Namespace) -> int:
    args = resolve(args)
    if args.compare:
        if not args.out:
            raise UsageError("--compare needs --out FILE.png")
        return compare(args.compare, args.out)
    missing = [flag for flag, value in (("--task", args.task), ("--out", args.out)) if not value]
    if missing:
        raise UsageError(f"missing {' and '.join(missing)}")
    if args.budget < 1:
        raise UsageError(f"--budget must be at least 1 evaluation, got {args.budget}")

    from lm_eval.models.huggingface import HFLM

    from tarot_eval import architectures
    from tarot_eval.default_model import load_model_and_tokenizer
    from tarot_eval.optimize.run import optimize

    task = load_task(args.task, args.include_path)  # before the model: a wrong name fails in seconds
    model, tokenizer = load_model_and_tokenizer(args.model, dtype=args.dtype, device=args.device)
    geo = architectures.geometry(model)
    settings = build_settings(args, geo.num_layers)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, backend="causal", batch_size=args.batch_size)
    print(
        f"optimizing {settings.method} of layers {list(settings.layers)} of {geo.num_layers} on {settings.task} "
        f"({settings.optimizer}, space {settings.space}, objective {settings.objective}, budget {args.budget})",
        file=sys.stderr,
    )
    result = optimize(model, lm, task, settings, args.out, args.budget, args.select_k, args.batch_size)
    print_summary(result)
    return 0


def print_summary(result) -> None:
    rows = []
    for who in ("base", "chosen"):
        for split in ("train", "validation"):
            if split in result.scores[who]:
                score = result.scores[who][split]
                rows.append(f"  {who:6s} {split:10s} objective {score['value']:.4f}  acc {score['accuracy']:.3f}")
    print("\n".join([f"chosen evaluation #{result.chosen_index} (selected on {result.selected_on})", *rows]))
    for note in result.notes:
        print(f"note: {note}")
    if result.surrogate:
        print(f"surrogate: {json.dumps(result.surrogate)}")
        if result.surrogate.get("collapsed"):
            print(f"BO behaved as random search here: the surrogate learned nothing ({result.surrogate['collapse_reason']})")
    if not result.improved:
        banner = "!" * 78
        print(
            f"{banner}\nNOT IMPROVED: the chosen edit does not beat the base model on {result.selected_on} documents.\n"
            + (
                "It is saved anyway (--ship-unimproved), with `improved: false` in its provenance.\n"
                if result.shipped == "chosen"
                else "The checkpoint holds the identity edit (the base model); --ship-unimproved saves the chosen edit.\n"
            )
            + banner
        )
    print(f"checkpoint and run record: {result.directory} (trace plot: {result.directory / PLOT_NAME})")
