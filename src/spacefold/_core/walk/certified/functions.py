"""The elementwise functions of the certified walk (:class:`.interval.Unary`), built from an
activation module, with their derivatives and the points between which f and f' are monotone.

Extrema of the smooth non-monotone functions (GELU, SiLU, Mish) and of the derivatives (GELU,
SiLU, Mish, tanh, sigmoid, ...) are located numerically once: the sign changes of f' (of f'',
by automatic differentiation) on a grid of step 1e-3 over [-12, 12], refined by bisection to
1e-12. Outside [-12, 12] every one of these functions and its derivative is monotone (their
tails are exponentially flat); tests check the located points against their closed forms
where known (GELU: f''(z) = 0 at +-sqrt 2).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .interval import Unary

_SQRT1_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _roots(g, lo: float = -12.0, hi: float = 12.0, step: float = 1e-3) -> tuple[float, ...]:
    z = torch.arange(lo, hi + step / 2, step, dtype=torch.float64)
    v = g(z) > 0
    idx = torch.nonzero(v[:-1] != v[1:]).flatten()
    if idx.numel() == 0:
        return ()
    a, b = z[idx].clone(), z[idx + 1].clone()
    ga = v[idx]
    for _ in range(60):  # all brackets at once
        m = 0.5 * (a + b)
        same = (g(m) > 0) == ga
        a = torch.where(same, m, a)
        b = torch.where(same, b, m)
    return tuple(float(r) for r in 0.5 * (a + b))


def _diff(df, order: int = 1):
    """The ``order``-th derivative of ``df`` by automatic differentiation (0 where ``df`` is
    piecewise constant)."""

    def d(z: Tensor) -> Tensor:
        with torch.enable_grad():
            zz = z.detach().clone().requires_grad_(True)
            y = df(zz)
            for _ in range(order):
                if not y.requires_grad:
                    return torch.zeros_like(z)
                (y,) = torch.autograd.grad(y.sum(), zz, create_graph=True, allow_unused=True)
                if y is None:
                    return torch.zeros_like(z)
        return y.detach()

    return d


def _second(df):
    return _diff(df, 1)


def _complete(u: Unary) -> Unary:
    """``u`` with its second derivative and that one's extrema (the zeros of the third)."""
    return dataclasses.replace(u, d2f=_diff(u.df, 1), crit_d2f=_roots(_diff(u.df, 2)))


@functools.cache
def _smooth(name: str) -> Unary:
    f, df = _SMOOTH[name]
    return _complete(Unary(name, f, df, _roots(df), _roots(_second(df))))


def _gelu(z):
    return 0.5 * z * (1 + torch.erf(z * _SQRT1_2))


def _dgelu(z):
    return 0.5 * (1 + torch.erf(z * _SQRT1_2)) + z * _INV_SQRT_2PI * torch.exp(-0.5 * z * z)


_K = math.sqrt(2.0 / math.pi)


def _gelu_tanh(z):
    return 0.5 * z * (1 + torch.tanh(_K * (z + 0.044715 * z**3)))


def _dgelu_tanh(z):
    th = torch.tanh(_K * (z + 0.044715 * z**3))
    return 0.5 * (1 + th) + 0.5 * z * (1 - th * th) * _K * (1 + 3 * 0.044715 * z * z)


def _silu(z):
    return z * torch.sigmoid(z)


def _dsilu(z):
    s = torch.sigmoid(z)
    return s * (1 + z * (1 - s))


def _mish(z):
    return z * torch.tanh(F.softplus(z))


def _dmish(z):
    tsp = torch.tanh(F.softplus(z))
    return tsp + z * torch.sigmoid(z) * (1 - tsp * tsp)


def _dtanh(z):
    t = torch.tanh(z)
    return 1 - t * t


def _dsigmoid(z):
    s = torch.sigmoid(z)
    return s * (1 - s)


def _softsign(z):
    return z / (1 + z.abs())


def _dsoftsign(z):
    return 1 / (1 + z.abs()) ** 2


def _tanhshrink(z):
    return z - torch.tanh(z)


def _dtanhshrink(z):
    t = torch.tanh(z)
    return t * t


_SMOOTH = {
    "gelu": (_gelu, _dgelu),
    "gelu_tanh": (_gelu_tanh, _dgelu_tanh),
    "silu": (_silu, _dsilu),
    "mish": (_mish, _dmish),
    "tanh": (torch.tanh, _dtanh),
    "sigmoid": (torch.sigmoid, _dsigmoid),
    "logsigmoid": (F.logsigmoid, lambda z: torch.sigmoid(-z)),
    "tanhshrink": (_tanhshrink, _dtanhshrink),
}


@functools.cache
def _softplus(beta: float, threshold: float) -> Unary:
    # the mathematical softplus; torch switches to z for beta z > threshold, which differs from it
    # by log1p(exp(-threshold)) / beta at most: added as absolute slack
    return _complete(
        Unary(
            f"softplus(beta={beta})",
            lambda z: F.softplus(z * beta, 1.0, 1e30) / beta,
            lambda z: torch.sigmoid(z * beta),
            slack_abs=math.log1p(math.exp(-threshold)) / beta,
        )
    )


@functools.cache
def _leaky(slope: float) -> Unary:
    return _complete(
        Unary(
            f"leaky_relu({slope})",
            lambda z: torch.where(z > 0, z, z * slope),
            lambda z: torch.where(z > 0, torch.ones_like(z), torch.full_like(z, slope)),
            kinks=((0.0, slope, 1.0),),
        )
    )


@functools.cache
def _hardtanh(lo: float, hi: float) -> Unary:
    return _complete(
        Unary(
            f"hardtanh({lo}, {hi})",
            lambda z: z.clamp(lo, hi),
            lambda z: ((z > lo) & (z < hi)).to(z.dtype),
            kinks=((lo, 0.0, 1.0), (hi, 1.0, 0.0)),
        )
    )


@functools.cache
def _elu(alpha: float, scale: float = 1.0) -> Unary:
    return _complete(
        Unary(
            f"elu({alpha})",
            lambda z: scale * torch.where(z > 0, z, alpha * torch.expm1(torch.clamp(z, max=0.0))),
            lambda z: scale * torch.where(z > 0, torch.ones_like(z), alpha * torch.exp(torch.clamp(z, max=0.0))),
            kinks=((0.0, scale * alpha, scale),),
        )
    )


@functools.cache
def _celu(alpha: float) -> Unary:
    return _complete(
        Unary(
            f"celu({alpha})",
            lambda z: torch.where(z > 0, z, alpha * torch.expm1(torch.clamp(z, max=0.0) / alpha)),
            lambda z: torch.where(z > 0, torch.ones_like(z), torch.exp(torch.clamp(z, max=0.0) / alpha)),
            kinks=((0.0, 1.0, 1.0),),
        )
    )


_HARDSWISH = Unary(
    "hardswish",
    lambda z: z * (z + 3).clamp(0, 6) / 6,
    lambda z: torch.where(z <= -3, torch.zeros_like(z), torch.where(z >= 3, torch.ones_like(z), (2 * z + 3) / 6)),
    crit_f=(-1.5,),
    kinks=((-3.0, 0.0, -0.5), (3.0, 1.5, 1.0)),
)
_HARDSIGMOID = Unary(
    "hardsigmoid",
    lambda z: (z / 6 + 0.5).clamp(0, 1),
    lambda z: ((z > -3) & (z < 3)).to(z.dtype) / 6,
    kinks=((-3.0, 0.0, 1 / 6), (3.0, 1 / 6, 0.0)),
)
# f'' = -2 sign(z) / (1 + |z|)^3 is monotone on either side of 0 (where it jumps)
_SOFTSIGN = Unary(
    "softsign", _softsign, _dsoftsign, kinks=((0.0, 1.0, 1.0),), d2f=lambda z: -2 * torch.sign(z) / (1 + z.abs()) ** 3
)
_complete_cached = functools.lru_cache(maxsize=None)(_complete)


def module_function(m: nn.Module) -> Unary | None:
    """The :class:`Unary` of an activation module, or ``None`` when it has none."""
    if isinstance(m, nn.ReLU):
        return _leaky(0.0)
    if isinstance(m, nn.LeakyReLU):
        return _leaky(float(m.negative_slope))
    if isinstance(m, nn.RReLU):  # eval mode: the mean slope
        return _leaky((float(m.lower) + float(m.upper)) / 2)
    if isinstance(m, nn.PReLU):
        if m.weight.numel() != 1:
            return None
        return _leaky(float(m.weight.detach().reshape(())))
    if isinstance(m, (nn.Hardtanh,)):  # ReLU6 is a Hardtanh(0, 6)
        return _hardtanh(float(m.min_val), float(m.max_val))
    if isinstance(m, nn.ELU):
        return _elu(float(m.alpha))
    if isinstance(m, nn.SELU):
        return _elu(1.6732632423543772848170429916717, 1.0507009873554804934193349852946)
    if isinstance(m, nn.CELU):
        return _celu(float(m.alpha))
    if isinstance(m, nn.GELU):
        return _smooth("gelu_tanh" if m.approximate == "tanh" else "gelu")
    if isinstance(m, nn.SiLU):
        return _smooth("silu")
    if isinstance(m, nn.Mish):
        return _smooth("mish")
    if isinstance(m, nn.Tanh):
        return _smooth("tanh")
    if isinstance(m, nn.Sigmoid):
        return _smooth("sigmoid")
    if isinstance(m, nn.LogSigmoid):
        return _smooth("logsigmoid")
    if isinstance(m, nn.Tanhshrink):
        return _smooth("tanhshrink")
    if isinstance(m, nn.Softplus):
        return _softplus(float(m.beta), float(m.threshold))
    if isinstance(m, nn.Hardswish):
        return _complete_cached(_HARDSWISH)
    if isinstance(m, nn.Hardsigmoid):
        return _complete_cached(_HARDSIGMOID)
    if isinstance(m, nn.Softsign):
        return _SOFTSIGN
    return None


@functools.cache
def exp_function() -> Unary:
    return Unary("exp", torch.exp, torch.exp, d2f=torch.exp)


def _pos(z):
    return z.clamp(min=1e-300)


@functools.cache
def rsqrt_function() -> Unary:
    # on z > 0 (variance + eps); f, f' and f'' are monotone there
    return Unary(
        "rsqrt",
        lambda z: torch.rsqrt(_pos(z)),
        lambda z: -0.5 * torch.rsqrt(_pos(z)) ** 3,
        d2f=lambda z: 0.75 * torch.rsqrt(_pos(z)) ** 5,
    )


@functools.cache
def sqrt_function() -> Unary:
    return Unary(
        "sqrt",
        lambda z: torch.sqrt(z.clamp(min=0.0)),
        lambda z: 0.5 * torch.rsqrt(_pos(z)),
        d2f=lambda z: -0.25 * torch.rsqrt(_pos(z)) ** 3,
    )
