"""Joining walks of sub-segments into the walks of their segments (``_clip_many``, ``_splice``), against the
one-clip-at-a-time implementations they replace and against the walks they were cut from."""

from __future__ import annotations

import functools

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from spacefold._core.walk.exact import ExactWalkBatch, exact_walks
from spacefold._core.walk.exact.assemble import _clip, _clip_many, _join, _splice, _take

f64 = torch.float64
FIELDS = ("start_bits", "flip_at", "flip_neuron", "flip_sign", "t_sorted", "path_sorted", "first", "last")


def _ref_clip(w: ExactWalkBatch, j: int, a: float, b: float) -> ExactWalkBatch:
    """The walk of [a, b] of walk ``j`` of ``w``, one clip at a time (the implementation ``_clip_many`` replaces)."""
    lo, hi = int(w.first[j]), int(w.last[j]) + 1
    t = w.t_sorted[lo:hi]
    i0 = lo + int(torch.searchsorted(t, torch.tensor([a], dtype=t.dtype)))
    i1 = lo + int(torch.searchsorted(t, torch.tensor([b], dtype=t.dtype), right=True))
    add_a = i0 == hi or bool(w.t_sorted[i0] != a)
    add_b = i1 == lo or bool(w.t_sorted[i1 - 1] != b)
    sel = ((w.flip_at >= lo) & (w.flip_at < hi)).nonzero().squeeze(1)
    at, neuron, sign = (x.index_select(0, sel) for x in (w.flip_at, w.flip_neuron, w.flip_sign))
    bit = w.start_bits[j].index_select(0, neuron) ^ (sign > 0)
    before = neuron[at < i0]
    parity = torch.zeros(w.n_neurons, dtype=torch.int64).index_add_(0, before, torch.ones_like(before))
    start = w.start_bits[j] ^ (parity % 2 == 1)
    inside = ((at >= i0) & (at < i1)).nonzero().squeeze(1)
    at, neuron, bit = at.index_select(0, inside), neuron.index_select(0, inside), bit.index_select(0, inside)
    off = (1 if add_a else 0) - i0
    parts = [w.t_sorted.new_tensor([a])] if add_a else []
    parts.append(w.t_sorted[i0:i1])
    if add_b:
        parts.append(w.t_sorted.new_tensor([b]))
    t_new = torch.cat(parts)
    n = t_new.numel()
    sign = torch.where(bit != start.index_select(0, neuron), 1, -1)
    z = torch.zeros(1, dtype=torch.int64)
    return ExactWalkBatch(start.unsqueeze(0), at + off, neuron, sign, t_new, z.expand(n).clone(), z, z + n - 1)


def _ref_splice(part: ExactWalkBatch, w_of: list[int], a_l: list[float], b_l: list[float], subs: list):
    """``part`` with the walks ``subs`` joined in, walk by walk (the implementation ``_splice`` replaces)."""
    n = part.n_walks
    out, done, rest, k = [], 0, part, 0
    while k < len(w_of):
        j = w_of[k]
        if j > done:
            head, rest = _take(rest, j - done)
            out.append(head)
        one, rest = _take(rest, 1)
        t_j = one.t_sorted
        pieces, lo = [], float(t_j[0])
        while k < len(w_of) and w_of[k] == j:
            pieces += [_ref_clip(one, 0, lo, a_l[k]), subs[k]]
            lo = b_l[k]
            k += 1
        pieces.append(_ref_clip(one, 0, lo, float(t_j[-1])))
        out.append(_join(ExactWalkBatch.concat(pieces), torch.zeros(len(pieces), dtype=torch.int64)))
        done = j + 1
    if done < n:
        out.append(rest)
    return ExactWalkBatch.concat(out)


def _flips_in_order(w: ExactWalkBatch) -> dict[str, torch.Tensor]:
    """The flips of ``w`` sorted by breakpoint and neuron (the order of a batch's flips carries no meaning)."""
    order = torch.argsort(w.flip_at * max(w.n_neurons, 1) + w.flip_neuron)
    return {name: getattr(w, name).index_select(0, order) for name in ("flip_at", "flip_neuron", "flip_sign")}


def _same(w: ExactWalkBatch, ref: ExactWalkBatch) -> None:
    fw, fr = _flips_in_order(w), _flips_in_order(ref)
    for name in FIELDS:
        x, y = (fw[name], fr[name]) if name in fw else (getattr(w, name), getattr(ref, name))
        assert x.dtype == y.dtype and torch.equal(x, y), name


@functools.cache
def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    width = 6 + seed % 5
    return nn.Sequential(nn.Linear(3, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU()).double().eval()


@functools.cache
def _walks(seed: int, n: int):
    """Walks of ``n`` random segments through a small random MLP in float64, and the segments."""
    net = _net(seed)
    g = torch.Generator().manual_seed(seed)
    x1, x2 = 3 * torch.randn(n, 3, generator=g, dtype=f64), 3 * torch.randn(n, 3, generator=g, dtype=f64)
    return exact_walks(net, x1, x2), x1, x2


def _point(data, t: torch.Tensor) -> float:
    """A point of [0, 1]: a breakpoint of ``t``, a midpoint of a piece, or anywhere."""
    kind = data.draw(st.sampled_from(["breakpoint", "middle", "any"]))
    k = data.draw(st.integers(0, t.numel() - 2))
    if kind == "breakpoint":
        return float(t[k])
    if kind == "middle":
        return float((t[k] + t[k + 1]) / 2)
    return data.draw(st.floats(0.0, 1.0))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 7), n=st.integers(1, 5), data=st.data())
def test_clip_many_is_clip_clip_by_clip(seed, n, data):
    w, _, _ = _walks(seed, n)
    walks = sorted(data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=6)))
    j, a, b = [], [], []
    for jj in sorted(set(walks)):
        t = w.t_sorted[int(w.first[jj]) : int(w.last[jj]) + 1]
        k = walks.count(jj)
        starts = sorted(_point(data, t) for _ in range(k))
        ends = [max(s, _point(data, t)) for s in starts]
        ends = torch.tensor(ends, dtype=f64).cummax(0).values.tolist()  # within a walk, b does not decrease
        j += [jj] * k
        a += starts
        b += ends
    many = _clip_many(w, torch.tensor(j), torch.tensor(a, dtype=f64), torch.tensor(b, dtype=f64))
    assert many.n_walks == len(j)
    cut = many
    for jj, aa, bb in zip(j, a, b):
        one, cut = _take(cut, 1)
        _same(one, _ref_clip(w, jj, aa, bb))
        _same(_clip(w, jj, aa, bb), one)


def _sub_segments(data, w: ExactWalkBatch, n: int):
    """Sub-segments of the walks as the refinement cuts them: from the middle of a piece to the middle of a
    later one, apart, in order of walk and t."""
    j, a, b = [], [], []
    for jj in sorted(set(data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n)))):
        t = w.t_sorted[int(w.first[jj]) : int(w.last[jj]) + 1]
        if t.numel() < 3:
            continue
        mid = ((t[:-1] + t[1:]) / 2).tolist()
        # cut at an even number of distinct middles (a sub-segment may start where the one before it ends)
        picks = sorted(data.draw(st.lists(st.integers(0, len(mid) - 1), min_size=2, max_size=6)))
        if data.draw(st.booleans()):
            picks = sorted(set(picks))
        for p, q in zip(picks[0::2], picks[1::2]):
            if p == q or (a and j[-1] == jj and mid[p] < b[-1]):
                continue
            j.append(jj)
            a.append(mid[p])
            b.append(mid[q])
    return j, a, b


def _spliced_as_before(w: ExactWalkBatch, j: list[int], a: list[float], b: list[float], subs: ExactWalkBatch):
    """``_splice`` of the sub-walks ``subs`` into ``w``, checked field by field against joining them in walk by
    walk (``_ref_splice``); returns it."""
    f64_ = torch.float64
    new = _splice(w, torch.tensor(j), torch.tensor(a, dtype=f64_), torch.tensor(b, dtype=f64_), subs)
    rest, parts = subs, []
    for _ in j:
        one, rest = _take(rest, 1)
        parts.append(one)
    _same(new, _ref_splice(w, j, a, b, parts))
    return new


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 7), n=st.integers(1, 6), data=st.data())
def test_splice_of_clips_gives_back_the_walk_and_is_the_old_splice(seed, n, data):
    # Joining in the clips of a walk's own sub-segments gives back the walk (with the cuts as breakpoints
    # without flips), field by field as joining them in walk by walk did.
    w, _, _ = _walks(seed, n)
    j, a, b = _sub_segments(data, w, n)
    if not j:
        return
    jt, at, bt = torch.tensor(j), torch.tensor(a, dtype=f64), torch.tensor(b, dtype=f64)
    new = _spliced_as_before(w, j, a, b, _clip_many(w, jt, at, bt))
    assert torch.equal(new.n_regions, w.n_regions)
    assert torch.equal(new.patterns, w.patterns) and torch.equal(new.t, w.t)
    assert new.t_sorted.numel() == w.t_sorted.numel() + 2 * len(j)  # every cut a breakpoint (twice where two meet)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 7), n=st.integers(1, 6), data=st.data())
def test_splice_of_walked_sub_segments_is_the_old_splice(seed, n, data):
    # The sub-segments walked on their own (their breakpoints, start patterns and round-off their own), joined
    # in at once and walk by walk: the same walks, field by field; the patterns those of the whole walk.
    w, x1, x2 = _walks(seed, n)
    j, a, b = _sub_segments(data, w, n)
    if not j:
        return
    jt, at, bt = torch.tensor(j), torch.tensor(a, dtype=f64), torch.tensor(b, dtype=f64)
    xa, xb = torch.lerp(x1[jt], x2[jt], at[:, None]), torch.lerp(x1[jt], x2[jt], bt[:, None])
    subs = exact_walks(_net(seed), xa, xb)
    object.__setattr__(subs, "t_sorted", at[subs.path_sorted] + (bt - at)[subs.path_sorted] * subs.t_sorted)
    new = _spliced_as_before(w, j, a, b, subs)
    assert torch.equal(new.n_regions, w.n_regions) and torch.equal(new.patterns, w.patterns)
