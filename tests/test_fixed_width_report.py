"""experiments/fixed_width_depth_study.py: the depth page's tables (Φ_N by depth with intervals over the seeds
and the pair set, the test error, Spearman's ρ over depths with a bootstrap interval) on synthetic records."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _study():
    spec = importlib.util.spec_from_file_location("_fixed_width", ROOT / "experiments" / "fixed_width_depth_study.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["_fixed_width"] = mod
    spec.loader.exec_module(mod)
    return mod


def run(depth, width, seed, phi, acc=0.96, half=0.0):
    return {
        "arch": f"{depth}x{width}",
        "depth": depth,
        "width": width,
        "seed": seed,
        "phi": phi,
        "phi_ci": [phi - half, phi + half],
        "test_accuracy": acc,
    }


def test_spearman_interval_monotone_without_pair_spread():
    m = _study()
    # every seed of a depth alike: depth's ties and Φ_N's ties coincide, so ρ = 1 in every replicate
    up = [run(d, 20, s, 0.1 + 0.01 * d) for d in range(2, 9) for s in range(3)]
    assert m.spearman_interval(up, n_boot=200) == pytest.approx((1.0, 1.0, 1.0))
    down = [dict(r, phi=1.0 - r["phi"], phi_ci=[1.0 - r["phi"]] * 2) for r in up]
    assert m.spearman_interval(down, n_boot=200) == pytest.approx((-1.0, -1.0, -1.0))
    # one depth: ρ is undefined
    rho, lo, hi = m.spearman_interval([run(3, 20, s, 0.1 + s / 100) for s in range(4)])
    assert math.isnan(rho) and math.isnan(lo) and math.isnan(hi)


def test_spearman_interval_widens_with_the_pair_set():
    m = _study()
    # steps of 0.01 between depths; a pair-set sd of about 0.02 (interval half-width 1.96 x 0.02) blurs them
    tight = [run(d, 20, s, 0.1 + 0.01 * d) for d in range(2, 9) for s in range(5)]
    loose = [run(d, 20, s, 0.1 + 0.01 * d, half=0.0392) for d in range(2, 9) for s in range(5)]
    rho_t, lo_t, _ = m.spearman_interval(tight, n_boot=300)
    rho_l, lo_l, hi_l = m.spearman_interval(loose, n_boot=300)
    assert rho_t == pytest.approx(1.0) and rho_l == pytest.approx(1.0)  # the estimate ignores the spread
    assert lo_t == pytest.approx(1.0)
    assert lo_l < 0.9 and lo_l < hi_l <= 1.0
    # same seed, same answer
    assert m.spearman_interval(loose, n_boot=300) == (rho_l, lo_l, hi_l)


def test_report_tables_cells_by_hand():
    m = _study()
    rows = [run(2, 20, s, phi, acc) for s, (phi, acc) in enumerate([(0.10, 0.96), (0.12, 0.96), (0.14, 0.96)])]
    rows += [run(3, 20, s, 0.2, 0.95) for s in range(3)]
    text = m.report_tables(rows, [20, 40], [2, 3], None, n_boot=100)
    # mean 0.12; no pair-set spread, so the Student-t interval over 3 seeds: 0.12 ± t(0.975, 2) 0.02 / sqrt(3)
    h = 4.302652729911275 * 0.02 / math.sqrt(3)
    assert f"2x20: 0.120 [{0.12 - h:.3f}, {0.12 + h:.3f}] (3)" in text
    assert "3x20: 0.200 [0.200, 0.200] (3)" in text
    # test error in %, a zero-width interval where every seed agrees
    assert "| width 20 | 4.00 [4.00, 4.00] (3) | 5.00 [5.00, 5.00] (3) |" in text
    # width 40 has no run: dots, and no ρ
    assert "| width 40 | · | · |" in text
    assert "| width 40 | 0 | · | · |" in text
    # ρ(depth, Φ_N): ranks of depth (2, 2, 2, 5, 5, 5) against those of Φ_N (1, 2, 3, 5, 5, 5),
    # ρ = sqrt(13.5 / 15.5) = 0.933; a replicate that draws one depth-2 value three times ties them (ρ = 1,
    # 3 of 27 draws), two alike give sqrt(13.5 / 15) = 0.949 and three distinct 0.933 (6 of 27): the 95%
    # interval is [0.93, 1.00].
    # ρ(depth, test error) = 1 (the errors tie within each depth).
    assert "| width 20 | 6 | 0.93 [0.93, 1.00] | 1.00 |" in text


def test_budget_family_names_and_widths():
    m = _study()
    ((name, archs),) = [f for f in m.families([], range(2, 9), "2x80")]
    assert name == "budget 70,090"
    assert [archs[d] for d in range(2, 9)] == ["2x80", "3x74", "4x70", "5x66", "6x63", "7x60", "8x58"]
