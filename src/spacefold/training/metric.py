"""Folding accumulated over batches: :class:`FoldingMetric` (a ``torchmetrics.Metric``) and its
functional twin :func:`folding_statistics`.

Both give, for a set of paths, the three numbers :func:`spacefold.global_folding` reports
(docs/method.md, 'The global measure'; arXiv 2502.09954, arXiv 2503.08502)::

    phi             = median of the non-zero χ           (Φ_N; 0 if no path folds)
    phi_max         = median of the non-zero profile maxima (the "median of maxima")
    fraction_folded = share of paths with χ > 0

Exactness with bounded memory
-----------------------------
A median needs the values, not a running mean. But χ = 1 − r1/r2 with integers
0 ≤ r1 ≤ r2, and a profile maximum is 1 − a/b with integers 0 ≤ a ≤ b ≤ r2, so every
value is a fraction with denominator at most R, the largest r2 seen. The metric
keeps an exact *histogram*: the distinct non-zero values and how often each came
(float64 values, int64 counts), merged after every update. The median read off the
histogram is bit for bit the median of the values themselves (the two middle
values of an even count are averaged as ``numpy.median`` does), so the metric
equals :func:`spacefold.global_folding` on the same paths.

Memory bound: at most F(R) distinct values per quantity, where F(R) ≈ 0.304·R² is the
number of fractions in [0, 1] with denominator ≤ R (the Farey sequence), whatever
the number of paths. R = 100 gives at most 3,045 values; R = 1,000 at most
304,193 (16 bytes each); :func:`farey_length` gives F(R). In practice far fewer occur.
Every method of :func:`spacefold.folding_batch` (exact, bisect, uniform) gives values
of this form.

Under DDP the histograms of all processes are gathered (``dist_reduce_fx="cat"``) and
merged in :meth:`FoldingMetric.compute`; the path counts are summed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric

from ..errors import InputError, InputTypeError

if TYPE_CHECKING:
    from .._core.folding import FoldingBatch
    from .._core.global_folding import GlobalFolding

# what the metric takes: the χ of the paths (1-D), or one result holding them
Paths = Union[Tensor, np.ndarray, Sequence[float], "FoldingBatch", "GlobalFolding"]

__all__ = ["FoldingMetric", "folding_statistics", "histogram_median", "farey_length"]


# --------------------------------------------------------------------------- checks


def _as_values(value, name: str) -> Tensor:
    """Fetch χ-like values: a 1-D float tensor in [0, 1] (lists and arrays are converted; an
    integer or boolean tensor is refused: χ is a fraction, and integers there are counts such
    as r1 or the regions passed by mistake)."""
    if not isinstance(value, Tensor):
        try:
            value = torch.as_tensor(np.asarray(value, dtype=np.float64))
        except (TypeError, ValueError):
            raise InputTypeError(
                f"{name} must be a 1-D tensor of folding values in [0, 1], got {type(value).__name__}"
            ) from None
    if not value.is_floating_point():
        raise InputTypeError(
            f"{name} must be a float tensor of folding values in [0, 1] (χ = 1 − r1/r2 is a "
            f"fraction), got dtype {value.dtype}"
        )
    if value.dim() != 1:
        raise InputError(f"{name} must be 1-D (one value per path), got shape {tuple(value.shape)}")
    value = value.detach().to(device="cpu", dtype=torch.float64)
    if value.numel() and not bool(torch.isfinite(value).all()):
        raise InputError(f"{name} holds NaN or inf; expected folding values in [0, 1]")
    if value.numel() and (float(value.min()) < 0.0 or float(value.max()) > 1.0):
        raise InputError(
            f"{name} must hold folding values in [0, 1], got values in [{float(value.min())}, {float(value.max())}]"
        )
    return value


def _check_paths(chi, max_profile) -> tuple[Tensor, Tensor]:
    """χ and profile maxima of the same paths; a FoldingBatch / GlobalFolding gives both."""
    if max_profile is None:
        if hasattr(chi, "chi") and hasattr(chi, "max_profile"):
            chi, max_profile = chi.chi, chi.max_profile
        else:
            raise InputError(
                "max_profile is missing: pass chi and max_profile of the same paths, or one result of "
                f"spacefold.folding_batch / folding_pairs / global_folding; got chi of type {type(chi).__name__}"
            )
    c = _as_values(chi, "chi")
    m = _as_values(max_profile, "max_profile")
    if c.shape != m.shape:
        raise InputError(
            f"chi and max_profile must hold one value per path each, got {c.numel()} and {m.numel()} values"
        )
    # the whole path is one of its prefixes, so its χ is never above its profile maximum
    if c.numel() and bool((m < c - 1e-12).any()):
        k = int(torch.nonzero(m < c - 1e-12)[0, 0])
        raise InputError(
            f"max_profile must be >= chi path by path (the whole path is one of its prefixes), got "
            f"max_profile[{k}] = {float(m[k])} < chi[{k}] = {float(c[k])}"
        )
    return c, m


# --------------------------------------------------------------------------- histograms


def _histogram(values: Tensor) -> tuple[Tensor, Tensor]:
    """Distinct non-zero values (sorted) and their counts."""
    v = values[values > 0]
    if v.numel() == 0:
        return torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.int64)
    u, c = torch.unique(v, sorted=True, return_counts=True)
    return u, c.to(torch.int64)


def _merge(values: Tensor, counts: Tensor) -> tuple[Tensor, Tensor]:
    """Merge histogram entries with equal values (the result is sorted)."""
    if values.numel() == 0:
        return values.to(torch.float64), counts.to(torch.int64)
    u, inv = torch.unique(values, sorted=True, return_inverse=True)
    c = torch.zeros(u.numel(), dtype=torch.int64, device=values.device).index_add_(0, inv, counts.to(torch.int64))
    return u, c


def histogram_median(values: Tensor, counts: Tensor) -> float:
    """The median of the multiset in which ``values[i]`` occurs ``counts[i]`` times, as
    ``numpy.median`` gives it (the mean of the two middle values for an even count); 0.0
    for an empty multiset (the convention of Φ_N when no path folds)."""
    values, counts = _merge(values.detach().cpu().to(torch.float64), counts.detach().cpu())
    n = int(counts.sum()) if counts.numel() else 0
    if n == 0:
        return 0.0
    v = values.numpy()
    cum = np.cumsum(counts.numpy())
    hi = v[int(np.searchsorted(cum, n // 2, side="right"))]  # the element of 0-based rank n // 2
    if n % 2:
        return float(hi)
    lo = v[int(np.searchsorted(cum, n // 2 - 1, side="right"))]  # rank n // 2 - 1
    return float(np.mean(np.array([lo, hi])))


def folding_statistics(chi: Paths, max_profile: Tensor | None = None) -> dict[str, float]:
    """Φ_N, the median of maxima and the share of folded paths of a set of paths: the functional twin of
    ``FoldingMetric``.

    The values equal ``GlobalFolding.phi``, ``.phi_max`` and ``.fraction_folded`` on the same paths
    (docs/method.md, "The global measure").

    Args:
        chi (Tensor | FoldingBatch | GlobalFolding): χ of every path, 1-D float values in [0, 1]
            (a tensor, an array or a sequence); or one result of ``spacefold.folding_batch``,
            ``spacefold.folding_pairs`` or ``spacefold.global_folding``, alone.
        max_profile (Tensor | None): the profile maximum of every path, of the same length as ``chi``;
            needed when ``chi`` is values, not a result.

    Returns:
        dict: ``{"phi", "phi_max", "fraction_folded", "n_paths"}`` (floats, and an int count).

    Raises:
        InputTypeError: values of an integer or bool dtype (χ is a fraction), or of another type.
        InputError: no path, values outside [0, 1] or not finite, ``max_profile`` missing or of another
            length.

    Examples:
        >>> import torch, spacefold as sf
        >>> chi = torch.tensor([0.0, 0.25, 0.5, 0.75])  # Φ_N: the median of the non-zero χ
        >>> sf.folding_statistics(chi, max_profile=torch.tensor([0.0, 0.5, 0.5, 0.8]))
        {'phi': 0.5, 'phi_max': 0.5, 'fraction_folded': 0.75, 'n_paths': 4}
    """
    c, m = _check_paths(chi, max_profile)
    if c.numel() == 0:
        raise InputError("chi must hold at least one path, got none")
    cv, cc = _histogram(c)
    mv, mc = _histogram(m)
    n = int(c.numel())
    return {
        "phi": histogram_median(cv, cc),
        "phi_max": histogram_median(mv, mc),
        "fraction_folded": float(int(cc.sum()) / n) if n else 0.0,
        "n_paths": n,
    }


# --------------------------------------------------------------------------- the metric


class FoldingMetric(Metric):
    """Folding accumulated over batches of paths, as a ``torchmetrics.Metric``: Φ_N, the median of
    maxima and the share of folded paths.

    ``update(chi, max_profile=None)`` takes one batch of paths (the arguments of
    ``folding_statistics``: values, or one result of ``spacefold.folding_batch``);
    ``compute()`` returns ``{"phi", "phi_max", "fraction_folded", "n_paths"}`` as tensors, equal to
    ``folding_statistics`` (and ``global_folding``) on all the paths seen since the last
    ``reset()``, exactly. Memory is an exact histogram of the distinct non-zero values, merged after
    every update: at most ≈ 0.304·R² entries per quantity for paths with r2 ≤ R, whatever the number of
    paths. Under DDP the histograms are gathered from every process and merged; the path counts are
    summed.

    Args:
        **kwargs: the options of ``torchmetrics.Metric`` (``sync_on_compute``, ``dist_sync_fn``, ...).

    Raises:
        InputError: ``compute()`` before any path.
        InputTypeError: ``update`` with values of the wrong kind; values out of range are ``InputError``
            (as in ``folding_statistics``).

    Examples:
        >>> import torch, spacefold as sf
        >>> metric = sf.FoldingMetric()
        >>> metric.update(torch.tensor([0.0, 0.25]), torch.tensor([0.0, 0.5]))  # batch 1
        >>> metric.update(torch.tensor([0.5, 0.75]), torch.tensor([0.5, 0.8]))  # batch 2
        >>> {k: round(float(v), 4) for k, v in metric.compute().items()}
        {'phi': 0.5, 'phi_max': 0.5, 'fraction_folded': 0.75, 'n_paths': 4.0}
        >>> net = sf.mlp("8x8", in_features=2, n_classes=2, seed=0)
        >>> g = torch.Generator().manual_seed(0)
        >>> metric.reset()
        >>> x1, x2 = torch.randn(6, 2, generator=g), torch.randn(6, 2, generator=g)
        >>> metric.update(sf.folding_batch(net, x1, x2, workers=1))  # or one result of folding_batch
        >>> int(metric.compute()["n_paths"])
        6
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    n_paths: Tensor  # a state, registered by add_state

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("n_paths", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("chi_values", default=[], dist_reduce_fx="cat")
        self.add_state("chi_counts", default=[], dist_reduce_fx="cat")
        self.add_state("max_values", default=[], dist_reduce_fx="cat")
        self.add_state("max_counts", default=[], dist_reduce_fx="cat")

    @staticmethod
    def _joined(vals, counts) -> tuple[Tensor, Tensor]:
        if isinstance(vals, Tensor):  # after a DDP sync, list states are concatenated tensors
            return vals.to(torch.float64), counts.to(torch.int64)
        if not vals:
            return torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.int64)
        return torch.cat([v.to(torch.float64) for v in vals]), torch.cat([c.to(torch.int64) for c in counts])

    def _add(self, which: str, values: Tensor) -> None:
        v, c = _histogram(values)
        old_v, old_c = self._joined(getattr(self, f"{which}_values"), getattr(self, f"{which}_counts"))
        dev = self.n_paths.device
        mv, mc = _merge(torch.cat([old_v.cpu(), v]), torch.cat([old_c.cpu(), c]))
        setattr(self, f"{which}_values", [mv.to(dev)])
        setattr(self, f"{which}_counts", [mc.to(dev)])

    def update(self, chi: Paths, max_profile: Tensor | None = None) -> None:  # noqa: D102 - documented on the class
        c, m = _check_paths(chi, max_profile)
        if c.numel() == 0:
            return
        self._add("chi", c)
        self._add("max", m)
        self.n_paths += int(c.numel())

    def compute(self) -> dict[str, Tensor]:  # noqa: D102
        n = int(self.n_paths)
        if n == 0:
            raise InputError("FoldingMetric.compute() needs at least one path: call update(...) first")
        cv, cc = self._joined(self.chi_values, self.chi_counts)
        mv, mc = self._joined(self.max_values, self.max_counts)
        folded = int(cc.sum()) if cc.numel() else 0
        return {
            "phi": torch.tensor(histogram_median(cv, cc), dtype=torch.float64),
            "phi_max": torch.tensor(histogram_median(mv, mc), dtype=torch.float64),
            "fraction_folded": torch.tensor(folded / n, dtype=torch.float64),
            "n_paths": torch.tensor(n, dtype=torch.int64),
        }

    @property
    def n_distinct(self) -> int:
        """Histogram entries held now (χ and maxima together): the memory in use."""
        return int(
            self._joined(self.chi_values, self.chi_counts)[0].numel()
            + self._joined(self.max_values, self.max_counts)[0].numel()
        )


def farey_length(r: int) -> int:
    """Number of fractions a/b in [0, 1] with 1 ≤ b ≤ r: the histogram bound for paths with r2 ≤ r."""
    if r < 1:
        return 1
    phi = list(range(r + 1))
    for p in range(2, r + 1):
        if phi[p] == p:
            for k in range(p, r + 1, p):
                phi[k] -= phi[k] // p
    return 1 + sum(phi[1:])
