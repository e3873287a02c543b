"""Interval-dual values for the certified walk: enclosures of a tensor's values on a t-interval,
at its midpoint, and of its derivative d/dt, with rounding accounted for (float64).

A value is :class:`IDual`, two float64 tensors ``C`` (centres) and ``R`` (radii, >= 0) of shape
``(3, B, *shape)``: row 0 encloses the value on the whole t-interval, row 1 the value at its
midpoint m, row 2 the derivative d/dt on the whole interval. Every true value lies in
``[C - R, C + R]``. Centre-radius form makes affine maps cheap: ``W x + b`` is ``W C + b`` with
radius ``|W| R`` (two products, all three rows stacked), plus the rounding bound below.

Rounding (float64, unit roundoff u = 2^-53). A sum or dot product of n terms computed in any
order is within ``gamma_n * sum |terms|`` of the exact one, gamma_n = n u / (1 - n u) (Higham,
*Accuracy and Stability of Numerical Algorithms*, §3.1). Every operation here adds such a bound,
computed from the magnitudes, to the radius, and every radius is then multiplied by
``1 + 4u`` and increased by the smallest normal number, which covers the rounding of the radius
computation itself and underflow. Elementwise library functions (exp, erf, tanh, ...) are
trusted to a relative error of ``1e-12`` plus an absolute ``1e-15 (1 + |z|)`` (float64 libm
functions are accurate to a few ulps; the absolute term covers cancellation in forms such as
``z (1 + erf(z / sqrt 2)) / 2`` for very negative z).

Mean-value form: after a nonlinear operation the value on the interval is intersected with
``f(m) + f'([a, b]) [-h, h]`` (h the half-width), which makes the enclosures shrink
quadratically with the interval instead of linearly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

U = 2.0**-53
TINY = 2.2250738585072014e-308  # smallest normal float64
REL = 1e-12  # trusted relative error of an elementwise library function
ABS = 1e-15  # and its absolute error per unit of (1 + |z|)


def gamma(n: int) -> float:
    nu = n * U
    if nu >= 0.5:
        raise ValueError(f"a sum of {n} terms is too long for the rounding bound")
    return nu / (1 - nu)


def _widen(r: Tensor) -> Tensor:
    return r * (1 + 4 * U) + TINY


def _clean(c: Tensor, r: Tensor) -> tuple[Tensor, Tensor]:
    """NaN or infinite results enclose nothing useful: centre 0, radius inf."""
    bad = ~torch.isfinite(c) | torch.isnan(r)
    if bool(bad.any()):
        c = torch.where(bad, torch.zeros_like(c), c)
        r = torch.where(bad, torch.full_like(r, math.inf), r)
    return c, r


def lohi(c: Tensor, r: Tensor) -> tuple[Tensor, Tensor]:
    """Outward-rounded endpoints of ``[c - r, c + r]``."""
    lo = torch.nextafter(c - r, torch.full_like(c, -math.inf))
    hi = torch.nextafter(c + r, torch.full_like(c, math.inf))
    return lo, hi


def from_lohi(lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
    """Centre-radius form of ``[lo, hi]``, outward rounded."""
    c = 0.5 * lo + 0.5 * hi
    c = torch.where(torch.isfinite(c), c, torch.zeros_like(c))
    inf = torch.full_like(c, math.inf)
    r = torch.maximum(torch.nextafter(hi - c, inf), torch.nextafter(c - lo, inf))
    return c, torch.nextafter(r, inf)


@dataclass
class IDual:
    """Enclosures ``(3, B, *shape)``: value on the interval, value at its midpoint, derivative."""

    C: Tensor
    R: Tensor
    h: Tensor = field(repr=False)  # (B,) half-widths of the t-intervals

    @property
    def shape(self) -> torch.Size:
        return self.C.shape[1:]

    def dim(self) -> int:
        return self.C.dim() - 1

    def like(self, C: Tensor, R: Tensor) -> IDual:
        return IDual(C, R, self.h)

    def hb(self) -> Tensor:
        """Half-widths broadcast against one row."""
        return self.h.view((-1,) + (1,) * (self.C.dim() - 2))

    # ---- structural operations: applied to centres and radii alike, exact
    def apply(self, fn: Callable[[Tensor], Tensor]) -> IDual:
        return IDual(fn(self.C), fn(self.R), self.h)


def dual_input(x1: Tensor, x2: Tensor, a: Tensor, b: Tensor) -> IDual:
    """The segment points x(t) = x1 + t (x2 - x1), t in [a, b] (rows of x1, x2, a, b)."""
    x1, x2 = x1.double(), x2.double()
    view = (-1,) + (1,) * (x1.dim() - 1)
    a, b = a.double().view(view), b.double().view(view)
    d = x2 - x1
    dr = _widen(U * d.abs())  # rounding of the difference
    m = 0.5 * (a + b)
    h = torch.nextafter(0.5 * (b - a), torch.full_like(a, math.inf))
    cm = x1 + m * d
    ad = d.abs() + dr
    slack = _widen(gamma(3) * (x1.abs() + (m * d).abs()) + m.abs() * dr)
    val_r = _widen(h * ad + slack)
    C = torch.stack([cm, cm, d])
    R = torch.stack([val_r, slack, dr])
    return IDual(C, R, h.reshape(-1))


# ------------------------------------------------------------------ affine maps


def affine(x: IDual, lin: Callable[[Tensor], Tensor], n_terms: int, bias: Tensor | None = None,
           abs_lin: Callable[[Tensor], Tensor] | None = None) -> IDual:
    """``lin(x) + bias`` for a linear map ``lin`` whose every output is a sum of at most
    ``n_terms`` products; ``abs_lin`` is the same map with absolute coefficients. The bias
    shifts the value rows, not the derivative."""
    g = gamma(n_terms + 2)
    Cf = x.C.flatten(0, 1)
    C = lin(Cf)
    R = (abs_lin or lin)(x.R.flatten(0, 1) + g * Cf.abs()) * (1 + g)
    C = C.view((3, -1) + C.shape[1:])
    R = R.view((3, -1) + R.shape[1:])
    if bias is not None:
        C = torch.cat([C[:2] + bias, C[2:]])
        R = torch.cat([R[:2] + g * bias.abs().expand_as(R[:2]), R[2:]])
    return x.like(C, _widen(R))


def scale(x: IDual, k: Tensor | float) -> IDual:
    """Elementwise product with a constant (broadcast)."""
    k = torch.as_tensor(k, dtype=torch.float64, device=x.C.device)
    C = x.C * k
    return x.like(C, _widen(x.R * k.abs() + U * C.abs()))


def shift(x: IDual, k: Tensor | float) -> IDual:
    """Add a constant to the values (the derivative is unchanged)."""
    k = torch.as_tensor(k, dtype=torch.float64, device=x.C.device)
    v = x.C[:2] + k
    C = torch.cat([v, x.C[2:]])
    R = torch.cat([x.R[:2] + U * v.abs(), x.R[2:]])
    return x.like(C, _widen(R))


def add(x: IDual, y: IDual, sign: float = 1.0) -> IDual:
    C = x.C + sign * y.C
    return x.like(C, _widen(x.R + y.R + U * C.abs()))


def reduce_sum(x: IDual, dim, keepdim: bool = False, mean: bool = False) -> IDual:
    dims = _dims(x, dim)
    n = 1
    for d in dims:
        n *= x.C.shape[d]
    C = x.C.sum(dims, keepdim=keepdim)
    R = x.R.sum(dims, keepdim=keepdim) + gamma(n) * x.C.abs().sum(dims, keepdim=keepdim)
    if mean:
        C = C / n
        R = R / n + U * C.abs()
    return x.like(C, _widen(R * (1 + gamma(n))))


def _dims(x: IDual, dim) -> tuple[int, ...]:
    """Dims of a per-row tensor ``(B, ...)`` shifted to the stacked ``(3, B, ...)``."""
    if dim is None:
        return tuple(range(2, x.C.dim()))
    if isinstance(dim, int):
        dim = (dim,)
    return tuple(d + 1 if d >= 0 else d for d in dim)


# ------------------------------------------------------------------ products


def _imul(ac, ar, bc, br):
    """Centre-radius product of intervals, rounding included."""
    c = ac * bc
    r = ac.abs() * br + ar * bc.abs() + ar * br + U * c.abs()
    return c, r


def mul(x: IDual, y: IDual) -> IDual:
    """Product rule: value rows multiply, derivative = x' y + x y'."""
    c01, r01 = _imul(x.C[:2], x.R[:2], y.C[:2], y.R[:2])
    c1, r1 = _imul(x.C[2], x.R[2], y.C[0], y.R[0])
    c2, r2 = _imul(x.C[0], x.R[0], y.C[2], y.R[2])
    cd = c1 + c2
    rd = r1 + r2 + U * cd.abs()
    out = x.like(torch.cat([c01, cd.unsqueeze(0)]), _widen(torch.cat([r01, rd.unsqueeze(0)])))
    return tighten(out)


def _imatmul(ac, ar, bc, br):
    n = ac.shape[-1]
    c = ac @ bc
    r = ac.abs() @ br + ar @ (bc.abs() + br) + gamma(n + 2) * (ac.abs() @ bc.abs())
    return c, r * (1 + gamma(n + 2))


def matmul(x: IDual, y: IDual) -> IDual:
    c01, r01 = _imatmul(x.C[:2], x.R[:2], y.C[:2], y.R[:2])
    c1, r1 = _imatmul(x.C[2], x.R[2], y.C[0], y.R[0])
    c2, r2 = _imatmul(x.C[0], x.R[0], y.C[2], y.R[2])
    cd = c1 + c2
    rd = r1 + r2 + U * cd.abs()
    out = x.like(torch.cat([c01, cd.unsqueeze(0)]), _widen(torch.cat([r01, rd.unsqueeze(0)])))
    return tighten(out)


# ------------------------------------------------------------------ mean-value form


def tighten(x: IDual) -> IDual:
    """Intersect the value on the interval with the mean-value form f(m) + f'(I) [-h, h]."""
    x = IDual(*_clean(x.C, x.R), x.h)  # NaN and inf (overflow, 0 * inf) become the whole line
    h = x.hb()
    mv_r = x.R[1] + (x.C[2].abs() + x.R[2]) * h
    mv_r = _widen(mv_r * (1 + 4 * U))
    lo1, hi1 = lohi(x.C[0], x.R[0])
    lo2, hi2 = lohi(x.C[1], mv_r)
    lo, hi = torch.maximum(lo1, lo2), torch.minimum(hi1, hi2)
    # an empty intersection is round-off between two valid enclosures: keep the value row
    ok = lo <= hi
    c, r = from_lohi(torch.where(ok, lo, lo1), torch.where(ok, hi, hi1))
    return x.like(torch.cat([c.unsqueeze(0), x.C[1:]]), torch.cat([r.unsqueeze(0), x.R[1:]]))


# ------------------------------------------------------------------ elementwise functions


@dataclass(frozen=True)
class Unary:
    """An elementwise function for enclosures: ``f``, its derivative ``df`` (for kinks: the
    value on either side is given in ``kinks``), and the points between which f and f' are
    monotone: ``crit_f`` (extrema of f), ``crit_df`` (extrema of f'), ``kinks`` (points where
    f' jumps: ``{z: (f'(z-), f'(z+))}``; f is continuous there). Outside the listed points f and
    f' are monotone, on the whole real line. ``slack_abs`` adds an absolute error (a
    difference between torch's form and the mathematical function)."""

    name: str
    f: Callable[[Tensor], Tensor]
    df: Callable[[Tensor], Tensor]
    crit_f: tuple[float, ...] = ()
    crit_df: tuple[float, ...] = ()
    kinks: tuple[tuple[float, float, float], ...] = ()
    slack_abs: float = 0.0

    def _range(self, g, lo, hi, points, extra=()) -> tuple[Tensor, Tensor]:
        glo, ghi = g(lo), g(hi)
        mn, mx = torch.minimum(glo, ghi), torch.maximum(glo, ghi)
        for p in points:
            inside = (lo <= p) & (p <= hi)
            if bool(inside.any()):
                gp = g(torch.tensor(p, dtype=lo.dtype, device=lo.device))
                mn = torch.where(inside, torch.minimum(mn, gp), mn)
                mx = torch.where(inside, torch.maximum(mx, gp), mx)
        for p, left, right in extra:
            inside = (lo <= p) & (p <= hi)
            if bool(inside.any()):
                for v in (left, right):
                    mn = torch.where(inside, torch.clamp(mn, max=v), mn)
                    mx = torch.where(inside, torch.clamp(mx, min=v), mx)
        mag = torch.maximum(lo.abs(), hi.abs())
        err = REL * torch.maximum(mn.abs(), mx.abs()) + ABS * (1 + mag) + self.slack_abs
        # an extremum located numerically is off by < 1e-9 in z: its value by < 1e-12 (curvature <= 1)
        if points:
            err = err + 1e-12
        return mn - err, mx + err

    def value_range(self, lo, hi):
        return self._range(self.f, lo, hi, self.crit_f + tuple(k[0] for k in self.kinks))

    def deriv_range(self, lo, hi):
        return self._range(self.df, lo, hi, self.crit_df, self.kinks)

    def point(self, c, r):
        lo, hi = lohi(c, r)
        return self.value_range(lo, hi)


def unary(x: IDual, fn: Unary) -> IDual:
    """``fn`` elementwise: values by their ranges, derivative f'(I) x', then the mean-value form."""
    x = tighten(x)
    lo, hi = lohi(x.C[0], x.R[0])
    vlo, vhi = fn.value_range(lo, hi)
    plo, phi = fn.point(x.C[1], x.R[1])
    dlo, dhi = fn.deriv_range(lo, hi)
    dc, dr = from_lohi(dlo, dhi)
    vc, vr = from_lohi(vlo, vhi)
    pc, pr = from_lohi(plo, phi)
    cd, rd = _imul(dc, dr, x.C[2], x.R[2])
    out = x.like(torch.stack([vc, pc, cd]), _widen(torch.stack([vr, pr, rd])))
    return tighten(out)


def square(x: IDual) -> IDual:
    x = tighten(x)
    vals = []
    for i in (0, 1):
        lo, hi = lohi(x.C[i], x.R[i])
        a, b = lo * lo, hi * hi
        mx = torch.maximum(a, b) * (1 + 2 * U)
        mn = torch.where((lo <= 0) & (hi >= 0), torch.zeros_like(lo), torch.minimum(a, b) * (1 - 2 * U))
        vals.append(from_lohi(mn, mx))
    cd, rd = _imul(2 * x.C[0], 2 * x.R[0], x.C[2], x.R[2])
    C = torch.stack([vals[0][0], vals[1][0], cd])
    R = torch.stack([vals[0][1], vals[1][1], rd])
    return tighten(x.like(C, _widen(R)))


def softmax(x: IDual, dim: int) -> IDual:
    """Softmax along ``dim``: s_i = 1 / (1 + sum_{j != i} exp(z_j - z_i)), bounded from the
    endpoints; derivative s_i (z_i' - sum_j s_j z_j')."""
    x = tighten(x)
    d = dim + 1 if dim >= 0 else dim
    C, R = x.C.movedim(d, -1), x.R.movedim(d, -1)
    n = C.shape[-1]
    eye = torch.eye(n, dtype=torch.bool, device=C.device)
    rows = []
    for i in (0, 1):
        lo, hi = lohi(C[i], R[i])
        # lower bound of s_i: the others as large as possible, z_i as small
        a = hi.unsqueeze(-2) - lo.unsqueeze(-1)  # [..., i, j] = hi_j - lo_i
        b = lo.unsqueeze(-2) - hi.unsqueeze(-1)
        a = a.masked_fill(eye, -math.inf)
        b = b.masked_fill(eye, -math.inf)
        s_lo = torch.sigmoid(-torch.logsumexp(a, -1)) if n > 1 else torch.ones_like(lo)
        s_hi = torch.sigmoid(-torch.logsumexp(b, -1)) if n > 1 else torch.ones_like(lo)
        e = 1e-12 * s_hi + 1e-300
        rows.append(from_lohi((s_lo - e).clamp(min=0.0), (s_hi + e).clamp(max=1.0)))
    sc, sr = rows[0]
    dc, dr = C[2], R[2]
    pc, pr = _imul(sc, sr, dc, dr)
    tc = pc.sum(-1, keepdim=True)
    tr = (pr.sum(-1, keepdim=True) + gamma(n) * pc.abs().sum(-1, keepdim=True)) * (1 + gamma(n))
    qc = dc - tc
    qr = dr + tr + U * qc.abs()
    oc, orr = _imul(sc, sr, qc, qr)
    Cout = torch.stack([sc, rows[1][0], oc]).movedim(-1, d)
    Rout = torch.stack([sr, rows[1][1], orr]).movedim(-1, d)
    return tighten(x.like(Cout, _widen(Rout)))
