"""The exact walk's entry point (docs/method.md, 'The exact walk'): :func:`exact_walks`.

Compiles the model, evaluates the affine prefix at the segments' ends, and walks the paths in
sub-batches sized to a byte target (concurrently, one torch thread each, on multi-threaded
CPUs), walking again in float64 the paths whose max pooling the model's dtype cannot resolve.
Sub-batches hold no more breakpoints than the memory budget allows (:func:`spacefold._core.walk.memory_budget`);
segments that need more are walked in sub-segments and joined (:func:`.assemble._join`).
"""

from __future__ import annotations

import copy
import threading
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor, nn

from ....errors import InputError
from ...patterns import LayerSelector
from .. import WalkBatch, _kernels, memory_budget, resolve_tol
from .assemble import ExactWalkBatch, _assemble, _join, _reorder, _search, _splice, _subset, _take
from .handlers import _run
from .maxpool import _Unresolved
from .program import ExactProgram, compile_model
from .settings import WalkSettings, _dtype_tol
from .state import _OverBudget, _State


def exact_walks(
    model: nn.Module,
    x1: Tensor,
    x2: Tensor,
    *,
    layers: LayerSelector = None,
    tie_tol: float = 0.0,
    tol: float | None = None,
    prefix: tuple[list[Tensor], list[Tensor]] | None = None,
    ends=None,
) -> WalkBatch:
    """Exact walks of the segments ``x1[i] -> x2[i]`` (inputs ``(batch, *input_shape)``).

    ``model`` must be piecewise linear (see the module docstring) and in eval mode;
    the computation runs on the model's device and dtype, without gradients.
    ``tie_tol``: bit = pre-activation > ``tie_tol``; ``tol``: crossings closer than
    ``tol`` in t are one breakpoint (``None``: 1e-9, or 1e-6 when ``tie_tol > 0``,
    see :func:`spacefold._core.walk.resolve_tol`; at least one unit of round-off of the
    model's dtype, 1.2e-7 in float32), a breakpoint gathering the crossings within
    ``tol`` after the first of them. ``prefix``: the values of
    :meth:`ExactProgram.prefix` at the two ends, if already computed (then ``x1`` and
    ``x2`` are read only for their batch size and device). Pieces walked again in float64
    start from the prefix in float64, computed from ``x1`` and ``x2`` without ``prefix``;
    with it, from ``ends(path)`` (the end inputs ``x1[path], x2[path]`` of the segments
    ``path``, fetched only then), or without ``ends`` from the values of ``prefix``, widened. Returns a
    :class:`WalkBatch` whose walks are the reference walks Γ* of docs/method.md, 'Walks: three samplers'.

    Non-finite values inside the network (inputs or weights that overflow the dtype) raise
    :class:`spacefold.errors.InputError`. Segments whose max pooling cannot be resolved in
    the model's dtype, or on which a value lies within its round-off of 0 at two neighbouring
    breakpoints next to an end (the zero rule, which only float64 decides; elsewhere the pieces
    around such values are refined, below), are walked again in float64 (counted in ``n_float64``
    of the result). In
    a dtype coarser than float64 (with ``tol`` below its round-off), the sub-segments around
    crossings it cannot tell apart are walked again in float64 and joined in (counted in
    ``n_refined``; docs/method.md, 'The exact walk').

    The walk's tensors stay within the memory budget, ``SPACEFOLD_MEMORY`` bytes or 1 GiB
    (:func:`spacefold._core.walk.memory_budget`), whatever the number of segments and regions: segments
    crossing more regions than that holds are walked in sub-segments and joined (the same walks).
    A budget too small for 8 breakpoints of the network raises :class:`spacefold.errors.InputError`.
    """
    if x1.shape[0] == 0:
        raise ValueError("x1 and x2 must hold at least one segment, got batch size 0")
    prog = compile_model(model, layers)
    tol = resolve_tol("exact", tol, tie_tol)
    with torch.no_grad():
        out = _exact(prog, x1, x2, tie_tol, tol, prefix, ends)
    if getattr(out, "n_unresolved", 0):
        warnings.warn(
            f"max pooling could not be resolved in float64 on {out.n_unresolved} of {len(out)} segments "
            "(near ties of a window's arg-max); their walks take the arg-max up to float64 round-off",
            RuntimeWarning,
            stacklevel=2,
        )
    return out


# Largest tensor of breakpoint values aimed at per sub-batch. Small tensors are reused by
# the memory allocator and stay in cache; large ones are mapped afresh and page-faulted
# on every layer, which costs more than the products themselves on wide networks (glibc
# serves blocks up to 32 MB from its heap once it has seen them freed; 16 MB measured a few
# percent faster than 8 MB and much faster than 64 MB on the 784-256x6-10 benchmark).
_TARGET_BYTES = 16 << 20


# With the compiled kernels a layer is a few calls, not hundreds of operations: smaller
# sub-batches keep the breakpoint values in the cache between the product and the kernel
# (2 MB measured 6-10% faster than 16 MB on the 784-256x6-10 benchmark, 1 MB no faster).
_TARGET_BYTES_COMPILED = 2 << 20


# Networks whose breakpoints are large (feature maps of convolutional nets: 16 KB or more at one
# breakpoint) are walked in sub-batches of 4 MB: the passes over the maps (convolution, batch norm,
# activation, split, interpolation, pooling) then read them from the cache (on one path of
# benchmarks/bench_cnn.py's VGG-style net, interleaved: 4 MB 7.4 s, 1 MB 9.3 s, 2 MB 8.2 s, 8 MB 10.7 s).
_TARGET_BYTES_WIDE = 4 << 20


_WIDE_ROW = 16 << 10


# On GPUs memory is pooled by the caching allocator and each operation has a launch
# cost, so sub-batches there are as large as memory comfortably allows.
_TARGET_BYTES_ACCELERATOR = 512 << 20


# Breakpoint-value tensors of the widest layer's size alive at once, counted by the memory budget:
# the layer's input and output, the spare rows of the interpolation buffers (see _interpolate) and
# the arg-max indices of max pooling.
_ROW_COPIES = 4
# Walks in a dtype coarser than float64 are walked again in float64 around breakpoints where several bits flip
# and where two breakpoints with flips are closer than this many units of the dtype's round-off in t (see
# refine). Crossings that float64 merges within its tol were seen 1.7e-7 apart in float32 on
# benchmarks/bench_cnn.py's net (1.4 units); a wider gap walks more again for nothing (on the 784-256x6 MLP of
# benchmarks/bench_regioncam.py, 200 paths: 2 sub-segments with 1 unit, 4 with 2, 24 with 8).
_REFINE_UNITS = 2
# Sub-segments are not cut shorter than this in t (a budget that needs shorter ones is too small).
_MIN_PIECE = 1e-6


def _float64_program(prog: ExactProgram) -> ExactProgram:
    """The program of a float64 copy of ``prog``'s model, kept on ``prog`` while the model's parameters and
    buffers are the same tensors at the same versions (an in-place update makes a new copy)."""
    model = prog.model
    if model is None:
        raise RuntimeError("the model of this ExactProgram no longer exists")
    key = tuple((t.data_ptr(), t._version) for t in (*model.parameters(), *model.buffers()))
    cached = getattr(prog, "_float64", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    fine = ExactProgram(copy.deepcopy(model).to(torch.float64), prog.layers)
    prog._float64 = (key, fine)
    return fine


def _row_bytes(prog: ExactProgram, ends: list[tuple[Tensor, Tensor]]) -> int:
    """Bytes of the largest tensor of breakpoint values at one breakpoint: the walk's tensors evaluated at the
    first segment's start (one plain forward pass of the layers after the prefix)."""
    env = prog._consts()
    big = 1
    for node, (a, _) in zip(prog._live_at_prefix(), ends):
        env[node] = a[:1].clone()  # a copy: modules may work in place (nn.ReLU(inplace=True))
        big = max(big, a[:1].numel() * a.element_size())
    for s in prog.steps[prog.prefix_end :]:
        if s.kind == "output":
            break
        if s.kind in ("input", "const") or s.node not in prog.live:
            continue
        v = prog._eval(s, env)
        env[s.node] = v
        if isinstance(v, Tensor) and v.dim() and v.shape[0] == 1:
            big = max(big, v.numel() * v.element_size())
    return big


def _exact(
    prog: ExactProgram, x1: Tensor, x2: Tensor, tie_tol: float, tol: float, prefix=None, inputs=None
) -> ExactWalkBatch:
    b = x1.shape[0]
    if prefix is None:
        p1, p2 = prog.prefix(x1), prog.prefix(x2)
    else:
        p1, p2 = prefix
    device = x1.device
    cpu = device.type == "cpu"
    if not cpu:
        target = _TARGET_BYTES_ACCELERATOR
    elif prog.kernel_friendly and _kernels.available():
        target = _TARGET_BYTES_COMPILED
    else:
        target = _TARGET_BYTES

    dtype = p1[0].dtype if p1 else x1.dtype
    # sub-segments refined in float64 (see refine) resolve crossings as a float64 walk does; only where the
    # dtype's round-off, not the tol asked for, limits the walk
    tol64 = max(tol, _dtype_tol(torch.float64))
    refining = dtype != torch.float64 and tol < _dtype_tol(dtype)
    tol = max(tol, _dtype_tol(dtype))
    refine_gap = _REFINE_UNITS * _dtype_tol(dtype)
    is64 = dtype == torch.float64  # nothing finer to walk again in
    fine: list[ExactProgram] = []
    lock = threading.Lock()

    n0 = min(b, 64)  # the first sub-batches measure the size per path
    n_threads = torch.get_num_threads()
    threaded = cpu and n_threads > 1 and b > n0
    # the memory budget, shared by the sub-batches walked at once, caps the breakpoints of each
    budget = memory_budget() // (n_threads if threaded else 1)
    row_bytes = _row_bytes(prog, list(zip(p1, p2))) if p1 else 1
    if cpu and row_bytes >= _WIDE_ROW:
        target = _TARGET_BYTES_WIDE
    itemsize = torch.finfo(dtype).bits // 8
    caps = {False: budget // (_ROW_COPIES * row_bytes), True: budget // (_ROW_COPIES * row_bytes * 8 // itemsize)}
    if caps[True] < 8:  # the walk in float64 as well, where max pooling needs it
        need = 8 * _ROW_COPIES * row_bytes * 8 // itemsize * (n_threads if threaded else 1)
        raise InputError(
            f"SPACEFOLD_MEMORY must leave the exact walk of this network at least {need} bytes "
            f"(8 breakpoints of {_ROW_COPIES} x {row_bytes * 8 // itemsize} bytes in float64), got "
            f"{memory_budget()}"
        )
    target = max(min(target, budget // _ROW_COPIES), 1)
    est = {"per_path": 0.0}  # bytes of the largest tensor per path, t-length 1, as last measured

    def walk(
        pr: ExactProgram,
        ends: list[tuple[Tensor, Tensor]],
        n: int,
        accept: bool,
        t_ends: tuple[Tensor, Tensor] | None,
        tol_: float,
    ) -> tuple[ExactWalkBatch, set, list, float]:
        state = _State(n, device, t_ends, caps[pr is not prog or is64])
        # a walk that can hand paths to float64 leaves its zero rule to float64: to the refinement, or to a float64
        # walk of whole segments (pieces of segments keep float32's rule where nothing is refined: a float64 piece
        # would meet float32 ones at unrefined junctions)
        state.defer_zeros = not accept and (refining or t_ends is None)
        env = pr._consts()
        for node, (a, c) in zip(pr._live_at_prefix(), ends):
            env[node] = torch.cat([a, c])
        with torch.no_grad():  # grad mode is per thread
            records = _run(pr, env, state, pr.prefix_end, WalkSettings(tie_tol, tol_, accept))
            part = _assemble(state, records, state.n_paths)
        return part, state.unresolved, state.defer_marks, float(state.peak_bytes)

    def ends_at(path: Tensor, ta: Tensor, tb: Tensor, f64: bool) -> list[tuple[Tensor, Tensor]]:
        """The prefix values at t = ta and t = tb of the segments ``path`` (interpolated: they are affine)."""
        if f64:
            with lock:
                if not fine:
                    fine.append(_float64_program(prog))
            pr = fine[0]
            if prefix is None or inputs is not None:
                e1, e2 = (x1[path], x2[path]) if prefix is None else inputs(path)
                ends = list(zip(pr.prefix(e1.to(device, torch.float64)), pr.prefix(e2.to(device, torch.float64))))
            else:
                ends = [(a[path].to(torch.float64), c[path].to(torch.float64)) for a, c in zip(p1, p2)]
        else:
            ends = [(a[path], c[path]) for a, c in zip(p1, p2)]
        if bool((ta == 0).all()) and bool((tb == 1).all()):
            return ends
        out = []
        for a, c in ends:
            shape = (-1,) + (1,) * (a.dim() - 1)
            out.append((torch.lerp(a, c, ta.to(a.dtype).view(shape)), torch.lerp(a, c, tb.to(a.dtype).view(shape))))
        return out

    def walk_pieces(path: Tensor, ta: Tensor, tb: Tensor, f64: bool = False, fine_tol: bool = False):
        """Walks of the pieces [ta, tb] of the segments ``path``: ``(walks, float64 mask, unresolved mask, peak
        bytes)``. Pieces whose max pooling the model's dtype cannot resolve are walked again in float64. With
        ``fine_tol`` (the sub-segments of :func:`refine`), float64's merge tolerance instead of the model dtype's."""
        n = path.numel()
        t_ends = (ta, tb) if not (bool((ta == 0).all()) and bool((tb == 1).all())) else None
        try:
            ends = ends_at(path, ta, tb, f64)
            part, unres, marks, peak = walk(
                fine[0] if f64 else prog, ends, n, f64 or is64, t_ends, tol64 if fine_tol else tol
            )
        except _Unresolved as err:
            # walk the others again in the model's dtype and these in float64, in order
            bad = torch.zeros(n, dtype=torch.bool)
            bad[err.paths] = True
            parts, i = [], 0
            while i < n:
                j = i
                while j < n and bool(bad[j] == bad[i]):
                    j += 1
                f = bool(bad[i]) or fine_tol  # in float64 with float64's merge tolerance (see the zero rule below)
                parts.append(walk_pieces(path[i:j], ta[i:j], tb[i:j], f, f))
                i = j
            return (
                ExactWalkBatch.concat([p[0] for p in parts]),
                torch.cat([p[1] for p in parts]),
                torch.cat([p[2] for p in parts]),
                max(p[3] for p in parts),
            )
        unresolved = torch.zeros(n, dtype=torch.bool)
        if unres:
            unresolved[torch.tensor(sorted(unres))] = True
        f64_mask = torch.full((n,), f64)
        # values within round-off of 0 at neighbouring breakpoints: a cancellation or a genuine value near 0, which
        # float32's bound cannot tell apart on wide layers and float64's tracked bound can. Their pieces are walked
        # again in float64 by the refinement (whole segments walked from t = 0 to 1, away from their ends), or else
        # their paths as a whole, here
        bad = torch.zeros(n, dtype=torch.bool)
        zero_marks = None
        if marks:
            mp, lo, hi = (torch.cat([m[i] for m in marks]).cpu() for i in range(3))
            if refining:  # the pieces around them, unless they reach an end of the segment
                whole = (lo <= 0) | (hi >= 1)
                bad[mp[whole]] = True
                keep = ~whole & ~bad.index_select(0, mp)
                zero_marks = (mp[keep], lo[keep], hi[keep])
            else:
                bad[mp] = True
        if bool(bad.any()):
            good, badi = (~bad).nonzero().squeeze(1), bad.nonzero().squeeze(1)
            # (with float64's merge tolerance: the refinement of close crossings skips paths walked in float64)
            sub, sub_f64, sub_unres, sub_peak = walk_pieces(path[badi], ta[badi], tb[badi], True, True)
            dev = part.t_sorted.device
            part = _reorder(ExactWalkBatch.concat([_subset(part, good.to(dev)), sub]), torch.cat([good, badi]).to(dev))
            f64_mask[badi] = sub_f64
            unresolved[badi] = sub_unres
            peak = max(peak, sub_peak)
        if zero_marks is not None and zero_marks[0].numel():
            object.__setattr__(part, "_zero_marks", zero_marks)  # for refine (walks keep their places above)
        return part, f64_mask, unresolved, peak

    def to_refine(part: ExactWalkBatch, skip: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The sub-segments of the walks ``part`` (in the model's dtype; not those of ``skip``) that :func:`refine`
        walks again in float64: ``(walk, t_a, t_b)``, in order of walk and t.

        Crossings closer than the dtype's round-off in t share a breakpoint (in float32 1.2e-7, which ~10^4
        crossings on a segment reach a few times): a breakpoint where several bits flip. Crossings that float64
        merges can be apart in the dtype: breakpoints with flips closer than ``refine_gap`` are walked again
        too, with the rows between them, and so are the pieces around values the zero rule left to float64
        (``_zero_marks``, from :func:`walk_pieces`). A sub-segment runs from the middle of the piece before such a
        breakpoint (or a run of consecutive ones) to the middle of the piece after it."""
        at, t = part.flip_at, part.t_sorted
        V = t.numel()
        cnt = torch.zeros(V, dtype=torch.int64, device=at.device).index_add_(0, at, torch.ones_like(at))
        cnt[part.first] = 0
        cnt[part.last] = 0
        if bool(skip.any()):
            cnt[skip.to(at.device).index_select(0, part.path_sorted)] = 0
        mark = torch.zeros(V + 1, dtype=torch.int64, device=at.device)
        mark[:V] = (cnt > 1).long()
        mark[1:].sub_(mark[:V].clone())  # +1 at every row of several flips, -1 after it
        fr = (cnt > 0).nonzero().squeeze(1)  # inner breakpoints with flips, in order of t per walk
        if fr.numel() > 1:
            a, c = fr[:-1], fr[1:]
            close = ((t.index_select(0, c) - t.index_select(0, a)) <= refine_gap) & (
                part.path_sorted.index_select(0, a) == part.path_sorted.index_select(0, c)
            )
            if bool(close.any()):  # the rows from one to the other
                mark.index_add_(0, a[close], torch.ones_like(a[close]))
                mark.index_add_(0, c[close] + 1, -torch.ones_like(a[close]))
        zero_marks = getattr(part, "_zero_marks", None)
        if zero_marks is not None:  # the rows around values the zero rule left to float64 (walk_pieces)
            zp, zlo, zhi = (z.to(at.device) for z in zero_marks)
            i0 = _search(part, zp, zlo, right=False)  # the row before (t >= zlo: the row at zlo), inside its walk
            i1 = _search(part, zp, zhi, right=True) - 1  # the row after
            mark.index_add_(0, i0, torch.ones_like(i0))
            mark.index_add_(0, i1 + 1, -torch.ones_like(i1))
        rows = (torch.cumsum(mark[:V], 0) > 0).nonzero().squeeze(1)
        run = torch.ones_like(rows, dtype=torch.bool)
        run[1:] = rows[1:] != rows[:-1] + 1
        last = torch.ones_like(run)
        last[:-1] = run[1:]
        r0, r1 = rows[run], rows[last]  # first and last row of every run of such breakpoints
        a = (t.index_select(0, r0 - 1) + t.index_select(0, r0)) / 2
        b = (t.index_select(0, r1) + t.index_select(0, r1 + 1)) / 2
        return part.path_sorted.index_select(0, r0), a, b

    def refine(parts: list[ExactWalkBatch]) -> list[ExactWalkBatch]:
        """The walks ``parts`` (of the segments 0, 1, ... in order, from :func:`finish`) with the sub-segments of
        :func:`to_refine` walked again in float64, in batches within the memory budget, and joined in part by part
        (counted in ``n_refined``, :func:`.assemble._splice`). A sub-segment over the budget alone stays as walked in
        the model's dtype."""
        found, off = [], 0
        for part in parts:
            w, a, b = to_refine(part, part._masks[0])
            found.append((w, w + off, a, b))
            off += part.n_walks
        w_all = torch.cat([f[1] for f in found])
        m = w_all.numel()
        if m == 0:
            return parts
        a_all, b_all = torch.cat([f[2] for f in found]), torch.cat([f[3] for f in found])
        groups: list[tuple[int, int, ExactWalkBatch, Tensor]] = []

        def walk_group(lo: int, hi: int) -> None:
            """The sub-segments lo .. hi - 1 in one batch, or in halves where that is over the budget."""
            try:
                sub, _, u, _ = walk_pieces(w_all[lo:hi], a_all[lo:hi], b_all[lo:hi], True, True)
            except _OverBudget:
                if hi - lo > 1:
                    walk_group(lo, (lo + hi) // 2)
                    walk_group((lo + hi) // 2, hi)
                return
            groups.append((lo, hi, sub, u))

        walk_group(0, m)  # the groups in order of their sub-segments
        if not groups:
            return parts
        walked = torch.zeros(m, dtype=torch.bool)
        sub_unres = torch.zeros(m, dtype=torch.bool)
        for lo, hi, _, u in groups:
            walked[lo:hi] = True
            sub_unres[lo:hi] = u
        done = walked.nonzero().squeeze(1)
        subs = ExactWalkBatch.concat([s for _, _, s, _ in groups])  # the walked sub-segments, in order of done
        w_done = w_all.index_select(0, done.to(w_all.device)).cpu()
        a_done, b_done = a_all.index_select(0, done.to(a_all.device)), b_all.index_select(0, done.to(b_all.device))
        unres_done = sub_unres.index_select(0, done)
        # part by part, only the parts with walked sub-segments (the cost follows them, not the whole batch)
        out, off, k0 = [], 0, 0
        for part in parts:
            k1 = k0 + int(((w_done >= off) & (w_done < off + part.n_walks)).sum())
            if k1 == k0:
                out.append(part)
            else:
                local = w_done[k0:k1] - off
                dev = part.t_sorted.device
                spliced = _splice(
                    part,
                    local.to(dev),
                    a_done[k0:k1],
                    b_done[k0:k1],
                    _subset(subs, torch.arange(k0, k1, device=subs.t_sorted.device)),
                )
                f64, unres = part._masks
                refined = torch.zeros(part.n_walks, dtype=torch.int64).index_add_(0, local, torch.ones_like(local))
                unres = unres.clone()
                unres[local[unres_done[k0:k1]]] = True
                out.append(finish(spliced, f64, unres, refined))
            off += part.n_walks
            k0 = k1
        return out

    def finish(part: ExactWalkBatch, f64: Tensor, unres: Tensor, refined: Tensor | None = None) -> ExactWalkBatch:
        object.__setattr__(part, "n_float64", int(f64.sum()))
        object.__setattr__(part, "n_unresolved", int(unres.sum()))
        object.__setattr__(part, "n_refined", 0 if refined is None else int(refined.sum()))
        object.__setattr__(part, "_masks", (f64, unres))  # per walk, for refine
        return part

    def in_pieces(k: int, n: int) -> tuple[ExactWalkBatch, float]:
        """The segments k .. k + n - 1 walked in sub-segments whose breakpoints fit the target size (and so the
        memory budget), joined."""
        dens = est["per_path"]  # bytes of the largest tensor per unit of t
        queue: deque = deque()
        nxt_path = k
        joined: list[ExactWalkBatch] = []
        pending: list[tuple[ExactWalkBatch, Tensor, Tensor, Tensor]] = []
        seg_marks: list[tuple[Tensor, Tensor, Tensor]] = []  # what the zero rule left to the refinement
        while queue or nxt_path < k + n:
            batch: list[tuple[int, float, float]] = []
            size = 0.0
            while True:
                if not queue:
                    if nxt_path >= k + n:
                        break
                    m = max(1, min(int(-(-dens // target)), int(1 / _MIN_PIECE)))
                    queue.extend((nxt_path, j / m, (j + 1) / m) for j in range(m))
                    nxt_path += 1
                e = dens * (queue[0][2] - queue[0][1])
                if batch and size + e > target:
                    break
                batch.append(queue.popleft())
                size += e
            path = torch.tensor([p for p, _, _ in batch], device=device)
            ta = torch.tensor([a for _, a, _ in batch], dtype=torch.float64, device=device)
            tb = torch.tensor([c for _, _, c in batch], dtype=torch.float64, device=device)
            length = float((tb - ta).sum())
            try:
                part, f64, unres, peak = walk_pieces(path, ta, tb)
            except _OverBudget as err:
                dens = max(2 * dens, err.rows * row_bytes / length)
                if len(batch) == 1:  # halve it
                    p, a, c = batch[0]
                    if c - a < 2 * _MIN_PIECE:
                        raise InputError(
                            f"SPACEFOLD_MEMORY ({memory_budget()} bytes) is too small for the exact walk "
                            f"of this network: {err.rows} breakpoints of {row_bytes} bytes on a "
                            f"sub-segment of length {c - a:.2g}"
                        ) from None
                    batch = [(p, a, (a + c) / 2), (p, (a + c) / 2, c)]
                queue.extendleft(reversed(batch))
                continue
            dens = peak / length
            pm = getattr(part, "_zero_marks", None)
            if pm is not None:  # by segment (the walks of in_pieces' result are the segments k .. k + n - 1)
                seg_marks.append(((path - k).cpu().index_select(0, pm[0]), pm[1], pm[2]))
            pending.append((part, path - k, f64, unres))
            # join the segments whose pieces are all walked
            done = (queue[0][0] if queue else nxt_path) - k
            seg = torch.cat([p[1] for p in pending])
            n_done = int((seg < done).sum())
            if n_done:
                w = ExactWalkBatch.concat([p[0] for p in pending])
                f64, unres = torch.cat([p[2] for p in pending]), torch.cat([p[3] for p in pending])
                head, rest = _take(w, n_done)
                first_seg = int(seg[0])
                s = seg[:n_done] - first_seg
                n_seg = int(s[-1]) + 1
                flags = [
                    torch.zeros(n_seg, dtype=torch.int64).index_add_(0, s.cpu(), x[:n_done].long()) > 0
                    for x in (f64, unres)
                ]
                joined.append(finish(_join(head, s), *flags))
                pending = [(rest, seg[n_done:], f64[n_done:], unres[n_done:])] if n_done < seg.numel() else []
        est["per_path"] = max(est["per_path"], dens)
        out = (
            joined[0]
            if len(joined) == 1
            else finish(ExactWalkBatch.concat(joined), *(torch.cat([j._masks[i] for j in joined]) for i in (0, 1)))
        )
        if seg_marks:
            object.__setattr__(out, "_zero_marks", tuple(torch.cat([m[i] for m in seg_marks]) for i in range(3)))
        return out, dens

    def sub_batch(k: int, n: int) -> tuple[ExactWalkBatch, float]:
        if est["per_path"] > target:  # one path alone is larger than a sub-batch should be
            return in_pieces(k, n)
        path = torch.arange(k, k + n, device=device)
        try:
            part, f64, unres, peak = walk_pieces(
                path,
                torch.zeros(n, dtype=torch.float64, device=device),
                torch.ones(n, dtype=torch.float64, device=device),
            )
        except _OverBudget as err:
            est["per_path"] = max(est["per_path"], err.rows * row_bytes / n)
            return in_pieces(k, n)
        return finish(part, f64, unres), max(peak / n, 1.0)

    def next_step(per_path: float) -> int:
        # as many paths as fit the target size of the largest tensor
        return int(min(max(target / max(per_path, 1.0), 16), 1 << 20))  # a path may measure 0 bytes

    if threaded:
        # On CPUs only the matrix products use torch's threads; the rest of the walk is many
        # small operations. Independent sub-batches on one thread each keep every core busy
        # (torch releases the GIL inside its operations).
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(min(n_threads, -(-b // n0))) as pool:
                starts = list(range(0, min(b, n0 * n_threads), n0))
                first = list(pool.map(lambda k0: sub_batch(k0, min(n0, b - k0)), starts))
                parts = [p for p, _ in first]
                step = next_step(max(pp for _, pp in first))
                k = min(b, starts[-1] + n0)
                if k < b:
                    # equal sub-batches, as many as a multiple of the threads: no thread is left
                    # alone with the last one
                    rounds = -(-(b - k) // (step * n_threads))
                    step = -(-(b - k) // (rounds * n_threads))
                parts += [p for p, _ in pool.map(lambda k0: sub_batch(k0, min(step, b - k0)), range(k, b, step))]
        finally:
            torch.set_num_threads(n_threads)
    else:
        part, per_path = sub_batch(0, n0)
        parts, k, step = [part], n0, next_step(per_path)
        while k < b:
            part, per_path = sub_batch(k, min(step, b - k))
            parts.append(part)
            k += part.n_walks
            step = next_step(per_path)
    if refining:
        parts = refine(parts)
    return parts[0] if len(parts) == 1 else ExactWalkBatch.concat(parts)
