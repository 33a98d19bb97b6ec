"""What a grid cell is computed from, as hashes: the rendered requests of the documents it reads, the
model's identity and its settings (never paths), and the identities of the cells it reads.

A cell is done when its record (`cells.RECORD_NAME`) holds the same identity; a changed part re-runs
it and the reason names the part. Requests are rendered as lm-eval renders them (the chat template
through HFLM's own `apply_chat_template`), so editing a task's `doc_to_text` changes exactly the cells
of that task. Fit cells (optimize, calibrate, lora) hash the first `n_train + n_val + 6` documents of
their seed's shuffled training pool (the draw, its spare documents and the `mix` demonstrations).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from types import SimpleNamespace

SCHEME = 1  # bump when what goes into an identity changes: every cell then re-runs
SPARE_DOCUMENTS = 6  # fit cells: documents hashed past n_train + n_val (the mix demonstrations)
FEWSHOT_SEED = 1234  # lm-eval's default fewshot_random_seed, as simple_evaluate sets it
HASH_CACHE = "file-hashes.json"


def digest(value) -> str:
    """sha256 of a JSON-able value (keys sorted), the form every identity part takes."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def _file_sha256(path: Path, cache: dict) -> str:
    stat = path.stat()
    key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    if key not in cache:
        sha = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                sha.update(block)
        cache[key] = sha.hexdigest()
    return cache[key]


def weight_files(pretrained: str | None) -> list[Path]:
    """The local files that hold a model's weights and tokenizer: the embedded GGUF, a .gguf file, or a
    local folder's config, tokenizer and weight files. A hub id with no local folder has none."""
    from tarot_eval.models import default_model

    if pretrained in (None, ""):
        return [default_model.gguf_path()]
    path = Path(pretrained).expanduser()
    if path.is_file():
        return [path]
    if not path.is_dir():
        return []
    kept = ("*.safetensors", "*.bin", "*.gguf", "config.json", "tokenizer*.json", "*.model", "special_tokens_map.json")
    return sorted({file for pattern in kept for file in path.glob(pattern) if file.is_file()})


def model_identity(spec) -> dict:
    """The model part of every identity: the content hash of its files (the name for a hub id that is not
    on disk), its dtype and device. Content hashes are cached by path, size and mtime."""
    from tarot_eval.models.default_model import cache_root

    cache_path = cache_root() / HASH_CACHE
    try:
        cache = json.loads(cache_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cache = {}
    files = weight_files(spec.pretrained)
    content = {file.name: _file_sha256(file, cache) for file in files} if files else {"hub_id": spec.pretrained}
    try:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        scratch = cache_path.with_name(f".{cache_path.name}.{os.getpid()}")
        scratch.write_text(json.dumps(cache, indent=1), encoding="utf-8")
        os.replace(scratch, cache_path)
    except OSError:
        pass  # a read-only cache only costs the hashing again
    return {"weights": digest(content), "dtype": spec.dtype, "device": spec.device}


class RequestHasher:
    """Renders and hashes the requests a cell reads, once per distinct (task, prompt) of a model."""

    def __init__(self, model_spec, manager):
        self.model_spec = model_spec
        self.manager = manager
        self._template = None
        self._seen: dict[tuple, str] = {}

    def chat_template(self):
        """HFLM's `apply_chat_template`, bound to the model's tokenizer alone (no weights loaded)."""
        if self._template is None:
            from lm_eval.models.huggingface import HFLM
            from transformers import AutoTokenizer

            from tarot_eval.models import loading

            name, gguf_file = loading.resolve(self.model_spec.pretrained)
            tokenizer = AutoTokenizer.from_pretrained(name, **({"gguf_file": gguf_file} if gguf_file else {}))
            holder = SimpleNamespace(tokenizer=tokenizer, chat_template_args={})
            self._template = lambda history, add_generation_prompt=True: HFLM.apply_chat_template(
                holder, history, add_generation_prompt)
        return self._template

    def evaluation(self, job, spec) -> str:
        """Hash of the requests lm-eval builds for an evaluation (icl: with its fixed demonstrations)."""
        key = ("eval", job.task, job.demonstrations, spec.limit, spec.apply_chat_template, spec.fewshot_as_multiturn,
               spec.system_instruction)
        if key not in self._seen:
            self._seen[key] = self._render_evaluation(job, spec)
        return self._seen[key]

    def _render_evaluation(self, job, spec) -> str:
        import contextlib
        import math

        from tarot_eval.leaderboard.execute import task_with_demonstrations
        from tarot_eval.objective.task_documents import fixed_demonstrations

        if job.demonstrations is None:
            task, chosen = self.manager.load(job.task)["tasks"][job.task], None
        else:
            task, chosen = task_with_demonstrations(job, self.manager)
        task.set_fewshot_seed(seed=FEWSHOT_SEED)
        limit = spec.limit
        if isinstance(limit, float):
            size = len(task.eval_docs)
            limit = int(math.ceil(size * limit)) if limit <= 1.0 else int(limit)
        with contextlib.nullcontext() if chosen is None else fixed_demonstrations(task, [doc for _, doc in chosen]):
            task.build_all_requests(limit=limit, rank=0, world_size=1, system_instruction=spec.system_instruction,
                                    apply_chat_template=spec.apply_chat_template,
                                    fewshot_as_multiturn=spec.fewshot_as_multiturn,
                                    chat_template=self.chat_template() if spec.apply_chat_template else None,
                                    tokenizer_name="")
        rendered = [[instance.doc_id, instance.idx, instance.request_type, list(instance.arguments),
                     task.doc_to_target(instance.doc)] for instance in task.instances]
        return digest({"output_type": task.OUTPUT_TYPE, "requests": rendered})

    def training(self, task_name: str, n_train: int, n_val: int, seed: int, prompt) -> str:
        """Hash of the training-pool documents a fit cell draws from, rendered with its prompt."""
        key = ("fit", task_name, n_train, n_val, seed, prompt)
        if key not in self._seen:
            from tarot_eval.objective import task_documents as objectives

            task = self.manager.load(task_name)["tasks"][task_name]
            task.set_fewshot_seed(seed=FEWSHOT_SEED)
            split, ordered, _ = objectives.shuffled_pool(task, seed)
            if prompt.demonstrations != "sampled":  # the fixed demonstrations come from what the draw leaves
                shots = max(objectives.MIX_SHOTS) if prompt.demonstrations == "mix" else prompt.num_fewshot or 0
                if len(ordered) < n_train + n_val + shots:
                    raise ValueError(f"its {split!r} split holds {len(ordered)} documents, fewer than {n_train} training + "
                                     f"{n_val} validation + the {shots} fixed demonstrations of demonstrations="
                                     f"{prompt.demonstrations!r}")
            zero_shot = objectives.PromptOptions(0 if prompt.demonstrations != "sampled" else prompt.num_fewshot,
                                                 prompt.apply_chat_template, prompt.fewshot_as_multiturn,
                                                 prompt.system_instruction)
            rendered = []
            for index, doc in ordered[: n_train + n_val + SPARE_DOCUMENTS]:
                pairs, gold = objectives.requests_for(task, doc, index, zero_shot, self.chat_template())
                rendered.append([index, pairs, gold])
            self._seen[key] = digest({"split": split, "requests": rendered})
        return self._seen[key]


def identity(parts: dict) -> str:
    """The cell's identity: the hash of its parts (scheme, kind, requests, model, settings, depends)."""
    return digest({"scheme": SCHEME, **parts})


def changed_parts(recorded: dict, wanted: dict) -> list[str]:
    """Which parts differ, named for the run's reason (`settings.budget`, `requests`, `depends.<cell>`)."""
    changed = []
    for key in sorted(set(recorded) | set(wanted)):
        mine, theirs = recorded.get(key), wanted.get(key)
        if mine == theirs:
            continue
        if isinstance(mine, dict) and isinstance(theirs, dict) and key in ("settings", "depends", "model"):
            changed += [f"{key}.{name}" for name in sorted(set(mine) | set(theirs)) if mine.get(name) != theirs.get(name)]
        else:
            changed.append(key)
    return changed
