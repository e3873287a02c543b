"""Statistics of the studies: rank correlation, intervals over seeds, and intervals over seeds and
the pair set together (a two-level bootstrap of per-path values, or recorded per-run intervals widened
in quadrature), and how many pairs make the pair-set spread smaller than an effect.

The study pages and ``experiments/`` report their intervals with these; the names are also importable
from :mod:`spacefold.studies.depth`, where they began.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from .._util import check_int
from ..errors import InputError

__all__ = ["spearman", "seed_mean_ci", "hierarchical_bootstrap", "seed_pair_interval", "pairs_needed"]


def spearman(a, b) -> float:
    """Spearman's rank correlation of ``a`` and ``b`` (``scipy.stats.spearmanr``: tied values share
    their mean rank); NaN when it is undefined (fewer than 3 values, or either side constant)."""
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.size != b.size:
        raise InputError(f"a and b must have the same length, got {a.size} and {b.size}")
    if a.size < 3 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(stats.spearmanr(a, b).statistic)


def seed_mean_ci(values, level: float = 0.95) -> tuple[float, float, float]:
    """Mean over seeds and its Student-t interval at ``level`` (``scipy.stats.t``): ``(mean, lo, hi)``;
    the interval is NaN for fewer than two values. It covers the seed-to-seed spread only: where every
    seed is measured on the same pairs, :func:`seed_pair_interval` adds the spread of the pair set."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    m = float(v.mean())
    if v.size < 2:
        return m, float("nan"), float("nan")
    h = float(stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return m, m - h, m + h


def hierarchical_bootstrap(
    groups, stat: Callable | None = None, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """Two-level bootstrap of a per-seed statistic averaged over seeds: ``groups`` holds one array of
    per-path values per seed (network); each replicate draws the seeds with replacement, then the
    paths of every drawn seed with replacement, applies ``stat`` (default: the median of the non-zero
    values, Φ_N) to each and averages. A 2-D array ``(n_paths, k)`` per seed resamples its rows, so
    paired values (two arms measured on the same paths) stay together, e.g.
    ``stat=lambda g: median_nonzero(g[:, 0]) - median_nonzero(g[:, 1])``. Returns ``(estimate, lo, hi)``:
    the mean over seeds of ``stat`` and the percentile interval at ``level``. The interval covers both the
    seeds and the pair set."""
    from .._core.global_folding import median_nonzero

    stat = stat or median_nonzero
    groups = [np.asarray(g, dtype=float) for g in groups]
    if not groups or any(g.ndim not in (1, 2) or g.shape[0] == 0 for g in groups):
        raise InputError(
            "groups must be a non-empty list of non-empty arrays of per-path values (1-D, or 2-D with one row per path)"
        )
    check_int(n_boot, "n_boot", 1)
    rng = np.random.default_rng(seed)
    est = float(np.mean([stat(g) for g in groups]))
    k = len(groups)
    draws = np.empty(n_boot)
    for b in range(n_boot):
        picked = rng.integers(0, k, k)
        draws[b] = np.mean([stat(groups[s][rng.integers(0, len(groups[s]), len(groups[s]))]) for s in picked])
    lo, hi = np.quantile(draws, [0.5 - level / 2, 0.5 + level / 2])
    return est, float(lo), float(hi)


def _pair_sd(ci: Sequence[float], level: float = 0.95) -> float:
    from scipy import stats

    return (float(ci[1]) - float(ci[0])) / (2 * float(stats.norm.ppf(0.5 + level / 2)))


def seed_pair_interval(
    estimates, pair_cis, *, minus=None, minus_cis=None, paired: bool = False, level: float = 0.95
) -> tuple[float, float, float]:
    """Interval of a mean over seeds (or of a difference of two such means) that covers the seeds
    and the pair set, from recorded runs.

    ``estimates``: one value per seed (Φ_N of each network); ``pair_cis``: each run's recorded
    interval over its paths at ``level`` (a bootstrap over paths), read as the spread of that
    estimate over pair sets, sd = width / (2 z). The studies measure every seed on the same pairs,
    so the pair-set error is shared by the seeds and does not shrink with their number: the
    interval is the Student-t interval over seeds widened in quadrature by z times the pair-set sd,
    ``mean ± sqrt((t s / sqrt n)^2 + (z sd_pairs)^2)``, with ``sd_pairs`` the root mean square of
    the runs' sds. With ``minus`` and ``minus_cis`` it is the interval of ``mean(estimates) −
    mean(minus)``: ``paired`` (the same seeds in both, in the same order) takes the t interval of
    the per-seed differences; otherwise the two seed parts add (df: the smaller sample less one).
    The two pair-set sds add as if independent, which overstates them where both groups walk the
    same pairs. Returns ``(estimate, lo, hi)``; lo and hi are NaN for one seed.

    Where the per-path values are kept, :func:`hierarchical_bootstrap` resamples the seeds and the
    paths themselves.
    """
    from scipy import stats

    a = np.asarray(estimates, dtype=float)
    sa = np.array([_pair_sd(c, level) for c in pair_cis])
    if a.size == 0 or sa.size != a.size:
        raise InputError(f"estimates and pair_cis must be non-empty and of one length, got {a.size} and {sa.size}")
    z = float(stats.norm.ppf(0.5 + level / 2))
    pair_var = float(np.mean(sa**2))
    if minus is None:
        est, n, seed_se = float(a.mean()), a.size, (float(a.std(ddof=1)) / math.sqrt(a.size) if a.size > 1 else 0.0)
    else:
        b = np.asarray(minus, dtype=float)
        sb = np.array([_pair_sd(c, level) for c in minus_cis])
        if b.size == 0 or sb.size != b.size or (paired and b.size != a.size):
            raise InputError(
                f"minus and minus_cis must be non-empty and of one length (that of estimates when "
                f"paired), got {b.size} and {sb.size}"
            )
        est = float(a.mean() - b.mean())
        pair_var += float(np.mean(sb**2))
        if paired:
            d = a - b
            n, seed_se = d.size, (float(d.std(ddof=1)) / math.sqrt(d.size) if d.size > 1 else 0.0)
        else:
            n = min(a.size, b.size)
            va = a.var(ddof=1) / a.size if a.size > 1 else 0.0
            vb = b.var(ddof=1) / b.size if b.size > 1 else 0.0
            seed_se = math.sqrt(va + vb)
    if n < 2:
        return est, float("nan"), float("nan")
    t = float(stats.t.ppf(0.5 + level / 2, n - 1))
    h = math.sqrt((t * seed_se) ** 2 + z * z * pair_var)
    return est, est - h, est + h


def pairs_needed(effect: float, pair_ci: Sequence[float], n_paths: int, level: float = 0.95) -> int:
    """How many paths per network make the pair-set part of a difference of two such estimates
    smaller than ``effect``: the half-width z x sqrt(2) x sd of the difference, with the sd of one
    estimate taken from its recorded interval ``pair_ci`` over ``n_paths`` paths and shrinking as
    1/sqrt(paths)."""
    from scipy import stats

    if not (isinstance(effect, (int, float)) and math.isfinite(effect) and effect != 0):
        raise InputError(f"effect must be a finite non-zero number, got {effect!r}")
    z = float(stats.norm.ppf(0.5 + level / 2))
    sd1 = _pair_sd(pair_ci, level) * math.sqrt(n_paths)
    return int(math.ceil((z * math.sqrt(2) * sd1 / abs(effect)) ** 2 - 1e-9))
