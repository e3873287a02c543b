"""Uniform sampling: the papers' Algorithm 1 (arXiv 2502.09954; docs/method.md, "Walks: three samplers").

``steps + 1`` equispaced points t = 0, 1/steps, ..., 1 on each segment; the
pattern of every point; consecutive duplicates merged.

Points are evaluated at most ``max_points`` at a time, whole segments together when a
segment has fewer points, else a long segment in pieces; repeated patterns are merged as
each piece comes, so memory grows with the regions found, not with ``steps``.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn

from ..patterns import PatternRecorder, run_model
from . import WalkBatch, run_starts, segment_points


def _blocks(b: int, n: int, max_points: int, device) -> Iterator[tuple[Tensor, Tensor]]:
    """``(path, k)`` of the points of every forward pass: grid point k of segment path."""
    if n <= max_points:
        per = max(1, max_points // n)
        for s in range(0, b, per):
            m = min(per, b - s)
            yield (torch.arange(s, s + m, device=device).repeat_interleave(n), torch.arange(n, device=device).repeat(m))
    else:
        for s in range(b):
            for k in range(0, n, max_points):
                ks = torch.arange(k, min(k + max_points, n), device=device)
                yield torch.full_like(ks, s), ks


def uniform_walks(
    model: nn.Module,
    recorder: PatternRecorder,
    x1: Tensor,
    x2: Tensor,
    *,
    steps: int,
    tie_tol: float,
    max_points: int = 65536,
    grid_index: bool = True,
) -> WalkBatch:
    """Walks of segments ``x1[i] -> x2[i]`` (``(batch, *input_shape)``) on a grid.

    The model must already run under ``recorder`` (hooks in place), in eval mode
    and without gradients. Forward passes hold at most ``max_points`` points. With
    ``grid_index=False`` the walks carry no map from grid points to regions (which
    takes 8 bytes per grid point).
    """
    b, n = x1.shape[0], steps + 1
    device = x1.device
    t = torch.linspace(0.0, 1.0, n, dtype=torch.float64, device=device)
    pats, ts, ids, gis = [], [], [], []
    first_region = torch.zeros(b, dtype=torch.int64, device=device)  # global row of each walk's first region
    n_kept = 0
    prev_bits = None
    for path, k in _blocks(b, n, max_points, device):
        recorder.clear()
        run_model(model, segment_points(x1, x2, path, t[k]), "x1")
        bits = recorder.bits(tie_tol)
        keep = run_starts(bits, path)
        if prev_bits is not None and int(k[0]) > 0:  # a segment continued from the previous pass
            keep[0] = bool((bits[0] != prev_bits).any())
        rows = n_kept + torch.cumsum(keep.long(), 0) - 1  # the region of every point, numbered globally
        starts = k == 0
        first_region[path[starts]] = rows[starts]
        if grid_index:
            gis.append(rows - first_region[path])
        pats.append(bits[keep])
        ts.append(t[k][keep])
        ids.append(path[keep])
        n_kept += int(keep.sum())
        prev_bits = bits[-1]
    counts = torch.bincount(torch.cat(ids), minlength=b)
    offsets = torch.zeros(b + 1, dtype=torch.int64, device=device)
    offsets[1:] = torch.cumsum(counts, 0)
    gi = torch.cat(gis).view(b, n) if grid_index else None
    return WalkBatch(torch.cat(pats), torch.cat(ts), offsets, "uniform", gi)
