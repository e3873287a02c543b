"""The Numba kernels behind :mod:`spacefold._core.walk.exact.mlp`: one layer of the walk of a small MLP of ReLU-type
layers for many paths at once, checked against the bound of its round-off, and the paths' measures (imported on
first use, with the other kernels)."""

from __future__ import annotations

import numpy as np

from ._jit import insertion_sort, jit, popcount, u64

# four times the smallest positive float64 (a subnormal): the most that underflow adds to an interpolated value's error
_TINY4 = 4 * 5e-324


@jit
def mlp_split(Z, E, T, D, FB, NX, PATH, R, ok, slope, boff, u, gap, act, em, w1, ub):
    """Split the pieces of every path where a neuron of this layer changes sign.

    Rows are breakpoints, the first ``R`` of each array in use: ``Z`` (rows, F) the layer's pre-activations there,
    ``E`` the bound of their error, ``T`` where they lie in t, ``D`` how far the error can move them, ``FB`` the
    bit they flip (-1 at t = 0 and 1), ``NX`` the next row of the path (-1 at t = 1), ``PATH`` their path. A path
    stays clean (``ok``) while every value of a row is farther from 0 than its error (the signs on both sides of
    it are decided) and its rows are more than ``gap`` apart in t beyond ``D``. A crossing row is appended with
    its values interpolated, the crossing neuron exactly 0, and their error bound from its piece's ends, the
    interpolation (unit round-off ``u``) and how far its place can move. The layer's bits are ``boff + neuron``.

    Where ``w1`` is not empty, ``E`` is first computed from ``em`` (the previous layer's, below): at neuron o,
    ``(w1[o]·em[r] + ub[o])·(1 + 4u)``, the error of a product whose rows of weights have 1-norms ``w1`` and whose
    bias is ``ub / u`` in magnitude (``ub`` also holds what underflow can add to the product).

    Returns the number of rows in use after the split, or -1 (nothing changed but ``ok``) where the arrays hold
    too few rows for it. With ``act`` the activation (slope ``slope[n]`` below 0) is then applied to ``Z`` in
    place, and ``em[r]`` bounds the error of every activation of row r plus ``u`` times its magnitude (what the
    next Linear's error bound needs)."""
    F = Z.shape[1]
    sg = np.empty(R, np.uint64)
    grow = 1.0 + 4.0 * u
    from_em = w1.size > 0
    for r in range(R):
        if from_em:
            e = em[r]
            for n in range(F):
                E[r, n] = (w1[n] * e + ub[n]) * grow
        acc = u64(0)
        good = True
        for n in range(F):
            v = Z[r, n]
            if v > 0.0:
                acc |= u64(1) << u64(n)
            good &= E[r, n] < abs(v) < np.inf  # (false for nan; an overflow is the layer walk's to report)
        sg[r] = acc
        if not good:
            ok[PATH[r]] = False
    nc = 0
    for r in range(R):
        q = NX[r]
        if q >= 0 and ok[PATH[r]]:
            nc += np.int64(popcount(sg[r] ^ sg[q]))
    if R + nc > Z.shape[0]:
        return -1
    split = ok.copy()  # the paths split here (ok may turn false on the way)
    cs = np.empty(64)
    cn = np.empty(64, np.int64)
    order = np.empty(64, np.int64)
    g = R
    for r in range(R):
        q = NX[r]
        if q < 0:
            continue
        p = PATH[r]
        x = sg[r] ^ sg[q]
        if x == 0 or not split[p]:
            continue
        k = 0
        while x:
            low = x & (~x + u64(1))
            n = np.int64(popcount(low - u64(1)))
            x ^= low
            a = Z[r, n]
            cs[k] = a / (a - Z[q, n])
            cn[k] = n
            order[k] = k
            k += 1
        insertion_sort(cs, order, k)
        ta = T[r]
        dt = T[q] - ta
        last = r
        good = True
        for i in range(k):
            s = cs[order[i]]
            n = cn[order[i]]
            T[g] = ta + s * dt
            # the error moves the crossing by up to this fraction of the piece, and the other values with it
            # (|a'/(a' - b') - a/(a - b)| for |a' - a| <= E_a, |b' - b| <= E_b, a and b of opposite signs)
            ea = E[r, n] + E[q, n]
            den = abs(Z[r, n] - Z[q, n]) - ea  # (> 0 but where round-off eats it: then undecided)
            ds = ea / den * grow if den > 0.0 else np.inf
            D[g] = ds * dt
            FB[g] = boff + n
            PATH[g] = p
            for m in range(F):
                dz = Z[q, m] - Z[r, m]
                v = Z[r, m] + s * dz
                Z[g, m] = v
                # (the round-off of s, of dz, s·dz and the sum: at most u·(|v| + |s·dz|), plus underflow)
                E[g, m] = (max(E[r, m], E[q, m]) + u * (abs(v) + abs(s * dz)) + ds * abs(dz)) * grow + _TINY4
                good &= m == n or E[g, m] < abs(v) < np.inf
            Z[g, n] = 0.0
            good &= T[g] - T[last] > D[g] + D[last] + gap
            NX[last] = g
            last = g
            g += 1
        NX[last] = q
        good &= T[q] - T[last] > D[q] + D[last] + gap
        if not good:
            ok[p] = False
    if act:
        for r in range(g):
            e = 0.0
            for m in range(F):
                v = Z[r, m]
                if not v > 0.0:
                    v *= slope[m]
                    Z[r, m] = v
                e = max(e, u * abs(v) + E[r, m])
            em[r] = e
    return g


@jit
def mlp_measure(FB, NX, n_paths, n_bits, ok, out_i, out_f):
    """The measures of the clean paths (``ok``; rows 0 .. n_paths − 1 at t = 0, linked by ``NX``, one bit ``FB``
    flipping at every inner row): ``out_i[p] = (r1, r2, n_regions)``, ``out_f[p] = (chi, max_profile)``."""
    diff = np.zeros(n_bits, np.bool_)
    for p in range(n_paths):
        if not ok[p]:
            continue
        d = 0
        r1 = 0
        r2 = 0
        best = 0.0
        r = NX[p]
        while NX[r] >= 0:
            k = FB[r]
            diff[k] = not diff[k]
            d += 1 if diff[k] else -1
            r2 += 1
            if d > r1:
                r1 = d
            c = 1.0 - r1 / r2
            if c > best:
                best = c
            r = NX[r]
        r = NX[p]
        while NX[r] >= 0:
            diff[FB[r]] = False
            r = NX[r]
        out_i[p, 0] = r1
        out_i[p, 1] = r2
        out_i[p, 2] = r2 + 1
        out_f[p, 0] = 1.0 - r1 / r2 if r2 > 0 else 0.0
        out_f[p, 1] = best


@jit(fastmath={"reassoc", "contract"})
def _dot4(x0, x1, x2, x3, w):
    """Four dot products with ``w`` (in any order of the terms: the bound of their round-off does not depend on it)."""
    c0 = c1 = c2 = c3 = 0.0
    for m in range(w.shape[0]):
        v = w[m]
        c0 += x0[m] * v
        c1 += x1[m] * v
        c2 += x2[m] * v
        c3 += x3[m] * v
    return c0, c1, c2, c3


@jit(fastmath={"reassoc", "contract"})
def _dot42(x0, x1, x2, x3, w, v):
    """:func:`_dot4` with two rows of weights at once (each row of inputs loaded once for both)."""
    a0 = a1 = a2 = a3 = c0 = c1 = c2 = c3 = 0.0
    for m in range(w.shape[0]):
        p = w[m]
        q = v[m]
        a0 += x0[m] * p
        a1 += x1[m] * p
        a2 += x2[m] * p
        a3 += x3[m] * p
        c0 += x0[m] * q
        c1 += x1[m] * q
        c2 += x2[m] * q
        c3 += x3[m] * q
    return a0, a1, a2, a3, c0, c1, c2, c3


@jit(fastmath={"reassoc", "contract"})
def _square_sum(x):
    s = 0.0
    for m in range(x.shape[0]):
        s += x[m] * x[m]
    return s


@jit
def mlp_first(X, W, b, Z, N):
    """The first layer of float32 inputs in float64: ``Z[r] = W @ X[r] + b`` and ``N[r] = Σ X[r]²`` (exact squares,
    summed in float64), four rows and two outputs at a time, each row widened to float64 once (no float64 copy of
    the inputs)."""
    R, K = X.shape
    buf = np.zeros((4, K))
    for r in range(0, R, 4):
        h = min(4, R - r)
        for k in range(h):
            for m in range(K):
                buf[k, m] = X[r + k, m]
            N[r + k] = _square_sum(buf[k])
        for k in range(h, 4):
            buf[k, :] = 0.0
        O = W.shape[0]
        for o in range(0, O - 1, 2):  # two outputs at a time: half the loads of the inputs per product
            c = _dot42(buf[0], buf[1], buf[2], buf[3], W[o], W[o + 1])
            for k in range(h):
                Z[r + k, o] = c[k] + b[o]
                Z[r + k, o + 1] = c[4 + k] + b[o + 1]
        if O % 2:
            d = _dot4(buf[0], buf[1], buf[2], buf[3], W[O - 1])
            for k in range(h):
                Z[r + k, O - 1] = d[k] + b[O - 1]
