"""The study statistics: Spearman with tied ranks, Student-t seed intervals, the two-level bootstrap
over seeds and pairs, and the number of pairs that makes the pair-set spread smaller than an effect."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spacefold.errors import InputError
from spacefold.study import (
    depth_trend,
    hierarchical_bootstrap,
    pairs_needed,
    seed_mean_ci,
    seed_pair_interval,
    spearman,
)


def test_spearman_ties_share_their_mean_rank():
    # ranks of a: 1, 2.5, 2.5, 4; of b: 1, 2, 3, 4; Pearson of the ranks by hand: 4.5 / sqrt(4.5 * 5)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / math.sqrt(4.5 * 5))
    # ties broken by position would give a different answer for the reversed order of the tied pair
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(spearman([1, 2, 2, 3], [1, 2, 3, 4]))
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    assert math.isnan(spearman([1, 2], [1, 2]))
    with pytest.raises(InputError, match="same length"):
        spearman([1, 2, 3], [1, 2])


def test_depth_trend_uses_tied_ranks():
    rows = [{"depth": d, "phi": v, "test_accuracy": 1.0} for d, v in [(1, 0.1), (2, 0.2), (2, 0.2), (3, 0.3)]]
    t = depth_trend(rows)
    assert t["spearman_depth"] == pytest.approx(1.0)
    rows[1]["phi"] = 0.3  # depths 1, 2, 2, 3 against 0.1, 0.3, 0.2, 0.3
    # ranks: depth 1, 2.5, 2.5, 4; phi 1, 3.5, 2, 3.5
    rd, rv = np.array([1, 2.5, 2.5, 4]), np.array([1, 3.5, 2, 3.5])
    assert depth_trend(rows)["spearman_depth"] == pytest.approx(np.corrcoef(rd, rv)[0, 1])


def test_seed_mean_ci_student_t():
    m, lo, hi = seed_mean_ci([1.0, 2.0, 3.0])
    # t_{0.975, 2} = 4.302653; sd 1; n 3
    assert m == 2.0
    assert hi - m == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert m - lo == pytest.approx(hi - m)
    m, lo, hi = seed_mean_ci([5.0])
    assert m == 5.0 and math.isnan(lo) and math.isnan(hi)


def test_hierarchical_bootstrap_degenerate_and_pair_level():
    est, lo, hi = hierarchical_bootstrap([np.full(50, 0.3), np.full(40, 0.3)])
    assert est == lo == hi == pytest.approx(0.3)
    # one seed: only the paths vary, so the interval is that of the median of the paths
    rng = np.random.default_rng(1)
    g = rng.uniform(0.1, 0.9, 400)
    est, lo, hi = hierarchical_bootstrap([g], n_boot=1000)
    assert est == pytest.approx(np.median(g))
    assert lo < est < hi
    with pytest.raises(InputError, match="groups"):
        hierarchical_bootstrap([])


def test_seed_pair_interval_agrees_with_the_path_bootstrap():
    # five seeds whose paths are normal about seed-specific means: the two-level bootstrap of the mean
    # over the paths themselves and the one from each seed's recorded interval agree
    rng = np.random.default_rng(0)
    groups = [rng.normal(mu, 1.0, 300) for mu in (0.0, 0.1, 0.2, 0.15, 0.05)]
    est_h, lo_h, hi_h = hierarchical_bootstrap(groups, np.mean, n_boot=3000, seed=1)
    means = [g.mean() for g in groups]
    cis = [(g.mean() - 1.96 * g.std(ddof=1) / math.sqrt(g.size), g.mean() + 1.96 * g.std(ddof=1) / math.sqrt(g.size))
           for g in groups]
    est_p, lo_p, hi_p = seed_pair_interval(means, cis, n_boot=20000, seed=2)
    assert est_p == pytest.approx(est_h)
    assert hi_p - lo_p == pytest.approx(hi_h - lo_h, rel=0.15)
    # wider than the seeds alone would say when the pair sets are noisy
    _, lo_s, hi_s = seed_pair_interval(means, [(m, m) for m in means], n_boot=20000, seed=2)
    assert hi_s - lo_s < hi_p - lo_p


def test_seed_pair_interval_difference_paired_and_not():
    a, b = [0.30, 0.32, 0.31], [0.20, 0.22, 0.21]
    tight = [(v, v) for v in a]
    est, lo, hi = seed_pair_interval(a, tight, minus=b, minus_cis=[(v, v) for v in b], paired=True)
    # paired and without pair-set spread: every seed differs by exactly 0.1
    assert est == pytest.approx(0.1) and lo == pytest.approx(0.1) and hi == pytest.approx(0.1)
    est, lo, hi = seed_pair_interval(a, tight, minus=b, minus_cis=[(v, v) for v in b])
    assert lo < 0.1 < hi
    with pytest.raises(InputError, match="of one length"):
        seed_pair_interval(a, tight, minus=b[:2], minus_cis=[(v, v) for v in b[:2]], paired=True)


def test_pairs_needed_by_hand():
    # interval [0.9, 1.1] over 100 paths: sd 0.2 / 3.92 at 100 paths; the difference of two such estimates has
    # half-width 1.96 x sqrt(2) x sd; below 0.1 from n = 100 x (1.96 x sqrt(2) x 0.2 / 3.92 / 0.1)^2 = 200 paths
    assert pairs_needed(0.1, (0.9, 1.1), 100) == 200
    assert pairs_needed(-0.2, (0.9, 1.1), 100) == 50
    with pytest.raises(InputError, match="effect"):
        pairs_needed(0.0, (0.9, 1.1), 100)
