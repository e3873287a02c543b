"""Bisection where its convex-region shortcut does not hold."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import spacefold as sf
from spacefold._core.walk.bisect import default_n0


class _FunctionalFold(nn.Module):
    """y = ReLU(1 − relu(x) − relu(−x)) = ReLU(1 − |x|), the inner ReLUs called functionally: the
    hooked ReLU is on for |x| < 1 only, so its pattern class {off} is not convex."""

    def __init__(self):
        super().__init__()
        self.inner = nn.Linear(1, 2)
        self.outer = nn.Linear(2, 1)
        self.relu = nn.ReLU()
        with torch.no_grad():
            self.inner.weight.copy_(torch.tensor([[1.0], [-1.0]]))
            self.inner.bias.zero_()
            self.outer.weight.copy_(torch.tensor([[-1.0, -1.0]]))
            self.outer.bias.fill_(1.0)

    def forward(self, x):
        return self.relu(self.outer(F.relu(self.inner(x))))


class _Plain(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(1, 2), nn.ReLU(), nn.Linear(2, 1), nn.ReLU())

    def forward(self, x):
        return self.net(x)


def test_functional_activations_give_bits_and_keep_the_convex_shortcut():
    """The inner ReLUs, called as functions, give bits of their own: every class is convex again, so
    bisection may start from the two ends; the hooked ReLU alone (layers="relu") still walks off, on, off."""
    model = _FunctionalFold().double()
    assert default_n0(model) == 2
    assert default_n0(_Plain()) == 2
    x1 = torch.tensor([-2.0], dtype=torch.float64)
    x2 = torch.tensor([2.0], dtype=torch.float64)
    w = sf.walk(model, x1, x2, method="bisect", layers="relu")
    # off on [-2, -1), on on (-1, 1), off on (1, 2]
    assert w.patterns.int().flatten().tolist() == [0, 1, 0]
    assert torch.allclose(w.t[1:], torch.tensor([0.25, 0.75], dtype=torch.float64), atol=1e-5)
    # all bits: relu(x), relu(-x) (the call site ":relu") and the outer ReLU, against the exact walk
    full = sf.walk(model, x1, x2, method="bisect")
    exact = sf.walk(model, x1, x2, method="exact")
    assert torch.equal(full.patterns, exact.patterns)
    # bits [x > 0, -x > 0 (":relu"), 1 - |x| > 0 ("relu")]; x = 0 (t = 1/2) is a boundary point, not a region
    assert full.patterns.int().tolist() == [[0, 1, 0], [0, 1, 1], [1, 0, 1], [1, 0, 0]]


def test_abs_in_forward_disables_the_convex_shortcut_too():
    class Abs(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(1, 1)
            self.relu = nn.ReLU()

        def forward(self, x):
            return self.relu(1 - self.lin(x).abs())

    assert default_n0(Abs()) == 1025
