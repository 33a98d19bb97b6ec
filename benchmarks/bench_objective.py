"""Objective evaluations against the token floor: the prefix-tree scorer vs the per-sequence scorer, one run.

    TAROT_DATA_DIR=../shared/data python benchmarks/bench_objective.py [--model M] [--n 20] [--repeats 3]

For each task (zero-shot single-token navigate, multi-token color, zero-shot and 6-shot AG News with
fixed demonstrations), with the chat template on as the leaderboard runs it, prints per evaluation:
seconds (best of --repeats, random edit on the first --layers layers), seconds per document, tokens
computed (padding excluded, then included) against the distinct-token floor, the speed-up of the
prefix-tree scorer over the per-sequence one, and the same for one gradient step (on the first
--grad-docs documents for both scorers: the per-sequence scorer's backward over 20 colour or 6-shot
documents keeps tens of GB of activations). Then the
distance to the machine's limit: effective GFLOP/s (2 x non-embedding parameters x tokens computed,
plus the read-off) against a plain matmul's GFLOP/s in this process, fp32 and bf16; and the bf16
speed-up with the rank agreement of bf16 and fp32 objective values over --edits random edits.
Ratios, not seconds, are what survive a noisy shared machine.
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager
from scipy.stats import spearmanr

from tarot_eval.edit.head_edit import HeadEdit
from tarot_eval.models.loading import load_model_and_tokenizer
from tarot_eval.objective import task_documents
from tarot_eval.objective.scoring import ChoiceScorer, SequenceScorer, token_floor

TASKS = ("tarot_navigate", "tarot_color", "tarot_agnews", "tarot_agnews_fewshot")


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_gflops(dtype: torch.dtype, size: int = 1024, repeats: int = 5) -> float:
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    return 2 * size**3 / best_time(lambda: a @ b, repeats) / 1e9


def non_embedding_parameters(model) -> int:
    skip = {id(model.get_input_embeddings().weight), id(model.get_output_embeddings().weight)}
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)


def examples_for(task_name: str, manager, lm, n: int, chat: bool):
    task = next(iter(manager.load(task_name)["tasks"].values()))
    shots = task.config.num_fewshot or 0
    _, ordered, _ = task_documents.shuffled_pool(task, 0)
    docs = task_documents.choose_docs(task, n, 0, seed=0)
    mode = "sampled"
    if shots:
        docs, mode = task_documents.with_demonstrations(docs, ordered, shots), "fixed"
    options = task_documents.PromptOptions(apply_chat_template=chat, demonstrations=mode)
    return task_documents.build_examples(task, lm, docs.train, options, docs.demonstrations), shots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="HF id, dir or .gguf (default: embedded SmolLM2)")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--n", type=int, default=20, help="training documents")
    parser.add_argument("--layers", type=int, default=5, help="edit the first N layers")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--grad-docs", type=int, default=4, help="documents in the timed gradient step")
    parser.add_argument("--edits", type=int, default=20, help="random edits for the bf16 rank agreement")
    parser.add_argument("--bf16-docs", type=int, default=20,
                        help="tarot_color documents in the bf16 check (fewer where bf16 matmul is slow, as on AVX2-only CPUs)")
    parser.add_argument("--no-chat-template", action="store_true")
    args = parser.parse_args()

    torch.manual_seed(0)
    model, tokenizer = load_model_and_tokenizer(args.model)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, backend="causal", batch_size=args.batch_size)
    manager = TaskManager()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    edit = HeadEdit.identity(model, "rotation", range(args.layers))
    params = (torch.rand_like(edit.params) - 0.5) * 1.5
    flops_per_token = 2 * non_embedding_parameters(model)
    readoff = 2 * model.get_output_embeddings().weight.numel()
    peak = {"fp32": matmul_gflops(torch.float32), "bf16": matmul_gflops(torch.bfloat16)}

    per_doc = {}
    print(f"model: {non_embedding_parameters(model) / 1e6:.1f}M non-embedding parameters; chat template "
          f"{'off' if args.no_chat_template else 'on'}; {args.n} documents ({args.grad_docs} in the gradient step); "
          f"edit on layers 0-{args.layers - 1}")
    print(f"plain matmul here: fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s\n")
    print("| task | shots | docs | floor tokens | old tokens (padded) | new tokens (padded) | new/floor "
          "| old s/eval | new s/eval | speed-up | new s/doc | old grad s | new grad s | grad speed-up "
          "| GFLOP/s (of fp32 matmul) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in filter(None, args.tasks.split(",")):
        examples, shots = examples_for(name, manager, lm, args.n, chat=not args.no_chat_template)
        floor = token_floor(examples)
        reads = sum(len(c) for ex in examples for _, c in ex.pairs)
        result = {}
        with edit.attached(model) as handle:
            handle.params = params
            grad_examples = examples[: args.grad_docs]
            for label, cls in (("old", SequenceScorer), ("new", ChoiceScorer)):
                scorer = cls(model, examples, args.batch_size, pad)
                with torch.no_grad():
                    seconds = best_time(scorer.score, args.repeats)
                grad_scorer = cls(model, grad_examples, args.batch_size, pad)

                def grad_step(scorer=grad_scorer, examples=grad_examples):
                    p = params.clone().requires_grad_(True)
                    handle.params = p
                    (-scorer.score().per_example_logterm(examples, "choice-prob").mean()).backward()
                    handle.params = params

                result[label] = (scorer, seconds, best_time(grad_step, max(1, args.repeats - 1)))
        old, new = result["old"], result["new"]
        per_doc[name] = new[1] / len(examples)
        gflops = (flops_per_token * new[0].tokens_computed + readoff * reads) / new[1] / 1e9
        print(f"| {name} | {shots} | {len(examples)} | {floor} | {old[0].tokens_computed} ({old[0].positions_computed}) "
              f"| {new[0].tokens_computed} ({new[0].positions_computed}) | {new[0].tokens_computed / floor:.2f} "
              f"| {old[1]:.3f} | {new[1]:.3f} | {old[1] / new[1]:.1f}x | {new[1] / len(examples):.4f} "
              f"| {old[2]:.3f} | {new[2]:.3f} | {old[2] / new[2]:.1f}x | {gflops:.0f} ({gflops / peak['fp32']:.0%}) |",
              flush=True)

    if "tarot_color" in per_doc and "tarot_navigate" in per_doc:
        print(f"\ncolor / navigate per document: {per_doc['tarot_color'] / per_doc['tarot_navigate']:.2f} (target <= 1.5)")
    if "tarot_agnews_fewshot" in per_doc and "tarot_agnews" in per_doc:
        print(f"agnews 6-shot fixed / zero-shot per document: "
              f"{per_doc['tarot_agnews_fewshot'] / per_doc['tarot_agnews']:.2f} (target <= 2)")

    if args.bf16_docs:
        bf16_example, _ = examples_for("tarot_color", manager, lm, args.bf16_docs, chat=not args.no_chat_template)
        fp32 = ChoiceScorer(model, bf16_example, args.batch_size, pad)
        bf16 = ChoiceScorer(model, bf16_example, args.batch_size, pad, dtype=torch.bfloat16)
        values = {"fp32": [], "bf16": []}
        with edit.attached(model) as handle, torch.no_grad():
            handle.params = params
            times = {label: best_time(s.score, args.repeats) for label, s in (("fp32", fp32), ("bf16", bf16))}
            for _ in range(args.edits):
                handle.params = (torch.rand_like(params) - 0.5) * 1.5
                for label, scorer in (("fp32", fp32), ("bf16", bf16)):
                    values[label].append(scorer.score().value(bf16_example, "choice-prob"))
        pairs = list(itertools.combinations(range(args.edits), 2))
        agree = sum((values["fp32"][i] - values["fp32"][j]) * (values["bf16"][i] - values["bf16"][j]) > 0 for i, j in pairs)
        rho = spearmanr(values["fp32"], values["bf16"]).statistic
        same_argmax = (max(range(args.edits), key=values["fp32"].__getitem__)
                       == max(range(args.edits), key=values["bf16"].__getitem__))
        print(f"\nbf16 autocast on tarot_color ({args.bf16_docs} documents): {times['fp32'] / times['bf16']:.2f}x the fp32 "
              f"speed; over {args.edits} random edits the pairwise order agrees on {agree / len(pairs):.0%} of pairs "
              f"(Spearman {rho:.3f}); "
              f"the argmax edit {'is' if same_argmax else 'is not'} the same")


if __name__ == "__main__":
    main()
