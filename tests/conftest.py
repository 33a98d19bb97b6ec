"""Shared test fixtures: tiny randomly initialised models of each supported family, offline tokenizers, data dir."""

from __future__ import annotations

import os
from pathlib import Path

if os.environ.get("PYTEST_XDIST_WORKER"):  # `pytest -n 2`: one thread per worker (and its subprocesses), not two each
    os.environ["OMP_NUM_THREADS"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if SHARED_DATA.is_dir():  # CI keeps the real data beside the clone; subprocesses inherit this
    os.environ.setdefault("TAROT_DATA_DIR", str(SHARED_DATA))
VOCAB = 320

_COMMON = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4)
TINY_CONFIGS = {
    "llama": lambda: transformers.LlamaConfig(**_COMMON, num_key_value_heads=2),
    "qwen2": lambda: transformers.Qwen2Config(**_COMMON, num_key_value_heads=2),
    "mistral": lambda: transformers.MistralConfig(**_COMMON, num_key_value_heads=2),
    "phi3": lambda: transformers.Phi3Config(**_COMMON, num_key_value_heads=2, pad_token_id=0),
    "qwen3": lambda: transformers.Qwen3Config(**_COMMON, num_key_value_heads=2, head_dim=8),
    "gemma": lambda: transformers.GemmaConfig(**_COMMON, num_key_value_heads=2, head_dim=8),
    "olmo2": lambda: transformers.Olmo2Config(**_COMMON, num_key_value_heads=2),
    "gemma2": lambda: transformers.Gemma2Config(**_COMMON, num_key_value_heads=2, head_dim=16),
    "gemma3_text": lambda: transformers.Gemma3TextConfig(**_COMMON, num_key_value_heads=2, head_dim=12),
    "gpt2": lambda: transformers.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=3, n_head=4),
}


def tiny_model(family: str, seed: int = 0) -> transformers.PreTrainedModel:
    """A tiny random causal LM; biases (where the family has them) are made non-zero so they matter."""
    torch.manual_seed(seed)
    return model_from_config(TINY_CONFIGS[family]())


def model_from_config(config) -> transformers.PreTrainedModel:
    """The random causal LM of `config` (eager attention, eval mode), biases drawn non-zero so they matter."""
    config.bos_token_id, config.eos_token_id = 1, 2
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()
    with torch.no_grad():
        for module in model.modules():
            bias = getattr(module, "bias", None)
            if isinstance(bias, torch.nn.Parameter):
                bias.normal_(0, 0.5)
    return model


@pytest.fixture
def data_dir() -> Path:
    """The real data folder (TAROT_DATA_DIR, else ../shared/data beside the repo); skips if absent."""
    path = Path(os.environ.get("TAROT_DATA_DIR") or SHARED_DATA)
    if not path.is_dir():
        pytest.skip(f"real data not found at {path}: set TAROT_DATA_DIR to a copy of shared/data")
    return path


def make_tiny_tokenizer():
    """A small byte-level BPE tokenizer trained in-process (no hub), with a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    corpus = [
        "The quick brown fox jumps over the lazy dog. Answer: True False Yes No World Sports Business Science",
        "If you follow these instructions, do you return to the starting point? Take 1 step. Turn left.",
        "Correct Incorrect red green blue purple orange. What color is this? 0123456789 #ff00aa rgb hsl",
    ]
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB, special_tokens=["<pad>", "<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(corpus, trainer)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )
    fast.chat_template = (
        "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}"
        "{% if add_generation_prompt %}<s>assistant:{% endif %}"
    )
    return fast


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """The in-process tokenizer (`make_tiny_tokenizer`), trained once per test process."""
    return make_tiny_tokenizer()


@pytest.fixture
def saved_tiny_llama(tmp_path, tiny_tokenizer) -> Path:
    """A tiny Llama + tokenizer saved as a local HF checkpoint directory."""
    path = tmp_path / "tiny-llama"
    tiny_model("llama").save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


def run_console(command: list[str], output_path: Path, env: dict | None = None, check: bool = True):
    """Run an installed console script (e.g. the stock `lm_eval`) in a subprocess.

    Returns (completed process, parsed results JSON or None).
    """
    import json
    import shutil
    import subprocess
    import sys

    executable = shutil.which(command[0], path=str(Path(sys.executable).parent)) or command[0]
    full_env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    proc = subprocess.run(
        [executable, *command[1:], "--output_path", str(output_path)],
        capture_output=True, text=True, env=full_env, timeout=900,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    results = sorted(output_path.rglob("results_*.json"))
    return proc, (json.loads(results[-1].read_text()) if results else None)


def write_choice_task(
    folder: Path,
    name: str,
    rows: list[dict],
    doc_to_text: str = "{{input}}\\nAnswer (True or False):",
    doc_to_choice: str = '["False", "True"]',
) -> Path:
    """A minimal lm-eval multiple_choice YAML task over a local JSONL file (`label` is the gold index)."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    data = folder / f"{name}.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    (folder / f"{name}.yaml").write_text(
        f"task: {name}\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {data}\n"
        "test_split: test\n"
        "output_type: multiple_choice\n"
        f'doc_to_text: "{doc_to_text}"\n'
        f"doc_to_choice: {doc_to_choice}\n"
        "doc_to_target: label\n"
        "metric_list:\n  - metric: acc\n"
    )
    return folder


def evaluate_into(output_path: Path, model, tasks, task_manager, model_args="pretrained=tiny-llama", **kwargs) -> Path:
    """Run lm-eval and save exactly as `lm_eval --output_path ... --log_samples` does; returns the results file."""
    from lm_eval import simple_evaluate
    from lm_eval.loggers import EvaluationTracker

    tracker = EvaluationTracker(output_path=str(output_path))
    results = simple_evaluate(
        model=model, model_args=model_args, tasks=list(tasks), task_manager=task_manager,
        log_samples=True, evaluation_tracker=tracker, bootstrap_iters=200, **kwargs,
    )
    samples = results.pop("samples")
    tracker.save_results_aggregated(results=results, samples=samples)
    for task in results["configs"]:
        tracker.save_results_samples(task_name=task, samples=samples[task])
    (results_file,) = output_path.rglob("results_*.json")
    return results_file


# fixtures defined with the helpers of several test modules (tests/support/), offered to every test here
from support.compare_runs import toy  # noqa: E402, F401


def pytest_collection_modifyitems(items):
    """Slow tests first (a stable sort): under `-n 2` they start at once instead of ending the run on one worker."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
