"""Bayesian optimization, maximizing: a BoTorch SingleTaskGP on inputs normalized to the unit cube and
standardized outputs, q = 1. Surrogates (`BOSettings.surrogate`):
- `bnn`: the paper's infinite-width BNN kernel (depth `kernel_depth`) under a ScaleKernel;
- `vanilla`: BoTorch's default SingleTaskGP (RBF, lengthscale prior scaled with the dimension,
  Hvarfner et al. 2024, "Vanilla Bayesian Optimization Performs Great in High Dimensions");
- `saas`: the MAP estimate of the SAAS model (sparse axis-aligned lengthscale prior,
  `botorch.models.map_saas.get_map_saas_model`), the cheap form of SAASBO.
Noise (`BOSettings.noise`): `fixed` for a deterministic objective (fixed documents and prompts):
a small fixed variance `FIXED_NOISE` in standardized units (a floor that keeps the Cholesky
stable), acquisition LogEI on the observed best; `learned` for sampled rewards: the GP fits its
noise and the acquisition is qLogNoisyExpectedImprovement over the evaluated points.

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
from botorch.acquisition import LogExpectedImprovement, qLogNoisyExpectedImprovement
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.kernels import InfiniteWidthBNNKernel
from botorch.models.map_saas import get_map_saas_model
from botorch.models.transforms import Normalize, Standardize
from botorch.optim import optimize_acqf
from gpytorch.kernels import ScaleKernel
from gpytorch.mlls import ExactMarginalLogLikelihood

from tarot_eval.optimize import loop, random_search
from tarot_eval.optimize.record import TRAIN_VALUE, RunRecord

DUPLICATE_TOL = 1e-3


SURROGATES = ("bnn", "vanilla", "saas")
NOISE_MODELS = ("fixed", "learned")
FIXED_NOISE = 1e-4  # noise variance in standardized units for a deterministic objective
COLLAPSE_RATIO = 1e-3  # signal variance below this fraction of the noise: the GP predicts a constant


@dataclass(frozen=True)
class BOSettings:
    n_init: int = 4
    surrogate: str = "vanilla"
    noise: str = "fixed"
    kernel_depth: int = 3  # bnn only; the paper used 12, which collapses to a constant predictor (docs/optimize.md)
    num_restarts: int = 20
    raw_samples: int = 1024
    trust_region: bool = False
    initial_length: float = 0.8
    min_length: float = 2**-7
    max_length: float = 1.6
    success_tolerance: int = 3
    failure_tolerance: int = 5

    def __post_init__(self):
        if self.surrogate not in SURROGATES:
            raise ValueError(f"BO surrogate {self.surrogate!r}; expected one of {', '.join(SURROGATES)}")
        if self.noise not in NOISE_MODELS:
            raise ValueError(f"BO noise {self.noise!r}; expected one of {', '.join(NOISE_MODELS)}")

    def as_dict(self) -> dict:
        return asdict(self)


def fit_surrogate(X: torch.Tensor, Y: torch.Tensor, settings: BOSettings) -> SingleTaskGP:
    """GP on points X [n, d] in the unit cube with values Y [n] (float64)."""
    unit = torch.stack([torch.zeros(X.shape[1]), torch.ones(X.shape[1])]).to(X)
    train_Y = Y.unsqueeze(-1)
    # Standardize divides the variance by Var(Y): FIXED_NOISE is the variance after it
    train_Yvar = torch.full_like(train_Y, FIXED_NOISE * max(float(Y.var()), 1e-12)) if settings.noise == "fixed" else None
    transforms = {"input_transform": Normalize(d=X.shape[1], bounds=unit), "outcome_transform": Standardize(m=1)}
    if settings.surrogate == "bnn":
        covar = ScaleKernel(InfiniteWidthBNNKernel(depth=settings.kernel_depth))
        model = SingleTaskGP(X, train_Y, train_Yvar, covar_module=covar, **transforms)
    elif settings.surrogate == "vanilla":
        model = SingleTaskGP(X, train_Y, train_Yvar, **transforms)
    else:
        model = get_map_saas_model(X, train_Y, train_Yvar, **transforms)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
    return model


def surrogate_stats(model: SingleTaskGP) -> dict:
    """Signal variance at the evaluated points (the kernel's diagonal: for the BNN kernel the
    ScaleKernel's output scale alone is not identifiable against its weight variance), the output
    scale, noise and median lengthscale of the fitted GP, all in standardized units."""
    covar = model.covar_module
    base = covar.base_kernel if isinstance(covar, ScaleKernel) else covar
    with torch.no_grad():
        signal = float(covar(model.train_inputs[0], diag=True).mean())
    stats = {
        "gp_signal_var": signal,
        "gp_outputscale": float(covar.outputscale.detach()) if isinstance(covar, ScaleKernel) else 1.0,
        "gp_noise": float(model.likelihood.noise.detach().mean()),
    }
    if getattr(base, "lengthscale", None) is not None:
        stats["gp_lengthscale"] = float(base.lengthscale.detach().median())
    return stats


def trust_region_length(trace: list[dict], settings: BOSettings) -> float:
    """Side length of the trust region after replaying the recorded history."""
    length, successes, failures = settings.initial_length, 0, 0
    best = -math.inf
    for entry in trace:
        improved = entry[TRAIN_VALUE] > best + 1e-3 * abs(best) if best > -math.inf else True
        if entry["phase"] == "bo":
            successes, failures = (successes + 1, 0) if improved else (0, failures + 1)
            if successes >= settings.success_tolerance:
                length, successes = min(2 * length, settings.max_length), 0
            elif failures >= settings.failure_tolerance:
                length, failures = length / 2, 0
            if length < settings.min_length:
                length = settings.initial_length
        best = max(best, entry[TRAIN_VALUE])
    return length


def propose(record: RunRecord, settings: BOSettings, seed: int) -> tuple[torch.Tensor, dict]:
    """Next point by LogEI on a GP fitted to the whole record, and the surrogate's view of it."""
    X = record.points()
    Y = torch.tensor(record.values(), dtype=torch.float64)
    dim = X.shape[1]
    with torch.random.fork_rng():
        torch.manual_seed(seed * 1_000_003 + len(record.trace))
        model = fit_surrogate(X, Y, settings)
        low, high = torch.zeros(dim, dtype=torch.float64), torch.ones(dim, dtype=torch.float64)
        info = surrogate_stats(model)
        if settings.trust_region:
            length = trust_region_length(record.trace, settings)
            center = X[int(Y.argmax())]
            low, high = (center - length / 2).clamp(0, 1), (center + length / 2).clamp(0, 1)
            info["tr_length"] = length
        if settings.noise == "fixed":
            acquisition = LogExpectedImprovement(model, best_f=Y.max())
        else:
            acquisition = qLogNoisyExpectedImprovement(model, X_baseline=X, prune_baseline=True)
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
    with loop.progress(record, budget, "bo") as bar:
        for index in range(len(record.trace), budget):
            if index < settings.n_init:
                loop.evaluate_and_record(record, evaluate, random_search.draw(seed, index, space.dim), "init")
            else:
                x, info = propose(record, settings, seed)
                loop.evaluate_and_record(record, evaluate, x, "bo", info)
            bar.update(1)
            bar.set_postfix(best=f"{max(record.values()):.4f}", **_postfix(record.trace[-1]))


def _postfix(entry: dict) -> dict:
    if "gp_noise" not in entry:
        return {}
    return {"signal": f"{entry.get('gp_signal_var', entry['gp_outputscale']):.2g}", "noise": f"{entry['gp_noise']:.2g}"}


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
    values = [e[TRAIN_VALUE] for e in trace]
    actual = torch.tensor([e[TRAIN_VALUE] for _, e in rows], dtype=torch.float64)
    predicted = torch.tensor([e["pred_mean"] for _, e in rows], dtype=torch.float64)
    running_mean = torch.tensor([sum(values[:i]) / i for i, _ in rows], dtype=torch.float64)
    quality = r2_and_correlation(actual, predicted, running_mean)
    quality["median_outputscale"] = float(torch.tensor([e["gp_outputscale"] for _, e in rows]).median())
    quality["median_signal_var"] = float(torch.tensor([e.get("gp_signal_var", e["gp_outputscale"]) for _, e in rows]).median())
    quality["median_noise"] = float(torch.tensor([e["gp_noise"] for _, e in rows]).median())
    quality.update(collapse_verdict(quality))
    return quality


def collapse_verdict(quality: dict) -> dict:
    """`collapsed` (and why): the surrogate predicted no better than the running mean, or its output
    signal variance sat orders of magnitude below its noise. Then BO behaved as random search."""
    reasons = []
    if not quality["r2"] > 0:
        reasons.append(f"held-out R2 {quality['r2']:.2f} <= 0 over {quality['n']} BO evaluations")
    signal = quality.get("median_signal_var", quality["median_outputscale"])
    if signal < COLLAPSE_RATIO * quality["median_noise"]:
        reasons.append(f"signal variance {signal:.2g} << noise {quality['median_noise']:.2g}")
    return {"collapsed": bool(reasons), "collapse_reason": "; ".join(reasons) or None}


def held_out_quality(X: torch.Tensor, Y: torch.Tensor, n_fit: int, settings: BOSettings | None = None) -> dict:
    """Fit on the first n_fit points, predict the rest: R² versus predicting the training mean."""
    model = fit_surrogate(X[:n_fit], Y[:n_fit], settings or BOSettings(noise="learned"))
    with torch.no_grad():
        predicted = model.posterior(X[n_fit:]).mean.squeeze(-1)
    actual = Y[n_fit:]
    quality = r2_and_correlation(actual, predicted, torch.full_like(actual, float(Y[:n_fit].mean())))
    return {**quality, **surrogate_stats(model)}
