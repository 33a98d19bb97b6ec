"""Wall-time of an lm-eval run: tarot-hf (folded / hooked rotations) against plain hf on the same model.

    python benchmarks/bench_inference.py [--task tarot_navigate] [--limit 200] [--repeats 3]

Models are built once; each repeat times `lm_eval.simple_evaluate` for every variant in a
rotating order, and the medians are compared. Goals: folded/hf <= 1.02, hooked/hf <= 1.15.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch


def _random_checkpoint(model, layers: int, directory: str) -> str:
    from tarot_eval import checkpoint
    from tarot_eval.edit import HeadEdit

    edit = HeadEdit.identity(model, "rotation", range(layers))
    generator = torch.Generator().manual_seed(0)
    edit.params = (torch.rand(edit.params.shape, generator=generator) - 0.5) * (torch.pi / 2)
    return str(checkpoint.save(directory, edit, model, provenance={"purpose": "benchmark"}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="tarot_navigate")
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--layers", type=int, default=6, help="rotate the first N layers")
    args = parser.parse_args()

    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from tarot_eval import default_model
    from tarot_eval.lm import TarotHFLM

    pretrained = str(default_model.converted_dir())
    common = dict(pretrained=pretrained, device="cpu", batch_size=args.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        base = HFLM(**common)
        ckpt = _random_checkpoint(base.model, args.layers, tmp)
        variants = {
            "hf": base,
            "tarot-hf folded": TarotHFLM(**common, rotations=ckpt),
            "tarot-hf hooked": TarotHFLM(**common, rotations=ckpt, fold=False),
        }
        manager = TaskManager()
        times = {name: [] for name in variants}
        accuracy = {}
        for repeat in range(args.repeats):
            names = list(variants)
            names = names[repeat % len(names):] + names[: repeat % len(names)]
            for name in names:
                start = time.perf_counter()
                out = lm_eval.simple_evaluate(
                    model=variants[name], tasks=[args.task], limit=args.limit, task_manager=manager,
                    bootstrap_iters=0, verbosity="WARNING",
                )
                times[name].append(time.perf_counter() - start)
                accuracy[name] = out["results"][args.task]["acc,none"]

    base_time = statistics.median(times["hf"])
    print(f"task {args.task}, limit {args.limit}, {args.repeats} repeats, rotations on layers 0..{args.layers - 1}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"{'variant':<18} {'median s':>9} {'ratio':>7} {'acc':>7}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<18} {median:9.2f} {median / base_time:7.3f} {accuracy[name]:7.3f}")


if __name__ == "__main__":
    main()
