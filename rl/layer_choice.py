"""`--layers auto`: train one edit per candidate layer block and ship the block that wins on validation; the default block.

Classification edits worked in the first layers, but activation-steering work (ActAdd, CAA, ITI)
finds style and sentiment steer best further in, so the candidates are spread over the depth:
the first sixth, a sixth in the middle, and a sixth starting two thirds of the way in. Each block
is trained into `OUT/layers-A-B/` (so each resumes on its own), its result chosen on validation
as usual; the block whose shipped edit has the best validation reward is copied into `OUT`, with
every block's reward in the provenance (`layer_choice`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from tarot_eval.rl.training import RESULT_NAME, TrainResult

from tarot_eval import run_lock
from tarot_eval.edit import checkpoint

AUTO = "auto"


def _width(num_layers: int) -> int:
    return max(1, round(num_layers / 6))


def candidate_blocks(num_layers: int) -> list[tuple[int, ...]]:
    """Contiguous blocks of a sixth of the layers: at the start, in the middle, from two thirds in."""
    width = _width(num_layers)
    starts = [0, middle_block(num_layers)[0], min(round(2 * num_layers / 3), num_layers - width)]
    return [tuple(range(start, start + width)) for start in dict.fromkeys(starts)]


def middle_block(num_layers: int) -> tuple[int, ...]:
    """The middle candidate block (SmolLM2: 12-16 of 30), what `tarot-eval rl` edits without `--layers`: on both
    rewards DPO (one seed) beat the first sixth there on validation and on the held-out prompts (docs/rl.md)."""
    width = _width(num_layers)
    start = (num_layers - width) // 2
    return tuple(range(start, start + width))


def block_name(block: tuple[int, ...]) -> str:
    return f"{block[0]}-{block[-1]}"


def train_blocks(train: Callable[[tuple[int, ...], Path], TrainResult], blocks: list[tuple[int, ...]],
                 out: str | Path) -> TrainResult:
    """`train(block, folder)` for each block, then the winner copied into `out`; its result, located in `out`."""
    out = Path(out)
    results = {block_name(block): train(block, out / f"layers-{block_name(block)}") for block in blocks}
    # the shipped edit's validation reward: the chosen candidate's, or the base model's when it shipped the identity
    shipped = {name: r.selection["chosen"] if r.shipped == "chosen" else r.selection["base"] for name, r in results.items()}
    winner = max(results, key=lambda name: (shipped[name], -list(results).index(name)))
    choice = {"on": results[winner].selection["on"], "candidates": shipped, "chosen": winner}
    with run_lock.hold(out):
        source = results[winner].directory
        config = checkpoint.TarotConfig.from_pretrained(source)
        config.provenance["layer_choice"] = choice
        result = json.loads((source / RESULT_NAME).read_text())
        result["layer_choice"] = choice
        _write(out / checkpoint.TENSORS_NAME, (source / checkpoint.TENSORS_NAME).read_bytes())
        _write(out / checkpoint.CONFIG_NAME, config.to_json().encode())
        _write(out / RESULT_NAME, (json.dumps(result, indent=2) + "\n").encode())
    return replace(results[winner], directory=out, selection={**results[winner].selection, "layer_choice": choice})


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
