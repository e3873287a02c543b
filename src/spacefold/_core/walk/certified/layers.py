"""The layers of a network as the certified walk encloses them: affine maps (convolutions, pooling,
padding, batch norm in eval mode) and layer norm, on :class:`~spacefold._core.walk.certified.interval.IDual`
values; which modules it takes as leaves of the traced graph."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ....errors import InputTypeError
from . import interval as iv
from .functions import rsqrt_function
from .interval import IDual


class CertifiedUnsupportedError(InputTypeError):
    """The model holds an operation the certified walk has no enclosure for."""


_IDENTITY_MODULES = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout)
_PADS = {
    nn.ZeroPad1d: "constant",
    nn.ZeroPad2d: "constant",
    nn.ConstantPad1d: "constant",
    nn.ConstantPad2d: "constant",
    nn.ReflectionPad1d: "reflect",
    nn.ReflectionPad2d: "reflect",
    nn.ReplicationPad1d: "replicate",
    nn.ReplicationPad2d: "replicate",
}
_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d)
_MODULES = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Flatten,
    nn.Unflatten,
    nn.LayerNorm,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    *_PADS,
    *_IDENTITY_MODULES,
    *_BATCHNORM,
)


def _conv(x: IDual, m) -> IDual:
    conv = F.conv1d if isinstance(m, nn.Conv1d) else F.conv2d
    w = m.weight.detach()
    wa = w.abs()
    padding = m.padding
    if m.padding_mode != "zeros":  # as the module does: pad by that mode, then convolve without padding
        x, padding = _copy_padded(x, m._reversed_padding_repeated_twice, m.padding_mode), 0
    kw = {"stride": m.stride, "padding": padding, "dilation": m.dilation, "groups": m.groups}
    n = w[0].numel()
    bias = None
    if m.bias is not None:
        bias = m.bias.detach().view((-1,) + (1,) * (w.dim() - 2))
    return iv.affine(x, lambda t: conv(t, w, **kw), n, bias, lambda t: conv(t, wa, **kw))


def _avgpool(x: IDual, m) -> IDual:
    pool = F.avg_pool1d if isinstance(m, nn.AvgPool1d) else F.avg_pool2d
    kw = {
        "kernel_size": m.kernel_size,
        "stride": m.stride,
        "padding": m.padding,
        "ceil_mode": m.ceil_mode,
        "count_include_pad": m.count_include_pad,
    }
    if isinstance(m, nn.AvgPool2d):
        kw["divisor_override"] = m.divisor_override
    ks = m.kernel_size if isinstance(m.kernel_size, tuple) else (m.kernel_size,) * (2 if pool is F.avg_pool2d else 1)
    n = math.prod(ks) + 1
    return iv.affine(x, lambda t: pool(t, **kw), n)


def _copy_padded(x: IDual, pads, mode: str) -> IDual:
    """``x`` padded by ``mode`` (zeros, reflection, replication, circular): copies, exact in values and radii."""

    def pad(t: Tensor) -> Tensor:
        out = F.pad(t.flatten(0, 1), pads, mode)
        return out.view(t.shape[:2] + out.shape[1:])

    return x.apply(pad)


def _pad(x: IDual, m) -> IDual:
    """Padding of any mode: copies of the input (exact, so that a padded 0 stays exactly 0), and constants."""
    y = _copy_padded(x, m.padding, _PADS[type(m)])
    value = float(getattr(m, "value", 0.0))
    if value:  # the constant in the value rows; the derivative rows stay 0 there
        y = iv.shift(y, F.pad(torch.zeros(x.shape[1:], dtype=torch.float64, device=x.C.device), m.padding, value=value))
    return y


def _adaptive_avgpool(x: IDual, m) -> IDual:
    """Means of windows of the map (a window holds at most the whole map)."""
    pool = F.adaptive_avg_pool1d if isinstance(m, nn.AdaptiveAvgPool1d) else F.adaptive_avg_pool2d
    return iv.affine(x, lambda t: pool(t, m.output_size), math.prod(x.shape[2:]) + 1)


def _batchnorm(x: IDual, m) -> IDual:
    if m.training or m.running_mean is None:
        raise CertifiedUnsupportedError(
            f"method='certified' needs batch norm in eval mode with running statistics, got {type(m).__name__}"
        )
    shape = (-1,) + (1,) * (x.dim() - 2)
    s = torch.rsqrt(m.running_var.detach() + m.eps)
    if m.weight is not None:
        s = s * m.weight.detach()
    b = -m.running_mean.detach() * s
    if m.bias is not None:
        b = b + m.bias.detach()
    # the folded scale and shift are computed in float64 like the model's own forward; their
    # round-off relative to the model's form is covered by a relative slack of 8u
    y = iv.shift(iv.scale(x, s.view(shape)), b.view(shape))
    return y.like(y.C, iv._widen(y.R + 8 * iv.U * (x.C.abs() * s.view(shape).abs() + b.view(shape).abs())))


def _layer_norm(x: IDual, normalized_shape, weight, bias, eps) -> IDual:
    dims = tuple(range(-len(normalized_shape), 0))
    # centring is linear: c_i = x_i - mean(x), radius (1 - 1/n) r_i + (1/n) sum_{j != i} r_j <= r_i + mean(r)
    c = iv.centre(x, dims)
    var = iv.reduce_sum(iv.square(c), dims, keepdim=True, mean=True)
    inv = iv.unary(iv.shift(var, eps), rsqrt_function())
    y = iv.mul(c, inv)
    if weight is not None:
        y = iv.scale(y, weight.detach())
    if bias is not None:
        y = iv.shift(y, bias.detach())
    return iv.tighten(y)
