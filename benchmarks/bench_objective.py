"""Speed of one objective evaluation versus bare forward passes over the same batches.

    python benchmarks/bench_objective.py [--model M] [--task tarot_navigate] [--n 20] [--repeats 3]

Prints evaluations per minute and the ratio (objective time / bare forward time; goal <= 1.1).
The bare pass is the plain model forward (no edit hooks, full logits) on the same padded batches.
"""

from __future__ import annotations

import argparse
import time

import torch
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager

from tarot_eval import objective
from tarot_eval.default_model import load_model_and_tokenizer
from tarot_eval.edit import HeadEdit, attached


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="HF id, dir or .gguf (default: embedded SmolLM2)")
    parser.add_argument("--task", default="tarot_navigate")
    parser.add_argument("--include-path")
    parser.add_argument("--n", type=int, default=20, help="training documents")
    parser.add_argument("--layers", type=int, default=5, help="edit the first N layers")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    model, tokenizer = load_model_and_tokenizer(args.model)
    manager = TaskManager(include_path=args.include_path) if args.include_path else TaskManager()
    task = next(iter(manager.load(args.task)["tasks"].values()))
    lm = HFLM(pretrained=model, tokenizer=tokenizer, backend="causal", batch_size=args.batch_size)
    docs = objective.choose_docs(task, args.n, 0, seed=0)
    examples = objective.build_examples(task, lm, docs.train, objective.PromptOptions())
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    scorer = objective.ChoiceScorer(model, examples, args.batch_size, pad)
    edit = HeadEdit.identity(model, "rotation", range(args.layers))

    def bare() -> None:
        for batch in scorer.batches:
            model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)

    params = (torch.rand_like(edit.params) - 0.5) * 1.5
    timings = {"objective": [], "bare forward": []}
    with torch.no_grad():
        for _ in range(args.repeats):
            with attached(model, edit) as handle:
                start = time.perf_counter()
                objective.Objective(scorer, handle).evaluate(params)
                timings["objective"].append(time.perf_counter() - start)
            start = time.perf_counter()
            bare()
            timings["bare forward"].append(time.perf_counter() - start)
    best = {name: min(values) for name, values in timings.items()}
    tokens = sum(int(batch.attention_mask.sum()) for batch in scorer.batches)
    print(f"{args.task}: {len(examples)} documents, {scorer.num_sequences} sequences, {tokens} tokens, {len(scorer.batches)} batches")
    print(f"objective evaluation: {best['objective']:.3f} s  ({60 / best['objective']:.1f} evaluations/minute)")
    print(f"bare forward passes:  {best['bare forward']:.3f} s")
    print(f"ratio objective / bare forward: {best['objective'] / best['bare forward']:.3f} (goal <= 1.1)")


if __name__ == "__main__":
    main()
