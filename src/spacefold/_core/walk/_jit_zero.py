"""The zero rule of the exact walk, compiled: the outputs of an ``nn.Linear`` that are 0 on a piece up to
round-off (docs/failure-modes.md, 'The zero rule'; the torch version is ``exact.fused._zero_round_off``)."""

import numpy as np

from ._jit import jit


@jit(inline="always")
def _touch(out, r, q, p, o):
    """Whether output ``o`` is on the same side of 0 at both neighbours ``q``, ``p`` of row ``r`` (inner rows): a
    value near 0 at ``r`` between them is where the output may touch 0 and turn back."""
    return q != r and p != r and (out[q, o] > 0) == (out[p, o] > 0)


@jit
def zero_candidates(out, thr, nxt, prv, ends, touches=False):
    """The outputs ``(row, column)`` of a Linear within ``thr[column]`` of 0 whose row has a neighbour along its
    path (``nxt``, ``prv``; an end row links to itself) within that bound too, or (with ``ends``) is an end of it,
    or (with ``touches``) is an inner row whose neighbours are on the same side of 0."""
    R, O = out.shape
    n = 0
    rows = np.empty(16, np.int64)
    cols = np.empty(16, np.int64)
    thr_d = thr.astype(out.dtype)  # compared in the outputs' dtype: rounding it down only drops candidates
    for r in range(R):
        hit = False
        for o in range(O):  # branch-free first, so that it vectorises
            hit |= abs(out[r, o]) <= thr_d[o]
        if not hit:
            continue
        q, p = nxt[r], prv[r]
        at_end = ends and (q == r or p == r)
        for o in range(O):  # plain ifs: a chain of ``or`` here made the loop several times slower
            if abs(out[r, o]) > thr_d[o]:
                continue
            ok = at_end
            if not ok and q != r:
                ok = abs(out[q, o]) <= thr[o]
            if not ok and p != r:
                ok = abs(out[p, o]) <= thr[o]
            if not ok and touches:
                ok = _touch(out, r, q, p, o)
            if ok:
                if n == rows.size:
                    rows = np.concatenate((rows, np.empty(n, np.int64)))
                    cols = np.concatenate((cols, np.empty(n, np.int64)))
                rows[n] = r
                cols[n] = o
                n += 1
    return rows[:n], cols[:n]


@jit
def term_within(out, x, wabs, babs, wnorm, err, nxt, prv, rr, o, V, ab_a, ab_b, rtol, tracked):
    """Whether output ``o`` of a Linear at row ``rr`` is within the bound of its round-off (see
    :func:`zero_round_off`)."""
    if rr < V:
        a = rr
        b = rr
    elif ab_a.size:
        a = ab_a[rr - V]
        b = ab_b[rr - V]
    else:  # the nearest first rows before and after (a row the split added lies between them)
        a = rr
        while a >= V:
            a = prv[a]
        b = rr
        while b >= V:
            b = nxt[b]
    F = x.shape[1]
    acc = 0.0
    if rr < V:
        for n in range(F):
            acc += abs(np.float64(x[a, n])) * wabs[o, n]
    else:
        for n in range(F):
            acc += (abs(np.float64(x[a, n])) + abs(np.float64(x[b, n]))) * wabs[o, n]
    bound = acc + babs[o]
    if rr >= V:  # interpolated from the outputs at a and b (and corrected): their round-off too
        bound += abs(np.float64(out[a, o])) + abs(np.float64(out[b, o]))
    bound *= rtol
    if tracked:
        bound += err[rr] * wnorm[o]  # the error the inputs carry
    else:
        bound *= 4  # the inputs carry the round-off of earlier layers too
    return abs(np.float64(out[rr, o])) <= bound


@jit
def zero_round_off(out, x, wabs, babs, wnorm, err, thr, nxt, prv, V, ab_a, ab_b, rtol, tracked, touches=False):
    """The outputs ``(rows, columns)`` of a Linear (``out``, one row per breakpoint; ``x`` its input at the first
    ``V`` rows) that are 0 on a piece up to round-off. The candidates of
    :func:`zero_candidates` (``thr``: the largest bound any output can have) are kept where the output is
    within the bound of its round-off, ``rtol·(Σ|w||x| + |b|)`` (``wabs``, ``babs``: |W| by rows, |b|) at its
    row and at a neighbouring row of the same path (``nxt``, ``prv``), or (``tracked``) is at an end of it.
    A row ``V + g`` the split added lies between rows ``ab_a[g]`` and ``ab_b[g]`` (empty: the nearest first
    rows along the path), its input at most theirs summed, and its output interpolated from theirs (their
    round-off added). With ``tracked`` the bound adds the error the inputs carry, ``err·‖w‖₂`` (``wnorm``);
    without, it is taken four times. With ``touches`` an output within that bound at an inner row whose neighbours
    are on the same side of 0 is kept too (where the output may touch 0 and turn back: only a finer dtype can tell
    whether it crosses)."""
    rows, cols = zero_candidates(out, thr, nxt, prv, tracked, touches)
    k = rows.size
    keep = np.zeros(k, np.bool_)
    for i in range(k):
        r = rows[i]
        o = cols[i]
        if not term_within(out, x, wabs, babs, wnorm, err, nxt, prv, r, o, V, ab_a, ab_b, rtol, tracked):
            continue
        q = nxt[r]
        p = prv[r]
        near = tracked and (q == r or p == r)
        if not near and q != r:
            near = term_within(out, x, wabs, babs, wnorm, err, nxt, prv, q, o, V, ab_a, ab_b, rtol, tracked)
        if not near and p != r:
            near = term_within(out, x, wabs, babs, wnorm, err, nxt, prv, p, o, V, ab_a, ab_b, rtol, tracked)
        if not near and touches:
            near = _touch(out, r, q, p, o)
        keep[i] = near
    return rows[keep], cols[keep]
