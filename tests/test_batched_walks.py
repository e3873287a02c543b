"""Walks of many segments share forward passes (bisection, the certified walk, the uniform grid):
the walks are identical to those of one segment at a time, whatever the size of the passes."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import spacefold as sf
from spacefold._core.patterns import PatternRecorder, eval_mode
from spacefold._core.walk import MAX_PASS_POINTS, MIN_PASS_POINTS, points_per_pass
from spacefold._core.walk.bisect import bisect_walks
from spacefold._core.walk.certified import CertifiedWalker
from spacefold._core.walk.certified.walker import CHUNK, MAX_CHUNK, interval_chunk
from spacefold.nn import SwiGLU


class TinyViT(nn.Module):
    def __init__(self, d=8, blocks=1):
        super().__init__()
        self.emb = nn.Linear(3, d)
        layer = nn.TransformerEncoderLayer(d, 2, 16, dropout=0.0, activation="gelu", batch_first=True)
        self.enc = nn.TransformerEncoder(layer, blocks, enable_nested_tensor=False)
        self.head = nn.Linear(d, 2)

    def forward(self, x):
        return self.head(self.enc(self.emb(x.view(-1, 4, 3))).mean(1))


def _models():
    torch.manual_seed(0)
    return [
        ("swiglu-mlp", nn.Sequential(SwiGLU(6, 10), nn.Linear(10, 8), SwiGLU(8, 8), nn.Linear(8, 3)).double(), 6),
        ("vit", TinyViT().double(), 12),
    ]


def _pairs(d, n, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, d, generator=g, dtype=torch.float64)


def _same(a, b):
    assert len(a) == len(b)
    for i in range(len(a)):
        assert torch.equal(a[i].patterns, b[i].patterns), i
        assert torch.equal(a[i].t, b[i].t), i


@pytest.mark.parametrize("method", ["bisect", "certified", "uniform"])
@pytest.mark.parametrize("name,model,d", _models(), ids=[m[0] for m in _models()])
def test_batched_walks_equal_the_per_path_loop(method, name, model, d):
    x1, x2 = _pairs(d, 5)
    kw = {"n0": 65} if method == "bisect" else {"steps": 300} if method == "uniform" else {}
    batched = sf.folding_batch(model, x1, x2, method=method, return_walks=True, **kw)
    loop = [
        sf.folding_batch(model, x1[i : i + 1], x2[i : i + 1], method=method, return_walks=True, **kw) for i in range(5)
    ]
    _same(batched.walks, [f.walks[0] for f in loop])
    assert torch.equal(batched.chi, torch.cat([f.chi for f in loop]))
    assert int(batched.n_regions.sum()) > 5  # the segments cross boundaries


@pytest.mark.parametrize("name,model,d", _models(), ids=[m[0] for m in _models()])
def test_pass_size_does_not_change_the_walks(name, model, d):
    x1, x2 = _pairs(d, 4, seed=2)
    model = model.eval()
    with torch.no_grad(), eval_mode(model):
        rec = PatternRecorder(model)
        with rec:
            big = bisect_walks(model, rec, x1, x2, tol=1e-6, tie_tol=0.0, n0=33, max_points=1 << 16)
            small = bisect_walks(model, rec, x1, x2, tol=1e-6, tie_tol=0.0, n0=33, max_points=7)
    _same(big, small)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no path runs out of its budget
        wide = CertifiedWalker(model, chunk=4096, points=1 << 16)(x1, x2)
        narrow = CertifiedWalker(model, chunk=3, points=5)(x1, x2)
    _same(wide, narrow)
    assert bool(wide.completeness().all())


def test_pass_sizes_follow_the_memory_budget(monkeypatch):
    assert points_per_pass(784, 60, 4, memory=1 << 30) == min(MAX_PASS_POINTS, (1 << 29) // (4 * (784 + 480)))
    assert points_per_pass(784, 60, 4, memory=1 << 10) == MIN_PASS_POINTS
    assert points_per_pass(1, 1, 4, memory=1 << 40) == MAX_PASS_POINTS
    assert interval_chunk(64, 100, memory=1 << 10) == CHUNK
    assert interval_chunk(64, 100, memory=1 << 40) == MAX_CHUNK
    monkeypatch.setenv("SPACEFOLD_MEMORY", str(1 << 26))
    assert points_per_pass(784, 60, 4) == (1 << 25) // (4 * (784 + 480))


def _recording_groups(monkeypatch):
    """Patch the bisection of one group of segments to record each group's size."""
    import spacefold._core.walk.bisect as bisect_module

    sizes: list[int] = []
    inner = bisect_module._bisect_group

    def recorded(model, recorder, x1, x2, **kw):
        sizes.append(x1.shape[0])
        return inner(model, recorder, x1, x2, **kw)

    monkeypatch.setattr(bisect_module, "_bisect_group", recorded)
    return sizes


def test_group_size_fits_the_stored_samples_in_memory():
    from spacefold._core.walk.bisect import SAMPLE_COPIES, SAMPLE_OVERHEAD, group_size

    assert (SAMPLE_COPIES, SAMPLE_OVERHEAD) == (4, 40)
    # 1000 samples of 60 bits: 4 copies x 1000 x (60 + 40) bytes = 400000 bytes per segment
    assert group_size(1000, 60, 400000 * 7) == 7
    assert group_size(1000, 60, 400000 * 7 + 399999) == 7
    assert group_size(1000, 60, 399999) == 1  # never fewer than one segment
    # a 6-block ViT on MNIST: ~7000 samples of 6144 bits per segment, half of the 1 GiB default budget
    assert group_size(7000, 6144, 1 << 29) == (1 << 29) // (4 * 7000 * 6184) == 3


def bisect_module_group(model, rec, x1, x2):
    """Each segment's number of samples, all walked at once."""
    import spacefold._core.walk.bisect as bisect_module

    return bisect_module._bisect_group(
        model, rec, x1, x2, tol=1e-6, tie_tol=0.0, n0=33, stop="strict", max_points=65536, max_rounds=64
    )[1]


def test_bisection_in_groups_gives_the_same_walks(monkeypatch):
    torch.manual_seed(0)
    model = TinyViT(blocks=2).double().eval()
    x1, x2 = _pairs(12, 6, seed=3)
    sizes = _recording_groups(monkeypatch)
    with torch.no_grad(), eval_mode(model):
        rec = PatternRecorder(model)
        with rec:
            whole = bisect_walks(model, rec, x1, x2, tol=1e-6, tie_tol=0.0, n0=33)
            assert sizes == [6]
            sizes.clear()
            ones = bisect_walks(model, rec, x1, x2, tol=1e-6, tie_tol=0.0, n0=33, memory=1)
            assert sizes == [1] * 6
            sizes.clear()
            # room for two segments of the most samples: 4 copies x samples x (bits + 40 bytes) each
            samples = bisect_module_group(model, rec, x1, x2)
            n_bits = whole.patterns.shape[1]
            memory = 2 * 4 * int(samples.max()) * (n_bits + 40)
            sizes.clear()
            pairs = bisect_walks(model, rec, x1, x2, tol=1e-6, tie_tol=0.0, n0=33, memory=memory)
            # each group after the first: as many segments as the most samples of one segment so far allow
            expected, start = [1], 1
            while start < 6:
                k = memory // (4 * int(samples[:start].max()) * (n_bits + 40))
                expected.append(min(k, 6 - start))
                start += k
            assert sizes == expected and len(sizes) > 2 and max(sizes) >= 2
            sizes.clear()
            roomy = bisect_walks(model, rec, x1, x2, tol=1e-6, tie_tol=0.0, n0=33, memory=1 << 40)
            assert sizes == [1, 5]
    assert int(whole.n_regions.sum()) > 12  # the segments cross boundaries
    for other in (ones, pairs, roomy):
        _same(whole.walks(), other.walks())
        assert torch.equal(whole.offsets, other.offsets)


def test_small_memory_budget_walks_in_several_chunks_with_identical_results(monkeypatch):
    torch.manual_seed(0)
    model = TinyViT(blocks=2).double().eval()
    x1, x2 = _pairs(12, 5, seed=4)
    sizes = _recording_groups(monkeypatch)
    roomy = sf.folding_batch(model, x1, x2, method="bisect", n0=33, return_walks=True, workers=1)
    assert sizes == [1, 4]
    sizes.clear()
    monkeypatch.setenv("SPACEFOLD_MEMORY", "4096")  # room for no more than one segment at a time
    import spacefold._core.pipeline as pipeline_module

    trims: list[int] = []
    monkeypatch.setattr(pipeline_module, "release_freed_memory", lambda: trims.append(len(sizes)))
    small = sf.folding_batch(model, x1, x2, method="bisect", n0=33, return_walks=True, workers=1)
    assert sizes == [1] * 5
    assert trims == [1, 2, 3, 4, 5]  # the allocator's free memory is given back after every chunk
    monkeypatch.delenv("SPACEFOLD_MEMORY")
    loop = [
        sf.folding_batch(model, x1[i : i + 1], x2[i : i + 1], method="bisect", n0=33, return_walks=True, workers=1)
        for i in range(5)
    ]
    _same(roomy.walks, small.walks)
    _same(roomy.walks, [f.walks[0] for f in loop])
    for f in ("chi", "n_regions", "max_profile"):
        assert torch.equal(getattr(roomy, f), getattr(small, f))
        assert torch.equal(getattr(roomy, f), torch.cat([getattr(g, f) for g in loop]))
