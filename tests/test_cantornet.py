"""CantorNet (docs/method.md, 'CantorNet'): construction, exact geometry, and the 11-point oracle."""

from __future__ import annotations

import functools
import importlib.util
import random
from fractions import Fraction

import pytest
import torch
from torch import nn

import spacefold as sf
from spacefold._core.measure import distance_to_start, step_distances
from spacefold._core.patterns import PatternRecorder
from spacefold.models.cantornet import (
    DEFAULT_END,
    DEFAULT_START,
    MAX_DEPTH,
    TIE_TOL,
    boundary_hyperplanes,
    cantornet,
    code_length,
    decision_boundary_vertices,
    exact_output,
    exact_pattern,
    exact_preactivations,
    exact_walk,
    exact_weights,
    recursion_A,
    stage_shapes,
    tie_tolerance,
)
from spacefold.testing import is_subsequence

X1 = torch.tensor([0.0, 0.75], dtype=torch.float64)
X2 = torch.tensor([1.0, 0.75], dtype=torch.float64)
DEPTHS = [1, 2, 3, 4, 5]
REPS = ["A", "B", "C"]
ALL = [(r, k) for r in REPS for k in DEPTHS]

CODE_LENGTH = {"A": [6, 11, 16, 21, 26], "B": [12, 14, 24, 42, 76], "C": [14, 17, 29, 51, 93]}

STAGE_SHAPES = {
    "B": {
        1: [(3,), (5, 3), (3, 5), (3,)],
        2: [(4,), (6, 4), (3, 6), (3,)],
        3: [(6,), (9, 6), (5, 9), (3, 5), (3,)],
        4: [(10,), (15, 10), (8, 15), (5, 8), (3, 5), (3,)],
        5: [(18,), (27, 18), (14, 27), (8, 14), (5, 8), (3, 5), (3,)],
    },
    "C": {
        1: [(3,), (6, 3), (4, 6), (4,)],
        2: [(4,), (8, 4), (4, 8), (4,)],
        3: [(6,), (12, 6), (6, 12), (4, 6), (4,)],
        4: [(10,), (20, 10), (10, 20), (6, 10), (4, 6), (4,)],
        5: [(18,), (36, 18), (18, 36), (10, 18), (6, 10), (4, 6), (4,)],
    },
}

# docs/method.md, 'CantorNet': δ (to start), e (consecutive), r1, r2, χ on the 11-point grid
ORACLE = {
    ("A", 1): ([0, 1, 1, 3, 3, 3, 3, 3, 2, 2], [0, 1, 0, 2, 0, 0, 2, 0, 1, 0], 3, 6, 0.5),
    ("A", 2): ([1, 3, 2, 4, 4, 4, 4, 5, 3, 2], [1, 2, 3, 2, 0, 0, 2, 3, 2, 1], 5, 16, 0.6875),
    ("A", 3): ([2, 4, 3, 4, 4, 4, 5, 6, 4, 2], [2, 2, 5, 3, 0, 0, 3, 5, 2, 2], 6, 24, 0.75),
    ("A", 4): ([3, 4, 4, 4, 4, 4, 6, 6, 5, 2], [3, 3, 6, 4, 0, 0, 4, 6, 3, 3], 6, 32, 0.8125),
    ("A", 5): ([4, 4, 5, 4, 4, 4, 7, 6, 6, 2], [4, 4, 7, 5, 0, 0, 5, 7, 4, 4], 7, 40, 0.825),
    ("B", 1): ([0, 2, 2, 3, 3, 3, 4, 4, 6, 6], [0, 2, 0, 1, 0, 0, 1, 0, 4, 0], 6, 8, 0.25),
    ("B", 2): ([2, 3, 6, 6, 6, 6, 6, 3, 5, 6], [2, 1, 5, 0, 0, 0, 0, 5, 2, 3], 6, 18, 0.6667),
    ("B", 3): ([6, 6, 4, 6, 6, 6, 5, 9, 9, 7], [6, 0, 6, 4, 0, 0, 5, 6, 0, 8], 9, 35, 0.7429),
    ("B", 4): ([4, 5, 7, 8, 8, 9, 11, 11, 8, 10], [4, 3, 4, 5, 0, 1, 4, 10, 5, 6], 11, 42, 0.7381),
    ("B", 5): ([7, 8, 7, 11, 11, 12, 12, 17, 19, 17], [7, 5, 7, 6, 0, 1, 6, 7, 4, 10], 19, 53, 0.6415),
    ("C", 1): ([0, 2, 2, 4, 4, 4, 6, 6, 7, 7], [0, 2, 0, 2, 0, 0, 2, 0, 3, 0], 7, 9, 0.2222),
    ("C", 2): ([2, 4, 6, 6, 6, 6, 6, 4, 8, 8], [2, 2, 4, 0, 0, 0, 0, 4, 4, 2], 8, 18, 0.5556),
    ("C", 3): ([6, 6, 6, 7, 7, 7, 8, 11, 11, 10], [6, 0, 6, 3, 0, 0, 5, 5, 0, 7], 11, 32, 0.65625),
    ("C", 4): ([6, 6, 8, 10, 10, 12, 14, 16, 14, 16], [6, 2, 4, 4, 0, 2, 4, 8, 4, 8], 16, 42, 0.6190),
    ("C", 5): ([8, 10, 12, 16, 16, 18, 22, 26, 28, 30], [8, 4, 8, 6, 0, 2, 6, 6, 4, 8], 30, 52, 0.4231),
}

# docs/method.md, 'CantorNet': prefix profiles χ_j at the steps 0.1 ... 1.0
PROFILE = {
    ("A", 1): [0, 0, 0, 0, 0, 0, 0.4, 0.4, 0.5, 0.5],
    ("A", 2): [0, 0, 0.5, 0.5, 0.5, 0.5, 0.6, 0.6154, 0.6667, 0.6875],
    ("A", 3): [0, 0, 0.5556, 0.6667, 0.6667, 0.6667, 0.6667, 0.7, 0.7273, 0.75],
    ("A", 4): [0, 0.3333, 0.6667, 0.75, 0.75, 0.75, 0.7, 0.7692, 0.7931, 0.8125],
    ("A", 5): [0, 0.5, 0.6667, 0.75, 0.75, 0.75, 0.72, 0.7812, 0.8056, 0.825],
    ("B", 1): [0, 0, 0, 0, 0, 0, 0, 0, 0.25, 0.25],
    ("B", 2): [0, 0, 0.25, 0.25, 0.25, 0.25, 0.25, 0.5385, 0.6, 0.6667],
    ("B", 3): [0, 0, 0.5, 0.625, 0.625, 0.625, 0.7143, 0.6667, 0.6667, 0.7429],
    ("B", 4): [0, 0.2857, 0.3636, 0.5, 0.5, 0.4706, 0.4762, 0.6452, 0.6944, 0.7381],
    ("B", 5): [0, 0.3333, 0.5789, 0.56, 0.56, 0.5385, 0.625, 0.5641, 0.5581, 0.6415],
    ("C", 1): [0, 0, 0, 0, 0, 0, 0, 0, 0.2222, 0.2222],
    ("C", 2): [0, 0, 0.25, 0.25, 0.25, 0.25, 0.25, 0.5, 0.5, 0.5556],
    ("C", 3): [0, 0, 0.5, 0.5333, 0.5333, 0.5333, 0.6, 0.56, 0.56, 0.6562],
    ("C", 4): [0, 0.25, 0.3333, 0.375, 0.375, 0.3333, 0.3636, 0.4667, 0.5294, 0.619],
    ("C", 5): [0, 0.1667, 0.4, 0.3846, 0.3846, 0.3571, 0.3529, 0.35, 0.3636, 0.4231],
}


def _approx4(values, expected):
    """Equal to the oracle's 4 decimals (the oracle rounds half up, e.g. .65625)."""
    return all(abs(float(v) - e) <= 5e-5 + 1e-12 for v, e in zip(values, expected)) and len(values) == len(expected)


def _grid_walk(net, steps=10, tie_tol=None):
    tol = net.tie_tol if tie_tol is None else tie_tol
    w = sf.walk(net, X1, X2, method="uniform", steps=steps, tie_tol=tol)
    return w, w.patterns[w.grid_index]


@functools.cache
def _exact_z(k, rep, n):
    """Exact pre-activations at the n + 1 grid points of the default path (cached)."""
    return tuple(tuple(exact_preactivations((Fraction(j, n), Fraction(3, 4)), k, rep)) for j in range(n + 1))


def _exact_grid(k, rep, n):
    return torch.tensor([[v > 0 for v in row] for row in _exact_z(k, rep, n)])


# --------------------------------------------------------------------------- construction


@pytest.mark.parametrize("rep,k", ALL)
def test_code_length(rep, k):
    net = sf.cantornet(depth=k, representation=rep)
    m = CODE_LENGTH[rep][k - 1]
    x = torch.rand(7, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(k))
    assert sf.activation_patterns(net, x).shape == (7, m)
    assert net.n_neurons == m == code_length(k, rep)
    assert len(exact_pattern((0, Fraction(3, 4)), k, rep)) == m
    assert net(x).shape == (7, 1)
    # every ReLU'd layer is its own nn.ReLU module, the output neuron last
    relus = [name for name, mod in net.named_modules() if isinstance(mod, nn.ReLU)]
    assert relus[-1] == "body.relu_out"
    assert len(relus) == (2 * k + 1 if rep == "A" else len(stage_shapes(k, rep)))


@pytest.mark.parametrize("rep,k", [(r, k) for r in "BC" for k in DEPTHS])
def test_stage_shapes(rep, k):
    shapes = stage_shapes(k, rep)
    assert shapes == STAGE_SHAPES[rep][k]
    net = cantornet(k, rep)
    mins = [m.weight.shape for name, m in net.body.named_children() if name.startswith("min")]
    assert [tuple(s) for s in mins] == shapes[1:-1]
    assert tuple(net.body.out.weight.shape) == (1,) + shapes[-1]
    assert net.body.shape.n_out == shapes[0][0]


def test_stage_shapes_of_a_is_an_error():
    with pytest.raises(ValueError, match="'B' and 'C'"):
        stage_shapes(2, "A")


def test_boundary_vertices_k1_k2():
    F = Fraction
    h = F(1, 2)
    assert decision_boundary_vertices(1) == [(F(0), F(1)), (F(1, 3), h), (F(2, 3), h), (F(1), F(1))]
    xs = [F(0), F(1, 9), F(2, 9), F(1, 3), F(2, 3), F(7, 9), F(8, 9), F(1)]
    ys = [1, h, h, 1, 1, h, h, 1]
    assert decision_boundary_vertices(2) == list(zip(xs, [F(y) for y in ys]))
    assert all(isinstance(c, Fraction) for v in decision_boundary_vertices(2) for c in v)


@pytest.mark.parametrize("k", DEPTHS)
def test_boundary_is_the_graph_of_the_recursion(k):
    """Vertices and edge midpoints lie on y = (A^(k)(x) + 1)/2: the boundary is that graph."""
    v = decision_boundary_vertices(k)
    assert len(v) == 2 ** (k + 1)
    assert [x for x, _ in v] == sorted(x for x, _ in v)
    for x, y in v:
        assert y == (recursion_A(x, k) + 1) / 2
    for (xa, ya), (xb, yb) in zip(v[:-1], v[1:]):
        xm = (xa + xb) / 2
        assert (ya + yb) / 2 == (recursion_A(xm, k) + 1) / 2
    for (a, b, c), ((xa, ya), (xb, yb)) in zip(boundary_hyperplanes(k), zip(v[:-1], v[1:])):
        assert a * xa + b * ya + c == 0 and a * xb + b * yb + c == 0 and b > 0  # positive above


@pytest.mark.parametrize("rep,k", ALL)
def test_weights_are_the_exact_ones(rep, k):
    """The float64 weights are the exact rationals rounded once, and the float
    pre-activations agree with the independent exact evaluator."""
    net = cantornet(k, rep)
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    exact = exact_weights(k, rep)
    assert len(linears) == len(exact)
    for lin, (w, b) in zip(linears, exact):
        assert torch.equal(lin.weight, torch.tensor([[float(v) for v in row] for row in w], dtype=torch.float64))
        if b is None:
            assert lin.bias is None
        else:
            assert torch.equal(lin.bias, torch.tensor([float(v) for v in b], dtype=torch.float64))
    rng = random.Random(100 * k + ord(rep))
    pts = [(Fraction(rng.randint(0, 997), 997), Fraction(rng.randint(0, 991), 991)) for _ in range(20)]
    x = torch.tensor([[float(a), float(b)] for a, b in pts], dtype=torch.float64)
    rec = PatternRecorder(net)
    with rec, torch.no_grad():
        out = net(x)
    z = torch.tensor([[float(v) for v in exact_preactivations(p, k, rep)] for p in pts], dtype=torch.float64)
    assert torch.allclose(rec.scores(), z, rtol=0, atol=1e-12)
    ref = torch.tensor([[float(exact_output(p, k, rep))] for p in pts], dtype=torch.float64)
    assert torch.allclose(out, ref, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- decision manifold


@pytest.mark.parametrize("rep,k", ALL)
def test_decision_manifold(rep, k):
    """Output > 0 iff y > (A^(k)(x) + 1)/2, exactly (exact evaluator) and in float64."""
    rng = random.Random(7 * k + ord(rep))
    pts = [(Fraction(rng.randint(0, 3**7), 3**7), Fraction(rng.randint(0, 2000), 2000)) for _ in range(150)]
    # points right on the boundary too: output 0 there
    pts += [(x, (recursion_A(x, k) + 1) / 2) for x, _ in pts[:20]]
    above = [y > (recursion_A(x, k) + 1) / 2 for x, y in pts]
    assert any(above) and not all(above)
    assert [exact_output(p, k, rep) > 0 for p in pts] == above
    net = cantornet(k, rep)
    x = torch.tensor([[float(a), float(b)] for a, b in pts], dtype=torch.float64)
    out = net(x).squeeze(1)
    assert ((out > net.tie_tol).tolist()) == above


# --------------------------------------------------------------------------- docs/method.md, 'CantorNet' oracle


@pytest.mark.parametrize("rep,k", ALL)
def test_oracle_11_point_grid(rep, k):
    net = sf.cantornet(depth=k, representation=rep)
    delta, e, r1, r2, chi = ORACLE[(rep, k)]
    w, grid = _grid_walk(net)
    assert grid.shape == (11, CODE_LENGTH[rep][k - 1])
    assert distance_to_start(grid)[1:].tolist() == delta
    assert step_distances(grid).tolist() == e
    assert sf.ranges(grid) == (r1, r2)
    assert _approx4([sf.chi(grid)], [chi])
    f = sf.folding(net, X1, X2, method="uniform", steps=10, tie_tol=net.tie_tol)
    assert (f.r1, f.r2) == (r1, r2)
    assert _approx4([f.chi], [chi])
    assert f.n_regions == w.n_regions
    assert _approx4(f.profile[w.grid_index][1:].tolist(), PROFILE[(rep, k)])
    assert _approx4(sf.chi_profile(grid)[1:].tolist(), PROFILE[(rep, k)])
    # the exact rational patterns give the same grid walk
    assert torch.equal(grid, _exact_grid(k, rep, 10))


@pytest.mark.parametrize("rep,k", [(r, k) for r in "AB" for k in DEPTHS])
def test_a_and_b_need_no_tie_tolerance(rep, k):
    """docs/method.md, 'CantorNet': A and B evaluate stably in float64, on the oracle grid and a dense one."""
    net = cantornet(k, rep)
    for n in (10, 2000):
        _, grid = _grid_walk(net, steps=n, tie_tol=0.0)
        assert torch.equal(grid, _exact_grid(k, rep, n))


@pytest.mark.parametrize("k", DEPTHS)
def test_a_folds_more_than_b_more_than_c(k):
    """docs/method.md, 'CantorNet': at t = 1, A > B > C for every depth."""
    chis = [sf.folding(cantornet(k, r), X1, X2, method="uniform", steps=10, tie_tol=TIE_TOL).chi for r in REPS]
    assert chis[0] > chis[1] > chis[2]


# --------------------------------------------------------------------------- ties and float64


@pytest.mark.parametrize("rep,k", ALL)
def test_tie_tolerance_gives_the_exact_patterns(rep, k):
    """With net.tie_tol, float64 patterns equal the exact rational ones on the
    11-point grid and on a 2001-point grid."""
    net = cantornet(k, rep)
    assert net.tie_tol == TIE_TOL == tie_tolerance(torch.float64)
    for n in (10, 2000):
        _, grid = _grid_walk(net, steps=n)
        assert torch.equal(grid, _exact_grid(k, rep, n))


def test_c_flickers_without_tie_tolerance():
    """Without a tie tolerance, representation C disagrees with exact arithmetic on a
    dense grid, and only at neurons whose exact pre-activation is 0 (float residues)."""
    n = 2000
    flicker = 0
    for k in DEPTHS:
        net = cantornet(k, "C")
        _, grid = _grid_walk(net, steps=n, tie_tol=0.0)
        z = _exact_z(k, "C", n)
        exact = _exact_grid(k, "C", n)
        for i, j in (grid != exact).nonzero().tolist():
            assert z[i][j] == 0, "a float64 bit differs from exact arithmetic away from an exact zero"
            flicker += 1
    assert flicker > 0


def test_float32_on_the_oracle_grid():
    """float32 nets carry a coarser tolerance that still reproduces the 11-point oracle."""
    for rep in REPS:
        for k in DEPTHS:
            net = cantornet(k, rep, dtype=torch.float32)
            assert net.body.out.weight.dtype == torch.float32
            assert net.tie_tol == tie_tolerance(torch.float32) > TIE_TOL
            assert net.to(torch.float64).tie_tol == TIE_TOL
            net = net.to(torch.float32)
            f = sf.folding(net, X1.float(), X2.float(), method="uniform", steps=10, tie_tol=net.tie_tol)
            assert (f.r1, f.r2) == ORACLE[(rep, k)][2:4]


# --------------------------------------------------------------------------- walkers on CantorNet


@pytest.mark.parametrize("rep,k", [(r, k) for r in "ABC" for k in [1, 2, 3, 4]])
def test_bisect_agrees_with_a_dense_grid(rep, k):
    """Strict bisection finds at least the regions of the 11-point grid, and its walk
    measures agree with a 20001-point uniform grid under the same tie tolerance."""
    net = cantornet(k, rep)
    b = sf.folding(net, X1, X2, method="bisect", stop="strict", tol=1e-9, tie_tol=net.tie_tol)
    grid11 = sf.folding(net, X1, X2, method="uniform", steps=10, tie_tol=net.tie_tol)
    dense = sf.folding(net, X1, X2, method="uniform", steps=20000, tie_tol=net.tie_tol)
    assert b.n_regions >= grid11.n_regions
    assert (b.r1, b.r2) == (dense.r1, dense.r2)
    assert b.chi == pytest.approx(dense.chi, abs=1e-12)
    if rep in "AB":
        # every region once: no pattern recurs along the walk of a ReLU network
        assert b.n_regions == dense.n_regions
        assert torch.equal(b.patterns, dense.patterns)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"depth": 0}, ValueError, "depth"),
        ({"depth": MAX_DEPTH + 1}, ValueError, "depth"),
        ({"depth": -2}, ValueError, "depth"),
        ({"depth": 2.0}, TypeError, "depth"),
        ({"depth": "3"}, TypeError, "depth"),
        ({"depth": True}, TypeError, "depth"),
        ({"depth": 2, "representation": "D"}, ValueError, "representation"),
        ({"depth": 2, "representation": ""}, ValueError, "representation"),
        ({"depth": 2, "representation": 1}, TypeError, "representation"),
        ({"depth": 2, "dtype": torch.int64}, TypeError, "dtype"),
        ({"depth": 2, "dtype": "float64"}, TypeError, "dtype"),
    ],
)
def test_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        sf.cantornet(**kwargs)


def test_representation_is_case_insensitive():
    net = sf.cantornet(depth=2, representation="c")
    assert net.representation == "C" and net.n_neurons == 17


def test_exact_evaluator_validates_points():
    with pytest.raises(ValueError, match="finite"):
        exact_pattern((float("nan"), 0.5), 1, "A")
    with pytest.raises(ValueError, match="pair"):
        exact_pattern((0.1, 0.2, 0.3), 1, "A")
    with pytest.raises(TypeError, match="pair"):
        exact_pattern(0.5, 1, "A")
    assert exact_pattern((0.5, 0.75), 1, "a") == exact_pattern((Fraction(1, 2), Fraction(3, 4)), 1, "A")


HAS_EXACT = importlib.util.find_spec("spacefold._core.walk.exact") is not None

SEGMENTS = [
    ((Fraction(0), Fraction(0)), (Fraction(1), Fraction(1))),
    ((Fraction(1, 10), Fraction(9, 10)), (Fraction(9, 10), Fraction(1, 5))),
    ((Fraction(0), Fraction(3, 5)), (Fraction(1), Fraction(7, 10))),
    ((Fraction(1, 2), Fraction(0)), (Fraction(1, 2), Fraction(1))),
]


def _check_against_reference(net, start, end, steps=20000):
    """The float walkers against the rational reference walk Γ* of the segment."""
    ts, pats = exact_walk(net.depth, net.representation, start, end)
    ref = torch.tensor(pats)
    x1 = torch.tensor([float(v) for v in start], dtype=torch.float64)
    x2 = torch.tensor([float(v) for v in end], dtype=torch.float64)
    u = sf.walk(net, x1, x2, method="uniform", steps=steps, tie_tol=net.tie_tol)
    assert torch.equal(u.patterns, ref)
    b = sf.walk(net, x1, x2, method="bisect", tol=1e-9, tie_tol=net.tie_tol)
    if net.representation == "C":
        # the tie tolerance moves simultaneous crossings apart by ~1e-9/slope in t:
        # bisection may stop inside such slivers; they lie between the true regions
        assert sf.ranges(b.patterns) == sf.ranges(ref)
        assert is_subsequence(ref, b.patterns)
    else:
        assert torch.equal(b.patterns, ref)
    if HAS_EXACT:
        e = sf.walk(net, x1, x2, method="exact", tie_tol=net.tie_tol)
        assert torch.equal(e.patterns, ref)
        t_ref = torch.tensor([float(t) for t in ts], dtype=torch.float64)
        assert torch.allclose(e.t, t_ref, rtol=0, atol=1e-7)  # crossings at z = tie_tol, not 0
    return ref


@pytest.mark.parametrize("rep,k", ALL)
def test_walkers_find_the_exact_reference_walk(rep, k):
    """Uniform (20001 points), strict bisection and the exact walker all give the
    region walk Γ* computed in rational arithmetic (docs/method.md, 'The exact walk' and 'CantorNet')."""
    ts, pats = exact_walk(k, rep)
    assert ts[0] == 0 and all(a < b for a, b in zip(ts, ts[1:])) and ts[-1] <= 1
    ref = _check_against_reference(cantornet(k, rep), DEFAULT_START, DEFAULT_END)
    # the 11-point grid under-samples (docs/method.md, 'Walks: three samplers'): it sees a subsequence of Γ*
    merged = sf.walk(cantornet(k, rep), X1, X2, method="uniform", steps=10, tie_tol=TIE_TOL).patterns
    assert is_subsequence(merged, ref) and len(merged) <= len(ref)


@pytest.mark.parametrize("rep", REPS)
@pytest.mark.parametrize("segment", SEGMENTS, ids=["diagonal", "descending", "oblique", "vertical"])
def test_walkers_on_other_segments(rep, segment):
    _check_against_reference(cantornet(3, rep), *segment)
