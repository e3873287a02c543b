"""The exact walk on the building blocks of the CNNs people use (docs/method.md, 'The exact walk').

Residual blocks with BatchNorm and in-place ReLUs, strided convolutions, average and
adaptive average pooling, max pooling as in ResNet's stem, ``Flatten``, and ResNet-18 at
32x32. Oracles as in tests/test_exact.py: strict bisection and a dense uniform grid run
the model's own forward pass; the exact walk must equal bisection pattern for pattern,
contain the dense walk as a subsequence, and pass :func:`verify`'s certificate (every
piece checked at both ends). Pooling and activations the walk cannot follow are refused
with :class:`NotPiecewiseLinearError`, naming the layer and pointing to ``method='bisect'``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import spacefold as sf
from spacefold._core.folding import walk_batch
from spacefold._core.walk import _kernels
from spacefold._core.walk.exact import NotPiecewiseLinearError, exact_walks, verify
from spacefold.models.resnet import ResNet, basic_block
from spacefold.testing import is_subsequence

f64 = torch.float64


@pytest.fixture(params=["compiled", "torch"])
def backend(request, monkeypatch):
    """The compiled kernels (CPU, ReLU-type layers) and the plain torch operations."""
    if request.param == "torch":
        monkeypatch.setenv("SPACEFOLD_NUMBA", "0")
    elif not _kernels.available():
        pytest.skip("numba is not installed: no compiled kernels")
    return request.param


def _randomise_batchnorm(net: nn.Module, seed: int) -> nn.Module:
    """Running statistics and affine parameters away from 0 and 1 (so BatchNorm is not the identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(0.5 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + 1.5 * torch.rand(n, generator=g))
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(0.2 * torch.randn(n, generator=g))
    return net.eval()


def _check_against_oracles(net, x1, x2, steps=4000, bisect=True):
    """The exact walk against bisection, a dense grid, the certificate and the patterns at the ends."""
    ex = exact_walks(net, x1, x2, tol=1e-12)
    un = walk_batch(net, x1, x2, method="uniform", steps=steps)
    bi = walk_batch(net, x1, x2, method="bisect", tol=1e-12) if bisect else None
    for i in range(len(ex)):
        e, u = ex[i].patterns, un[i].patterns
        if bi is not None:
            assert torch.equal(e, bi[i].patterns), f"walk {i}: exact and bisection differ"
        assert is_subsequence(u, e), f"walk {i}: the dense walk is not a subsequence of the exact walk"
        if e.shape[0] == u.shape[0]:
            assert torch.equal(e, u)
    assert torch.equal(ex.start_bits, sf.activation_patterns(net, x1))
    ends = torch.stack([ex[i].patterns[-1] for i in range(len(ex))])
    assert torch.equal(ends, sf.activation_patterns(net, x2))
    res = verify(net, x1, x2, ex)
    assert res.ok and res.n_checked == int(ex.offsets[-1])
    return ex, un


def _pair(shape, n, seed, scale=1.0, dtype=f64):
    g = torch.Generator().manual_seed(seed)
    return (
        scale * torch.randn(n, *shape, generator=g, dtype=dtype),
        scale * torch.randn(n, *shape, generator=g, dtype=dtype),
    )


# --------------------------------------------------------------------------- blocks


class _SmallResNet(nn.Module):
    """ResNet's stem (convolution, BatchNorm, in-place ReLU, 3x3 stride-2 max pooling), an
    identity block, a strided block with a downsampling skip branch, adaptive average pooling."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.block1 = basic_block(4, 4, 1)
        self.block2 = basic_block(4, 6, 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.block2(self.block1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _small_resnet(seed):
    torch.manual_seed(seed)
    return _randomise_batchnorm(_SmallResNet().to(f64), seed)


@pytest.mark.parametrize("seed", [0, 1])
def test_residual_blocks_with_batchnorm_and_max_pooling_match_oracles(backend, seed):
    net = _small_resnet(seed)
    x1, x2 = _pair((2, 8, 8), 3, seed)
    ex, un = _check_against_oracles(net, x1, x2)
    # 4·64 stem bits, then 4·16 + 4·16 (identity block), 6·4 + 6·4 (strided block): the reused
    # in-place ReLU of each block gives one block of bits per call
    assert ex.n_neurons == 4 * 64 + 2 * 4 * 16 + 2 * 6 * 4
    assert (ex.n_regions >= un.n_regions).all() and int(ex.n_regions.min()) > 3


def test_a_block_without_batchnorm_statistics_is_refused():
    net = _small_resnet(0)
    net.block1.bn1 = nn.BatchNorm2d(4, track_running_stats=False).to(f64)
    with pytest.raises(NotPiecewiseLinearError, match="block1.bn1.*running statistics"):
        exact_walks(net, *_pair((2, 8, 8), 1, 0))


class _Strided(nn.Module):
    """Strided and non-square convolutions, average pooling with stride 1 and with
    count_include_pad=False, adaptive average pooling with overlapping windows (5 -> 3),
    1-D variants, Flatten and torch.flatten."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 3, 3, stride=2, padding=1)
        self.r1 = nn.ReLU()
        self.p1 = nn.AvgPool2d(2, stride=1)
        self.c2 = nn.Conv2d(3, 4, (2, 3), stride=(1, 2), padding=(1, 1))
        self.r2 = nn.LeakyReLU(0.1)
        self.p2 = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
        self.c3 = nn.Conv1d(4, 3, 3, stride=2, padding=1)
        self.r3 = nn.ReLU()
        self.p3 = nn.AdaptiveAvgPool1d(3)
        self.p4 = nn.AdaptiveAvgPool2d((3, 2))
        self.flat = nn.Flatten()
        self.fc = nn.Linear(3 * 3 + 4 * 3 * 2, 5)
        self.r4 = nn.ReLU()
        self.out = nn.Linear(5, 2)

    def forward(self, x):  # x: (batch, 1, 11, 11)
        h = self.p1(self.r1(self.c1(x)))  # (3, 6, 6) -> (3, 5, 5)
        h = self.r2(self.c2(h))  # (4, 6, 3)
        wide = self.p4(h)  # (4, 3, 2): windows of 6 -> 3 rows and 3 -> 2 columns overlap
        h = self.p2(h)  # (4, 3, 2)
        seq = self.r3(self.c3(h.flatten(2)))  # (3, 3)
        seq = self.p3(seq)
        h = torch.cat([torch.flatten(seq, 1), self.flat(wide)], 1)
        return self.out(self.r4(self.fc(h)))


def test_strided_convolutions_and_average_pooling_match_oracles(backend):
    torch.manual_seed(2)
    net = _Strided().to(f64).eval()
    x1, x2 = _pair((1, 11, 11), 4, 2, scale=2.0)
    ex, un = _check_against_oracles(net, x1, x2)
    assert (ex.n_regions >= un.n_regions).all() and int(ex.n_regions.max()) > 5


def test_adaptive_average_pooling_is_the_average_it_claims_to_be():
    # the oracle by hand: 5 -> 3 adaptive windows are [0, 2), [1, 4), [3, 5)
    x = torch.arange(5, dtype=f64).reshape(1, 1, 5)
    assert torch.equal(nn.AdaptiveAvgPool1d(3)(x).flatten(), torch.tensor([0.5, 2.0, 3.5], dtype=f64))


def test_in_place_relu_gives_the_walk_of_the_plain_relu(backend):
    net = _small_resnet(3)
    plain = _small_resnet(3)
    for m in plain.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    x1, x2 = _pair((2, 8, 8), 3, 3)
    a, b = exact_walks(net, x1, x2), exact_walks(plain, x1, x2)
    assert torch.equal(a.patterns, b.patterns) and torch.equal(a.offsets, b.offsets) and torch.equal(a.t, b.t)
    # the walk leaves the inputs as they were
    assert torch.equal(x1, _pair((2, 8, 8), 3, 3)[0])


class _InplaceOnSkip(nn.Module):
    """An in-place ReLU applied to a tensor the skip branch reads afterwards: the forward pass
    then adds the *rectified* tensor (the in-place write is visible through the skip)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 6)
        self.relu = nn.ReLU(inplace=True)
        self.f = nn.Linear(6, 6)
        self.act = nn.ReLU()
        self.out = nn.Linear(6, 2)

    def forward(self, x):
        h = self.lin(x)
        y = self.relu(h)
        return self.out(self.act(self.f(y) + h))


def test_an_in_place_relu_read_through_the_skip_branch_is_walked_as_the_model_runs():
    torch.manual_seed(5)
    net = _InplaceOnSkip().to(f64).eval()
    x1, x2 = _pair((3,), 6, 5, scale=2.0)
    ex, _ = _check_against_oracles(net, x1, x2)
    assert int(ex.n_regions.max()) > 3


# --------------------------------------------------------------------------- ResNet-18


def _resnet18(dtype, seed=0, num_classes=10):
    torch.manual_seed(seed)
    return _randomise_batchnorm(ResNet(num_classes=num_classes).to(dtype), seed)


def test_resnet18_walks_a_short_segment_against_a_dense_grid():
    net = _resnet18(f64)
    g = torch.Generator().manual_seed(0)
    x1 = torch.rand(1, 3, 32, 32, generator=g, dtype=f64)
    x2 = x1 + 2e-3 * torch.randn(1, 3, 32, 32, generator=g, dtype=f64)
    ex = exact_walks(net, x1, x2, tol=1e-12)
    assert ex.n_neurons == 64 * 16 * 16 + 4 * 64 * 8 * 8 + 4 * 128 * 4 * 4 + 4 * 256 * 2 * 2 + 4 * 512
    un = walk_batch(net, x1, x2, method="uniform", steps=300)
    e, u = ex[0].patterns, un[0].patterns
    assert is_subsequence(u, e) and e.shape[0] >= u.shape[0] >= 3
    assert torch.equal(e[0], sf.activation_patterns(net, x1)[0])
    assert torch.equal(e[-1], sf.activation_patterns(net, x2)[0])
    assert verify(net, x1, x2, ex).ok


def test_resnet18_in_float32_certifies_and_matches_float64():
    net32, net64 = _resnet18(torch.float32), _resnet18(f64)
    g = torch.Generator().manual_seed(1)
    x1 = torch.rand(2, 3, 32, 32, generator=g)
    x2 = x1 + 1e-3 * torch.randn(2, 3, 32, 32, generator=g)
    w32 = exact_walks(net32, x1, x2)
    assert verify(net32, x1, x2, w32).ok
    w64 = exact_walks(net64, x1.double(), x2.double())
    assert torch.equal(w32.n_regions, w64.n_regions) and int(w32.n_regions.min()) > 1
    f = sf.folding_batch(net32, x1, x2, method="exact")
    assert torch.equal(f.n_regions, w32.n_regions)


def _torchvision():
    """torchvision, or a skip: it is an optional extra, and a build that does not match the
    installed torch raises RuntimeError on import, not ImportError."""
    try:
        import torchvision.models
    except Exception as err:  # noqa: BLE001
        pytest.skip(f"torchvision is not importable here ({type(err).__name__}: {err})")
    return torchvision


def test_the_resnet_of_this_file_is_torchvisions_resnet18():
    tv = _torchvision().models.resnet18(weights=None, num_classes=10).eval()
    ours = ResNet(num_classes=10).eval()
    a, b = tv.state_dict(), ours.state_dict()
    assert list(a) == list(b) and all(a[k].shape == b[k].shape for k in a)
    _randomise_batchnorm(tv, 0)
    ours.load_state_dict(tv.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(tv(x), ours(x))


def test_torchvision_resnet18_walks_and_certifies():
    tv = _randomise_batchnorm(_torchvision().models.resnet18(weights=None), 0)
    g = torch.Generator().manual_seed(2)
    x1 = torch.rand(1, 3, 32, 32, generator=g)
    x2 = x1 + 1e-3 * torch.randn(1, 3, 32, 32, generator=g)
    ex = exact_walks(tv, x1, x2)
    assert verify(tv, x1, x2, ex).ok
    assert torch.equal(ex.start_bits, sf.activation_patterns(tv, x1))
    ours = ResNet(num_classes=1000).eval()
    ours.load_state_dict(tv.state_dict())
    again = exact_walks(ours, x1, x2)
    assert torch.equal(again.patterns, ex.patterns) and torch.equal(again.t, ex.t)


class _MorePools(nn.Module):
    """Max pooling with ceil_mode (partial windows at the edge), adaptive max pooling with
    overlapping windows in 1-D and 2-D, and 3-D max pooling."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 3, 3)
        self.r1 = nn.ReLU()
        self.p1 = nn.MaxPool2d(2, stride=2, ceil_mode=True)  # 7x7 -> 4x4, the last row and column of windows partial
        self.p2 = nn.AdaptiveMaxPool2d((3, 2))  # 4 -> 3 rows (overlapping windows), 4 -> 2 columns
        self.p3 = nn.AdaptiveMaxPool1d(4)  # 6 -> 4 (overlapping windows)
        self.c3 = nn.Conv3d(1, 2, (1, 2, 1))
        self.r3 = nn.LeakyReLU(0.1)
        self.p4 = nn.MaxPool3d((2, 2, 1), stride=1, ceil_mode=True)
        self.fc = nn.Linear(3 * 4 + 2 * 2 * 1 * 2, 2)

    def forward(self, x):  # x: (batch, 1, 9, 9)
        h = self.p2(self.p1(self.r1(self.c1(x))))  # (3, 3, 2)
        seq = self.p3(h.flatten(2))  # (3, 4)
        vol = self.p4(self.r3(self.c3(h.unsqueeze(1))))  # (2, 2, 1, 2)
        return self.fc(torch.cat([seq.flatten(1), vol.flatten(1)], 1))


def test_ceil_mode_adaptive_and_3d_max_pooling_match_oracles(backend):
    torch.manual_seed(6)
    net = _MorePools().to(f64).eval()
    x1, x2 = _pair((1, 9, 9), 4, 6, scale=2.0)
    ex, un = _check_against_oracles(net, x1, x2, steps=20_000)
    assert (ex.n_regions >= un.n_regions).all() and int(ex.n_regions.max()) > 5


def test_the_certificate_reads_what_an_in_place_activation_receives():
    """A walk that misses the kinks of a layer outside the pattern fails the certificate, whether
    that layer's ReLU works in place or not (the in-place one overwrites its input)."""
    results = []
    for inplace in (False, True):
        torch.manual_seed(0)
        net = (
            nn.Sequential(nn.Linear(2, 16), nn.ReLU(inplace=inplace), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2))
            .to(f64)
            .eval()
        )
        x1, x2 = _pair((2,), 20, 0, scale=3.0)
        coarse = walk_batch(net, x1, x2, method="uniform", steps=2, layers=["3"])
        results.append(verify(net, x1, x2, coarse, layers=["3"], mode="certificate"))
        assert verify(net, x1, x2, exact_walks(net, x1, x2, layers=["3"]), layers=["3"]).ok
    plain, inplace = results
    assert not plain.ok and plain.n_mismatched == inplace.n_mismatched
    assert torch.equal(plain.mismatches, inplace.mismatches)


def test_the_pooling_certificate_finds_the_windows_a_brute_force_check_finds():
    """Windows without an input that is their maximum at both ends of an interval, against a
    check by hand over every window's inputs (torch's unfold)."""
    from spacefold._core.walk.exact.verification import _pool_broken

    g = torch.Generator().manual_seed(7)
    mod = nn.MaxPool2d(3, stride=2, padding=1)
    m = 6
    x = torch.randn(2 * m, 3, 7, 7, generator=g, dtype=f64)
    x[m:] = x[:m] + 0.3 * torch.randn(m, 3, 7, 7, generator=g, dtype=f64)  # nearby ends: some windows keep their max
    got = _pool_broken(mod, x, m, lambda a, b: torch.zeros_like(a))
    cols = F.unfold(F.pad(x, (1, 1, 1, 1), value=-float("inf")), 3, stride=2)  # (2m, 3·9, 16)
    win = cols.reshape(2 * m, 3, 9, 16).permute(0, 1, 3, 2).reshape(2 * m, 3 * 16, 9)  # (2m, windows, inputs)
    top_a = win[:m] == win[:m].amax(2, keepdim=True)
    top_b = win[m:] == win[m:].amax(2, keepdim=True)
    want = (~(top_a & top_b).any(2)).sum(1)
    assert torch.equal(got, want) and int(want.sum()) > 0 and bool((want < 48).all())


# --------------------------------------------------------------------------- refusals


class _Functional(nn.Module):
    def __init__(self, pool):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.relu = nn.ReLU()
        self.pool = pool
        self.fc = nn.Linear(2 * 2 * 2, 2)

    def forward(self, x):
        h = self.pool(self.relu(self.conv(x)))
        if isinstance(h, tuple):  # values and indices (return_indices=True); never true while tracing
            h = h[0]
        return self.fc(torch.flatten(h, 1))


@pytest.mark.parametrize(
    "pool, named",
    [
        (nn.MaxPool2d(2, return_indices=True), "MaxPool2d with return_indices"),
        (nn.LPPool2d(2, 2), "LPPool2d"),
        (lambda h: F.max_pool2d(h, 2), "max pooling is called functionally .*max_pool2d.*use those"),
    ],
)
def test_pooling_the_walk_cannot_follow_is_refused_with_a_reason(pool, named):
    net = _Functional(pool).eval()
    x1, x2 = torch.zeros(1, 1, 6, 6), torch.ones(1, 1, 6, 6)
    with pytest.raises(NotPiecewiseLinearError, match=named) as err:
        exact_walks(net, x1, x2)
    assert "method='bisect'" in str(err.value)
    # bisection only runs the model, and walks it
    assert len(walk_batch(net, x1, x2, method="bisect")) == 1
