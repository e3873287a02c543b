"""Interval-dual values for the certified walk: enclosures of a tensor's values on a t-interval,
at its midpoint, and of its derivative d/dt, with rounding accounted for (float64).

A value is :class:`IDual`, two float64 tensors ``C`` (centres) and ``R`` (radii, >= 0) of shape
``(5, B, *shape)``: row 0 encloses the value on the whole t-interval, row 1 the value at its
midpoint m, row 2 the derivative d/dt on the whole interval, row 3 the derivative at m, row 4
the second derivative on the whole interval. Every true value lies in ``[C - R, C + R]``.
Centre-radius form makes affine maps cheap: ``W x + b`` is ``W C + b`` with radius ``|W| R``
(two products, all five rows stacked), plus the rounding bound below.

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
``f(m) + f'([a, b]) [-h, h]`` (h the half-width), and the derivative with
``f'(m) + f''([a, b]) [-h, h]``: this makes both enclosures shrink quadratically with the
interval, and keeps the wrapping effect of interval arithmetic (which grows with depth, a
factor of about the square root of the width per dense layer) in the second-order term only.
Without the second form, derivative enclosures through two transformer blocks were 10^4 times
wider than the derivative on intervals of width 0.01. The second derivative of a
piecewise-linear unit is unbounded at its kink: an interval that holds a kink gets no
second-order bound there (the natural derivative enclosure is kept).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

NR = 5  # rows: value on the interval, value at m, derivative on it, derivative at m, second derivative
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
    # [m - h, m + h] holds [a, b] despite the rounding of m and of b - a
    h = torch.nextafter(0.5 * (b - a) * (1 + 4 * U) + 2 * U * m.abs(), torch.full_like(a, math.inf))
    cm = x1 + m * d
    ad = d.abs() + dr
    slack = _widen(gamma(3) * (x1.abs() + (m * d).abs()) + m.abs() * dr)
    val_r = _widen(h * ad + slack)
    z = torch.zeros_like(d)
    C = torch.stack([cm, cm, d, d, z])
    R = torch.stack([val_r, slack, dr, dr, z])
    return IDual(C, R, h.reshape(-1))


# ------------------------------------------------------------------ affine maps


def affine(
    x: IDual,
    lin: Callable[[Tensor], Tensor],
    n_terms: int,
    bias: Tensor | None = None,
    abs_lin: Callable[[Tensor], Tensor] | None = None,
) -> IDual:
    """``lin(x) + bias`` for a linear map ``lin`` whose every output is a sum of at most
    ``n_terms`` products; ``abs_lin`` is the same map with absolute coefficients. The bias
    shifts the value rows, not the derivative."""
    g = gamma(n_terms + 2)
    Cf = x.C.flatten(0, 1)
    C = lin(Cf)
    R = (abs_lin or lin)(x.R.flatten(0, 1) + g * Cf.abs()) * (1 + g)
    C = C.view((NR, -1) + C.shape[1:])
    R = R.view((NR, -1) + R.shape[1:])
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
    """Dims of a per-row tensor ``(B, ...)`` shifted to the stacked ``(NR, B, ...)``."""
    if dim is None:
        return tuple(range(2, x.C.dim()))
    if isinstance(dim, int):
        dim = (dim,)
    return tuple(d + 1 if d >= 0 else d for d in dim)


# ------------------------------------------------------------------ products


def _imul(ac: Tensor, ar: Tensor, bc: Tensor, br: Tensor) -> tuple[Tensor, Tensor]:
    """Centre-radius product of intervals, rounding included."""
    c = ac * bc
    r = ac.abs() * br + ar * bc.abs() + ar * br + U * c.abs()
    return c, r


def _isq(c: Tensor, r: Tensor) -> tuple[Tensor, Tensor]:
    """Centre-radius square of an interval (tight: 0 when it holds 0)."""
    lo, hi = lohi(c, r)
    a, b = lo * lo, hi * hi
    mx = torch.maximum(a, b) * (1 + 2 * U)
    mn = torch.where((lo <= 0) & (hi >= 0), torch.zeros_like(lo), torch.minimum(a, b) * (1 - 2 * U))
    return from_lohi(mn, mx)


def _sum_terms(*terms):
    c = sum(t[0] for t in terms)
    r = sum(t[1] for t in terms) + len(terms) * U * c.abs()
    return c, r


def _product_rows(x: IDual, y: IDual, op) -> tuple[Tensor, Tensor]:
    """Rows of x * y (or x @ y): values, then (xy)' = x'y + xy' and (xy)'' = x''y + 2x'y' + xy''."""
    X, Y = (x.C, x.R), (y.C, y.R)

    def at(Z, i):
        return Z[0][i], Z[1][i]

    v = op(*at(X, slice(0, 2)), *at(Y, slice(0, 2)))
    d = _sum_terms(op(*at(X, 2), *at(Y, 0)), op(*at(X, 0), *at(Y, 2)))
    dm = _sum_terms(op(*at(X, 3), *at(Y, 1)), op(*at(X, 1), *at(Y, 3)))
    xd2 = (2 * X[0][2], 2 * X[1][2])
    d2 = _sum_terms(op(*at(X, 4), *at(Y, 0)), op(*xd2, *at(Y, 2)), op(*at(X, 0), *at(Y, 4)))
    C = torch.cat([v[0], d[0].unsqueeze(0), dm[0].unsqueeze(0), d2[0].unsqueeze(0)])
    R = torch.cat([v[1], d[1].unsqueeze(0), dm[1].unsqueeze(0), d2[1].unsqueeze(0)])
    return C, _widen(R)


def mul(x: IDual, y: IDual) -> IDual:
    """Elementwise product, with the product rule for the derivative rows."""
    return tighten(x.like(*_product_rows(x, y, _imul)))


def _imatmul(ac, ar, bc, br):
    n = ac.shape[-1]
    c = ac @ bc
    r = ac.abs() @ br + ar @ (bc.abs() + br) + gamma(n + 2) * (ac.abs() @ bc.abs())
    return c, r * (1 + gamma(n + 2))


def matmul(x: IDual, y: IDual) -> IDual:
    return tighten(x.like(*_product_rows(x, y, _imatmul)))


# ------------------------------------------------------------------ mean-value form


def _meet(c0, r0, c1, r1, c2, r2, h):
    """[c0 +- r0] intersected with [c1 +- r1] + [c2 +- r2] [-h, h]."""
    mv_r = _widen((r1 + (c2.abs() + r2) * h) * (1 + 4 * U))
    lo1, hi1 = lohi(c0, r0)
    lo2, hi2 = lohi(c1, mv_r)
    lo, hi = torch.maximum(lo1, lo2), torch.minimum(hi1, hi2)
    # an empty intersection is round-off between two valid enclosures: keep the first
    ok = lo <= hi
    return from_lohi(torch.where(ok, lo, lo1), torch.where(ok, hi, hi1))


def tighten(x: IDual) -> IDual:
    """Mean-value forms: the value on the interval within f(m) + f'(I) [-h, h], the
    derivative within f'(m) + f''(I) [-h, h]."""
    x = IDual(*_clean(x.C, x.R), x.h)  # NaN and inf (overflow, 0 * inf) become the whole line
    h = x.hb()
    C, R = x.C, x.R
    v = _meet(C[0], R[0], C[1], R[1], C[2], R[2], h)
    d = _meet(C[2], R[2], C[3], R[3], C[4], R[4], h)
    Cn = torch.stack([v[0], C[1], d[0], C[3], C[4]])
    Rn = torch.stack([v[1], R[1], d[1], R[3], R[4]])
    return x.like(Cn, Rn)


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
    d2f: Callable[[Tensor], Tensor] | None = None  # the second derivative away from the kinks
    crit_d2f: tuple[float, ...] = ()  # extrema of the second derivative

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

    def deriv2_range(self, lo, hi):
        if self.d2f is None:
            return torch.full_like(lo, -math.inf), torch.full_like(lo, math.inf)
        mn, mx = self._range(self.d2f, lo, hi, self.crit_d2f)
        for p, _, _ in self.kinks:  # the derivative jumps or bends there: no bound
            inside = (lo <= p) & (p <= hi)
            mn = torch.where(inside, torch.full_like(mn, -math.inf), mn)
            mx = torch.where(inside, torch.full_like(mx, math.inf), mx)
        return mn, mx


def unary(x: IDual, fn: Unary) -> IDual:
    """``fn`` elementwise: values by their ranges, derivative f'(I) x', second derivative
    f''(I) x'^2 + f'(I) x'', then the mean-value forms."""
    x = tighten(x)
    C, R = x.C, x.R
    lo, hi = lohi(C[0], R[0])
    plo, phi = lohi(C[1], R[1])
    v = from_lohi(*fn.value_range(lo, hi))
    p = from_lohi(*fn.value_range(plo, phi))
    f1 = from_lohi(*fn.deriv_range(lo, hi))
    f1p = from_lohi(*fn.deriv_range(plo, phi))
    f2 = from_lohi(*fn.deriv2_range(lo, hi))
    d = _imul(*f1, C[2], R[2])
    dm = _imul(*f1p, C[3], R[3])
    d2 = _sum_terms(_imul(*f2, *_isq(C[2], R[2])), _imul(*f1, C[4], R[4]))
    out = x.like(torch.stack([v[0], p[0], d[0], dm[0], d2[0]]), _widen(torch.stack([v[1], p[1], d[1], dm[1], d2[1]])))
    return tighten(out)


def square(x: IDual) -> IDual:
    x = tighten(x)
    C, R = x.C, x.R
    v, p = _isq(C[0], R[0]), _isq(C[1], R[1])
    d = _imul(2 * C[0], 2 * R[0], C[2], R[2])
    dm = _imul(2 * C[1], 2 * R[1], C[3], R[3])
    sq = _isq(C[2], R[2])
    d2 = _sum_terms((2 * sq[0], 2 * sq[1]), _imul(2 * C[0], 2 * R[0], C[4], R[4]))
    out = x.like(torch.stack([v[0], p[0], d[0], dm[0], d2[0]]), _widen(torch.stack([v[1], p[1], d[1], dm[1], d2[1]])))
    return tighten(out)


def _isum(c: Tensor, r: Tensor) -> tuple[Tensor, Tensor]:
    """Interval sum over the last dimension (keepdim)."""
    n = c.shape[-1]
    sc = c.sum(-1, keepdim=True)
    sr = (r.sum(-1, keepdim=True) + gamma(n) * c.abs().sum(-1, keepdim=True)) * (1 + gamma(n))
    return sc, sr


def _isub(a: tuple[Tensor, Tensor], b: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    c = a[0] - b[0]
    return c, a[1] + b[1] + U * c.abs()


def softmax(x: IDual, dim: int) -> IDual:
    """Softmax along ``dim``: s_i = 1 / (1 + sum_{j != i} exp(z_j - z_i)), bounded from the
    endpoints; s' = s (z' - <s, z'>), s'' = s' (z' - <s, z'>) + s (z'' - <s', z'> - <s, z''>)."""
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
    s, sm = rows
    z1, z1m, z2 = (C[2], R[2]), (C[3], R[3]), (C[4], R[4])
    g = _isub(z1, _isum(*_imul(*s, *z1)))  # z' - <s, z'>
    ds = _imul(*s, *g)
    gm = _isub(z1m, _isum(*_imul(*sm, *z1m)))
    dsm = _imul(*sm, *gm)
    inner = _isub(_isub(z2, _isum(*_imul(*ds, *z1))), _isum(*_imul(*s, *z2)))
    d2 = _sum_terms(_imul(*ds, *g), _imul(*s, *inner))
    Cout = torch.stack([s[0], sm[0], ds[0], dsm[0], d2[0]]).movedim(-1, d)
    Rout = torch.stack([s[1], sm[1], ds[1], dsm[1], d2[1]]).movedim(-1, d)
    return tighten(x.like(Cout, _widen(Rout)))


def reciprocal(x: IDual) -> IDual:
    """1 / x: decreasing on either side of 0; an interval that holds 0 gives the whole line
    (never certified: the walk splits it, or the path is reported incomplete)."""
    x = tighten(x)
    C, R = x.C, x.R

    def rng(lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
        ok = (lo > 0) | (hi < 0)
        a, b = 1.0 / hi, 1.0 / lo
        e = REL * torch.maximum(a.abs(), b.abs()) + TINY
        return from_lohi(torch.where(ok, a - e, -math.inf), torch.where(ok, b + e, math.inf))

    v, p = rng(*lohi(C[0], R[0])), rng(*lohi(C[1], R[1]))
    sq, sqp = _isq(*v), _isq(*p)
    f1, f1p = (-sq[0], sq[1]), (-sqp[0], sqp[1])  # -1/z^2
    c3, r3 = _imul(*v, *sq)
    f2 = (2 * c3, 2 * r3)  # 2/z^3
    d = _imul(*f1, C[2], R[2])
    dm = _imul(*f1p, C[3], R[3])
    d2 = _sum_terms(_imul(*f2, *_isq(C[2], R[2])), _imul(*f1, C[4], R[4]))
    out = x.like(torch.stack([v[0], p[0], d[0], dm[0], d2[0]]), _widen(torch.stack([v[1], p[1], d[1], dm[1], d2[1]])))
    return tighten(out)


def centre(x: IDual, dims: tuple[int, ...]) -> IDual:
    """x - mean(x) over the per-row ``dims`` (negative), a linear map: radius r_i + mean(r)."""
    n = 1
    for d in dims:
        n *= x.C.shape[d]
    mean_c = x.C.mean(dims, keepdim=True)
    C = x.C - mean_c
    R = x.R + x.R.mean(dims, keepdim=True) + gamma(n + 2) * (x.C.abs().mean(dims, keepdim=True) + C.abs())
    return x.like(C, _widen(R))
