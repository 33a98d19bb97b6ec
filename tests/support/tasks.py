"""A tiny multiple_choice task on local JSON, its BPE tokenizer, a tiny Llama for it and lm-eval's HFLM around both."""

from __future__ import annotations

import json
import random

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

WORDS = "red green blue apple cherry sky grass yes no true false left right up down step turn".split()



CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)



def make_docs(n: int, split: str, seed: int) -> list[dict]:
    rnd = random.Random(seed)
    docs = []
    for i in range(n):
        words = rnd.sample(WORDS, 4)
        label = int(words[0] in ("red", "green", "blue", "sky", "grass", "apple", "cherry"))
        docs.append({"id": f"{split}-{i}", "question": " ".join(words), "label": label})
    return docs



def write_task(root, name: str = "tiny_mc", choices=("no", "yes"), splits=("train", "validation", "test"), sizes=None):
    """A multiple_choice YAML task over local JSON files under `root`; returns the include path."""
    sizes = sizes or {"train": 40, "validation": 12, "test": 16}
    files = {}
    for k, split in enumerate(splits):
        path = root / f"{name}_{split}.jsonl"
        path.write_text("".join(json.dumps(d) + "\n" for d in make_docs(sizes[split], split, k)))
        files[split] = str(path)
    split_keys = {"train": "training_split", "validation": "validation_split", "test": "test_split"}
    lines = [
        f"task: {name}",
        "dataset_path: json",
        "dataset_kwargs:",
        "  data_files:",
        *[f"    {split}: {path}" for split, path in files.items()],
        "output_type: multiple_choice",
        *[f"{split_keys[split]}: {split}" for split in splits],
        'doc_to_text: "Question: {{question}}\\nAnswer:"',
        f"doc_to_choice: {json.dumps(list(choices))}",
        "doc_to_target: label",
        "metric_list:",
        "  - metric: acc",
    ]
    (root / f"{name}.yaml").write_text("\n".join(lines) + "\n")
    return str(root)



def tiny_tokenizer() -> transformers.PreTrainedTokenizerFast:
    corpus = [f"Question: {w} {v}\nAnswer: {w}" for w in WORDS for v in WORDS]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<pad>", "<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus, trainer)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast



def tiny_model(vocab_size: int, seed: int = 0, max_positions: int = 256) -> transformers.PreTrainedModel:
    """A tiny random Llama (GQA: 4 query heads, 2 key-value heads) for a tokenizer of `vocab_size` tokens."""
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_positions,
    )
    return transformers.LlamaForCausalLM(config).eval()



def load_task(include_path: str, name: str = "tiny_mc"):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=include_path, include_defaults=False).load(name)["tasks"][name]



def hflm(model, tokenizer):
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=model, tokenizer=tokenizer, backend="causal", batch_size=4)
