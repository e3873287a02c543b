"""One pipeline behind every entry point, one home for the per-walk measures, the public
surface, and the API's refusals of bad input.

Oracles: the entry points walk the same segments and must agree exactly with each other
and with single-segment ``folding``; the summaries agree with the definitions of
``measure`` applied walk by walk and with a plain Python loop; the uniform grid in pieces
agrees with the grid in one pass.
"""

from __future__ import annotations

import importlib
import inspect
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import spacefold as sf
from spacefold._core import measure
from spacefold._core.folding import walk_batch
from spacefold._core.pairs import pair_plan
from spacefold._core.patterns import PatternRecorder
from spacefold._core.walk import WalkBatch, run_starts
from spacefold._core.walk.uniform import uniform_walks
from spacefold.errors import InputError, InputTypeError

pipeline_module = importlib.import_module("spacefold._core.pipeline")  # where the pipeline's tunables live
exact_walker = importlib.import_module("spacefold._core.exact_walker")  # and the exact walker's
PROPERTY = settings(max_examples=40, deadline=None)
FIELDS = ("chi", "r1", "r2", "n_regions", "max_profile")


def net_and_data(seed: int = 0, d: int = 3, width: int = 16, n: int = 12, dtype=torch.float64):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(d, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 2))
    return net.to(dtype), torch.randn(n, d, dtype=dtype) * 2


def assert_same(a, b):
    for k in FIELDS:
        assert torch.equal(getattr(a, k), getattr(b, k)), k


# --------------------------------------------------------------------------------------
# One pipeline: every entry point gives the same numbers on the same segments
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("method, kw", [("exact", {}), ("bisect", {}), ("uniform", {"steps": 50})])
@pytest.mark.parametrize("batch_size", [1, 5, 1024])
def test_entry_points_agree_on_the_same_pairs(method, kw, batch_size):
    net, x = net_and_data()
    y = torch.arange(12) % 3
    plan = pair_plan(y, "inter-class")
    i, j = plan.indices()
    fp = sf.folding_pairs(net, x, i, j, method=method, batch_size=batch_size, per_layer=True, **kw)
    fb = sf.folding_batch(net, x[i], x[j], method=method, batch_size=batch_size, per_layer=True, **kw)
    g = sf.global_folding(net, x, y, pairs=plan, method=method, batch_size=batch_size, per_layer=True, **kw)
    assert_same(fp, fb)
    assert_same(fp, g)
    assert fp.per_layer.keys() == fb.per_layer.keys() == g.per_layer.keys()
    for name in fp.per_layer:
        assert torch.equal(fp.per_layer[name], fb.per_layer[name])
        assert torch.equal(fp.per_layer[name], g.per_layer[name])
    # and one segment at a time
    for k in range(0, len(i), 7):
        f = sf.folding(net, x[i[k]], x[j[k]], method=method, **kw)
        assert (f.chi, f.r1, f.r2, f.n_regions, f.max_profile) == (
            float(fp.chi[k]),
            int(fp.r1[k]),
            int(fp.r2[k]),
            int(fp.n_regions[k]),
            float(fp.max_profile[k]),
        )


@pytest.mark.parametrize("way", ["layer walk", "MLP kernels"])
def test_first_layer_once_per_input_in_large_blocks(monkeypatch, way):
    """The values before the first activation are computed once per input, in large blocks
    before the walks: per sample of x for index pairs, per row of x1 and x2 for
    folding_batch; when they are too large to keep, per chunk. Every way gives the same
    walks. So do the first layer's float64 values of the MLP kernels (walk.exact.mlp)."""
    import spacefold._core.walk.exact.mlp as mlp_kernels

    net, x = net_and_data(d=2, width=24)  # 24 values per sample > 4 x 2 input values
    i = torch.randint(12, (40,), generator=torch.Generator().manual_seed(1))
    j = (i + 1 + torch.randint(11, (40,), generator=torch.Generator().manual_seed(2))) % 12
    from spacefold._core.walk.exact import ExactProgram

    calls = []
    if way == "layer walk":
        monkeypatch.setattr(mlp_kernels, "MAX_WIDTH", 0)
        owner, name = ExactProgram, "prefix"
    else:
        owner, name = mlp_kernels.MLPSummarizer, "prefix"
    real = getattr(owner, name)
    monkeypatch.setattr(
        owner, name, lambda self, v, *rest, **kw: calls.append(v.shape[0]) or real(self, v, *rest, **kw)
    )

    def count(fn):
        calls.clear()
        out = fn()
        return out, list(calls)

    probe = [1] if way == "layer walk" else []  # (the size probe is the program's)
    cached, n = count(lambda: sf.folding_pairs(net, x, i, j, batch_size=16))
    assert n == probe + [12]  # every sample once, in one block
    batch, n = count(lambda: sf.folding_batch(net, x[i], x[j], batch_size=16))
    assert n == probe + [40, 40]  # x1 and x2 in one block each
    monkeypatch.setattr(exact_walker, "_PREFIX_CACHE_BYTES", 0)
    plain, n = count(lambda: sf.folding_pairs(net, x, i, j, batch_size=16))
    assert n == probe + [16, 16, 16, 16, 8, 8]  # both ends of every chunk
    plain_batch, n = count(lambda: sf.folding_batch(net, x[i], x[j], batch_size=16))
    assert n == probe + [16, 16, 16, 16, 8, 8]
    for other in (batch, plain, plain_batch):
        assert_same(cached, other)


def test_walk_batch_measures_nothing_and_folding_measures_once(monkeypatch):
    net, x = net_and_data()
    ref = sf.folding_batch(net, x[:6], x[6:], return_walks=True)

    def fail(*a, **k):
        raise AssertionError("measured")

    monkeypatch.setattr(measure, "summarize", fail)
    wb = walk_batch(net, x[:6], x[6:])
    assert torch.equal(wb.patterns, ref.walks.patterns) and torch.equal(wb.offsets, ref.walks.offsets)
    counted = []
    real = measure.prefix_ranges
    monkeypatch.setattr(measure, "prefix_ranges", lambda w: counted.append(1) or real(w))
    monkeypatch.setattr(measure, "chi", fail)
    monkeypatch.setattr(measure, "chi_profile", fail)
    monkeypatch.setattr(measure, "ranges", fail)
    f = sf.folding(net, x[0], x[6])
    assert counted == [1]
    assert (f.chi, f.r1, f.r2, f.max_profile) == (
        float(ref.chi[0]),
        int(ref.r1[0]),
        int(ref.r2[0]),
        float(ref.max_profile[0]),
    )
    assert f.chi == float(f.profile[-1])


def test_counterexample_values_through_every_entry_point():
    """h1 = ReLU(t), h2 = ReLU(t − 1), c = ReLU(h1 − 2 h2 − 1/2), d = ReLU(h1 − 3) on
    t: 0 -> 4 crosses the patterns 0000, 1000, 1010, 1110, 1100, 1101 (by hand):
    r1 = 3, r2 = 5, chi = 0.4, 6 regions."""
    net = nn.Sequential(nn.Linear(1, 2), nn.ReLU(), nn.Linear(2, 2), nn.ReLU()).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0], [1.0]]))
        net[0].bias.copy_(torch.tensor([0.0, -1.0]))
        net[2].weight.copy_(torch.tensor([[1.0, -2.0], [1.0, 0.0]]))
        net[2].bias.copy_(torch.tensor([-0.5, -3.0]))
    x = torch.tensor([[-0.5], [4.0]], dtype=torch.float64)
    for method in ("exact", "bisect"):
        f = sf.folding(net, x[0], x[1], method=method, tol=1e-9)
        assert (f.r1, f.r2, f.n_regions) == (3, 5, 6), method
        assert f.chi == pytest.approx(0.4)
        fp = sf.folding_pairs(net, x, torch.tensor([0]), torch.tensor([1]), method=method, tol=1e-9)
        assert (int(fp.r1[0]), int(fp.r2[0]), int(fp.n_regions[0])) == (3, 5, 6)


# --------------------------------------------------------------------------------------
# One home for the per-walk measures
# --------------------------------------------------------------------------------------


@st.composite
def ragged(draw, max_walks=5, max_points=8, max_neurons=5):
    k = draw(st.integers(1, max_neurons))
    walks = []
    for _ in range(draw(st.integers(1, max_walks))):
        n = draw(st.integers(1, max_points))
        walks.append(
            torch.tensor(draw(st.lists(st.lists(st.booleans(), min_size=k, max_size=k), min_size=n, max_size=n)))
        )
    return walks


def as_batch(walks) -> WalkBatch:
    merged = [measure.merge_repeats(w)[0] for w in walks]
    offsets = torch.tensor([0] + [len(w) for w in merged]).cumsum(0)
    t = torch.zeros(int(offsets[-1]), dtype=torch.float64)
    return WalkBatch(torch.cat(merged), t, offsets, "uniform")


@PROPERTY
@given(ragged())
def test_summary_is_the_definitions_walk_by_walk(walks):
    s = measure.summarize(as_batch(walks))
    for b, w in enumerate(walks):
        assert (int(s.r1[b]), int(s.r2[b])) == sf.ranges(w)
        assert float(s.chi[b]) == sf.chi(w)
        assert float(s.max_profile[b]) == measure.max_profile(w)
        assert int(s.n_regions[b]) == len(measure.merge_repeats(w)[0])


@PROPERTY
@given(ragged(), st.data())
def test_summary_of_columns_and_concatenation(walks, data):
    wb = as_batch(walks)
    k = walks[0].shape[1]
    lo = data.draw(st.integers(0, k - 1))
    hi = data.draw(st.integers(lo + 1, k))
    s = measure.summarize(wb, slice(lo, hi))
    for b, w in enumerate(walks):
        assert float(s.chi[b]) == sf.chi(w[:, lo:hi])
        assert (int(s.r1[b]), int(s.r2[b])) == sf.ranges(w[:, lo:hi])
        assert int(s.n_regions[b]) == len(measure.merge_repeats(w[:, lo:hi])[0])
    cut = data.draw(st.integers(1, len(walks))) if len(walks) > 1 else 1
    parts = [measure.summarize(as_batch(walks[:cut]))]
    if cut < len(walks):
        parts.append(measure.summarize(as_batch(walks[cut:])))
    whole = measure.summarize(wb)
    cat = measure.WalkSummary.concat(parts)
    for f in measure.WalkSummary.FIELDS:
        assert torch.equal(getattr(cat, f), getattr(whole, f))


def test_flip_and_dense_summaries_agree_on_columns():
    from spacefold._core.walk.exact import exact_walks

    net, x = net_and_data(width=12)
    ex = exact_walks(net, x[:6], x[6:])
    dense = WalkBatch(ex.patterns, ex.t, ex.offsets, "exact")
    for cols in (None, slice(0, 12), slice(12, 24), slice(3, 17)):
        a, b = measure.summarize(ex, cols), measure.summarize(dense, cols)
        for f in measure.WalkSummary.FIELDS:
            assert torch.equal(getattr(a, f), getattr(b, f)), (cols, f)
    with pytest.raises(InputError, match="contiguous"):
        measure.summarize(ex, slice(0, 12, 2))


def test_summary_key_n_points_is_n_regions_with_a_warning():
    s = measure.summarize(as_batch([torch.tensor([[0], [1]], dtype=torch.bool)]))
    assert s["n_regions"].tolist() == [2] and set(s.keys()) == set(measure.WalkSummary.FIELDS)
    with pytest.warns(DeprecationWarning, match="n_regions"):
        assert s["n_points"].tolist() == [2]
    with pytest.raises(KeyError):
        s["regions"]


@PROPERTY
@given(ragged())
def test_run_starts_is_the_first_row_of_every_run(walks):
    rows = torch.cat(walks)
    walk_id = torch.cat([torch.full((len(w),), b) for b, w in enumerate(walks)])
    expected = [
        r == 0 or walk_id[r] != walk_id[r - 1] or rows[r].tolist() != rows[r - 1].tolist() for r in range(len(rows))
    ]
    assert run_starts(rows, walk_id).tolist() == expected


def test_walk_stage_does_not_import_measure():
    import ast
    import pathlib

    root = pathlib.Path(importlib.import_module("spacefold._core.walk").__file__).parent
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [a.name for a in node.names]
                assert not any(n.split(".")[-1] in ("measure", "folding", "global_folding") for n in names), path


# --------------------------------------------------------------------------------------
# The uniform grid in pieces of points
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_points", [1, 7, 50, 51, 103, 65536])
def test_uniform_grid_in_pieces_is_the_grid_in_one_pass(max_points):
    net, x = net_and_data(width=10)
    rec = PatternRecorder(net)
    seen = []
    handle = net[0].register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[0]))
    with rec, torch.no_grad():
        ref = uniform_walks(net, rec, x[:4], x[4:8], steps=50, tie_tol=0.0)
        got = uniform_walks(net, rec, x[:4], x[4:8], steps=50, tie_tol=0.0, max_points=max_points)
        bare = uniform_walks(net, rec, x[:4], x[4:8], steps=50, tie_tol=0.0, max_points=max_points, grid_index=False)
    handle.remove()
    assert max(seen[len(seen) // 2 :]) <= max_points  # no forward pass holds more points
    for w in (got, bare):
        assert torch.equal(w.patterns, ref.patterns) and torch.equal(w.t, ref.t)
        assert torch.equal(w.offsets, ref.offsets)
    assert torch.equal(got.grid_index, ref.grid_index) and bare.grid_index is None
    # the grid index maps every grid point to the region it lies in
    for b in range(4):
        w = ref[b]
        grid = torch.linspace(0, 1, 51, dtype=torch.float64)
        expect = torch.searchsorted(w.t, grid, right=True) - 1
        assert torch.equal(w.grid_index, expect)


def test_uniform_batch_size_bounds_the_points_per_pass(monkeypatch):
    """The points of one forward pass follow the memory budget (points_per_pass), not the
    chunk of segments: 6 segments of 100,001 points go through several passes."""
    from spacefold._core.walk import points_per_pass

    monkeypatch.setenv("SPACEFOLD_MEMORY", str(1 << 26))
    net, x = net_and_data(width=10)
    limit = points_per_pass(3, 20, 8)  # 3 inputs, 20 bits, float64
    assert limit < 100_001
    seen = []
    handle = net[0].register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[0]))
    f = sf.folding_batch(net, x[:6], x[6:], method="uniform", steps=100_000, batch_size=6)
    handle.remove()
    assert max(seen) <= limit
    assert sum(seen) >= 6 * 100_001
    assert torch.equal(f.n_regions, sf.folding_batch(net, x[:6], x[6:], method="exact").n_regions)


# --------------------------------------------------------------------------------------
# The public surface
# --------------------------------------------------------------------------------------

API = {
    "chi",
    "ranges",
    "chi_profile",
    "interaction",
    "activation_patterns",
    "walk",
    "folding",
    "folding_batch",
    "plot_path",
    "plot_plane",
    "FoldingMetric",
    "folding_loss",
    "global_folding",
    "cantornet",
}
README = {
    "folding_pairs",
    "symmetric_chi",
    "chi_bounds",
    "register_activation",
    "verify",
    "mlp",
    "save_checkpoint",
    "load_checkpoint",
    "folding_statistics",
    "FoldingSchedule",
    "FoldingRegularizer",
    "FoldingTracker",
    "probe_pairs",
}


def test_all_is_the_api_and_the_readme():
    assert API | README <= set(sf.__all__)
    extra = set(sf.__all__) - API - README
    assert extra == {
        "Walk",
        "Folding",
        "FoldingBatch",
        "GlobalFolding",
        "InputError",
        "InputTypeError",
        "NotPiecewiseLinearError",
    }
    for name in sf.__all__:
        assert getattr(sf, name) is not None


@pytest.mark.parametrize("name, module", sorted(sf._MOVED.items()))
def test_names_moved_off_the_top_level_still_resolve(name, module):
    with pytest.warns(DeprecationWarning, match=f"{module}.{name}"):
        obj = getattr(sf, name)
    assert obj is getattr(importlib.import_module(module), name)
    assert name not in sf.__all__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exec(f"from {module} import {name}", {})
    with pytest.raises(AttributeError):
        sf.no_such_name  # noqa: B018


# --------------------------------------------------------------------------------------
# Bad input through the API
# --------------------------------------------------------------------------------------


def test_complex_inputs_are_refused():
    net, x = net_and_data()
    z = x.to(torch.complex128)
    with pytest.raises(InputTypeError, match="x1 must hold real values"):
        sf.folding_batch(net, z[:2], z[2:4])
    with pytest.raises(InputTypeError, match="x must hold real values"):
        sf.folding_pairs(net, z, [0], [1])
    with pytest.raises(InputTypeError, match="real values"):
        sf.folding(net, z[0], z[1])
    with pytest.raises(InputTypeError, match="real values"):
        sf.global_folding(net, z, torch.arange(12) % 2)


@pytest.mark.parametrize(
    "model",
    [
        nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2)),
        nn.Sequential(nn.Sequential(nn.Linear(3, 8), nn.ReLU()), nn.Linear(8, 2)),
    ],
)
def test_a_batch_given_to_folding_is_refused(model):
    x = torch.randn(5, 3)
    for fn in (sf.folding, sf.walk):
        with pytest.raises(InputError, match="folding_batch"):
            fn(model, x, -x)
    assert sf.folding(model, x[0], -x[0]).n_regions >= 1  # one input is fine


def test_a_batch_of_images_given_to_folding_is_refused():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2))
    x = torch.randn(4, 1, 4, 4)
    with pytest.raises(InputError, match="batch of 4"):
        sf.folding(net, x, -x, method="bisect")
    sf.folding(net, x[0], -x[0], method="bisect")


def test_meta_and_unavailable_device_models_are_refused(monkeypatch):
    with torch.device("meta"):
        meta = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
    x = torch.randn(4, 3)
    for call in (
        lambda: sf.folding_batch(meta, x[:2], x[2:]),
        lambda: sf.folding(meta, x[0], x[1]),
        lambda: sf.global_folding(meta, x, torch.tensor([0, 1, 0, 1])),
    ):
        with pytest.raises(InputError, match="meta device"):
            call()
    if torch.cuda.is_available():
        return
    from spacefold._core import checks

    net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
    monkeypatch.setattr(checks, "model_device_dtype", lambda m: (torch.device("cuda:0"), torch.float32))
    with pytest.raises(InputError, match="no CUDA"):
        sf.folding_batch(net, x[:2], x[2:])


@pytest.mark.parametrize("method", ["exact", "bisect", "uniform"])
def test_wrong_feature_count_through_pairs_and_global(method):
    net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
    x = torch.randn(6, 4)
    with pytest.raises(
        InputError,
        match=r"x holds inputs of shape \(4,\), which do not fit the model Sequential \(its "
        r"layer Linear\(in_features=3, out_features=8, bias=True\) takes 3 features",
    ):
        sf.folding_pairs(net, x, [0, 1], [2, 3], method=method)
    with pytest.raises(InputError, match=r"x holds inputs of shape \(4,\), which do not fit the model"):
        sf.global_folding(net, x, torch.tensor([0, 1, 0, 1, 0, 1]), method=method)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.sampled_from([0.0, 1.0, -2.5, 3e38, -3e38, float("nan"), float("inf"), -float("inf")]),
        min_size=1,
        max_size=8,
    )
)
def test_finiteness_check_is_exact(values):
    from spacefold._core.patterns import check_inputs

    x = torch.tensor(values, dtype=torch.float32).unsqueeze(0)
    bad = sum(1 for v in values if v != v or abs(v) == float("inf"))
    if bad:
        with pytest.raises(InputError, match=f"holds {bad} NaN or inf"):
            check_inputs(x)
    else:
        check_inputs(x)  # huge finite values whose sum overflows are still finite


def test_a_pair_plan_outside_x_is_refused():
    net, x = net_and_data()
    plan = pair_plan(torch.arange(20) % 2, "inter-class")
    with pytest.raises(InputError, match=r"pairs must index rows of x in \[0, 11\]"):
        sf.global_folding(net, x, torch.arange(12) % 2, pairs=plan)


def test_progress_is_the_one_name_and_progress_bar_a_deprecated_alias():
    from spacefold.models.train import train

    def fit(**kw):
        with torch.random.fork_rng():
            torch.manual_seed(0)
            net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2))
        x, y = torch.randn(8, 2, generator=torch.Generator().manual_seed(0)), torch.arange(8) % 2
        return net, train(net, x, y, epochs=2, batch_size=4, **kw)

    ref_net, ref = fit(progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit(progress=True)
    with pytest.warns(DeprecationWarning, match="use progress="):
        net, res = fit(progress_bar=True)
    assert res.loss == ref.loss  # the alias changes nothing else
    for name in ("folding_batch", "folding_pairs", "global_folding"):
        params = inspect.signature(getattr(sf, name)).parameters
        assert "progress" in params and "progress_bar" not in params
