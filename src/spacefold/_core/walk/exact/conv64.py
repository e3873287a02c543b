"""Float64 2-d convolutions of breakpoint rows on the CPU (the exact walk's float64 walks of CNNs).

oneDNN, which computes torch's float32 convolutions on the CPU, takes no float64; torch's float64 path
(``slow_conv2d``) first builds the im2col matrix of the whole batch in new memory (input channels x kernel
taps x output positions per input: 9 times the input for a 3x3 kernel, out of every cache at the walk's
hundreds to thousands of rows), then runs one matrix product per input (output channels x taps by taps x
output positions). Where a map has few output positions (ResNet-18's last two stages at 32x32: 2x2 and 1x1)
that product is a matrix-vector product which reads all the weights once per row. :func:`conv2d` computes the
same convolution in two other ways, chosen by shape (``benchmarks/bench_conv64.py`` measures them):

- ``"gemm"``, few output positions: the unfolded rows of many inputs in one matrix product with the
  weights (MKL's or OpenBLAS's ``dgemm``), per group, in chunks of ``_GEMM_BYTES``; kernel taps that read
  only padding at every output position (a 3x3 kernel with padding 1 on a 1x1 map: all but the centre)
  are left out, as their products are exact zeros;
- ``"chunks"``, larger maps: torch's own convolution on chunks of rows whose im2col matrix is
  ``_CHUNK_BYTES``, which stays in the cache (the same operations on each row as one call on all rows).

The products are the same; only the order of their sums differs from torch's, so results differ at float64
round-off (both are within the usual bound of a dot product, ``K u sum(|w| |x|)`` for ``K`` terms). Anything
else (float32 and lower, other devices, ``padding_mode`` other than zeros, unbatched inputs) is torch's
``F.conv2d``; a chunk's memory is bounded, so the walk's budget (``SPACEFOLD_MEMORY``) is not exceeded by
an im2col matrix kernel-size times the layer's input, as it can be with torch's own float64 path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# im2col bytes of torch's float64 path per chunk of rows ("chunks"); 1 MiB kept the matrix in a 2 MiB L2
# cache (bench_conv64.py: 2-5x torch's call on all rows on the 3x3 layers of bench_cnn.py's VGG-style net)
_CHUNK_BYTES = 1 << 20
# unfolded bytes per matrix product ("gemm")
_GEMM_BYTES = 4 << 20
# the most output positions per input taken by "gemm" (bench_conv64.py: faster than torch up to 2x2
# outputs with every tap live, 3x3 outputs ...; the chunks were faster at 4x4)
_GEMM_MAX_POSITIONS = 9


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
