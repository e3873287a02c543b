"""Samplers that turn segments x1 -> x2 into walks of activation patterns.

Three methods (FOLDING.md §7.4):

- ``"uniform"``: the papers' Algorithm 1, ``steps + 1`` equispaced points.
- ``"bisect"``: adaptive bisection, any activation; refines only where consecutive
  patterns differ, until every transition is located within ``tol`` in t.
- ``"exact"``: every region a segment crosses, exactly once (piecewise-linear
  networks only).

Every method returns a :class:`WalkBatch`: walks stored back to back with
consecutive duplicate patterns merged (Stability makes χ invariant to that).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .. import measure

__all__ = ["Walk", "WalkBatch", "METHODS", "METHOD_TOL", "resolve_tol"]

METHODS = ("exact", "bisect", "uniform")

# ``tol=None`` picks the method's default: bisection locates transitions within
# 1e-6 in t; the exact walk merges only crossings closer than 1e-9 in t (round-off
# of coincident crossings), so that it keeps every region a float32 walk can resolve.
# With a tie tolerance the bits switch at z = tie_tol instead of 0, which spreads
# crossings that coincide at 0 by about tie_tol / slope; the exact default is then 1e-6.
METHOD_TOL = {"exact": 1e-9, "bisect": 1e-6, "uniform": 0.0}
EXACT_TOL_WITH_TIES = 1e-6


def resolve_tol(method: str, tol: float | None, tie_tol: float) -> float | None:
    """The tolerance in t that ``method`` uses when ``tol`` is ``None``."""
    if tol is not None:
        return tol
    if method == "exact" and tie_tol > 0:
        return EXACT_TOL_WITH_TIES
    return METHOD_TOL[method]


def segment_points(x1: Tensor, x2: Tensor, path: Tensor, t: Tensor) -> Tensor:
    """The points (1 − t) x1[path] + t x2[path] of many segments: ``(len(path), *input_shape)``."""
    tt = t.to(x1.dtype).view((-1,) + (1,) * (x1.dim() - 1))
    return (1 - tt) * x1[path] + tt * x2[path]


@dataclass(frozen=True)
class Walk:
    """The walk of one segment.

    ``patterns``: bool ``(n_regions, n_neurons)``, consecutive patterns distinct.
    ``t``: float64 ``(n_regions,)``, where on [0, 1] each region is entered
    (``t[0] == 0``). For ``method="uniform"``, ``grid_index`` maps each of the
    ``steps + 1`` grid points to its region (so ``profile[grid_index]`` is the
    profile at every grid point, as plotted in the papers); else ``None``.
    """

    patterns: Tensor
    t: Tensor
    method: str
    grid_index: Tensor | None = None

    @property
    def n_regions(self) -> int:
        return int(self.patterns.shape[0])

    @property
    def n_neurons(self) -> int:
        return int(self.patterns.shape[1])

    def __len__(self) -> int:
        return self.n_regions


@dataclass(frozen=True)
class WalkBatch:
    """Many walks back to back: walk i is ``patterns[offsets[i]:offsets[i+1]]``."""

    patterns: Tensor  # bool (total_regions, n_neurons)
    t: Tensor  # float64 (total_regions,)
    offsets: Tensor  # int64 (batch + 1,)
    method: str
    grid_index: Tensor | None = None  # int64 (batch, steps + 1), for "uniform"

    def __len__(self) -> int:
        return int(self.offsets.numel() - 1)

    def __getitem__(self, i: int) -> Walk:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"walk index {i} out of range for {n} walks")
        i %= n
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        gi = None if self.grid_index is None else self.grid_index[i]
        return Walk(self.patterns[a:b], self.t[a:b], self.method, gi)

    def walks(self) -> list[Walk]:
        return [self[i] for i in range(len(self))]

    @property
    def n_regions(self) -> Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    def summary(self, columns: slice | None = None) -> dict[str, Tensor]:
        """r1, r2, chi, max_profile, n_points per walk (optionally on a column slice)."""
        pats = self.patterns if columns is None else self.patterns[:, columns]
        return measure.ragged_ranges(pats, self.offsets)

    def select_columns(self, columns: Tensor) -> WalkBatch:
        """The same walks on a subset of the neurons, consecutive duplicates merged."""
        pats = self.patterns[:, columns]
        n = len(self)
        walk_id = torch.repeat_interleave(torch.arange(n, device=pats.device), self.n_regions)
        keep = torch.ones(pats.shape[0], dtype=torch.bool, device=pats.device)
        keep[1:] = (walk_id[1:] != walk_id[:-1]) | (pats[1:] != pats[:-1]).any(-1)
        offsets = torch.zeros(n + 1, dtype=torch.int64, device=pats.device)
        offsets[1:] = torch.cumsum(torch.bincount(walk_id[keep], minlength=n), 0)
        return WalkBatch(pats[keep], self.t[keep], offsets, self.method)

    @staticmethod
    def from_grid(grid: Tensor, t: Tensor, method: str) -> WalkBatch:
        """Merge consecutive duplicates of grid patterns ``(batch, n_points, n_neurons)``."""
        b, n, _ = grid.shape
        keep = torch.ones(b, n, dtype=torch.bool, device=grid.device)
        if n > 1:
            keep[:, 1:] = (grid[:, 1:] != grid[:, :-1]).any(-1)
        counts = keep.sum(1)
        offsets = torch.zeros(b + 1, dtype=torch.int64, device=grid.device)
        offsets[1:] = torch.cumsum(counts, 0)
        grid_index = torch.cumsum(keep.long(), dim=1) - 1
        tt = t.to(torch.float64).expand(b, n)
        return WalkBatch(grid[keep], tt[keep], offsets, method, grid_index)

    @staticmethod
    def concat(batches: list[WalkBatch]) -> WalkBatch:
        if len(batches) == 1:
            return batches[0]
        pats = torch.cat([b.patterns for b in batches])
        t = torch.cat([b.t for b in batches])
        offs = [batches[0].offsets]
        base = batches[0].offsets[-1]
        for b in batches[1:]:
            offs.append(b.offsets[1:] + base)
            base = base + b.offsets[-1]
        gi = None
        if all(b.grid_index is not None for b in batches):
            gi = torch.cat([b.grid_index for b in batches])
        return WalkBatch(pats, t, torch.cat(offs), batches[0].method, gi)
