"""A toy objective with a known optimum, for the search tests."""

from __future__ import annotations

import torch

from tarot_eval.objective import function

OPTIMUM = torch.tensor([0.8, 0.2, 0.65, 0.3], dtype=torch.float64)



class Toy:
    """A smooth objective on [0, 1]^4 with its maximum 0 at OPTIMUM; counts its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x):
        self.calls += 1
        return function.ObjectiveValue(-float(((x - OPTIMUM) ** 2).sum()), 0.0)



class ToySpace:
    dim = 4
