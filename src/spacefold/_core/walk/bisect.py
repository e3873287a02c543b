"""Adaptive bisection for any activation (docs/method.md, 'Walks: three samplers').

Start from ``n0`` equispaced samples (2 = the endpoints). Between consecutive
samples with equal patterns nothing is done; where they differ the midpoint is
inserted, until every transition is located within ``tol`` in t (``strict``) or,
with ``stop="hamming1"``, until consecutive patterns differ in at most one bit.
A sample whose pattern differs from both neighbours, each within ``tol``, is not
kept as a region: it lies on a class boundary (a pre-activation exactly 0) or in a
class narrower than ``2 tol``, which the reference walk (docs/method.md, 'Walks: three samplers') skips too.

What it guarantees. Skipping a sub-segment whose ends share a pattern is exact only
when the pattern classes are convex along the segment: ReLU-type (piecewise-linear)
networks whose every nonlinearity gives bits (:func:`classes_convex`). There the walk
holds every region wider than ``tol``. For every other network (smooth activations,
gated units, normalisation over features, attention, max pooling) a class need not be
convex, or even connected (a gated unit's), and a segment can leave a class and come back
to the same pattern between two samples; such networks start from a grid of
:data:`NONCONVEX_N0` = 1025 samples by default (:func:`default_n0`), so that the
same-ends rule is applied only to intervals shorter than the grid step, 2^-10 in t. The walk
then holds every change of pattern that the grid sees, located within ``tol``; nothing is
guaranteed about what happens between two consecutive samples (an excursion narrower than
the grid step may be missed), so its walks are never *complete*. A user-given ``n0``
sets that resolution. All segments of a batch are refined together: each round evaluates
the midpoints of every open interval of every path in shared forward passes of at most
``max_points`` points (the pipeline sizes them by the memory budget:
:func:`spacefold._core.walk.points_per_pass`); a point's pattern does not depend on the points
that share its pass, so the walks are those of one segment at a time.

Memory. The walk stores every sample's pattern until the end (a boolean per bit), so a
segment that crosses many regions holds many samples: thousands per segment for a deep
transformer, each of thousands of bits. With ``memory`` (bytes; the pipeline gives half the
budget of :func:`spacefold._core.walk.memory_budget`) the segments are refined in groups:
the first group is one segment, and each next group holds as many segments as
:func:`group_size` allows for the most samples one segment has needed so far. The walks
are the same whatever the groups.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..._util import release_freed_memory
from ..patterns import PatternRecorder, find_activations, is_piecewise_linear, run_model
from . import WalkBatch, segment_points

STOP_RULES = ("strict", "hamming1")

# Modules that are not affine and whose kinks no bit records: with one of them a
# pattern class need not be convex even when every activation is ReLU (max pooling
# of ReLU(s + 1) and ReLU(1 − s) gives 1 + |s|, and a ReLU after it folds).
_BREAKS_CONVEXITY = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
    nn.FractionalMaxPool2d,
    nn.FractionalMaxPool3d,
    nn.LPPool1d,
    nn.LPPool2d,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.Softmax,
    nn.Softmin,
    nn.LogSoftmax,
    nn.MultiheadAttention,
)


# the start grid of networks whose pattern classes need not be convex: resolution 2^-10 in t
NONCONVEX_N0 = 1025


def classes_convex(model: nn.Module) -> bool:
    """Whether every pattern class of ``model`` is convex (then bisection may skip an
    interval whose ends share a pattern).

    Classes are convex when every nonlinearity gives bits and is piecewise linear with
    its kink at 0: activation modules and functions ReLU, leaky ReLU, PReLU, RReLU, and
    no other module or function bends the map without a bit for it (max pooling,
    normalisation over features, softmax, attention, ``torch.abs``, Hardtanh's kinks at
    ±1). The model is traced with ``torch.fx`` and any operation that is not affine (as
    the exact walk decides it), or a model that cannot be traced, makes it False.
    """
    try:
        acts = find_activations(model)
    except (TypeError, ValueError):
        return False
    if not all(is_piecewise_linear(m) for _, m in acts):
        return False
    if any(isinstance(m, _BREAKS_CONVEXITY) for m in model.modules()):
        return False
    from .exact import NotPiecewiseLinearError, compile_model

    try:
        prog = compile_model(model)  # refuses every non-affine operation that is not a piecewise-linear activation
    except NotPiecewiseLinearError:
        return False
    # every activation of the program (functions included) kinks at 0 only, where its bit switches
    return all(s.kinks == [0.0] for s in prog.steps if s.kind == "act")


def default_n0(model: nn.Module) -> int:
    """The start grid: 2 when every pattern class of ``model`` is convex
    (:func:`classes_convex`), else :data:`NONCONVEX_N0` (1025 samples, resolution 2^-10)."""
    return 2 if classes_convex(model) else NONCONVEX_N0


def _evaluate(model, recorder, x1, x2, path, t, tie_tol, max_points) -> Tensor:
    out = []
    for j in range(0, path.numel(), max_points):
        points = segment_points(x1, x2, path[j : j + max_points], t[j : j + max_points])
        recorder.clear()
        run_model(model, points, "x1")
        out.append(recorder.bits(tie_tol))
    return torch.cat(out)


# copies of the stored patterns that can be alive at once: the store, its extension by a
# round's midpoints, the pairs of patterns compared, and the sorted copy made for the walks
SAMPLE_COPIES = 4
SAMPLE_OVERHEAD = 40  # bytes per sample besides its pattern: its segment, t and interval indices


def group_size(samples_per_segment: int, n_bits: int, memory: int) -> int:
    """Segments refined together within ``memory`` bytes when one segment holds up to
    ``samples_per_segment`` samples of ``n_bits`` bits: ``memory`` over
    :data:`SAMPLE_COPIES` copies of their patterns and per-sample overhead, at least 1."""
    per = SAMPLE_COPIES * max(samples_per_segment, 1) * (max(n_bits, 1) + SAMPLE_OVERHEAD)
    return max(1, memory // per)


def bisect_walks(
    model: nn.Module,
    recorder: PatternRecorder,
    x1: Tensor,
    x2: Tensor,
    *,
    tol: float,
    tie_tol: float,
    n0: int,
    stop: str = "strict",
    max_points: int = 65536,
    max_rounds: int = 64,
    memory: int | None = None,
) -> WalkBatch:
    """Walks of the segments ``x1[i] -> x2[i]`` by adaptive bisection; with ``memory`` (bytes)
    in groups of segments whose stored samples fit in it (see the module docstring)."""
    b = x1.shape[0]
    kw = dict(tol=tol, tie_tol=tie_tol, n0=n0, stop=stop, max_points=max_points, max_rounds=max_rounds)
    if memory is None or b <= 1:
        return _bisect_group(model, recorder, x1, x2, **kw)[0]
    out: list[WalkBatch] = []
    start, size, most = 0, 1, 0
    while start < b:
        wb, samples = _bisect_group(model, recorder, x1[start : start + size], x2[start : start + size], **kw)
        most = max(most, int(samples.max()))
        out.append(wb)
        release_freed_memory()  # the group's samples
        start += size
        size = group_size(most, wb.patterns.shape[1], memory)
    return WalkBatch.concat(out)


def _bisect_group(
    model, recorder, x1, x2, *, tol, tie_tol, n0, stop, max_points, max_rounds
) -> tuple[WalkBatch, Tensor]:
    """The walks of every segment at once, and each segment's number of samples."""
    device = x1.device
    b = x1.shape[0]
    t0 = torch.linspace(0.0, 1.0, n0, dtype=torch.float64, device=device)
    s_path = torch.arange(b, device=device).repeat_interleave(n0)
    s_t = t0.repeat(b)
    s_pat = _evaluate(model, recorder, x1, x2, s_path, s_t, tie_tol, max_points)
    # open intervals as index pairs into the sample store
    base = torch.arange(b, device=device).unsqueeze(1) * n0
    ia = (base + torch.arange(n0 - 1, device=device)).reshape(-1)
    ib = ia + 1
    n_samples = s_path.numel()
    all_path, all_t, all_pat = s_path, s_t, s_pat
    for _ in range(max_rounds):
        if ia.numel() == 0:
            break
        pa, pb = all_pat[ia], all_pat[ib]
        need = (pa != pb).sum(-1) > 1 if stop == "hamming1" else (pa != pb).any(-1)
        del pa, pb  # freed before the round's forward passes
        need &= (all_t[ib] - all_t[ia]) > tol
        ia, ib = ia[need], ib[need]
        if ia.numel() == 0:
            break
        path = all_path[ia]
        mid = 0.5 * (all_t[ia] + all_t[ib])
        new_pat = _evaluate(model, recorder, x1, x2, path, mid, tie_tol, max_points)
        new_idx = torch.arange(n_samples, n_samples + ia.numel(), device=device)
        n_samples += ia.numel()
        all_path = torch.cat([all_path, path])
        all_t = torch.cat([all_t, mid])
        all_pat = torch.cat([all_pat, new_pat])
        ia, ib = torch.cat([ia, new_idx]), torch.cat([new_idx, ib])
    samples = torch.bincount(all_path, minlength=b)
    return walks_from_samples(all_path, all_t, all_pat, b, tol, "bisect"), samples


def walks_from_samples(path: Tensor, t: Tensor, pat: Tensor, n_paths: int, tol: float, method: str) -> WalkBatch:
    """The walks of ``n_paths`` segments from samples in any order: ``path`` (which segment),
    ``t`` and the bool patterns ``pat``. Sorted by segment and t; a sample whose pattern differs
    from both neighbours, each within ``tol`` in t, marks no class of its own (it lies on a
    boundary, a pre-activation exactly 0, or in a class narrower than 2 tol) and is dropped, as
    the reference walk Γ* drops isolated boundary points; repeated patterns are merged."""
    device = t.device
    order = torch.argsort(t, stable=True)
    order = order[torch.argsort(path[order], stable=True)]
    path, t, pat = path[order], t[order], pat[order]
    if path.numel() > 2:
        same_path = (path[:-2] == path[1:-1]) & (path[2:] == path[1:-1])
        differs = (pat[1:-1] != pat[:-2]).any(-1) & (pat[1:-1] != pat[2:]).any(-1)
        close = ((t[1:-1] - t[:-2]) <= tol) & ((t[2:] - t[1:-1]) <= tol)
        isolated = torch.zeros(path.numel(), dtype=torch.bool, device=device)
        isolated[1:-1] = same_path & differs & close
        path, t, pat = path[~isolated], t[~isolated], pat[~isolated]
    keep = torch.ones(path.numel(), dtype=torch.bool, device=device)
    keep[1:] = (path[1:] != path[:-1]) | (pat[1:] != pat[:-1]).any(-1)
    counts = torch.bincount(path[keep], minlength=n_paths)
    offsets = torch.zeros(n_paths + 1, dtype=torch.int64, device=device)
    offsets[1:] = torch.cumsum(counts, 0)
    return WalkBatch(pat[keep], t[keep], offsets, method)
