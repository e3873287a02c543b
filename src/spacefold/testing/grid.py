"""The dense-grid oracle: the walk seen on a fine uniform grid, against which an exact walk is checked.

A grid of ``steps + 1`` equispaced points sees the regions it lands in, in order: a subsequence of
the regions the segment crosses (all of them where every region is longer than 1 / steps). So an
exact walk is right only if the dense walk is a subsequence of it, and equal to it where both
count as many regions (:func:`agrees_with_dense_grid`). The grid shares no code with the exact
walk: one forward pass per point, bits read from the activation modules' outputs.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .._core.folding import walk_batch
from .._core.patterns import LayerSelector
from .._core.walk import WalkBatch, run_starts

__all__ = ["dense_walks", "agrees_with_dense_grid", "is_subsequence", "collapse"]


def collapse(patterns: Tensor) -> Tensor:
    """The rows of ``patterns`` ``(n_points, n_neurons)`` with consecutive repeats merged."""
    return patterns[run_starts(patterns)]


def is_subsequence(short: Tensor, long: Tensor) -> bool:
    """Whether the rows of ``short`` appear, in order, among the rows of ``long`` (both 2-D)."""
    i = 0
    for row in long:
        if i < len(short) and torch.equal(row, short[i]):
            i += 1
    return i == len(short)


def dense_walks(model: nn.Module, x1: Tensor, x2: Tensor, *, steps: int = 4000, tie_tol: float = 0.0,
                layers: LayerSelector = None) -> WalkBatch:
    """The walks of the segments ``x1[i] -> x2[i]`` (``(batch, *input_shape)``) on a uniform grid of
    ``steps + 1`` points (``method="uniform"``), consecutive repeats merged."""
    return walk_batch(model, x1, x2, method="uniform", steps=steps, tie_tol=tie_tol, layers=layers)


def agrees_with_dense_grid(walk: Tensor, dense: Tensor) -> bool:
    """Whether a walk's patterns ``(n_regions, n_neurons)`` pass the dense-grid oracle: the dense
    walk's patterns ``dense`` are a subsequence of them, and equal to them when as many."""
    if dense.shape[0] > walk.shape[0] or not is_subsequence(dense, walk):
        return False
    return dense.shape[0] < walk.shape[0] or torch.equal(dense, walk)
