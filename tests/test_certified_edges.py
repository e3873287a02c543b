"""Edge cases of the certified walk: the range of ``tol``, termination below float64's
resolution in t, and segments that start or end on a boundary."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import spacefold as sf
from spacefold.errors import InputError
from spacefold._core.walk.certified import CertifiedWalker, certified_walks


def _gelu_mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 64), nn.GELU(), nn.Linear(64, 64), nn.GELU(), nn.Linear(64, 2))


A, B = torch.tensor([-2.0, 0.5, 1.0]), torch.tensor([2.0, -1.0, 0.3])


@pytest.mark.parametrize("tol", [0.0, 1.0, 1.5])
def test_tol_outside_open_unit_interval_refused(tol):
    """tol = 0 asks bisection for exact positions (it never got there); tol >= 1 asks for nothing."""
    model = _gelu_mlp()
    for call in (lambda: sf.folding(model, A, B, method="certified", dtype=torch.float64, tol=tol),
                 lambda: sf.walk(model, A, B, method="certified", tol=tol),
                 lambda: sf.folding_batch(model, A[None], B[None], method="certified", tol=tol),
                 lambda: certified_walks(model, A[None], B[None], tol=tol)):
        with pytest.raises(InputError, match=r"^tol must be a number in \(0, 1\) for method='certified'.*got "):
            call()


def test_bisect_keeps_accepting_tol_zero():
    """The range is the certified walk's own: bisection stops after its rounds whatever tol is."""
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    w = sf.walk(model, A, B, method="bisect", tol=0.0)
    assert w.n_regions >= 1


def test_locating_stops_at_float_resolution():
    """A tol finer than float64 can resolve in t: every crossing is bracketed between two
    neighbouring doubles and the walk returns, with the patterns of the default tol."""
    model = _gelu_mlp()
    fine = sf.walk(model, A, B, method="certified", dtype=torch.float64, tol=1e-300)
    ref = sf.walk(model, A, B, method="certified", dtype=torch.float64)
    assert fine.complete and ref.complete
    assert torch.equal(fine.patterns, ref.patterns)
    assert float((fine.t - ref.t).abs().max()) <= 1e-6
    # every crossing is located far finer than the default tol: 1e-12 before each region's entry
    # the segment is still in the previous region (float64 patterns at the entry itself can
    # depend on the batch they are evaluated in, by round-off)
    w = CertifiedWalker(model, tol=1e-300)
    below = fine.t[1:] - 1e-12
    assert bool((below > fine.t[:-1]).all())
    x1, x2 = A[None].double(), B[None].double()
    path = torch.zeros(below.numel(), dtype=torch.int64)
    assert torch.equal(w.patterns(x1, x2, path, below), fine.patterns[:-1])
