"""Float64 2-d convolutions of breakpoint rows on the CPU (the exact walk's float64 walks of CNNs).

oneDNN, which computes torch's float32 convolutions on the CPU, takes no float64; torch's float64 path
(``slow_conv2d``) first builds the im2col matrix of the whole batch in new memory (input channels x kernel
taps x output positions per input: 9 times the input for a 3x3 kernel, out of every cache at the walk's
hundreds to thousands of rows), then runs one matrix product per input (output channels x taps by taps x
output positions). Where a map has few output positions (ResNet-18's last two stages at 32x32: 2x2 and 1x1)
that product is a matrix-vector product which reads all the weights once per row. :func:`conv2d` computes the
same convolution in three other ways, chosen by shape (``benchmarks/bench_conv64.py`` measures them):

- ``"dense"``, maps so small that every output position sees the whole map (ResNet-18's 2x2 and 1x1 maps at
  32x32, no groups): the convolution as one matrix (input values x output values, each entry a weight or 0),
  kept per weight tensor while it is unchanged (``_KEPT_BYTES`` in all), and one product with it; the 3x3
  kernel on a 2x2 map then multiplies 4 live taps per output, not 9;
- ``"gemm"``, few output positions (up to ``_GEMM_MAX_POSITIONS``): the unfolded rows of many inputs in one
  matrix product with the weights (MKL's or OpenBLAS's ``dgemm``), per group, in chunks of ``_GEMM_BYTES``;
  kernel taps that read only padding at every output position are left out, their products being exact zeros;
- ``"chunks"``, larger maps: torch's own convolution on chunks of rows whose im2col matrix is
  ``_CHUNK_BYTES``, which stays in the cache (the same operations on each row as one call on all rows).

The nonzero products are the same; only the order of their sums differs from torch's, so results differ at float64
round-off (both are within the usual bound of a dot product, ``K u sum(|w| |x|)`` for ``K`` terms). Anything
else (float32 and lower, other devices, ``padding_mode`` other than zeros, unbatched inputs) is torch's
``F.conv2d``; a chunk's memory is bounded, so the walk's budget (``SPACEFOLD_MEMORY``) is not exceeded by
an im2col matrix kernel-size times the layer's input, as it can be with torch's own float64 path.
"""

from __future__ import annotations

import threading
import weakref

import torch
import torch.nn.functional as F
from torch import Tensor

# im2col bytes of torch's float64 path per chunk of rows ("chunks"), kept in a 2 MiB L2 cache (bench_conv64.py,
# 256 and 1,024 rows: 1.7-3.8x torch's call on all rows on the 3x3 convolutions of bench_cnn.py's VGG-style net,
# 1.0-2.5x on those of ResNet-18's first two stages at 32x32, 1.7x on its 7x7 stem)
_CHUNK_BYTES = 1 << 20
# unfolded bytes per matrix product ("gemm")
_GEMM_BYTES = 4 << 20
# the most output positions per input taken by "gemm" (bench_conv64.py: 1.4-2.3x torch's at 2x2 and 3x3 outputs
# with every tap live, 9-76x at ResNet-18's 1x1 outputs at 32x32; at 4x4 outputs 1.2-1.3x, the chunks 1.4x;
# 1x1 kernels on 4x4 and larger maps are torch's, to which a product was 0.4-0.5x)
_GEMM_MAX_POSITIONS = 9
# the largest lowered matrix of one convolution ("dense"), and of all those kept (bench_conv64.py: 2-4x the
# product of unfolded rows on 2x2 and 1x1 maps, level with or faster than torch's float32)
_DENSE_BYTES = 16 << 20
_KEPT_BYTES = 64 << 20
_KEPT: dict = {}
_KEPT_LOCK = threading.Lock()  # sub-batches may be walked in threads


def _pair(v) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    t = tuple(int(a) for a in v)
    return (t[0], t[0]) if len(t) == 1 else (t[0], t[1])


def _pads(padding, k: int, d: int, axis: int) -> tuple[int, int]:
    """Padding before and after along one axis (torch's: 'same' pads one more after when the total is odd)."""
    if padding == "valid":
        return (0, 0)
    if padding == "same":
        total = d * (k - 1)
        return (total // 2, total - total // 2)
    p = _pair(padding)[axis]
    return (p, p)


def _out_size(n: int, k: int, s: int, pads: tuple[int, int], d: int) -> int:
    return (n + pads[0] + pads[1] - d * (k - 1) - 1) // s + 1


def _live_taps(n: int, k: int, s: int, before: int, d: int, n_out: int) -> tuple[int, int]:
    """First and last kernel tap (along one axis) that reads the input, not padding, at some output."""
    live = [i for i in range(k) if any(0 <= o * s - before + i * d < n for o in range(n_out))]
    return (live[0], live[-1]) if live else (k // 2, k // 2)


def _plan(x: Tensor, weight: Tensor, bias, stride, padding, dilation, groups) -> str:
    """``"gemm"``, ``"chunks"`` or ``"torch"``: how :func:`conv2d` computes this convolution (see the module)."""
    tensors = (x, weight) if bias is None else (x, weight, bias)
    if not (
        all(isinstance(t, Tensor) and t.dtype == torch.float64 and t.device.type == "cpu" for t in tensors)
        and x.dim() == 4
        and weight.dim() == 4
        and x.shape[0] > 1
        and isinstance(groups, int)
        and groups >= 1
        and x.shape[1] == weight.shape[1] * groups
        and weight.shape[0] % groups == 0
        and (bias is None or bias.shape == (weight.shape[0],))
    ):
        return "torch"  # what torch computes, or its error
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return "torch"
    kh, kw = weight.shape[2:]
    (sh, sw), (dh, dw) = _pair(stride), _pair(dilation)
    if isinstance(padding, str) and (padding not in ("same", "valid") or (padding == "same" and (sh, sw) != (1, 1))):
        return "torch"  # torch's error
    ho = _out_size(x.shape[2], kh, sh, _pads(padding, kh, dh, 0), dh)
    wo = _out_size(x.shape[3], kw, sw, _pads(padding, kw, dw, 1), dw)
    if ho < 1 or wo < 1:
        return "torch"
    if ho * wo <= _GEMM_MAX_POSITIONS:
        if groups == 1 and x.shape[1] * x.shape[2] * x.shape[3] * weight.shape[0] * ho * wo * 8 <= _DENSE_BYTES:
            # the lowered matrix multiplies no more than the live taps do
            i0, i1 = _live_taps(x.shape[2], kh, sh, _pads(padding, kh, dh, 0)[0], dh, ho)
            j0, j1 = _live_taps(x.shape[3], kw, sw, _pads(padding, kw, dw, 1)[0], dw, wo)
            if x.shape[2] * x.shape[3] <= (i1 - i0 + 1) * (j1 - j0 + 1):
                return "dense"
        return "gemm"
    if kh * kw > 1 and x.shape[0] * x.shape[1] * kh * kw * ho * wo * 8 > _CHUNK_BYTES:
        return "chunks"
    return "torch"


def conv2d(
    input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0, dilation=1, groups: int = 1
) -> Tensor:
    """``F.conv2d(input, weight, bias, stride, padding, dilation, groups)`` (the same arguments), computed
    faster for float64 on the CPU (see the module); torch's call otherwise."""
    how = _plan(input, weight, bias, stride, padding, dilation, groups)
    if how == "dense":
        return _conv_dense(input, weight, bias, stride, padding, dilation, groups)
    if how == "gemm":
        return _conv_gemm(input, weight, bias, stride, padding, dilation, groups)
    if how == "chunks":
        return _conv_chunks(input, weight, bias, stride, padding, dilation, groups)
    return F.conv2d(input, weight, bias, stride, padding, dilation, groups)


def _conv_chunks(x: Tensor, weight: Tensor, bias, stride, padding, dilation, groups) -> Tensor:
    """torch's convolution on chunks of rows whose im2col matrix is about ``_CHUNK_BYTES``."""
    n = x.shape[0]
    first = F.conv2d(x[:1], weight, bias, stride, padding, dilation, groups)
    per_row = x.shape[1] * weight.shape[2] * weight.shape[3] * first.shape[2] * first.shape[3] * 8
    rows = max(1, _CHUNK_BYTES // per_row)
    out = first.new_empty((n,) + tuple(first.shape[1:]))
    out[:1] = first
    for i in range(1, n, rows):
        out[i : i + rows] = F.conv2d(x[i : i + rows], weight, bias, stride, padding, dilation, groups)
    return out


def _conv_gemm(x: Tensor, weight: Tensor, bias, stride, padding, dilation, groups: int) -> Tensor:
    """The unfolded rows of many inputs in one product with the weights, per group (few output positions)."""
    n, c, h, w = x.shape
    co, cg, kh, kw = weight.shape
    (sh, sw), (dh, dw) = _pair(stride), _pair(dilation)
    (t, b), (lf, rt) = _pads(padding, kh, dh, 0), _pads(padding, kw, dw, 1)
    ho, wo = _out_size(h, kh, sh, (t, b), dh), _out_size(w, kw, sw, (lf, rt), dw)
    # taps that read only padding contribute exact zeros: left out, with the padding that keeps the others aligned
    i0, i1 = _live_taps(h, kh, sh, t, dh, ho)
    j0, j1 = _live_taps(w, kw, sw, lf, dw, wo)
    t, b, lf, rt = t - i0 * dh, b - (kh - 1 - i1) * dh, lf - j0 * dw, rt - (kw - 1 - j1) * dw  # < 0: a crop
    weight = weight[:, :, i0 : i1 + 1, j0 : j1 + 1]
    kh, kw = i1 - i0 + 1, j1 - j0 + 1
    g, k, pos = groups, cg * kh * kw, ho * wo
    wg = weight.reshape(g, co // g, k).transpose(1, 2)  # g, k, co/g
    bg = None if bias is None else bias.view(g, 1, co // g)
    rows = max(1, _GEMM_BYTES // (c * kh * kw * pos * 8))
    out = x.new_empty(n, co, ho, wo)
    for r in range(0, n, rows):
        xi = x[r : r + rows]
        m = xi.shape[0]
        if t == b >= 0 and lf == rt >= 0:
            pad = (t, lf)
        else:
            xi, pad = F.pad(xi, (lf, rt, t, b)), (0, 0)
        if kh == kw == sh == sw == 1 and pad == (0, 0):
            cols = xi.reshape(m, c, pos)
        else:
            cols = F.unfold(xi, (kh, kw), dilation=(dh, dw), padding=pad, stride=(sh, sw))  # m, c*kh*kw, pos
        a = cols.view(m, g, k, pos).permute(1, 0, 3, 2).reshape(g, m * pos, k)
        o = torch.bmm(a, wg) if bg is None else torch.baddbmm(bg, a, wg)  # g, m*pos, co/g
        out[r : r + m].view(m, g, co // g, ho, wo).copy_(o.view(g, m, ho, wo, co // g).permute(1, 0, 4, 2, 3))
    return out


def _lowered(x: Tensor, weight: Tensor, bias, stride, padding, dilation, groups) -> tuple[Tensor, Tensor | None]:
    """The convolution of maps of ``x``'s shape as one matrix (input values x output values: each entry one weight
    or 0) and its bias per output value; kept while the weight and bias are the same tensors, unchanged."""
    _, c, h, w = x.shape
    co, cg, kh, kw = weight.shape
    og = co // groups
    (sh, sw), (dh, dw) = _pair(stride), _pair(dilation)
    (t, b), (lf, rt) = _pads(padding, kh, dh, 0), _pads(padding, kw, dw, 1)
    ho, wo = _out_size(h, kh, sh, (t, b), dh), _out_size(w, kw, sw, (lf, rt), dw)
    try:
        versions = (weight._version, None if bias is None else bias._version)
    except RuntimeError:  # inference tensors have no version: nothing kept
        versions = None
    key = (id(weight), None if bias is None else id(bias), versions, (c, h, w), (sh, sw), (t, lf), (dh, dw), groups)
    with _KEPT_LOCK:
        got = _KEPT.get(key) if versions is not None else None
    if got is not None and got[0]() is weight and (bias is None or got[1]() is bias):
        return got[2], got[3]
    m = weight.new_zeros(c, h, w, co, ho, wo)
    for o1 in range(ho):
        for o2 in range(wo):
            for i in range(kh):
                q1 = o1 * sh - t + i * dh
                for j in range(kw):
                    q2 = o2 * sw - lf + j * dw
                    if 0 <= q1 < h and 0 <= q2 < w:  # one tap per input and output position
                        for k in range(groups):
                            wk = weight[k * og : (k + 1) * og, :, i, j]
                            m[k * cg : (k + 1) * cg, q1, q2, k * og : (k + 1) * og, o1, o2] = wk.t()
    m = m.view(c * h * w, co * ho * wo)
    bias_out = None if bias is None else bias.repeat_interleave(ho * wo)
    if versions is not None:
        with _KEPT_LOCK:
            if sum(v[2].numel() for v in _KEPT.values()) * 8 + m.numel() * 8 > _KEPT_BYTES:
                _KEPT.clear()
            _KEPT[key] = (weakref.ref(weight), None if bias is None else weakref.ref(bias), m, bias_out)
    return m, bias_out


def _conv_dense(x: Tensor, weight: Tensor, bias, stride, padding, dilation, groups: int) -> Tensor:
    """The convolution as one product with its lowered matrix (maps so small that every output sees all of the
    input: no more products than the live taps, and no unfolding; groups make it block-diagonal)."""
    m, b = _lowered(x, weight, bias, stride, padding, dilation, groups)
    n = x.shape[0]
    a = x.reshape(n, -1)
    out = torch.mm(a, m) if b is None else torch.addmm(b, a, m)
    return out.view((n, weight.shape[0]) + _out_hw(x, weight, stride, padding, dilation))


def _out_hw(x: Tensor, weight: Tensor, stride, padding, dilation) -> tuple[int, int]:
    kh, kw = weight.shape[2:]
    (sh, sw), (dh, dw) = _pair(stride), _pair(dilation)
    return (
        _out_size(x.shape[2], kh, sh, _pads(padding, kh, dh, 0), dh),
        _out_size(x.shape[3], kw, sw, _pads(padding, kw, dw, 1), dw),
    )
