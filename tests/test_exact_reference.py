"""The exact walk against a reference walk in rational arithmetic, on tiny networks.

The reference (:func:`reference_walk`) follows the definition of the walk Γ* (the pattern at
t = 0, the pattern of every maximal open piece of (0, 1) on which it is constant, the pattern at
t = 1; docs/method.md, 'The exact walk') with :class:`fractions.Fraction`: layer by layer,
every pre-activation is affine between the breakpoints found so far, so its crossings of the
activation's kinks and of the bit threshold (and, for max pooling, every point where two inputs of a window are equal)
are found exactly from its values at the breakpoints; the pattern of each final piece is
taken at its midpoint. It shares no code with the walk (nor with torch: weights and inputs
are read as the exact rationals their floats are). Geometry is random and degenerate:
quantised weights (exact zeros on pieces, ties), bias-free nets with segments through the
origin, segments starting on a boundary, duplicate and negated neurons, ties in max pooling.
"""

from __future__ import annotations

import copy
import math
import os
import random
from fractions import Fraction

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch import nn

from spacefold._core.walk.exact import exact_walks
from spacefold.testing.reference import _AVGPOOLS, _MAXPOOLS, _forward, _pool, reference_walk

f64 = torch.float64
EXAMPLES = int(os.environ.get("SPACEFOLD_EXAMPLES", 25))


@pytest.fixture(autouse=True, params=["compiled", "torch"])
def backend(request, monkeypatch):
    monkeypatch.setenv("SPACEFOLD_NUMBA", "1" if request.param == "compiled" else "0")
    return request.param


def _assert_walks_agree(net: nn.Sequential, x1: torch.Tensor, x2: torch.Tensor, min_gap: float = 1e-7) -> None:
    w = exact_walks(net, x1, x2)
    for i in range(x1.shape[0]):
        t_ref, p_ref, bps = reference_walk(net, x1[i].tolist(), x2[i].tolist())
        # distinct kinks closer than the walk's resolution are one breakpoint there: not this test's subject
        assume(all(float(q - p) > min_gap for p, q in zip(bps, bps[1:])))
        got = w[i]
        assert [tuple(p) for p in got.patterns.tolist()] == [tuple(p) for p in p_ref], f"segment {i}"
        assert torch.allclose(got.t, torch.tensor([float(t) for t in t_ref], dtype=f64), rtol=0, atol=1e-9)


# --------------------------------------------------------------------------- the nets


def _q(draw, shape, scale: int, lo: int, hi: int) -> torch.Tensor:
    """Quantised numbers k / scale, k in [lo, hi]: exact in float64, with exact zeros and ties."""
    n = 1
    for s in shape:
        n *= s
    ks = draw(st.lists(st.integers(lo, hi), min_size=n, max_size=n))
    return torch.tensor(ks, dtype=f64).reshape(shape) / scale


@st.composite
def tiny_nets(draw, quantised: bool = True):
    d_in = draw(st.integers(1, 3))
    depth = draw(st.integers(1, 3))
    # bias-free layers with random float weights (exact zeros by structure, rounded at new breakpoints)
    # still disagree with the reference in rare cases; quantised nets cover bias-free layers
    bias = draw(st.booleans()) if quantised else True
    layers: list[nn.Module] = []
    d = d_in
    pooled = False
    for _ in range(depth):
        width = draw(st.integers(1, 5))
        lin = nn.Linear(d, width, bias=bias).double()
        with torch.no_grad():
            if quantised:
                lin.weight.copy_(_q(draw, (width, d), 4, -8, 8))
                if bias:
                    lin.bias.copy_(_q(draw, (width,), 4, -4, 4))
            else:
                g = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
                lin.weight.copy_(torch.randn(width, d, generator=g, dtype=f64))
                if bias:
                    lin.bias.copy_(torch.randn(width, generator=g, dtype=f64))
            if width >= 2 and draw(st.booleans()):  # a duplicate or negated neuron
                lin.weight[-1] = lin.weight[0] * draw(st.sampled_from([1.0, -1.0, 0.5]))
                if bias:
                    lin.bias[-1] = lin.bias[0] * (lin.weight[-1, 0] / lin.weight[0, 0] if lin.weight[0, 0] != 0 else 1)
        layers.append(lin)
        kind = draw(st.sampled_from(["relu", "leaky", "hardtanh", "hardtanh2"]))
        layers.append(
            {
                "relu": nn.ReLU(),
                "leaky": nn.LeakyReLU(0.25),
                "hardtanh": nn.Hardtanh(),
                "hardtanh2": nn.Hardtanh(-0.5, 2.0),
            }[kind]
        )
        d = width
        if not pooled and width >= 2 and draw(st.booleans()):
            layers += [nn.Unflatten(1, (1, width)), nn.MaxPool1d(2, stride=draw(st.sampled_from([1, 2]))), nn.Flatten()]
            d = (width - 2) // int(layers[-2].stride) + 1
            pooled = True
    return nn.Sequential(*layers).eval()


@st.composite
def segments(draw, d: int, bias_free: bool):
    kind = draw(st.sampled_from(["random", "through origin", "negated", "axis"]))
    x1 = _q(draw, (d,), 8, -16, 16)
    if kind == "random" or not bias_free:
        x2 = _q(draw, (d,), 8, -16, 16)
    elif kind == "through origin":
        x2 = -x1 * draw(st.sampled_from([1.0, 2.0, 0.5, 3.0]))
    elif kind == "negated":
        x2 = -x1
    else:  # along an axis: several coordinates stay 0
        x2 = x1.clone()
        x2[0] = -x1[0] - 1
    return x1, x2


# --------------------------------------------------------------------------- the tests


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=EXAMPLES <= 25,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_exact_walk_equals_the_rational_reference_on_quantised_nets(data):
    net = data.draw(tiny_nets(quantised=True))
    d = net[0].in_features
    bias_free = net[0].bias is None
    segs = [data.draw(segments(d, bias_free)) for _ in range(3)]
    x1 = torch.stack([a for a, _ in segs])
    x2 = torch.stack([b for _, b in segs])
    _assert_walks_agree(net, x1, x2)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=EXAMPLES <= 25,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_exact_walk_equals_the_rational_reference_on_random_nets(data):
    net = data.draw(tiny_nets(quantised=False))
    d = net[0].in_features
    g = torch.Generator().manual_seed(data.draw(st.integers(0, 2**31)))
    x1, x2 = 2 * torch.randn(3, d, generator=g, dtype=f64), 2 * torch.randn(3, d, generator=g, dtype=f64)
    _assert_walks_agree(net, x1, x2)


def _lin(w, b=None) -> nn.Linear:
    w = torch.tensor(w, dtype=f64)
    lin = nn.Linear(w.shape[1], w.shape[0], bias=b is not None).double()
    with torch.no_grad():
        lin.weight.copy_(w)
        if b is not None:
            lin.bias.copy_(torch.tensor(b, dtype=f64))
    return lin


@pytest.mark.parametrize(
    "case",
    [
        "zero on a piece",
        "saturated hardtanh",
        "start on a boundary",
        "duplicate and negated",
        "pooling tie",
        "through the origin",
    ],
)
def test_degenerate_cases_equal_the_reference(case):
    if case == "zero on a piece":  # the example, and a scaled one
        net = nn.Sequential(_lin([[1.0]]), nn.ReLU(), _lin([[0.3]]), nn.ReLU())
        x1, x2 = [[-0.1], [-0.3]], [[0.7], [0.11]]
    elif case == "saturated hardtanh":  # Hardtanh at 1 on a piece; Linear(1 - h) is 0 there exactly
        net = nn.Sequential(
            _lin([[2.0], [1.0]], [0.0, -0.5]), nn.Hardtanh(), _lin([[-1.0, 0.0], [0.5, 0.5]], [1.0, 0.0]), nn.ReLU()
        )
        x1, x2 = [[-0.7], [0.9]], [[1.9], [-1.3]]
    elif case == "start on a boundary":
        net = nn.Sequential(
            _lin([[1.0, -1.0], [0.5, 0.5]], [0.0, -0.25]), nn.ReLU(), _lin([[1.0, 1.0]], [-0.125]), nn.ReLU()
        )
        x1, x2 = [[0.5, 0.5], [0.25, 0.25]], [[1.0, -0.5], [-0.75, 0.0]]
    elif case == "duplicate and negated":
        net = nn.Sequential(
            _lin([[1.0, 0.5], [1.0, 0.5], [-1.0, -0.5]], [0.25, 0.25, -0.25]),
            nn.LeakyReLU(0.25),
            _lin([[1.0, -1.0, 0.5]]),
            nn.ReLU(),
        )
        x1, x2 = [[-1.0, -1.0], [0.3, -0.7]], [[1.0, 1.0], [-0.4, 0.9]]
    elif case == "pooling tie":  # two inputs of a window equal on the whole segment, a third crossing them
        net = nn.Sequential(
            _lin([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]),
            nn.ReLU(),
            nn.Unflatten(1, (1, 4)),
            nn.MaxPool1d(3, stride=1),
            nn.Flatten(),
            _lin([[1.0, -1.0]], [0.0]),
            nn.ReLU(),
        )
        x1, x2 = [[-1.0, 2.0], [1.0, -1.0]], [[2.0, -1.0], [-1.0, 1.0]]
    else:  # bias-free, x -> -x and x -> -2x: every crossing at one t
        net = nn.Sequential(
            _lin([[1.0, -2.0], [0.5, 1.0], [-1.0, 0.25]]),
            nn.ReLU(),
            _lin([[1.0, 1.0, -1.0], [-0.5, 1.0, 1.0]]),
            nn.ReLU(),
            _lin([[1.0, -1.0]]),
            nn.ReLU(),
        )
        x1, x2 = [[0.3, 0.7], [1.0, -0.5]], [[-0.3, -0.7], [-2.0, 1.0]]
    net = net.double().eval()
    x1, x2 = torch.tensor(x1, dtype=f64), torch.tensor(x2, dtype=f64)
    w = exact_walks(net, x1, x2)
    for i in range(x1.shape[0]):
        t_ref, p_ref, _ = reference_walk(net, x1[i].tolist(), x2[i].tolist())
        assert [tuple(p) for p in w[i].patterns.tolist()] == [tuple(p) for p in p_ref], (case, i)
        assert torch.allclose(w[i].t, torch.tensor([float(t) for t in t_ref], dtype=f64), rtol=0, atol=1e-12)


def test_a_cancellation_after_a_saturated_hardtanh_and_a_pooling_tie():
    # The Linear after the first Hardtanh is -0.5 on the first piece (saturated) and a later layer
    # cancels it exactly (2·(-0.5) + 1 = 0): its value at the new breakpoint must be -0.5 exactly,
    # not the round-off of the running sums of the compiled kernels.
    net = (
        nn.Sequential(
            _lin([[-1.5]], [0.5]),
            nn.Hardtanh(-0.5, 2.0),
            _lin([[1.5], [1.5]], [0.25, 0.25]),
            nn.Hardtanh(),
            nn.Unflatten(1, (1, 2)),
            nn.MaxPool1d(2, 2),
            nn.Flatten(),
            _lin([[2.0], [1.75], [1.25]], [1.0, 0.5, 0.75]),
            nn.Hardtanh(),
        )
        .double()
        .eval()
    )
    x1, x2 = torch.tensor([[1.0]], dtype=f64), torch.tensor([[-0.25]], dtype=f64)
    w = exact_walks(net, x1, x2)
    t_ref, p_ref, _ = reference_walk(net, [1.0], [-0.25])
    assert [tuple(p) for p in w[0].patterns.tolist()] == [tuple(p) for p in p_ref]
    assert torch.allclose(w[0].t, torch.tensor([float(t) for t in t_ref], dtype=f64), rtol=0, atol=1e-12)


def _walk_equals_reference(net: nn.Sequential, x1, x2, dtype=f64, atol: float = 1e-12) -> list:
    net = net.to(dtype).eval()
    x1, x2 = torch.tensor(x1, dtype=dtype), torch.tensor(x2, dtype=dtype)
    w = exact_walks(net, x1, x2)
    refs = []
    for i in range(x1.shape[0]):
        t_ref, p_ref, _ = reference_walk(net, x1[i].tolist(), x2[i].tolist())
        assert [tuple(p) for p in w[i].patterns.tolist()] == [tuple(p) for p in p_ref], i
        assert torch.allclose(w[i].t, torch.tensor([float(t) for t in t_ref], dtype=f64), rtol=0, atol=atol), i
        refs.append((t_ref, p_ref))
    return refs


def _hardtanh_net(ws, act) -> nn.Sequential:
    layers = []
    for w in ws:
        layers += [_lin(w), act()]
    return nn.Sequential(*layers)


def test_a_hardtanh_neuron_crossing_two_levels_in_a_piece_keeps_its_snapped_value():
    # Layer-2 neuron 3 crosses -1 (a kink) at t = 1/2 and 0 (the bit threshold) at t = 4/7 inside one
    # piece; layer-3 neuron 1 = -h2_0 + h2_3 is 0 exactly on [2/7, 1/2] (both saturated at -1) and turns
    # positive after 1/2. The compiled kernel set the crossing neuron at the row t = 1/2 to -1 and then
    # overwrote it with its round-off value for the next level: bit 1 from t = 3/7 on (8 regions, not 9).
    net = _hardtanh_net(
        [
            [[-1.0, 1.0], [1.5, 1.5], [-1.0, 0.0], [1.0, 1.5]],
            [[-1.5, 1.5, 0.5, -1.5], [1.0, 0.5, 0.5, 0.5], [-0.5, -0.5, -0.5, -2.0], [1.5, -1.0, 2.0, -1.5]],
            [[0.0, -0.5, -0.5, -2.0], [-1.0, 0.0, 0.0, 1.0], [1.5, -0.5, 2.0, -1.5]],
        ],
        lambda: nn.Hardtanh(-1.0, 2.0),
    )
    ((t_ref, p_ref),) = _walk_equals_reference(net, [[3.0, 2.0]], [[-4.0, 4.0]])
    assert len(p_ref) == 9 and Fraction(1, 2) in t_ref


@pytest.mark.parametrize("dtype", [torch.float32, f64])
@pytest.mark.parametrize("case", ["hardtanh", "relu6"])
def test_a_pre_activation_zero_on_a_piece_gets_bit_0(case, dtype):
    # Bias-free nets with half-integer weights: a layer-3 pre-activation cancels exactly on a piece
    # (saturated neurons against an unsaturated one); the interpolated values at the piece's rows carry
    # round-off (1.5000000000000002), and the products gave ±4e-16 there, read as bit 1.
    if case == "hardtanh":  # zero on [1/3, 11/15]
        ws = [
            [[0.0, 1.5], [0.0, -2.0], [1.5, 1.5], [0.5, -0.5]],
            [[1.5, 2.0, -0.5, 0.0], [0.5, 0.5, -2.0, 1.0], [2.0, -1.5, 1.0, -2.0], [-0.5, 1.0, 2.0, 0.5]],
            [[-1.5, -1.0, 0.0, 2.0], [1.5, 0.0, 1.5, -2.0], [-0.5, 2.0, -1.5, 1.5]],
        ]
        act = lambda: nn.Hardtanh(-1.0, 2.0)  # noqa: E731
    else:  # zero on [2/3, 17/19]
        ws = [
            [[1.0, -2.0], [1.0, 0.5], [0.0, 0.0], [-1.5, -0.5]],
            [[1.5, -1.5, 0.0, 2.0], [-0.5, 1.0, 0.5, 1.0], [-2.0, 1.0, 0.5, 0.0], [-2.0, 0.0, -2.0, 0.5]],
            [[-1.0, 2.0, -1.5, 0.0], [-0.5, 1.0, 1.0, 1.5], [-1.0, 1.0, 2.0, 0.5]],
        ]
        act = nn.ReLU6
    net = _hardtanh_net(ws, act)
    _walk_equals_reference(net, [[3.0, 2.0]], [[-4.0, 4.0]], dtype, atol=1e-6 if dtype == torch.float32 else 1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, f64])
def test_padded_ceil_mode_pooling_with_a_shared_arg_max_invents_no_region(dtype):
    # MaxPool1d(3, 2, padding=1, ceil_mode=True) of 6 ReLUs: input 3 is the maximum of windows 1 and 2,
    # and the Linear after the pooling takes 1.5 times one minus 1.5 times the other (0 on the whole
    # segment). In float32 the walk read round-off there as bit 1 and invented a second region.
    net = nn.Sequential(
        _lin([[-0.5, 1.5], [-0.5, 1.0], [-0.5, 1.0], [1.0, -1.5], [-1.0, 1.0], [-0.5, 1.5]]),
        nn.ReLU(),
        nn.Unflatten(1, (1, 6)),
        nn.MaxPool1d(3, 2, padding=1, ceil_mode=True),
        nn.Flatten(),
        _lin([[2.0, 0.5, 0.5, -0.5], [-0.5, 1.5, -1.5, -1.0]]),
        nn.ReLU(),
    )
    x1 = [[-0.32699811458587646, -0.44978272914886475]]  # float32 numbers
    x2 = [[-1.2127183675765991, -1.979548692703247]]
    ((t_ref, p_ref),) = _walk_equals_reference(net, x1, x2, dtype, atol=1e-6)
    assert len(p_ref) == 1
    # in exact arithmetic the last layer's second pre-activation is 0 along the segment
    a, b = [Fraction(v) for v in x1[0]], [Fraction(v) for v in x2[0]]
    for t in (Fraction(k, 7) for k in range(8)):
        assert _forward(net, [ai + t * (bi - ai) for ai, bi in zip(a, b)], len(net) - 1)[0][1] == 0


def _seq(*layers) -> nn.Sequential:
    """``layers``: weight lists (a bias-free nn.Linear) and modules, in order."""
    return nn.Sequential(*[_lin(m) if isinstance(m, list) else m for m in layers])


# Cases the property tests below found (bias-free, integer or half-integer weights; segment, dtype): each
# walk disagreed with the reference with the compiled kernels, some without them too.
_CANCELLATIONS = {
    # a ReLU turns off at a new breakpoint of a float64 refinement: the Linear's output there, interpolated
    # and corrected by the crossing neuron's column, carried the round-off of that neuron's pre-activation
    # (3.4 at the piece's end, 0 after the ReLU), and the layers after read 4e-16 on a piece where all is 0
    "relu off in a refinement": (
        _seq(
            [[0.0, -4.0, -1.0]],
            nn.ReLU(),
            [[-1.0], [1.0], [2.0], [-2.0], [-4.0], [4.0]],
            nn.ReLU(),
            [
                [3.0, -1.0, 4.0, 3.0, -3.0, -4.0],
                [3.0, 1.0, -2.0, -4.0, -2.0, 0.0],
                [2.0, -3.0, -1.0, 4.0, -1.0, -1.0],
                [2.0, 1.0, -2.0, 3.0, -2.0, -2.0],
            ],
            nn.Hardtanh(-0.5, 2.0),
            nn.Unflatten(1, (2, 1, 2)),
            nn.AdaptiveMaxPool2d((1, 1)),
            nn.Flatten(),
        ),
        [0.125, -1.75, 0.125],
        [-0.0625, 0.875, -0.0625],
        torch.float32,
    ),
    # an average pooling of two Hardtanh neurons is 0 on [5/12, 7/12] (-0.5 against 0.5, one of them
    # interpolated): the Linear after it read its round-off, with no magnitude of its own to compare with
    "average pooling cancels": (
        _seq(
            [[-1.0], [1.0]],
            nn.Hardtanh(-0.5, 2.0),
            nn.Unflatten(1, (1, 2, 1)),
            nn.AdaptiveAvgPool2d((1, 1)),
            nn.Flatten(),
            [[-1.0], [3.0], [4.0], [3.0], [-2.0], [-1.0]],
            nn.Hardtanh(),
            [[-4.0, 1.0, 4.0, 4.0, -1.0, 0.0]],
            nn.Hardtanh(-0.5, 2.0),
        ),
        [3.0],
        [-3.0],
        torch.float32,
    ),
    # the last pre-activation is 0 on [95/184, 11/21] (every ReLU before it off), read as -1e-16 and +1e-16
    "zero after the relus": (
        _seq(
            [[2.0, 0.0, 4.0], [-2.0, 3.0, 4.0], [4.0, -2.0, 4.0]],
            nn.Hardtanh(-0.5, 2.0),
            [[0.0, 2.0, 4.0], [-2.0, 0.0, 4.0], [1.0, -2.0, -3.0], [-2.0, -3.0, 0.0]],
            nn.ReLU(),
            [[0.0, 1.0, 3.0, 4.0]],
            nn.LeakyReLU(0.25),
        ),
        [4.0, -3.0, -1.0],
        [-4.0, 3.0, 1.0],
        torch.float32,
    ),
    # the segment starts on a boundary: a layer-2 pre-activation is exactly 0 at t = 0 only (an average
    # pooling's round-off left 6e-17 there), so the walk lacked the zero-length region at t = 0
    "zero at the start only": (
        _seq(
            [[2.0], [1.0], [-4.0], [4.0], [-2.0]],
            nn.Hardtanh(),
            nn.Unflatten(1, (1, 5)),
            nn.AvgPool1d(3, 1, padding=1, count_include_pad=False),
            nn.Flatten(),
            [
                [-2.0, -3.0, -4.0, 4.0, -1.0],
                [0.0, -3.0, 0.0, 0.0, 0.0],
                [-2.0, 3.0, 3.0, 0.0, -1.0],
                [-1.0, 3.0, -3.0, 0.0, -4.0],
                [1.0, -4.0, 0.0, 1.0, 0.0],
            ],
            nn.Hardtanh(-0.5, 2.0),
            [[3.0, -3.0, 2.0, 3.0, 3.0], [0.0, -4.0, -4.0, 4.0, 3.0]],
            nn.Hardtanh(-0.5, 2.0),
        ),
        [-1.0],
        [0.5],
        torch.float64,
    ),
    # a layer-2 Hardtanh neuron crosses 0 exactly at a layer-1 breakpoint (t = 17/28) and -1 later in the
    # same piece: the compiled kernel read its sign before the crossing after setting it to 0 there
    # and kept bit 1 after it
    "crossing at an old breakpoint": (
        _seq(
            [[-4.0], [3.0], [-4.0], [-2.0], [1.0], [-2.0]],
            nn.Hardtanh(-0.5, 2.0),
            [
                [-4.0, -4.0, -2.0, 0.0, -2.0, -1.0],
                [3.0, -2.0, -2.0, -4.0, -2.0, 1.0],
                [4.0, 4.0, 1.0, 1.0, -3.0, 1.0],
                [-4.0, -4.0, -2.0, 0.0, -2.0, -1.0],
            ],
            nn.Hardtanh(),
            [[2.0, -4.0, 3.0, -1.0], [2.0, -1.0, -3.0, -1.0], [4.0, 1.0, -4.0, -1.0], [1.0, -2.0, 1.5, -0.5]],
            nn.LeakyReLU(0.25),
            nn.Unflatten(1, (1, 2, 2)),
            nn.AdaptiveMaxPool2d((2, 1)),
            nn.Flatten(),
        ),
        [-4.0],
        [3.0],
        torch.float64,
    ),
    # a layer-3 pre-activation is exactly 0 at t = 0 only (after a cancelling average pooling window)
    "average pooling, stride 2": (
        _seq(
            [[0.5, -0.5], [1.5, 1.5], [2.0, 1.5], [0.5, -0.5]],
            nn.Hardtanh(-1.0, 2.0),
            nn.Unflatten(1, (1, 4)),
            nn.AvgPool1d(3, 2, padding=1, count_include_pad=False),
            nn.Flatten(),
            [[-2.0, -0.5], [0.5, -1.5], [1.5, 1.0], [1.5, -2.0]],
            nn.Hardtanh(-0.5, 2.0),
            [
                [0.5, 2.0, 1.0, 2.0],
                [-1.5, 1.5, -2.0, 1.5],
                [1.5, 1.5, 1.5, -1.5],
                [2.0, 1.0, -1.5, 0.5],
                [0.25, 1.0, 0.5, 1.0],
            ],
            nn.ReLU(),
        ),
        [2.0, -3.0],
        [2.0, -1.0],
        torch.float64,
    ),
}


@pytest.mark.parametrize("other_dtype", [False, True])
@pytest.mark.parametrize("case", list(_CANCELLATIONS))
def test_exact_cancellations_the_property_tests_found(case, other_dtype):
    net, x1, x2, dtype = _CANCELLATIONS[case]
    if other_dtype:  # the same net and segment in the other dtype
        dtype = f64 if dtype == torch.float32 else torch.float32
    if case == "average pooling, stride 2" and dtype == torch.float32:
        pytest.xfail(
            "a cancellation exactly at a segment's end: float32 walks zero no single end value "
            "(docs/failure-modes.md, the zero rule), so the zero-length region at t = 0 is missed"
        )
    _walk_equals_reference(copy.deepcopy(net), [x1], [x2], dtype, atol=1e-6 if dtype == torch.float32 else 1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, f64])
def test_crossings_meeting_after_a_max_pooling(backend, dtype):
    """Found by the integer-weight property test: the layer-1 neuron and the last output cross 0 together at
    t = 0.8. Without the compiled kernels, float32 put the output's crossing 1.5e-6 later (an extra region)."""
    net = nn.Sequential(
        nn.Linear(3, 1),
        nn.LeakyReLU(0.25),
        nn.Linear(1, 5),
        nn.LeakyReLU(0.25),
        nn.Unflatten(1, (1, 1, 5)),
        nn.MaxPool2d(1),
        nn.Flatten(),
        nn.Linear(5, 5),
        nn.ReLU(),
    )
    weights = [
        ([[0.0, -0.5, 2.0]], [0.0]),
        ([[0.0], [0.0], [0.5], [2.0], [-2.0]], [0.5, 2.0, -2.0, 0.5, 0.5]),
        (
            [[0, 0, 0, 0, 0.5], [0, 0, 0, 0, 0.5], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0.5], [0, 1.0, 1.0, -1.5, -1.5]],
            [0.0, 0.0, 0.5, 0.0, 0.0],
        ),
    ]
    with torch.no_grad():
        for lin, (w, b) in zip([m for m in net if isinstance(m, nn.Linear)], weights):
            lin.weight.copy_(torch.tensor(w))
            lin.bias.copy_(torch.tensor(b))
    if backend == "torch" and dtype == torch.float32:
        pytest.xfail(
            "without the compiled kernels, float32 puts two crossings that meet 1.5e-6 apart in t, beyond the "
            "refinement's 2.4e-7 (docs/failure-modes.md)"
        )
    _walk_equals_reference(
        net, [[0.0, 0.0, 1.0]], [[0.0, 1.0, 0.0]], dtype, atol=1e-6 if dtype == torch.float32 else 1e-12
    )


# --------------------------------------------------------------------------- integer-weight nets, every pooling

_ACT_KINDS = ["relu", "leaky", "hardtanh", "hardtanh2", "hardtanh3", "relu6"]
_POOL_KINDS = ["max1", "max1pad", "max2", "max3", "amax1", "amax2", "avg1", "avg2", "aavg1", "aavg2"]


def _make_act(kind: str) -> nn.Module:
    return {
        "relu": nn.ReLU(),
        "leaky": nn.LeakyReLU(0.25),
        "hardtanh": nn.Hardtanh(),
        "hardtanh2": nn.Hardtanh(-1.0, 2.0),
        "hardtanh3": nn.Hardtanh(-0.5, 2.0),
        "relu6": nn.ReLU6(),
    }[kind]


def _make_pool(ri, choice, width: int) -> list[nn.Module] | None:
    """A pooling (and its Unflatten) for `width` numbers, or None."""
    kind = choice(_POOL_KINDS)
    if kind in ("max1", "max1pad", "avg1", "amax1", "aavg1"):
        C = choice([c for c in (1, 2) if width % c == 0])
        shape = (C, width // C)
        L = shape[1]
        if kind == "amax1":
            return [nn.Unflatten(1, shape), nn.AdaptiveMaxPool1d(ri(1, L)), nn.Flatten()]
        if kind == "aavg1":
            return [nn.Unflatten(1, shape), nn.AdaptiveAvgPool1d(ri(1, L)), nn.Flatten()]
        k = ri(2, 3)
        s = ri(1, 2)
        p = ri(0, k // 2) if kind != "max1" else 0
        dil = ri(1, 2) if kind.startswith("max") else 1
        ceil = bool(ri(0, 1))
        if L + 2 * p < dil * (k - 1) + 1:
            return None
        if kind.startswith("max"):
            pool = nn.MaxPool1d(k, s, padding=p, dilation=dil, ceil_mode=ceil)
        else:
            pool = nn.AvgPool1d(k, s, padding=p, ceil_mode=ceil, count_include_pad=bool(ri(0, 1)))
        return [nn.Unflatten(1, shape), pool, nn.Flatten()]
    if kind in ("max2", "amax2", "avg2", "aavg2"):
        opts = [
            (c, h, width // c // h) for c in (1, 2) for h in (1, 2, 3) if width % (c * h) == 0 and width // c // h >= 1
        ]
        shape = choice(opts)
        if kind == "amax2":
            return [nn.Unflatten(1, shape), nn.AdaptiveMaxPool2d((ri(1, shape[1]), ri(1, shape[2]))), nn.Flatten()]
        if kind == "aavg2":
            return [nn.Unflatten(1, shape), nn.AdaptiveAvgPool2d((ri(1, shape[1]), ri(1, shape[2]))), nn.Flatten()]
        k = (ri(1, 2), ri(1, 3))
        s = (ri(1, 2), ri(1, 2))
        p = (ri(0, k[0] // 2), ri(0, k[1] // 2))
        ceil = bool(ri(0, 1))
        if kind == "max2":
            dil = (1, ri(1, 2))
            if any(n + 2 * pp < d * (kk - 1) + 1 for n, pp, d, kk in zip(shape[1:], p, dil, k)):
                return None
            return [nn.Unflatten(1, shape), nn.MaxPool2d(k, s, padding=p, dilation=dil, ceil_mode=ceil), nn.Flatten()]
        if any(n + 2 * pp < kk for n, pp, kk in zip(shape[1:], p, k)):
            return None
        return [
            nn.Unflatten(1, shape),
            nn.AvgPool2d(k, s, padding=p, ceil_mode=ceil, count_include_pad=bool(ri(0, 1))),
            nn.Flatten(),
        ]
    # max3
    opts = [(1, a, b, width // a // b) for a in (1, 2) for b in (1, 2) if width % (a * b) == 0]
    shape = choice(opts)
    k = tuple(ri(1, 2) for _ in range(3))
    s = tuple(ri(1, 2) for _ in range(3))
    p = tuple(ri(0, kk // 2) for kk in k)
    if any(n + 2 * pp < kk for n, pp, kk in zip(shape[1:], p, k)):
        return None
    return [nn.Unflatten(1, shape), nn.MaxPool3d(k, s, padding=p, ceil_mode=bool(ri(0, 1))), nn.Flatten()]


def _make_net(ri, choice, dtype: torch.dtype) -> nn.Sequential:
    """A small net with integer or half-integer weights, biases or none, Hardtanh/ReLU6/ReLU/LeakyReLU and at most
    one pooling (``ri(lo, hi)``: an int in [lo, hi]; ``choice(seq)``: an element of seq)."""
    d_in = ri(1, 3)
    depth = ri(1, 3)
    bias = bool(ri(0, 1))
    wscale = choice([1, 2])
    layers = []
    d = d_in
    pooled = False
    for _ in range(depth):
        width = ri(1, 6)
        lin = nn.Linear(d, width, bias=bias).double()
        with torch.no_grad():
            lin.weight.copy_(torch.tensor([[ri(-4, 4) / wscale for _ in range(d)] for _ in range(width)]))
            if bias:
                lin.bias.copy_(torch.tensor([ri(-4, 4) / 2 for _ in range(width)]))
            if width >= 2 and ri(0, 1):  # a duplicate or negated neuron
                lin.weight[-1] = lin.weight[0] * choice([1.0, -1.0, 0.5])
                if bias:
                    lin.bias[-1] = lin.bias[0] * choice([1.0, -1.0])
        layers.append(lin)
        layers.append(_make_act(choice(_ACT_KINDS)))
        d = width
        if not pooled and width >= 2 and ri(0, 1):
            pool = _make_pool(ri, choice, width)
            if pool is not None:
                trial = nn.Sequential(*pool).double()
                try:
                    d = trial(torch.zeros(1, width, dtype=torch.float64)).shape[1]
                except RuntimeError:
                    continue
                if d == 0 or not bool(torch.isfinite(trial(torch.randn(2, width, dtype=torch.float64))).all()):
                    d = width
                    continue
                layers += pool
                pooled = True
    return nn.Sequential(*layers).to(dtype).eval()


def _make_segment(ri, choice, d: int, bias_free: bool) -> tuple[torch.Tensor, torch.Tensor]:
    sc = choice([1, 8])
    x1 = (
        torch.tensor([ri(-16, 16) / 8 for _ in range(d)], dtype=torch.float64)
        if sc == 8
        else torch.tensor([float(ri(-4, 4)) for _ in range(d)], dtype=torch.float64)
    )
    kind = choice(["random", "through origin", "negated", "axis"]) if bias_free else "random"
    if kind == "random":
        x2 = torch.tensor([ri(-4 * sc, 4 * sc) / sc for _ in range(d)], dtype=torch.float64)
    elif kind == "through origin":
        x2 = -x1 * choice([1.0, 2.0, 0.5, 3.0])
    elif kind == "negated":
        x2 = -x1
    else:
        x2 = x1.clone()
        x2[0] = -x1[0] - 1
    return x1, x2


def _drawers(data):
    return (lambda lo, hi: data.draw(st.integers(lo, hi))), (lambda seq: data.draw(st.sampled_from(list(seq))))


def _integer_nets_agree(data, dtype: torch.dtype) -> None:
    ri, choice = _drawers(data)
    net = _make_net(ri, choice, dtype)
    d = net[0].in_features
    segs = [_make_segment(ri, choice, d, net[0].bias is None) for _ in range(3)]
    x1 = torch.stack([a for a, _ in segs]).to(dtype)
    x2 = torch.stack([b for _, b in segs]).to(dtype)
    w = exact_walks(net, x1, x2)
    f32 = dtype == torch.float32
    for i in range(3):
        t_ref, p_ref, bps = reference_walk(net, x1[i].tolist(), x2[i].tolist())
        # distinct breakpoints closer than the walk's resolution are one breakpoint there: not this test's subject
        if not all(float(q - p) > (1e-4 if f32 else 1e-7) for p, q in zip(bps, bps[1:])):
            continue
        assert [tuple(p) for p in w[i].patterns.tolist()] == [tuple(p) for p in p_ref], f"segment {i}"
        assert torch.allclose(
            w[i].t, torch.tensor([float(t) for t in t_ref], dtype=f64), rtol=0, atol=1e-5 if f32 else 1e-9
        )


_INTEGER_EXAMPLES = int(os.environ.get("SPACEFOLD_EXAMPLES", 15))


@pytest.mark.parametrize("dtype", [torch.float32, f64])
@settings(
    max_examples=_INTEGER_EXAMPLES,
    deadline=None,
    derandomize=_INTEGER_EXAMPLES <= 25,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_integer_weight_nets_with_every_pooling_equal_the_reference(data, dtype):
    _integer_nets_agree(data, dtype)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, f64])
@settings(
    max_examples=1000,
    deadline=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_integer_weight_nets_with_every_pooling_equal_the_reference_thousands(data, dtype):
    _integer_nets_agree(data, dtype)


@pytest.mark.parametrize("kind", _POOL_KINDS)
def test_the_references_pooling_is_torchs(kind, backend):
    # the reference's windows (written from torch's documented output sizes) give torch's numbers
    if backend != "torch":
        pytest.skip("one backend is enough: no walk here")
    rng = random.Random(kind)
    n = 0
    while n < 20:
        width = rng.randint(2, 12)
        layers = _make_pool(rng.randint, rng.choice, width)
        if layers is None or not isinstance(layers[1], (*_MAXPOOLS, *_AVGPOOLS)):
            continue
        pool = nn.Sequential(*layers).double()
        x = [Fraction(rng.randint(-8, 8), 4) for _ in range(width)]
        try:
            want = pool(torch.tensor([[float(v) for v in x]], dtype=f64))[0].tolist()
        except RuntimeError:  # a size torch refuses
            continue
        if not all(map(math.isfinite, want)):
            continue
        got, _ = _pool(layers[1], x, tuple(layers[0].unflattened_size))
        assert [float(v) for v in got] == pytest.approx(want, rel=1e-12, abs=1e-12), layers[1]
        n += 1
