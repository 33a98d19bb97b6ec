"""BO surrogates side by side on the embedded model: how well each one learns, and BO minus random search.

    TAROT_DATA_DIR=../shared/data python benchmarks/bench_bo.py --out bench/bo [--seeds 0,1,2] [--budget 24]

For each task (the five tarot tasks and a BIG-bench task written here as a fresh lm-eval YAML,
`reasoning_about_colored_objects` with each item's own choices: not one of ours), seed and space
(`layer`, `head`, `full`):
- a random-search run of `--budget` evaluations, and on its points each surrogate's held-out R²
  (fit on the first half, predict the second half, against predicting the fit half's mean);
- in the `--bo-spaces` (default: layer), a BO run per `--bo-surrogates` at the same budget: the R² of
  its own pre-evaluation predictions (`surrogate_quality`), whether it collapsed, the best training
  objective, the validation accuracy of the edit chosen on validation, and both minus random search's.
Every run is a `tarot-eval optimize` run folder under `--out` (leaderboard settings: layers 0-4,
±π/4, chat template, n_train/n_val documents): an interrupted benchmark resumes, a finished one
only re-reads. Prints a markdown table of means over seeds and writes `bench_bo.md`, `bench_bo.json`
and `bench_bo.png` into `--out`. Settings are chosen here from training and validation only.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from statistics import mean

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from lm_eval.models.huggingface import HFLM  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from tarot_eval.tasks import data_sources  # noqa: E402

from tarot_eval.models.loading import load_model_and_tokenizer  # noqa: E402
from tarot_eval.objective.task_documents import PromptOptions  # noqa: E402
from tarot_eval.objective.task_loading import load_task  # noqa: E402
from tarot_eval.optimize.bo import SURROGATES, BOSettings, held_out_quality  # noqa: E402
from tarot_eval.optimize.record import POINTS_DIR, TRACE_NAME, TRAIN_VALUE, read_lines  # noqa: E402
from tarot_eval.optimize.run import RESULT_NAME, Settings, optimize  # noqa: E402

OURS = ("tarot_agnews", "tarot_navigate", "tarot_color", "tarot_winowhy", "tarot_entailed_polarity")
FRESH = "fresh_colored_objects"
FRESH_YAML = """\
# A user's own task, written for this benchmark: BIG-bench reasoning_about_colored_objects split
# in two (train.json / test.json beside this file) and read with lm-eval's json loader; each item
# keeps its own choices.
task: {name}
dataset_path: json
dataset_kwargs:
  data_files: {{train: {folder}/train.json, test: {folder}/test.json}}
  field: examples
output_type: multiple_choice
training_split: train
test_split: test
doc_to_text: "Q: {{{{input}}}}\\nA:"
doc_to_choice: "{{{{ target_scores | dictsort | rejectattr(1, 'none') | map('first') | list }}}}"
doc_to_target: "{{% set pairs = target_scores | dictsort | rejectattr(1, 'none') | list %}}\
{{{{ (pairs | map(attribute=1) | list).index(1) }}}}"
target_delimiter: " "
metric_list:
  - metric: acc
"""


def fresh_task_folder(out: Path) -> Path:
    data = data_sources.data_dir()
    source = (data or Path("$TAROT_DATA_DIR")) / "bigbench/reasoning_about_colored_objects.json"
    if data is None or not source.is_file():
        raise SystemExit(f"bench_bo: the fresh task reads {source}: set TAROT_DATA_DIR to a copy of shared/data")
    folder = (out / "fresh_task").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    examples = json.loads(source.read_text())["examples"]
    order = list(range(len(examples)))
    random.Random(0).shuffle(order)
    half = len(order) // 2
    files = {f"{split}.json": json.dumps({"examples": [examples[i] for i in indices]})
             for split, indices in (("train", order[:half]), ("test", order[half:]))}
    files[f"{FRESH}.yaml"] = FRESH_YAML.format(name=FRESH, folder=folder)
    for name, text in files.items():  # rewritten only when different: a second benchmark process may be reading them
        path = folder / name
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
    return folder


def run_folder(out: Path, task: str, space: str, seed: int, who: str) -> Path:
    return out / "runs" / task / space / f"seed{seed}" / who


def settings_for(task: str, space: str, seed: int, args, optimizer: str, surrogate: str = "vanilla") -> Settings:
    return Settings(
        task=task, method="rotation", layers=tuple(range(args.layers)), optimizer=optimizer, space=space,
        n_train=args.n_train, n_val=args.n_val, seed=seed,
        prompt=PromptOptions(apply_chat_template=True, fewshot_as_multiturn=True),
        bo=BOSettings(surrogate=surrogate),
    )


def summary(folder: Path) -> dict:
    trace = read_lines(folder / TRACE_NAME)
    result = json.loads((folder / RESULT_NAME).read_text())
    quality = result.get("surrogate") or {}
    return {
        "best_train": max(entry[TRAIN_VALUE] for entry in trace),
        "val_acc": result["scores"]["chosen"]["validation"]["accuracy"],
        "base_val_acc": result["scores"]["base"]["validation"]["accuracy"],
        "bo_r2": quality.get("r2"),
        "collapsed": quality.get("collapsed"),
        "seconds": result["evaluation_seconds_total"],
    }


def random_point_r2(folder: Path, surrogate: str) -> float:
    """Held-out R² of `surrogate` on a random-search run's points: fit on the first half, predict the rest."""
    trace = read_lines(folder / TRACE_NAME)
    points = torch.stack([load_file(str(folder / POINTS_DIR / f"{i:05d}.safetensors"))["x"] for i in range(len(trace))])
    values = torch.tensor([e[TRAIN_VALUE] for e in trace], dtype=torch.float64)
    return held_out_quality(points.double(), values, len(trace) // 2, BOSettings(surrogate=surrogate))["r2"]


def run_grid(args, out: Path) -> list[dict]:
    """Every run of the grid (resumed where its folder holds part of it), one row per (task, space, seed, who)."""
    model, tokenizer = load_model_and_tokenizer(args.model)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, backend="causal", batch_size=args.batch_size)
    include = str(fresh_task_folder(out))
    tasks = {name: load_task(name, include) for name in args.tasks.split(",")}
    rows = []
    for space in args.spaces:  # the first space whole before the next: an interrupted grid has whole rows
        for name, task in tasks.items():
            for seed in args.seeds:
                whos = [("random", "random", "vanilla")]
                if space in args.bo_spaces:
                    whos += [(f"bo-{s}", "bo", s) for s in args.bo_surrogates]
                for who, optimizer, surrogate in whos:
                    folder = run_folder(out, name, space, seed, who)
                    print(f"bench_bo: {name} seed {seed} {space} {who}", flush=True)
                    settings = settings_for(name, space, seed, args, optimizer, surrogate)
                    optimize(model, lm, task, settings, folder, args.budget, select_k=3, batch_size=args.batch_size)
                    row = {"task": name, "space": space, "seed": seed, "who": who, **summary(folder)}
                    if who == "random":
                        row["random_point_r2"] = {s: random_point_r2(folder, s) for s in args.surrogates}
                    rows.append(row)
    return rows


def mean_of(values) -> float:
    """Mean of the values that exist (a run too short for a surrogate check has none); nan if none do."""
    present = [v for v in values if v is not None and v == v]
    return mean(present) if present else float("nan")


def table(rows: list[dict], surrogates: list[str]) -> tuple[str, list[dict]]:
    """Means over seeds per (task, space, surrogate): R² both ways, best train, validation accuracy, minus random."""
    cells = []
    keys = sorted({(r["task"], r["space"]) for r in rows}, key=lambda k: (k[1], k[0]))
    for task, space in keys:
        randoms = {r["seed"]: r for r in rows if (r["task"], r["space"], r["who"]) == (task, space, "random")}
        for surrogate in surrogates:
            bo = {r["seed"]: r for r in rows if (r["task"], r["space"], r["who"]) == (task, space, f"bo-{surrogate}")}
            cell = {
                "task": task, "space": space, "surrogate": surrogate, "seeds": len(randoms),
                "random_point_r2": mean_of(r["random_point_r2"][surrogate] for r in randoms.values()),
            }
            if bo:
                seeds = sorted(set(bo) & set(randoms))
                cell.update({
                    "bo_r2": mean_of(bo[s]["bo_r2"] for s in seeds),
                    "collapsed": sum(bool(bo[s]["collapsed"]) for s in seeds),
                    "best_train": mean(bo[s]["best_train"] for s in seeds),
                    "train_minus_random": mean(bo[s]["best_train"] - randoms[s]["best_train"] for s in seeds),
                    "val_acc": mean(bo[s]["val_acc"] for s in seeds),
                    "val_minus_random": mean(bo[s]["val_acc"] - randoms[s]["val_acc"] for s in seeds),
                    "base_val_acc": mean(randoms[s]["base_val_acc"] for s in seeds),
                })
            cells.append(cell)
    lines = [
        "| space | task | surrogate | R² on random points | R² of BO's own predictions | collapsed runs | best train "
        "objective | minus random | val acc (base) | minus random |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        if "bo_r2" in c:
            bo_part = (f"{c['bo_r2']:.2f} | {c['collapsed']}/{c['seeds']} | {c['best_train']:.4f} | "
                       f"{c['train_minus_random']:+.4f} | {c['val_acc']:.3f} ({c['base_val_acc']:.3f}) | "
                       f"{c['val_minus_random']:+.3f}")
        else:
            bo_part = "not run | | | | |"
        lines.append(f"| {c['space']} | {c['task']} | {c['surrogate']} | {c['random_point_r2']:.2f} | {bo_part} |")
    return "\n".join(lines), cells


def verdicts(cells: list[dict], surrogates: list[str]) -> str:
    """Per surrogate and space: on how many tasks R² > 0.3 and BO beats random (train objective, mean over seeds)."""
    out = []
    for space in sorted({c["space"] for c in cells if "bo_r2" in c}):
        for surrogate in surrogates:
            mine = [c for c in cells if c["space"] == space and c["surrogate"] == surrogate and "bo_r2" in c]
            if not mine:
                continue
            both = [c["task"] for c in mine if c["bo_r2"] > 0.3 and c["train_minus_random"] > 0]
            out.append(f"{space} / {surrogate}: R² > 0.3 and BO > random on {len(both)} of {len(mine)} tasks "
                       f"({', '.join(both) or 'none'}); mean R² {mean_of(c['bo_r2'] for c in mine):.2f}, "
                       f"mean BO - random {mean(c['train_minus_random'] for c in mine):+.4f}")
    return "\n".join(out)


def plot(cells: list[dict], surrogates: list[str], path: Path) -> None:
    spaces = sorted({c["space"] for c in cells if "bo_r2" in c})
    if not spaces:  # random search only: nothing to draw
        return
    fig, axes = plt.subplots(2, len(spaces), figsize=(6 * len(spaces), 7), squeeze=False)
    for column, space in enumerate(spaces):
        tasks = sorted({c["task"] for c in cells if c["space"] == space})
        for row, (key, label) in enumerate((("bo_r2", "R² of BO's own predictions"),
                                            ("train_minus_random", "best train objective, BO - random"))):
            ax = axes[row][column]
            width = 0.8 / len(surrogates)
            for k, surrogate in enumerate(surrogates):
                values = [next((c[key] for c in cells
                                if (c["task"], c["space"], c["surrogate"]) == (t, space, surrogate) and key in c), 0.0)
                          for t in tasks]
                ax.bar([i + k * width for i in range(len(tasks))], values, width, label=surrogate)
            ax.axhline(0.3 if key == "bo_r2" else 0.0, color="grey", linestyle="--", linewidth=1)
            ax.set_xticks([i + width * (len(surrogates) - 1) / 2 for i in range(len(tasks))])
            ax.set_xticklabels([t.replace("tarot_", "") for t in tasks], rotation=30, ha="right")
            ax.set_title(f"{space} space: {label}")
            if key == "bo_r2":
                ax.set_ylim(-1, 1)
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="benchmark folder (run folders, table, PNG); resumed if it exists")
    parser.add_argument("--model", help="HF id, dir or .gguf (default: embedded SmolLM2)")
    parser.add_argument("--tasks", default=",".join((*OURS, FRESH)))
    parser.add_argument("--seeds", default="0,1,2", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--spaces", default="layer,head,full", type=lambda s: s.split(","))
    parser.add_argument("--bo-spaces", default="layer", type=lambda s: s.split(","), help="spaces where BO runs per surrogate")
    parser.add_argument("--surrogates", default=",".join(SURROGATES), type=lambda s: s.split(","),
                        help="surrogates whose R² is measured on the random-search points")
    parser.add_argument("--bo-surrogates", default="vanilla,bnn", type=lambda s: s.split(","),
                        help="surrogates that also run BO in the --bo-spaces (SAAS where the budget allows)")
    parser.add_argument("--budget", type=int, default=24, help="evaluations per run (4 random + 20 BO)")
    parser.add_argument("--n-train", type=int, default=20)
    parser.add_argument("--n-val", type=int, default=20)
    parser.add_argument("--layers", type=int, default=5, help="edit the first N layers")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    out = Path(args.out)
    rows = run_grid(args, out)
    text, cells = table(rows, args.surrogates)
    report = f"{text}\n\n{verdicts(cells, args.surrogates)}\n"
    print(report)
    (out / "bench_bo.md").write_text(report)
    (out / "bench_bo.json").write_text(json.dumps({"rows": rows, "cells": cells}, indent=1) + "\n")
    plot(cells, args.surrogates, out / "bench_bo.png")
    print(f"wrote {out / 'bench_bo.md'}, {out / 'bench_bo.json'}, {out / 'bench_bo.png'}")


if __name__ == "__main__":
    main()
