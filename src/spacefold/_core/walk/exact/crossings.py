"""Where pre-activations cross a kink, and the breakpoints inserted there (docs/method.md,
'The exact walk', step 2, with torch operations; :mod:`spacefold._core.walk._kernels` does the same in
one compiled call). :func:`_cut` finds the crossings and splits the pieces (a :class:`Cut`);
the snapping helpers set a crossing neuron to its level exactly at its breakpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .program import _Step
from .settings import WalkSettings
from .state import _EPS64, _NUMPY_FLOATS, _at, _grew, _State

# layers narrower than this are left to torch (NumPy's per-call cost outweighs its speed there)
_NUMPY_MIN_WIDTH = 64


def _signs(z: Tensor, tie_tol: float) -> Tensor:
    """``z > tie_tol`` as bool ``(V, F8)``, F rounded up to a multiple of 8 with false columns.

    The padding lets a row of signs be read as 64-bit words (:func:`_sign_changes`).
    """
    V, F_ = z.shape
    F8 = -(-F_ // 8) * 8
    out = (
        torch.empty(V, F8, dtype=torch.bool, device=z.device)
        if F8 == F_
        else torch.zeros(V, F8, dtype=torch.bool, device=z.device)
    )
    if z.device.type == "cpu" and z.dtype in _NUMPY_FLOATS and F_ >= _NUMPY_MIN_WIDTH and not z.requires_grad:
        # NumPy's comparison is vectorised (several times faster than torch's on CPUs) and
        # releases the GIL, so concurrent sub-batches keep both running
        np.greater(z.numpy(), tie_tol, out=out.numpy()[:, :F_])
    else:
        torch.gt(z, tie_tol, out=out[:, :F_])
    return out


def _sign_changes(pos: Tensor, nxt: Tensor) -> tuple[Tensor, Tensor]:
    """(row, neuron) where the sign differs between rows r and ``nxt[r]``, sorted by row.

    Rows are compared as 64-bit words first (one gather of 8 bytes per 64 neurons), and
    only the rows that differ are compared neuron by neuron.
    """
    V, F8 = pos.shape
    if V and pos.device.type == "cpu" and F8 >= _NUMPY_MIN_WIDTH:
        # one bit per neuron (NumPy packs bits fast): a row of 256 neurons is 4 words
        packed = np.packbits(pos.numpy(), axis=1, bitorder="little")
        pad = -packed.shape[1] % 8
        if pad:
            packed = np.pad(packed, ((0, 0), (0, pad)))
        words = torch.from_numpy(packed).view(torch.int64)
    else:
        words = pos.view(torch.int64) if V else pos.new_zeros(0, F8 // 8, dtype=torch.int64)
    if words.shape[1] <= 4:  # word by word: 1-D gathers, much faster than gathering short rows
        diff: Tensor | None = None
        for k in range(words.shape[1]):
            w = words[:, k].contiguous()
            d = w != w.index_select(0, nxt)
            diff = d if diff is None else diff.logical_or_(d)
        assert diff is not None  # a layer has a neuron, so its signs (padded to 8) fill at least one word
        rows = diff.nonzero().squeeze(1)
    else:
        rows = (words != words.index_select(0, nxt)).any(1).nonzero().squeeze(1)
    if rows.numel() == 0:
        e = rows.new_zeros(0)
        return e, e
    a = pos.index_select(0, rows)
    b = pos.index_select(0, nxt.index_select(0, rows))
    ri, n = (a != b).nonzero().unbind(1)
    return rows.index_select(0, ri), n


def _crossings(z: Tensor, state: _State, levels: list[float], thr: int | None, pos: Tensor | None):
    """Strict crossings of ``levels`` inside the pieces (r, nxt[r]) of ``z`` ``(V, F)``.

    Returns ``(piece, neuron, fraction s, level index, tie_row, tie_neuron)``: the
    crossing of ``levels[lev]`` lies at fraction ``s`` of the piece starting at row
    ``piece``, sorted by piece. ``tie_row``, ``tie_neuron``: rows where a neuron sits
    exactly at the bit threshold (``levels[thr]``, whose signs ``pos`` = z > threshold
    are given) while the other end of the piece is on the other side: possible flips
    without a crossing strictly inside a piece.
    """
    pieces, neurons, fracs, lev = [], [], [], []
    tie_r, tie_n = [], []
    nxt = state.nxt
    for li, k in enumerate(levels):
        if li == thr and pos is not None:
            p, n = _sign_changes(pos, nxt)
        else:
            above = z > k
            cand = above != above.index_select(0, nxt)  # false at t = 1, where nxt[r] == r
            p, n = cand.nonzero().unbind(1)
        if p.numel() == 0:
            continue
        q = nxt.index_select(0, p)
        a = _at(z, p, n) - k
        b = _at(z, q, n) - k
        strict = (a * b) < 0
        if not bool(strict.all()):
            if li == thr:
                at_a = ~strict & (a == 0)
                at_b = ~strict & (b == 0)
                tie_r += [p[at_a], q[at_b]]
                tie_n += [n[at_a], n[at_b]]
            p, n, a, b = p[strict], n[strict], a[strict], b[strict]
        pieces.append(p)
        neurons.append(n)
        fracs.append(a.double() / (a.double() - b.double()))
        lev.append(torch.full_like(p, li))
    e = torch.zeros(0, dtype=torch.int64, device=z.device)
    cat = lambda xs: torch.cat(xs) if xs else e
    return (
        cat(pieces),
        cat(neurons),
        torch.cat(fracs) if fracs else z.new_zeros(0, dtype=torch.float64),
        cat(lev),
        cat(tie_r),
        cat(tie_n),
    )


def _split(state: _State, piece: Tensor, tc: Tensor, tol: float):
    """Insert breakpoints at times ``tc`` inside the pieces starting at rows ``piece``.

    Crossings closer than ``tol`` in t share one breakpoint (the first of them), and
    crossings within ``tol`` of an end of their piece use that end. Returns
    ``(plan, row)``: ``plan = (g_piece, g_s)`` (piece start row and fraction of each
    new breakpoint, whose rows are ``V, V+1, ...``), ``None`` when nothing is
    inserted; ``row``: for every crossing, the row of its breakpoint.
    """
    device = piece.device
    q = state.nxt.index_select(0, piece)
    ta = state.t.index_select(0, piece)
    tb = state.t.index_select(0, q)
    near_a = tc - ta <= tol
    near_b = tb - tc <= tol
    keep = ~(near_a | near_b)
    V = state.n_rows
    row = torch.where(near_a, piece, q)
    kidx = keep.nonzero().squeeze(1)
    if kidx.numel() == 0:
        return None, row
    kp, kt = piece[kidx], tc[kidx]
    if tol >= 64 * _EPS64 * (2 * V + 1):
        # one sort on (piece, fraction of the piece): the key resolves fractions down to a few
        # float64 ulps of 2 V, below tol (crossings closer than tol share a breakpoint anyway)
        frac = (kt - ta[kidx]) / (tb[kidx] - ta[kidx])
        o = torch.argsort(kp.double() * 2.0 + frac)
    else:
        o = torch.argsort(kt)
        o = o[torch.argsort(kp[o], stable=True)]
    kp, kt, kidx = kp[o], kt[o], kidx[o]
    new_group = torch.ones_like(kp, dtype=torch.bool)
    if kp.numel() > 1:
        new_group[1:] = (kp[1:] != kp[:-1]) | ((kt[1:] - kt[:-1]) > tol)
        _no_chains(new_group, kt, tol)
    gid = torch.cumsum(new_group.long(), 0) - 1
    first = new_group.nonzero().squeeze(1)
    g_piece = kp.index_select(0, first)
    g_t = kt.index_select(0, first)
    G = g_piece.numel()
    new_rows = torch.arange(V, V + G, device=device)
    row[kidx] = new_rows[gid]
    ga = state.t.index_select(0, g_piece)
    gb = state.t.index_select(0, state.nxt.index_select(0, g_piece))
    g_s = (g_t - ga) / (gb - ga)
    # link: piece start -> first new row -> ... -> last new row -> old next
    same_next = torch.zeros(G, dtype=torch.bool, device=device)
    if G > 1:
        same_next[:-1] = g_piece[1:] == g_piece[:-1]
    old_next = state.nxt.index_select(0, g_piece)
    g_nxt = torch.where(same_next, new_rows + 1, old_next)
    same_prev = torch.zeros(G, dtype=torch.bool, device=device)
    if G > 1:
        same_prev[1:] = same_next[:-1]
    g_prv = torch.where(same_prev, new_rows - 1, g_piece)
    nxt = torch.cat([state.nxt, g_nxt])
    prv = torch.cat([state.prv, g_prv])
    firsts = ~same_prev
    nxt[g_piece[firsts]] = new_rows[firsts]
    lasts = ~same_next
    prv[old_next[lasts]] = new_rows[lasts]
    state.nxt, state.prv = nxt, prv
    state.t = torch.cat([state.t, g_t])
    _grew(state)
    return (g_piece, g_s), row


def _no_chains(new_group: Tensor, kt: Tensor, tol: float) -> None:
    """Crossings sorted by t (``kt``) and grouped where consecutive ones are more than ``tol`` apart
    (``new_group`` marks each group's first) are regrouped, in place, so that no group spans more
    than ``tol``: a crossing more than ``tol`` after its group's first starts a new group (as the
    kernels group them). Otherwise many crossings each within ``tol`` of the next would chain into
    one breakpoint however far apart the first and last are."""
    gid = torch.cumsum(new_group.long(), 0) - 1
    first = new_group.nonzero().squeeze(1)
    span = kt - kt.index_select(0, first).index_select(0, gid)
    if not bool((span > tol).any()):
        return
    ng = new_group.cpu().numpy().copy()
    t = kt.cpu().numpy()
    chains = np.unique(gid[span > tol].cpu().numpy())
    starts = first.cpu().numpy()
    ends = np.append(starts[1:], len(t))
    for c in chains:  # rare: only groups spread over more than tol
        t0 = t[starts[c]]
        for j in range(starts[c] + 1, ends[c]):
            if t[j] - t0 > tol:
                ng[j] = True
                t0 = t[j]
    new_group.copy_(torch.from_numpy(ng))


def _levels(step: _Step, tie_tol: float) -> tuple[list[float], int | None]:
    levels = sorted(set(step.kinks + ([tie_tol] if step.bit_layer else [])))
    return levels, (levels.index(tie_tol) if step.bit_layer else None)


@dataclass(slots=True)
class Cut:
    """The crossings of one activation's kinks and the breakpoints inserted for them (:func:`_cut`).

    ``levels``: the kinks and the bit threshold, sorted; ``thr``: the index of the threshold in
    ``levels`` (``None`` for a layer without bits); ``pos``: the signs ``z > tie_tol`` at the rows
    before the split (``None`` without bits). Every crossing ``i`` lies in the piece starting at row
    ``pieces[i]``, of neuron ``neurons[i]`` through ``levels[lev[i]]``, and sits at breakpoint row
    ``rows[i]`` (``None`` without crossings). ``tie_r``, ``tie_n``: rows where a neuron sits exactly
    at the threshold with the other end of a piece on the other side. ``plan``: ``(piece start,
    fraction)`` of every new breakpoint, ``None`` when none was inserted; ``nxt_old``: the links
    before the split."""

    levels: list[float]
    thr: int | None
    pos: Tensor | None
    pieces: Tensor
    neurons: Tensor
    lev: Tensor
    tie_r: Tensor
    tie_n: Tensor
    plan: tuple[Tensor, Tensor] | None
    rows: Tensor | None
    nxt_old: Tensor


def _cut(z: Tensor, state: _State, step: _Step, settings: WalkSettings) -> Cut:
    """Find where the pre-activations ``z`` (one row per breakpoint) cross a kink
    inside a piece and insert those breakpoints."""
    levels, thr = _levels(step, settings.tie_tol)
    pos = _signs(z, settings.tie_tol) if thr is not None else None
    pieces, neurons, fracs, lev, tie_r, tie_n = _crossings(z, state, levels, thr, pos)
    rows, plan, nxt_old = None, None, state.nxt
    if pieces.numel():
        ta = state.t.index_select(0, pieces)
        tc = ta + (state.t.index_select(0, nxt_old.index_select(0, pieces)) - ta) * fracs
        plan, rows = _split(state, pieces, tc, settings.tol)
    return Cut(levels, thr, pos, pieces, neurons, lev, tie_r, tie_n, plan, rows, nxt_old)


def _snap_rtol(dtype: torch.dtype) -> float:
    """Relative round-off below which a crossing neuron's value at its breakpoint is its level."""
    return 16 * torch.finfo(dtype).eps


def _snap_list(state: _State, cut: Cut, z: Tensor):
    """``(row, neuron, level, za, zb)`` of every crossing of ``cut`` at an inner breakpoint (not t = 0
    or 1), for :func:`_snap`: ``z`` ``(V, F)`` holds the values at the rows before the split."""
    rows, neurons, lev, nxt_old = cut.rows, cut.neurons, cut.lev, cut.nxt_old
    assert rows is not None  # called for cuts with crossings only
    inner = (rows >= 2 * state.n_paths).nonzero().squeeze(1)
    lv = torch.tensor(cut.levels, dtype=torch.float64, device=rows.device).index_select(0, lev.index_select(0, inner))
    p = cut.pieces.index_select(0, inner)
    n = neurons.index_select(0, inner)
    za = _at(z, p, n).double() - lv
    zb = _at(z, nxt_old.index_select(0, p), n).double() - lv
    return rows.index_select(0, inner), n, lv, za, zb


def _close_to_level(v: Tensor, values: Tensor, za: Tensor, zb: Tensor, dtype: torch.dtype) -> Tensor:
    """Where ``v`` is its level ``values`` up to the round-off of a piece from ``za`` to ``zb`` (distances
    to the level), as the kernels' ``at_level`` decides it."""
    return (v.double() - values).abs() <= _snap_rtol(dtype) * (za.abs() + zb.abs() + values.abs())


def _snap(
    x: Tensor, rows: Tensor, neurons: Tensor, values: Tensor, za: Tensor | None = None, zb: Tensor | None = None
) -> None:
    """Set the pre-activations ``x`` (one row per breakpoint) of the crossing neurons to their level at
    their breakpoint, in place, where their value there is the level up to round-off.

    A crossing is where the neuron is exactly at the level; its interpolated value is off by
    round-off (±1e-17 for a level 0), which the layers after it would carry as a nonzero value
    (a ReLU then gives 1e-17 and the next bias-free layer bit 1 on a piece where it is 0).
    ``za``, ``zb``: the neuron's distance to the level at the ends of the piece it crosses in,
    the scale of that round-off (a crossing merged into a breakpoint within ``tol`` keeps its
    value when it is farther from the level)."""
    if rows.numel() == 0:
        return
    idx = (rows, *torch.unravel_index(neurons, x.shape[1:]))
    if za is not None and zb is not None:  # given together
        close = _close_to_level(x[idx], values, za, zb, x.dtype)
        if not bool(close.all()):
            keep = close.nonzero().squeeze(1)
            idx = tuple(i.index_select(0, keep) for i in idx)
            values = values.index_select(0, keep)
    x.index_put_(idx, values.to(x.dtype))


def _snap_pairs(
    zk: Tensor,
    g_rep: Tensor,
    k: Tensor,
    n_neurons: int,
    rows: Tensor,
    neurons: Tensor,
    values: Tensor,
    za: Tensor,
    zb: Tensor,
) -> None:
    """:func:`_snap` for values held as (new breakpoint ``g_rep``, neuron ``k``) pairs."""
    if rows.numel() == 0 or zk.numel() == 0:
        return
    key = rows * n_neurons + neurons
    order = torch.argsort(key)
    key = key.index_select(0, order)
    pair = g_rep * n_neurons + k
    i = torch.searchsorted(key, pair).clamp_(max=key.numel() - 1)
    hit = (key.index_select(0, i) == pair).nonzero().squeeze(1)
    c = order.index_select(0, i.index_select(0, hit))
    values, za, zb = values.index_select(0, c), za.index_select(0, c), zb.index_select(0, c)
    close = _close_to_level(zk.index_select(0, hit), values, za, zb, zk.dtype).nonzero().squeeze(1)
    zk.index_put_((hit.index_select(0, close),), values.index_select(0, close).to(zk.dtype))
