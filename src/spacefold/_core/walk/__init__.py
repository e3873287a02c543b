"""Samplers that turn segments x1 -> x2 into walks of activation patterns.

Four methods (docs/method.md, 'Walks: three samplers', and 'The certified walk'):

- ``"uniform"``: the papers' Algorithm 1, ``steps + 1`` equispaced points.
- ``"bisect"``: adaptive bisection, any activation; refines only where consecutive
  patterns differ, until every transition is located within ``tol`` in t.
- ``"exact"``: every region a segment crosses, exactly once (piecewise-linear
  networks only).
- ``"certified"``: every change of every bit, proved with enclosures, for networks whose
  bit quantities are smooth or piecewise smooth in t (GELU, SiLU, tanh, LayerNorm,
  attention, ...; :mod:`spacefold._core.walk.certified`).

Which walks are complete: ``exact`` and ``certified`` (``WalkBatch.completeness()``: True per
path unless a certified path ran out of its interval budget); ``bisect`` and ``uniform`` are not
guaranteed to be (False).

Every method returns a :class:`WalkBatch`: walks stored back to back with
consecutive duplicate patterns merged (Stability makes χ invariant to that).

The public ``spacefold.walk(model, x1, x2, method="exact")``, which walks one segment, is
the function :func:`spacefold._core.folding.walk`; this package holds the samplers behind it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..._util import check_size
from ...errors import InputError

__all__ = [
    "Walk",
    "WalkBatch",
    "METHODS",
    "METHOD_TOL",
    "resolve_tol",
    "run_starts",
    "memory_budget",
    "DEFAULT_MEMORY",
    "points_per_pass",
    "check_certified_tol",
]

METHODS = ("exact", "bisect", "uniform", "certified")

# ``tol=None`` picks the method's default: bisection locates transitions within
# 1e-6 in t; the exact walk merges only crossings closer than 1e-9 in t (round-off
# of coincident crossings), so that it keeps every region a float32 walk can resolve.
# With a tie tolerance the bits switch at z = tie_tol instead of 0, which spreads
# crossings that coincide at 0 by about tie_tol / slope; the exact default is then 1e-6.
METHOD_TOL = {"exact": 1e-9, "bisect": 1e-6, "uniform": 0.0, "certified": 1e-6}
EXACT_TOL_WITH_TIES = 1e-6


def resolve_tol(method: str, tol: float | None, tie_tol: float) -> float:
    """The tolerance in t that ``method`` uses when ``tol`` is ``None``."""
    if tol is not None:
        return tol
    if method == "exact" and tie_tol > 0:
        return EXACT_TOL_WITH_TIES
    return METHOD_TOL[method]


def check_certified_tol(tol: float) -> float:
    """``tol`` of the certified walk: a number in (0, 1), the width in t within which it locates
    every crossing (0 would ask for exact positions, which bisection never reaches; 1 or more for
    nothing, which a complete walk cannot be)."""
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0.0 < float(tol) < 1.0:
        raise InputError(
            f"tol must be a number in (0, 1) for method='certified' (the width in t within which it "
            f"locates each crossing; the other methods take any finite tol >= 0), got {tol!r}"
        )
    return float(tol)


DEFAULT_MEMORY = 1 << 30  # bytes of walks in flight, all worker processes together (SPACEFOLD_MEMORY overrides)


def memory_budget() -> int:
    """Bytes of walks in flight per process: ``SPACEFOLD_MEMORY`` (an int, bytes) when set,
    else :data:`DEFAULT_MEMORY`."""
    text = os.environ.get("SPACEFOLD_MEMORY")
    if text is None:
        return DEFAULT_MEMORY
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise InputError(f"SPACEFOLD_MEMORY must be a positive number of bytes, got {text!r}")
    check_size("SPACEFOLD_MEMORY", value, value, "the walks in flight")
    return value


MIN_PASS_POINTS = 1024  # points of one forward pass, at least and at most
MAX_PASS_POINTS = 1 << 20


def points_per_pass(n_inputs: int, n_neurons: int, itemsize: int, memory: int | None = None) -> int:
    """Points of many segments evaluated in one forward pass by the sampling walks (``bisect``,
    ``uniform``, the certified walk's patterns): half the memory budget (:func:`memory_budget`)
    over an estimate of one point's memory, its input and eight values per activation bit
    (the pre-activation, the output, the layers around them), between :data:`MIN_PASS_POINTS`
    and :data:`MAX_PASS_POINTS`. The walks do not depend on it: a point's pattern is the same
    whatever points share its pass."""
    per = max(1, itemsize * (n_inputs + 8 * max(n_neurons, 1)))
    return int(min(MAX_PASS_POINTS, max(MIN_PASS_POINTS, (memory or memory_budget()) // 2 // per)))


def segment_points(x1: Tensor, x2: Tensor, path: Tensor, t: Tensor) -> Tensor:
    """The points (1 − t) x1[path] + t x2[path] of many segments: ``(len(path), *input_shape)``."""
    tt = t.to(x1.dtype).view((-1,) + (1,) * (x1.dim() - 1))
    return (1 - tt) * x1[path] + tt * x2[path]


def run_starts(patterns: Tensor, walk_id: Tensor | None = None) -> Tensor:
    """Bool mask of the rows that begin a run of equal consecutive patterns.

    ``patterns`` is ``(n_rows, n_neurons)``: one walk, or many stored back to back with
    ``walk_id`` giving each row's walk (the first row of every walk begins a run). The
    one place where walks drop repeated patterns (Stability: no measure changes).
    """
    keep = torch.ones(patterns.shape[0], dtype=torch.bool, device=patterns.device)
    if patterns.shape[0] > 1:
        keep[1:] = (patterns[1:] != patterns[:-1]).any(-1)
        if walk_id is not None:
            keep[1:] |= walk_id[1:] != walk_id[:-1]
    return keep


def _positive_lengths(t: Tensor, walk_id: Tensor, offsets: Tensor) -> Tensor:
    """Whether each region (entered at ``t``, of walk ``walk_id``; walk i's regions are
    ``offsets[i]:offsets[i + 1]``) has positive length: its successor's t, or 1 for the last, is larger."""
    t_end = torch.ones_like(t)
    if t.numel() > 1:
        t_end[:-1] = t[1:]
    last = offsets[1:] - 1
    last = last[offsets[1:] > offsets[:-1]]
    t_end[last] = 1.0
    return t_end > t


@dataclass(frozen=True)
class Walk:
    """The walk of one segment: the activation patterns of the regions it crosses, in order, and where
    each region is entered.

    End points: the walk takes the patterns at t = 0 and t = 1 themselves (the papers' grid includes
    both), so a segment that starts or ends exactly on a boundary (a pre-activation 0 there: bit 0, and
    > 0 just inside) counts a region of zero length there (``t[1] == 0``, or ``t[-1] == 1``).
    ``n_regions`` then exceeds the number of regions the open segment crosses by one or two;
    ``n_pieces`` counts only the regions of positive length.

    Attributes:
        patterns (Tensor): bool ``(n_regions, n_neurons)``, consecutive patterns distinct.
        t (Tensor): float64 ``(n_regions,)``, where on [0, 1] each region is entered (``t[0] == 0``).
        method (str): the walk method that found it (``"exact"``, ``"bisect"``, ``"uniform"``,
            ``"certified"``).
        grid_index (Tensor | None): for ``method="uniform"``, int64 ``(steps + 1,)``: the region of each
            grid point (so ``profile[grid_index]`` is the profile at every grid point, as plotted in the
            papers); else ``None``.
        complete (bool): whether the walk provably holds every change of every bit (``"exact"``, and
            ``"certified"`` within its budget); False for the samplers.

    Examples:
        >>> import torch, spacefold as sf
        >>> net = torch.nn.Sequential(torch.nn.Linear(1, 2), torch.nn.ReLU())
        >>> with torch.no_grad():
        ...     _ = net[0].weight.copy_(torch.tensor([[1.0], [-1.0]])), net[0].bias.zero_()
        >>> w = sf.walk(net, torch.tensor([-1.0]), torch.tensor([1.0]))  # z = (x, -x): one kink at x = 0
        >>> w.patterns.int().tolist(), w.t.tolist()
        ([[0, 1], [1, 0]], [0.0, 0.5])
        >>> w.n_regions, w.n_neurons, w.complete
        (2, 2, True)
    """

    patterns: Tensor
    t: Tensor
    method: str
    grid_index: Tensor | None = None
    complete: bool = False  # every change of every bit found (exact, certified), see WalkBatch.completeness

    @property
    def n_regions(self) -> int:
        """The regions of the walk, end points included (``patterns.shape[0]``)."""
        return int(self.patterns.shape[0])

    @property
    def n_pieces(self) -> int:
        """The regions of positive length along the segment: ``n_regions`` without the regions of zero
        length at t = 0 and t = 1 (a segment starting or ending on a boundary). For networks whose only
        kinks are at the bit threshold (ReLU, LeakyReLU, PReLU), the number of linear pieces of the
        network along the segment (a Hardtanh or ReLU6 also bends where no bit changes). Exact for
        ``method="exact"``; the samplers enter a region at the sample where they first see it, so a
        region of zero length at t = 0 gets a grid step (``"uniform"``) or up to ``tol`` (``"bisect"``)."""
        return int(
            _positive_lengths(
                self.t,
                torch.zeros(len(self.t), dtype=torch.int64, device=self.t.device),
                torch.tensor([0, len(self.t)], device=self.t.device),
            ).sum()
        )

    @property
    def n_neurons(self) -> int:
        """The bits of a pattern (``patterns.shape[1]``)."""
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
    complete: Tensor | None = None  # bool (batch,), set by "certified"; see completeness()

    def __len__(self) -> int:
        return int(self.offsets.numel() - 1)

    def __getitem__(self, i: int) -> Walk:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"walk index {i} out of range for {n} walks")
        i %= n
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        gi = None if self.grid_index is None else self.grid_index[i]
        return Walk(self.patterns[a:b], self.t[a:b], self.method, gi, bool(self.completeness()[i]))

    def completeness(self) -> Tensor:
        """Bool ``(batch,)``: whether each walk provably holds every change of every bit.
        ``exact``: True; ``certified``: True unless the path ran out of its interval budget;
        ``bisect`` and ``uniform``: False (not guaranteed)."""
        if self.complete is not None:
            return self.complete
        return torch.full((len(self),), self.method == "exact", dtype=torch.bool)

    def walks(self) -> list[Walk]:
        return [self[i] for i in range(len(self))]

    @property
    def n_regions(self) -> Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    @property
    def n_pieces(self) -> Tensor:
        """Per walk, the regions of positive length (see :attr:`Walk.n_pieces`)."""
        n = len(self)
        walk_id = torch.repeat_interleave(torch.arange(n, device=self.t.device), self.n_regions.to(self.t.device))
        pos = _positive_lengths(self.t, walk_id, self.offsets.to(self.t.device))
        return torch.zeros(n, dtype=torch.int64, device=self.t.device).index_add_(0, walk_id, pos.long())

    def select_columns(self, columns: Tensor) -> WalkBatch:
        """The same walks on a subset of the neurons, consecutive duplicates merged."""
        n = len(self)
        walk_id = torch.repeat_interleave(torch.arange(n, device=self.patterns.device), self.n_regions)
        out = WalkBatch.from_rows(self.patterns[:, columns], self.t, walk_id, n, self.method)
        return out if self.complete is None else dataclasses.replace(out, complete=self.complete)

    @staticmethod
    def from_rows(patterns: Tensor, t: Tensor, walk_id: Tensor, n_walks: int, method: str) -> WalkBatch:
        """Walks from sampled points ``patterns`` ``(n_rows, n_neurons)`` at ``t``, the rows of
        walk i (``walk_id == i``, every walk non-empty) contiguous and in order of t;
        consecutive duplicates merged."""
        keep = run_starts(patterns, walk_id)
        offsets = torch.zeros(n_walks + 1, dtype=torch.int64, device=patterns.device)
        offsets[1:] = torch.cumsum(torch.bincount(walk_id[keep], minlength=n_walks), 0)
        return WalkBatch(patterns[keep], t[keep], offsets, method)

    @staticmethod
    def from_grid(grid: Tensor, t: Tensor, method: str) -> WalkBatch:
        """Merge consecutive duplicates of grid patterns ``(batch, n_points, n_neurons)``."""
        b, n, k = grid.shape
        rows = grid.reshape(b * n, k)
        keep = run_starts(rows, torch.arange(b, device=grid.device).repeat_interleave(n))
        counts = keep.view(b, n).sum(1)
        offsets = torch.zeros(b + 1, dtype=torch.int64, device=grid.device)
        offsets[1:] = torch.cumsum(counts, 0)
        grid_index = torch.cumsum(keep.view(b, n).long(), dim=1) - 1
        return WalkBatch(rows[keep], t.to(torch.float64).repeat(b)[keep], offsets, method, grid_index)

    @staticmethod
    def concat(batches: Sequence[WalkBatch]) -> WalkBatch:
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
            gi = torch.cat([b.grid_index for b in batches])  # type: ignore[misc]
        comp = None
        if any(b.complete is not None for b in batches):
            comp = torch.cat([b.completeness() for b in batches])
        return WalkBatch(pats, t, torch.cat(offs), batches[0].method, gi, comp)
