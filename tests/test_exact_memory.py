"""The exact walk within its memory budget (``SPACEFOLD_MEMORY``): segments walked in sub-segments whose
walks are joined into the walk of the whole segment, the same whatever the budget; and the compiled
max pooling, against torch's."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from spacefold._core.measure import summarize
from spacefold._core.walk import _kernels
from spacefold._core.walk import exact as ex
from spacefold._core.walk.exact import ExactWalkBatch, exact_walks
from spacefold.errors import InputError

f64 = torch.float64


@pytest.fixture(autouse=True, params=["compiled", "torch"])
def backend(request, monkeypatch):
    """Every test runs on the compiled kernels and on the plain torch operations."""
    monkeypatch.setenv("SPACEFOLD_NUMBA", "1" if request.param == "compiled" else "0")
    monkeypatch.delenv("SPACEFOLD_MEMORY", raising=False)
    return request.param


def _cnn(seed: int = 0, bias: bool = True) -> nn.Module:
    """A small VGG-style net on 3 x 8 x 8 inputs: conv, batch norm (statistics away from 0 and 1), ReLU, max
    pooling, conv, ReLU, and two linear layers."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=bias),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1, bias=bias),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(96, 20, bias=bias),
        nn.ReLU(),
        nn.Linear(20, 3),
    )
    with torch.no_grad():
        net[1].running_mean.normal_(0.0, 0.5)
        net[1].running_var.uniform_(0.5, 2.0)
        if not bias:
            net[1].running_mean.zero_()
            net[1].bias.zero_()
    return net.eval()


def _same_walks(w, ref, atol: float) -> None:
    assert torch.equal(w.n_regions, ref.n_regions)
    assert torch.equal(w.patterns, ref.patterns)
    assert torch.allclose(w.t, ref.t, rtol=0, atol=atol)
    s, r = summarize(w), summarize(ref)
    assert torch.equal(s.r1, r.r1) and torch.equal(s.r2, r.r2) and torch.equal(s.chi, r.chi)


class _States:
    """Records every breakpoint state the walk creates (to read their sizes after it)."""

    def __init__(self, monkeypatch):
        self.states: list = []
        init = ex.state._State.__init__
        states = self.states

        def record(state, *args, **kwargs):
            init(state, *args, **kwargs)
            states.append(state)

        monkeypatch.setattr(ex.state._State, "__init__", record)


@pytest.mark.parametrize("dtype", [torch.float32, f64])
@pytest.mark.parametrize("budget", [400_000, 120_000, 70_000])
def test_a_small_budget_gives_the_walks_of_an_unlimited_one(dtype, budget, monkeypatch):
    net = _cnn().to(dtype)
    x1, x2 = torch.randn(6, 3, 8, 8, dtype=dtype), torch.randn(6, 3, 8, 8, dtype=dtype)
    ref = exact_walks(net, x1, x2)
    monkeypatch.setenv("SPACEFOLD_MEMORY", str(budget))
    rec = _States(monkeypatch)
    w = exact_walks(net, x1, x2)
    assert len(rec.states) > 1  # the budget cut the segments into sub-segments
    if dtype == f64:
        _same_walks(w, ref, atol=1e-12)
    else:  # float32: the crossings' t up to its round-off, and the same regions
        assert torch.equal(w.n_regions, ref.n_regions) and torch.equal(w.patterns, ref.patterns)
        assert torch.allclose(w.t, ref.t, rtol=0, atol=1e-5)


@pytest.mark.parametrize("budget", [200_000, 70_000])
def test_no_sub_batch_holds_more_breakpoints_than_the_budget(budget, monkeypatch):
    net = _cnn(1).double()
    x1, x2 = torch.randn(5, 3, 8, 8, dtype=f64), torch.randn(5, 3, 8, 8, dtype=f64)
    monkeypatch.setenv("SPACEFOLD_MEMORY", str(budget))
    rec = _States(monkeypatch)
    exact_walks(net, x1, x2)
    # the largest tensor at one breakpoint: the first conv's output, 4 x 8 x 8 float64 = 2048 bytes
    cap = budget // (ex.driver._ROW_COPIES * 4 * 8 * 8 * 8)
    assert rec.states and all(s.row_cap == cap for s in rec.states)
    # a sub-batch whose breakpoints outgrow the cap stops before their values are computed (and is walked
    # again in shorter pieces): no tensor of breakpoint values is ever larger than the cap's
    assert max(s.peak_bytes for s in rec.states) <= cap * 2048
    assert max(s.n_rows for s in rec.states) > cap  # some did outgrow it
    # a segment needs more breakpoints than that: it was walked in pieces (more states than segments)
    assert len(rec.states) > 5


def test_a_budget_too_small_for_one_breakpoint_is_refused(monkeypatch):
    monkeypatch.setenv("SPACEFOLD_MEMORY", "1000")
    with pytest.raises(InputError, match="SPACEFOLD_MEMORY"):
        exact_walks(_cnn(), torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8))


def test_sub_batches_on_several_threads_keep_to_the_budget(monkeypatch):
    net = _cnn(2).double()
    x1, x2 = torch.randn(70, 3, 8, 8, dtype=f64), torch.randn(70, 3, 8, 8, dtype=f64)
    ref = exact_walks(net, x1, x2)
    monkeypatch.setenv("SPACEFOLD_MEMORY", "300000")
    rec = _States(monkeypatch)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        w = exact_walks(net, x1, x2)
    finally:
        torch.set_num_threads(threads)
    _same_walks(w, ref, atol=1e-12)
    # two sub-batches at once: each gets half of the budget
    assert max(s.peak_bytes for s in rec.states) <= 300_000 // 2 // (ex.driver._ROW_COPIES * 2048) * 2048


def _sub_walks(net, x1, x2, cuts: list[float]) -> tuple[ExactWalkBatch, torch.Tensor]:
    """The walks of the sub-segments between ``cuts`` (0 < ... < 1) of every segment, each walked alone
    (exact_walks on its end points) and put on the segment's t, in one batch."""
    ts = [0.0, *cuts, 1.0]
    parts, seg = [], []
    for i in range(x1.shape[0]):
        for a, b in zip(ts[:-1], ts[1:]):
            xa, xb = torch.lerp(x1[i], x2[i], a), torch.lerp(x1[i], x2[i], b)
            w = exact_walks(net, xa[None], xb[None])
            object.__setattr__(w, "t_sorted", a + (b - a) * w.t_sorted)
            parts.append(w)
            seg.append(i)
    return ExactWalkBatch.concat(parts), torch.tensor(seg)


@pytest.mark.parametrize("cuts", [[0.5], [0.25, 0.5, 0.75], [0.125, 0.3125, 0.875]])
def test_joined_walks_of_sub_segments_are_the_walk_of_the_segment(cuts):
    # Inputs of small integers and cuts at dyadic t: the points of the cuts are exact in float64. Through
    # the origin of a bias-free net (x2 = -x1) every pre-activation is 0 at t = 0.5, a point whose
    # pattern (all bits 0) differs from the pieces on both sides: a cut there must not add a region.
    net = _cnn(3, bias=False).double()
    g = torch.Generator().manual_seed(0)
    x1 = torch.randint(-4, 5, (4, 3, 8, 8), generator=g).to(f64)
    x2 = torch.randint(-4, 5, (4, 3, 8, 8), generator=g).to(f64)
    x2[0] = -x1[0]
    ref = exact_walks(net, x1, x2)
    w, seg = _sub_walks(net, x1, x2, cuts)
    _same_walks(ex.assemble._join(w, seg), ref, atol=1e-12)


def test_segments_walked_again_in_float64_are_counted_once_when_walked_in_pieces(monkeypatch):
    # as test_paths_max_pooling_cannot_resolve_are_walked_again_in_float64 (test_exact_edges.py), with a
    # budget that cuts every segment into pieces
    monkeypatch.setattr(ex.maxpool, "_POOL_RTOL", 0)
    monkeypatch.setattr(ex.driver, "_dtype_tol", lambda dtype: 0.0)
    torch.manual_seed(0)
    # an affine layer first: the float64 walk of a piece interpolates the float64 values of that prefix
    net = nn.Sequential(
        nn.Conv2d(1, 2, 1), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU()
    )
    x1, x2 = torch.randn(40, 1, 8, 8), torch.randn(40, 1, 8, 8)
    monkeypatch.setenv("SPACEFOLD_MEMORY", "40000")
    rec = _States(monkeypatch)
    w = exact_walks(net, x1, x2)
    assert len(rec.states) > 40
    assert w.n_float64 <= 40 and w.n_unresolved == 0
    w64 = exact_walks(copy.deepcopy(net).double(), x1.double(), x2.double())
    assert torch.equal(w.n_regions, w64.n_regions)
    assert torch.allclose(summarize(w).chi, summarize(w64).chi)
    # where no piece resolves (in float64 either), every piece is walked again in float64 and kept: the
    # counts are of segments, each once, however many of its pieces needed float64
    monkeypatch.setattr(ex.maxpool, "_POOL_MAX_ROUNDS", 0)
    rec.states.clear()
    with pytest.warns(RuntimeWarning, match="could not be resolved in float64"):
        w = exact_walks(net, x1, x2)
    assert sum(len(s.unresolved) for s in rec.states) > 40
    assert w.n_float64 == 40 and w.n_unresolved == 40 and len(w) == 40


# --------------------------------------------------------------------------- the max pooling kernel


@pytest.mark.parametrize("dtype", [torch.float32, f64])
def test_the_max_pooling_kernel_is_torchs_max_pooling(dtype, backend):
    if backend != "compiled" or not _kernels.available(np.float32 if dtype == torch.float32 else np.float64):
        pytest.skip("the compiled kernels are off")
    rng = np.random.default_rng(0)
    n = 0
    while n < 150:
        k = tuple(int(v) for v in rng.integers(1, 4, 2))
        s = tuple(int(v) for v in rng.integers(1, 4, 2))
        p = tuple(int(rng.integers(0, v // 2 + 1)) for v in k)
        d = tuple(int(v) for v in rng.integers(1, 3, 2))
        h, w = (int(v) for v in rng.integers(2, 10, 2))
        x = torch.from_numpy(rng.integers(-2, 3, (2, 3, h, w))).to(dtype)  # many ties: the first maximum wins
        try:
            ref, ref_i = nn.functional.max_pool2d(x, k, s, p, d, return_indices=True)
        except RuntimeError:  # output size 0
            continue
        n += 1
        am, out = np.empty(ref_i.shape, np.int64), np.empty(ref.shape, x.numpy().dtype)
        assert _kernels.pool_argmax(x.numpy(), k, s, p, d, am, out, 1e30)
        assert np.array_equal(am, ref_i.numpy()) and np.array_equal(out, ref.numpy()), (k, s, p, d, h, w)
    x = torch.zeros(1, 1, 4, 4, dtype=dtype)
    am, out = np.empty((1, 1, 2, 2), np.int64), np.empty((1, 1, 2, 2), x.numpy().dtype)
    for bad in (float("nan"), float("inf"), 2e30):
        x[0, 0, 3, 2] = bad
        for k, s in (((2, 2), (2, 2)), ((3, 3), (1, 1))):
            assert not _kernels.pool_argmax(x.numpy(), k, s, (0, 0), (1, 1), am, out, 1e30)


def test_the_walk_leaves_the_prefix_values_it_is_given_as_they_are():
    # the probe of the tensors' sizes runs the layers on one breakpoint: an in-place ReLU there must not
    # write into the values of the prefix (those of the first segment's start)
    torch.manual_seed(0)
    net = (
        nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(4, 4, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Flatten(),
            nn.Linear(256, 5),
            nn.ReLU(),
        )
        .double()
        .eval()
    )
    x1, x2 = torch.randn(3, 3, 8, 8, dtype=f64), torch.randn(3, 3, 8, 8, dtype=f64)
    prog = ex.compile_model(net)
    p1, p2 = prog.prefix(x1), prog.prefix(x2)
    before = [p.clone() for p in p1 + p2]
    w = exact_walks(net, x1, x2, prefix=(p1, p2))
    assert all(torch.equal(a, b) for a, b in zip(p1 + p2, before))
    assert torch.equal(w.n_regions, exact_walks(net, x1, x2).n_regions)
