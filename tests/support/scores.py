"""Per-request log-likelihoods of a run, for comparing two scoring paths."""

from __future__ import annotations

from lm_eval.api.instance import Instance

REQUESTS = [("Take 3 steps. Turn left. Answer:", " True"), ("Turn around. Answer:", " False")]



def _loglikelihoods(lm):
    instances = [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(REQUESTS)]
    return [ll for ll, _ in lm.loglikelihood(instances)]
