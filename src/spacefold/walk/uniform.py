"""Uniform sampling: TMLR Algorithm 1 (FOLDING.md §2, §7.4 c).

``steps + 1`` equispaced points t = 0, 1/steps, ..., 1 on each segment; the
pattern of every point; consecutive duplicates merged.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..patterns import PatternRecorder, run_model
from . import WalkBatch


def uniform_walks(
    model: nn.Module,
    recorder: PatternRecorder,
    x1: Tensor,
    x2: Tensor,
    *,
    steps: int,
    tie_tol: float,
    max_points: int = 65536,
) -> WalkBatch:
    """Walks of segments ``x1[i] -> x2[i]`` (``(batch, *input_shape)``) on a grid.

    The model must already run under ``recorder`` (hooks in place), in eval mode
    and without gradients. Forward passes hold at most ``max_points`` points.
    """
    b = x1.shape[0]
    t = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64, device=x1.device)
    tt = t.to(x1.dtype).view(1, -1, *([1] * (x1.dim() - 1)))
    grids = []
    per_chunk = max(1, max_points // (steps + 1))
    for i in range(0, b, per_chunk):
        a, c = x1[i : i + per_chunk], x2[i : i + per_chunk]
        points = (1 - tt) * a.unsqueeze(1) + tt * c.unsqueeze(1)  # (chunk, n, *shape)
        flat = points.reshape(-1, *x1.shape[1:])
        rec_bits = []
        for j in range(0, flat.shape[0], max_points):
            recorder.clear()
            run_model(model, flat[j : j + max_points], "x1")
            rec_bits.append(recorder.bits(tie_tol))
        bits = torch.cat(rec_bits).view(a.shape[0], steps + 1, -1)
        grids.append(bits)
    return WalkBatch.from_grid(torch.cat(grids), t, "uniform")
