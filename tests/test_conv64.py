"""The float64 convolution of the exact walk (``spacefold._core.walk.exact.conv64``) against torch's ``F.conv2d``.

Oracles: small integer inputs and weights, whose every product and partial sum is exact in float64, where
both must agree bit for bit; random inputs, where both are within the round-off bound of a dot product of
``K`` terms, ``gamma_K sum(|w| |x|)``, of the exact value (so within twice that of each other; in practice
two units of round-off of ``sum(|w| |x|)``); and the exact walk of small CNNs in float64, which must be
the same (patterns, and t to round-off) whichever way its convolutions are computed.
"""

from __future__ import annotations

from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn

from spacefold._core.walk.exact import conv64, exact_walks, verify

f64 = torch.float64
U = 2.0**-53  # float64's unit round-off


def _bound(s, k: int):
    """Twice gamma_k times ``s``: how far apart two float64 sums of ``k`` terms whose absolute values sum to ``s``
    can be (each within gamma_k s of the exact sum)."""
    return 2 * k * U / (1 - k * U) * s


@st.composite
def _convs(draw):
    """A convolution's arguments with a valid output size: (input shape, weight shape, stride, padding,
    dilation, groups, bias)."""
    g = draw(st.integers(1, 3))
    cg, og = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    h, w = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    assume(h + 2 * padding[0] >= dilation[0] * (kh - 1) + 1 and w + 2 * padding[1] >= dilation[1] * (kw - 1) + 1)
    n = draw(st.integers(2, 5))
    return (n, g * cg, h, w), (g * og, cg, kh, kw), stride, padding, dilation, g, draw(st.booleans())


def _ways(x, weight, bias, stride, padding, dilation, groups):
    """The result of each way :mod:`conv64` computes a convolution: by its own choice, one product per
    chunk of one or two rows, torch's convolution on chunks of one row, and the product with the lowered matrix,
    made and then kept."""
    args = (weight, bias, stride, padding, dilation, groups)
    out = {"chosen": conv64.conv2d(x, *args)}
    with mock.patch.object(conv64, "_GEMM_BYTES", 1), mock.patch.object(conv64, "_CHUNK_BYTES", 1):
        out["gemm"] = conv64._conv_gemm(x, *args)
        out["chunks"] = conv64._conv_chunks(x, *args)
    out["dense"] = conv64._conv_dense(x, *args)
    out["dense, kept"] = conv64._conv_dense(x, *args)
    return out


@settings(max_examples=150, deadline=None)
@given(conv=_convs(), seed=st.integers(0, 2**16))
def test_on_integers_every_way_equals_torch_bit_for_bit(conv, seed):
    shape, wshape, stride, padding, dilation, groups, has_bias = conv
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(-8, 9, shape, generator=g).to(f64)
    weight = torch.randint(-8, 9, wshape, generator=g).to(f64)
    bias = torch.randint(-8, 9, wshape[:1], generator=g).to(f64) if has_bias else None
    ref = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    for way, y in _ways(x, weight, bias, stride, padding, dilation, groups).items():
        assert y.shape == ref.shape and y.dtype == f64 and y.is_contiguous(), way
        assert torch.equal(y, ref), way


@settings(max_examples=150, deadline=None)
@given(conv=_convs(), seed=st.integers(0, 2**16), scale=st.sampled_from([1e-3, 1.0, 1e5]))
def test_on_random_floats_every_way_is_within_the_round_off_of_a_dot_product_of_torch(conv, seed, scale):
    shape, wshape, stride, padding, dilation, groups, has_bias = conv
    g = torch.Generator().manual_seed(seed)
    x = scale * torch.randn(shape, generator=g, dtype=f64)
    weight = torch.randn(wshape, generator=g, dtype=f64)
    bias = torch.randn(wshape[:1], generator=g, dtype=f64) if has_bias else None
    ref = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    # sum(|w| |x|) (+ |b|) at every output, and the bound 2 gamma_K of two sums of K terms
    s = F.conv2d(x.abs(), weight.abs(), None if bias is None else bias.abs(), stride, padding, dilation, groups)
    bound = _bound(s, wshape[1] * wshape[2] * wshape[3] + 1)
    for way, y in _ways(x, weight, bias, stride, padding, dilation, groups).items():
        assert y.shape == ref.shape and y.is_contiguous(), way
        err = (y - ref).abs()
        assert bool((err <= bound).all()), f"{way}: {float((err / s.clamp_min(1e-300)).max()) / U:.2f} u"


def test_the_way_is_chosen_by_the_number_of_output_positions():
    """The lowered matrix on maps every output sees whole (ResNet-18's last stages at 32x32), one product of
    unfolded rows where outputs are few, torch's convolution in chunks on larger maps, torch's own call for 1x1
    kernels on them, for anything not float64 on the CPU, and where gradients are recorded."""
    w3, w1 = torch.randn(8, 8, 3, 3, dtype=f64), torch.randn(8, 8, 1, 1, dtype=f64)
    small, large = torch.randn(64, 8, 2, 2, dtype=f64), torch.randn(512, 8, 16, 16, dtype=f64)
    with torch.no_grad():
        assert conv64._plan(small, w3, None, 1, 1, 1, 1) == "dense"  # 2x2 outputs, each sees the 2x2 map
        assert conv64._plan(small, w3[:, :4], None, 1, 1, 1, 2) == "gemm"  # groups
        assert conv64._plan(small, w1, None, 1, 0, 1, 1) == "gemm"  # 1 tap, 4 input positions
        assert conv64._plan(torch.randn(64, 8, 4, 4, dtype=f64), w3, None, 2, 1, 1, 1) == "gemm"  # 2x2 of 4x4
        assert conv64._plan(large, w3, None, 2, 1, 1, 1) == "chunks"  # 8x8 outputs
        assert conv64._plan(large, w3, None, 1, "same", 1, 1) == "chunks"
        assert conv64._plan(large, w1, None, 1, 0, 1, 1) == "torch"
        assert conv64._plan(large[:1], w3, None, 1, 1, 1, 1) == "torch"  # one row
        assert conv64._plan(small.float(), w3.float(), None, 1, 1, 1, 1) == "torch"
        assert conv64._plan(small, w3, None, 1, "same", 1, 1) == "dense"
        assert conv64._plan(small, w3, None, 2, "same", 1, 1) == "torch"  # torch's error
    assert conv64._plan(small, w3.requires_grad_(), None, 1, 1, 1, 1) == "torch"


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths:UserWarning")
def test_string_paddings_and_errors_are_torchs():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, 9, 7, generator=g, dtype=f64)
    for k in [(3, 3), (2, 4)]:  # 'same' with an even kernel pads one side more
        w = torch.randn(5, 3, *k, generator=g, dtype=f64)
        for padding in ["same", "valid"]:
            ref = F.conv2d(x, w, None, 1, padding)
            s = F.conv2d(x.abs(), w.abs(), None, 1, padding)
            for way, y in _ways(x, w, None, 1, padding, 1, 1).items():
                assert y.shape == ref.shape and bool(((y - ref).abs() <= _bound(s, 27)).all()), (way, k, padding)
            # the two sides of 'same': integers, exact sums
            xi, wi = x.round(), (4 * w).round()
            for way, y in _ways(xi, wi, None, 1, padding, 1, 1).items():
                assert torch.equal(y, F.conv2d(xi, wi, None, 1, padding)), (way, k, padding)
    bad = torch.randn(6, 4, 3, 3, dtype=f64)  # 4 input channels, the input has 3
    with pytest.raises(RuntimeError) as ours, torch.no_grad():
        conv64.conv2d(x, bad, None, 1, 1)
    with pytest.raises(RuntimeError) as theirs:
        F.conv2d(x, bad, None, 1, 1)
    assert str(ours.value) == str(theirs.value)


def test_the_kept_lowered_matrix_follows_its_weights():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(-8, 9, (5, 4, 2, 2), generator=g).to(f64)
    w = torch.randint(-8, 9, (3, 4, 3, 3), generator=g).to(f64)
    b = torch.randint(-8, 9, (3,), generator=g).to(f64)
    for step in range(3):
        with torch.no_grad():
            assert conv64._plan(x, w, b, 1, 1, 1, 1) == "dense"
            assert torch.equal(conv64.conv2d(x, w, b, 1, 1), F.conv2d(x, w, b, 1, 1)), step
            w.add_(1.0) if step == 0 else b.mul_(2.0)  # in place: the same tensors, new versions
    w2 = w.clone()  # another tensor, other values, the same shape
    w2[0] = 0.0
    with torch.no_grad():
        assert torch.equal(conv64.conv2d(x, w2, b, 1, 1), F.conv2d(x, w2, b, 1, 1))
        assert torch.equal(conv64.conv2d(x[:, :, :1, :1], w, b, 1, 1), F.conv2d(x[:, :, :1, :1], w, b, 1, 1))


# --------------------------------------------------------------------------- the exact walk


class _SmallCNN(nn.Module):
    """Maps of 8x8 down to 1x1 (both ways of :mod:`conv64`), grouped, strided, dilated and 'same' convolutions,
    a functional convolution, a residual sum."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(2, 6, 3, padding=1)
        self.c2 = nn.Conv2d(6, 6, 3, padding="same", dilation=2, groups=3)
        self.c3 = nn.Conv2d(6, 8, 3, stride=2, padding=1, bias=False)  # 4x4
        self.w4 = nn.Parameter(0.3 * torch.randn(8, 8, 3, 3))
        self.c5 = nn.Conv2d(8, 8, 3, stride=2, padding=1)  # 2x2
        self.c6 = nn.Conv2d(8, 8, 3, padding=1)
        self.c7 = nn.Conv2d(8, 10, 3, stride=2, padding=1)  # 1x1
        self.c8 = nn.Conv2d(10, 10, 3, padding=1)
        self.fc = nn.Linear(10, 3)

    def forward(self, x):
        x = torch.relu(self.c1(x))
        x = torch.relu(self.c2(x) + x)
        x = torch.relu(self.c3(x))
        x = torch.relu(F.conv2d(x, self.w4, None, 1, 1))
        x = torch.relu(self.c5(x))
        x = torch.relu(self.c6(x) + x)
        x = torch.relu(self.c7(x))
        x = torch.relu(self.c8(x))
        return self.fc(x.flatten(1))


@pytest.mark.parametrize("seed", [0, 1])
def test_the_exact_walk_in_float64_is_the_same_whichever_way_convolutions_are_computed(seed):
    torch.manual_seed(seed)
    net = _SmallCNN().to(f64).eval()
    g = torch.Generator().manual_seed(seed)
    x1 = torch.randn(3, 2, 8, 8, generator=g, dtype=f64)
    x2 = torch.randn(3, 2, 8, 8, generator=g, dtype=f64)
    calls = []
    plan = conv64._plan

    def counted(*a):
        calls.append(plan(*a))
        return calls[-1]

    with mock.patch.object(conv64, "_plan", counted):
        chosen = exact_walks(net, x1, x2)
    assert {"dense", "gemm", "torch"} <= set(calls)
    assert verify(net, x1, x2, chosen).ok  # against the model's own forward passes
    walks = {"chosen": chosen}
    for way in ["torch", "gemm", "chunks", "dense"]:
        with mock.patch.object(conv64, "_plan", lambda *a, w=way: w), mock.patch.object(conv64, "_CHUNK_BYTES", 1):
            walks[way] = exact_walks(net, x1, x2)
    ref = walks["torch"]
    assert int(ref.n_regions.min()) > 10
    for way, w in walks.items():
        assert torch.equal(w.n_regions, ref.n_regions), way
        for i in range(len(ref)):
            assert torch.equal(w[i].patterns, ref[i].patterns), (way, i)
            assert torch.allclose(w[i].t, ref[i].t, rtol=0, atol=1e-12), (way, i)
