"""Choosing the edit a run ships, the same for `tarot-eval optimize` and every rl trainer.

A search ranks its points by the training score; `candidates` are the points compared on the
validation documents (or prompts) held out from the training pool; `choose` takes the best there
(ties: the better training score, then the earliest). `decide` keeps the chosen edit only when it
beats the base model by more than float noise (`MIN_GAIN`); otherwise the checkpoint holds the
identity edit (the base model's behaviour) unless the user asked to ship it anyway, and the
command prints `not_improved_banner`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

MIN_GAIN = 1e-6  # an edit must beat the base model's score by more than float noise
SHIP_UNIMPROVED_FLAG = "--ship-unimproved"


def candidates(train_scores: Sequence[float], k: int, along_trajectory: bool = False) -> list[int]:
    """Indices of the points to compare on validation: the `k` best training scores (ties: the
    earliest), or, for a gradient trajectory, `k` points spread along it (early stopping)."""
    n = len(train_scores)
    if along_trajectory:
        return sorted({round(i * (n - 1) / max(k - 1, 1)) for i in range(k)}) if k > 1 else [n - 1]
    order = sorted(range(n), key=lambda i: (-train_scores[i], i))
    return sorted(order[:k])


def choose(pool: Sequence[int], selection_scores: Mapping[int, float], train_scores: Sequence[float] | None = None) -> int:
    """The candidate with the best selection score; ties: the better training score (when there is one), then the earliest."""
    return max(pool, key=lambda i: (selection_scores[i], train_scores[i] if train_scores is not None else 0.0, -i))


def decide(chosen_score: float, base_score: float, ship_unimproved: bool) -> tuple[bool, str]:
    """(improved, shipped): shipped is "chosen", or "identity" when the edit does not beat the base model."""
    improved = chosen_score > base_score + MIN_GAIN
    return improved, "chosen" if improved or ship_unimproved else "identity"


def not_improved_banner(what: str, shipped: str, flag: str | None = SHIP_UNIMPROVED_FLAG,
                        kept_as: str = "the identity edit") -> str:
    """The loud notice a command prints when no candidate beat the base model on `what`
    (e.g. "validation documents", "validation reward"); `flag`: the command's flag that ships it anyway (None: none)."""
    line = "!" * 78
    anyway = f" ({flag})" if flag else ""
    kept = (f"It is saved anyway{anyway}, with `improved: false` in its provenance." if shipped == "chosen" else
            f"The output holds {kept_as} (the base model)" + (f"; {flag} saves the chosen edit." if flag else "."))
    return f"{line}\nNOT IMPROVED: the chosen edit does not beat the base model on {what}.\n{kept}\n{line}"
