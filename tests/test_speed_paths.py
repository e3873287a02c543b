"""The counts of exact walks redone in float64 (max pooling unresolved in the model's dtype)
reach the user through every entry point: ``FoldingBatch.n_float64`` / ``n_unresolved`` of
``folding_batch`` and ``folding_pairs``, and ``GlobalFolding.info`` (so ``to_dict`` and
``spacefold measure --json``), equal to the counts of the walks themselves."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import spacefold as sf
from spacefold._core.pairs import pair_plan
from spacefold._core.walk import exact as ex
from spacefold._core.walk.exact import exact_walks


@pytest.fixture(params=["compiled", "torch"])
def backend(request, monkeypatch):
    monkeypatch.setenv("SPACEFOLD_NUMBA", "1" if request.param == "compiled" else "0")
    return request.param


def _pool_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU())


@pytest.fixture
def unresolvable(monkeypatch):
    """Max pooling without a tie margin or merging in float32: some walks must be redone in float64."""
    monkeypatch.setattr(ex.maxpool, "_POOL_RTOL", 0)
    monkeypatch.setattr(ex.driver, "_dtype_tol", lambda dtype: 0.0)


def test_folding_batch_and_pairs_count_the_walks_redone_in_float64(backend, unresolvable):
    net = _pool_net()
    g = torch.Generator().manual_seed(1)
    x1, x2 = torch.randn(60, 1, 8, 8, generator=g), torch.randn(60, 1, 8, 8, generator=g)
    walks = [exact_walks(net, x1[k : k + 20], x2[k : k + 20]) for k in range(0, 60, 20)]
    n64 = sum(w.n_float64 for w in walks)
    assert 0 < n64 <= 60
    fb = sf.folding_batch(net, x1, x2, method="exact", batch_size=20)
    assert (fb.n_float64, fb.n_unresolved) == (n64, 0)
    # the same segments as pairs of rows of one table
    x = torch.cat([x1, x2])
    i, j = torch.arange(60), torch.arange(60, 120)
    fp = sf.folding_pairs(net, x, i, j, method="exact", batch_size=20)
    assert (fp.n_float64, fp.n_unresolved) == (n64, 0)
    assert torch.equal(fp.n_regions, fb.n_regions)


def test_global_folding_reports_the_counts_in_info_and_to_dict(backend, unresolvable):
    net = _pool_net()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(40, 1, 8, 8, generator=g)
    y = torch.arange(40) % 4
    res = sf.global_folding(net, x, y, pairs="inter-class", max_pairs=50, seed=0)
    assert res.info["n_float64"] > 0 and res.info["n_unresolved"] == 0
    d = res.to_dict()
    assert d["n_float64"] == res.info["n_float64"] and d["n_unresolved"] == 0
    # the same pairs walked through folding_pairs count the same walks
    i, j = pair_plan(y, "inter-class", max_pairs=50, seed=0).indices()
    assert sf.folding_pairs(net, x, i, j, method="exact").n_float64 == res.info["n_float64"]


def test_the_counts_are_zero_without_a_redo_and_absent_for_sampled_walks(backend):
    net = _pool_net()
    g = torch.Generator().manual_seed(3)
    x1, x2 = torch.randn(10, 1, 8, 8, generator=g), torch.randn(10, 1, 8, 8, generator=g)
    fb = sf.folding_batch(net, x1, x2, method="exact")
    assert (fb.n_float64, fb.n_unresolved) == (0, 0)
    x, y = torch.cat([x1, x2]), torch.arange(20) % 2
    info = sf.global_folding(net, x, y, max_pairs=10).info
    assert (info["n_float64"], info["n_unresolved"]) == (0, 0)
    assert "n_float64" not in sf.global_folding(net, x, y, max_pairs=10, method="uniform", steps=64).to_dict()
