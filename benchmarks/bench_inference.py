"""tarot-hf's prefix-tree scoring against its stock path (`stock_scoring=true`) and plain `hf`, on full test splits.

    TAROT_DATA_DIR=../shared/data python benchmarks/bench_inference.py [--limit N] [--batch-size 16] [--only NAME ...]

One SmolLM2-135M-Instruct (the embedded model) serves every variant; chat template on. Workloads: the five
tarot tasks zero-shot, two 6-shot variants (lm-eval's sampled demonstrations), an icl-style evaluation
with the same 6 fixed demonstrations for every document (as the leaderboard's icl cells), and a task
whose choices differ per document. Per workload it prints: the share of requests the prefix tree served,
the input tokens it fed the model against the floor (distinct prefix-tree nodes of all requests), the
wall-time ratios, max |Δ log-likelihood| against stock, is_greedy agreement, and per-document prediction
flips (each with stock's top-two margin; a flip whose margin exceeds the measured max |Δ| is an error).
Goals (issue #30): served 100%, tokens <= 1.1x floor; speed Color >= 2.5x, Winowhy >= 3x, the zero-shot
tasks together >= 2x, the fixed-demonstration evaluation >= 4x.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

import torch

ZERO_SHOT = ["tarot_navigate", "tarot_color", "tarot_agnews", "tarot_winowhy", "tarot_entailed_polarity"]
FEW_SHOT = ["tarot_agnews_fewshot", "tarot_color_fewshot"]
PER_DOCUMENT = "bench_color_per_document_choices"


def per_document_task(folder: Path) -> None:
    """tarot_color with a choice set of its own per document: the gold colour, its neighbours in the list."""
    from tarot_eval.harness.autoload import tasks_dir

    (folder / f"{PER_DOCUMENT}.yaml").write_text(
        f"include: {tasks_dir() / 'tarot_color.yaml'}\ntask: {PER_DOCUMENT}\n"
        "doc_to_choice: \"{{[choices[label]] + choices[:label][-1:] + choices[label + 1:][:2]}}\"\n"
        "doc_to_target: 0\n")


def workloads() -> list[tuple[str, str, int | None]]:
    """(name, task, fixed demonstrations or None)."""
    return ([(task, task, None) for task in ZERO_SHOT] + [(task, task, None) for task in FEW_SHOT]
            + [("tarot_agnews icl-6 (fixed)", "tarot_agnews", 6), (PER_DOCUMENT, PER_DOCUMENT, None)])


def task_for(manager, task_name: str, shots: int | None):
    """The task object, and a context manager giving every document the same `shots` training documents."""
    from tarot_eval.objective import task_documents

    task = manager.load(task_name)["tasks"][task_name]
    if shots is None:
        return task, contextlib.nullcontext()
    chosen = task_documents.choose_docs(task, 20, 20, 0).train[:shots]
    task.set_config(key="num_fewshot", value=shots)
    return task, task_documents.fixed_demonstrations(task, [doc for _, doc in chosen])


def evaluate(lm, manager, task_name: str, shots: int | None, limit: int | None):
    import lm_eval

    task, demonstrations = task_for(manager, task_name, shots)
    start = time.perf_counter()
    with demonstrations:
        out = lm_eval.simple_evaluate(model=lm, tasks=[task], limit=limit, task_manager=manager, log_samples=True,
                                      apply_chat_template=True, fewshot_as_multiturn=True, bootstrap_iters=0,
                                      verbosity="WARNING")
    wall = time.perf_counter() - start
    samples = sorted(out["samples"][task_name], key=lambda sample: sample["doc_id"])
    return wall, [[float(value) for value, _ in sample["filtered_resps"]] for sample in samples], \
        [[bool(greedy) for _, greedy in sample["filtered_resps"]] for sample in samples], samples


def floor_of(samples, lm) -> int:
    """Distinct input tokens of every request (HFLM's tokenization): the least any scorer computes."""
    from tarot_eval.objective.scoring import Example, token_floor

    examples = []
    for number, sample in enumerate(samples):
        pairs = []
        for context, continuation in (arguments[:2] for arguments in sample["arguments"]):
            pairs.append(lm._encode_pair(context, continuation) if context
                         else ([lm.prefix_token_id], lm.tok_encode(continuation)))
        examples.append(Example(number, [(list(c), list(t)) for c, t in pairs], 0))
    return token_floor(examples)


def flips(fast, stock, tolerance: float) -> tuple[list[str], list[str]]:
    """Documents whose predicted choice differs: (errors: stock's top-two margin above the tolerance, others)."""
    errors, others = [], []
    for doc, (mine, theirs) in enumerate(zip(fast, stock)):
        if max(range(len(mine)), key=mine.__getitem__) == max(range(len(theirs)), key=theirs.__getitem__):
            continue
        top = sorted(theirs, reverse=True)
        margin = top[0] - top[1]
        (errors if margin > tolerance else others).append(f"doc {doc} (margin {margin:.2e})")
    return errors, others


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="documents per task (default: every test document)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--only", nargs="*", default=None, help="workload names to run (default: all)")
    args = parser.parse_args()

    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from tarot_eval.harness.autoload import tasks_dir
    from tarot_eval.harness.tarot_hf import TarotHFLM
    from tarot_eval.models import default_model

    base = HFLM(pretrained=str(default_model.converted_dir()), device="cpu", batch_size=args.batch_size)
    shared = dict(pretrained=base.model, tokenizer=base.tokenizer, backend="causal", batch_size=args.batch_size)
    rows, totals = [], {"zero-shot": [0.0, 0.0, 0.0]}
    with tempfile.TemporaryDirectory() as folder:
        per_document_task(Path(folder))
        manager = TaskManager(include_path=[str(tasks_dir()), folder], include_defaults=False)
        print(f"SmolLM2-135M-Instruct fp32 on {torch.get_num_threads()} threads, batch {args.batch_size}, "
              f"limit {args.limit or 'none (all test documents)'}; chat template, few-shot as multiturn", flush=True)
        for name, task_name, shots in workloads():
            if args.only and name not in args.only:
                continue
            fast = TarotHFLM(**shared)
            stock = TarotHFLM(**shared, stock_scoring=True)
            walls = {}
            for variant, lm in (("hf", base), ("stock", stock), ("tarot-hf", fast)):
                walls[variant], logliks, greedy, samples = evaluate(lm, manager, task_name, shots, args.limit)
                if variant == "stock":
                    stock_logliks, stock_greedy = logliks, greedy
                if variant == "tarot-hf":
                    fast_logliks, fast_greedy = logliks, greedy
            served = fast.tarot_requests["prefix-tree"] / max(1, sum(fast.tarot_requests.values()))
            floor = floor_of(samples, fast)
            delta = max(abs(a - b) for x, y in zip(fast_logliks, stock_logliks) for a, b in zip(x, y))
            agree = sum(a == b for x, y in zip(fast_greedy, stock_greedy) for a, b in zip(x, y))
            total = sum(len(x) for x in fast_greedy)
            errors, others = flips(fast_logliks, stock_logliks, delta)
            rows.append((name, len(samples), served, fast.tarot_tokens.get("tokens", 0) / floor,
                         fast.tarot_tokens.get("positions", 0) / floor, walls["stock"] / walls["tarot-hf"],
                         walls["hf"] / walls["tarot-hf"], delta, f"{agree}/{total}", len(errors), others))
            if task_name in ZERO_SHOT and shots is None:
                for index, variant in enumerate(("hf", "stock", "tarot-hf")):
                    totals["zero-shot"][index] += walls[variant]
            print(f"{name}: hf {walls['hf']:.1f} s, stock {walls['stock']:.1f} s, tarot-hf {walls['tarot-hf']:.1f} s; "
                  f"errors {errors}", flush=True)
    print()
    print("| workload | docs | prefix-tree share | tokens / floor | positions (padded) / floor | speed-up vs stock | "
          "vs hf | max abs d loglik | is_greedy agree | prediction errors | other flips (margin <= max d) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, docs, served, tokens, positions, speed, speed_hf, delta, agree, errors, others in rows:
        print(f"| {name} | {docs} | {served:.0%} | {tokens:.3f} | {positions:.3f} | {speed:.2f}x | {speed_hf:.2f}x | "
              f"{delta:.2e} | {agree} | {errors} | {', '.join(others) or 'none'} |")
    hf, stock, fast = totals["zero-shot"]
    if fast:
        print(f"\nthe five zero-shot tasks together: {stock / fast:.2f}x stock, {hf / fast:.2f}x hf "
              f"({stock:.0f} s / {hf:.0f} s / {fast:.0f} s)")


if __name__ == "__main__":
    main()
