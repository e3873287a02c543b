"""Edge cases of the certified walk: the range of ``tol``, termination below float64's
resolution in t, and segments that start or end on a boundary."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import spacefold as sf
from spacefold._core.walk.certified import CertifiedWalker, certified_walks
from spacefold.errors import InputError


def _gelu_mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 64), nn.GELU(), nn.Linear(64, 64), nn.GELU(), nn.Linear(64, 2))


A, B = torch.tensor([-2.0, 0.5, 1.0]), torch.tensor([2.0, -1.0, 0.3])


@pytest.mark.parametrize("tol", [0.0, 1.0, 1.5])
def test_tol_outside_open_unit_interval_refused(tol):
    """tol = 0 asks bisection for exact positions (it never got there); tol >= 1 asks for nothing."""
    model = _gelu_mlp()
    for call in (
        lambda: sf.folding(model, A, B, method="certified", dtype=torch.float64, tol=tol),
        lambda: sf.walk(model, A, B, method="certified", tol=tol),
        lambda: sf.folding_batch(model, A[None], B[None], method="certified", tol=tol),
        lambda: certified_walks(model, A[None], B[None], tol=tol),
    ):
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


def _through_zero(act: nn.Module, bias: float = 0.0) -> nn.Sequential:
    """x -> Linear(1, 1) (weight 1) -> act -> Linear(1, 1): one bit, z = x + bias."""
    model = nn.Sequential(nn.Linear(1, 1), act, nn.Linear(1, 1)).double()
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[0].bias.fill_(bias)
        model[2].weight.fill_(1.0)
        model[2].bias.zero_()
    return model


def _seg(x1: float, x2: float):
    return torch.tensor([x1], dtype=torch.float64), torch.tensor([x2], dtype=torch.float64)


@pytest.mark.parametrize("act", [nn.ReLU, nn.GELU])
def test_segment_starting_or_ending_on_a_boundary(act):
    """z = x is 0 at x = 0, bit 0 there and 1 for x > 0: from 0 to 1 the walk enters the region
    x > 0 at t = 0 (a zero-length region at t = 0, one piece), from 1 to 0 it leaves it at t = 1;
    the exact walk gives the same for ReLU; from -1 to 0 and 0 to -1 the bit never changes."""
    model = _through_zero(act())
    cases = {
        (0.0, 1.0): ([[0], [1]], [0.0, 0.0]),
        (1.0, 0.0): ([[1], [0]], [0.0, 1.0]),
        (-1.0, 0.0): ([[0]], [0.0]),
        (0.0, -1.0): ([[0]], [0.0]),
    }
    for (x1, x2), (pats, ts) in cases.items():
        w = sf.walk(model, *_seg(x1, x2), method="certified")
        assert w.complete
        assert w.patterns.int().tolist() == pats and w.t.tolist() == ts, (x1, x2)
        assert w.n_pieces == 1 and w.n_regions == len(pats)
        assert sf.folding(model, *_seg(x1, x2), method="certified").n_pieces == 1
        fb = sf.folding_batch(model, *(v[None] for v in _seg(x1, x2)), method="certified", return_walks=True)
        assert fb.walks.n_pieces.tolist() == [1]
        if act is nn.ReLU:
            we = sf.walk(model, *_seg(x1, x2), method="exact")
            assert torch.equal(we.patterns, w.patterns) and torch.equal(we.t, w.t)


@pytest.mark.parametrize("act", [nn.ReLU, nn.GELU])
def test_changes_within_tol_of_an_end_are_at_the_end(act):
    """A crossing at t = 4e-7 or 1 - 4e-7 (within the default tol 1e-6 of an end) is placed at
    the end; one at t = 3e-6 or 1 - 3e-6 keeps a region of positive length, located within tol."""
    for c, x2, inner in ((4e-7, 1.0, False), (3e-6, 1.0, True), (4e-7, -1.0, False), (3e-6, -1.0, True)):
        # z = x - c on 0 -> 1 crosses at t = c; z = x + 1 - c on 0 -> -1 crosses at t = 1 - c
        bias = -c if x2 > 0 else 1.0 - c
        model = _through_zero(act(), bias)
        w = sf.walk(model, *_seg(0.0, x2), method="certified")
        at = c if x2 > 0 else 1.0 - c
        assert w.n_regions == 2
        if not inner:
            assert w.t.tolist() == [0.0, 0.0 if x2 > 0 else 1.0] and w.n_pieces == 1
        else:
            assert at <= float(w.t[1]) <= at + 1e-6 and w.n_pieces == 2
