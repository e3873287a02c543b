"""Edge cases of the measures of small MLPs without walks (walk.exact.mlp): extreme scales, degenerate paths, the
models the plan takes or leaves, and the plumbing around it (workers, chunks, the cache, the CLI).

A path the kernels call clean must have the exact rational reference's measures; every path through the entry
points must have the float64 layer walk's.
"""

from __future__ import annotations

import pytest
import torch
from test_mlp_measures import FIELDS, _assert_equal, _fast, _layer_walk_measures, _plan, _reference_measures
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


def _chain_1d(hook_at: int | None = None, pre: bool = False) -> nn.Sequential:
    """x -> relu(x) -> relu(relu(x) - 1) -> out, with a hook adding 10 to the output (or the input, ``pre``) of
    module ``hook_at``."""
    l1, l2, l3 = nn.Linear(1, 1).double(), nn.Linear(1, 1).double(), nn.Linear(1, 1).double()
    with torch.no_grad():
        for lin, b in ((l1, 0.0), (l2, -1.0), (l3, 0.0)):
            lin.weight.fill_(1.0)
            lin.bias.fill_(b)
    net = nn.Sequential(l1, nn.ReLU(), l2, nn.ReLU(), l3).eval()
    if hook_at is not None:
        if pre:
            net[hook_at].register_forward_pre_hook(lambda m, args: (args[0] + 10,))
        else:
            net[hook_at].register_forward_hook(lambda m, args, out: out + 10)
    return net


X1, X2 = torch.tensor([[-2.0]], dtype=f64), torch.tensor([[3.0]], dtype=f64)


def test_the_plain_chain_by_hand():
    # bits (x > 0, relu(x) > 1): (0, 0) -> (1, 0) at x = 0 -> (1, 1) at x = 1
    b = _batch(_chain_1d(), X1, X2, workers=1)
    assert b["n_regions"].tolist() == [3] and b["r1"].tolist() == [2] and b["r2"].tolist() == [2]


@pytest.mark.parametrize("pre", [False, True])
def test_hooks_on_a_linear_are_not_skipped(pre):
    # 10 added at the first Linear: both neurons are on along the whole path, one region
    net = _chain_1d(hook_at=0, pre=pre)
    assert _plan(net) is None
    b = _batch(net, X1, X2, workers=1)
    assert b["n_regions"].tolist() == [1] and b["r2"].tolist() == [0]


@pytest.mark.xfail(
    strict=True,
    reason="the exact walk (the layer walk too) reads an activation module by its type and skips forward hooks on "
    "it: here a hook adding 10 to the first ReLU's output keeps the second neuron on along the whole path",
)
def test_hooks_on_an_activation_are_not_skipped():
    # bits (x > 0, relu(x) + 9 > 0): (0, 1) -> (1, 1) at x = 0
    b = _batch(_chain_1d(hook_at=1), X1, X2, workers=1)
    assert b["n_regions"].tolist() == [2] and b["r2"].tolist() == [1]
