"""The study statistics: Spearman with tied ranks, Student-t seed intervals, the two-level bootstrap
over seeds and pairs, and the number of pairs that makes the pair-set spread smaller than an effect."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spacefold.errors import InputError
from spacefold.studies.depth import (
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


def test_seed_pair_interval_by_hand():
    v = [1.0, 2.0, 3.0]
    # no pair-set spread: the Student-t interval over seeds
    assert seed_pair_interval(v, [(x, x) for x in v]) == pytest.approx(seed_mean_ci(v))
    # pair-set sd 0.5 for every run (interval +-1.96 x 0.5): added in quadrature, not divided by the seeds
    h_t = 4.302653 / math.sqrt(3)
    est, lo, hi = seed_pair_interval(v, [(x - 1.959964 * 0.5, x + 1.959964 * 0.5) for x in v])
    assert est == 2.0
    assert hi - est == pytest.approx(math.sqrt(h_t**2 + (1.959964 * 0.5) ** 2), rel=1e-6)
    # one seed: no interval
    assert math.isnan(seed_pair_interval([1.0], [(0.9, 1.1)])[1])


def test_seed_pair_interval_difference_paired_and_not():
    a, b = [0.30, 0.32, 0.31], [0.20, 0.22, 0.21]
    tight_a, tight_b = [(v, v) for v in a], [(v, v) for v in b]
    est, lo, hi = seed_pair_interval(a, tight_a, minus=b, minus_cis=tight_b, paired=True)
    # paired and without pair-set spread: every seed differs by exactly 0.1
    assert est == pytest.approx(0.1) and lo == pytest.approx(0.1) and hi == pytest.approx(0.1)
    est, lo, hi = seed_pair_interval(a, tight_a, minus=b, minus_cis=tight_b)
    # unpaired: the two seed parts add, sd 0.01 each over 3 seeds, t with 2 degrees of freedom
    assert hi - est == pytest.approx(4.302653 * math.sqrt(2 * 0.01**2 / 3), rel=1e-5)
    # the pair-set sds of the two groups add too
    sd = 0.02
    est, lo, hi = seed_pair_interval(
        a, [(v - 1.959964 * sd, v + 1.959964 * sd) for v in a], minus=b, minus_cis=tight_b, paired=True
    )
    assert hi - est == pytest.approx(1.959964 * sd, rel=1e-5)
    with pytest.raises(InputError, match="of one length"):
        seed_pair_interval(a, tight_a, minus=b[:2], minus_cis=tight_b[:2], paired=True)


def test_pairs_needed_by_hand():
    # interval [0.9, 1.1] over 100 paths: sd 0.2 / 3.92 at 100 paths; the difference of two such estimates has
    # half-width 1.96 x sqrt(2) x sd; below 0.1 from n = 100 x (1.96 x sqrt(2) x 0.2 / 3.92 / 0.1)^2 = 200 paths
    assert pairs_needed(0.1, (0.9, 1.1), 100) == 200
    assert pairs_needed(-0.2, (0.9, 1.1), 100) == 50
    with pytest.raises(InputError, match="effect"):
        pairs_needed(0.0, (0.9, 1.1), 100)


def test_hierarchical_bootstrap_keeps_paired_rows_together():
    """Two arms on the same paths: a constant per-path difference has a zero-width interval when the
    rows are resampled together, and a wide one if the arms were resampled apart."""
    rng = np.random.default_rng(2)
    base = [rng.normal(0.0, 1.0, 300) for _ in range(4)]
    groups = [np.stack([b + 0.25, b], axis=1) for b in base]
    est, lo, hi = hierarchical_bootstrap(groups, lambda g: float(np.mean(g[:, 0]) - np.mean(g[:, 1])), n_boot=300)
    assert est == pytest.approx(0.25) and lo == pytest.approx(0.25) and hi == pytest.approx(0.25)
    # the same difference between unpaired arms: the interval reflects both arms' spread
    apart = [np.stack([b + 0.25, rng.permutation(b)], axis=1) for b in base]
    _, lo2, hi2 = hierarchical_bootstrap([g[:, 0] for g in apart], lambda v: float(np.mean(v)), n_boot=300)
    assert hi2 - lo2 > 0.05
    with pytest.raises(InputError, match="groups"):
        hierarchical_bootstrap([np.zeros((0, 2))])
