"""sf.global_folding: aggregates checked against hand computations and independent paths."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import spacefold as sf
from spacefold._core.global_folding import GlobalFolding, median_nonzero
from spacefold._core.pairs import pair_plan
from spacefold.models import mlp

METHOD = "bisect"  # region-exact for ReLU networks


def _data(n=24, d=3, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.arange(n) % classes
    return x, y


def _net(arch="3x8", d=3, classes=3, seed=0):
    return mlp(arch, d, classes, seed=seed).double()


def test_median_nonzero_oracle():
    assert median_nonzero([0, 0.2, 0.4, 0, 0.6, 0.8]) == pytest.approx(0.5)
    assert median_nonzero([0.0, 0.0]) == 0.0
    assert median_nonzero(torch.tensor([0.0, 0.3])) == pytest.approx(0.3)


def test_one_hidden_layer_never_folds():
    # docs/method.md, 'The folding measure': every walk of a one-hidden-layer ReLU net is geodesic.
    x, y = _data(40, 4)
    g = sf.global_folding(_net("1x32", 4), x, y, method=METHOD)
    assert g.n_paths == 40 * 40 - sum(int((y == c).sum()) ** 2 for c in range(3))
    assert float(g.chi.abs().max()) == 0.0
    assert g.phi == 0.0 and g.fraction_folded == 0.0 and g.phi_max == 0.0


def test_matches_folding_batch_on_gathered_pairs():
    x, y = _data()
    net = _net()
    g = sf.global_folding(net, x, y, pairs="all", method=METHOD, batch_size=7)
    i, j = pair_plan(y, "all").indices()
    b = sf.folding_batch(net, x[i], x[j], method=METHOD)
    torch.testing.assert_close(g.chi, b.chi.double())
    torch.testing.assert_close(g.max_profile, b.max_profile.double())
    assert torch.equal(g.label_a, y[i]) and torch.equal(g.label_b, y[j])
    assert g.fraction_folded > 0  # a random 3-layer net folds some segments


def test_exact_first_layer_once_per_sample_gives_the_same_walks():
    # folding_pairs evaluates the first affine layer once per sample for the exact walk
    x, y = _data(30, 5)
    net = _net("3x6", 5)
    a = sf.global_folding(net, x, y, method="exact", per_layer=True)
    i, j = pair_plan(y, "inter-class").indices()
    b = sf.folding_batch(net, x[i], x[j], method="exact", per_layer=True)
    assert torch.equal(a.r1, b.r1) and torch.equal(a.r2, b.r2) and torch.equal(a.n_regions, b.n_regions)
    assert a.per_layer.keys() == b.per_layer.keys()


def test_aggregates_by_hand():
    x, y = _data(18, 3)
    net = _net("4x6")
    g = sf.global_folding(net, x, y, pairs="all", method=METHOD)
    chi = g.chi.numpy()
    mp = g.max_profile.numpy()
    assert g.phi == pytest.approx(float(np.median(chi[chi > 0])) if (chi > 0).any() else 0.0)
    assert g.phi_max == pytest.approx(float(np.median(mp[mp > 0])) if (mp > 0).any() else 0.0)
    assert g.fraction_folded == pytest.approx(float((chi > 0).mean()))
    assert np.all(mp >= chi - 1e-12)  # the profile's maximum is at least its last value
    rows = g.class_pairs()
    assert len(rows) == 9 and sum(r["n_paths"] for r in rows) == g.n_paths
    a, b = g.label_a.numpy(), g.label_b.numpy()
    pair_meds, pair_maxes = [], []
    for r in rows:
        m = (a == r["a"]) & (b == r["b"])
        assert r["n_paths"] == int(m.sum())
        assert r["fraction_folded"] == pytest.approx(float((chi[m] > 0).mean()))
        pair_meds.append(median_nonzero(mp[m]))
        pair_maxes.append(float(mp[m].max()))
        assert r["max_max_profile"] == pytest.approx(pair_maxes[-1])
    assert g.phi_max_p2 == pytest.approx(float(np.median(pair_meds)))
    assert g.phi_maxmax_p2 == pytest.approx(float(np.median(pair_maxes)))
    assert g.phi_maxmax_p2 >= g.phi_max_p2
    inter = g.inter_class()
    assert inter.n_paths == int((a != b).sum()) and bool((inter.label_a != inter.label_b).all())
    q = g.quantiles((0.5,))
    assert q["q50"] == pytest.approx(float(np.quantile(chi, 0.5)))


def test_single_paths_agree_with_sf_folding():
    x, y = _data(9, 3)
    net = _net()
    g = sf.global_folding(net, x, y, method=METHOD)
    i, j = pair_plan(y, "inter-class").indices()
    for k in range(0, g.n_paths, 5):
        f = sf.folding(net, x[i[k]], x[j[k]], method=METHOD)
        assert g.chi[k].item() == pytest.approx(f.chi)
        assert g.max_profile[k].item() == pytest.approx(f.max_profile)


def test_first_layer_bits_never_fold():
    # The first layer is affine along a segment: each of its bits flips at most once.
    x, y = _data(30, 4)
    g = sf.global_folding(_net("3x8", 4), x, y, method=METHOD, per_layer=True)
    names = list(g.per_layer)
    assert names == ["net.1", "net.3", "net.5"]
    assert float(g.per_layer["net.1"].max()) == 0.0
    summ = g.per_layer_summary()
    assert summ[0]["fraction_folded"] == 0.0 and len(summ) == 3


def _fake(chi, a=None, b=None):
    chi = torch.as_tensor(chi, dtype=torch.float64)
    n = chi.numel()
    a = torch.zeros(n, dtype=torch.int64) if a is None else torch.as_tensor(a)
    b = torch.ones(n, dtype=torch.int64) if b is None else torch.as_tensor(b)
    z = torch.zeros(n, dtype=torch.int64)
    return GlobalFolding(
        chi=chi,
        max_profile=chi,
        r1=z,
        r2=z,
        n_regions=z,
        label_a=a,
        label_b=b,
        method="bisect",
        pairs="inter-class",
        seed=0,
    )


def test_bootstrap_degenerate_and_seeded():
    g = _fake([0.25] * 50)
    ci = g.bootstrap(n_boot=50, seed=1)
    assert ci["phi"] == (0.25, 0.25) and ci["fraction_folded"] == (1.0, 1.0)
    rng = np.random.default_rng(0)
    vals = np.where(rng.random(300) < 0.5, 0.0, rng.random(300))
    h = _fake(vals, a=np.arange(300) % 3, b=(np.arange(300) + 1) % 3)
    c1 = h.bootstrap(n_boot=100, seed=3)
    c2 = h.bootstrap(n_boot=100, seed=3)
    assert c1 == c2
    for k, (lo, hi) in c1.items():
        assert 0.0 <= lo <= hi <= 1.0, k
    assert c1["fraction_folded"][0] <= h.fraction_folded <= c1["fraction_folded"][1]
    assert c1["mean"][0] <= h.mean <= c1["mean"][1]


def test_summary_json_keys():
    import json

    x, y = _data()
    g = sf.global_folding(_net(), x, y, method=METHOD, per_layer=True)
    d = json.loads(json.dumps(g.to_dict(ci=True, n_boot=20)))
    for k in ("phi", "phi_max", "fraction_folded", "n_paths", "class_pairs", "ci95", "per_layer", "phi_max_p2"):
        assert k in d
    assert d["n_paths"] == g.n_paths


def test_max_pairs_and_seed():
    x, y = _data(60, 3)
    net = _net()
    g = sf.global_folding(net, x, y, max_pairs=60, seed=1, method=METHOD)
    assert g.n_paths == 60  # 10 per ordered class pair
    g2 = sf.global_folding(net, x, y, max_pairs=60, seed=1, method=METHOD)
    assert torch.equal(g.chi, g2.chi)


def test_centroids_mode():
    pytest.importorskip("sklearn")
    x, y = _data(60, 3)
    g = sf.global_folding(_net(), x, y, pairs="centroids", n_clusters=4, method=METHOD)
    assert g.n_paths == 4 * 4 * 3 * 2 and g.n_clusters == 4


def test_uniform_method_converges_to_region_exact():
    x, y = _data(12, 3)
    net = _net()
    fine = sf.global_folding(net, x, y, method="uniform", steps=4000)
    exact = sf.global_folding(net, x, y, method=METHOD)
    assert torch.equal(fine.r1, exact.r1) and torch.equal(fine.r2, exact.r2)


def test_exact_agrees_with_bisect():
    try:
        from spacefold._core.walk import exact  # noqa: F401
    except ImportError:
        pytest.skip("exact walker not available")
    x, y = _data(20, 3)
    net = _net("4x8")
    a = sf.global_folding(net, x, y, method="exact")
    b = sf.global_folding(net, x, y, method=METHOD)
    assert torch.equal(a.r1, b.r1) and torch.equal(a.r2, b.r2)


def test_any_module_works():
    x, y = _data(12, 3)
    net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3)).double()
    g = sf.global_folding(net, x, y, method=METHOD)
    assert g.n_paths == 12 * 12 - 3 * 16


def test_bad_input():
    x, y = _data()
    net = _net()
    with pytest.raises(ValueError, match="pairs"):
        sf.global_folding(net, x, y, pairs="some", method=METHOD)
    with pytest.raises(ValueError, match="y must have shape"):
        sf.global_folding(net, x, y[:-1], method=METHOD)
    with pytest.raises(TypeError, match="x must be"):
        sf.global_folding(net, x.numpy(), y, method=METHOD)
    with pytest.raises(ValueError, match="method"):
        sf.global_folding(net, x, y, method="grid")


def test_class_pair_table_and_intervals_do_not_depend_on_the_order_of_the_paths():
    """Paths grouped by class pair (as a pair plan orders them) and the same paths shuffled give the same table,
    aggregates and bootstrap intervals (the groups are found without a permutation in the first case)."""
    g = torch.Generator().manual_seed(0)
    n = 5000
    la, lb = torch.randint(0, 4, (n,), generator=g), torch.randint(0, 4, (n,), generator=g)
    key = la * 4 + lb
    order = torch.argsort(key, stable=True)
    r1 = torch.randint(0, 4, (n,), generator=g)
    r2 = r1 + torch.randint(0, 4, (n,), generator=g)
    chi = torch.where(r2 > 0, 1 - r1 / r2.clamp(min=1), torch.zeros(())).double()
    mp = chi + torch.rand(n, generator=g, dtype=torch.float64) * (chi > 0)
    fields = dict(chi=chi, max_profile=mp, r1=r1, r2=r2, n_regions=r2 + 1, label_a=la, label_b=lb)
    shuffled = sf.GlobalFolding(**fields, method="exact", pairs="all", seed=0)
    grouped = sf.GlobalFolding(**{k: v[order] for k, v in fields.items()}, method="exact", pairs="all", seed=0)
    assert grouped._groups()[0] is None and shuffled._groups()[0] is not None
    assert grouped.class_pairs() == shuffled.class_pairs()
    a, b = grouped.summary(), shuffled.summary()
    assert a.keys() == b.keys()
    for k in a:  # (sums over all paths, as the mean and the spread, to the last bits of their order)
        assert a[k] == (pytest.approx(b[k], rel=1e-12) if isinstance(a[k], float) else b[k]), k
    # within a class pair both keep the paths' first order: the same draws resample the same paths
    assert grouped.bootstrap(n_boot=50) == shuffled.bootstrap(n_boot=50)


def test_large_results_summarised_on_threads_give_the_same_numbers(monkeypatch):
    """The class-pair table and the medians of a large result are computed on several threads: the same numbers
    as one after the other."""
    import spacefold._core.global_folding as gfm

    net = mlp("2x8", 6, 3, seed=0)
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(90, 6, generator=g), torch.arange(90) % 3
    r = sf.global_folding(net, x, y, pairs="all", workers=1)
    serial = r.to_dict(ci=True, n_boot=20)
    monkeypatch.setattr(gfm, "_THREADED_ROWS", 0)
    monkeypatch.setattr(gfm.parallel, "cpu_count", lambda: 4)
    assert r.to_dict(ci=True, n_boot=20) == serial
