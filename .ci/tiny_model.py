"""Save the tests' tiny random Llama + tokenizer and a rotation checkpoint for it (CI smoke runs).

    .venv/bin/python .ci/tiny_model.py OUT    # writes OUT/model and OUT/rotations
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.tasks import tiny_model, tiny_tokenizer  # noqa: E402

from tarot_eval.edit import checkpoint  # noqa: E402
from tarot_eval.edit.head_edit import HeadEdit  # noqa: E402


def main(out: Path) -> None:
    tokenizer = tiny_tokenizer()
    model = tiny_model(len(tokenizer))
    model.save_pretrained(out / "model")
    tokenizer.save_pretrained(out / "model")
    edit = HeadEdit.identity(model, "rotation", tuple(range(model.config.num_hidden_layers)))
    edit.params = torch.full_like(edit.params, 0.7)
    checkpoint.save(out / "rotations", edit, model, provenance={"task": "tarot_navigate"})


if __name__ == "__main__":
    main(Path(sys.argv[1]))
