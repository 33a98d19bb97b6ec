"""Every BO surrogate learns a smooth deterministic objective; a collapsed one is flagged as random search."""

from __future__ import annotations

import pytest
import torch
from support.toys import OPTIMUM, Toy, ToySpace

from tarot_eval.optimize import bo
from tarot_eval.optimize.record import RunRecord


@pytest.mark.parametrize("surrogate", bo.SURROGATES)
@pytest.mark.parametrize("noise", bo.NOISE_MODELS)
def test_each_surrogate_predicts_a_smooth_function(surrogate, noise):
    X = torch.rand(40, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    smooth = -((X - OPTIMUM) ** 2).sum(-1)
    quality = bo.held_out_quality(X, smooth, n_fit=30, settings=bo.BOSettings(surrogate=surrogate, noise=noise))
    assert quality["r2"] > 0.5
    if noise == "fixed":
        assert quality["gp_noise"] == pytest.approx(bo.FIXED_NOISE, rel=1e-3)


@pytest.mark.parametrize("surrogate", bo.SURROGATES)
def test_bo_with_each_surrogate_beats_its_initial_draws_and_is_not_flagged(tmp_path, surrogate):
    settings = bo.BOSettings(n_init=4, num_restarts=4, raw_samples=128, surrogate=surrogate)
    record = RunRecord(tmp_path, {"toy": surrogate})
    bo.run(Toy(), ToySpace, record, 14, 0, settings)
    assert max(record.values()) > max(record.values()[: settings.n_init])
    quality = bo.surrogate_quality(record.trace)
    assert quality["collapsed"] is False and quality["collapse_reason"] is None


def test_a_surrogate_that_learns_nothing_is_flagged(tmp_path):
    """Pure noise: the GP's predictions are no better than the running mean."""
    record = RunRecord(tmp_path, {"toy": "noise"})
    values = iter(torch.randn(14, generator=torch.Generator().manual_seed(3)).tolist())
    bo.run(lambda x: type("E", (), {"value": next(values), "accuracy": 0.0})(), ToySpace, record, 14, 0,
           bo.BOSettings(n_init=4, num_restarts=2, raw_samples=64, noise="learned"))
    quality = bo.surrogate_quality(record.trace)
    assert quality["collapsed"] is True and "R2" in quality["collapse_reason"]


def test_collapse_verdict_reads_scale_against_noise():
    flat = {"r2": 0.6, "n": 20, "median_outputscale": 3.5e-9, "median_signal_var": 3.5e-9, "median_noise": 0.2}
    assert bo.collapse_verdict(flat)["collapsed"]
    # the BNN kernel: a tiny ScaleKernel output scale with a large signal variance is not a collapse
    bnn = {"r2": 0.6, "n": 20, "median_outputscale": 1e-11, "median_signal_var": 0.9, "median_noise": 1e-4}
    assert not bo.collapse_verdict(bnn)["collapsed"]


def test_unknown_surrogate_or_noise_is_refused():
    with pytest.raises(ValueError, match="surrogate 'gp'"):
        bo.BOSettings(surrogate="gp")
    with pytest.raises(ValueError, match="noise 'none'"):
        bo.BOSettings(noise="none")
