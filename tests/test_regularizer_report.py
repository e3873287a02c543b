"""experiments/regularizer_study.py: the changes of Φ_N and of the share folded with intervals over seeds and
test pairs, on synthetic per-pair χ."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _study():
    spec = importlib.util.spec_from_file_location("_regularizer_study", ROOT / "experiments" / "regularizer_study.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["_regularizer_study"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_paired_change_no_change_and_a_uniform_shift():
    m = _study()
    m.N_BOOT = 200
    chi = [0.0, 0.1, 0.2, 0.0, 0.25, 0.1]
    same = m.paired_change([(chi, chi)] * 3)
    for key in ("phi", "share"):
        est, lo, hi, tlo, thi, excl = same[key]
        assert (est, lo, hi, tlo, thi) == (0.0, 0.0, 0.0, 0.0, 0.0) and not excl
    # every folded path's χ doubled, the same paths folded: Φ_N doubles (median of 0.1, 0.1, 0.2, 0.25 = 0.15
    # → 0.3) in every resample, the share folded does not move
    double = [2 * v for v in chi]
    ch = m.paired_change([(double, chi)] * 3)
    est, lo, hi, tlo, thi, excl = ch["phi"]
    assert est == pytest.approx(0.15) and tlo == pytest.approx(0.15) and thi == pytest.approx(0.15) and excl
    assert 0.05 <= lo <= 0.15 <= hi <= 0.25  # resampling the pairs moves the medians, never the sign
    assert ch["share"][:3] == (0.0, 0.0, 0.0) and not ch["share"][5]


def test_paired_change_one_seed_has_no_t_interval_and_no_effect():
    m = _study()
    m.N_BOOT = 100
    ch = m.paired_change([([0.2, 0.3, 0.0], [0.1, 0.1, 0.0])])
    est, _, _, tlo, thi, excl = ch["phi"]
    assert est == pytest.approx(0.15) and math.isnan(tlo) and math.isnan(thi) and not excl
    assert "t [" not in m._cell(ch["phi"]) and "\\*" not in m._cell(ch["phi"])


def test_pair_tables_pairs_each_seed_with_its_own_baseline():
    m = _study()
    m.N_BOOT = 100

    def run(lam, seed, chis):
        return {
            "arch": "3x20",
            "lam": lam,
            "seed": seed,
            "dropout": 0.0,
            "batchnorm": False,
            "schedule": "always",
            "chi_per_epoch": chis,
            "per_epoch": [{"phi": 0.0}] * len(chis),
        }

    base = [run(0.0, s, [[0.1, 0.0, 0.1 + s / 10]] * 3) for s in range(3)]
    reg = [run(0.1, s, [[0.1, 0.0, 0.1 + s / 10]] * 2 + [[0.3, 0.0, 0.3 + s / 10]]) for s in range(3)]
    text = "\n".join(m.pair_tables(base + reg))
    # last epoch of λ = 0.1 against λ = 0 of the same seed: medians 0.3 + s/20 against 0.1 + s/20, a change of
    # 0.2 in every seed (a seed paired with another's baseline would not give 0.2); the share folded stays 2/3
    assert "| 3x20 | 0.1 | always | 3 | +0.200 [" in text and "; t [+0.200, +0.200] \\* | +0.000 [+0.000" in text
    assert text.count("+0.000 [+0.000, +0.000]; t [+0.000, +0.000] |") >= 3  # Δ share folded, and λ = 0 over epochs
    # runs without per-pair χ give no table
    assert m.pair_tables([{k: v for k, v in r.items() if k != "chi_per_epoch"} for r in base]) == []
