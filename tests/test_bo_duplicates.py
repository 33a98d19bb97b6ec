"""BO never spends an evaluation on a point it has already evaluated (1-D, boundary optimum)."""

from __future__ import annotations

import torch

from tarot_eval.objective import function
from tarot_eval.optimize import bo, random_search
from tarot_eval.optimize.record import RunRecord

SETTINGS = bo.BOSettings(n_init=4, num_restarts=4, raw_samples=128)


class Line:
    dim = 1


def run_linear(directory, budget: int = 7) -> RunRecord:
    """f(x) = x: LogEI keeps asking for x = 1 once it has seen it (every BO step before the fix)."""
    record = RunRecord(directory, {"toy": "linear"})
    bo.run(lambda x: function.ObjectiveValue(float(x[0]), 0.0), Line, record, budget, 0, SETTINGS)
    return record


def test_bo_replaces_a_repeated_proposal_and_says_so(tmp_path):
    record = run_linear(tmp_path / "run")
    points = record.points().squeeze(-1)
    gaps = (points.unsqueeze(0) - points.unsqueeze(1)).abs() + torch.eye(len(points))
    assert float(gaps.min()) > bo.DUPLICATE_TOL, points.tolist()
    assert max(record.values()) > 0.999  # the optimum at the boundary is still found, once
    replaced = [entry for entry in record.trace if "duplicate_of" in entry]
    assert replaced, "the GP did not repeat itself: the toy no longer exercises the replacement"
    for entry in replaced:
        assert entry["replaced_by"] in ("next-best restart", "random")
        assert abs(float(record.point(entry["duplicate_of"])[0]) - 1.0) < bo.DUPLICATE_TOL


def test_replacement_is_deterministic_on_resume(tmp_path):
    whole = run_linear(tmp_path / "whole", budget=7)
    run_linear(tmp_path / "resumed", budget=5)
    resumed = run_linear(tmp_path / "resumed", budget=7)
    assert torch.equal(whole.points(), resumed.points())
    assert [e.get("replaced_by") for e in whole.trace] == [e.get("replaced_by") for e in resumed.trace]


def test_all_restarts_on_evaluated_points_fall_back_to_the_seeded_random_point():
    evaluated = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    ranked = torch.tensor([[1.0], [1.0 - bo.DUPLICATE_TOL / 2], [0.0]], dtype=torch.float64)
    info = {}
    chosen = bo._unevaluated(ranked, evaluated, seed=3, index=7, info=info)
    assert info == {"duplicate_of": 1, "replaced_by": "random"}
    assert torch.equal(chosen.squeeze(0), random_search.draw(3, 7, 1))
    info = {}
    ranked = torch.tensor([[1.0], [0.4]], dtype=torch.float64)
    assert torch.equal(bo._unevaluated(ranked, evaluated, 3, 7, info), ranked[1:])
    assert info == {"duplicate_of": 1, "replaced_by": "next-best restart"}
