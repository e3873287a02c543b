"""The exact region walk (docs/method.md, 'The exact walk') against independent walkers.

Oracles: dense uniform grids (float64) and strict bisection locate every region
with a plain forward pass; the exact walk must contain the dense walk as a
subsequence, equal it where the grid is fine enough, never be shorter, and agree
with bisection pattern for pattern. CantorNet regions are checked in exact
rational arithmetic.
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import spacefold as sf
from spacefold._core import measure
from spacefold._core.folding import walk_batch
from spacefold._core.patterns import pattern_layout
from spacefold._core.walk import WalkBatch, _kernels
from spacefold._core.walk.exact import ExactWalkBatch, NotPiecewiseLinearError, exact_walks, verify
from spacefold.testing import collapse, is_subsequence

f64 = torch.float64


@pytest.fixture(autouse=True, params=["compiled", "torch"])
def backend(request, monkeypatch):
    """Every test of this module runs with the compiled kernels (CPU, ReLU-type layers) and
    with the plain torch operations that every device and layer can use."""
    if request.param == "torch":
        monkeypatch.setenv("SPACEFOLD_NUMBA", "0")
    elif not _kernels.available():
        pytest.skip("numba is not installed: no compiled kernels")
    return request.param


def _mlp(widths, acts, seed):
    torch.manual_seed(seed)
    layers = []
    for i in range(len(widths) - 1):
        layers.append(nn.Linear(widths[i], widths[i + 1]))
        if i < len(widths) - 2:
            layers.append(acts[i % len(acts)]())
    return nn.Sequential(*layers).to(f64).eval()


class _Residual(nn.Module):
    """A skip addition and one ``nn.ReLU`` module called twice."""

    def __init__(self, d=4, w=10):
        super().__init__()
        self.inp = nn.Linear(d, w)
        self.relu = nn.ReLU()
        self.f1 = nn.Linear(w, w)
        self.act = nn.LeakyReLU(0.1)
        self.f2 = nn.Linear(w, w)
        self.out = nn.Linear(w, 2)

    def forward(self, x):
        h = self.relu(self.inp(x))
        h = self.relu(h + self.f2(self.act(self.f1(h))))
        return self.out(h.view(h.size(0), -1))


def _conv(seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(1, 3, 3),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Conv2d(3, 4, 3, padding=1),
        nn.PReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16, 8),
        nn.ReLU6(),
        nn.Dropout(0.3),
        nn.Linear(8, 3),
    ).to(f64)
    with torch.no_grad():
        bn = net[1]
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.normal_()
        bn.bias.normal_()
    return net.eval()


def _check_against_oracles(net, x1, x2, steps=4000, tie_tol=0.0, layers=None, bisect=True):
    ex = exact_walks(net, x1, x2, tie_tol=tie_tol, layers=layers, tol=1e-12)
    bi = walk_batch(net, x1, x2, method="bisect", tol=1e-12, tie_tol=tie_tol, layers=layers)
    un = walk_batch(net, x1, x2, method="uniform", steps=steps, tie_tol=tie_tol, layers=layers)
    for i in range(len(ex)):
        e, b, u = ex[i].patterns, bi[i].patterns, un[i].patterns
        if bisect:
            assert torch.equal(e, b), f"walk {i}: exact and bisection differ"
        assert e.shape[0] >= u.shape[0]
        assert is_subsequence(u, e), f"walk {i}: the dense walk is not a subsequence of the exact walk"
        # where the grid hits every region, the walks are equal
        if e.shape[0] == u.shape[0]:
            assert torch.equal(e, u)
    if bisect:  # entry points: located like bisection (to its tolerance)
        assert torch.allclose(ex.t, bi.t, atol=1e-9)
    res = verify(net, x1, x2, ex, tie_tol=tie_tol, layers=layers)
    assert res.ok and res.n_checked == int(ex.offsets[-1])
    # χ from the flips equals χ of the materialised patterns (two computations)
    s, d = measure.summarize(ex), measure.ragged_ranges(ex.patterns, ex.offsets)
    for k in ("r1", "r2"):
        assert torch.equal(s[k], d[k]), k
    assert torch.equal(s["n_regions"], d["n_points"])
    assert torch.allclose(s["chi"], d["chi"]) and torch.allclose(s["max_profile"], d["max_profile"])
    return ex, un


ACTS = [nn.ReLU, lambda: nn.LeakyReLU(0.05), lambda: nn.PReLU(), nn.Hardtanh, nn.ReLU6]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_mlps_match_dense_and_bisection(seed):
    net = _mlp([3, 12, 12, 10, 2], ACTS[seed:] + ACTS[:seed], seed)
    g = torch.Generator().manual_seed(seed)
    x1 = 2 * torch.randn(6, 3, generator=g, dtype=f64)
    x2 = 2 * torch.randn(6, 3, generator=g, dtype=f64)
    ex, un = _check_against_oracles(net, x1, x2)
    assert (ex.n_regions >= un.n_regions).all()


def test_conv_net_with_batchnorm_pooling_and_maxpool():
    net = _conv()
    g = torch.Generator().manual_seed(3)
    x1 = torch.randn(4, 1, 10, 10, generator=g, dtype=f64)
    x2 = torch.randn(4, 1, 10, 10, generator=g, dtype=f64)
    _check_against_oracles(net, x1, x2)


def test_residual_net_with_a_module_called_twice():
    net = _Residual().to(f64).eval()
    g = torch.Generator().manual_seed(4)
    x1 = 2 * torch.randn(5, 4, generator=g, dtype=f64)
    x2 = 2 * torch.randn(5, 4, generator=g, dtype=f64)
    ex, _ = _check_against_oracles(net, x1, x2)
    # the reused ReLU gives two blocks, in call order, as activation_patterns does
    p0 = sf.activation_patterns(net, x1)
    assert torch.equal(ex.start_bits, p0)


def test_layer_selection_matches_activation_patterns():
    net = _mlp([3, 10, 10, 10, 2], ACTS, 5)
    g = torch.Generator().manual_seed(5)
    x1, x2 = 2 * torch.randn(4, 3, generator=g, dtype=f64), 2 * torch.randn(4, 3, generator=g, dtype=f64)
    # bisection skips intervals whose ends share the pattern of the selected layers, which
    # is not exact when other layers are left out (their regions make the classes non-convex)
    _check_against_oracles(net, x1, x2, layers=["3", nn.Hardtanh], bisect=False, steps=20_000)
    full = exact_walks(net, x1, x2, tol=1e-12)
    sub = exact_walks(net, x1, x2, layers=["3", nn.Hardtanh], tol=1e-12)
    cols = pattern_layout(net, x1)["3"]
    for i in range(4):  # the selected columns of the full walk, collapsed, are the sub walk
        assert torch.equal(collapse(full[i].patterns[:, cols]), sub[i].patterns)


def test_layers_no_pattern_depends_on_are_not_evaluated():
    from spacefold._core.walk.exact import compile_model

    net = _mlp([3, 10, 10, 10, 2], [nn.ReLU], 8)
    targets = lambda prog: {n.target for n in prog.live if n.op == "call_module"}  # noqa: E731
    # the logits follow the last activation; with only the first ReLU selected, nothing after it matters
    assert targets(compile_model(net)) == {"0", "1", "2", "3", "4", "5"}
    assert targets(compile_model(net, layers=["1"])) == {"0", "1"}
    g = torch.Generator().manual_seed(8)
    x1, x2 = 2 * torch.randn(5, 3, generator=g, dtype=f64), 2 * torch.randn(5, 3, generator=g, dtype=f64)
    full = exact_walks(net, x1, x2, tol=1e-12)
    sub = exact_walks(net, x1, x2, layers=["1"], tol=1e-12)
    cols = pattern_layout(net, x1)["1"]
    for i in range(5):
        assert torch.equal(collapse(full[i].patterns[:, cols]), sub[i].patterns)
    assert verify(net, x1, x2, sub, layers=["1"]).ok and verify(net, x1, x2, full).ok


def test_folding_api_exact_equals_bisect_and_chunks():
    net = _mlp([2, 16, 16, 16, 2], [nn.ReLU], 6)
    g = torch.Generator().manual_seed(6)
    x1, x2 = torch.randn(7, 2, generator=g, dtype=f64), torch.randn(7, 2, generator=g, dtype=f64)
    a = sf.folding_batch(net, x1, x2, method="exact", batch_size=3, tol=1e-12)
    b = sf.folding_batch(net, x1, x2, method="bisect", tol=1e-12)
    c = sf.folding_batch(net, x1, x2, method="exact", batch_size=100, tol=1e-12, return_walks=True)
    for k in ("chi", "r1", "r2", "n_regions", "max_profile"):
        assert torch.equal(getattr(a, k), getattr(b, k)) and torch.equal(getattr(a, k), getattr(c, k)), k
    assert isinstance(c.walks, WalkBatch)
    f = sf.folding(net, x1[0], x2[0], method="exact")
    assert f.chi == pytest.approx(float(a.chi[0])) and f.n_regions == int(a.n_regions[0])


def test_float32_walk_verifies_and_matches_float64():
    net = _mlp([3, 16, 16, 2], [nn.ReLU], 7)
    g = torch.Generator().manual_seed(7)
    x1, x2 = torch.randn(8, 3, generator=g, dtype=f64), torch.randn(8, 3, generator=g, dtype=f64)
    w64 = exact_walks(net, x1, x2)
    net32 = _mlp([3, 16, 16, 2], [nn.ReLU], 7).float()
    w32 = exact_walks(net32, x1.float(), x2.float())
    assert torch.equal(w32.n_regions, w64.n_regions)
    assert torch.equal(w32.patterns, w64.patterns)
    assert torch.allclose(w32.t, w64.t, atol=1e-5)
    assert verify(net32, x1.float(), x2.float(), w32).ok
    via_dtype = sf.folding_batch(net32, x1.float(), x2.float(), method="exact", dtype=torch.float64)
    assert torch.equal(via_dtype.n_regions, w64.n_regions)


@pytest.mark.parametrize("act", [nn.GELU, nn.Tanh, nn.SiLU])
def test_smooth_activations_are_refused_with_a_pointer_to_bisect(act):
    net = nn.Sequential(nn.Linear(2, 4), act(), nn.Linear(4, 1))
    with pytest.raises(NotPiecewiseLinearError, match="bisect"):
        sf.folding(net, torch.zeros(2), torch.ones(2), method="exact")
    assert issubclass(NotPiecewiseLinearError, TypeError)


def test_functional_activation_and_untraceable_model_are_refused():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 3)
            self.relu = nn.ReLU()

        def forward(self, x):
            return self.relu(torch.relu(self.lin(x)))

    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 3)
            self.relu = nn.ReLU()

        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow
                return self.relu(self.lin(x))
            return self.relu(-self.lin(x))

    # an activation called as a function is walked like a module (it was refused before it gave bits)
    f_net = Functional().double()
    x1, x2 = torch.tensor([[-3.0, 1.0]], dtype=torch.float64), torch.tensor([[2.0, -2.0]], dtype=torch.float64)
    got = exact_walks(f_net, x1, x2)
    from spacefold._core.folding import walk_batch

    ref = walk_batch(f_net, x1, x2, method="uniform", steps=20000)
    assert torch.equal(got.patterns, ref.patterns) and got.patterns.shape[1] == 6
    with pytest.raises(NotPiecewiseLinearError, match="bisect"):
        exact_walks(Branchy(), torch.zeros(1, 2), torch.ones(1, 2))

    # a product of two input-dependent tensors is not piecewise linear
    class Square(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 3)
            self.relu = nn.ReLU()

        def forward(self, x):
            h = self.lin(x)
            return self.relu(h * h)

    with pytest.raises(NotPiecewiseLinearError, match="not affine"):
        exact_walks(Square(), torch.zeros(1, 2), torch.ones(1, 2))


def _net_1d(w1, b1, w2=None, b2=None):
    """Input t in R^1; first layer (w1, b1), optional second layer (w2, b2), each ReLU'd."""
    layers = [nn.Linear(1, len(w1)), nn.ReLU()]
    if w2 is not None:
        layers += [nn.Linear(len(w1), len(w2)), nn.ReLU()]
    net = nn.Sequential(*layers).to(f64)
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(w1, dtype=f64).view(-1, 1))
        net[0].bias.copy_(torch.tensor(b1, dtype=f64))
        if w2 is not None:
            net[2].weight.copy_(torch.tensor(w2, dtype=f64))
            net[2].bias.copy_(torch.tensor(b2, dtype=f64))
    return net.eval()


def test_touching_zero_without_crossing_is_not_a_region():
    # a = ReLU(t), b = ReLU(-t), c = ReLU(a + b) = ReLU(|t|): c's pre-activation is 0 only at t = 0
    net = _net_1d([1.0, -1.0], [0.0, 0.0], [[1.0, 1.0]], [0.0])
    x1, x2 = torch.tensor([[-1.0]], dtype=f64), torch.tensor([[1.0]], dtype=f64)
    w = exact_walks(net, x1, x2)[0]
    assert w.patterns.int().tolist() == [[0, 1, 1], [1, 0, 1]]
    assert w.t.tolist() == pytest.approx([0.0, 0.5])
    # a grid point on t = 1/2 records the isolated zero; Γ* does not (docs/method.md, 'Walks: three samplers')
    grid = sf.walk(net, x1[0], x2[0], method="uniform", steps=10)
    assert grid.patterns.int().tolist() == [[0, 1, 1], [0, 0, 0], [1, 0, 1]]
    assert sf.walk(net, x1[0], x2[0], method="uniform", steps=11).patterns.tolist() == w.patterns.tolist()
    # ... except at t = 0 and t = 1: the pattern of the end points is recorded
    w0 = exact_walks(net, torch.tensor([[0.0]], dtype=f64), x2)[0]
    assert w0.patterns.int().tolist() == [[0, 0, 0], [1, 0, 1]]
    assert sf.folding(net, torch.tensor([0.0], dtype=f64), x2[0], method="exact").r2 == 2


@pytest.mark.parametrize("pad", [0, 62])  # 62 idle neurons per layer: 64 wide, NumPy's sign tests
def test_a_tie_at_an_end_of_a_piece_with_a_crossing_inside(pad):
    # a = ReLU(t) sits exactly at 0 at t = 0 and is positive after; b = ReLU(t - 1/2) crosses
    # inside the same piece; c = ReLU(a - b) also starts at exactly 0. At the new breakpoint
    # t = 1/2 a and c are positive, so the piece (0, 1/2) has their bits 1 (the pattern at
    # t = 0 itself has them 0).
    w2 = [[1.0, -1.0] + [0.0] * pad] + [[0.0] * (2 + pad)] * (pad + 1)
    net = _net_1d([1.0, 1.0] + [0.0] * pad, [0.0, -0.5] + [-1.0] * pad, w2[: 1 + pad], [0.0] + [-1.0] * pad)
    x1, x2 = torch.tensor([[0.0]], dtype=f64), torch.tensor([[1.0]], dtype=f64)
    w = exact_walks(net, x1, x2)[0]
    cols = [0, 1, 2 + pad]  # a, b, c
    assert w.patterns[:, cols].int().tolist() == [[0, 0, 0], [1, 0, 1], [1, 1, 1]]
    assert int(w.patterns.sum(1).max()) == 3  # the idle neurons stay off
    assert w.t.tolist() == pytest.approx([0.0, 0.0, 0.5])
    bi = sf.walk(net, x1[0], x2[0], method="bisect", tol=1e-12)
    assert torch.equal(w.patterns, bi.patterns)


def test_identically_zero_preactivation_gives_bit_zero_and_no_crossing():
    # c = ReLU(a - a) has pre-activation exactly 0 everywhere
    net = _net_1d([1.0], [0.0], [[1.0], [-1.0]], [0.0, 0.0])
    with torch.no_grad():
        net[2].weight.copy_(torch.tensor([[1.0], [0.0]], dtype=f64))
    w = exact_walks(net, torch.tensor([[-1.0]], dtype=f64), torch.tensor([[1.0]], dtype=f64))[0]
    assert w.patterns.int().tolist() == [[0, 0, 0], [1, 1, 0]]


def test_several_neurons_switching_at_the_same_t():
    # three neurons of the first layer change sign at t = 1/2 together
    net = _net_1d([1.0, 2.0, 0.5], [0.0, 0.0, 0.0])
    f = sf.folding(net, torch.tensor([-1.0], dtype=f64), torch.tensor([1.0], dtype=f64), method="exact")
    assert f.patterns.int().tolist() == [[0, 0, 0], [1, 1, 1]]
    assert (f.r1, f.r2, f.chi) == (3, 3, 0.0)
    # crossings closer than tol merge into one breakpoint; apart from that, they are separate
    net2 = _net_1d([1.0, 1.0], [0.0, 1e-9])
    x1, x2 = torch.tensor([[-1.0]], dtype=f64), torch.tensor([[1.0]], dtype=f64)
    assert exact_walks(net2, x1, x2, tol=1e-6)[0].n_regions == 2
    assert exact_walks(net2, x1, x2, tol=0.0)[0].n_regions == 3


def test_hamming1_counterexample_of_folding_md():
    # docs/method.md, 'Walks: three samplers' (the hamming1 counterexample): h1 = ReLU(t), h2 = ReLU(t - 1);
    # c = ReLU(h1 - 2 h2 - 1/2), d = ReLU(h1 - 3)
    net = _net_1d([1.0, 1.0], [0.0, -1.0], [[1.0, -2.0], [1.0, 0.0]], [-0.5, -3.0])
    f = sf.folding(net, torch.tensor([0.25], dtype=f64), torch.tensor([2.0], dtype=f64), method="exact")
    assert f.patterns.int().tolist() == [[1, 0, 0, 0], [1, 0, 1, 0], [1, 1, 1, 0], [1, 1, 0, 0]]
    assert f.chi == pytest.approx(1 / 3)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 10_000),
    width=st.integers(1, 24),
    d=st.integers(1, 6),
    act=st.sampled_from(["relu", "leaky", "hardtanh", "relu6"]),
)
def test_one_hidden_layer_never_folds(seed, width, d, act):
    acts = {"relu": nn.ReLU, "leaky": lambda: nn.LeakyReLU(0.2), "hardtanh": nn.Hardtanh, "relu6": nn.ReLU6}
    net = _mlp([d, width, 3], [acts[act]], seed)
    g = torch.Generator().manual_seed(seed)
    x1, x2 = 3 * torch.randn(4, d, generator=g, dtype=f64), 3 * torch.randn(4, d, generator=g, dtype=f64)
    b = sf.folding_batch(net, x1, x2, method="exact")
    assert (b.chi == 0).all() and torch.equal(b.r1, b.r2)


def test_verify_detects_a_wrong_pattern():
    net = _mlp([2, 8, 8, 2], [nn.ReLU], 8)
    x1, x2 = torch.tensor([[-2.0, -1.0]], dtype=f64), torch.tensor([[2.0, 1.5]], dtype=f64)
    w = exact_walks(net, x1, x2)
    pats = w.patterns.clone()
    pats[len(pats) // 2, 0] ^= True
    bad = WalkBatch(pats, w.t, w.offsets, "exact")
    res = verify(net, x1, x2, bad)
    assert not res.ok and res.n_mismatched == 1 and res.mismatches.tolist() == [[0, len(pats) // 2]]


def test_folding_pairs_first_layer_once_per_input():
    net = _mlp([5, 12, 12, 12, 3], [nn.ReLU], 9)
    g = torch.Generator().manual_seed(9)
    x = torch.randn(20, 5, generator=g, dtype=f64)
    i = torch.randint(0, 20, (30,), generator=g)
    j = torch.randint(0, 20, (30,), generator=g)
    a = sf.folding_pairs(net, x, i, j, method="exact", batch_size=7, per_layer=True)
    b = sf.folding_batch(net, x[i], x[j], method="exact", per_layer=True)
    for k in ("chi", "r1", "r2", "n_regions", "max_profile"):
        assert torch.equal(getattr(a, k), getattr(b, k)), k
    assert a.per_layer.keys() == b.per_layer.keys()
    for name in a.per_layer:
        assert torch.allclose(a.per_layer[name], b.per_layer[name]), name


def test_walks_are_materialised_only_when_asked():
    net = _mlp([2, 8, 8, 2], [nn.ReLU], 10)
    x1, x2 = torch.randn(3, 2, dtype=f64), torch.randn(3, 2, dtype=f64)
    w = exact_walks(net, x1, x2)
    assert isinstance(w, ExactWalkBatch)
    measure.summarize(w)
    assert "dense" not in w._cache  # the summary needs the flips only
    assert w.patterns.shape[1] == 16 and "dense" in w._cache


try:  # CantorNet is the sandbox with known answers (docs/method.md, 'CantorNet')
    import importlib

    _cn = importlib.import_module("spacefold.models.cantornet")
except ImportError:  # pragma: no cover
    _cn = None


@pytest.mark.skipif(_cn is None, reason="spacefold.models.cantornet is not available")
@pytest.mark.parametrize("rep", ["A", "B", "C"])
@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_cantornet_regions_are_exact(rep, depth):
    from fractions import Fraction

    net = _cn.cantornet(depth, rep)
    x1 = torch.tensor([[0.0, 0.75]], dtype=f64)
    x2 = torch.tensor([[1.0, 0.75]], dtype=f64)
    w = exact_walks(net, x1, x2, tie_tol=net.tie_tol)[0]
    # every region's pattern equals the pattern at its midpoint in exact rational arithmetic
    t = w.t.tolist() + [1.0]
    for k in range(w.n_regions):
        tm = Fraction((t[k] + t[k + 1]) / 2).limit_denominator(10**12)
        exact = _cn.exact_pattern((tm, Fraction(3, 4)), depth, rep)
        assert tuple(w.patterns[k].tolist()) == tuple(exact), (rep, depth, k)
    if rep in ("A", "B"):  # A and B evaluate stably in float64: the dense walk agrees
        un = sf.walk(net, x1[0], x2[0], method="uniform", steps=20_000, tie_tol=net.tie_tol)
        assert is_subsequence(un.patterns, w.patterns) and un.n_regions <= w.n_regions
        bi = sf.walk(net, x1[0], x2[0], method="bisect", tol=1e-12, tie_tol=net.tie_tol)
        assert torch.equal(bi.patterns, w.patterns)


def test_same_region_counts_as_regioncam():
    rc = pytest.importorskip("regioncam")
    torch.manual_seed(11)
    net = nn.Sequential(
        nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4)
    ).eval()
    g = torch.Generator().manual_seed(11)
    x1, x2 = torch.randn(10, 6, generator=g), torch.randn(10, 6, generator=g)
    ours = exact_walks(net, x1, x2, tol=0.0).n_regions
    theirs = []
    for a, b in zip(x1, x2):
        cam = rc.Regioncam1D.through_points(torch.stack([a, b]).numpy(), size=2.0)  # size 2: the whole segment
        cam.add(net)
        theirs.append(cam.num_edges)
    assert ours.tolist() == theirs


def test_sub_batches_give_the_same_walks(monkeypatch):
    from spacefold._core.walk import exact as ex

    net = _mlp([3, 10, 10, 2], [nn.ReLU], 12)
    g = torch.Generator().manual_seed(12)
    x1, x2 = 2 * torch.randn(70, 3, generator=g, dtype=f64), 2 * torch.randn(70, 3, generator=g, dtype=f64)
    whole = exact_walks(net, x1, x2)
    monkeypatch.setattr(ex.driver, "_TARGET_BYTES", 1)  # sub-batches of 64, then 16 paths
    monkeypatch.setattr(ex.driver, "_TARGET_BYTES_COMPILED", 1)
    parts = exact_walks(net, x1, x2)
    assert isinstance(parts, ExactWalkBatch) and len(parts) == 70
    for k in ("r1", "r2", "chi", "max_profile", "n_regions"):
        assert torch.equal(measure.summarize(whole)[k], measure.summarize(parts)[k]), k
    assert torch.equal(whole.patterns, parts.patterns) and torch.equal(whole.t, parts.t)
    assert torch.equal(whole.offsets, parts.offsets)


def test_concurrent_sub_batches_give_the_same_walks(monkeypatch):
    from spacefold._core.walk import exact as ex

    net = _mlp([3, 10, 10, 2], [nn.ReLU], 13)
    g = torch.Generator().manual_seed(13)
    x1, x2 = 2 * torch.randn(170, 3, generator=g, dtype=f64), 2 * torch.randn(170, 3, generator=g, dtype=f64)
    n_threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        whole = exact_walks(net, x1, x2)  # one sub-batch of 64 paths, then one of 106, in turn
        monkeypatch.setattr(ex.driver, "_TARGET_BYTES", 1)  # 2 x 64, then 11, 11, 11, 9 paths, two at a time
        monkeypatch.setattr(ex.driver, "_TARGET_BYTES_COMPILED", 1)
        pools = []

        class Pool(ex.driver.ThreadPoolExecutor):
            def __init__(self, n):
                pools.append(n)
                super().__init__(n)

        monkeypatch.setattr(ex.driver, "ThreadPoolExecutor", Pool)
        torch.set_num_threads(2)
        parts = exact_walks(net, x1, x2)
        assert pools == [2]
        assert torch.get_num_threads() == 2  # restored after the concurrent sub-batches
    finally:
        torch.set_num_threads(n_threads)
    assert isinstance(parts, ExactWalkBatch) and len(parts) == 170
    for k in ("r1", "r2", "chi", "max_profile", "n_regions"):
        assert torch.equal(measure.summarize(whole)[k], measure.summarize(parts)[k]), k
    assert torch.equal(whole.patterns, parts.patterns) and torch.equal(whole.t, parts.t)
    assert torch.equal(whole.offsets, parts.offsets)


class _Wide(nn.Module):
    """Layers of 64 neurons and more (NumPy sign tests), many crossings per piece on the first
    layers (dense pieces) and few later (sparse ones), elementwise and per-neuron activations."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(14)
        self.net = nn.Sequential(
            nn.Linear(4, 96),
            nn.ReLU(),
            nn.Linear(96, 80),
            nn.Hardtanh(-0.5, 0.5),
            nn.Linear(80, 72),
            nn.PReLU(72),
            nn.Linear(72, 64),
            nn.LeakyReLU(0.1),
            nn.Linear(64, 3),
        )
        with torch.no_grad():
            self.net[5].weight.uniform_(-0.5, 0.5)

    def forward(self, x):
        return self.net(x)


def test_wide_layers_match_oracles_and_the_plain_torch_sign_tests(monkeypatch):
    from spacefold._core.walk import exact as ex

    net = _Wide().to(f64).eval()
    g = torch.Generator().manual_seed(14)
    x1, x2 = 3 * torch.randn(3, 4, generator=g, dtype=f64), 3 * torch.randn(3, 4, generator=g, dtype=f64)
    ex_np, un = _check_against_oracles(net, x1, x2, steps=20_000)
    assert (ex_np.n_regions >= un.n_regions).all() and int(ex_np.n_regions.min()) > 40
    monkeypatch.setattr(ex.crossings, "_NUMPY_MIN_WIDTH", 10**9)
    ex_torch = exact_walks(net, x1, x2, tol=1e-12)
    assert torch.equal(ex_np.patterns, ex_torch.patterns) and torch.equal(ex_np.t, ex_torch.t)
    # float32: the walk still agrees with plain forward passes
    net32 = _Wide().eval()
    w32 = exact_walks(net32, x1.float(), x2.float())
    assert verify(net32, x1.float(), x2.float(), w32, atol=1e-5).ok


def test_compiled_programs_do_not_keep_models_alive():
    import gc
    import weakref

    net = _mlp([2, 6, 6, 2], [nn.ReLU], 13)
    exact_walks(net, torch.zeros(1, 2, dtype=f64), torch.ones(1, 2, dtype=f64))
    ref = weakref.ref(net)
    del net
    gc.collect()
    assert ref() is None


def test_materialised_patterns_with_many_flips_per_neuron():
    # 600 walks through the same neuron: far more flips in one column than 256
    net = _net_1d([1.0, -1.0], [0.0, 0.0])
    x1 = torch.full((600, 1), -1.0, dtype=f64)
    x2 = torch.full((600, 1), 1.0, dtype=f64)
    x1[1::2], x2[1::2] = 1.0, -1.0  # every other walk goes the other way
    w = exact_walks(net, x1, x2)
    assert w.patterns.shape == (1200, 2)
    assert w.patterns[0::4].int().tolist() == [[0, 1]] * 300 and w.patterns[1::4].int().tolist() == [[1, 0]] * 300
    assert w.patterns[2::4].int().tolist() == [[1, 0]] * 300 and w.patterns[3::4].int().tolist() == [[0, 1]] * 300


def test_replacing_a_submodule_is_seen():
    # programs are cached per model; replacing a layer must not reuse the old program
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2)).double()
    x1 = torch.tensor([[-2.0, -1.0]], dtype=f64)
    x2 = torch.tensor([[2.0, 1.5]], dtype=f64)
    sf.folding_batch(net, x1, x2, method="exact")
    net[2] = nn.Linear(8, 8).double()
    ex = sf.walk(net, x1[0], x2[0], method="exact")
    dense = sf.walk(net, x1[0], x2[0], method="uniform", steps=20_000)
    assert torch.equal(ex.patterns, dense.patterns)


def _compiled_only(backend: str) -> None:
    if backend != "compiled":
        pytest.skip("a test of the compiled kernels themselves")


def _relu_case(seed: int, widths: list[int], n: int):
    """A float64 ReLU MLP and n segments between Gaussian points (scale 2)."""
    g = torch.Generator().manual_seed(seed)
    x1, x2 = (
        2 * torch.randn(n, widths[0], generator=g, dtype=f64),
        2 * torch.randn(n, widths[0], generator=g, dtype=f64),
    )
    return _mlp(widths, [nn.ReLU], seed), x1, x2


def _kernel_act(kind: int, width: int) -> nn.Module:
    return [
        nn.ReLU(),
        nn.LeakyReLU(0.1),
        nn.PReLU(),
        nn.PReLU(width),
        nn.RReLU(0.05, 0.3),
        nn.Hardtanh(-0.5, 1.0),
        nn.ReLU6(),
        nn.Hardtanh(0.2, 0.9),
    ][kind]


def _count_kernel_calls(monkeypatch) -> list[int]:
    calls = [0, 0]
    split, linear = _kernels.split_act, _kernels.new_rows_linear

    def counted_split(*args):
        calls[0] += 1
        return split(*args)

    def counted_linear(*args):
        calls[1] += 1
        return linear(*args)

    monkeypatch.setattr(_kernels, "split_act", counted_split)
    monkeypatch.setattr(_kernels, "new_rows_linear", counted_linear)
    return calls


@pytest.mark.parametrize("dtype", [torch.float32, f64])
def test_relu_type_mlps_run_on_the_compiled_kernels(backend, dtype, monkeypatch):
    torch.manual_seed(21)
    net = nn.Sequential(nn.Linear(4, 70), nn.ReLU(), nn.Linear(70, 30), nn.PReLU(30), nn.Linear(30, 3)).to(dtype)
    with torch.no_grad():
        net[3].weight.uniform_(-0.5, 0.5)
    net.eval()
    g = torch.Generator().manual_seed(21)
    x1, x2 = 3 * torch.randn(5, 4, generator=g), 3 * torch.randn(5, 4, generator=g)
    if backend == "compiled":
        assert _kernels.available(float if dtype == f64 else "float32")  # compiled and self-tested first
    calls = _count_kernel_calls(monkeypatch)
    w = exact_walks(net, x1.to(dtype), x2.to(dtype))
    # both activations (the last one for its bits only), and the Linear after the first
    assert calls == ([2, 1] if backend == "compiled" else [0, 0])
    assert verify(net, x1.to(dtype), x2.to(dtype), w, atol=1e-5 if dtype == torch.float32 else 0.0).ok
    assert int(w.n_regions.min()) > 10


@settings(
    max_examples=int(os.environ.get("SPACEFOLD_EXAMPLES", 40)),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    seed=st.integers(0, 10_000),
    widths=st.lists(st.integers(1, 80), min_size=1, max_size=3),
    kinds=st.lists(st.integers(0, 7), min_size=3, max_size=3),
    tol=st.sampled_from([0.0, 1e-9, 1e-4]),
    select=st.integers(0, 7),
    tie_tol=st.sampled_from([0.0, 0.0, 0.05]),
)
def test_compiled_kernels_give_the_walks_of_the_torch_operations(backend, seed, widths, kinds, tol, select, tie_tol):
    """Agreement of two independent implementations of the same walk, layer choice, ``tol``
    merging and a bit threshold apart from the kinks included, on MLPs whose layers straddle
    the 64-bit words of the kernels' signs, with activations of one kink (ReLU type) and two
    (Hardtanh, ReLU6, a Hardtanh whose bit threshold 0 is below both kinks)."""
    _compiled_only(backend)
    torch.manual_seed(seed)
    layers, d = [], 3
    for k, w in enumerate(widths):
        layers += [nn.Linear(d, w), _kernel_act(kinds[k], w)]
        d = w
    net = nn.Sequential(*layers, nn.Linear(d, 2)).to(f64).eval()
    names = [n for n, m in net.named_modules() if m is not net and not isinstance(m, nn.Linear)]
    chosen = [n for k, n in enumerate(names) if (select >> k) & 1] or None
    g = torch.Generator().manual_seed(seed)
    x1, x2 = 2 * torch.randn(7, 3, generator=g, dtype=f64), 2 * torch.randn(7, 3, generator=g, dtype=f64)
    x2[0] = x1[0]  # a segment of length 0
    got = exact_walks(net, x1, x2, layers=chosen, tol=tol, tie_tol=tie_tol)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPACEFOLD_NUMBA", "0")
        ref = exact_walks(net, x1, x2, layers=chosen, tol=tol, tie_tol=tie_tol)
    assert torch.equal(got.offsets, ref.offsets)
    assert torch.equal(got.patterns, ref.patterns)
    assert torch.allclose(got.t, ref.t, rtol=0, atol=1e-12)
    for k in ("r1", "r2", "n_regions"):
        assert torch.equal(measure.summarize(got)[k], measure.summarize(ref)[k]), k


def test_kernels_that_do_not_work_here_leave_the_walk_to_torch(backend, monkeypatch):
    _compiled_only(backend)
    from spacefold._core.walk import _jit

    net, x1, x2 = _relu_case(22, [3, 10, 10, 2], 6)
    ref = exact_walks(net, x1, x2)

    def broken(*args):
        raise RuntimeError("no such instruction")

    monkeypatch.setattr(_kernels, "_STATE", {})  # as in a new process
    monkeypatch.setattr(_jit, "split_act", broken)
    with pytest.warns(RuntimeWarning, match="compiled kernels are unusable here.*no such instruction"):
        got = exact_walks(net, x1, x2)
    assert not _kernels.available()
    assert torch.equal(got.patterns, ref.patterns) and torch.allclose(got.t, ref.t, rtol=0, atol=1e-12)


def test_the_kernels_self_test_rejects_a_wrong_result(backend, monkeypatch):
    _compiled_only(backend)
    from spacefold._core.walk import _jit

    real = _jit.new_rows_linear

    def off_by_one(out, *args):
        real(out, *args)
        out[args[0] :] += 1  # every new row wrong

    monkeypatch.setattr(_kernels, "_STATE", {})
    monkeypatch.setattr(_jit, "new_rows_linear", off_by_one)
    with pytest.warns(RuntimeWarning, match="new-row kernel gave a wrong result"):
        assert not _kernels.available(float)  # float64


def test_conv_and_residual_nets_split_on_the_kernels_too(backend, monkeypatch):
    """Activations not followed by a Linear alone (a pooling layer, a skip connection that
    needs the values at the new breakpoints, a PReLU with one slope per channel, a ReLU6 with
    its two kinks) are split by the kernel and the live tensors interpolated after it."""
    g = torch.Generator().manual_seed(23)
    conv, res = _conv(23), _Residual().to(f64).eval()
    per_channel = nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.PReLU(3), nn.Flatten(), nn.Linear(27, 4), nn.ReLU(), nn.Linear(4, 2)
    ).to(f64)
    with torch.no_grad():
        per_channel[1].weight.copy_(torch.tensor([-0.5, 0.2, 0.7]))
    cases = [
        (conv, torch.randn(8, 1, 10, 10, generator=g, dtype=f64), 3),
        (res, 2 * torch.randn(10, 4, generator=g, dtype=f64), 3),
        (per_channel.eval(), torch.randn(8, 1, 5, 5, generator=g, dtype=f64), 2),
    ]
    if backend == "compiled":
        assert _kernels.available(float)  # compiled and self-tested before counting
    for net, x, n_kernel_layers in cases:
        x1, x2 = x[: len(x) // 2], x[len(x) // 2 :]
        calls = _count_kernel_calls(monkeypatch)
        got = exact_walks(net, x1, x2)
        assert calls[0] == (n_kernel_layers if backend == "compiled" else 0)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("SPACEFOLD_NUMBA", "0")
            ref = exact_walks(net, x1, x2)
        assert torch.equal(got.patterns, ref.patterns) and torch.equal(got.offsets, ref.offsets)
        assert torch.allclose(got.t, ref.t, rtol=0, atol=1e-12)
        assert verify(net, x1, x2, got).ok


class _Pools(nn.Module):
    """Max pooling with padding, dilation, strides other than the kernel, in 1-D and 2-D."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(24)
        self.c1 = nn.Conv1d(1, 3, 3)
        self.r1 = nn.ReLU()
        self.p1 = nn.MaxPool1d(3, stride=2, padding=1)
        self.c2 = nn.Conv2d(3, 2, (1, 1))
        self.p2 = nn.MaxPool2d((2, 3), stride=1, padding=(1, 1), dilation=(1, 2))
        self.r2 = nn.LeakyReLU(0.1)
        self.out = nn.Linear(2 * 2 * 3, 2)

    def forward(self, x):  # x: (batch, 12)
        h = self.p1(self.r1(self.c1(x.unsqueeze(1))))  # (batch, 3, 5)
        h = self.p2(self.c2(h.unsqueeze(2)))  # (batch, 2, 2, 3)
        return self.out(self.r2(h).flatten(1))


def test_max_pooling_with_padding_stride_and_dilation_matches_oracles():
    net = _Pools().to(f64).eval()
    g = torch.Generator().manual_seed(24)
    x1, x2 = 2 * torch.randn(5, 12, generator=g, dtype=f64), 2 * torch.randn(5, 12, generator=g, dtype=f64)
    ex, un = _check_against_oracles(net, x1, x2, steps=20_000)
    assert (ex.n_regions >= un.n_regions).all() and int(ex.n_regions.max()) > 5


def test_rows_are_appended_in_place_only_to_the_tensor_that_owns_the_spare_rows():
    from spacefold._core.walk.exact import _interpolate

    grown: dict = {}
    x = torch.arange(12.0).view(4, 3)
    nxt = torch.tensor([2, 3, 2, 3])
    y = _interpolate(x, (torch.tensor([0, 1]), torch.tensor([0.5, 0.25], dtype=f64)), nxt, grown)
    assert torch.equal(y[:4], x)
    assert torch.equal(y[4:], torch.stack([torch.lerp(x[0], x[2], 0.5), torch.lerp(x[1], x[3], 0.25)]))
    nxt = torch.tensor([4, 5, 2, 3, 2, 3])
    z = _interpolate(y, (torch.tensor([0]), torch.tensor([0.5], dtype=f64)), nxt, grown)
    assert z.data_ptr() == y.data_ptr() and torch.equal(z[:6], y)  # no copy of the old rows
    assert torch.equal(z[6], torch.lerp(x[0], y[4], 0.5))
    # y handed its spare rows to z: appending to y again, or to another view of the same
    # storage, must copy rather than overwrite z's last row
    before = z.clone()
    for other in (y, y.view(6, 3)):
        u = _interpolate(other, (torch.tensor([1]), torch.tensor([0.5], dtype=f64)), nxt, grown)
        assert u.data_ptr() != z.data_ptr() and torch.equal(z, before)
        assert torch.equal(u[:6], y) and torch.equal(u[6], torch.lerp(x[1], y[5], 0.5))


def test_the_list_walk_ranks_the_rows_as_pointer_jumping_does(backend, monkeypatch):
    _compiled_only(backend)
    from spacefold._core.walk import exact as ex

    net, x1, x2 = _relu_case(25, [3, 16, 16, 2], 9)
    seen, assemble = [], ex._assemble

    def check(state, records, n_paths):
        rank, path = ex._ranks(state)
        r2, p2, o2 = map(torch.from_numpy, _kernels.list_ranks(state.nxt.numpy(), state.n_paths))
        assert torch.equal(rank, r2) and torch.equal(path, p2)
        assert torch.equal(o2[rank], torch.arange(rank.numel()))
        seen.append(rank.numel())
        return assemble(state, records, n_paths)

    monkeypatch.setattr(ex.driver, "_assemble", check)
    exact_walks(net, x1, x2)
    assert seen and seen[0] > 4 * len(x1)
