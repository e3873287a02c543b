"""The exact walk at its edges: operations it must refuse, exact zeros, simultaneous and
chained crossings, float32 resolution, max pooling near arg-max ties, overflow, the
certificate of :func:`spacefold.verify`, and an unwritable Numba cache."""

from __future__ import annotations

import copy
import os

import pytest
import torch
from torch import nn

from spacefold._core.measure import summarize
from spacefold._core.walk.exact import ExactWalkBatch, NotPiecewiseLinearError, exact_walks
from spacefold.errors import InputError, InputTypeError

f64 = torch.float64


@pytest.fixture(autouse=True, params=["compiled", "torch"])
def backend(request, monkeypatch):
    """Every test runs on the compiled kernels and on the plain torch operations."""
    monkeypatch.setenv("SPACEFOLD_NUMBA", "1" if request.param == "compiled" else "0")
    return request.param


# --------------------------------------------------------------------------- the op table


class _Wrap(nn.Module):
    def __init__(self, f):
        super().__init__()
        self.lin = nn.Linear(2, 3)
        self.relu = nn.ReLU()
        self.f = f
        self.register_buffer("c", torch.tensor([1.0, 2.0, 3.0]))

    def forward(self, x):
        return self.relu(self.f(self, self.lin(x)))


_NOT_AFFINE = {
    "reciprocal": (lambda m, h: 1.0 / (h + 1), "division by an input-dependent"),
    "div by a tensor": (lambda m, h: torch.div(m.c, h), "division by an input-dependent"),
    "method div by a tensor": (lambda m, h: m.c.div(h), "division by an input-dependent"),
    "floor division": (lambda m, h: torch.div(h, m.c, rounding_mode="floor"), "rounding_mode='floor'"),
    "trunc division": (lambda m, h: h.div(2.0, rounding_mode="trunc"), "rounding_mode='trunc'"),
    "floordiv operator": (lambda m, h: h // 2, "floordiv"),
    "remainder": (lambda m, h: h % 2, "mod"),
    "integer cast": (lambda m, h: h.to(torch.int64).to(h.dtype), "casting to torch.int64"),
    "integer sum": (lambda m, h: h + h.sum(1, keepdim=True, dtype=torch.int64), "casting to torch.int64"),
    "floor": (lambda m, h: torch.floor(h), "floor"),
    "round": (lambda m, h: h.round(), "round"),
    "pow": (lambda m, h: h**2, "pow"),
    "abs": (lambda m, h: h.abs(), "abs"),
    "clamp": (lambda m, h: torch.clamp(h, 0, 1), "clamp"),
    "comparison": (lambda m, h: h * (h > 0), "gt"),
    "maximum": (lambda m, h: torch.maximum(h, m.c), "maximum"),
    "sign": (lambda m, h: torch.sign(h) + h, "sign"),
}


@pytest.mark.parametrize("case", sorted(_NOT_AFFINE))
def test_operations_that_are_not_affine_are_refused(case):
    f, match = _NOT_AFFINE[case]
    with pytest.raises(NotPiecewiseLinearError, match=match) as info:
        exact_walks(_Wrap(f), torch.zeros(1, 2), torch.ones(1, 2))
    assert isinstance(info.value, InputTypeError) and isinstance(info.value, TypeError)


_AFFINE = {
    "divide by a constant tensor": lambda m, h: h / m.c,
    "divide by a size": lambda m, h: h / h.size(1),
    "method div by a number": lambda m, h: h.div(2.0),
    "product with a constant": lambda m, h: 2 * h * m.c,
    "centring": lambda m, h: h.view(h.size(0), -1) - h.mean(1, keepdim=True),
    "slice by a computed size": lambda m, h: h[:, : h.size(1) // 2 + 1].sum(1, keepdim=True) + h,
}


@pytest.mark.parametrize("case", sorted(_AFFINE))
def test_affine_operations_are_walked_exactly(case):
    torch.manual_seed(0)
    net = _Wrap(_AFFINE[case]).double()
    x1, x2 = torch.randn(5, 2, dtype=f64) * 3, torch.randn(5, 2, dtype=f64) * 3
    w = exact_walks(net, x1, x2)
    # the walk is the dense one, every region found (the regions are wide: 20001 points see them all)
    from spacefold import activation_patterns

    t = torch.linspace(0, 1, 20001, dtype=f64)
    for i in range(5):
        pts = (1 - t)[:, None] * x1[i] + t[:, None] * x2[i]
        p = activation_patterns(net, pts)
        keep = torch.ones(len(p), dtype=torch.bool)
        keep[1:] = (p[1:] != p[:-1]).any(1)
        assert torch.equal(w[i].patterns, p[keep])


# --------------------------------------------------------------------------- an unwritable Numba cache

_NO_CACHE_SCRIPT = """
import warnings
import numba.core.caching as caching
{patch}
import torch
from spacefold._core.walk import _kernels
from spacefold._core.walk.exact import exact_walks
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8), torch.nn.ReLU())
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    w = exact_walks(net, torch.zeros(3, 2), torch.ones(3, 2) * 4)
    w2 = exact_walks(net, -torch.ones(3, 2), torch.ones(3, 2) * 4)
print("kernels", _kernels.available())
print("warnings", sum("cache" in str(c.message) for c in caught))
print("walks", len(w), len(w2))
"""


def test_kernels_are_compiled_without_a_cache_where_numba_has_no_place_for_it(backend, monkeypatch):
    pytest.importorskip("numba")
    if backend != "compiled":
        pytest.skip("concerns the compiled kernels")
    import numba.core.caching as caching

    from spacefold._core.walk import _jit

    monkeypatch.setattr(caching.CacheImpl, "_locator_classes", [])
    monkeypatch.setattr(_jit, "_UNCACHED", [])

    def twice(x):
        return 2 * x

    kernel = _jit.jit(twice)
    assert kernel(21) == 42
    assert len(_jit._UNCACHED) == 1 and "no locator" in _jit._UNCACHED[0]


@pytest.mark.slow  # compiles every kernel from scratch in a fresh process (a minute or more)
@pytest.mark.parametrize("how", ["no locator", "unwritable NUMBA_CACHE_DIR"])
def test_an_unwritable_numba_cache_compiles_without_caching_with_one_warning(backend, how, tmp_path):
    import os
    import subprocess
    import sys

    pytest.importorskip("numba")
    if backend != "compiled":
        pytest.skip("concerns the compiled kernels")
    env = dict(os.environ, SPACEFOLD_NUMBA="1")
    if how == "no locator":  # what Numba meets with a read-only package directory and an unwritable HOME
        patch = "caching.CacheImpl._locator_classes = []"
    else:
        blocker = tmp_path / "a_file"
        blocker.write_text("")
        env["NUMBA_CACHE_DIR"] = str(blocker / "cache")  # below a regular file: cannot be created
        patch = ""
    src = os.path.join(os.path.dirname(__file__), "..", "src")
    env["PYTHONPATH"] = os.pathsep.join([os.path.abspath(src), env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, "-c", _NO_CACHE_SCRIPT.format(patch=patch)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    assert "walks 3 3" in out.stdout
    assert "kernels True" in out.stdout
    if how == "no locator":
        assert "warnings 1" in out.stdout, out.stdout


# --------------------------------------------------------------------------- exact zeros on a piece


def _chain_1d(w2: float, dtype=f64) -> nn.Module:
    """x -> ReLU(w2 · ReLU(x)), both Linear layers 1 -> 1 without bias."""
    l1, l2 = nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        l1.weight.fill_(1.0)
        l2.weight.fill_(w2)
    return nn.Sequential(l1, nn.ReLU(), l2, nn.ReLU()).to(dtype)


@pytest.mark.parametrize("dtype", [f64, torch.float32])
@pytest.mark.parametrize("w2", [1.0, 0.3, 0.7071])
@pytest.mark.parametrize("ends", [(-0.1, 0.7), (-0.3, 0.11), (-1 / 3, 0.9)])
def test_a_preactivation_that_is_zero_on_a_piece_gets_bit_zero(dtype, w2, ends):
    # layer 2 is exactly 0 wherever layer 1 is: [[0, 0], [1, 1]], never a piece with bits [0, 1]
    net = _chain_1d(w2, dtype)
    w = exact_walks(net, torch.tensor([[ends[0]]], dtype=dtype), torch.tensor([[ends[1]]], dtype=dtype))
    assert w[0].patterns.int().tolist() == [[0, 0], [1, 1]]
    assert float(w[0].t[1]) == pytest.approx(-ends[0] / (ends[1] - ends[0]), abs=1e-6)


def test_zero_on_a_piece_after_a_wide_layer_and_through_a_residual_block():
    # A bias-free ReLU layer whose crossings feed a bias-free ReLU layer (fused Linear on the
    # kernels, plain products on torch) and an additive skip connection: every neuron of layer 2
    # is a positive combination of layer 1, so it is 0 exactly where all of layer 1 is.
    torch.manual_seed(3)
    lin1 = nn.Linear(3, 40, bias=False)
    lin2 = nn.Linear(40, 40, bias=False)
    with torch.no_grad():
        lin2.weight.copy_(lin2.weight.abs())
    net = nn.Sequential(lin1, nn.ReLU(), lin2, nn.ReLU()).double()
    from spacefold import activation_patterns

    for seed in range(5):
        g = torch.Generator().manual_seed(seed)
        v = torch.randn(1, 3, generator=g, dtype=f64)
        x1, x2 = -v, 2 * v  # layer 1 is 0 exactly at the origin (t = 1/3)
        w = exact_walks(net, x1, x2)
        pats = w[0].patterns
        # no region may have a layer-2 neuron on while every layer-1 neuron is off
        assert not ((pats[:, :40].sum(1) == 0) & pats[:, 40:].any(1)).any()
        ref = activation_patterns(net, torch.cat([x1, x2]))
        assert torch.equal(pats[0], ref[0]) and torch.equal(pats[-1], ref[1])


# --------------------------------------------------------------------------- simultaneous and chained crossings


@pytest.mark.parametrize("dtype", [torch.float32, f64])
@pytest.mark.parametrize("act", [nn.ReLU, nn.LeakyReLU])
def test_a_segment_through_the_origin_of_a_bias_free_net_has_two_regions(dtype, act):
    # x -> -x: every pre-activation is (1 - 2t)·c, so the walk is [π(x), π(-x)] and χ = 0
    torch.manual_seed(0)
    layers, d = [], 5
    for width in (32, 64, 16):
        layers += [nn.Linear(d, width, bias=False), act()]
        d = width
    net = nn.Sequential(*layers).to(dtype)
    v = torch.randn(64, 5, dtype=dtype)
    w = exact_walks(net, v, -v)
    assert int(w.n_regions.max()) <= 2
    assert float(summarize(w).chi.abs().max()) == 0.0
    from spacefold import activation_patterns

    ends = activation_patterns(net, torch.cat([v, -v]))
    for i in range(64):
        assert torch.equal(w[i].patterns[0], ends[i]) and torch.equal(w[i].patterns[-1], ends[64 + i])


def _staircase(n: int, gap: float) -> nn.Module:
    """n neurons z_k(t) = t - (0.5 + k·gap): crossings ``gap`` apart from t = 0.5 on."""
    lin = nn.Linear(1, n).double()
    with torch.no_grad():
        lin.weight.fill_(1.0)
        lin.bias.copy_(-(0.5 + gap * torch.arange(n, dtype=f64)))
    return nn.Sequential(lin, nn.ReLU())


def test_crossings_within_tol_of_each_other_do_not_chain():
    # 2000 crossings 0.9e-9 apart (1.8e-6 in all) with tol = 1e-9: a breakpoint gathers the crossings
    # within tol after its first, so they pair up (0 and 0.9e-9; 1.8e-9 starts the next): 1000 steps
    net = _staircase(2000, 0.9e-9)
    w = exact_walks(net, torch.zeros(1, 1, dtype=f64), torch.ones(1, 1, dtype=f64), tol=1e-9)
    assert w[0].n_regions == 1001
    assert (w[0].patterns[1:].sum(1) == torch.arange(2, 2001, 2)).all()
    # no step spans more than tol: regions start more than tol apart
    assert float((w[0].t[2:] - w[0].t[1:-1]).min()) > 1e-9


def test_float32_merges_crossings_below_its_resolution():
    # 50 neurons crossing 2e-9 apart (9.8e-8 in all): below float32's resolution in t (1.2e-7) they
    # are one breakpoint of 50 flips, whose neighbourhood is walked again in float64 (n_refined). There
    # the crossings of the float32 model are told apart: its biases 0.5 + k·2e-9, rounded to float32,
    # take 3 values (0.5 and the next two floats), so 4 regions, as the float64 walk of that model has.
    # In the float64 model each crossing is its own.
    w64 = exact_walks(_staircase(50, 2e-9), torch.zeros(1, 1, dtype=f64), torch.ones(1, 1, dtype=f64))
    assert w64[0].n_regions == 51
    net32 = _staircase(50, 2e-9).float()
    assert torch.unique(net32[0].bias).numel() == 3
    w32 = exact_walks(net32, torch.zeros(1, 1), torch.ones(1, 1))
    assert w32[0].n_regions == 4 and w32.n_refined == 1
    ref = exact_walks(net32.double(), torch.zeros(1, 1, dtype=f64), torch.ones(1, 1, dtype=f64))
    assert torch.equal(w32[0].patterns, ref[0].patterns) and ref.n_refined == 0
    assert torch.allclose(w32[0].t, ref[0].t, rtol=0, atol=1e-15)


def _two_close_neurons(width: int = 4) -> nn.Module:
    """z_1 = x, z_2 = x - 2e-8 on the segment x: -1 -> 1: crossings at t = 0.5 and 0.5 + 1e-8. In float32
    both are -1 at x = -1 and 1 at x = 1 (-1 - 2e-8 and 1 - 2e-8 round to them), so the walk in float32
    cannot tell them apart; their weights are exact in float32. A layer after them mixes them."""
    torch.manual_seed(0)
    lin = nn.Linear(1, 2)
    with torch.no_grad():
        lin.weight.fill_(1.0)
        lin.bias.copy_(torch.tensor([0.0, -2e-8]))
    return nn.Sequential(lin, nn.ReLU(), nn.Linear(2, width), nn.ReLU())


def test_float32_walks_again_in_float64_around_crossings_it_merges():
    net = _two_close_neurons()
    x1, x2 = -torch.ones(1, 1), torch.ones(1, 1)
    z = net[0](torch.cat([x1, x2])).detach()
    assert torch.equal(z[:, 0], z[:, 1])  # in float32 the two neurons are the same on the segment
    w32 = exact_walks(net, x1, x2)
    ref = exact_walks(copy.deepcopy(net).double(), x1.double(), x2.double())
    # in float64: the pattern at t = 0, then neuron 1 at t = 0.5, then neuron 2 at 0.5 + 1e-8
    assert torch.equal(ref[0].patterns[1:3, :2], torch.tensor([[True, False], [True, True]]))
    assert float(ref[0].t[2] - ref[0].t[1]) == pytest.approx(1e-8, rel=1e-6)
    assert w32.n_refined == 1 and ref.n_refined == 0 and w32.n_float64 == 0
    assert torch.equal(w32.n_regions, ref.n_regions)
    assert torch.equal(w32[0].patterns, ref[0].patterns)
    # the two crossings from the float64 walk of [0.25, 0.75] or so; the others from float32's
    assert torch.allclose(w32[0].t[1:3], ref[0].t[1:3], rtol=0, atol=1e-15)
    assert torch.allclose(w32[0].t, ref[0].t, rtol=0, atol=1e-6)
    # a tol the float32 walk resolves is what limits the walk: nothing is walked again
    coarse = exact_walks(net, x1, x2, tol=1e-6)
    assert coarse.n_refined == 0 and int(coarse.n_regions[0]) == int(ref.n_regions[0]) - 1


def test_float32_refinement_through_folding_batch_and_in_sub_segments(monkeypatch):
    # folding_batch hands the walk the prefix values: the pieces walked again take the float64 prefix of the
    # end points; a budget that cuts the segment into sub-segments gives the same walk
    import spacefold._core.walk.exact.mlp as mlp_kernels
    from spacefold._core.folding import walk_batch

    monkeypatch.setattr(mlp_kernels, "MAX_WIDTH", 0)  # the layer walk, whose float32 refinement this is
    net = _two_close_neurons(width=64)
    x1, x2 = -torch.ones(3, 1), torch.tensor([[1.25], [0.5], [2.5]])  # crossings at t = 1 / (1 + x2) and 1e-8 after
    ref = walk_batch(net, x1, x2, dtype=torch.float64)
    w = walk_batch(net, x1, x2)
    assert w.n_refined == 3 and torch.equal(w.n_regions, ref.n_regions) and torch.equal(w.patterns, ref.patterns)
    from spacefold._core.folding import folding_batch

    fb = folding_batch(net, x1, x2)
    assert fb.n_refined == 3 and fb.n_float64 == 0 and torch.equal(fb.n_regions, ref.n_regions)
    # 16 breakpoints of 64 float32 values per sub-batch (8 in float64): the segments are walked in sub-segments
    monkeypatch.setenv("SPACEFOLD_MEMORY", "16384")
    from spacefold._core.walk.exact import state

    pieces, init = [], state._State.__init__

    def record(self, n, device, t_ends=None, *args):
        init(self, n, device, t_ends, *args)
        pieces.append(t_ends)

    monkeypatch.setattr(state._State, "__init__", record)
    ws = exact_walks(net, x1, x2)
    assert any(p is not None and bool((p[1] - p[0] < 1).any()) for p in pieces)  # sub-segments were walked
    assert ws.n_refined == 3 and torch.equal(ws.n_regions, ref.n_regions) and torch.equal(ws.patterns, ref.patterns)


def test_clipped_sub_walks_join_into_the_walk():
    # _clip cuts a walk at points inside its pieces; _join of the clips is the walk again
    from spacefold._core.walk.exact.assemble import _clip, _join

    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU()).double()
    x1, x2 = torch.randn(3, 4, dtype=f64), torch.randn(3, 4, dtype=f64)
    w = exact_walks(net, x1, x2)
    g = torch.Generator().manual_seed(0)
    for j in range(3):
        t = w.t_sorted[int(w.first[j]) : int(w.last[j]) + 1]
        k = torch.randperm(t.numel() - 1, generator=g)[:4].sort().values
        cuts = [0.0, *((t[k] + t[k + 1]) / 2).tolist(), 1.0]
        clips = [_clip(w, j, a, b) for a, b in zip(cuts[:-1], cuts[1:])]
        assert all(c.t_sorted[0] == a and c.t_sorted[-1] == b for c, a, b in zip(clips, cuts[:-1], cuts[1:]))
        joined = _join(ExactWalkBatch.concat(clips), torch.zeros(len(clips), dtype=torch.int64))
        assert torch.equal(joined[0].patterns, w[j].patterns) and torch.equal(joined[0].t, w[j].t)
        assert joined.t_sorted.numel() == t.numel() + len(cuts) - 2  # the cuts stay as breakpoints without flips


# --------------------------------------------------------------------------- max pooling near ties


def _pool_on_input() -> nn.Module:
    return nn.Sequential(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU())


def test_max_pooling_in_float32_converges_and_matches_float64():
    # Pooling of the raw input: arg-max changes everywhere; in float32 the split used to keep the
    # old arg-max at each new breakpoint by round-off and abort the batch after 64 rounds.
    import copy

    torch.manual_seed(0)
    net = _pool_on_input()
    x1, x2 = torch.randn(200, 1, 8, 8), torch.randn(200, 1, 8, 8)
    w = exact_walks(net, x1, x2)
    w64 = exact_walks(copy.deepcopy(net).double(), x1.double(), x2.double())
    assert torch.equal(w.n_regions, w64.n_regions)
    assert torch.allclose(summarize(w).chi, summarize(w64).chi)


def test_paths_max_pooling_cannot_resolve_are_walked_again_in_float64(monkeypatch):
    import copy

    from spacefold._core.walk import exact as ex

    monkeypatch.setattr(ex.maxpool, "_POOL_RTOL", 0)  # no tie margin: float32 round-off makes splits endless
    monkeypatch.setattr(ex.driver, "_dtype_tol", lambda dtype: 0.0)  # nor the merging of crossings below it
    torch.manual_seed(0)
    net = _pool_on_input()
    x1, x2 = torch.randn(100, 1, 8, 8), torch.randn(100, 1, 8, 8)
    w = exact_walks(net, x1, x2)
    assert 0 < w.n_float64 <= 100 and w.n_unresolved == 0
    w64 = exact_walks(copy.deepcopy(net).double(), x1.double(), x2.double())
    assert torch.equal(w.n_regions, w64.n_regions)
    assert torch.allclose(summarize(w).chi, summarize(w64).chi)
    # where float64 cannot resolve them either, the walks are kept and counted, with a warning
    monkeypatch.setattr(ex.maxpool, "_POOL_MAX_ROUNDS", 0)
    with pytest.warns(RuntimeWarning, match="could not be resolved in float64"):
        w = exact_walks(net, x1, x2)
    assert w.n_unresolved > 0 and len(w) == 100


# --------------------------------------------------------------------------- overflow


@pytest.mark.parametrize("dtype", [torch.float32, f64])
def test_non_finite_values_inside_the_network_raise(dtype):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU()).to(dtype)
    big = torch.finfo(dtype).max * 0.9  # x = ±3e38 in float32
    with pytest.raises(InputError, match="not finite or overflow"):
        exact_walks(net, torch.full((2, 2), -big, dtype=dtype), torch.full((2, 2), big, dtype=dtype))
    with torch.no_grad():
        net[2].weight[0, 0] = float("nan")
    with pytest.raises(InputError, match="layer '3'"):
        exact_walks(net, -torch.ones(2, 2, dtype=dtype), torch.ones(2, 2, dtype=dtype))


# --------------------------------------------------------------------------- verify: a certificate


def _drop_region(w, i: int, k: int):
    """The walks ``w`` with region k of walk i left out (its interval joined to region k − 1)."""
    from spacefold._core.walk import WalkBatch

    row = int(w.offsets[i]) + k
    keep = torch.ones(w.patterns.shape[0], dtype=torch.bool)
    keep[row] = False
    offsets = w.offsets.clone()
    offsets[i + 1 :] -= 1
    return WalkBatch(w.patterns[keep], w.t[keep], offsets, "exact")


@pytest.mark.parametrize("act", [nn.ReLU, nn.LeakyReLU, nn.Hardtanh])
def test_the_certificate_finds_every_dropped_region(act):
    from spacefold import verify

    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(3, 12), act(), nn.Linear(12, 12), act(), nn.Linear(12, 2)).double()
    x1, x2 = 3 * torch.randn(6, 3, dtype=f64), 3 * torch.randn(6, 3, dtype=f64)
    w = exact_walks(net, x1, x2)
    assert verify(net, x1, x2, w).ok
    assert verify(net, x1, x2, w, mode="midpoint").ok
    found = missed_by_midpoints = n = 0
    for i in range(6):
        for k in range(1, int(w.n_regions[i])):
            bad = _drop_region(w, i, k)
            res = verify(net, x1, x2, bad, mode="certificate")
            n += 1
            found += (not res.ok) and [i, k - 1] in res.mismatches.tolist()
            missed_by_midpoints += verify(net, x1, x2, bad, mode="midpoint").ok
    assert n > 20 and found == n
    assert missed_by_midpoints > 0  # the midpoint check alone misses some of them


def _invent_region(w, i: int, k: int, bit: int):
    """``w`` with region k of walk i cut at its midpoint, the second half getting ``bit`` flipped."""
    from spacefold._core.walk import WalkBatch

    a = int(w.offsets[i]) + k
    t_end = float(w.t[a + 1]) if k + 1 < int(w.n_regions[i]) else 1.0
    pat = w.patterns[a].clone()
    pat[bit] ^= True
    pats = torch.cat([w.patterns[: a + 1], pat.unsqueeze(0), w.patterns[a + 1 :]])
    t = torch.cat([w.t[: a + 1], torch.tensor([(float(w.t[a]) + t_end) / 2], dtype=w.t.dtype), w.t[a + 1 :]])
    offsets = w.offsets.clone()
    offsets[i + 1 :] += 1
    return WalkBatch(pats, t, offsets, "exact")


@pytest.mark.parametrize("dtype", [torch.float32, f64])
def test_the_certificate_finds_every_invented_region(dtype):
    # a region that is not there (a pattern with one bit wrong over half of a true region), after a
    # padded ceil-mode max pooling whose windows share inputs: the certificate compares the pattern
    # with the pre-activations at both ends of the half
    from spacefold import verify

    torch.manual_seed(2)
    net = (
        nn.Sequential(
            nn.Linear(2, 6),
            nn.ReLU(),
            nn.Unflatten(1, (1, 6)),
            nn.MaxPool1d(3, 2, padding=1, ceil_mode=True),
            nn.Flatten(),
            nn.Linear(4, 4),
            nn.Hardtanh(),
            nn.Linear(4, 2),
            nn.ReLU6(),
        )
        .to(dtype)
        .eval()
    )
    x1, x2 = 3 * torch.randn(2, 2, dtype=dtype), 3 * torch.randn(2, 2, dtype=dtype)
    w = exact_walks(net, x1, x2)
    assert verify(net, x1, x2, w).ok
    n = found = 0
    for i in range(2):
        for k in range(int(w.n_regions[i])):
            for bit in range(w.patterns.shape[1]):
                res = verify(net, x1, x2, _invent_region(w, i, k, bit))
                n += 1
                found += (not res.ok) and [i, k + 1] in res.mismatches.tolist()
    assert n > 40 and found == n


def test_the_certificate_checks_kinks_without_bits_and_pooling_windows():
    from spacefold import verify

    torch.manual_seed(2)
    # Hardtanh bends at ±1 without a bit; max pooling bends where a window's arg-max changes
    net = nn.Sequential(
        nn.Linear(4, 16),
        nn.Hardtanh(),
        nn.Unflatten(1, (1, 16)),
        nn.MaxPool1d(2),
        nn.Flatten(),
        nn.Linear(8, 6),
        nn.ReLU(),
    ).double()
    x1, x2 = 3 * torch.randn(5, 4, dtype=f64), 3 * torch.randn(5, 4, dtype=f64)
    w = exact_walks(net, x1, x2)
    assert verify(net, x1, x2, w).ok
    # the regions alone (no breakpoints between them) span kinks: not certified
    from spacefold._core.walk import WalkBatch

    plain = WalkBatch(w.patterns, w.t, w.offsets, "exact")
    assert not verify(net, x1, x2, plain, mode="certificate").ok
    assert verify(net, x1, x2, plain, mode="midpoint").ok


def test_verify_of_a_smooth_model_checks_midpoints_and_refuses_a_certificate():
    from spacefold import verify
    from spacefold._core.folding import walk_batch

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 6), nn.Tanh(), nn.Linear(6, 2)).double()
    x1, x2 = torch.randn(3, 2, dtype=f64), torch.randn(3, 2, dtype=f64)
    w = walk_batch(net, x1, x2, method="bisect")
    assert verify(net, x1, x2, w).ok
    with pytest.raises(NotPiecewiseLinearError):
        verify(net, x1, x2, w, mode="certificate")
    with pytest.raises(InputError, match="mode"):
        verify(net, x1, x2, w, mode="corners")


def test_float32_refinement_through_index_pairs(monkeypatch):
    # folding_pairs walks from cached first-layer values of the samples: the pieces walked again in float64
    # start from the end inputs, gathered for them alone; the result is the float64 walk's
    import spacefold._core.walk.exact.mlp as mlp_kernels
    from spacefold._core.folding import folding_batch, folding_pairs

    monkeypatch.setattr(mlp_kernels, "MAX_WIDTH", 0)  # the layer walk, whose float32 refinement this is
    net = _two_close_neurons(width=64)
    x = torch.cat([-torch.ones(3, 1), torch.tensor([[1.25], [0.5], [2.5]])])
    i, j = torch.arange(3), torch.arange(3, 6)
    ref = folding_batch(net.double(), x[i].double(), x[j].double())
    net.float()
    fp = folding_pairs(net, x, i, j, workers=1)
    assert fp.n_refined == 3 and torch.equal(fp.n_regions, ref.n_regions) and torch.equal(fp.chi, ref.chi.float())


# --------------------------------------------------------------------------- the zero rule in float32


@pytest.mark.parametrize("pieces", [False, True], ids=["whole", "in-pieces"])
@pytest.mark.parametrize("seed", [0, 3])
def test_float32_walks_of_wide_nets_count_what_float64_counts(seed, pieces, monkeypatch):
    """On a wide, deep net values within float32's round-off bound of 0 at two neighbouring breakpoints are common
    and mostly genuine (a crossing on a short piece): set to 0 in float32 they lost regions on 2-3 of these 40
    paths. The pieces around them are walked again in float64 (the whole path where they touch its ends), whose
    tracked bound tells a cancellation from a genuine value."""
    from spacefold._core.walk.exact import driver
    from spacefold.models import mlp

    net = mlp("6x256", 64, 10, seed=seed).eval()
    g = torch.Generator().manual_seed(seed)
    x1, x2 = torch.rand(40, 64, generator=g), torch.rand(40, 64, generator=g)
    w64 = exact_walks(copy.deepcopy(net).double(), x1.double(), x2.double())
    joins = []
    if pieces:  # segments walked in sub-segments, joined (as paths too large for the memory budget are)
        monkeypatch.setenv("SPACEFOLD_MEMORY", str(2_000_000))
        join = driver._join
        monkeypatch.setattr(driver, "_join", lambda w, seg: joins.append(1) or join(w, seg))
    w32 = exact_walks(net, x1, x2)
    assert bool(joins) == pieces
    assert torch.equal(w32.n_regions, w64.n_regions)
    assert w32.n_float64 + w32.n_refined > 0 and w32.n_float64 < 40  # pieces handed to float64, not every path
    s32, s64 = summarize(w32), summarize(w64)
    assert torch.equal(s32.r1, s64.r1) and torch.equal(s32.r2, s64.r2)


_MNIST = os.environ.get("SPACEFOLD_DATA")


@pytest.mark.skipif(not _MNIST, reason="MNIST IDX files not present (set SPACEFOLD_DATA to their directory)")
def test_an_output_touching_0_within_float32_round_off_is_decided_in_float64(monkeypatch):
    """On one of these MNIST segments of a random 784-48x4 MLP a layer-2 neuron rises to within float32's round-off of
    0 at a layer-1 crossing and falls again: float64 finds it above 0 there for 5e-6 in t (two regions more), float32
    found it below. The float32 walk hands the pieces around such a value (an inner row between neighbours on the
    same side of 0) to float64 and counts what the float64 walk counts."""
    import spacefold as sf
    import spacefold._core.walk.exact.mlp as mlp_kernels
    from spacefold.data import load_mnist

    monkeypatch.setattr(mlp_kernels, "MAX_WIDTH", 0)  # the layer walk, whose float32 rule this is
    x = load_mnist(_MNIST).x_test
    net = sf.mlp([48] * 4, 784, 10, seed=0)
    i = [6526, 8129, 5368, 8194, 5070, 5476, 5224, 2398, 2604, 6021, 1682, 1009, 2609, 7482, 5378, 270, 2377, 9045]
    j = [5091, 577, 6485, 3245, 7225, 326, 6144, 9404, 3945, 3501, 143, 2709, 900, 6381, 2488, 7478, 807, 9939]
    f32 = sf.folding_pairs(net, x, i, j, workers=1)
    f64 = sf.folding_pairs(net, x, i, j, workers=1, dtype=torch.float64)
    assert f64.n_regions[16] == 42
    assert torch.equal(f32.n_regions, f64.n_regions) and torch.equal(f32.chi, f64.chi)
