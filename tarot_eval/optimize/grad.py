"""Gradient ascent on the edit (our extension, not in the paper).

The point x (search-space coordinates, so the parameters are the angles or factors themselves in
the `full` space) is a trainable tensor on the frozen model; Adam minimizes the mean negative log
objective term over the training documents (cross-entropy over the choices for `choice-prob`);
after each step x is clamped back into the box. One step = one evaluation of the training batch
(forward and backward), recorded with the score at the point before the step. The sidecar of
step k holds that point and the state after the step (next point, Adam moments), so a resumed
run continues from the last recorded step exactly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from tarot_eval.optimize import loop
from tarot_eval.optimize.record import TRAIN_ACCURACY, TRAIN_VALUE, RunRecord

ADAM_MOMENTS = ("exp_avg", "exp_avg_sq")  # the sidecar keys, as torch.optim.Adam names its state


@dataclass(frozen=True)
class GradSettings:
    lr: float = 0.02
    betas: tuple[float, float] = (0.9, 0.999)


def start_point(space) -> torch.Tensor:
    """The identity edit when the space holds it, else the cube's centre."""
    x = space.identity_point()
    return x if x is not None else torch.full((space.dim,), 0.5, dtype=torch.float64)


def run(loss_and_evaluation, space, record: RunRecord, budget: int, settings: GradSettings) -> None:
    """`loss_and_evaluation(params) -> (loss tensor, ObjectiveValue)`."""
    done = len(record.trace)
    if done:
        state = record.tensors(done - 1)
        x = state["next_x"].clone()
    else:
        x = start_point(space).clone()
    x.requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=settings.lr, betas=settings.betas)
    if done:  # Adam's own state format: step count and moments of the one parameter
        moments = {"step": torch.tensor(float(done)), **{k: state[k].clone() for k in ADAM_MOMENTS}}
        optimizer.load_state_dict({"state": {0: moments}, "param_groups": optimizer.state_dict()["param_groups"]})
    with loop.progress(record, budget, "grad") as bar:
        for _ in range(done, budget):
            start = time.perf_counter()
            evaluated = x.detach().clone()
            optimizer.zero_grad()
            loss, evaluation = loss_and_evaluation(space.to_params(x).float())
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                x.clamp_(0, 1)
            moments = optimizer.state_dict()["state"][0]
            entry = {
                "phase": "grad",
                TRAIN_VALUE: evaluation.value,
                TRAIN_ACCURACY: evaluation.accuracy,
                "loss": loss.item(),
                "wall_s": round(time.perf_counter() - start, 4),
                "time": round(time.time(), 3),
            }
            record.append(
                entry,
                {
                    "x": evaluated,
                    "next_x": x.detach().clone(),
                    **{k: moments[k].detach().clone() for k in ADAM_MOMENTS},
                },
            )
            bar.update(1)
            bar.set_postfix(best=f"{max(record.values()):.4f}", loss=f"{loss.item():.4f}")
