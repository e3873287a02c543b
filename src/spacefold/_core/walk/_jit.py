"""The Numba kernels behind :mod:`spacefold._core.walk._kernels` (imported on first use: it compiles
or loads them from Numba's cache)."""

from __future__ import annotations

import warnings

import numba as nb
import numpy as np

_UNCACHED: list[str] = []


def jit(func=None, **flags):
    """``numba.njit(cache=True, nogil=True, **flags)``, or without the cache where Numba has no writable place
    for it (a read-only package directory and an unwritable HOME): the kernels are then compiled
    anew in every process."""
    if func is None:
        return lambda f: jit(f, **flags)
    try:
        return nb.njit(cache=True, nogil=True, **flags)(func)
    except RuntimeError as err:  # "cannot cache function ...: no locator available for file ..."
        _UNCACHED.append(str(err))
        return nb.njit(nogil=True, **flags)(func)


u64 = np.uint64
MAGIC = u64(0x0102040810204080)  # eight 0/1 bytes -> their eight bits, lowest byte lowest
S56 = u64(56)


@jit
def popcount(x):
    """The number of bits set in the 64-bit word x."""
    x = x - ((x >> u64(1)) & u64(0x5555555555555555))
    x = (x & u64(0x3333333333333333)) + ((x >> u64(2)) & u64(0x3333333333333333))
    x = (x + (x >> u64(4))) & u64(0x0F0F0F0F0F0F0F0F)
    return (x * u64(0x0101010101010101)) >> S56


@jit
def pack_signs(z, level, pos, big):
    """Fill ``pos`` (V, W) with words whose bit n of row r is z[r, n] > level; return whether every
    |z| is below ``big`` (false for nan)."""
    V, F = z.shape
    W = pos.shape[1]
    buf = np.zeros(W * 64, np.uint8)
    bw = buf.view(np.uint64)
    ok = True
    for r in range(V):
        for n in range(F):
            buf[n] = z[r, n] > level
        if big < np.inf:
            for n in range(F):
                ok &= abs(z[r, n]) < big
        for w in range(W):
            acc = u64(0)
            for k in range(8):
                acc |= ((bw[w * 8 + k] * MAGIC) >> S56) << u64(8 * k)
            pos[r, w] = acc
    return ok


@jit
def bit_at(pos, r, n):
    """Bit n of row r of the packed signs ``pos``."""
    return ((pos[r, n >> 6] >> u64(n & 63)) & u64(1)) != u64(0)


@jit
def clear_bit(pos, r, n):
    """Set bit n of row r of the packed signs ``pos`` to 0."""
    pos[r, n >> 6] &= ~(u64(1) << u64(n & 63))


@jit(inline="always")
def insertion_sort(keys, idx, n):
    """Sort ``idx[:n]`` by ``keys[idx]`` in place (pieces hold few crossings)."""
    for i in range(1, n):
        v = idx[i]
        kv = keys[v]
        j = i - 1
        while j >= 0 and keys[idx[j]] > kv:
            idx[j + 1] = idx[j]
            j -= 1
        idx[j + 1] = v


@jit
def sort_by(keys, idx):
    """Sort ``idx`` by ``keys[idx]`` in place (insertion sort up to 32: pieces hold few crossings)."""
    if idx.size > 32:
        o = np.argsort(keys[idx], kind="mergesort")
        idx[:] = idx[o]
        return
    insertion_sort(keys, idx, idx.size)


@jit
def at_level(v, za, zb, level, rtol):
    """Whether v, a value of a neuron crossing ``level`` on a piece from za to zb, is the level up to
    round-off (then it is set to the level exactly)."""
    return abs(v - level) <= rtol * (abs(za - level) + abs(zb - level) + abs(level))


@jit
def split_act(z, t, nxt, prv, B, tol, levels, thr, seg_slope, seg_off, act, rtol, big):
    """Split the pieces where z crosses one of ``levels`` (sorted); bits are z > levels[thr]
    (no bits when thr < 0). ``seg_slope``, ``seg_off`` (F, K + 1): the activation on the
    segments between the levels, φ(z) = slope·z + offset. With ``act`` φ is applied to z in
    place at the end. A crossing neuron whose value at its breakpoint is its level up to
    ``rtol`` (:func:`at_level`) is set to the level there. Raises FloatingPointError, before
    anything changes, where some |z| is not below ``big`` (not finite, or about to overflow).
    See :mod:`spacefold._core.walk._kernels`."""
    V, F = z.shape
    W = (F + 63) // 64
    K = levels.size
    pos_lv = np.empty((K, V, W), np.uint64)
    for lv in range(K):
        if not pack_signs(z, levels[lv], pos_lv[lv], big if lv == 0 else np.inf) and lv == 0:
            raise FloatingPointError("values not finite or too large")  # before z changes; the caller reports
    bits = thr >= 0
    pos0 = pos_lv[thr] if bits else pos_lv[0]
    # ---- crossings: rows whose signs differ from the next row's, level by level
    ncand = 0
    for r in range(V):
        q = nxt[r]
        if q != r:
            for lv in range(K):
                for w in range(W):
                    ncand += np.int64(popcount(pos_lv[lv, r, w] ^ pos_lv[lv, q, w]))
    ints = np.empty((5, ncand), np.int64)
    c_piece, c_n, c_lv, tie_r, tie_n = ints[0], ints[1], ints[2], ints[3], ints[4]
    c_frac = np.empty(ncand, np.float64)
    nc = 0
    nt = 0
    for r in range(V):  # crossings in order of their piece's row: each piece's are contiguous
        q = nxt[r]
        if q == r:
            continue
        for lv in range(K):
            level = levels[lv]
            for w in range(W):
                x = pos_lv[lv, r, w] ^ pos_lv[lv, q, w]
                while x:
                    low = x & (~x + u64(1))
                    n = w * 64 + np.int64(popcount(low - u64(1)))
                    x ^= low
                    a = np.float64(z[r, n]) - level
                    b = np.float64(z[q, n]) - level
                    if (a < 0) or (b < 0):  # one end is above the level (the bits differ): a crossing
                        c_piece[nc] = r
                        c_n[nc] = n
                        c_lv[nc] = lv
                        c_frac[nc] = a / (a - b)
                        nc += 1
                    elif lv == thr:  # the other end sits exactly at the threshold: a tie, no breakpoint
                        tie_r[nt] = r if a == 0 else q
                        tie_n[nt] = n
                        nt += 1
    # ---- per piece: crossings sorted by t, grouped into new breakpoints
    tc = np.empty(nc, np.float64)
    order = np.arange(nc)
    c_row = np.empty(nc, np.int64)  # breakpoint row of every crossing (by position in order)
    c_slot = np.empty(nc, np.int64)  # 0: at the piece start, j: new breakpoint j, m + 1: at its end
    g_piece = np.empty(nc, np.int64)
    g_t = np.empty(nc, np.float64)
    p_start = np.empty(nc + 1, np.int64)  # pieces: crossings p_start[p] .. p_start[p + 1] - 1
    p_g0 = np.empty(nc + 1, np.int64)  # their new rows V + p_g0[p] .. V + p_g0[p + 1] - 1
    n_pieces = 0
    G = 0
    i = 0
    while i < nc:
        r = c_piece[i]
        j = i
        while j < nc and c_piece[j] == r:
            j += 1
        ta = t[r]
        tb = t[nxt[r]]
        for k in range(i, j):
            tc[k] = ta + (tb - ta) * c_frac[k]
        sort_by(tc, order[i:j])
        p_start[n_pieces] = i
        p_g0[n_pieces] = G
        n_pieces += 1
        m = 0
        t_first = 0.0  # the first crossing of the current breakpoint: a group spans at most tol
        for k in range(i, j):
            c = order[k]
            tk = tc[c]
            if tk - ta <= tol:
                c_row[k] = r
                c_slot[k] = 0
            elif tb - tk <= tol:
                c_row[k] = nxt[r]
                c_slot[k] = -1  # set to m + 1 below
            else:
                if m == 0 or tk - t_first > tol:
                    g_piece[G] = r
                    g_t[G] = tk
                    G += 1
                    m += 1
                    t_first = tk
                c_row[k] = V + G - 1
                c_slot[k] = m
        for k in range(i, j):
            if c_slot[k] < 0:
                c_slot[k] = m + 1
        i = j
    p_start[n_pieces] = nc
    p_g0[n_pieces] = G
    # ---- a crossing neuron is exactly at its level at its breakpoint (not at the interpolation's
    # round-off, which would make a pre-activation that is 0 on a whole later piece 1e-17 there):
    # the rows of the walk's inner breakpoints (not t = 0, 1) and their values
    snap = np.zeros(nc, np.bool_)
    n_snap = 0
    for k in range(nc):
        row = c_row[k]
        if row < 2 * B:
            continue
        c = order[k]
        n = c_n[c]
        level = levels[c_lv[c]]
        r = c_piece[c]
        za = np.float64(z[r, n])
        zb = np.float64(z[nxt[r], n])
        if row < V:
            v = np.float64(z[row, n])
        else:
            g = row - V
            v = za + (g_t[g] - t[r]) / (t[nxt[r]] - t[r]) * (zb - za)
        if at_level(v, za, zb, level, rtol):
            snap[k] = True
            n_snap += 1
    snap_row = np.empty(n_snap, np.int64)
    snap_n = np.empty(n_snap, np.int64)
    snap_val = np.empty(n_snap, np.float64)
    u = 0
    for k in range(nc):
        if snap[k]:
            row = c_row[k]
            snap_row[u] = row
            snap_n[u] = c_n[order[k]]
            snap_val[u] = levels[c_lv[order[k]]]
            u += 1
    if act:  # old rows merged into: their values as the Linear after sees them
        for u in range(n_snap):
            if snap_row[u] < V:
                z[snap_row[u], snap_n[u]] = snap_val[u]
    # ---- links and times of the new rows
    Vn = V + G
    t2 = np.empty(Vn, np.float64)
    nxt2 = np.empty(Vn, np.int64)
    prv2 = np.empty(Vn, np.int64)
    t2[:V] = t
    nxt2[:V] = nxt
    prv2[:V] = prv
    g_s = np.empty(G, np.float64)
    pos = np.empty((Vn, W), np.uint64)
    pos[:V] = pos0
    # what the Linear after the activation needs at the new rows: per split piece, its ends,
    # crossings and new rows; per crossing, its neuron, slot and values at the ends
    pl = np.empty((6, n_pieces if act else 0), np.int64)
    pl_a, pl_b, pl_c0, pl_c1, pl_g0, pl_m = pl[0], pl[1], pl[2], pl[3], pl[4], pl[5]
    cs_int = np.empty((3, nc if act else 0), np.int64)
    cs_n, cs_lv, cs_slot = cs_int[0], cs_int[1], cs_int[2]
    cs_z = np.empty((2, nc if act else 0), np.float64)
    cs_za, cs_zb = cs_z[0], cs_z[1]
    pi = 0
    for p in range(n_pieces):
        g0, g1 = p_g0[p], p_g0[p + 1]
        if g1 == g0:
            continue
        r = g_piece[g0]
        q = nxt[r]
        ta = t[r]
        tb = t[q]
        # ---- times and links of the new rows
        for g in range(g0, g1):
            row = V + g
            t2[row] = g_t[g]
            g_s[g] = (g_t[g] - ta) / (tb - ta)
            nxt2[row] = row + 1 if g + 1 < g1 else q
            prv2[row] = row - 1 if g > g0 else r
            if bits:
                for w in range(W):
                    pos[row, w] = pos0[r, w] | pos0[q, w]
        nxt2[r] = V + g0
        prv2[q] = V + g1 - 1
        # ---- signs at the new rows: a neuron crossing the threshold is 1 (the OR) on its
        # positive side only
        for k in range(p_start[p], p_start[p + 1]):
            c = order[k]
            n = c_n[c]
            sl = c_slot[k]
            if bits and c_lv[c] == thr:
                # the sign before the snap (a crossing merged into row r has its level there now)
                if bit_at(pos0, r, n):  # positive before the crossing: 0 from its breakpoint on
                    for g in range(g0 + max(sl, 1) - 1, g1):
                        clear_bit(pos, V + g, n)
                else:  # positive after it: 0 up to its breakpoint
                    for g in range(g0, g0 + min(sl, g1 - g0)):
                        clear_bit(pos, V + g, n)
            if act:
                cs_n[k] = n
                cs_lv[k] = c_lv[c]
                cs_slot[k] = sl
                cs_za[k] = z[r, n]
                cs_zb[k] = z[q, n]
        if act:
            pl_a[pi] = r
            pl_b[pi] = q
            pl_c0[pi] = p_start[p]
            pl_c1[pi] = p_start[p + 1]
            pl_g0[pi] = g0
            pl_m[pi] = g1 - g0
            pi += 1
    # ---- flips of the bits along the paths
    if bits:
        # a neuron crossing the threshold inside a piece is at it (bit 0) at its breakpoint
        for k in range(nc):
            if c_lv[order[k]] == thr:
                clear_bit(pos, c_row[k], c_n[order[k]])
        # candidates: crossings and ties away from t = 0 and t = 1; those on old rows may repeat
        n_new = 0
        n_old = 0
        for k in range(nc):
            if c_lv[order[k]] != thr:
                continue
            if c_row[k] >= V:
                n_new += 1
            elif c_row[k] >= 2 * B:
                n_old += 1
        for k in range(nt):
            if tie_r[k] >= 2 * B:
                n_old += 1
        keys = np.empty(n_old, np.int64)
        cr = np.empty(n_new + n_old, np.int64)
        cn = np.empty(n_new + n_old, np.int64)
        u = 0
        o = 0
        for k in range(nc):
            if c_lv[order[k]] != thr:
                continue
            row = c_row[k]
            if row >= V:
                cr[u] = row
                cn[u] = c_n[order[k]]
                u += 1
            elif row >= 2 * B:
                keys[o] = row * F + c_n[order[k]]
                o += 1
        for k in range(nt):
            if tie_r[k] >= 2 * B:
                keys[o] = tie_r[k] * F + tie_n[k]
                o += 1
        if n_old:
            keys = np.unique(keys)
            for k in range(keys.size):
                cr[u] = keys[k] // F
                cn[u] = keys[k] % F
                u += 1
        n_flip = 0
        for k in range(u):
            row, n = cr[k], cn[k]
            after = bit_at(pos, nxt2[row], n)
            if not bit_at(pos, row, n) and bit_at(pos, prv2[row], n) != after:
                n_flip += 1
        for b in range(B):
            for w in range(W):
                n_flip += np.int64(popcount((pos[b, w] | pos[nxt2[b], w]) ^ pos0[b, w]))
                e = B + b
                n_flip += np.int64(popcount((pos[prv2[e], w] | pos[e, w]) ^ pos0[e, w]))
        f_row = np.empty(n_flip, np.int64)
        f_n = np.empty(n_flip, np.int64)
        f_bit = np.empty(n_flip, np.bool_)
        f = 0
        for b in range(B):
            e = B + b
            for w in range(W):
                x = (pos[b, w] | pos[nxt2[b], w]) ^ pos0[b, w]
                while x:
                    low = x & (~x + u64(1))
                    x ^= low
                    f_row[f] = b
                    f_n[f] = w * 64 + np.int64(popcount(low - u64(1)))
                    f_bit[f] = (pos0[b, w] & low) == u64(0)
                    f += 1
                x = (pos[prv2[e], w] | pos[e, w]) ^ pos0[e, w]
                while x:
                    low = x & (~x + u64(1))
                    x ^= low
                    f_row[f] = e
                    f_n[f] = w * 64 + np.int64(popcount(low - u64(1)))
                    f_bit[f] = (pos0[e, w] & low) != u64(0)
                    f += 1
        for k in range(u):
            row, n = cr[k], cn[k]
            after = bit_at(pos, nxt2[row], n)
            if not bit_at(pos, row, n) and bit_at(pos, prv2[row], n) != after:
                f_row[f] = row
                f_n[f] = n
                f_bit[f] = after
                f += 1
        start_bits = np.empty((B, F), np.bool_)
        for b in range(B):
            for n in range(F):
                start_bits[b, n] = bit_at(pos0, b, n)
    else:
        f_row = np.empty(0, np.int64)
        f_n = np.empty(0, np.int64)
        f_bit = np.empty(0, np.bool_)
        start_bits = np.empty((0, F), np.bool_)
    if act:
        # the activation, in place (z is not needed any more): slope·z + offset on its segment,
        # segment by segment over a row (loops over neurons that vectorise)
        sl = np.ascontiguousarray(seg_slope.T)
        of = np.ascontiguousarray(seg_off.T)
        ident = np.empty(K + 1, np.bool_)  # segments where the activation is z itself
        for j in range(K + 1):
            ident[j] = np.all(sl[j] == 1.0) and np.all(of[j] == 0.0)
        if K == 1 and ident[1]:  # ReLU type: only the values below the kink change
            level = levels[0]
            s0, o0 = sl[0], of[0]
            for r in range(V):
                for n in range(F):
                    v = z[r, n]
                    if not v > level:
                        z[r, n] = s0[n] * v + o0[n]
        else:
            row = np.empty(F, z.dtype)
            for r in range(V):
                for n in range(F):
                    row[n] = z[r, n]
                if not ident[0]:
                    for n in range(F):
                        z[r, n] = sl[0, n] * row[n] + of[0, n]
                for j in range(K):
                    level = levels[j]
                    if ident[j + 1]:
                        for n in range(F):
                            if row[n] > level:
                                z[r, n] = row[n]
                    else:
                        for n in range(F):
                            if row[n] > level:
                                z[r, n] = sl[j + 1, n] * row[n] + of[j + 1, n]
    return (
        t2,
        nxt2,
        prv2,
        g_piece[:G],
        g_s,
        start_bits,
        f_row,
        f_n,
        f_bit,
        (pl_a[:pi], pl_b[:pi], pl_c0[:pi], pl_c1[:pi], pl_g0[:pi], pl_m[:pi], cs_n, cs_lv, cs_slot, cs_za, cs_zb),
        (snap_row, snap_n, snap_val),
        pos,
    )


@jit
def kink(seg_slope, n, lv, upward):
    """The change of the activation's slope where neuron n crosses level lv, in the direction
    of travel (upward: from below the level to above it)."""
    d = seg_slope[n, lv + 1] - seg_slope[n, lv]
    return d if upward else -d


@jit
def act_value(seg_slope, seg_off, levels, n, v):
    """The activation of neuron n at the pre-activation v."""
    j = 0
    while j < levels.size and v > levels[j]:
        j += 1
    return seg_slope[n, j] * v + seg_off[n, j]


@jit(inline="always")
def any_to_redo(v, ya, yb, bound, dd, s, s1):
    """Whether an output ``v`` at a new row (fraction ``s`` of the piece, ``s1 = 1 − s``) is to be
    computed again as a plain product: within ``bound`` of 0, or of its value at an end (``ya``,
    ``yb``) where the interpolation of the ends (``dd = |yb − ya|``) would have moved away from it.
    The test of :func:`new_rows_linear`'s second pass, branch-free with an integer reduction and
    on read-only rows, so that it vectorises."""
    hit = 0
    for o in range(v.size):
        x = v[o]
        bd = bound[o]
        hit |= (
            (abs(x) <= bd)
            | ((abs(x - ya[o]) <= bd) & (s * dd[o] > 4 * bd))
            | ((abs(x - yb[o]) <= bd) & (s1 * dd[o] > 4 * bd))
        )
    return hit != 0


@jit
def new_rows_linear(
    out,
    V,
    wt,
    levels,
    seg_slope,
    pl_a,
    pl_b,
    pl_c0,
    pl_c1,
    pl_g0,
    pl_m,
    cs_n,
    cs_lv,
    cs_slot,
    cs_za,
    cs_zb,
    g_s,
    y,
    seg_off,
    bias,
    rtol,
    wgt,
    wnorm,
    ynorm_row,
):
    """The Linear's output at the new rows ``V ..`` of ``out`` from its rows at the pieces' ends:
    running sums of weight columns along each piece (see :mod:`spacefold._core.walk._kernels`).

    An output within ``rtol`` times a bound of its terms of 0 or of its value at an end of the
    piece (``wnorm``: the Euclidean norm of every output's weights; ``y``: the activations at the old
    rows, ``ynorm_row`` at least their Euclidean norms, in float64; by Cauchy-Schwarz) is computed
    again as the plain product of the activation at the new row and the weights ``wgt`` (the
    Linear's weight, ``wt`` transposed), plus ``bias``."""
    O = out.shape[1]
    F = y.shape[1]
    buf = np.empty((pl_m.max(), O), np.float64)
    acc = np.empty(O, np.float64)
    bound = np.empty(O, np.float64)
    dd = np.empty(O, np.float64)
    redo = np.zeros(pl_m.max() + 1, np.bool_)
    phi = np.empty(F, np.float64)
    for p in range(pl_a.size):
        a, b, c0, c1, g0, m = pl_a[p], pl_b[p], pl_c0[p], pl_c1[p], pl_g0[p], pl_m[p]
        # outputs that cancel to round-off (an exact 0 from bias-free layers, saturated Hardtanh,
        # quantised weights), or that stay at an end's value (constant on one side of the row) where
        # the interpolation of the ends would move away from it: the sums leave round-off where a
        # plain product of the activation at the new row gives what a forward pass gives. Those
        # are computed again as that product (below).
        # |φ(g)| <= max(|φ(a)|, |φ(b)|) neuron by neuron (φ is monotone or convex along the piece), so
        # Σ|w||φ| at a, b and g is at most (Cauchy-Schwarz) ‖w‖₂·‖max(|φ(a)|, |φ(b)|)‖₂
        ynorm = np.sqrt(ynorm_row[a] * ynorm_row[a] + ynorm_row[b] * ynorm_row[b])
        for o in range(O):
            bound[o] = rtol * (abs(out[a, o]) + abs(out[b, o]) + abs(bias[o]) + wnorm[o] * ynorm)
            dd[o] = abs(out[b, o] - out[a, o])
        acc[:] = 0.0
        i = c0
        for j in range(1, m + 1):  # forward: y(a) and the crossings before new row j
            while i < c1 and cs_slot[i] < j:
                n = cs_n[i]
                lv = cs_lv[i]
                c = kink(seg_slope, n, lv, cs_zb[i] > levels[lv]) * (cs_za[i] - levels[lv])
                for o in range(O):
                    acc[o] += c * wt[n, o]
                i += 1
            s = g_s[g0 + j - 1]
            w = 1.0 - s
            for o in range(O):
                buf[j - 1, o] = w * (out[a, o] + acc[o])
            # crossings merged into this breakpoint (within tol of it): their exact value here, the
            # level itself where that is the value up to round-off (as split_act sets it)
            while i < c1 and cs_slot[i] == j:
                n = cs_n[i]
                lv = cs_lv[i]
                za, zb, level = cs_za[i], cs_zb[i], levels[lv]
                delta = kink(seg_slope, n, lv, zb > level)
                zs = za + s * (zb - za)
                h = zs - level if (zs > level) == (zb > level) and not at_level(zs, za, zb, level, rtol) else 0.0
                d = delta * (h - s * (zb - level))
                c = delta * (za - level)
                for o in range(O):
                    buf[j - 1, o] += d * wt[n, o]
                    acc[o] += c * wt[n, o]
                i += 1
        acc[:] = 0.0
        i = c1 - 1
        for j in range(m, 0, -1):  # backward: y(b) and the crossings after new row j
            while i >= c0 and cs_slot[i] > j:
                n = cs_n[i]
                lv = cs_lv[i]
                c = -kink(seg_slope, n, lv, cs_zb[i] > levels[lv]) * (cs_zb[i] - levels[lv])
                for o in range(O):
                    acc[o] += c * wt[n, o]
                i -= 1
            s = g_s[g0 + j - 1]
            row = V + g0 + j - 1
            for o in range(O):
                out[row, o] = buf[j - 1, o] + s * (out[b, o] + acc[o])
            redo[j] = any_to_redo(out[row], out[a], out[b], bound, dd, s, 1.0 - s)
        for j in range(1, m + 1):
            if not redo[j]:
                continue
            row = V + g0 + j - 1
            s = g_s[g0 + j - 1]
            have = False
            for o in range(O):
                v = out[row, o]
                if (
                    abs(v) > bound[o]
                    and (abs(v - out[a, o]) > bound[o] or s * dd[o] <= 4 * bound[o])
                    and (abs(v - out[b, o]) > bound[o] or (1 - s) * dd[o] <= 4 * bound[o])
                ):
                    continue
                if not have:  # the activation at this row: interpolated, exact for the crossing neurons
                    for n in range(F):
                        ya = np.float64(y[a, n])
                        phi[n] = ya + s * (np.float64(y[b, n]) - ya)
                    for i in range(c0, c1):
                        n = cs_n[i]
                        za, zb = cs_za[i], cs_zb[i]
                        phi[n] = act_value(seg_slope, seg_off, levels, n, za + s * (zb - za))
                    # a neuron crossing several levels in the piece (a Hardtanh's kinks and its bit
                    # threshold) is listed once per level: the one merged into this row, at its level
                    # up to round-off, is that level (as split_act set it), whatever the others say
                    for i in range(c0, c1):
                        if cs_slot[i] != j:
                            continue
                        n = cs_n[i]
                        za, zb, level = cs_za[i], cs_zb[i], levels[cs_lv[i]]
                        if at_level(za + s * (zb - za), za, zb, level, rtol):
                            phi[n] = act_value(seg_slope, seg_off, levels, n, level)
                    have = True
                acc0 = 0.0
                for n in range(F):  # a row of the weight (contiguous), not a column of wt
                    acc0 += wgt[o, n] * phi[n]
                out[row, o] = acc0 + bias[o]


@jit
def lerp_rows(x, ia, ib, w, w1, out):
    """``out[g] = torch.lerp(x[ia[g]], x[ib[g]], w[g])`` (its formula; ``w1 = 1 − w``) for 2-D arrays."""
    K = x.shape[1]
    for g in range(ia.size):
        a = ia[g]
        b = ib[g]
        wg = w[g]
        if wg < 0.5:
            for k in range(K):
                out[g, k] = x[a, k] + wg * (x[b, k] - x[a, k])
        else:
            vg = w1[g]
            for k in range(K):
                out[g, k] = x[b, k] - (x[b, k] - x[a, k]) * vg


@jit
def list_ranks(nxt, B):
    """Walk every path along ``nxt`` from its start row b (rows 0 .. B-1) to its end: the
    index of every row in path-major, t-ascending order, its path, and the inverse order."""
    V = nxt.size
    rank = np.empty(V, np.int64)
    path = np.empty(V, np.int64)
    order = np.empty(V, np.int64)
    k = 0
    for b in range(B):
        r = b
        while True:
            rank[r] = k
            path[r] = b
            order[k] = r
            k += 1
            q = nxt[r]
            if q == r:
                break
            r = q
    return rank, path, order


@jit
def pool_argmax(x, kh, kw, sh, sw, ph, pw, dh, dw, am, out, big):
    """Max pooling of ``x`` (R, C, H, W) with windows kh x kw, strides sh, sw, padding ph, pw and
    dilations dh, dw, as torch computes it: ``out`` (R, C, Ho, Wo) the maximum of every window (its
    first maximum in row-major order, padding excluded) and ``am`` the index of that input in its
    H·W plane. Returns whether every input read is below ``big`` in magnitude (false for nan)."""
    if kh == 2 and kw == 2 and sh == 2 and sw == 2 and ph == 0 and pw == 0 and dh == 1 and dw == 1:
        return pool_argmax_2x2(x, am, out, big)
    R, C, H, W = x.shape
    Ho, Wo = am.shape[2], am.shape[3]
    ok = True
    for r in range(R):
        for c in range(C):
            for i in range(Ho):
                h0 = i * sh - ph
                for j in range(Wo):
                    w0 = j * sw - pw
                    bi = -1
                    best = x[r, c, 0, 0]
                    for a in range(kh):
                        h = h0 + a * dh
                        if h < 0 or h >= H:
                            continue
                        for b in range(kw):
                            w = w0 + b * dw
                            if w < 0 or w >= W:
                                continue
                            v = x[r, c, h, w]
                            ok &= abs(v) < big
                            if bi < 0 or v > best:
                                best = v
                                bi = h * W + w
                    am[r, c, i, j] = bi
                    out[r, c, i, j] = best
    return ok


@jit
def pool_argmax_2x2(x, am, out, big):
    """:func:`pool_argmax` for 2 x 2 windows with stride 2, no padding and no dilation (several times faster)."""
    R, C, H, W = x.shape
    Ho, Wo = am.shape[2], am.shape[3]
    ok = True
    for r in range(R):
        for c in range(C):
            for i in range(Ho):
                h = 2 * i
                for j in range(Wo):
                    w = 2 * j
                    v0, v1, v2, v3 = x[r, c, h, w], x[r, c, h, w + 1], x[r, c, h + 1, w], x[r, c, h + 1, w + 1]
                    best, bi = v0, h * W + w
                    if v1 > best:
                        best, bi = v1, h * W + w + 1
                    if v2 > best:
                        best, bi = v2, (h + 1) * W + w
                    if v3 > best:
                        best, bi = v3, (h + 1) * W + w + 1
                    ok &= (abs(v0) < big) & (abs(v1) < big) & (abs(v2) < big) & (abs(v3) < big)
                    am[r, c, i, j] = bi
                    out[r, c, i, j] = best
    return ok


if _UNCACHED:
    warnings.warn(
        f"Numba cannot cache spacefold's compiled kernels here ({_UNCACHED[0]}); they are compiled "
        "anew in every process. Set NUMBA_CACHE_DIR to a writable directory to cache them",
        RuntimeWarning,
        stacklevel=2,
    )
