"""Global folding over a data set: Φ_N, the P2 "median of maxima", per class pair tables,
per-layer folding and bootstrap confidence intervals (docs/method.md, 'The global measure').

``global_folding`` walks the segments chosen by :mod:`spacefold._core.pairs` through the
pipeline of :func:`spacefold.folding_pairs` (pairs streamed in chunks, everything before
the first activation evaluated once per sample) and keeps one χ, one profile maximum
and the two class labels per path; every aggregate is computed from those.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from .._util import check_choice, check_int, check_size
from ..errors import InputError, InputTypeError, MissingExtraError
from . import parallel
from .folding import DEFAULT_STEPS, DEFAULT_TOL, WalkOptions, _check_samples, _fold, _Segments
from .pairs import PairPlan, class_centroids, iter_chunks, kept_plan
from .patterns import LayerSelector

if TYPE_CHECKING:
    import pandas


def check_n_boot(n_boot, n_stats: int = 5, n_paths: int = 0) -> int:
    """Validate ``n_boot`` (an int >= 1) and that its draws, ``n_stats`` floats per resample,
    and a resample of ``n_paths`` fit in memory (:func:`spacefold._util.check_size`)."""
    check_int(n_boot, "n_boot", 1)
    check_size("n_boot", n_boot, 8 * n_boot * n_stats + 24 * n_paths, f"the draws of {n_boot} bootstrap resamples")
    return n_boot


__all__ = ["global_folding", "GlobalFolding", "PAIR_CHOICES", "median_nonzero"]

PAIR_CHOICES = ("inter-class", "all", "random", "centroids")
DEFAULT_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def median_nonzero(values) -> float:
    """Median of the values > 0 (the mean of the two middle ones for an even count); 0.0 if none."""
    v = np.asarray(values.cpu() if isinstance(values, Tensor) else values, dtype=np.float64)
    v = v[v > 0]  # (a copy: the median may reorder it)
    return float(np.median(v, overwrite_input=True)) if v.size else 0.0


# paths from which the class pair table is computed on several threads
_THREADED_ROWS = 1 << 20


def _side_by_side(jobs: Sequence[Callable[[], Any]], threaded: bool) -> list:
    """The results of ``jobs``, in order: on every core's thread when ``threaded`` (numpy's selections and
    reductions release the GIL), else one after the other."""
    threads = min(parallel.cpu_count(), len(jobs)) if threaded else 1
    if threads <= 1:
        return [job() for job in jobs]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda job: job(), jobs))


def _in_order(values: Tensor, order: np.ndarray | None) -> np.ndarray:
    """``values`` as a numpy array, permuted by ``order`` (as they are when ``None``)."""
    v = values.cpu().numpy()
    return v if order is None else v[order]


def _median_of(rows: list[dict], key: str) -> float:
    """The median of ``key`` over the class pair rows (0.0 without rows)."""
    return float(np.median([r[key] for r in rows])) if rows else 0.0


def _fraction(values: np.ndarray) -> float:
    return float((values > 0).mean()) if values.size else 0.0


@dataclass(frozen=True)
class GlobalFolding:
    """The folding of many paths over a data set, as ``spacefold.global_folding`` returns it; one
    entry per path in every tensor.

    Aggregates: ``phi`` (Φ_N, the median of the non-zero χ, 0 if none), ``phi_max`` (the median
    of the non-zero profile maxima), ``phi_max_p2`` (the aggregation of arXiv 2502.09954: per ordered
    class pair the median of the non-zero maxima, then the median of those pair medians),
    ``fraction_folded``, ``mean``, ``quantiles``, ``class_pairs``,
    ``per_layer_summary``, ``bootstrap``; ``summary`` and ``to_dict`` hold them as JSON,
    ``to_pandas`` one row per path.

    Attributes:
        chi (Tensor): float64 ``(n_paths,)``, χ of every path.
        max_profile (Tensor): float64 ``(n_paths,)``, the maximum of every path's prefix profile.
        r1 (Tensor): int64 ``(n_paths,)``, the largest Hamming distance from the first pattern.
        r2 (Tensor): int64 ``(n_paths,)``, the total Hamming distance travelled.
        n_regions (Tensor): int64 ``(n_paths,)``, the regions of every walk.
        label_a (Tensor): int64 ``(n_paths,)``, the class of the start of every path (-1 for random pairs).
        label_b (Tensor): int64 ``(n_paths,)``, the class of its end.
        method (str): the walk method.
        pairs (str): the pair mode (``"inter-class"``, ``"all"``, ``"random"``, ``"centroids"``).
        seed (int): the seed the pairs were drawn with.
        steps (int | None): the grid of ``method="uniform"``.
        n_clusters (int | None): centroids per class for ``pairs="centroids"``.
        per_layer (dict[str, Tensor] | None): layer name -> χ ``(n_paths,)`` of that layer's bits alone
            (with ``per_layer=True``).
        info (dict): with the exact walk, ``n_float64`` and ``n_unresolved`` (see
            ``spacefold.FoldingBatch``); with the certified walk, ``n_incomplete`` (paths not proved
            complete within the interval budget); ``n_complete``, the paths whose walk is guaranteed
            to hold every region (every path of an exact walk, none of ``bisect`` or ``uniform``); also
            in ``to_dict``.

    Examples:
        >>> import torch, spacefold as sf
        >>> net = sf.mlp("8x8", in_features=2, n_classes=2, seed=0)
        >>> x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
        >>> r = sf.global_folding(net, x, [0, 1] * 4, workers=1)
        >>> r.n_paths, r.chi.shape, sorted(r.bootstrap(n_boot=50))[:2]
        (32, torch.Size([32]), ['fraction_folded', 'mean'])
        >>> 0 <= r.fraction_folded <= 1 and r.summary()["n_paths"] == 32
        True
    """

    chi: Tensor
    max_profile: Tensor
    r1: Tensor
    r2: Tensor
    n_regions: Tensor
    label_a: Tensor
    label_b: Tensor
    method: str
    pairs: str
    seed: int
    steps: int | None = None
    n_clusters: int | None = None
    per_layer: dict[str, Tensor] | None = None
    info: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ scalars
    @property
    def n_paths(self) -> int:
        """The paths walked (``chi.numel()``)."""
        return int(self.chi.numel())

    @property
    def phi(self) -> float:
        """Φ_N: median of the non-zero χ (0.0 when no path folds)."""
        return median_nonzero(self.chi)

    @property
    def phi_max(self) -> float:
        """Median of the non-zero profile maxima over all paths (0.0 if none)."""
        return median_nonzero(self.max_profile)

    @property
    def fraction_folded(self) -> float:
        """Share of paths with χ > 0."""
        return _fraction(self.chi.cpu().numpy())

    @property
    def mean(self) -> float:
        """The mean χ over all paths, zeros included (0.0 without paths)."""
        return float(self.chi.double().mean()) if self.n_paths else 0.0

    @property
    def mean_regions(self) -> float:
        """The mean number of regions per path (0.0 without paths)."""
        return float(self.n_regions.double().mean()) if self.n_paths else 0.0

    def quantiles(self, q: Sequence[float] = DEFAULT_QUANTILES) -> dict[str, float]:
        """Quantiles of χ over all paths (zeros included).

        Args:
            q (Sequence[float]): the quantile levels, in [0, 1] (default 0.05, 0.25, 0.5, 0.75, 0.95).

        Returns:
            dict[str, float]: ``{"q05": ..., "q25": ..., ...}``, one entry per level (its percentage).
        """
        v = self.chi.cpu().numpy()
        levels = [float(p) for p in q]
        values = np.quantile(v, levels) if levels else []  # one selection for every level
        return {f"q{round(100 * p):02d}": float(x) for p, x in zip(levels, values)}

    def subset(self, mask: Tensor | np.ndarray) -> GlobalFolding:
        """The paths where ``mask`` is true, as a new result.

        Args:
            mask (Tensor | np.ndarray): bool ``(n_paths,)``.

        Returns:
            GlobalFolding: the selected paths, with every aggregate computed on them.

        Raises:
            InputError: ``mask`` has not ``n_paths`` entries, or selects no path.
        """
        mask = torch.as_tensor(mask, dtype=torch.bool).cpu().reshape(-1)
        if mask.numel() != self.n_paths:
            raise InputError(f"mask must have {self.n_paths} entries, got {mask.numel()}")
        if not bool(mask.any()):
            raise InputError("mask selects no path")
        pick = {
            k: getattr(self, k)[mask] for k in ("chi", "max_profile", "r1", "r2", "n_regions", "label_a", "label_b")
        }
        pl = {k: v[mask] for k, v in self.per_layer.items()} if self.per_layer else None
        return GlobalFolding(
            **pick,
            method=self.method,
            pairs=self.pairs,
            seed=self.seed,
            steps=self.steps,
            n_clusters=self.n_clusters,
            per_layer=pl,
            info=dict(self.info),
        )

    def inter_class(self) -> GlobalFolding:
        """Only the paths between samples of different classes (the paths of Φ_N)."""
        r = self.subset(self.label_a != self.label_b)
        return GlobalFolding(**{**r.__dict__, "pairs": "inter-class"})

    # ------------------------------------------------------------------ class pairs
    def _groups(self) -> tuple[np.ndarray | None, list[tuple[int, int]], np.ndarray]:
        """Order of paths grouped by (label_a, label_b) (``None`` where they already are, as a pair plan orders
        them), the group keys, group boundaries."""
        a = self.label_a.cpu().numpy()
        b = self.label_b.cpu().numpy()
        m = int(max(b.max(initial=0), 0)) + 2
        small = min(int(a.min(initial=0)), int(b.min(initial=0))) >= -1 and (int(a.max(initial=0)) + 2) * m < 1 << 16
        # in int32 where the keys fit 16 bits (a stable sort of 16-bit keys is a radix sort: linear in the paths)
        key: np.ndarray[Any, np.dtype[np.integer]] = a.astype(np.int32 if small else np.int64)
        key += 1
        key *= m
        key += b
        key += 1
        if small:
            key = key.astype(np.uint16)
        order = None if key.size < 2 or bool((key[1:] >= key[:-1]).all()) else np.argsort(key, kind="stable")
        ks = key if order is None else key[order]
        starts = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]]) if ks.size else np.zeros(0, dtype=np.int64)
        bounds = np.r_[starts, ks.size]
        first = starts if order is None else order[starts]
        keys = [(int(a[s]), int(b[s])) for s in first]
        return order, keys, bounds

    def class_pairs(self) -> list[dict]:
        """One row per ordered class pair (a, b): n_paths, phi, phi_max, max_max_profile
        (the largest profile maximum of the pair's paths), fraction_folded, mean_chi,
        mean_regions."""
        order, keys, bounds = self._groups()
        chi, mp, nr = (_in_order(t, order) for t in (self.chi, self.max_profile, self.n_regions))

        def row(k: int) -> dict:
            (a, b), s, e = keys[k], bounds[k], bounds[k + 1]
            c = chi[s:e]
            return {
                "a": a,
                "b": b,
                "n_paths": int(e - s),
                "phi": median_nonzero(c),
                "phi_max": median_nonzero(mp[s:e]),
                "max_max_profile": float(mp[s:e].max()),
                "fraction_folded": _fraction(c),
                "mean_chi": float(c.mean()),
                "mean_regions": float(nr[s:e].mean()),
            }

        return _side_by_side([functools.partial(row, k) for k in range(len(keys))], chi.size >= _THREADED_ROWS)

    @property
    def phi_max_p2(self) -> float:
        """P2 aggregation (docs/method.md, 'The global measure'): the median over ordered class pairs of
        each pair's median of non-zero profile maxima (a pair with none counts 0)."""
        return _median_of(self.class_pairs(), "phi_max")

    @property
    def phi_maxmax_p2(self) -> float:
        """The alternative reading of P2's "median of maxima" (docs/method.md, 'The global measure'):
        the median over ordered class pairs of each pair's largest profile maximum."""
        return _median_of(self.class_pairs(), "max_max_profile")

    # ------------------------------------------------------------------ layers
    def per_layer_summary(self) -> list[dict]:
        """Per hidden layer (its bits alone): phi, fraction_folded, mean_chi."""
        if not self.per_layer:
            return []
        out = []
        for name, c in self.per_layer.items():
            v = c.cpu().numpy()
            out.append(
                {
                    "layer": name,
                    "phi": median_nonzero(v),
                    "fraction_folded": _fraction(v),
                    "mean_chi": float(v.mean()) if v.size else 0.0,
                }
            )
        return out

    # ------------------------------------------------------------------ uncertainty
    def bootstrap(
        self,
        n_boot: int = 1000,
        level: float = 0.95,
        seed: int = 0,
        stats: Sequence[str] = ("phi", "phi_max", "phi_max_p2", "fraction_folded", "mean"),
    ) -> dict:
        """Percentile bootstrap confidence intervals of the aggregates.

        Paths are resampled with replacement within each ordered class pair (a stratified bootstrap: every
        class pair keeps its number of paths), with ``seed``. The intervals describe the sampling of pairs
        for this one model.

        Args:
            n_boot (int): bootstrap resamples.
            level (float): the confidence level, in (0, 1).
            seed (int): the seed of the resampling.
            stats (Sequence[str]): which aggregates: ``"phi"``, ``"phi_max"``, ``"phi_max_p2"``,
                ``"fraction_folded"``, ``"mean"``.

        Returns:
            dict[str, tuple[float, float]]: ``{stat: (low, high)}``.

        Raises:
            InputError: an unknown stat, ``level`` outside (0, 1), or a count out of range.
        """
        check_n_boot(n_boot, len(stats), self.chi.numel())
        check_int(seed, "seed", 0)
        if not 0.0 < level < 1.0:
            raise InputError(f"level must be in (0, 1), got {level}")
        for s in stats:
            check_choice(s, "stats", ("phi", "phi_max", "phi_max_p2", "fraction_folded", "mean"))
        order, _, bounds = self._groups()
        chi, mp = _in_order(self.chi, order), _in_order(self.max_profile, order)
        sizes = np.diff(bounds)
        start_of = np.repeat(bounds[:-1], sizes)
        size_of = np.repeat(sizes, sizes)
        rng = np.random.default_rng(seed)
        draws = {s: np.empty(n_boot) for s in stats}
        for k in range(n_boot):
            idx = start_of + (rng.random(chi.size) * size_of).astype(np.int64)
            c, m = chi[idx], mp[idx]
            if "phi" in draws:
                draws["phi"][k] = median_nonzero(c)
            if "phi_max" in draws:
                draws["phi_max"][k] = median_nonzero(m)
            if "fraction_folded" in draws:
                draws["fraction_folded"][k] = _fraction(c)
            if "mean" in draws:
                draws["mean"][k] = c.mean()
            if "phi_max_p2" in draws:
                # idx stays inside its group, so the group slices of m are the resampled groups
                draws["phi_max_p2"][k] = np.median([median_nonzero(m[s:e]) for s, e in zip(bounds[:-1], bounds[1:])])
        lo, hi = (1 - level) / 2, 1 - (1 - level) / 2
        return {s: (float(np.quantile(d, lo)), float(np.quantile(d, hi))) for s, d in draws.items()}

    # ------------------------------------------------------------------ export
    def summary(self, *, ci: bool = False, n_boot: int = 1000, ci_seed: int = 0) -> dict:
        """The scalars as a JSON-ready dict: Φ_N and the other aggregates, quantiles, counts, the settings and
        the timing of the run.

        Args:
            ci (bool): add bootstrap intervals (``"ci95"``, see ``bootstrap``).
            n_boot (int): bootstrap resamples, with ``ci``.
            ci_seed (int): the seed of the resampling, with ``ci``.

        Returns:
            dict: ``phi``, ``phi_max``, ``phi_max_p2``, ``fraction_folded``, ``mean_chi``, ``quantiles``,
            ``n_paths`` and more.
        """
        return self._summary(self.class_pairs(), ci=ci, n_boot=n_boot, ci_seed=ci_seed)

    def _summary(self, rows: list[dict], *, ci: bool, n_boot: int, ci_seed: int) -> dict:
        """``summary`` from the class pair table ``rows`` (``class_pairs()``, computed once)."""
        phi, phi_max, quantiles = _side_by_side(
            (lambda: self.phi, lambda: self.phi_max, self.quantiles), self.n_paths >= _THREADED_ROWS
        )
        out = {
            "phi": phi,
            "phi_max": phi_max,
            "phi_max_p2": _median_of(rows, "phi_max"),
            "phi_maxmax_p2": _median_of(rows, "max_max_profile"),
            "fraction_folded": self.fraction_folded,
            "mean_chi": self.mean,
            "std_chi": float(self.chi.double().std()) if self.n_paths > 1 else 0.0,
            "quantiles": quantiles,
            "mean_regions": self.mean_regions,
            "n_paths": self.n_paths,
            "n_folded": int((self.chi > 0).sum()),
            "method": self.method,
            "pairs": self.pairs,
            "seed": self.seed,
        }
        if self.method == "uniform":
            out["steps"] = self.steps
        if self.n_clusters is not None:
            out["n_clusters"] = self.n_clusters
        out.update(self.info)
        if ci:
            out["ci95"] = {k: list(v) for k, v in self.bootstrap(n_boot=n_boot, seed=ci_seed).items()}
            out["n_boot"] = n_boot
        return out

    def to_pandas(self) -> pandas.DataFrame:
        """One row per path: label_a, label_b, chi, max_profile, r1, r2, n_regions (and
        ``chi_<layer>`` with ``per_layer=True``) as a pandas DataFrame (pandas is optional)."""
        try:
            import pandas as pd
        except ImportError:
            raise MissingExtraError("to_pandas needs pandas: pip install 'spacefold[pandas]'") from None
        keys = ("label_a", "label_b", "chi", "max_profile", "r1", "r2", "n_regions")
        cols = {k: getattr(self, k).numpy() for k in keys}
        cols.update({f"chi_{k}": v.numpy() for k, v in (self.per_layer or {}).items()})
        return pd.DataFrame(cols)

    def to_dict(self, *, ci: bool = False, n_boot: int = 1000, ci_seed: int = 0) -> dict:
        """``summary`` plus the per class pair table (``"class_pairs"``) and per-layer folding.

        Args:
            ci (bool): add bootstrap intervals, as in ``summary``.
            n_boot (int): bootstrap resamples, with ``ci``.
            ci_seed (int): the seed of the resampling, with ``ci``.

        Returns:
            dict: JSON-ready.
        """
        rows = self.class_pairs()
        d = self._summary(rows, ci=ci, n_boot=n_boot, ci_seed=ci_seed)
        d["class_pairs"] = rows
        if self.per_layer:
            d["per_layer"] = self.per_layer_summary()
        return d


def global_folding(
    model: nn.Module,
    x: Tensor,
    y: Tensor | Sequence[int],
    pairs: str | PairPlan = "inter-class",
    max_pairs: int | None = None,
    seed: int = 0,
    *,
    method: str = "exact",
    n_clusters: int = 10,
    classes: Sequence[int] | None = None,
    steps: int = DEFAULT_STEPS,
    tol: float | None = DEFAULT_TOL,
    tie_tol: float = 0.0,
    layers: LayerSelector = None,
    batch_size: int | None = None,
    dtype: torch.dtype | None = None,
    per_layer: bool = False,
    progress: bool = False,
    workers: int | None = None,
) -> GlobalFolding:
    """The global folding Φ_N of a model over a data set: the folding of many paths between samples,
    and its aggregates (docs/method.md, "The global measure").

    Under ``torchrun`` (``WORLD_SIZE > 1``) the ranks share the pairs in contiguous shards (each rank
    with its own ``workers``), every rank receives every path's results and returns the same result
    as a single process, bit for bit. With ``method="exact"`` everything before the first activation
    is evaluated once per sample, not once per path.

    Args:
        model (nn.Module): any PyTorch model (as in ``folding_batch``).
        x (Tensor): the samples, ``(n_samples, *input_shape)``.
        y (Tensor | Sequence[int]): their integer class labels, ``(n_samples,)``.
        pairs (str | PairPlan): which paths: ``"inter-class"`` (every ordered pair of samples of
            distinct classes; Φ_N as in arXiv 2503.08502), ``"all"`` (ordered class pairs with the same
            class included, the MNIST protocol of arXiv 2502.09954), ``"random"`` (``max_pairs`` random
            pairs of distinct samples), ``"centroids"`` (inter-class pairs of ``n_clusters`` k-means
            centroids per class; needs scikit-learn), or a ``spacefold._core.pairs.PairPlan`` indexing ``x``.
        max_pairs (int | None): at most this many paths, spread evenly over the class pairs and drawn at
            random with ``seed``; ``None`` walks every pair.
        seed (int): the seed of every random choice (the pairs drawn, the k-means centroids).
        method (str): the walk method, as in ``folding_batch``.
        n_clusters (int): for ``pairs="centroids"``: centroids per class.
        classes (Sequence[int] | None): restrict the paths to these classes (default: every class in ``y``).
        steps (int): for ``method="uniform"``: ``steps + 1`` points per path.
        tol (float | None): the walk's tolerance in t, as in ``folding_batch``.
        tie_tol (float): a neuron is on where its pre-activation exceeds ``tie_tol`` (>= 0).
        layers (str | type | list | None): which activations give bits, as in ``folding_batch``.
        batch_size (int | None): paths per chunk (``None``: from the memory budget).
        dtype (torch.dtype | None): evaluate a copy of the model in this dtype.
        per_layer (bool): also χ of each layer's bits alone.
        progress (bool): show a progress bar (paths/s and the time left; with tqdm installed).
        workers (int | None): worker processes sharing the pairs in contiguous ranges (``None``: one per
            core, ``1``: in this process); the numbers are the same for any count.

    Returns:
        GlobalFolding: χ of every path ``(n_paths,)`` with its aggregates (``phi``, ``phi_max``,
        ``fraction_folded``, the per class pair table, bootstrap intervals).

    Raises:
        InputTypeError: ``x`` is not a tensor, ``y`` not integer labels, or the model not an ``nn.Module``.
        InputError: ``y`` does not match ``x``, an unknown ``pairs`` mode, a class of ``classes`` with
            no sample, a negative ``seed``, or a walk option out of range (as in ``folding_batch``).
        NotPiecewiseLinearError: ``method="exact"`` on a model that is not piecewise linear.

    Examples:
        >>> import torch, spacefold as sf
        >>> net = sf.mlp("8x8", in_features=2, n_classes=3, seed=0)
        >>> x = torch.randn(12, 2, generator=torch.Generator().manual_seed(0))
        >>> y = torch.tensor([0, 1, 2] * 4)
        >>> r = sf.global_folding(net, x, y, workers=1)  # 6 ordered class pairs x 4 x 4 samples
        >>> r.n_paths, len(r.class_pairs())
        (96, 6)
        >>> import numpy as np
        >>> r.phi == float(np.median(r.chi[r.chi > 0].numpy()))  # Φ_N: the median of the non-zero χ
        True
        >>> sf.global_folding(net, x, y, max_pairs=12, seed=1, workers=1).n_paths  # 2 paths per class pair
        12
    """
    if not isinstance(x, Tensor):
        raise InputTypeError(f"x must be a torch.Tensor (n_samples, *input_shape), got {type(x).__name__}")
    _check_samples(x)
    opts = WalkOptions.check(
        method=method,
        steps=steps,
        tol=tol,
        tie_tol=tie_tol,
        layers=layers,
        n0=None,
        stop="strict",
        batch_size=batch_size,
        dtype=dtype,
    )
    parallel.resolve_workers(workers)  # checked before any work
    if not isinstance(y, Tensor):
        try:
            y = torch.as_tensor(y)
        except Exception:
            raise InputTypeError(f"y must be a tensor of integer labels, got {type(y).__name__}") from None
    if y.dim() != 1 or y.numel() != x.shape[0]:
        raise InputError(f"y must have shape ({x.shape[0]},) to match x, got {tuple(y.shape)}")
    check_int(seed, "seed", 0)
    n_cl = None
    if isinstance(pairs, PairPlan):
        plan = pairs
        mode = plan.mode
        for blk in plan.blocks:
            for idx in (blk.starts, blk.ends):
                if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= x.shape[0]):
                    raise InputError(
                        f"pairs must index rows of x in [0, {x.shape[0] - 1}], got a plan with "
                        f"indices from {int(idx.min())} to {int(idx.max())}"
                    )
    else:
        check_choice(pairs, "pairs", PAIR_CHOICES)
        mode = pairs
        if pairs == "centroids":
            check_int(n_clusters, "n_clusters", 1)
            x, y = class_centroids(x, y, n_clusters, seed=seed, classes=classes)
            n_cl = n_clusters
            plan = kept_plan(y, "inter-class", max_pairs=max_pairs, seed=seed)
        else:
            plan = kept_plan(y, pairs, max_pairs=max_pairs, seed=seed, classes=classes)
    n = len(plan)
    if n == 0:
        raise InputError("no pair to walk: the pair plan is empty")
    device = next((p.device for p in model.parameters()), None) if isinstance(model, nn.Module) else None
    world_size = parallel.world(device)[1]  # under torchrun: starts the process group (NCCL for a CUDA model)
    auto_workers, workers = workers is None, parallel.resolve_workers(workers, -(-n // world_size))
    # the pairs are produced and their inputs gathered batch_size at a time
    t0 = time.perf_counter()
    fb = _fold(
        model,
        _Segments.indexed(x, _PlanChunks(plan), n),
        opts,
        per_layer=per_layer,
        progress=progress,
        workers=workers,
        auto_workers=auto_workers,
        distributed=True,
    )
    wall = time.perf_counter() - t0
    la, lb = plan.labels()
    return GlobalFolding(
        chi=fb.chi.double().cpu(),
        max_profile=fb.max_profile.double().cpu(),
        r1=fb.r1.cpu(),
        r2=fb.r2.cpu(),
        n_regions=fb.n_regions.cpu(),
        label_a=la,
        label_b=lb,
        method=method,
        pairs=mode,
        seed=seed,
        steps=steps if method == "uniform" else None,
        n_clusters=n_cl,
        per_layer={k: v.double().cpu() for k, v in fb.per_layer.items()} if fb.per_layer else None,
        info={
            "wall_seconds": wall,
            "paths_per_second": n / wall if wall > 0 else None,
            "workers": workers,
            "world_size": world_size,
            **({"n_float64": fb.n_float64, "n_unresolved": fb.n_unresolved} if method == "exact" else {}),
            # paths whose walk is guaranteed to hold every region (exact and certified walks; 0 for sampled ones)
            **({"n_complete": int(fb.complete.sum())} if fb.complete is not None else {}),
            # certified walks that ran out of their interval budget (not proved complete)
            **(
                {"n_incomplete": int((~fb.complete).sum())} if method == "certified" and fb.complete is not None else {}
            ),
        },
    )


class _PlanChunks:
    """``(start, stop, size) ->`` the index pairs at positions ``[start, stop)`` of a pair
    plan, in chunks of ``size`` (picklable, for worker processes)."""

    def __init__(self, plan: PairPlan):
        self.plan = plan
        self.offsets = np.cumsum([0] + [len(b) for b in plan.blocks])

    def __call__(self, start: int, stop: int, size: int):
        def pieces():
            for blk, off in zip(self.plan.blocks, self.offsets[:-1]):
                lo, hi = max(start - int(off), 0), min(stop - int(off), len(blk))
                for k in range(lo, hi, size):
                    e = min(k + size, hi)
                    yield (blk.starts[k:e], blk.ends[k:e]) if not blk.product else blk.pairs_at(torch.arange(k, e))

        return iter_chunks(pieces(), size)

    def nbytes(self) -> int:
        """The bytes of the plan's index tensors (what pickling it sends)."""
        return sum(t.numel() * t.element_size() for b in self.plan.blocks for t in (b.starts, b.ends))
