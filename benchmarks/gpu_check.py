"""One-shot speed and correctness check on random-weight models with the paper's shapes (no hub, no downloads).

On a lent GPU machine, from the repository root (torch with CUDA is there; transformers, lm-eval,
botorch, tokenizers and tarot-eval itself may have to travel as wheels: `pip download` them here
into a folder that travels, e.g. shared/wheels, then `pip install --no-index --find-links
shared/wheels tarot-eval` there):

    bash benchmarks/gpu_check.sh                                 # cuda, full shapes, <= 8 minutes
    python benchmarks/gpu_check.py --device cpu --tiny           # CPU, tiny shapes (what CI runs)

Per model (Qwen2-1.5B, Phi-3-mini, Llama-3-8B, built from configs in code, weights initialised on
the device in bf16) it prints one row per check:
  build       construction time and parameter count;
  hook==fold  max |logits(hooked) - logits(folded)| for random angles in +-pi/6 on the paper's
              layers, next to how far the edit moves the logits at all (the scale of the diff);
  lm-eval     `tarot-hf` (folded) / `hf` wall time of `lm_eval.simple_evaluate` on a synthetic
              JSONL multiple-choice task with `--limit`, both loaded from a saved temp dir;
  objective   evaluations per second of tarot_eval.objective.function.Objective (ChoiceScorer + evaluate);
  grad step   one `grad` optimizer step (Objective.loss_and_evaluation + backward on the angles):
              time and peak memory, as the project runs it (model weights require grad, the
              default after from_pretrained) and with the weights frozen;
  bo propose  one tarot_eval.optimize.bo.propose at 124 random points in the model's paper space
              (Llama-3-8B: 16 layers x 32 heads x 64 pairs = 32,768 dimensions), on CPU tensors as
              the run record hands them over.
Each check runs under its own time limit and try/except: a failing one prints its error as its row
and the rest still run; the whole run stops starting checks after --budget seconds. The table at
the end repeats every row; --json writes them too. Exit status 1 if any check failed.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import random
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")  # lm-eval's and transformers' progress bars would bury the rows

import torch  # noqa: E402
import transformers  # noqa: E402

ANGLE_LIMIT = math.pi / 6
TASK = "gpu_check_navigate"
BO_POINTS = 124
CHECKS = ("build", "hook==fold", "objective", "grad step", "lm-eval", "bo propose")

# Shapes as published in each model's config.json on the hub (checked against our knowledge of
# Qwen/Qwen2-1.5B, microsoft/Phi-3-mini-4k-instruct and meta-llama/Meta-Llama-3-8B; they match the
# issue's numbers): Qwen2-1.5B has q/k/v biases (the value bias the edit folds) and tied embeddings,
# Phi-3-mini is full multi-head attention with a fused qkv projection and no biases, Llama-3-8B is
# grouped-query (8 kv heads). Rope settings are left at the defaults: random weights, speed only.
FULL = {
    "qwen2-1.5b": (transformers.Qwen2Config, dict(
        hidden_size=1536, num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
        intermediate_size=8960, vocab_size=151936, tie_word_embeddings=True, rms_norm_eps=1e-6), 5),
    "phi-3-mini": (transformers.Phi3Config, dict(
        hidden_size=3072, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
        intermediate_size=8192, vocab_size=32064, tie_word_embeddings=False, rms_norm_eps=1e-5), 6),
    "llama-3-8b": (transformers.LlamaConfig, dict(
        hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
        intermediate_size=14336, vocab_size=128256, tie_word_embeddings=False, rms_norm_eps=1e-5), 16),
}
# The same families scaled down (hidden 64, 2-4 layers, vocab 512), edited layers in proportion.
TINY = {
    "qwen2-1.5b": (dict(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2), 1),
    "phi-3-mini": (dict(num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=4), 1),
    "llama-3-8b": (dict(num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2), 2),
}


@dataclass
class Plan:
    """Sizes of one run: full shapes on the GPU or tiny ones for CPU / CI."""

    tiny: bool
    device: str
    dtype: torch.dtype
    limit: int  # lm-eval documents
    repeats: int  # lm-eval runs per variant
    n_train: int  # objective documents
    batch_size: int
    evaluations: int  # timed objective evaluations
    bo_points: int
    bo_settings: dict  # BOSettings overrides
    budget_s: float
    timeouts: dict  # check -> seconds


def make_plan(args) -> Plan:
    dtype = getattr(torch, args.dtype) if args.dtype else (torch.bfloat16 if args.device == "cuda" else torch.float32)
    if args.tiny:
        timeouts = dict.fromkeys(CHECKS, 60)
        return Plan(True, args.device, dtype, args.limit or 12, 1, 6, 8, 2, 16,
                    dict(num_restarts=2, raw_samples=32), args.budget or 300, timeouts)
    timeouts = {"build": 60, "hook==fold": 30, "objective": 40, "grad step": 40, "lm-eval": 150, "bo propose": 120}
    return Plan(False, args.device, dtype, args.limit or 200, 2, 20, 16, 5, BO_POINTS, {}, args.budget or 420, timeouts)


def model_config(name: str, tiny: bool):
    cls, shape, layers = FULL[name]
    shape = dict(shape)
    if tiny:
        overrides, layers = TINY[name]
        shape.update(hidden_size=64, intermediate_size=128, vocab_size=512, **overrides)
    # ids of the in-process tokenizer's specials (<pad>, <s>, </s>); Phi-3's own pad id 32000 exceeds the tiny vocab
    return cls(**shape, pad_token_id=0, bos_token_id=1, eos_token_id=2), tuple(range(layers))


# ---------------------------------------------------------------- rows, limits, memory


@dataclass
class Row:
    model: str
    check: str
    ok: bool
    result: str
    detail: str
    seconds: float
    values: dict


class CheckTimeout(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise CheckTimeout in the main thread after `seconds` (checked when control returns to Python)."""

    def expire(signum, frame):
        raise CheckTimeout(f"timed out after {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def reset_peak(device: str) -> None:
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()


def peak_memory_gib(device: str) -> tuple[float, str]:
    """Peak since reset_peak (cuda: max_memory_allocated) or the process's RSS peak so far (cpu)."""
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30, "cuda max allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "process RSS peak"


def free(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


# ---------------------------------------------------------------- task and tokenizer


def navigate_docs(n: int, seed: int) -> list[dict]:
    """Navigate-like documents (instructions, True/False) of about the paper task's prompt length."""
    rng = random.Random(seed)
    moves = ["Take {} steps.", "Turn left.", "Turn right.", "Turn around.", "Always face forward. Take {} steps backward."]
    docs = []
    for _ in range(n):
        steps = " ".join(rng.choice(moves).format(rng.randint(1, 9)) for _ in range(rng.randint(5, 9)))
        docs.append({"input": f"If you follow these instructions, do you return to the starting point? {steps}",
                     "label": rng.randint(0, 1)})
    return docs


def write_task(folder: Path, n_train: int, n_test: int) -> Path:
    """A local lm-eval multiple_choice task (train + test JSONL) named TASK, in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, docs in (("train", navigate_docs(n_train, 0)), ("test", navigate_docs(n_test, 1))):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(doc) + "\n" for doc in docs))
    (folder / f"{TASK}.yaml").write_text(
        f"task: {TASK}\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    train: {folder / 'train.jsonl'}\n    test: {folder / 'test.jsonl'}\n"
        "training_split: train\ntest_split: test\noutput_type: multiple_choice\n"
        'doc_to_text: "{{input}}\\nAnswer (True or False):"\n'
        'doc_to_choice: ["False", "True"]\ndoc_to_target: label\n'
        "metric_list:\n  - {metric: acc, aggregation: mean, higher_is_better: true}\n"
    )
    return folder


def make_tokenizer(vocab_size: int = 400):
    """A small byte-level BPE tokenizer trained in-process on the task's own text (no hub)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    corpus = [doc["input"] + "\nAnswer (True or False): True False" for doc in navigate_docs(200, 2)]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(corpus, trainer)
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<s>", eos_token="</s>")


# ---------------------------------------------------------------- checks


class ModelCheck:
    """The checks of one model; each method returns (result, detail, values)."""

    def __init__(self, name: str, plan: Plan, tokenizer, manager, workdir: Path):
        self.name, self.plan, self.tokenizer, self.manager = name, plan, tokenizer, manager
        self.workdir = workdir
        self.config, self.layers = model_config(name, plan.tiny)
        self.model = None
        self._scorer = None

    def random_params(self, edit) -> torch.Tensor:
        generator = torch.Generator().manual_seed(0)
        return (torch.rand(edit.params.shape, generator=generator) * 2 - 1) * ANGLE_LIMIT

    def build(self):
        start = time.perf_counter()
        with torch.device(self.plan.device):
            model = transformers.AutoModelForCausalLM.from_config(self.config, dtype=self.plan.dtype)
        with torch.no_grad():  # non-zero biases (Qwen2's q/k/v) so the value-bias path of the edit matters
            for module in model.modules():
                bias = getattr(module, "bias", None)
                if isinstance(bias, torch.nn.Parameter):
                    bias.normal_(0, 0.5)
        self.model = model.eval()
        sync(self.plan.device)
        seconds = time.perf_counter() - start
        count = sum(p.numel() for p in model.parameters())
        size = f"{count / 1e9:.2f} B" if count >= 1e9 else f"{count / 1e6:.2f} M"
        return f"{seconds:.1f} s", f"{size} params, {self.plan.dtype}, layers edited 0..{self.layers[-1]}", {"params": count}

    def hook_fold(self):
        from tarot_eval.edit.head_edit import HeadEdit

        edit = HeadEdit.identity(self.model, "rotation", self.layers)
        edit.params = self.random_params(edit)
        generator = torch.Generator().manual_seed(1)
        ids = torch.randint(3, self.config.vocab_size, (4, 64), generator=generator).to(self.plan.device)
        with torch.no_grad():
            base = self.model(input_ids=ids).logits.float()
            with edit.attached(self.model):
                hooked = self.model(input_ids=ids).logits.float()
            folded_handle = edit.merge(self.model)
            try:
                folded = self.model(input_ids=ids).logits.float()
            finally:
                folded_handle.unmerge()
            restored = self.model(input_ids=ids).logits.float()
        diff = float((hooked - folded).abs().max())
        effect = float((hooked - base).abs().max())
        unfold_diff = float((restored - base).abs().max())
        return (f"max|diff| {diff:.3g}",
                f"edit moves logits by {effect:.3g} (|logits| <= {float(base.abs().max()):.3g}); "
                f"unfold restores to {unfold_diff:.1g}",
                {"max_abs_diff": diff, "edit_effect": effect, "unfold_diff": unfold_diff})

    def scorer(self):
        """ChoiceScorer over the task's training documents (built once per model)."""
        if self._scorer is None:
            from lm_eval.models.huggingface import HFLM

            from tarot_eval.objective import scoring, task_documents

            task = next(iter(self.manager.load(TASK)["tasks"].values()))
            lm = HFLM(pretrained=self.model, tokenizer=self.tokenizer, backend="causal", batch_size=self.plan.batch_size)
            docs = task_documents.choose_docs(task, self.plan.n_train, 0, seed=0)
            examples = task_documents.build_examples(task, lm, docs.train, task_documents.PromptOptions())
            self._scorer = scoring.ChoiceScorer(self.model, examples, self.plan.batch_size, self.tokenizer.pad_token_id)
        return self._scorer

    def objective(self):
        from tarot_eval.edit.head_edit import HeadEdit
        from tarot_eval.objective import function

        scorer = self.scorer()
        edit = HeadEdit.identity(self.model, "rotation", self.layers)
        params = self.random_params(edit)
        with edit.attached(self.model) as handle:
            target = function.Objective(scorer, handle)
            target.evaluate(params)  # warm-up
            start = time.perf_counter()
            for _ in range(self.plan.evaluations):
                evaluation = target.evaluate(params)
            seconds = (time.perf_counter() - start) / self.plan.evaluations
        tokens = scorer.tokens_computed
        return (f"{1 / seconds:.2f} eval/s",
                f"{seconds:.3f} s each: {len(scorer.examples)} docs, {len(scorer.prefix)} shared prefix tokens, {tokens} tokens, "
                f"batch {self.plan.batch_size}; value {evaluation.value:.3f}",
                {"evaluations_per_s": 1 / seconds, "tokens": tokens})

    def grad_step(self):
        from tarot_eval.edit.head_edit import HeadEdit
        from tarot_eval.objective import function

        scorer = self.scorer()
        edit = HeadEdit.identity(self.model, "rotation", self.layers)
        weights_gib = sum(p.numel() * p.element_size() for p in self.model.parameters()) / 2**30
        measured = {}
        try:
            for frozen in (False, True):
                self.model.requires_grad_(not frozen)
                with edit.attached(self.model) as handle:
                    target = function.Objective(scorer, handle)
                    reset_peak(self.plan.device)
                    for _ in range(2):  # the second step is timed (the first pays for kernel selection)
                        x = self.random_params(edit).requires_grad_(True)
                        sync(self.plan.device)
                        start = time.perf_counter()
                        loss, _ = target.loss_and_evaluation(x)
                        loss.backward()
                        sync(self.plan.device)
                        seconds = time.perf_counter() - start
                        if not frozen:
                            self.model.zero_grad(set_to_none=True)
                peak, peak_kind = peak_memory_gib(self.plan.device)
                grad_norm = float(x.grad.norm())
                if not grad_norm > 0:
                    raise RuntimeError(f"the angles got no gradient (norm {grad_norm})")
                measured["frozen" if frozen else "as run"] = (seconds, peak)
        finally:
            self.model.requires_grad_(False)
        (t_run, m_run), (t_frozen, m_frozen) = measured["as run"], measured["frozen"]
        return (f"{t_run:.3f} s, {m_run:.2f} GiB",
                f"weights require grad (as the project runs it); frozen weights: {t_frozen:.3f} s, {m_frozen:.2f} GiB; "
                f"{peak_kind}, weights {weights_gib:.2f} GiB, |grad| {grad_norm:.3g}",
                {"seconds": t_run, "peak_gib": m_run, "frozen_seconds": t_frozen, "frozen_peak_gib": m_frozen})

    def lm_eval(self):
        import lm_eval
        from lm_eval.models.huggingface import HFLM

        from tarot_eval.edit import checkpoint
        from tarot_eval.edit.head_edit import HeadEdit
        from tarot_eval.harness.tarot_hf import TarotHFLM

        saved, rotations = self.workdir / "model", self.workdir / "rotations"
        edit = HeadEdit.identity(self.model, "rotation", self.layers)
        edit.params = self.random_params(edit)
        checkpoint.save(rotations, edit, self.model, bounds=(-ANGLE_LIMIT, ANGLE_LIMIT))
        self.model.save_pretrained(saved)
        self.tokenizer.save_pretrained(saved)
        self.release()  # the two lm-eval models load from disk, as `lm_eval --model_args pretrained=DIR` does
        common = dict(pretrained=str(saved), device=self.plan.device, dtype=str(self.plan.dtype).removeprefix("torch."),
                      batch_size=self.plan.batch_size)
        variants = {"hf": HFLM(**common), "tarot-hf": TarotHFLM(**common, rotations=str(rotations))}
        times = {name: [] for name in variants}
        accuracy = {}
        try:
            for repeat in range(self.plan.repeats):
                order = list(variants)[repeat % 2:] + list(variants)[: repeat % 2]
                for name in order:
                    start = time.perf_counter()
                    out = lm_eval.simple_evaluate(model=variants[name], tasks=[TASK], limit=self.plan.limit,
                                                  task_manager=self.manager, bootstrap_iters=0, verbosity="ERROR")
                    times[name].append(time.perf_counter() - start)
                    accuracy[name] = out["results"][TASK]["acc,none"]
        finally:
            variants.clear()
            free(self.plan.device)
        hf, tarot = statistics.median(times["hf"]), statistics.median(times["tarot-hf"])
        return (f"{tarot / hf:.3f} folded/hf",
                f"hf {hf:.2f} s, tarot-hf folded {tarot:.2f} s (median of {self.plan.repeats}, limit {self.plan.limit}); "
                f"acc {accuracy['hf']:.3f} / {accuracy['tarot-hf']:.3f}",
                {"ratio": tarot / hf, "hf_s": hf, "tarot_s": tarot})

    def bo_propose(self):
        head_dim = self.config.hidden_size // self.config.num_attention_heads
        dim = len(self.layers) * self.config.num_attention_heads * head_dim // 2
        job = {"dim": dim, "points": self.plan.bo_points, "settings": self.plan.bo_settings}
        if self.plan.tiny:  # a few kB: this process (a child costs a second start of torch and botorch)
            out = {**time_proposal(job), "where": "in this process"}
        else:
            out = self._bo_in_child(job)
        return (f"{out['seconds']:.2f} s",
                f"{self.plan.bo_points} points x {dim} dims, cpu, {out['threads']} threads, restarts {out['num_restarts']}, "
                f"raw samples {out['raw_samples']}, {out['where']}",
                {"seconds": out["seconds"], "dim": dim})

    def _bo_in_child(self, job: dict) -> dict:
        # a child process: the paper-sized proposal allocates tens of GB of host memory, and an
        # over-allocation there (capped by RLIMIT_AS) must not take the model checks down with it
        child = subprocess.run([sys.executable, __file__, "--bo-child", json.dumps(job)], capture_output=True, text=True,
                               timeout=self.plan.timeouts["bo propose"])
        lines = child.stdout.strip().splitlines()
        if child.returncode != 0 or not lines:
            last = (child.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"bo child exited {child.returncode}: {last}")
        return json.loads(lines[-1])

    def release(self) -> None:
        self.model, self._scorer = None, None
        free(self.plan.device)


class FixedRecord:
    """The part of optimize.record.RunRecord that bo.propose reads, over given X [n, d] and Y [n]."""

    def __init__(self, X: torch.Tensor, Y: torch.Tensor):
        from tarot_eval.optimize.record import TRAIN_VALUE

        self._X = X
        self.trace = [{"phase": "bo", TRAIN_VALUE: float(y)} for y in Y]

    def points(self) -> torch.Tensor:
        return self._X

    def values(self) -> list[float]:
        from tarot_eval.optimize.record import TRAIN_VALUE

        return [entry[TRAIN_VALUE] for entry in self.trace]


def bo_child(job: dict) -> None:
    """time_proposal under a cap of 3/4 of the host memory; print one JSON line."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    cap = int(0.75 * total)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    print(json.dumps({**time_proposal(job), "where": f"child process, memory cap {cap / 2**30:.0f} GiB"}))


def time_proposal(job: dict) -> dict:
    """Time one bo.propose at random X [points, dim] in the unit cube, random Y."""
    from tarot_eval.optimize import bo

    generator = torch.Generator().manual_seed(0)
    X = torch.rand(job["points"], job["dim"], generator=generator, dtype=torch.float64)
    Y = torch.rand(job["points"], generator=generator, dtype=torch.float64)
    settings = bo.BOSettings(**job["settings"])
    start = time.perf_counter()
    x, _ = bo.propose(FixedRecord(X, Y), settings, seed=0)
    seconds = time.perf_counter() - start
    if x.shape != (job["dim"],) or not ((0 <= x) & (x <= 1)).all():
        raise RuntimeError(f"proposal of shape {tuple(x.shape)} is not a point of the unit cube [0, 1]^{job['dim']}")
    return {"seconds": seconds, "threads": torch.get_num_threads(), "num_restarts": settings.num_restarts,
            "raw_samples": settings.raw_samples}


# ---------------------------------------------------------------- driver


def run_check(model: str, check: str, fn, timeout: float, needs_model: bool, has_model: bool) -> Row:
    start = time.perf_counter()
    if needs_model and not has_model:
        return Row(model, check, False, "SKIPPED", "no model (build failed or ran out of budget)", 0.0, {})
    try:
        with time_limit(timeout):
            result, detail, values = fn()
        return Row(model, check, True, result, detail, time.perf_counter() - start, values)
    except Exception as error:  # one failing check must not stop the others
        where = traceback.extract_tb(error.__traceback__)[-1]
        message = (f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''} "
                   f"({Path(where.filename).name}:{where.lineno})")
        return Row(model, check, False, "ERROR", message, time.perf_counter() - start, {})


def print_row(row: Row, file=sys.stdout) -> None:
    print(f"{row.model:<11} {row.check:<10} {row.result:<22} {row.seconds:6.1f}s  {row.detail}", file=file, flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes (hidden 64, 2-4 layers, vocab 512)")
    parser.add_argument("--models", nargs="+", choices=list(FULL), default=list(FULL))
    parser.add_argument("--dtype", choices=("bfloat16", "float16", "float32"), help="default: bfloat16 on cuda, float32 on cpu")
    parser.add_argument("--limit", type=int, help="lm-eval documents (default 200, tiny 12)")
    parser.add_argument("--budget", type=float, help="seconds after which no new check starts (default 420, tiny 300)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--bo-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.bo_child:
        bo_child(json.loads(args.bo_child))
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: --device cuda but torch sees no CUDA device (use --device cpu)", file=sys.stderr)
        return 2
    plan = make_plan(args)
    started = time.perf_counter()
    torch.manual_seed(0)

    from lm_eval.tasks import TaskManager

    rows: list[Row] = []
    header = f"{'model':<11} {'check':<10} {'result':<22} {'time':>7}  detail"
    device_name = torch.cuda.get_device_name() if plan.device == "cuda" else "cpu"
    print(f"gpu_check: {device_name}, {'tiny' if plan.tiny else 'full'} shapes, {plan.dtype}, budget {plan.budget_s:.0f} s, "
          f"torch {torch.__version__}, transformers {transformers.__version__}", flush=True)
    print(header, flush=True)
    try:
        with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
            manager = TaskManager(include_path=str(write_task(Path(tmp) / "task", 3 * plan.n_train, plan.limit)),
                                  include_defaults=False)
            tokenizer = make_tokenizer()
            for name in args.models:
                workdir = Path(tmp) / name
                workdir.mkdir()
                check = ModelCheck(name, plan, tokenizer, manager, workdir)
                steps = [("build", check.build, False), ("hook==fold", check.hook_fold, True),
                         ("objective", check.objective, True), ("grad step", check.grad_step, True),
                         ("lm-eval", check.lm_eval, True), ("bo propose", check.bo_propose, False)]
                for label, fn, needs_model in steps:
                    left = plan.budget_s - (time.perf_counter() - started)
                    if left <= 0:
                        row = Row(name, label, False, "SKIPPED", f"out of budget ({plan.budget_s:.0f} s)", 0.0, {})
                    else:
                        row = run_check(name, label, fn, min(plan.timeouts[label], left), needs_model, check.model is not None)
                    rows.append(row)
                    print_row(row)
                check.release()
    except KeyboardInterrupt:
        print("gpu_check: interrupted; the table holds the checks that finished", file=sys.stderr)
    print(f"\n== gpu_check summary ({time.perf_counter() - started:.0f} s) ==")
    print(header)
    for row in rows:
        print_row(row)
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(row) for row in rows], indent=2) + "\n")
    return 0 if rows and all(row.ok for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
