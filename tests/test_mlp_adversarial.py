"""Edge cases of the measures of small MLPs without walks (walk.exact.mlp): extreme scales, degenerate paths, the
models the plan takes or leaves, and the plumbing around it (workers, chunks, the cache, the CLI).

A path the kernels call clean must have the exact rational reference's measures; every path through the entry
points must have the float64 layer walk's.
"""

from __future__ import annotations

import pytest
import torch
from test_mlp_measures import FIELDS, _assert_equal, _fast, _layer_walk_measures, _reference_measures
from torch import nn

import spacefold as sf
from spacefold._core.walk import _kernels

pytestmark = pytest.mark.skipif(not _kernels.available(), reason="the compiled kernels (Numba) are off here")

f64 = torch.float64


def _batch(net, x1, x2, **kw) -> dict[str, torch.Tensor]:
    b = sf.folding_batch(net, x1, x2, **kw)
    return {k: getattr(b, k) for k in FIELDS}


def _one_neuron_cancellation(scale: float):
    """A bias-free neuron whose float64 value at ``x1`` has the wrong sign (the product of the first two terms
    rounds, the sum cancels): exactly 2^-105·scale > 0, computed -2^-105·scale; at ``x2`` it is 5.9e-213 > 0."""
    lin = nn.Linear(3, 1, bias=False).double()
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1 + 2**-52, -(2.0**-53), -1.0]], dtype=f64))
    net = nn.Sequential(lin, nn.ReLU(), nn.Linear(1, 1).double()).eval()
    x1 = torch.tensor([[1 + 2**-52, 2.0**-52, 1 + 2**-51]], dtype=f64) * scale
    x2 = torch.tensor([[0.0, 0.0, -5.9e-213]], dtype=f64)
    return net, x1, x2


def test_inputs_whose_squares_underflow_are_not_clean_on_a_wrong_sign():
    # at 2^-600 the squares of the inputs underflow: a norm of 0 bounded the first layer's error by 0, and the
    # wrong sign at x1 (a crossing that exact arithmetic does not have) was called clean
    net, x1, x2 = _one_neuron_cancellation(2.0**-600)
    z = torch.nn.functional.linear(x1, net[0].weight)
    assert z.item() < 0  # the computed sign (exactly, the value is +2^-705)
    got, clean = _fast(net, x1, x2)
    want = _reference_measures(net, x1, x2)
    assert want["r2"].tolist() == [0]
    if clean.item():
        _assert_equal(got, want)
    _assert_equal(_batch(net, x1, x2, workers=1), _layer_walk_measures(net, x1, x2))
