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
    """The rows of a sequence of patterns with consecutive repeats merged: a dense grid's samples as a walk.

    Args:
        patterns (Tensor): ``(n_points, n_neurons)``, any dtype.

    Returns:
        Tensor: ``(n_regions, n_neurons)``, the first row of every run of equal rows.

    Examples:
        >>> import torch
        >>> from spacefold.testing import collapse
        >>> collapse(torch.tensor([[0, 1], [0, 1], [1, 1], [0, 1]])).tolist()
        [[0, 1], [1, 1], [0, 1]]
    """
    return patterns[run_starts(patterns)]


def is_subsequence(short: Tensor, long: Tensor) -> bool:
    """Whether the rows of ``short`` appear, in order, among the rows of ``long`` (not necessarily next to
    each other).

    Args:
        short (Tensor): ``(n_short, n_neurons)``.
        long (Tensor): ``(n_long, n_neurons)``.

    Returns:
        bool: True when every row of ``short`` is found in ``long`` after the previous one.

    Examples:
        >>> import torch
        >>> from spacefold.testing import is_subsequence
        >>> long = torch.tensor([[1], [2], [3]])
        >>> is_subsequence(torch.tensor([[1], [3]]), long), is_subsequence(torch.tensor([[3], [1]]), long)
        (True, False)
    """
    i = 0
    for row in long:
        if i < len(short) and torch.equal(row, short[i]):
            i += 1
    return i == len(short)


def dense_walks(
    model: nn.Module, x1: Tensor, x2: Tensor, *, steps: int = 4000, tie_tol: float = 0.0, layers: LayerSelector = None
) -> WalkBatch:
    """The walks of the segments ``x1[i] -> x2[i]`` on a dense uniform grid (``method="uniform"``), with
    consecutive repeats merged: the regions a grid sees, a subsequence of those an exact walk crosses
    (all of them when the grid hits every region).

    Args:
        model (nn.Module): any PyTorch model.
        x1 (Tensor): the starts, ``(batch, *input_shape)``.
        x2 (Tensor): the ends, of the same shape.
        steps (int): ``steps + 1`` equispaced points per segment.
        tie_tol (float): a neuron is on where its pre-activation exceeds ``tie_tol``.
        layers (str | type | list | None): which activations give bits.

    Returns:
        WalkBatch: one walk per segment (``walks[i].patterns``, ``(n_regions, n_neurons)``).

    Raises:
        InputTypeError: ``model`` or the inputs of the wrong type.
        InputError: inputs of different or wrong shapes, or a walk option out of range.

    Examples:
        >>> import torch, spacefold as sf
        >>> from spacefold.testing import dense_walks
        >>> net = sf.cantornet(2)
        >>> x1, x2 = torch.tensor([[0.0, 0.75]], dtype=torch.float64), torch.tensor([[1.0, 0.75]], dtype=torch.float64)
        >>> dense_walks(net, x1, x2, steps=200, tie_tol=net.tie_tol)[0].patterns.shape
        torch.Size([11, 11])
    """
    return walk_batch(model, x1, x2, method="uniform", steps=steps, tie_tol=tie_tol, layers=layers)


def agrees_with_dense_grid(walk: Tensor, dense: Tensor) -> bool:
    """The dense-grid oracle: whether a walk's patterns contain the dense walk's patterns as a
    subsequence, and equal them when they are as many.

    Args:
        walk (Tensor): the patterns of the walk to check, ``(n_regions, n_neurons)``.
        dense (Tensor): the patterns of the dense walk of the same segment, ``(n_dense, n_neurons)``
            (from ``dense_walks``).

    Returns:
        bool: True when the walk passes.

    Examples:
        >>> import torch, spacefold as sf
        >>> from spacefold.testing import agrees_with_dense_grid, dense_walks
        >>> net = sf.cantornet(2)
        >>> x1, x2 = torch.tensor([[0.0, 0.75]], dtype=torch.float64), torch.tensor([[1.0, 0.75]], dtype=torch.float64)
        >>> dense = dense_walks(net, x1, x2, steps=200, tie_tol=net.tie_tol)[0].patterns
        >>> exact = sf.walk(net, x1[0], x2[0], tie_tol=net.tie_tol).patterns
        >>> agrees_with_dense_grid(exact, dense), agrees_with_dense_grid(exact[::2], dense)  # half the regions lost
        (True, False)
    """
    if dense.shape[0] > walk.shape[0] or not is_subsequence(dense, walk):
        return False
    return dense.shape[0] < walk.shape[0] or torch.equal(dense, walk)
