"""Measures on binary walks: r1, r2, chi, the prefix profile, interaction, bounds.

Pure functions, no model and no hooks. A *walk* is a bool tensor of activation
patterns, ``(n_points, n_neurons)`` for one walk or ``(batch, n_points, n_neurons)``
for a batch. Every function accepts both; a single walk gives Python numbers (or a
1-D tensor for per-point quantities), a batch gives tensors with a leading batch
dimension.

Walks of different lengths are batched by repeating each walk's last pattern up to
the common length (:func:`pad_walks`). By the Stability property (docs/method.md, 'The folding measure')
repeated patterns change none of r1, r2, chi, the final profile value or the
profile maximum, so padding is exact for every measure here except
:func:`chi_profile` itself (whose padded tail repeats the last value) and
:func:`interaction` at split points inside the padding.

Definitions (docs/method.md, 'The folding measure')::

    r1(Γ)  = max_i d_H(π_1, π_i)
    r2(Γ)  = Σ_i d_H(π_i, π_{i+1})
    χ(Γ)   = 1 − r1 / r2          (0 when r2 = 0)
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import InputError, InputTypeError
from .walk import run_starts

__all__ = [
    "as_walk_batch",
    "pad_walks",
    "merge_repeats",
    "distance_to_start",
    "step_distances",
    "ranges",
    "chi",
    "chi_profile",
    "max_profile",
    "interaction",
    "interactions",
    "reverse",
    "symmetric_chi",
    "chi_bounds",
    "refine",
    "chi_from_ranges",
    "prefix_ranges",
    "ragged_ranges",
    "summarize",
    "WalkSummary",
]


@dataclass(frozen=True)
class WalkSummary:
    """The per-walk measures of a batch of walks, each a tensor ``(batch,)``.

    ``r1``, ``r2`` (int64), ``chi`` and ``max_profile`` (float64, the maximum of the
    prefix profile) and ``n_regions`` (int64). Fields can also be read as
    ``summary["chi"]``.
    """

    r1: Tensor
    r2: Tensor
    chi: Tensor
    max_profile: Tensor
    n_regions: Tensor

    FIELDS = ("r1", "r2", "chi", "max_profile", "n_regions")

    def __len__(self) -> int:
        return int(self.chi.numel())

    def __getitem__(self, key: str) -> Tensor:
        if key == "n_points":
            warnings.warn('the summary key "n_points" is now "n_regions"', DeprecationWarning, stacklevel=2)
            key = "n_regions"
        if key not in self.FIELDS:
            raise KeyError(key)
        return getattr(self, key)

    def keys(self) -> tuple[str, ...]:
        return self.FIELDS

    @staticmethod
    def concat(parts: Sequence[WalkSummary]) -> WalkSummary:
        """The summaries of consecutive batches of walks as one."""
        if len(parts) == 1:
            return parts[0]
        return WalkSummary(**{k: torch.cat([getattr(p, k) for p in parts]) for k in WalkSummary.FIELDS})


def as_walk_batch(walk: Tensor, name: str = "walk") -> tuple[Tensor, bool]:
    """Return ``(walks, single)``: a bool ``(batch, n_points, n_neurons)`` view.

    Accepts bool or 0/1 integer/float tensors, 2-D (one walk) or 3-D (a batch).
    """
    if not isinstance(walk, Tensor):
        raise InputTypeError(f"{name} must be a torch.Tensor of 0/1 patterns, got {type(walk).__name__}")
    if walk.dim() not in (2, 3):
        raise InputError(
            f"{name} must have shape (n_points, n_neurons) or (batch, n_points, n_neurons), "
            f"got shape {tuple(walk.shape)}"
        )
    if walk.shape[-2] < 1:
        raise InputError(f"{name} must hold at least one pattern, got shape {tuple(walk.shape)}")
    if walk.dtype != torch.bool:
        if walk.is_floating_point() and not torch.isfinite(walk).all():
            raise InputError(f"{name} holds NaN or inf; expected 0/1 patterns")
        if ((walk != 0) & (walk != 1)).any():
            raise InputError(f"{name} must hold only 0 and 1, got other values")
        walk = walk != 0
    single = walk.dim() == 2
    return (walk.unsqueeze(0) if single else walk), single


def pad_walks(walks: Sequence[Tensor]) -> Tensor:
    """Stack walks of different lengths into ``(batch, n_max, n_neurons)``.

    Each walk is padded by repeating its last pattern, which leaves r1, r2, chi and
    the profile maximum unchanged (Stability).
    """
    if isinstance(walks, Tensor) or not isinstance(walks, Sequence):
        raise InputTypeError(f"walks must be a sequence of walks (n_points, n_neurons), got {type(walks).__name__}")
    if len(walks) == 0:
        raise InputError("walks must hold at least one walk, got an empty sequence")
    checked: list[Tensor] = []
    for i, w in enumerate(walks):
        wb, single = as_walk_batch(w, f"walks[{i}]")
        if not single:
            raise InputError(f"walks[{i}] must have shape (n_points, n_neurons), got shape {tuple(w.shape)}")
        if checked and wb.shape[2] != checked[0].shape[1]:
            raise InputError(
                f"walks must all have the same n_neurons, got {checked[0].shape[1]} for walks[0] "
                f"and {wb.shape[2]} for walks[{i}]"
            )
        checked.append(wb[0])
    walks = checked
    n_max = max(w.shape[0] for w in walks)
    out = []
    for w in walks:
        if w.shape[0] < n_max:
            w = torch.cat([w, w[-1:].expand(n_max - w.shape[0], -1)], dim=0)
        out.append(w)
    return torch.stack(out)


def merge_repeats(walk: Tensor) -> tuple[Tensor, Tensor]:
    """Drop consecutive duplicate patterns of one walk ``(n_points, n_neurons)``.

    Returns ``(patterns, keep)`` where ``keep`` is the bool mask of retained points
    (the first point of every run of equal patterns).
    """
    keep = run_starts(walk)
    return walk[keep], keep


def distance_to_start(walk: Tensor) -> Tensor:
    """d_H(π_1, π_i) for every point: ``(n_points,)`` or ``(batch, n_points)``, int64."""
    w, single = as_walk_batch(walk)
    d = (w ^ w[:, :1]).sum(-1)
    return d[0] if single else d


def step_distances(walk: Tensor) -> Tensor:
    """d_H(π_i, π_{i+1}) for every step: ``(n_points - 1,)`` or ``(batch, n_points - 1)``."""
    w, single = as_walk_batch(walk)
    d = (w[:, 1:] ^ w[:, :-1]).sum(-1)
    return d[0] if single else d


def _segmented_cumsum(values: Tensor, walk_id: Tensor, first: Tensor) -> Tensor:
    """Running sums of ``values`` within each walk (rows stored walk by walk, inclusive)."""
    csum = torch.cumsum(values, dim=0)
    base = first.index_select(0, walk_id)
    return csum - (csum.index_select(0, base) - values.index_select(0, base))


def _running(to_start: Tensor, steps: Tensor, walk_id: Tensor, first: Tensor, n_neurons: int):
    """Running r1 and r2 of every prefix of many walks stored back to back.

    The one computation behind every running measure of this module (the prefix profile,
    its maximum, and the summaries of walk batches, dense or flips). Row k of walk
    ``walk_id[k]`` (rows of a walk contiguous, ``first[i]`` the first row of walk i) has
    ``to_start[k]`` = d_H(π_1, π_k) and ``steps[k]`` = the Hamming distance travelled into
    it (0 at the first row of a walk, or the flips at t = 0 of a flip walk). Returns
    int64 ``(run_r1, run_r2)``, one value per row.
    """
    # Running max within each walk: shift walk i by i * (n_neurons + 1) so that a
    # global cummax never carries a value across a walk boundary.
    shift = walk_id * (n_neurons + 1)
    run_r1 = torch.cummax(to_start + shift, dim=0).values - shift
    return run_r1, _segmented_cumsum(steps, walk_id, first)


def _summary_of_rows(
    to_start: Tensor,
    steps: Tensor,
    walk_id: Tensor,
    first: Tensor,
    last: Tensor,
    n_neurons: int,
    n_regions: Tensor | None = None,
) -> WalkSummary:
    """:class:`WalkSummary` of walks stored as rows (see :func:`_running`); ``n_regions``
    defaults to 1 + the number of rows entered with a non-zero step."""
    run_r1, run_r2 = _running(to_start, steps, walk_id, first, n_neurons)
    b = first.numel()
    device = to_start.device
    max_prof = torch.zeros(b, dtype=torch.float64, device=device)
    max_prof.scatter_reduce_(0, walk_id, chi_from_ranges(run_r1, run_r2), reduce="amax", include_self=True)
    if n_regions is None:
        n_regions = torch.ones(b, dtype=torch.int64, device=device).index_add_(0, walk_id, (steps > 0).long())
    r1, r2 = run_r1.index_select(0, last), run_r2.index_select(0, last)
    return WalkSummary(r1=r1, r2=r2, chi=chi_from_ranges(r1, r2), max_profile=max_prof, n_regions=n_regions)


def _cumulative(w: Tensor) -> tuple[Tensor, Tensor]:
    """Running r1 and r2 of every prefix, ``(batch, n_points)`` each (int64)."""
    b, n, k = w.shape
    to_start = (w ^ w[:, :1]).sum(-1)
    steps = torch.zeros_like(to_start)
    steps[:, 1:] = (w[:, 1:] ^ w[:, :-1]).sum(-1)
    walk_id = torch.arange(b, device=w.device).repeat_interleave(n)
    first = torch.arange(b, device=w.device) * n
    r1, r2 = _running(to_start.reshape(-1), steps.reshape(-1), walk_id, first, k)
    return r1.view(b, n), r2.view(b, n)


def prefix_ranges(walk: Tensor) -> tuple[Tensor, Tensor]:
    """r1 and r2 of every prefix (π_1, ..., π_{j+1}): int64 ``(n_points,)`` each, or
    ``(batch, n_points)`` for a batch. The last entries are :func:`ranges`."""
    w, single = as_walk_batch(walk)
    r1, r2 = _cumulative(w)
    return (r1[0], r2[0]) if single else (r1, r2)


def chi_from_ranges(r1: Tensor, r2: Tensor) -> Tensor:
    """χ = 1 − r1/r2 elementwise, 0 where r2 = 0 (docs/method.md, 'The folding measure'); float64."""
    r1 = r1.to(torch.float64)
    r2 = r2.to(torch.float64)
    safe = torch.where(r2 > 0, r2, torch.ones_like(r2))
    return torch.where(r2 > 0, 1.0 - r1 / safe, torch.zeros_like(r2))


def ranges(walk: Tensor) -> tuple[int, int] | tuple[Tensor, Tensor]:
    """The two ranges of a walk: r1, the largest Hamming distance from its first pattern, and r2, the
    total Hamming distance travelled (docs/method.md, "The folding measure").

    Args:
        walk (Tensor): the patterns of one walk, ``(n_points, n_neurons)``, or of a batch of walks of
            one length, ``(batch, n_points, n_neurons)``; bool, or integers/floats holding only 0 and 1.

    Returns:
        tuple[int, int] | tuple[Tensor, Tensor]: ``(r1, r2)``, two ints for one walk; two int64 tensors
        ``(batch,)`` for a batch.

    Raises:
        InputTypeError: ``walk`` is not a tensor.
        InputError: ``walk`` is not 2-D or 3-D, holds no pattern, or holds values other than 0 and 1.

    Examples:
        >>> import torch, spacefold as sf
        >>> w = torch.tensor([[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]])
        >>> sf.ranges(w)
        (2, 4)
    """
    w, single = as_walk_batch(walk)
    r1, r2 = _batch_ranges(w)
    if single:
        return int(r1[0]), int(r2[0])
    return r1, r2


def _batch_ranges(w: Tensor) -> tuple[Tensor, Tensor]:
    """``(r1, r2)`` of a batch of walks ``(batch, n_points, n_neurons)``: int64 tensors ``(batch,)``."""
    r1 = (w ^ w[:, :1]).sum(-1).amax(dim=1)
    r2 = (w[:, 1:] ^ w[:, :-1]).sum(dim=(-1, -2)) if w.shape[1] > 1 else torch.zeros_like(r1)
    return r1, r2


def chi(walk: Tensor) -> float | Tensor:
    """The space folding measure χ = 1 − r1/r2 of a walk, 0 when r2 = 0 (docs/method.md, "The folding
    measure").

    χ is 0 for a walk that only moves away from its first pattern and approaches 1 for a walk that
    travels far but never gets far from where it began.

    Args:
        walk (Tensor): the patterns of one walk, ``(n_points, n_neurons)``, or of a batch of walks of
            one length, ``(batch, n_points, n_neurons)``; bool or 0/1 values.

    Returns:
        float | Tensor: χ in [0, 1), a float for one walk, a float64 tensor ``(batch,)`` for a batch.

    Raises:
        InputTypeError: ``walk`` is not a tensor.
        InputError: ``walk`` is not 2-D or 3-D, holds no pattern, or holds values other than 0 and 1.

    Examples:
        >>> import torch, spacefold as sf
        >>> w = torch.tensor([[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]])  # out two steps, back two
        >>> sf.chi(w)
        0.5
        >>> flat = torch.tensor([[0, 0], [1, 0], [1, 1], [1, 1], [1, 1]])  # out, and no way back
    >>> sf.chi(torch.stack([w, flat]))  # a batch of two walks of 5 patterns
        tensor([0.5000, 0.0000], dtype=torch.float64)
    """
    w, single = as_walk_batch(walk)
    r1, r2 = _batch_ranges(w)
    c = chi_from_ranges(r1, r2)
    return float(c[0]) if single else c


def chi_profile(walk: Tensor) -> Tensor:
    """χ of every prefix of a walk (docs/method.md, "The folding measure").

    Entry j is χ of the prefix (π_1, ..., π_{j+1}); entry 0 (a single pattern) is 0 and the last
    entry equals ``chi``.

    Args:
        walk (Tensor): the patterns of one walk, ``(n_points, n_neurons)``, or of a batch of walks of
            one length, ``(batch, n_points, n_neurons)``; bool or 0/1 values.

    Returns:
        Tensor: float64, ``(n_points,)`` for one walk, ``(batch, n_points)`` for a batch.

    Raises:
        InputTypeError: ``walk`` is not a tensor.
        InputError: ``walk`` is not 2-D or 3-D, holds no pattern, or holds values other than 0 and 1.

    Examples:
        >>> import torch, spacefold as sf
        >>> w = torch.tensor([[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]])
        >>> sf.chi_profile(w)
        tensor([0.0000, 0.0000, 0.0000, 0.3333, 0.5000], dtype=torch.float64)
    """
    w, single = as_walk_batch(walk)
    r1, r2 = _cumulative(w)
    p = chi_from_ranges(r1, r2)
    return p[0] if single else p


def max_profile(walk: Tensor):
    """max_j χ_j of the prefix profile (the per-path value behind P2's "median of maxima")."""
    w, single = as_walk_batch(walk)
    m = chi_profile(w).amax(dim=1)
    return float(m[0]) if single else m


def _chi_rows(w: Tensor) -> Tensor:
    r1, r2 = _batch_ranges(w)
    return chi_from_ranges(r1, r2)


def interaction(walk: Tensor, k: int | Tensor, signed: bool = False) -> float | Tensor:
    """The interaction coefficient I(k) = |χ(Γ1 ⊕ Γ2) − χ(Γ1) − χ(Γ2)| of a walk split at pattern k
    (docs/method.md, "The folding measure").

    Γ1 = walk[:k+1] and Γ2 = walk[k:] share the pattern at index k.

    Args:
        walk (Tensor): the patterns of one walk, ``(n_points, n_neurons)``, or of a batch of walks of
            one length, ``(batch, n_points, n_neurons)``; bool or 0/1 values.
        k (int | Tensor): the 0-based index of the shared pattern, in [0, n_points − 1]: an int (the
            same split for every walk of a batch) or an integer tensor ``(batch,)``.
        signed (bool): return the value without the absolute value (positive: super-additive,
            negative: sub-additive).

    Returns:
        float | Tensor: I(k), a float for one walk, a float64 tensor ``(batch,)`` for a batch.

    Raises:
        InputTypeError: ``walk`` is not a tensor, or ``k`` is not an integer or an integer tensor.
        InputError: ``walk`` is malformed (see ``chi``), ``k`` lies outside [0, n_points − 1], or
            the tensor ``k`` is not of shape ``(batch,)``.

    Examples:
        >>> import torch, spacefold as sf
        >>> w = torch.tensor([[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]])
        >>> sf.chi(w[:3]), sf.chi(w[2:]), sf.chi(w)  # neither half folds, the whole does
        (0.0, 0.0, 0.5)
        >>> sf.interaction(w, 2)
        0.5
    """
    w, single = as_walk_batch(walk)
    value = _interaction(w, k, signed)
    return float(value[0]) if single else value


def _interaction(w: Tensor, k: int | Tensor, signed: bool) -> Tensor:
    """I(k) of a batch of walks ``w`` ``(batch, n_points, n_neurons)`` (see :func:`interaction`)."""
    b, n, _ = w.shape
    if isinstance(k, bool):
        raise InputTypeError(f"k must be an integer index (0-based index of the shared point), got {k!r}")
    try:
        ks = torch.as_tensor(k, device=w.device)
    except (TypeError, ValueError, RuntimeError):
        raise InputTypeError(f"k must be an int or an int tensor of shape ({b},), got {type(k).__name__}") from None
    if ks.is_floating_point() or ks.is_complex() or ks.dtype == torch.bool:
        raise InputTypeError(f"k must be an integer index (0-based index of the shared point), got dtype {ks.dtype}")
    ks = ks.expand(b) if ks.dim() == 0 else ks
    if ks.shape != (b,):
        raise InputError(f"k must be an int or a tensor of shape ({b},), got shape {tuple(ks.shape)}")
    if (ks < 0).any() or (ks >= n).any():
        raise InputError(f"k must lie in [0, {n - 1}] (0-based index of the shared point), got {ks.tolist()}")
    idx = torch.arange(n, device=w.device)
    # Γ1: points 0..k, padded by repeating π_k (stability); Γ2: points k..n-1,
    # shifted to the front and padded by repeating π_n.
    first_idx = torch.minimum(idx.unsqueeze(0), ks.unsqueeze(1))
    second_idx = torch.clamp(idx.unsqueeze(0) + ks.unsqueeze(1), max=n - 1)
    gather = lambda ix: torch.gather(w, 1, ix.unsqueeze(-1).expand(-1, -1, w.shape[2]))  # noqa: E731
    whole = _chi_rows(w)
    value = whole - _chi_rows(gather(first_idx)) - _chi_rows(gather(second_idx))
    if not signed:
        value = value.abs()
    return value


def interactions(walk: Tensor, signed: bool = False) -> Tensor:
    """I(k) for every split k = 0..n-1: ``(n_points,)`` or ``(batch, n_points)``."""
    w, single = as_walk_batch(walk)
    b, n, _ = w.shape
    out = torch.stack([_interaction(w, k, signed) for k in range(n)], dim=1)
    return out[0] if single else out


def reverse(walk: Tensor) -> Tensor:
    """The reversed walk −Γ = (π_n, ..., π_1)."""
    w, single = as_walk_batch(walk)
    r = torch.flip(w, dims=[1])
    return r[0] if single else r


def symmetric_chi(walk: Tensor) -> float | Tensor:
    """The symmetrised measure d_χ = ½ (χ(Γ) + χ(−Γ)), where −Γ is the walk reversed (docs/method.md,
    "The folding measure").

    Args:
        walk (Tensor): the patterns of one walk, ``(n_points, n_neurons)``, or of a batch of walks of
            one length, ``(batch, n_points, n_neurons)``; bool or 0/1 values.

    Returns:
        float | Tensor: d_χ, a float for one walk, a float64 tensor ``(batch,)`` for a batch.

    Raises:
        InputTypeError: ``walk`` is not a tensor.
        InputError: ``walk`` is not 2-D or 3-D, holds no pattern, or holds values other than 0 and 1.

    Examples:
        >>> import torch, spacefold as sf
        >>> w = torch.tensor([[0, 0, 0], [1, 1, 1], [1, 1, 0]])
        >>> sf.chi(w), sf.chi(w.flip(0))  # χ depends on the direction
        (0.25, 0.5)
        >>> sf.symmetric_chi(w)
        0.375
    """
    w, single = as_walk_batch(walk)
    d = 0.5 * (_chi_rows(w) + _chi_rows(torch.flip(w, dims=[1])))
    return float(d[0]) if single else d


def chi_bounds(walk: Tensor) -> tuple[float, float, float] | tuple[Tensor, Tensor, Tensor]:
    """Deterministic bounds on χ from the length L = r2 of a walk and the distance D = d_H(π_1, π_n)
    between its ends (docs/method.md, "The folding measure").

    Args:
        walk (Tensor): the patterns of one walk, ``(n_points, n_neurons)``, or of a batch of walks of
            one length, ``(batch, n_points, n_neurons)``; bool or 0/1 values.

    Returns:
        tuple[float, float, float] | tuple[Tensor, Tensor, Tensor]: ``(lower, upper, reversal)`` with
        ``lower = ½(1 − D/L)``, ``upper = 1 − D/L`` and ``reversal = D/L`` (a bound on |χ(Γ) − χ(−Γ)|);
        all three are 0 when L = 0. Floats for one walk, float64 tensors ``(batch,)`` for a batch.

    Raises:
        InputTypeError: ``walk`` is not a tensor.
        InputError: ``walk`` is not 2-D or 3-D, holds no pattern, or holds values other than 0 and 1.

    Examples:
        >>> import torch, spacefold as sf
        >>> w = torch.tensor([[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]])  # a closed walk: D = 0
        >>> sf.chi_bounds(w)
        (0.5, 1.0, 0.0)
        >>> lower, upper, _ = sf.chi_bounds(w)
        >>> lower <= sf.chi(w) <= upper
        True
    """
    w, single = as_walk_batch(walk)
    _, r2 = _batch_ranges(w)
    d = (w[:, -1] ^ w[:, 0]).sum(-1)
    ratio = torch.where(r2 > 0, d.double() / torch.clamp(r2, min=1).double(), torch.zeros_like(r2, dtype=torch.float64))
    zero = r2 == 0
    upper = torch.where(zero, torch.zeros_like(ratio), 1.0 - ratio)
    lower = 0.5 * upper
    rev = ratio
    if single:
        return float(lower[0]), float(upper[0]), float(rev[0])
    return lower, upper, rev


def refine(walk: Tensor) -> Tensor:
    """Motzkin–Straus refinement of one walk into single-bit flips (docs/method.md, 'The folding measure').

    Each jump π_i → π_{i+1} is split into single flips: first the coordinates whose
    flip brings the pattern back towards π_1, then those that move it away. The
    refined walk has the same r1 and r2 as the original.
    """
    w, single = as_walk_batch(walk)
    if not single:
        raise InputError(f"refine takes one walk (n_points, n_neurons), got shape {tuple(walk.shape)}")
    w = w[0]
    start = w[0]
    out = [w[0]]
    cur = w[0].clone()
    for i in range(w.shape[0] - 1):
        nxt = w[i + 1]
        changed = cur != nxt
        towards = changed & (cur != start)
        away = changed & (cur == start)
        for mask in (towards, away):
            for j in torch.nonzero(mask).flatten().tolist():
                cur = cur.clone()
                cur[j] = ~cur[j]
                out.append(cur)
    return torch.stack(out)


def ragged_ranges(patterns: Tensor, offsets: Tensor) -> dict[str, Tensor]:
    """r1, r2, χ, profile maximum and length of many walks stored back to back.

    ``patterns`` is bool ``(total_points, n_neurons)`` holding walk i in rows
    ``offsets[i]:offsets[i+1]`` (``offsets`` int64 ``(batch + 1,)``, every walk
    non-empty). Fully vectorised: no Python loop over walks. Returns a dict of
    ``(batch,)`` tensors ``r1``, ``r2`` (int64), ``chi``, ``max_profile``
    (float64) and ``n_points`` (int64, the rows of each walk, repeated patterns
    included). :func:`summarize` gives the same measures of a walk batch.
    """
    if not isinstance(patterns, Tensor) or patterns.dtype != torch.bool or patterns.dim() != 2:
        raise InputTypeError(
            "patterns must be a bool tensor (total_points, n_neurons), got "
            + (
                f"{patterns.dtype} of shape {tuple(patterns.shape)}"
                if isinstance(patterns, Tensor)
                else type(patterns).__name__
            )
        )
    if not isinstance(offsets, Tensor) or offsets.dim() != 1 or offsets.is_floating_point() or offsets.numel() < 1:
        raise InputTypeError(f"offsets must be a 1-D int tensor (batch + 1,), got {offsets!r}")
    offsets = offsets.to(device=patterns.device, dtype=torch.int64)
    if int(offsets[0]) != 0 or int(offsets[-1]) != patterns.shape[0]:
        raise InputError(
            f"offsets must run from 0 to the number of rows of patterns ({patterns.shape[0]}), "
            f"got {int(offsets[0])} .. {int(offsets[-1])}"
        )
    counts = offsets[1:] - offsets[:-1]
    if (counts < 1).any():
        raise InputError("every walk must hold at least one pattern")
    s = _dense_summary(patterns, offsets, n_regions=counts)
    return {"r1": s.r1, "r2": s.r2, "chi": s.chi, "max_profile": s.max_profile, "n_points": s.n_regions}


def _dense_summary(patterns: Tensor, offsets: Tensor, n_regions: Tensor | None = None) -> WalkSummary:
    """Summary of walks stored as patterns back to back (``offsets`` as in :func:`ragged_ranges`)."""
    device = patterns.device
    counts = offsets[1:] - offsets[:-1]
    b = counts.numel()
    walk_id = torch.repeat_interleave(torch.arange(b, device=device), counts)
    first = offsets[:-1]
    to_start = (patterns ^ patterns.index_select(0, first.index_select(0, walk_id))).sum(-1)
    steps = torch.zeros_like(to_start)
    if patterns.shape[0] > 1:
        steps[1:] = (patterns[1:] ^ patterns[:-1]).sum(-1)
    steps[first[counts > 0]] = 0  # the first point of a walk has no incoming step
    return _summary_of_rows(to_start, steps, walk_id, first, offsets[1:] - 1, patterns.shape[1], n_regions)


def _flip_summary(walks, columns: slice | None) -> WalkSummary:
    """Summary of walks stored as flips (see ``spacefold._core.walk.exact.ExactWalkBatch``):
    per breakpoint the number of bits that flip (the step) and the change of the
    distance to the start (+1 per flip away from the pattern at t = 0, -1 per flip back)."""
    at, sign = walks.flip_at, walks.flip_sign
    n_neurons = walks.n_neurons
    if columns is not None:
        lo, hi, step = columns.indices(walks.n_neurons)
        if step != 1:
            raise InputError(f"columns must be a contiguous slice, got {columns!r}")
        keep = (walks.flip_neuron >= lo) & (walks.flip_neuron < hi)
        at, sign = at[keep], sign[keep]
        n_neurons = max(hi - lo, 0)
    n_rows = walks.t_sorted.numel()
    steps = torch.zeros(n_rows, dtype=torch.int64, device=at.device).index_add_(0, at, torch.ones_like(at))
    moved = torch.zeros(n_rows, dtype=torch.int64, device=at.device).index_add_(0, at, sign)
    walk_id, first = walks.path_sorted, walks.first
    return _summary_of_rows(_segmented_cumsum(moved, walk_id, first), steps, walk_id, first, walks.last, n_neurons)


def summarize(walks, columns: slice | None = None) -> WalkSummary:
    """r1, r2, χ, profile maximum and number of regions of every walk of a walk batch.

    ``walks`` is what the walk methods return (:class:`spacefold._core.walk.WalkBatch`,
    patterns stored back to back, or the exact walk's flips: then the measures come
    from the flips alone, without building the patterns). ``columns`` restricts the
    walks to some neurons (a slice, e.g. one layer's ``PatternLayout`` slice); the
    regions counted are then those of the restricted walk.
    """
    if getattr(walks, "flip_at", None) is not None:
        return _flip_summary(walks, columns)
    patterns, offsets = walks.patterns, walks.offsets
    if columns is None:
        return _dense_summary(patterns, offsets, n_regions=offsets[1:] - offsets[:-1])
    return _dense_summary(patterns[:, columns], offsets)
