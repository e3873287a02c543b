"""Checking walks against plain forward passes: :func:`verify`, for walks of every method.

The certificate (docs/method.md, 'The exact walk') checks each interval of a walk at both ends:
every kink keeps its side and every pooling window its maximum, so the network is affine there
and the recorded pattern holds on the whole interval; the midpoint mode evaluates each region once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ....errors import InputError, InputTypeError
from ...patterns import LayerSelector, PatternRecorder, eval_mode, run_model
from .. import WalkBatch, resolve_tol, segment_points
from .assemble import ExactWalkBatch
from .errors import NotPiecewiseLinearError
from .maxpool import _pool_argmax
from .program import ExactProgram, _kinks, compile_model
from .settings import _dtype_tol


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of :func:`verify`.

    ``ok``: every checked region's pattern matched; ``n_checked``: regions checked;
    ``n_mismatched``: regions whose re-evaluated pattern differs; ``max_distance``:
    the largest Hamming distance found; ``mismatches``: ``(walk, region)`` index pairs
    ``(n_mismatched, 2)``.
    """

    ok: bool
    n_checked: int
    n_mismatched: int
    max_distance: int
    mismatches: Tensor


def verify(
    model: nn.Module,
    x1: Tensor,
    x2: Tensor,
    walks: WalkBatch,
    *,
    layers: LayerSelector = None,
    tie_tol: float = 0.0,
    atol: float = 0.0,
    max_points: int = 65536,
    mode: str | None = None,
    tol: float | None = None,
) -> VerifyResult:
    """Check walks against plain forward passes of the model: an independent check that a walk holds
    the right pattern in every region, and (in certificate mode) that it misses none.

    ``mode="certificate"`` (the default for the piecewise-linear models the exact walk accepts): every
    interval of the walk, a region (or, for an exact walk, each piece between its breakpoints), is
    checked at both of its ends. Every pre-activation of every activation module (selected or not)
    must stay on one side of each of its kinks from the left end to the right end, and every max
    pooling window must have an input that is its maximum at both ends; then the network is affine on
    the interval (by induction over the layers: each layer's input is affine in t there, so it keeps
    its side of every kink), so the pattern is the same on the whole open interval, and it must be the
    recorded one: a bit 1 needs the pre-activation ≥ ``tie_tol`` at both ends and > at one, a bit 0
    ≤ ``tie_tol`` at both. So a region missing from the walk, anywhere, makes its interval fail. A
    region recorded at a single point (t = 0 or t = 1) is compared with the pattern at that point.

    ``mode="midpoint"``: every region is evaluated at its midpoint only (cheaper, and for any model; a
    missing region is found only when a midpoint falls into it). Neurons within ``atol`` of
    ``tie_tol`` are not compared. Inspired by SplineCam's ``verify()``.

    Args:
        model (nn.Module): the model the walks were taken on.
        x1 (Tensor): the starts of the segments, ``(batch, *input_shape)``.
        x2 (Tensor): their ends, of the same shape.
        walks (WalkBatch): one walk per segment, e.g. ``folding_batch(..., return_walks=True).walks``.
        layers (str | type | list | None): the activations the walks hold bits of (as they were walked).
        tie_tol (float): the tie tolerance the walks were taken with.
        atol (float): values are compared up to ``atol`` plus a few units of round-off of the model's
            dtype times the values.
        max_points (int): at most this many inputs per forward pass; the certificate takes fewer where
            the network is wide, so that the values it compares stay near 256 MB (a ResNet-18 at 32x32 has
            47,104 ReLUs).
        mode (str | None): ``"certificate"``, ``"midpoint"``, or ``None``: the certificate where the
            model is piecewise linear, the midpoints otherwise.
        tol (float | None): the move of a value over ``tol`` in t is allowed for (crossings within
            ``tol`` share a breakpoint); ``None``: the exact walk's default for ``tie_tol``.

    Returns:
        VerifyResult: ``ok`` (every checked region matched), ``n_checked``, ``n_mismatched``,
        ``max_distance`` (the largest Hamming distance found) and ``mismatches``, the ``(walk, region)``
        index pairs, int64 ``(n_mismatched, 2)``.

    Raises:
        InputTypeError: ``walks`` is not a ``WalkBatch``.
        InputError: ``x1`` and ``x2`` do not hold one segment per walk, or an unknown ``mode``.
        NotPiecewiseLinearError: ``mode="certificate"`` on a model that is not piecewise linear.

    Examples:
        >>> import torch, spacefold as sf
        >>> net = sf.cantornet(depth=2)
        >>> x1 = torch.tensor([[0.0, 0.75]], dtype=torch.float64)
        >>> x2 = torch.tensor([[1.0, 0.75]], dtype=torch.float64)
        >>> exact = sf.folding_batch(net, x1, x2, tie_tol=net.tie_tol, return_walks=True, workers=1)
        >>> sf.verify(net, x1, x2, exact.walks, tie_tol=net.tie_tol).ok
        True
        >>> grid = sf.folding_batch(net, x1, x2, method="uniform", steps=10, tie_tol=net.tie_tol,
        ...                         return_walks=True, workers=1)
        >>> sf.verify(net, x1, x2, grid.walks, tie_tol=net.tie_tol).ok  # the 11-point grid misses regions
        False
    """
    if not isinstance(walks, WalkBatch):
        raise InputTypeError(f"walks must be a spacefold.WalkBatch, got {type(walks).__name__}")
    if x1.shape[0] != len(walks) or x2.shape[0] != len(walks):
        raise InputError(
            f"x1 and x2 must hold one segment per walk ({len(walks)}), got {x1.shape[0]} and {x2.shape[0]}"
        )
    if mode not in (None, "certificate", "midpoint"):
        raise InputError(f"mode must be 'certificate' or 'midpoint', got {mode!r}")
    from ...patterns import to_model

    x1 = to_model(model, x1)
    x2 = to_model(model, x2)
    if mode in (None, "certificate"):
        try:
            prog = compile_model(model, layers)
        except NotPiecewiseLinearError:
            if mode == "certificate":
                raise
            prog = None
        if prog is not None:
            tol = resolve_tol("exact", tol, tie_tol)
            with eval_mode(model), torch.no_grad():
                return _certify(model, prog, x1, x2, walks, layers, tie_tol, atol, max_points, tol)
    return _verify_midpoints(model, x1, x2, walks, layers, tie_tol, atol, max_points)


def _verify_midpoints(model, x1, x2, walks: WalkBatch, layers, tie_tol, atol, max_points) -> VerifyResult:
    device = walks.patterns.device
    offsets = walks.offsets
    counts = offsets[1:] - offsets[:-1]
    walk_id = torch.repeat_interleave(torch.arange(len(walks), device=device), counts)
    t = walks.t
    t_next = torch.ones_like(t)
    if t.numel() > 1:
        t_next[:-1] = t[1:]
    t_next[offsets[1:] - 1] = 1.0
    mid = 0.5 * (t + t_next)
    dist_all = []
    rec = PatternRecorder(model, layers)
    with rec, eval_mode(model), torch.no_grad():
        for j in range(0, mid.numel(), max_points):
            pts = segment_points(x1, x2, walk_id[j : j + max_points], mid[j : j + max_points])
            rec.clear()
            run_model(model, pts, "x1")
            scores = rec.scores()
            bits = scores > tie_tol
            differ = bits != walks.patterns[j : j + max_points].to(bits.device)
            if atol > 0:
                differ &= (scores - tie_tol).abs() > atol
            dist = differ.sum(1)
            dist_all.append(dist)
    dist = torch.cat(dist_all)
    bad = (dist > 0).nonzero().squeeze(1)
    mism = (
        torch.stack([walk_id[bad], bad - offsets[walk_id[bad]]], 1)
        if bad.numel()
        else torch.zeros(0, 2, dtype=torch.int64)
    )
    return VerifyResult(
        ok=bad.numel() == 0,
        n_checked=int(mid.numel()),
        n_mismatched=int(bad.numel()),
        max_distance=int(dist.max()) if dist.numel() else 0,
        mismatches=mism,
    )


def _intervals(walks: WalkBatch):
    """The intervals to certify: ``(walk, region, t_a, t_b)`` per interval (``t_a == t_b`` for a region
    recorded at a single point). An exact walk gives its pieces between breakpoints (on which
    the walk found the network affine, kinks that give no bit included); any other walk its regions."""
    offsets = walks.offsets
    device = offsets.device
    if isinstance(walks, ExactWalkBatch):
        cnt, _ = walks._per_breakpoint(None)
        has = (cnt > 0).long()
        path = walks.path_sorted
        first = walks.first.index_select(0, path)
        c = torch.cumsum(has, 0)
        k = c - (c.index_select(0, first) - has.index_select(0, first))  # flipping breakpoints so far
        V = path.numel()
        is_last = torch.zeros(V, dtype=torch.bool, device=device)
        is_last[walks.last] = True
        piece = (~is_last).nonzero().squeeze(1)
        walk = path.index_select(0, piece)
        region = k.index_select(0, piece)  # the pattern after the flips at the piece's start
        ta = walks.t_sorted.index_select(0, piece)
        tb = walks.t_sorted.index_select(0, piece + 1)
        # single-point regions: t = 0 (flips at the first breakpoint) and t = 1 (flips at the last)
        b = torch.arange(walks.n_walks, device=device)
        p0 = (has.index_select(0, walks.first) > 0).nonzero().squeeze(1)
        p1 = (has.index_select(0, walks.last) > 0).nonzero().squeeze(1)
        walk = torch.cat([walk, b[p0], b[p1]])
        region = torch.cat([region, torch.zeros_like(p0), (offsets[1:] - offsets[:-1]).index_select(0, p1) - 1])
        zeros = torch.zeros(p0.numel(), dtype=torch.float64, device=device)
        ones = torch.ones(p1.numel(), dtype=torch.float64, device=device)
        return walk, region, torch.cat([ta, zeros, ones]), torch.cat([tb, zeros, ones])
    counts = offsets[1:] - offsets[:-1]
    walk = torch.repeat_interleave(torch.arange(len(walks), device=device), counts)
    region = torch.arange(walk.numel(), device=device) - offsets.index_select(0, walk)
    ta = walks.t
    tb = torch.ones_like(ta)
    if ta.numel() > 1:
        tb[:-1] = ta[1:]
    tb[offsets[1:] - 1] = 1.0
    return walk, region, ta, tb


# what the values compared for one chunk of intervals of the certificate may take
_CERTIFY_BYTES = 256 << 20


def _certify(
    model, prog: ExactProgram, x1, x2, walks: WalkBatch, layers, tie_tol, atol, max_points, tol
) -> VerifyResult:
    walk, region, ta, tb = _intervals(walks)
    offsets = walks.offsets.to(walk.device)
    patterns = walks.patterns
    eps = 64 * torch.finfo(x1.dtype).eps
    tol = max(tol, _dtype_tol(x1.dtype))
    # every activation and max pooling call, in order: their inputs at the two ends of each interval
    calls = [st for st in prog.steps if st.kind in ("act", "maxpool")]  # in the order of the forward pass
    pools = {id(st.module): st.module for st in calls if st.kind == "maxpool" and st.module is not None}
    seen: list[tuple[str, nn.Module, Tensor]] = []

    def hook(mod, args):
        seen.append(("maxpool", mod, args[0]))

    def act(mod, x):  # every activation call, module or function; an in-place one overwrites its input: a copy
        seen.append(("act", mod, x.clone() if getattr(mod, "inplace", False) else x))

    handles = [m.register_forward_pre_hook(hook) for m in pools.values()]
    rec = PatternRecorder(model, layers)
    rec.on_call = act
    n = walk.numel()
    per_interval = torch.zeros(n, dtype=torch.int64, device=walk.device)
    # about 8 float64 values of every neuron at both ends of an interval are alive at once
    step = max(1, min(max_points // 2, _CERTIFY_BYTES // (2 * 8 * 8 * max(1, patterns.shape[1]))))
    try:
        with rec:
            for j in range(0, n, step):
                w_, r_ = walk[j : j + step], region[j : j + step]
                a_, b_ = ta[j : j + step], tb[j : j + step]
                m = w_.numel()
                pts = segment_points(x1, x2, torch.cat([w_, w_]).to(x1.device), torch.cat([a_, b_]).to(x1.device))
                rec.clear()
                seen.clear()
                run_model(model, pts, "x1")
                dt = (b_ - a_).to(x1.device).clamp_min(1e-300).unsqueeze(1)
                point = (b_ == a_).to(x1.device).unsqueeze(1)

                def slack(za: Tensor, zb: Tensor) -> Tensor:
                    # round-off of both values and the move over tol in t (zero for a single point)
                    scale = za.abs().amax(1, keepdim=True) + zb.abs().amax(1, keepdim=True)
                    move = torch.where(point, torch.zeros_like(za), (zb - za).abs() * (tol / dt))
                    return atol + eps * (scale + za.abs() + zb.abs()) + move

                bad = torch.zeros(m, dtype=torch.int64, device=x1.device)
                # the recorded bits
                sc = rec.scores().double()
                za, zb = sc[:m], sc[m:]
                d = slack(za, zb)
                pat = patterns.index_select(0, (offsets.index_select(0, w_) + r_).to(patterns.device)).to(x1.device)
                lo, hi = torch.minimum(za, zb), torch.maximum(za, zb)
                wrong1 = (lo < tie_tol - d) | (hi <= tie_tol - d)
                wrong0 = hi > tie_tol + d
                single = point.expand_as(za)
                # at a single point: the bit itself (neurons within the slack of the threshold not compared)
                wrong1 = torch.where(single, (za < tie_tol - d) | ((za <= tie_tol) & (d == 0)), wrong1)
                wrong0 = torch.where(single, za > tie_tol + d, wrong0)
                bad += torch.where(pat, wrong1, wrong0).sum(1)
                # every kink of every activation, and every pooling window
                # (layers after the last that gives bits change nothing: not checked)
                live = [st.node in prog.live for st in calls] if len(calls) == len(seen) else [True] * len(seen)
                for (kind, mod, x), needed in zip(seen, live):
                    if not needed:
                        continue
                    v = x.reshape(2 * m, -1).double()
                    va, vb = v[:m], v[m:]
                    if kind == "act":
                        dv = slack(va, vb)
                        for level in _kinks(mod):
                            above = ((va - level) > dv) & ((vb - level) < -dv)
                            below = ((va - level) < -dv) & ((vb - level) > dv)
                            bad += (above | below).sum(1)
                    else:
                        bad += _pool_broken(mod, x, m, slack)
                per_interval[j : j + step] = bad.to(per_interval.device)
    finally:
        for h in handles:
            h.remove()
    # per region: the worst of its intervals
    key = offsets.index_select(0, walk) + region
    total = int(offsets[-1])
    dist = torch.zeros(total, dtype=torch.int64, device=walk.device)
    dist.scatter_reduce_(0, key, per_interval, reduce="amax", include_self=True)
    bad = (dist > 0).nonzero().squeeze(1)
    walk_id = torch.repeat_interleave(torch.arange(len(walks), device=walk.device), offsets[1:] - offsets[:-1])
    mism = (
        torch.stack([walk_id[bad], bad - offsets[walk_id[bad]]], 1)
        if bad.numel()
        else torch.zeros(0, 2, dtype=torch.int64)
    )
    return VerifyResult(
        ok=bad.numel() == 0,
        n_checked=total,
        n_mismatched=int(bad.numel()),
        max_distance=int(dist.max()) if dist.numel() else 0,
        mismatches=mism,
    )


def _pool_broken(mod: nn.Module, x: Tensor, m: int, slack) -> Tensor:
    """Per interval, the pooling windows with no input that is their maximum at both ends (up to the slack)."""
    am, size, _ = _pool_argmax(x, mod)  # (2m, windows)
    flat = x.reshape(2 * m, -1).double()  # the inputs of every plane, plane after plane
    per_plane = am.shape[1] // (flat.shape[1] // size)
    # the arg-max of each window as an index into ``flat``: only the windows' maxima are gathered,
    # never a copy of the whole plane per window
    base = (torch.arange(am.shape[1], device=x.device) // per_plane) * size
    mx = flat.gather(1, am + base)  # the window maxima
    ia, ib = am[:m] + base, am[m:] + base
    a_at_b = flat[m:].gather(1, ia)  # the arg-max at a, evaluated at b
    b_at_a = flat[:m].gather(1, ib)
    d = slack(mx[:m], mx[m:])
    return ((a_at_b < mx[m:] - d) & (b_at_a < mx[:m] - d)).sum(1)
