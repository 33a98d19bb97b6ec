"""A saved tiny task and model folder, for the commands that load both from disk (calibrate, lora)."""

from __future__ import annotations

from lm_eval.models.huggingface import HFLM

from support.tasks import load_task, tiny_model, tiny_tokenizer, write_task


def saved_task_and_model(root, seed: int) -> dict:
    """A tiny task folder and a tiny Llama saved under `root`, the model loaded back and wrapped in HFLM."""
    import transformers

    include = write_task(root)
    tokenizer = tiny_tokenizer()
    model_dir = root / "model"
    tiny_model(len(tokenizer), seed=seed).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir).eval()
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=8)
    return {"root": root, "include": include, "task": load_task(include), "model": model, "lm": lm, "model_dir": model_dir}
