"""Walks along segments: uniform and bisect (docs/method.md, 'Walks: three samplers') and the public entry points
``walk``, ``walk_batch``, ``folding``, ``folding_batch`` and ``folding_pairs``.

The oracles: the counterexample to bisection's ``hamming1`` stop rule (exact), single-hidden-layer networks never
fold (docs/method.md, 'The folding measure'), bias-free networks on antipodal segments (exact), and agreement of
bisection with a dense uniform grid.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import spacefold as sf
from spacefold._core import folding as folding_mod
from spacefold._core.walk import WalkBatch

PROPERTY = settings(max_examples=30, deadline=None)


def random_net(seed: int, sizes, act=nn.ReLU, bias: bool = True, dtype=torch.float64) -> nn.Sequential:
    g = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        lin = nn.Linear(sizes[i], sizes[i + 1], bias=bias).to(dtype)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(lin.weight.shape, generator=g, dtype=dtype))
            if bias:
                lin.bias.copy_(torch.randn(lin.bias.shape, generator=g, dtype=dtype))
        layers.append(lin)
        if i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


def random_points(seed: int, n: int, d: int, scale: float = 2.0, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(n, d, generator=g, dtype=dtype)


def bits(*words: str) -> torch.Tensor:
    return torch.tensor([[c == "1" for c in w] for w in words], dtype=torch.bool)


# --------------------------------------------------------------------------------------
# The counterexample to the hamming1 stop rule (docs/method.md, 'Walks: three samplers')
# --------------------------------------------------------------------------------------


def counterexample_net(dtype=torch.float64) -> nn.Sequential:
    """h1 = ReLU(t), h2 = ReLU(t − 1); c = ReLU(h1 − 2 h2 − 1/2), d = ReLU(h1 − 3)."""
    net = nn.Sequential(nn.Linear(1, 2), nn.ReLU(), nn.Linear(2, 2), nn.ReLU()).to(dtype)
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0], [1.0]]))
        net[0].bias.copy_(torch.tensor([0.0, -1.0]))
        net[2].weight.copy_(torch.tensor([[1.0, -2.0], [1.0, 0.0]]))
        net[2].bias.copy_(torch.tensor([-0.5, -3.0]))
    return net


X1, X2 = torch.tensor([0.25]), torch.tensor([2.0])
# t: 1/4 -> 2 crosses c = 0 at t = 1/2, h2 = 0 at t = 1, c = 0 at t = 3/2: s = 1/7, 3/7, 5/7
CROSSINGS = [1 / 7, 3 / 7, 5 / 7]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_counterexample_strict_bisect(dtype):
    net = counterexample_net(dtype)
    w = sf.walk(net, X1, X2, method="bisect")
    assert torch.equal(w.patterns, bits("1000", "1010", "1110", "1100"))
    assert w.t[0] == 0.0
    for t, crossing in zip(w.t[1:].tolist(), CROSSINGS):
        assert crossing < t <= crossing + 1e-6 + 1e-7
    f = sf.folding(net, X1, X2, method="bisect")
    assert (f.r1, f.r2, f.n_regions) == (2, 3, 4)
    assert f.chi == pytest.approx(1 / 3, abs=1e-15)
    assert f.profile.tolist() == pytest.approx([0.0, 0.0, 0.0, 1 / 3])


def test_counterexample_hamming1_misses_the_fold():
    net = counterexample_net()
    f = sf.folding(net, X1, X2, method="bisect", stop="hamming1")
    assert torch.equal(f.patterns, bits("1000", "1100"))
    assert f.chi == 0.0 and (f.r1, f.r2) == (1, 1)


def test_counterexample_uniform():
    net = counterexample_net()
    assert sf.folding(net, X1, X2, method="uniform", steps=100).chi == pytest.approx(1 / 3)
    assert torch.equal(sf.walk(net, X1, X2, method="uniform", steps=100).patterns, bits("1000", "1010", "1110", "1100"))
    # the endpoints alone (one step) see no fold
    assert sf.folding(net, X1, X2, method="uniform", steps=1).chi == 0.0


@pytest.mark.parametrize("method", ["bisect", "exact", "uniform"])
def test_counterexample_on_the_second_layer_alone(method):
    # Layer "3" alone sees (c, d) = 00 -> 10 -> 10 -> 00: a closed walk, chi = 1/2.
    # Its two ends share the subset pattern 00, so a bisection on the subset alone
    # would stop at once; the walk is made on every layer, then restricted.
    net = counterexample_net()
    kw = {"steps": 100} if method == "uniform" else {}
    f = sf.folding(net, X1, X2, method=method, layers=["3"], **kw)
    assert torch.equal(f.patterns, bits("00", "10", "00"))
    assert (f.r1, f.r2) == (1, 2) and f.chi == 0.5
    if method != "uniform":
        assert f.walk.t[1:].tolist() == pytest.approx(CROSSINGS[::2], abs=2e-6)


# --------------------------------------------------------------------------------------
# Uniform grid
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [1, 2, 10, 37])
def test_uniform_grid_points_and_merged_duplicates(steps):
    net = random_net(3, (2, 5, 5, 1))
    x1, x2 = random_points(4, 2, 2)
    w = sf.walk(net, x1, x2, method="uniform", steps=steps)
    assert w.method == "uniform"
    assert w.grid_index.shape == (steps + 1,)
    t = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
    grid = sf.activation_patterns(net, (1 - t)[:, None] * x1 + t[:, None] * x2)
    # every grid point maps to its region, and the regions are the grid's patterns merged
    assert torch.equal(w.patterns[w.grid_index], grid)
    gi = w.grid_index.tolist()
    assert gi[0] == 0 and gi[-1] == w.n_regions - 1
    assert all(b - a in (0, 1) for a, b in zip(gi, gi[1:]))
    if w.n_regions > 1:
        assert bool((w.patterns[1:] != w.patterns[:-1]).any(-1).all())
    first = [gi.index(k) for k in range(w.n_regions)]
    assert torch.equal(w.t, t[first])
    # the profile at every grid point is the profile of the unmerged grid walk (stability)
    f = sf.folding(net, x1, x2, method="uniform", steps=steps)
    assert torch.allclose(f.profile[w.grid_index], sf.chi_profile(grid), atol=1e-12, rtol=0)
    assert f.chi == sf.chi(grid)


# --------------------------------------------------------------------------------------
# Bisection against a dense uniform grid
# --------------------------------------------------------------------------------------

DENSE = 20000


def assert_agree_with_dense_grid(net, x1, x2, **bisect_kw) -> int:
    """Bisection and a dense grid give the same regions wherever the grid resolves them.

    Returns the number of segments compared (segments with a region narrower than
    3 grid steps are skipped: the grid may miss them).
    """
    wb = folding_mod.walk_batch(net, x1, x2, method="bisect", **bisect_kw)
    wu = folding_mod.walk_batch(net, x1, x2, method="uniform", steps=DENSE)
    compared = 0
    for b, u in zip(wb.walks(), wu.walks()):
        edges = torch.cat([b.t, torch.ones(1, dtype=torch.float64)])
        if b.n_regions > 1 and float((edges[1:] - edges[:-1]).min()) < 3 / DENSE:
            continue
        compared += 1
        assert torch.equal(b.patterns, u.patterns)
        assert sf.chi(b.patterns) == sf.chi(u.patterns)
        # bisection locates each transition between the grid's last point before it
        # and its first point after it (to within tol)
        for tb, tu in zip(b.t[1:].tolist(), u.t[1:].tolist()):
            assert tu - 1 / DENSE - 1e-12 < tb <= tu + 1e-6
    return compared


@PROPERTY
@given(st.integers(0, 10**6), st.integers(2, 3), st.integers(3, 6), st.integers(2, 3))
def test_bisect_agrees_with_dense_grid_relu(seed, d_in, width, depth):
    net = random_net(seed, (d_in,) + (width,) * depth + (1,))
    x = random_points(seed + 1, 8, d_in)
    assert_agree_with_dense_grid(net, x[:4], x[4:])
    # ReLU pattern classes are convex: a segment meets each pattern in one interval,
    # so no pattern occurs twice in a walk (docs/method.md, 'Walks: three samplers')
    for w in folding_mod.walk_batch(net, x[:4], x[4:], method="bisect").walks():
        assert torch.unique(w.patterns, dim=0).shape[0] == w.n_regions


def test_bisect_agrees_with_dense_grid_relu_compares_many():
    compared = 0
    for seed in range(5):
        net = random_net(seed, (2, 6, 6, 6, 1))
        x = random_points(seed + 7, 16, 2)
        compared += assert_agree_with_dense_grid(net, x[:8], x[8:])
    assert compared >= 30  # the check above is not vacuous


@PROPERTY
@given(st.integers(0, 10**6))
def test_bisect_agrees_with_dense_grid_tanh(seed):
    net = random_net(seed, (2, 4, 4, 1), act=nn.Tanh)
    x = random_points(seed + 1, 6, 2)
    assert_agree_with_dense_grid(net, x[:3], x[3:])
    # the default start grid for a smooth network is n0 = 1025
    default = folding_mod.walk_batch(net, x[:3], x[3:], method="bisect")
    explicit = folding_mod.walk_batch(net, x[:3], x[3:], method="bisect", n0=1025)
    assert torch.equal(default.patterns, explicit.patterns) and torch.equal(default.t, explicit.t)


def test_bisect_smooth_net_with_a_narrow_class():
    """z1 = 10 s − 5, z2 = 1 − 2 tanh(z1): patterns 01 (s < 1/2), 11, 10 (s > 1/2 + atanh(1/2)/10)."""
    net = nn.Sequential(nn.Linear(1, 1), nn.Tanh(), nn.Linear(1, 1), nn.Tanh()).double()
    with torch.no_grad():
        net[0].weight.fill_(10.0)
        net[0].bias.fill_(-5.0)
        net[2].weight.fill_(-2.0)
        net[2].bias.fill_(1.0)
    x1, x2 = torch.tensor([0.0], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64)
    f = sf.folding(net, x1, x2, method="bisect")
    g = sf.folding(net, x1, x2, method="uniform", steps=DENSE)
    assert torch.equal(f.patterns, bits("01", "11", "10"))
    assert torch.equal(f.patterns, g.patterns)
    assert f.walk.t[1:].tolist() == pytest.approx([0.5, 0.5 + math.atanh(0.5) / 10], abs=2e-6)
    assert f.chi == 0.0


# --------------------------------------------------------------------------------------
# Oracles that hold for every walker
# --------------------------------------------------------------------------------------


@PROPERTY
@given(
    st.integers(0, 10**6),
    st.integers(1, 4),
    st.integers(1, 12),
    st.integers(1, 3),
    st.sampled_from([nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.GELU]),
)
def test_single_hidden_layer_never_folds(seed, d_in, width, d_out, act):
    net = random_net(seed, (d_in, width, d_out), act=act)
    x = random_points(seed + 1, 12, d_in)
    for kw in ({"method": "uniform", "steps": 64}, {"method": "bisect"}, {"method": "bisect", "stop": "hamming1"}):
        b = sf.folding_batch(net, x[:6], x[6:], **kw)
        assert torch.equal(b.chi, torch.zeros(6, dtype=torch.float64))
        assert torch.equal(b.r1, b.r2)
        assert bool((b.n_regions <= width + 1).all())
    # one crossing per neuron: hamming1 misses no region here (docs/method.md, 'Walks: three samplers')
    strict = folding_mod.walk_batch(net, x[:6], x[6:], method="bisect")
    loose = folding_mod.walk_batch(net, x[:6], x[6:], method="bisect", stop="hamming1")
    assert torch.equal(strict.patterns, loose.patterns) and torch.equal(strict.offsets, loose.offsets)


def test_two_hidden_layers_do_fold():
    net = random_net(0, (2, 8, 8, 1))
    x = random_points(1, 200, 2)
    b = sf.folding_batch(net, x[:100], x[100:], method="bisect")
    assert bool((b.chi > 0).any())
    assert bool(((b.chi >= 0) & (b.chi < 1)).all())


@PROPERTY
@given(st.integers(0, 10**6), st.integers(1, 4), st.integers(2, 8), st.integers(1, 4))
def test_bias_free_antipodal_segment(seed, d_in, width, depth):
    """A bias-free ReLU net is positively homogeneous: on a -> −a the pattern is π(a)
    for t < 1/2 and π(−a) for t > 1/2; the point x = 0 (every z = 0) is no region."""
    net = random_net(seed, (d_in,) + (width,) * depth + (1,), bias=False)
    a = random_points(seed + 1, 1, d_in)[0]
    ends = sf.activation_patterns(net, torch.stack([a, -a]))
    expected = ends[:1] if torch.equal(ends[0], ends[1]) else ends
    for kw in ({"method": "bisect"}, {"method": "uniform", "steps": 101}):  # odd: no grid point at x = 0
        w = sf.walk(net, a, -a, **kw)
        assert torch.equal(w.patterns, expected)
        assert sf.folding(net, a, -a, **kw).chi == 0.0


# --------------------------------------------------------------------------------------
# The entry points agree with each other
# --------------------------------------------------------------------------------------

FIELDS = ("chi", "r1", "r2", "n_regions", "max_profile")


@pytest.mark.parametrize(
    "kw", [{"method": "uniform", "steps": 50}, {"method": "bisect"}, {"method": "bisect", "stop": "hamming1"}]
)
def test_folding_batch_equals_looping_folding(kw):
    net = random_net(11, (3, 6, 6, 2))
    x = random_points(12, 14, 3)
    x1, x2 = x[:7], x[7:]
    b = sf.folding_batch(net, x1, x2, batch_size=3, **kw)
    assert len(b) == 7 and b.method == kw["method"]
    for i in range(7):
        f = sf.folding(net, x1[i], x2[i], **kw)
        assert float(b.chi[i]) == f.chi
        assert (int(b.r1[i]), int(b.r2[i]), int(b.n_regions[i])) == (f.r1, f.r2, f.n_regions)
        assert float(b.max_profile[i]) == f.max_profile
    whole = sf.folding_batch(net, x1, x2, batch_size=1024, **kw)
    for name in FIELDS:
        assert torch.equal(getattr(whole, name), getattr(b, name))


@pytest.mark.parametrize("method", ["uniform", "bisect"])
def test_folding_pairs_equals_folding_batch(method):
    net = random_net(13, (3, 5, 5, 5, 2))
    x = random_points(14, 9, 3)
    g = torch.Generator().manual_seed(0)
    i = torch.randint(0, 9, (20,), generator=g)
    j = torch.randint(0, 9, (20,), generator=g)
    p = sf.folding_pairs(net, x, i, j, method=method, batch_size=6, per_layer=True)
    b = sf.folding_batch(net, x[i], x[j], method=method, per_layer=True)
    for name in FIELDS:
        assert torch.equal(getattr(p, name), getattr(b, name))
    assert p.per_layer.keys() == b.per_layer.keys()
    for name in p.per_layer:
        assert torch.equal(p.per_layer[name], b.per_layer[name])
    # plain lists of indices work too
    q = sf.folding_pairs(net, x, i.tolist(), j.tolist(), method=method)
    assert torch.equal(q.chi, p.chi)


@pytest.mark.parametrize("method", ["uniform", "bisect"])
def test_per_layer_is_chi_of_the_layer_columns(method):
    net = random_net(15, (2, 6, 5, 4, 1))
    x = random_points(16, 10, 2)
    b = sf.folding_batch(net, x[:5], x[5:], method=method, per_layer=True, return_walks=True, batch_size=2)
    assert b.layout.names == ["1", "3", "5"]
    assert set(b.per_layer) == {"1", "3", "5"}
    for k, w in enumerate(b.walks.walks()):
        for spec in b.layout.layers:
            assert float(b.per_layer[spec.name][k]) == pytest.approx(sf.chi(w.patterns[:, spec.slice]), abs=1e-15)
    only = sf.folding_batch(net, x[:5], x[5:], method=method, layers="3")
    assert torch.allclose(only.chi, b.per_layer["3"], atol=1e-15, rtol=0)


@pytest.mark.parametrize("kw", [{"method": "uniform", "steps": 30}, {"method": "bisect"}])
def test_return_walks_and_walk_batch(kw):
    net = random_net(17, (3, 6, 6, 1))
    x = random_points(18, 8, 3)
    b = sf.folding_batch(net, x[:4], x[4:], return_walks=True, batch_size=3, **kw)
    assert isinstance(b.walks, WalkBatch) and len(b.walks) == 4
    assert torch.equal(b.walks.n_regions, b.n_regions)
    wb = folding_mod.walk_batch(net, x[:4], x[4:], **kw)
    assert torch.equal(wb.patterns, b.walks.patterns) and torch.equal(wb.offsets, b.walks.offsets)
    for i in range(4):
        single = sf.walk(net, x[i], x[4 + i], **kw)
        got = b.walks[i]
        assert torch.equal(got.patterns, single.patterns) and torch.equal(got.t, single.t)
        assert float(b.chi[i]) == sf.chi(got.patterns)
    assert b.walks[-1].n_regions == int(b.n_regions[-1])
    with pytest.raises(IndexError):
        b.walks[4]
    assert sf.folding_batch(net, x[:4], x[4:], **kw).walks is None


@pytest.mark.parametrize("method", ["uniform", "bisect"])
def test_dtype_float64_leaves_the_model_untouched(method):
    net = random_net(19, (2, 6, 6, 1), dtype=torch.float32)
    net.train()
    before = copy.deepcopy(net.state_dict())
    x = random_points(20, 6, 2, dtype=torch.float32)
    b = sf.folding_batch(net, x[:3], x[3:], method=method, dtype=torch.float64)
    assert all(p.dtype == torch.float32 for p in net.parameters())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert net.training
    ref = sf.folding_batch(copy.deepcopy(net).double(), x[:3].double(), x[3:].double(), method=method)
    for name in FIELDS:
        assert torch.equal(getattr(b, name), getattr(ref, name))


def test_walk_on_other_input_shapes_and_devices_of_inputs():
    """Inputs with several dimensions and integer inputs follow the model's dtype."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 3 * 3, 4), nn.ReLU())
    x1, x2 = torch.randn(1, 5, 5), torch.randn(1, 5, 5)
    f = sf.folding(net, x1, x2, method="bisect")
    grid = sf.folding(net, x1, x2, method="uniform", steps=4000)
    assert f.chi == pytest.approx(grid.chi) and f.n_regions == grid.n_regions
    xi1, xi2 = torch.zeros(3, dtype=torch.int64), torch.tensor([2, -1, 3])
    net2 = random_net(21, (3, 5, 5, 1), dtype=torch.float32)
    assert (
        sf.folding(net2, xi1, xi2, method="bisect").chi
        == sf.folding(net2, xi1.float(), xi2.float(), method="bisect").chi
    )


def max_pool_fold_net() -> nn.Sequential:
    """a = ReLU(s + 1), b = ReLU(1 − s), m = max(a, b) = 1 + |s| on (−1, 1), c = ReLU(m − 3/2).

    Every activation is a ReLU, yet the class 111 is not convex: on s: −0.9 -> 0.9
    the patterns are 111 -> 110 -> 111 (χ = 1/2) while the endpoints agree.
    """
    net = nn.Sequential(
        nn.Linear(1, 2), nn.ReLU(), nn.Unflatten(1, (1, 2)), nn.MaxPool1d(2), nn.Flatten(), nn.Linear(1, 1), nn.ReLU()
    ).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0], [-1.0]]))
        net[0].bias.copy_(torch.tensor([1.0, 1.0]))
        net[5].weight.fill_(1.0)
        net[5].bias.fill_(-1.5)
    return net


def test_default_start_grid():
    from spacefold._core.walk.bisect import default_n0

    assert default_n0(random_net(0, (2, 4, 4, 1))) == 2
    assert default_n0(random_net(0, (2, 4, 4, 1), act=nn.LeakyReLU)) == 2
    assert default_n0(random_net(0, (2, 4, 4, 1), act=nn.Tanh)) == 1025
    assert default_n0(random_net(0, (2, 4, 4, 1), act=nn.Hardtanh)) == 1025
    assert default_n0(max_pool_fold_net()) == 1025
    # a smooth activation outside the selected layers still bends the ReLU classes
    mixed = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 4), nn.ReLU())
    assert default_n0(mixed) == 1025


def test_bisect_on_max_pooling_starts_from_a_grid():
    net = max_pool_fold_net()
    x1, x2 = torch.tensor([-0.9], dtype=torch.float64), torch.tensor([0.9], dtype=torch.float64)
    f = sf.folding(net, x1, x2, method="bisect")
    assert torch.equal(f.patterns, bits("111", "110", "111"))
    assert f.chi == 0.5
    assert torch.equal(sf.walk(net, x1, x2, method="uniform", steps=100).patterns, f.patterns)
    # from the endpoints alone, bisection cannot see the fold
    assert sf.folding(net, x1, x2, method="bisect", n0=2).chi == 0.0


def test_n_pieces_leaves_out_the_zero_length_regions_at_the_end_points():
    # ReLU(x), ReLU(-x), ReLU(x - 1/2) on the segment 0 -> 1: x = 0 is on the boundary of the first two
    # (pattern 000 at t = 0 itself, 100 just after it), x = 1/2 crosses the third: regions 000 | 100 | 101,
    # entered at t = 0, 0, 1/2; two of positive length. Backwards, 1 -> 0 ends on the boundary.
    import spacefold as sf

    net = nn.Sequential(nn.Linear(1, 3), nn.ReLU()).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0], [-1.0], [1.0]]))
        net[0].bias.copy_(torch.tensor([0.0, 0.0, -0.5]))
    a, b = torch.tensor([0.0], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64)
    w = sf.walk(net, a, b)
    assert w.t.tolist() == [0.0, 0.0, 0.5] and w.n_regions == 3 and w.n_pieces == 2
    back = sf.walk(net, b, a)
    assert back.t.tolist() == [0.0, 0.5, 1.0] and back.n_regions == 3 and back.n_pieces == 2
    assert sf.folding(net, a, b).n_pieces == 2
    inner = sf.walk(net, torch.tensor([0.25], dtype=torch.float64), b)  # no end on a boundary
    assert inner.n_regions == inner.n_pieces == 2
    fb = sf.folding_batch(net, torch.stack([a, b, a + 0.25]), torch.stack([b, a, b]), return_walks=True)
    assert fb.n_regions.tolist() == [3, 3, 2] and fb.walks.n_pieces.tolist() == [2, 2, 2]
    # the grid of method="uniform" includes t = 0 as well: the region of t = 0 alone is counted, and its
    # length is a grid step (the sampler does not see where it ends)
    u = sf.walk(net, a, b, method="uniform", steps=4)
    assert u.n_regions == 3 and u.patterns[0].tolist() == [False, False, False]
