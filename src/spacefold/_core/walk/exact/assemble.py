"""Bits and flips (docs/method.md, 'The exact walk': bits of a piece, the reference walk).

Each activation call gives a :class:`_BitRecord` (the bits at t = 0 and every flip, by
:func:`_flips` or the compiled kernel); :func:`_assemble` numbers the breakpoints path by path
and turns the records of a sub-batch into an :class:`ExactWalkBatch`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import overload

import torch
from torch import Tensor

from .. import WalkBatch, _kernels
from .crossings import Cut
from .state import _at, _ranks, _State


@dataclass
class _BitRecord:
    """Bits of one activation call: the pattern at t = 0 and every flip along the paths."""

    start_bits: Tensor  # bool (B, F): bits at t = 0
    rows: Tensor  # int64 (n_flips,): breakpoint row where the flip happens
    neurons: Tensor  # int64 (n_flips,)
    new_bits: Tensor  # bool (n_flips,): the bit after the flip


def _flips(state: _State, cut: Cut, pos: Tensor, n_new: int, n_neurons: int) -> _BitRecord:
    """Where the bits of one layer flip along the walk, from the signs ``pos`` at the breakpoints (the
    ``n_new`` rows the split ``cut`` added included), over the layer's ``n_neurons`` neurons.

    The bit of a piece (a, b) is ``pos[a] | pos[b]`` once no crossing lies strictly
    inside; a neuron crossing the threshold sits at it (bit 0) at its breakpoint. So
    between the pieces meeting at row p a bit flips iff
    ``~pos[p] & (pos[prv[p]] ^ pos[nxt[p]])``, which needs ``pos[p]`` false with a
    neighbour on the other side: a crossing at p, or a neuron exactly at the threshold
    at p (``tie_r``, ``tie_n``). At the ends the point patterns π(γ(0)), π(γ(1)) are
    compared with the first and last piece.
    """
    rows, neurons, lev, thr, tie_r, tie_n = cut.rows, cut.neurons, cut.lev, cut.thr, cut.tie_r, cut.tie_n
    starts, ends = state.starts, state.ends
    p0 = pos.index_select(0, starts)
    p1 = pos.index_select(0, ends)
    F_ = pos.shape[1]
    unique = tie_r.numel() == 0
    if rows is not None:
        assert thr is not None  # crossings are found only on layers with bits, which have a threshold
        if not bool((lev == thr).all()):
            at_thr = (lev == thr).nonzero().squeeze(1)
            rows, neurons = rows.index_select(0, at_thr), neurons.index_select(0, at_thr)
        pos.view(-1).index_fill_(0, rows * F_ + neurons, False)
        # a (row, neuron) pair can repeat only through ties or crossings merged into a piece end
        unique = unique and bool((rows >= state.n_rows - n_new).all())
        cr, cn = torch.cat([rows, tie_r]), torch.cat([neurons, tie_n])
    else:
        cr, cn = tie_r, tie_n
    first = (pos.index_select(0, starts) | pos.index_select(0, state.nxt.index_select(0, starts))) != p0
    last = (pos.index_select(0, state.prv.index_select(0, ends)) | pos.index_select(0, ends)) != p1
    fb, fn = first.nonzero().unbind(1)
    lb, ln = last.nonzero().unbind(1)
    out_rows, out_neurons = [starts[fb], ends[lb]], [fn, ln]
    out_bits = [~_at(p0, fb, fn), _at(p1, lb, ln)]
    if cr.numel():
        inner = cr >= 2 * state.n_paths  # starts and ends are rows 0 .. 2B-1
        if not bool(inner.all()):
            inner = inner.nonzero().squeeze(1)
            cr, cn = cr.index_select(0, inner), cn.index_select(0, inner)
        if cr.numel():
            if not unique:
                key = torch.unique(cr * F_ + cn)
                cr, cn = key // F_, key % F_
            after = _at(pos, state.nxt.index_select(0, cr), cn)
            flip = ~_at(pos, cr, cn) & (_at(pos, state.prv.index_select(0, cr), cn) ^ after)
            fi = flip.nonzero().squeeze(1)
            out_rows.append(cr.index_select(0, fi))
            out_neurons.append(cn.index_select(0, fi))
            out_bits.append(after.index_select(0, fi))
    start_bits = p0 if p0.shape[1] == n_neurons else p0[:, :n_neurons].contiguous()
    return _BitRecord(start_bits, torch.cat(out_rows), torch.cat(out_neurons), torch.cat(out_bits))


def _assemble(state: _State, records: list[_BitRecord], n_paths: int) -> ExactWalkBatch:
    if state.nxt.device.type == "cpu" and _kernels.available():
        # one walk along every path's links (the pointer jumping of _ranks is for accelerators)
        rank, row_path, order = map(torch.from_numpy, _kernels.list_ranks(state.nxt.numpy(), state.n_paths))
    else:
        rank, row_path = _ranks(state)
        order = torch.empty_like(rank)
        order[rank] = torch.arange(rank.numel(), device=rank.device)
    col, ranks, neurons, signs = 0, [], [], []
    for r in records:
        path = row_path.index_select(0, r.rows)
        # +1: the flip moves the bit away from its value at t = 0; -1: back to it
        signs.append(torch.where(r.new_bits != r.start_bits[path, r.neurons], 1, -1))
        ranks.append(rank.index_select(0, r.rows))
        neurons.append(r.neurons + col)
        col += r.start_bits.shape[1]
    return ExactWalkBatch(
        torch.cat([r.start_bits for r in records], 1),
        torch.cat(ranks),
        torch.cat(neurons),
        torch.cat(signs),
        state.t.index_select(0, order),
        row_path.index_select(0, order),
        rank.index_select(0, state.starts),
        rank.index_select(0, state.ends),
    )


class ExactWalkBatch(WalkBatch):
    """Exact walks stored as the pattern at t = 0 and the list of bit flips.

    Behaves as a :class:`WalkBatch` (``patterns``, ``t``, ``offsets`` are built on
    first use); :func:`spacefold._core.measure.summarize` computes r1, r2, χ, the profile
    maximum and the number of regions from the flips alone, without building the
    patterns and without sorting, so its cost grows with the number of breakpoints
    and flips, not with regions × neurons.

    Breakpoints are numbered path by path in order of t (``t_sorted``,
    ``path_sorted``; path b holds ``first[b]`` (t = 0) to ``last[b]`` (t = 1)). A flip
    at breakpoint k happens on entering the piece that starts at k; flips at
    ``last[b]`` are those of the point t = 1 itself (π(γ(1)) differing from the last
    piece). ``flip_sign`` is +1 when the flip moves the bit away from its value at
    t = 0 and -1 when it moves it back.

    ``n_float64``: walks that were computed again in float64 because max pooling could not
    be resolved in the model's dtype (a near tie of a window's arg-max below its round-off) or a
    value lay within its round-off of 0 at neighbouring breakpoints next to a segment's end (the
    zero rule; elsewhere the pieces around it are refined);
    ``n_unresolved``: walks where not even float64 resolved it, kept with the arg-max decided
    up to float64 round-off (a warning says so). ``n_refined``: sub-segments walked again in
    float64 around breakpoints where several bits flipped in the model's dtype (crossings closer
    than its round-off, which float64 may tell apart; docs/method.md, 'The exact walk').
    """

    start_bits: Tensor
    flip_at: Tensor
    flip_neuron: Tensor
    flip_sign: Tensor
    t_sorted: Tensor
    path_sorted: Tensor
    first: Tensor
    last: Tensor
    _cache: dict[str, tuple[Tensor, Tensor, Tensor]]
    n_float64: int
    n_unresolved: int
    n_refined: int
    _masks: tuple[Tensor, Tensor]  # per walk, walked in float64 and unresolved; set by the exact driver

    def __init__(self, start_bits, flip_at, flip_neuron, flip_sign, t_sorted, path_sorted, first, last):
        for name, value in (
            ("start_bits", start_bits),
            ("flip_at", flip_at),
            ("flip_neuron", flip_neuron),
            ("flip_sign", flip_sign),
            ("t_sorted", t_sorted),
            ("path_sorted", path_sorted),
            ("first", first),
            ("last", last),
            ("method", "exact"),
            ("grid_index", None),
            ("_cache", {}),
            ("n_float64", 0),
            ("n_unresolved", 0),
            ("n_refined", 0),
        ):
            object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return f"ExactWalkBatch(n_walks={self.n_walks}, n_neurons={self.n_neurons}, n_flips={self.flip_at.numel()})"

    @property
    def n_walks(self) -> int:
        return int(self.start_bits.shape[0])

    @property
    def n_neurons(self) -> int:
        return int(self.start_bits.shape[1])

    def _per_breakpoint(self, columns: slice | None):
        """Flip count and signed distance change at every breakpoint (restricted to ``columns``)."""
        at, sign = self.flip_at, self.flip_sign
        if columns is not None:
            lo, hi, step = columns.indices(self.n_neurons)
            if step != 1:
                raise ValueError("columns must be a contiguous slice")
            keep = (self.flip_neuron >= lo) & (self.flip_neuron < hi)
            at, sign = at[keep], sign[keep]
        V = self.t_sorted.numel()
        cnt = torch.zeros(V, dtype=torch.int64, device=at.device).index_add_(0, at, torch.ones_like(at))
        dsum = torch.zeros(V, dtype=torch.int64, device=at.device).index_add_(0, at, sign)
        return cnt, dsum

    def _dense(self):
        if "dense" in self._cache:
            return self._cache["dense"]
        cnt, _ = self._per_breakpoint(None)
        device = cnt.device
        b, n = self.n_walks, self.n_neurons
        region = torch.zeros(self.t_sorted.numel(), dtype=torch.bool, device=device)
        region[self.first] = True  # the point t = 0 ...
        has = cnt > 0  # ... and every breakpoint where some bit flips
        # region rows: per path, the point t = 0 first, then the breakpoints with flips
        counts = torch.ones(b, dtype=torch.int64, device=device).index_add_(0, self.path_sorted, has.long())
        offsets = torch.zeros(b + 1, dtype=torch.int64, device=device)
        offsets[1:] = torch.cumsum(counts, 0)
        total = int(offsets[-1])
        k = torch.cumsum(has.long(), 0)
        k = k - (
            k.index_select(0, self.first.index_select(0, self.path_sorted))
            - has.long().index_select(0, self.first.index_select(0, self.path_sorted))
        )
        row_of_bp = offsets[:-1].index_select(0, self.path_sorted) + k  # valid where has
        # a bit is the parity of its flips so far: uint8 sums wrap modulo 256, which keeps parity
        flips = torch.zeros(total, n, dtype=torch.uint8, device=device)
        flips[offsets[:-1]] = self.start_bits.to(torch.uint8)
        flips[row_of_bp[self.flip_at], self.flip_neuron] = 1
        walk_id = torch.repeat_interleave(torch.arange(b, device=device), counts)
        cs = torch.cumsum(flips, 0, dtype=torch.uint8)
        prev = torch.zeros(b, n, dtype=cs.dtype, device=device)
        has_prev = offsets[:-1] > 0
        prev[has_prev] = cs[offsets[:-1][has_prev] - 1]
        patterns = ((cs - prev[walk_id]) & 1).bool()
        t = torch.zeros(total, dtype=torch.float64, device=device)
        t[row_of_bp[has]] = self.t_sorted[has]
        out = (patterns, t, offsets)
        self._cache["dense"] = out
        return out

    @overload
    @staticmethod
    def concat(batches: Sequence[ExactWalkBatch]) -> ExactWalkBatch: ...

    @overload
    @staticmethod
    def concat(batches: Sequence[WalkBatch]) -> WalkBatch: ...

    @staticmethod
    def concat(batches: Sequence[WalkBatch]) -> WalkBatch:
        exact = [w for w in batches if isinstance(w, ExactWalkBatch)]
        if len(exact) < len(batches):
            return WalkBatch.concat(batches)
        if len(exact) == 1:
            return exact[0]
        v_off, p_off = 0, 0
        at, path, first, last = [], [], [], []
        for w in exact:
            at.append(w.flip_at + v_off)
            path.append(w.path_sorted + p_off)
            first.append(w.first + v_off)
            last.append(w.last + v_off)
            v_off += w.t_sorted.numel()
            p_off += w.n_walks
        cat = torch.cat
        out = ExactWalkBatch(
            cat([w.start_bits for w in exact]),
            cat(at),
            cat([w.flip_neuron for w in exact]),
            cat([w.flip_sign for w in exact]),
            cat([w.t_sorted for w in exact]),
            cat(path),
            cat(first),
            cat(last),
        )
        object.__setattr__(out, "n_float64", sum(w.n_float64 for w in exact))
        object.__setattr__(out, "n_unresolved", sum(w.n_unresolved for w in exact))
        object.__setattr__(out, "n_refined", sum(w.n_refined for w in exact))
        return out

    @property
    def patterns(self) -> Tensor:  # type: ignore[override]
        return self._dense()[0]

    @property
    def t(self) -> Tensor:  # type: ignore[override]
        return self._dense()[1]

    @property
    def offsets(self) -> Tensor:  # type: ignore[override]
        return self._dense()[2]

    def __len__(self) -> int:
        return self.n_walks

    @property
    def n_regions(self) -> Tensor:
        cnt, _ = self._per_breakpoint(None)  # a region begins at t = 0 and at every breakpoint with flips
        return torch.ones(self.n_walks, dtype=torch.int64, device=cnt.device).index_add_(
            0, self.path_sorted, (cnt > 0).long()
        )


def _take(w: ExactWalkBatch, k: int) -> tuple[ExactWalkBatch, ExactWalkBatch]:
    """The first ``k`` walks of ``w`` and the others, as two batches."""
    cut = int(w.first[k]) if k < w.n_walks else w.t_sorted.numel()
    head = w.flip_at < cut
    tail = ~head
    a = ExactWalkBatch(
        w.start_bits[:k],
        w.flip_at[head],
        w.flip_neuron[head],
        w.flip_sign[head],
        w.t_sorted[:cut],
        w.path_sorted[:cut],
        w.first[:k],
        w.last[:k],
    )
    b = ExactWalkBatch(
        w.start_bits[k:],
        w.flip_at[tail] - cut,
        w.flip_neuron[tail],
        w.flip_sign[tail],
        w.t_sorted[cut:],
        w.path_sorted[cut:] - k,
        w.first[k:] - cut,
        w.last[k:] - cut,
    )
    return a, b


def _join(w: ExactWalkBatch, seg: Tensor) -> ExactWalkBatch:
    """The walks of whole segments from the walks ``w`` of their sub-segments.

    Walk j of ``w`` is the walk of a sub-segment [t_a, t_b] of segment ``seg[j]`` (``seg`` numbers the
    segments 0, 1, ... in order), its breakpoints at the segment's t; the sub-segments of a segment are
    consecutive in ``w``, in order of t, from t = 0 to t = 1, each starting where the one before it ends.
    At a junction the walk before it ends with the step from its last piece to the point pattern
    there, and the walk after it starts with the step from that point to its first piece. Joined, the
    junction is one breakpoint whose step goes from the last piece before it to the first piece after
    it, and none when the two have the same pattern: the walk of the whole segment, which the
    junction only splits into two pieces of the same pattern."""
    dev = w.start_bits.device
    m, F_, V = w.n_walks, w.n_neurons, w.t_sorted.numel()
    head = torch.ones(m, dtype=torch.bool, device=dev)  # the first sub-segment of its segment
    head[1:] = seg[1:] != seg[:-1]
    tail = torch.ones(m, dtype=torch.bool, device=dev)  # the last
    tail[:-1] = head[1:]
    sub = w.path_sorted.index_select(0, w.flip_at)  # the sub-segment of every flip
    # the bit after every flip (its sign is relative to the sub-segment's own start bits)
    new_bit = w.start_bits[sub, w.flip_neuron] ^ (w.flip_sign > 0)
    joint = (~head).nonzero().squeeze(1)  # junction between sub-segments j - 1 and j
    end_a, start_b = w.last.index_select(0, joint - 1), w.first.index_select(0, joint)
    at_joint = torch.zeros(V, dtype=torch.bool, device=dev)
    at_joint[end_a] = True
    at_joint[start_b] = True
    keep = ~at_joint.index_select(0, w.flip_at)
    at, neuron, bit = w.flip_at[keep], w.flip_neuron[keep], new_bit[keep]
    if joint.numel():
        one = torch.ones(1, dtype=torch.uint8, device=dev)

        def flipped(bits: Tensor, which: Tensor, slot: Tensor) -> Tensor:
            """``bits`` (one row per junction) flipped by the flips ``which``, of junction ``slot[sub]``."""
            k = slot.index_select(0, sub)
            sel = (which & (k >= 0)).nonzero().squeeze(1)
            out = bits.to(torch.uint8)
            out.view(-1).index_add_(
                0, k.index_select(0, sel) * F_ + w.flip_neuron.index_select(0, sel), one.expand(sel.numel())
            )
            return (out & 1).bool()

        slot = torch.full((m,), -1, dtype=torch.int64, device=dev)
        slot[joint - 1] = torch.arange(joint.numel(), device=dev)
        # the last piece before the junction: every flip of its sub-segment but those at its end
        before = flipped(w.start_bits.index_select(0, joint - 1), w.flip_at != w.last.index_select(0, sub), slot)
        slot.fill_(-1)
        slot[joint] = torch.arange(joint.numel(), device=dev)
        # the first piece after it: the point pattern at the junction and the flips there
        after = flipped(w.start_bits.index_select(0, joint), w.flip_at == w.first.index_select(0, sub), slot)
        jk, jn = (before != after).nonzero().unbind(1)
        at = torch.cat([at, end_a.index_select(0, jk)])
        neuron = torch.cat([neuron, jn])
        bit = torch.cat([bit, after[jk, jn]])
    keep_row = torch.ones(V, dtype=torch.bool, device=dev)  # the junction is the end row of the sub-segment before it
    keep_row[start_b] = False
    new_index = torch.cumsum(keep_row.long(), 0) - 1
    path_sorted = seg.index_select(0, w.path_sorted[keep_row])
    at = new_index.index_select(0, at)
    start_bits = w.start_bits[head]
    sign = torch.where(bit != start_bits[path_sorted.index_select(0, at), neuron], 1, -1)
    return ExactWalkBatch(
        start_bits,
        at,
        neuron,
        sign,
        w.t_sorted[keep_row],
        path_sorted,
        new_index.index_select(0, w.first[head]),
        new_index.index_select(0, w.last[tail]),
    )


def _stable_order(key: Tensor) -> Tensor:
    """The order that sorts the non-negative int64 ``key`` stably (in int32 where it fits: twice as fast)."""
    if key.numel() and int(key.max()) < 2**31:
        key = key.int()
    return torch.sort(key, stable=True).indices


def _search(w: ExactWalkBatch, j: Tensor, v: Tensor, right: bool) -> Tensor:
    """The first row of walk ``j[i]`` of ``w`` whose t is ``>= v[i]`` (``> v[i]`` with ``right``), for every i
    (``v`` in [0, 1]; the row after the walk's last where there is none).

    One search over all rows: the rows ordered by walk and t are ordered by ``t + 2 * walk`` (rounding keeps
    the order, and the walks' ranges [2 walk, 2 walk + 1] stay apart), and so is ``v + 2 * j`` among them.
    Rounding can make keys equal whose t differ; those rows, of walk ``j[i]``, are compared exactly."""
    t = w.t_sorted
    key = t + 2 * w.path_sorted.to(t.dtype)
    q = v.to(t.dtype) + 2 * j.to(t.dtype)
    lo = torch.searchsorted(key, q)
    hi = torch.searchsorted(key, q, right=True)
    amb = hi - lo
    n_amb = int(amb.sum())
    if n_amb == 0:
        return lo
    i = torch.repeat_interleave(torch.arange(j.numel(), device=j.device), amb)
    start = torch.cumsum(amb, 0) - amb
    rows = lo.index_select(0, i) + torch.arange(n_amb, device=j.device) - start.index_select(0, i)
    tr, vi = t.index_select(0, rows), v.to(t.dtype).index_select(0, i)
    below = (tr <= vi) if right else (tr < vi)
    return lo + torch.zeros_like(lo).index_add_(0, i, below.long())


def _clip_many(w: ExactWalkBatch, j: Tensor, a: Tensor, b: Tensor) -> ExactWalkBatch:
    """The walks of the sub-segments [a[i], b[i]] of the walks ``j[i]`` of ``w``, for :func:`_join` (walk i of
    the result is :func:`_clip` ``(w, j[i], a[i], b[i])``): their breakpoints in [a, b], with breakpoints at
    ``a`` and ``b`` added where ``w`` has none (their point patterns are those of the pieces around them, so
    nothing flips there), and the pattern at ``a`` as the start.

    ``j`` (int64), ``a``, ``b`` (float64) on ``w``'s device, 0 <= a <= b <= 1, ordered by ``j`` and, within a
    walk, with ``a`` and ``b`` non-decreasing: then the rows of the clips, in order, start and end at
    non-decreasing rows of ``w`` (the rows are ordered by walk, then by t)."""
    dev = w.t_sorted.device
    t, V, F_, m = w.t_sorted, w.t_sorted.numel(), w.n_neurons, j.numel()
    if m == 0:
        z = torch.zeros(0, dtype=torch.int64, device=dev)
        return ExactWalkBatch(w.start_bits[:0], z, z, z, t[:0], z, z, z)
    lo, hi = w.first.index_select(0, j), w.last.index_select(0, j) + 1
    i0 = _search(w, j, a, right=False)  # first row t >= a
    i1 = _search(w, j, b, right=True)  # first row t > b
    a, b = a.to(t.dtype), b.to(t.dtype)
    add_a = (i0 == hi) | (t.index_select(0, i0.clamp(max=V - 1)) != a)
    add_b = (i1 == lo) | (t.index_select(0, (i1 - 1).clamp(min=0)) != b)
    n = add_a.long() + (i1 - i0) + add_b.long()
    off = torch.cumsum(n, 0) - n
    # the rows: a where added, the rows of w in [a, b], b where added
    c = torch.repeat_interleave(torch.arange(m, device=dev), n)
    p = torch.arange(c.numel(), device=dev) - off.index_select(0, c)
    t_new = t.index_select(0, (i0.index_select(0, c) + p - add_a.long().index_select(0, c)).clamp(0, V - 1))
    t_new = torch.where((p == 0) & add_a.index_select(0, c), a.index_select(0, c), t_new)
    t_new = torch.where((p == n.index_select(0, c) - 1) & add_b.index_select(0, c), b.index_select(0, c), t_new)
    # the flips at the rows of every clip: clips c0 .. c1 - 1 hold a flip at row r (c0: the first clip whose
    # rows end after r, c1: the first whose rows start after r)
    at, neuron, sign = w.flip_at, w.flip_neuron, w.flip_sign
    one = torch.ones_like(i0)
    c1 = torch.cumsum(torch.zeros(V + 1, dtype=torch.int64, device=dev).index_add_(0, i0, one), 0).index_select(0, at)
    c0 = torch.cumsum(torch.zeros(V + 1, dtype=torch.int64, device=dev).index_add_(0, i1, one), 0).index_select(0, at)
    cnt = (c1 - c0).clamp(min=0)
    f = torch.repeat_interleave(torch.arange(at.numel(), device=dev), cnt)
    cf = c0.index_select(0, f) + torch.arange(f.numel(), device=dev) - (torch.cumsum(cnt, 0) - cnt).index_select(0, f)
    order = _stable_order(cf)  # clip by clip, each in the order of w's flips
    f, cf = f.index_select(0, order), cf.index_select(0, order)
    # every flip changes its bit: the pattern at a is the walk's start pattern flipped by the flips before a.
    # A flip at row r counts for the clips of its walk from c1 on: added at c1, summed along the clips of a walk
    # (uint8 sums wrap modulo 256, which keeps parity)
    in_walk = (c1 < m) & (at >= lo.index_select(0, c1.clamp(max=m - 1)))
    k = in_walk.nonzero().squeeze(1)
    d = torch.zeros(m * F_, dtype=torch.uint8, device=dev)
    d.index_add_(0, c1.index_select(0, k) * F_ + neuron.index_select(0, k), torch.ones_like(k, dtype=torch.uint8))
    cs = torch.cumsum(d.view(m, F_), 0, dtype=torch.uint8)
    head = torch.ones(m, dtype=torch.bool, device=dev)  # the first clip of its walk
    head[1:] = j[1:] != j[:-1]
    g = torch.cumsum(head.long(), 0) - 1  # clip -> its walk's first clip, via the heads
    first_clip = head.nonzero().squeeze(1)
    before = first_clip.index_select(0, g) - 1
    prev = torch.zeros_like(cs)
    has = before >= 0
    prev[has] = cs.index_select(0, before[has])
    start = w.start_bits.index_select(0, j) ^ ((cs - prev) & 1).bool()
    jf, nf = j.index_select(0, cf), neuron.index_select(0, f)
    bit = _at(w.start_bits, jf, nf) ^ (sign.index_select(0, f) > 0)  # the bit after every flip
    new_sign = torch.where(bit != _at(start, cf, nf), 1, -1)
    new_at = off.index_select(0, cf) + add_a.long().index_select(0, cf) + at.index_select(0, f) - i0.index_select(0, cf)
    return ExactWalkBatch(start, new_at, nf, new_sign, t_new, c, off, off + n - 1)


def _clip(w: ExactWalkBatch, j: int, a: float, b: float) -> ExactWalkBatch:
    """The walk of the sub-segment [a, b] of walk ``j`` of ``w`` (0 <= a <= b <= 1), for :func:`_join`: its
    breakpoints in [a, b], with breakpoints at ``a`` and ``b`` added where ``w`` has none, and the pattern at
    ``a`` as its start (see :func:`_clip_many`)."""
    dev = w.t_sorted.device
    f64 = torch.float64
    return _clip_many(
        w,
        torch.tensor([j], device=dev),
        torch.tensor([a], dtype=f64, device=dev),
        torch.tensor([b], dtype=f64, device=dev),
    )


def _reorder(w: ExactWalkBatch, pos: Tensor) -> ExactWalkBatch:
    """The walks of ``w`` with walk i moved to place ``pos[i]`` (a permutation); the flips walk by walk, each
    walk's in the order of ``w``'s."""
    dev = w.t_sorted.device
    n_rows = w.last - w.first + 1
    new_rows = torch.zeros_like(n_rows).index_copy_(0, pos, n_rows)
    new_first = torch.cumsum(new_rows, 0) - new_rows
    shift = new_first.index_select(0, pos) - w.first  # per walk of w: its rows' move
    walk_of = w.path_sorted
    dest = torch.arange(w.t_sorted.numel(), device=dev) + shift.index_select(0, walk_of)
    t = torch.empty_like(w.t_sorted).index_copy_(0, dest, w.t_sorted)
    fw = walk_of.index_select(0, w.flip_at)
    order = _stable_order(pos.index_select(0, fw))
    at = w.flip_at.index_select(0, order)
    return ExactWalkBatch(
        torch.empty_like(w.start_bits).index_copy_(0, pos, w.start_bits),
        at + shift.index_select(0, fw.index_select(0, order)),
        w.flip_neuron.index_select(0, order),
        w.flip_sign.index_select(0, order),
        t,
        torch.repeat_interleave(torch.arange(w.n_walks, device=dev), new_rows),
        new_first,
        new_first + new_rows - 1,
    )


def _subset(w: ExactWalkBatch, idx: Tensor) -> ExactWalkBatch:
    """The walks ``idx`` (increasing) of ``w`` as a batch of their own, their flips in the order of ``w``'s."""
    dev = w.t_sorted.device
    u = idx.numel()
    n_rows = (w.last - w.first + 1).index_select(0, idx)
    first = torch.cumsum(n_rows, 0) - n_rows
    c = torch.repeat_interleave(torch.arange(u, device=dev), n_rows)
    total = c.numel()
    rows = w.first.index_select(0, idx).index_select(0, c) + torch.arange(total, device=dev) - first.index_select(0, c)
    new_row = torch.full((w.t_sorted.numel(),), -1, dtype=torch.int64, device=dev)
    new_row[rows] = torch.arange(total, device=dev)
    fk = (new_row.index_select(0, w.flip_at) >= 0).nonzero().squeeze(1)
    return ExactWalkBatch(
        w.start_bits.index_select(0, idx),
        new_row.index_select(0, w.flip_at.index_select(0, fk)),
        w.flip_neuron.index_select(0, fk),
        w.flip_sign.index_select(0, fk),
        w.t_sorted.index_select(0, rows),
        c,
        first,
        first + n_rows - 1,
    )


def _splice(w: ExactWalkBatch, j: Tensor, a: Tensor, b: Tensor, subs: ExactWalkBatch) -> ExactWalkBatch:
    """``w`` with the walks ``subs`` of the sub-segments [a[i], b[i]] of its walks ``j[i]`` joined in: walk i of
    ``subs`` is the walk of [a[i], b[i]] (breakpoints at the segment's t), ordered by ``j`` and, within a walk,
    by t, the sub-segments of a walk apart. A walk with sub-segments becomes the :func:`_join` of its pieces
    in order of t (the parts of its walk between the sub-segments, clipped by :func:`_clip_many`, and the walks
    of the sub-segments); the others are kept as they are."""
    dev = w.t_sorted.device
    n, m = w.n_walks, j.numel()
    if m == 0:
        return w
    head = torch.ones(m, dtype=torch.bool, device=dev)  # the first sub-segment of its walk
    head[1:] = j[1:] != j[:-1]
    g = torch.cumsum(head.long(), 0) - 1  # sub-segment -> its walk among those with sub-segments
    uj = j[head]
    u = uj.numel()
    # the parts between the sub-segments: from t = 0 (the walk's first t) to a[0], b[0] to a[1], ..., b[-1] to t = 1
    k = torch.arange(m, device=dev)
    first_ref = k[head]  # of every walk, its first sub-segment
    last_ref = torch.cat([first_ref[1:], first_ref.new_tensor([m])]) - 1
    ca = torch.empty(m + u, dtype=a.dtype, device=dev)
    cb = torch.empty(m + u, dtype=b.dtype, device=dev)
    ca[first_ref + torch.arange(u, device=dev)] = w.t_sorted.index_select(0, w.first.index_select(0, uj)).to(a.dtype)
    ca[k + g + 1] = b
    cb[k + g] = a
    cb[last_ref + torch.arange(u, device=dev) + 1] = w.t_sorted.index_select(0, w.last.index_select(0, uj)).to(b.dtype)
    # the parts clipped from the walks with sub-segments alone (the others are not touched)
    cj = torch.repeat_interleave(torch.arange(u, device=dev), torch.bincount(g, minlength=u) + 1)
    clips = _clip_many(_subset(w, uj), cj, ca, cb)
    # the pieces in order: a walk's parts and sub-segments alternate
    cg = torch.repeat_interleave(torch.arange(u, device=dev), torch.bincount(g, minlength=u) + 1)
    pos = torch.cat([2 * torch.arange(m + u, device=dev) - cg, 2 * k + g + 1])
    seg = torch.repeat_interleave(torch.arange(u, device=dev), 2 * torch.bincount(g, minlength=u) + 1)
    joined = _join(_reorder(ExactWalkBatch.concat([clips, subs]), pos), seg)
    # the walks of w, those with sub-segments from joined
    refined = torch.zeros(n, dtype=torch.bool, device=dev)
    refined[uj] = True
    n_rows = w.last - w.first + 1
    n_rows[uj] = joined.last - joined.first + 1
    first = torch.cumsum(n_rows, 0) - n_rows
    keep_row = ~refined.index_select(0, w.path_sorted)
    V = int(n_rows.sum())
    t = torch.empty(V, dtype=w.t_sorted.dtype, device=dev)
    shift_w = first - w.first
    rows_w = keep_row.nonzero().squeeze(1)
    t[rows_w + shift_w.index_select(0, w.path_sorted.index_select(0, rows_w))] = w.t_sorted.index_select(0, rows_w)
    shift_j = first.index_select(0, uj) - joined.first
    t[torch.arange(joined.t_sorted.numel(), device=dev) + shift_j.index_select(0, joined.path_sorted)] = joined.t_sorted
    # the flips: those of the walks without sub-segments, then those of the joined walks (the order of a batch's
    # flips carries no meaning)
    walk_w = w.path_sorted.index_select(0, w.flip_at)
    kf = (~refined.index_select(0, walk_w)).nonzero().squeeze(1)
    walk_w = walk_w.index_select(0, kf)
    walk_j = joined.path_sorted.index_select(0, joined.flip_at)
    at = torch.cat(
        [
            w.flip_at.index_select(0, kf) + shift_w.index_select(0, walk_w),
            joined.flip_at + shift_j.index_select(0, walk_j),
        ]
    )
    neuron = torch.cat([w.flip_neuron.index_select(0, kf), joined.flip_neuron])
    sign = torch.cat([w.flip_sign.index_select(0, kf), joined.flip_sign])
    start_bits = w.start_bits.clone()
    start_bits[uj] = joined.start_bits
    return ExactWalkBatch(
        start_bits,
        at,
        neuron,
        sign,
        t,
        torch.repeat_interleave(torch.arange(n, device=dev), n_rows),
        first,
        first + n_rows - 1,
    )
