"""Bayesian optimization as in the paper, maximizing: BoTorch SingleTaskGP with the infinite-width
BNN kernel, inputs normalized to the unit cube, outputs standardized, analytic LogEI, q = 1.

The first `n_init` points are the random-search draws (seeded per index); every later point is a
deterministic function of the recorded history and the seed, so a resumed run refits on the
recorded points and continues exactly. Each BO evaluation records the surrogate's prediction for
it (made before seeing it), its output scale and noise: `surrogate_quality` turns these into a
held-out R² against the running-mean predictor, which says whether the GP learns anything.

A proposal within `DUPLICATE_TOL` (max-norm, unit cube) of an evaluated point would spend an
evaluation on a value already known (a GP whose best point sits on the boundary asks for it
again and again): it is replaced by the best other restart of the acquisition optimizer, or a
seeded random point when every restart found the same one; its trace line says so
(`duplicate_of`, `replaced_by`).

Optional trust region (TuRBO-1 style): candidates are restricted to a box around the best point
whose side doubles after `success_tolerance` consecutive improvements, halves after
`failure_tolerance` consecutive failures, and restarts at its initial length below `min_length`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import torch
from botorch.acquisition import LogExpectedImprovement
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.kernels import InfiniteWidthBNNKernel
from botorch.models.transforms import Normalize, Standardize
from botorch.optim import optimize_acqf
from gpytorch.kernels import ScaleKernel
from gpytorch.mlls import ExactMarginalLogLikelihood

from tarot_eval.optimize import random_search
from tarot_eval.optimize.record import RunRecord

DUPLICATE_TOL = 1e-3


@dataclass(frozen=True)
class BOSettings:
    n_init: int = 4
    kernel_depth: int = 3  # the paper used 12, which collapses to a constant predictor (docs/optimize.md)
    num_restarts: int = 20
    raw_samples: int = 1024
    trust_region: bool = False
    initial_length: float = 0.8
    min_length: float = 2**-7
    max_length: float = 1.6
    success_tolerance: int = 3
    failure_tolerance: int = 5

    def as_dict(self) -> dict:
        return asdict(self)


def fit_surrogate(X: torch.Tensor, Y: torch.Tensor, depth: int) -> SingleTaskGP:
    """GP on points X [n, d] in the unit cube with values Y [n] (float64)."""
    unit = torch.stack([torch.zeros(X.shape[1]), torch.ones(X.shape[1])]).to(X)
    model = SingleTaskGP(
        X,
        Y.unsqueeze(-1),
        covar_module=ScaleKernel(InfiniteWidthBNNKernel(depth=depth)),
        input_transform=Normalize(d=X.shape[1], bounds=unit),
        outcome_transform=Standardize(m=1),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
    return model


def surrogate_stats(model: SingleTaskGP) -> dict:
    """Output scale and noise of the fitted GP, both in standardized units."""
    return {
        "gp_outputscale": float(model.covar_module.outputscale.detach()),
        "gp_noise": float(model.likelihood.noise.detach().mean()),
    }


def trust_region_length(trace: list[dict], settings: BOSettings) -> float:
    """Side length of the trust region after replaying the recorded history."""
    length, successes, failures = settings.initial_length, 0, 0
    best = -math.inf
    for entry in trace:
        improved = entry["train"] > best + 1e-3 * abs(best) if best > -math.inf else True
        if entry["phase"] == "bo":
            successes, failures = (successes + 1, 0) if improved else (0, failures + 1)
            if successes >= settings.success_tolerance:
                length, successes = min(2 * length, settings.max_length), 0
            elif failures >= settings.failure_tolerance:
                length, failures = length / 2, 0
            if length < settings.min_length:
                length = settings.initial_length
        best = max(best, entry["train"])
    return length


def propose(record: RunRecord, settings: BOSettings, seed: int) -> tuple[torch.Tensor, dict]:
    """Next point by LogEI on a GP fitted to the whole record, and the surrogate's view of it."""
    X = record.points()
    Y = torch.tensor(record.values(), dtype=torch.float64)
    dim = X.shape[1]
    with torch.random.fork_rng():
        torch.manual_seed(seed * 1_000_003 + len(record.trace))
        model = fit_surrogate(X, Y, settings.kernel_depth)
        low, high = torch.zeros(dim, dtype=torch.float64), torch.ones(dim, dtype=torch.float64)
        info = surrogate_stats(model)
        if settings.trust_region:
            length = trust_region_length(record.trace, settings)
            center = X[int(Y.argmax())]
            low, high = (center - length / 2).clamp(0, 1), (center + length / 2).clamp(0, 1)
            info["tr_length"] = length
        acquisition = LogExpectedImprovement(model, best_f=Y.max())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            candidates, values = optimize_acqf(
                acquisition,
                bounds=torch.stack([low, high]),
                q=1,
                num_restarts=settings.num_restarts,
                raw_samples=settings.raw_samples,
                return_best_only=False,
            )
        candidate = _unevaluated(candidates[values.argsort(descending=True)].squeeze(1), X, seed, len(record.trace), info)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            posterior = model.posterior(candidate)
        info["pred_mean"] = float(posterior.mean)
        info["pred_std"] = float(posterior.variance.sqrt())
    return candidate.squeeze(0).detach(), info


def _unevaluated(ranked: torch.Tensor, X: torch.Tensor, seed: int, index: int, info: dict) -> torch.Tensor:
    """The best of `ranked` [k, d] candidates not within DUPLICATE_TOL of an evaluated point, as [1, d].

    When the best one repeats an evaluation, `info` records which (`duplicate_of`) and what replaced it.
    """
    distance = (ranked.unsqueeze(1) - X.unsqueeze(0)).abs().amax(-1)  # [k, n] max-norm
    fresh = (distance > DUPLICATE_TOL).all(-1)
    if bool(fresh[0]):
        return ranked[:1]
    info["duplicate_of"] = int(distance[0].argmin())
    if bool(fresh.any()):
        info["replaced_by"] = "next-best restart"
        return ranked[int(fresh.int().argmax())].unsqueeze(0)
    info["replaced_by"] = "random"
    return random_search.draw(seed, index, X.shape[1]).to(ranked).unsqueeze(0)


def run(evaluate, space, record: RunRecord, budget: int, seed: int, settings: BOSettings) -> None:
    with random_search.progress(record, budget, "bo") as bar:
        for index in range(len(record.trace), budget):
            if index < settings.n_init:
                random_search.evaluate_and_record(record, evaluate, random_search.draw(seed, index, space.dim), "init")
            else:
                x, info = propose(record, settings, seed)
                random_search.evaluate_and_record(record, evaluate, x, "bo", info)
            bar.update(1)
            bar.set_postfix(best=f"{max(record.values()):.4f}", **_postfix(record.trace[-1]))


def _postfix(entry: dict) -> dict:
    return {"scale": f"{entry['gp_outputscale']:.2g}", "noise": f"{entry['gp_noise']:.2g}"} if "gp_noise" in entry else {}


def r2_and_correlation(actual: torch.Tensor, predicted: torch.Tensor, baseline: torch.Tensor) -> dict:
    """R² of `predicted` against the `baseline` predictor, and Pearson correlation with `actual`."""
    sse = float(((actual - predicted) ** 2).sum())
    sst = float(((actual - baseline) ** 2).sum())
    corr = float(torch.corrcoef(torch.stack([actual, predicted]))[0, 1]) if len(actual) > 2 else float("nan")
    return {"r2": 1 - sse / sst if sst > 0 else float("nan"), "pearson": corr, "n": len(actual)}


def surrogate_quality(trace: list[dict]) -> dict | None:
    """How well the GP predicted each BO evaluation before seeing it, versus the mean of the points before it."""
    rows = [(i, e) for i, e in enumerate(trace) if "pred_mean" in e]
    if len(rows) < 3:
        return None
    values = [e["train"] for e in trace]
    actual = torch.tensor([e["train"] for _, e in rows], dtype=torch.float64)
    predicted = torch.tensor([e["pred_mean"] for _, e in rows], dtype=torch.float64)
    running_mean = torch.tensor([sum(values[:i]) / i for i, _ in rows], dtype=torch.float64)
    quality = r2_and_correlation(actual, predicted, running_mean)
    quality["median_outputscale"] = float(torch.tensor([e["gp_outputscale"] for _, e in rows]).median())
    quality["median_noise"] = float(torch.tensor([e["gp_noise"] for _, e in rows]).median())
    return quality


def held_out_quality(X: torch.Tensor, Y: torch.Tensor, n_fit: int, depth: int = 3) -> dict:
    """Fit on the first n_fit points, predict the rest: R² versus predicting the training mean."""
    model = fit_surrogate(X[:n_fit], Y[:n_fit], depth)
    with torch.no_grad():
        predicted = model.posterior(X[n_fit:]).mean.squeeze(-1)
    actual = Y[n_fit:]
    quality = r2_and_correlation(actual, predicted, torch.full_like(actual, float(Y[:n_fit].mean())))
    return {**quality, **surrogate_stats(model)}
