"""The measures of small MLPs from the compiled per-layer kernels (walk.exact.mlp) against the exact rational
reference and against the layer-by-layer walk.

A path the kernels call clean must have the reference's measures exactly (its decisions are beyond the
float64 round-off they track); every other path is walked layer by layer in float64, so ``folding_batch`` agrees
with the float64 layer walk on every path, whichever way each one went.
"""

from __future__ import annotations

import copy
import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import spacefold as sf
from spacefold._core import measure
from spacefold._core.folding import walk_batch
from spacefold._core.walk import _kernels
from spacefold._core.walk.exact.mlp import MAX_WIDTH, mlp_summarizer
from spacefold._core.walk.exact.program import compile_model
from spacefold.testing.reference import reference_walk

pytestmark = pytest.mark.skipif(not _kernels.available(), reason="the compiled kernels (Numba) are off here")

f64 = torch.float64
EXAMPLES = int(os.environ.get("SPACEFOLD_EXAMPLES", 25))
FIELDS = ("r1", "r2", "n_regions", "chi", "max_profile")


def _plan(net: nn.Module, tie_tol: float = 0.0, tol: float = 1e-9, layers=None):
    return mlp_summarizer(compile_model(net.eval(), layers), tie_tol, tol)


def _fast(net: nn.Module, x1: torch.Tensor, x2: torch.Tensor):
    plan = _plan(net)
    assert plan is not None
    za, ea = plan.prefix(x1)
    zb, eb = plan.prefix(x2)
    return plan(za, zb, ea, eb)


def _reference_measures(net: nn.Module, x1: torch.Tensor, x2: torch.Tensor) -> dict[str, torch.Tensor]:
    out: dict[str, list] = {k: [] for k in FIELDS}
    for a, b in zip(x1.tolist(), x2.tolist()):
        w = torch.tensor(reference_walk(net, a, b).patterns, dtype=torch.bool)
        r1, r2 = sf.ranges(w)
        out["r1"].append(r1)
        out["r2"].append(r2)
        out["n_regions"].append(w.shape[0])
        out["chi"].append(sf.chi(w))
        out["max_profile"].append(measure.max_profile(w))
    floats = ("chi", "max_profile")
    return {k: torch.tensor(v, dtype=torch.float64 if k in floats else torch.int64) for k, v in out.items()}


def _layer_walk_measures(net: nn.Module, x1: torch.Tensor, x2: torch.Tensor) -> dict[str, torch.Tensor]:
    """The measures of the float64 layer-by-layer walk (what the entry points give for such nets)."""
    s = measure.summarize(walk_batch(net, x1, x2, dtype=torch.float64))
    return {k: getattr(s, k) for k in FIELDS}


def _assert_equal(got: dict, want: dict, rows: torch.Tensor | None = None) -> None:
    for k in FIELDS:
        a, b = got[k], want[k]
        if rows is not None:
            a, b = a[rows], b[rows]
        assert torch.equal(a.to(b.dtype), b), f"{k}: {a.tolist()} != {b.tolist()}"


@st.composite
def mlps(draw, quantised: bool):
    d_in = draw(st.integers(1, 4))
    depth = draw(st.integers(1, 4))
    dtype = draw(st.sampled_from([torch.float32, f64]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    layers: list[nn.Module] = []
    d = d_in
    for _ in range(depth):
        width = draw(st.integers(1, 8))
        lin = nn.Linear(d, width, bias=draw(st.booleans()))
        with torch.no_grad():
            if quantised:  # exact zeros, ties and coincident crossings
                lin.weight.copy_(torch.randint(-4, 5, (width, d), generator=g) / 2)
                if lin.bias is not None:
                    lin.bias.copy_(torch.randint(-2, 3, (width,), generator=g) / 2)
            else:
                lin.weight.copy_(torch.randn(width, d, generator=g))
                if lin.bias is not None:
                    lin.bias.copy_(torch.randn(width, generator=g))
        kind = draw(st.sampled_from(["relu", "leaky", "prelu"]))
        act = {"relu": nn.ReLU(), "leaky": nn.LeakyReLU(0.25), "prelu": nn.PReLU(width, init=0.5)}[kind]
        layers += [lin, act]
        d = width
    layers.append(nn.Linear(d, 2))
    return nn.Sequential(*layers).to(dtype).eval()


def _segments(net: nn.Module, n: int, seed: int, quantised: bool) -> tuple[torch.Tensor, torch.Tensor]:
    d = net[0].in_features
    dtype = net[0].weight.dtype
    g = torch.Generator().manual_seed(seed)
    if quantised:
        x1 = torch.randint(-6, 7, (n, d), generator=g) / 4
        x2 = torch.randint(-6, 7, (n, d), generator=g) / 4
        x2[: n // 3] = -x1[: n // 3]  # through the origin: bias-free layers meet 0 there
    else:
        x1, x2 = torch.randn(n, d, generator=g) * 3, torch.randn(n, d, generator=g) * 3
    return x1.to(dtype), x2.to(dtype)


def _reference_net(net: nn.Sequential) -> nn.Sequential:
    """The same net with PReLU replaced by the LeakyReLU of its (one) slope, for the reference."""
    out = []
    for m in copy.deepcopy(net):
        if isinstance(m, nn.PReLU):
            out.append(nn.LeakyReLU(float(m.weight[0].detach())))
        else:
            out.append(m)
    return nn.Sequential(*out).double()


def _check_against_reference(net: nn.Sequential, seed: int, quantised: bool, n: int) -> None:
    """What the kernels call clean has the reference's measures; every path through the entry point has the float64
    layer walk's."""
    x1, x2 = _segments(net, n, seed, quantised=quantised)
    got, clean = _fast(net, x1, x2)
    want = _reference_measures(_reference_net(net), x1.double(), x2.double())
    _assert_equal(got, want, clean.nonzero().squeeze(1))
    b = sf.folding_batch(net, x1, x2, workers=1)
    _assert_equal({k: getattr(b, k) for k in FIELDS}, _layer_walk_measures(net, x1, x2))


_SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 25, suppress_health_check=[HealthCheck.too_slow]
)


@_SETTINGS
@given(net=mlps(quantised=False), seed=st.integers(0, 1000))
def test_clean_paths_have_the_measures_of_the_rational_reference(net, seed):
    _check_against_reference(net, seed, quantised=False, n=6)


@_SETTINGS
@given(net=mlps(quantised=True), seed=st.integers(0, 1000))
def test_degenerate_paths_are_left_to_the_layer_walk(net, seed):
    """Quantised weights and inputs: exact zeros on pieces, ties at the ends, crossings that meet. What the
    kernels call clean is the reference's; the rest is the layer walk's, which the reference tests cover."""
    _check_against_reference(net, seed, quantised=True, n=9)


def test_a_tie_at_an_end_and_crossings_that_meet_are_not_clean():
    # z1 = x, z2 = -x, z3 = 2x - 1: at x = 0 two neurons sit at 0 (an end); from -1 to 1 they cross together
    lin = nn.Linear(1, 3).double()
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0], [-1.0], [2.0]]))
        lin.bias.copy_(torch.tensor([0.0, 0.0, -1.0]))
    net = nn.Sequential(lin, nn.ReLU(), nn.Linear(3, 1).double()).eval()
    x1 = torch.tensor([[0.0], [-1.0], [0.25]], dtype=f64)
    x2 = torch.tensor([[1.0], [1.0], [1.0]], dtype=f64)
    got, clean = _fast(net, x1, x2)
    assert clean.tolist() == [False, False, True]
    # the clean one: neuron 2 crosses at x = 0.5 (t = 1/3), one step out and no way back
    assert got["r1"][2] == 1 and got["r2"][2] == 1 and got["n_regions"][2] == 2 and got["chi"][2] == 0.0
    b = sf.folding_batch(net, x1, x2, workers=1)
    _assert_equal({k: getattr(b, k) for k in FIELDS}, _reference_measures(net, x1, x2))
    # the two neurons meeting at x = 0 are one step of Hamming distance 2 there
    assert b.r2[1] == 3 and b.r1[1] == 3 and b.n_regions[1] == 3


def test_a_folding_path_by_hand():
    # one input, three neurons: |x| folded by the next layer, x: -1 -> 1
    l1, l2 = nn.Linear(1, 2).double(), nn.Linear(2, 1).double()
    with torch.no_grad():
        l1.weight.copy_(torch.tensor([[1.0], [-1.0]]))
        l1.bias.copy_(torch.tensor([-0.1, -0.2]))
        l2.weight.copy_(torch.tensor([[1.0, 1.0]]))
        l2.bias.copy_(torch.tensor([-0.5]))
    net = nn.Sequential(l1, nn.ReLU(), l2, nn.ReLU(), nn.Linear(1, 1).double()).eval()
    x1, x2 = torch.tensor([[-1.0]], dtype=f64), torch.tensor([[1.0]], dtype=f64)
    got, clean = _fast(net, x1, x2)
    assert clean.tolist() == [True]
    # bits (n1, n2, m): x=-1: (0,1,1); m off at x=-0.7; n2 off at x=-0.2; n1 on at x=0.1; m on at x=0.6
    # to start: 1, 2, 3, 2 -> r1 = 3, r2 = 4, chi = 1/4; the profile peaks at the end
    assert got["r1"].tolist() == [3] and got["r2"].tolist() == [4] and got["n_regions"].tolist() == [5]
    assert got["chi"].tolist() == [0.25] and got["max_profile"].tolist() == [0.25]


def _pairs(arch: str, d: int, n: int, m: int, seed: int, net_seed: int):
    """A random ``arch`` MLP on ``d`` inputs, ``n`` random samples and ``m`` random index pairs of them."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=g)
    return sf.mlp(arch, in_features=d, n_classes=3, seed=net_seed), x, *torch.randint(0, n, (2, m), generator=g)


def test_float32_nets_agree_with_the_float64_and_float32_layer_walks_on_many_paths():
    net, x, i, j = _pairs("5x12", 64, 300, 1500, seed=3, net_seed=1)
    f = sf.folding_pairs(net, x, i, j, workers=1)
    _, clean = _fast(net, x[i], x[j])
    assert clean.float().mean() > 0.95  # most paths go the fast way
    _assert_equal({k: getattr(f, k) for k in FIELDS}, _layer_walk_measures(net, x[i], x[j]))
    # the float32 walk (refined in float64 where float32 cannot decide) counts the same
    s32 = measure.summarize(walk_batch(net, x[i], x[j]))
    _assert_equal({k: getattr(f, k) for k in FIELDS}, {k: getattr(s32, k) for k in FIELDS})


def test_which_models_are_measured_this_way():
    assert _plan(sf.mlp("3x20", 8, 2, seed=0)) is not None
    assert _plan(sf.mlp("3x20", 8, 2, activation="leaky_relu", seed=0)) is not None
    assert _plan(sf.mlp("3x20", 8, 2, seed=0), tie_tol=0.1) is None  # bits against another level
    # the first layer's bits alone: the layers after it are not needed
    assert _plan(sf.mlp("3x20", 8, 2, seed=0), layers="net.1").widths == [20]
    assert _plan(sf.mlp("3x20", 8, 2, seed=0), layers="net.3") is None  # a layer without bits before it
    assert _plan(sf.mlp(f"2x{MAX_WIDTH + 1}", 8, 2, seed=0)) is None  # too wide
    assert _plan(nn.Sequential(nn.Linear(4, 5), nn.Hardtanh(), nn.Linear(5, 2))) is None  # two kinks
    assert _plan(nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.BatchNorm1d(5), nn.ReLU())) is None
    assert _plan(nn.Sequential(nn.Flatten(), nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2))) is not None

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

        def forward(self, x):
            h = torch.relu(self.a(x))
            return torch.relu(self.b(h) + x)

    assert _plan(Residual()) is None


def test_workers_give_the_numbers_of_one_process():
    net, x, i, j = _pairs("4x10", 16, 400, 3000, seed=0, net_seed=2)
    one = sf.folding_pairs(net, x, i, j, workers=1)
    two = sf.folding_pairs(net, x, i, j, workers=2, batch_size=512)
    pairs = sf.folding_batch(net, x[i], x[j], workers=2, batch_size=512)
    for k in FIELDS:
        assert torch.equal(getattr(one, k), getattr(two, k)), k
        assert torch.equal(getattr(one, k), getattr(pairs, k)), k


def test_working_arrays_grow_and_keep_the_rows_they_hold():
    """Arrays sized for too few breakpoints (here two per path) grow in the middle of a layer and give the same
    measures as arrays large enough from the start, in both of their value buffers."""
    net, x, i, j = _pairs("5x16", 24, 200, 600, seed=5, net_seed=3)
    plan = _plan(net)
    z, nrm = plan.prefix(x)
    want, ok = plan(z[i], z[j], nrm[i], nrm[j])
    small = _plan(net)
    small.rows_per_path[0] = 0.0
    got, ok2 = small(z[i], z[j], nrm[i], nrm[j])
    assert small.scratch["cap"] > 2 * 600  # it grew
    assert torch.equal(ok, ok2)
    _assert_equal(got, want)
    assert float(want["n_regions"].float().mean()) > 4


def test_the_widest_layers_the_kernels_take_agree_with_the_layer_walk():
    """At MAX_WIDTH (64) the kernels measure the paths and agree with the float64 layer walk on every one."""
    import spacefold._core.walk.exact.mlp as kernels

    net, x, i, j = _pairs(f"2x{MAX_WIDTH}", 40, 150, 600, seed=4, net_seed=1)
    assert _plan(net) is not None
    fast = sf.folding_pairs(net, x, i, j, workers=1)
    old = kernels.MAX_WIDTH
    try:
        kernels.MAX_WIDTH = 0
        walked = sf.folding_pairs(net, x, i, j, workers=1, dtype=torch.float64)
    finally:
        kernels.MAX_WIDTH = old
    assert fast.n_float64 < len(i) // 10  # (most paths measured by the kernels themselves)
    for k in FIELDS:
        assert torch.equal(getattr(fast, k), getattr(walked, k)), k


@pytest.mark.parametrize("bias", [True, False])
def test_the_compiled_first_layer_is_within_its_bound_of_the_exact_products(bias):
    """Float32 inputs of a float32 model go through the compiled first layer (in parts on two threads, in blocks,
    from inputs that are not contiguous): every value lies within the bound ``(in + 4)·unit·(|W||x| + |b|)`` of the
    exact product (in rationals; the bound leaves room for the final rounding to float64), and
    every norm lies at or above the exact norm, by no more than the widening. The float64 path (float64 inputs)
    is held to the same bound."""
    import math
    from fractions import Fraction

    from spacefold._core.walk.exact import mlp as mlp_module

    g = torch.Generator().manual_seed(7)
    net = nn.Sequential(nn.Linear(37, 9, bias=bias), nn.ReLU(), nn.Linear(9, 3)).eval()
    with torch.no_grad():
        net[0].weight.copy_(torch.randn(9, 37, generator=g) * 3)
    plan = _plan(net)
    n = 4 * mlp_module._PREFIX_ROWS + 7  # blocks of two parts on two threads, rows left over after groups of four
    wide = torch.randn(n, 2 * 37, generator=g) * torch.logspace(-3, 3, 2 * 37)
    x = wide[:, ::2]  # (not contiguous)
    assert not x.is_contiguous() and x.dtype == torch.float32
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        z32, n32 = plan.prefix(x, block=n // 2)
    finally:
        torch.set_num_threads(threads)
    z64, n64 = plan.prefix(x.double())
    w = net[0].weight.detach().double()
    b = torch.zeros(9, dtype=f64) if net[0].bias is None else net[0].bias.detach().double()
    unit = float(torch.finfo(f64).eps) / 2
    rows = list(range(0, n, 193)) + [n // 2 - 1, n // 2, n // 2 + 1, n - 3, n - 2, n - 1]
    for r in rows:
        xr = x[r].double()
        xs = [Fraction(float(v)) for v in xr]
        sums = [sum((Fraction(float(w[o, m])) * xs[m] for m in range(37)), Fraction(float(b[o]))) for o in range(9)]
        exact = torch.tensor([float(v) for v in sums], dtype=f64)
        bound = (37 + 4) * unit * ((w.abs() * xr.abs()).sum(1) + b.abs())
        for z in (z32, z64):
            assert torch.all((z[r] - exact).abs() <= bound), r
        true_norm = math.sqrt(math.fsum(float(v) ** 2 for v in xr))  # (exact squares of float32 values)
        for nr in (n32, n64):
            assert true_norm <= float(nr[r]) <= true_norm * (1 + 1e-12), r
    assert not torch.equal(z32, torch.zeros_like(z32))


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
def test_a_layer_of_no_units_is_left_to_the_layer_walk():
    """A hidden layer of width 0 has no bits: not measured by the kernels, and every path is one region."""
    net = nn.Sequential(nn.Linear(5, 0), nn.ReLU(), nn.Linear(0, 2)).eval()
    assert _plan(net) is None
    g = torch.Generator().manual_seed(0)
    b = sf.folding_batch(net, torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g), workers=1)
    assert torch.equal(b.n_regions, torch.ones(6, dtype=b.n_regions.dtype)) and torch.all(b.chi == 0)
