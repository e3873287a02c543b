"""experiments/pair_set_intervals.py on the recorded runs: each printed difference is the difference of the
recorded per-seed values, computed here independently from the run files."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "experiments" / "results"


def _script():
    spec = importlib.util.spec_from_file_location("_psi_test", ROOT / "experiments" / "pair_set_intervals.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _row(text: str, label: str) -> str:
    rows = [line for line in text.splitlines() if line.startswith(f"| {label} |")]
    assert len(rows) == 1, f"{label!r}: {len(rows)} rows"
    return rows[0]


def _delta(row: str) -> float:
    return float(re.split(r"\s*\|\s*", row)[3].split()[0])


def test_fixed_width_steps_are_the_recorded_differences():
    text = _script().fixed_width()
    phi = {}
    for p in (RESULTS / "fixed-width-depth" / "runs").glob("*.json"):
        r = json.loads(p.read_text())
        phi[(r["arch"], r["seed"])] = r["phi"]
    for deep, shallow in (("5x80", "2x80"), ("3x20", "2x20"), ("8x58", "7x60")):
        want = np.mean([phi[(deep, s)] - phi[(shallow, s)] for s in range(5)])
        assert abs(_delta(_row(text, f"{deep} − {shallow}")) - want) < 5e-4
    # every family lists its neighbouring depths and depth 2 against 5 and 8
    assert text.count("| 8x20 − 7x20 |") == 1 and text.count("| 8x58 − 2x80 |") == 1


def test_regularizer_today_reads_the_rerun():
    mod = _script()
    today = mod.regularizer(None, "today/runs")
    assert "the rerun with today's code" in today
    runs = {}
    for p in (RESULTS / "regularizer" / "today" / "runs").glob("3x20_lam*_always_p0_bn0_s*.json"):
        r = json.loads(p.read_text())
        runs[(r["lam"], r["seed"])] = r["final"]["phi"]
    want = np.mean([runs[(0.1, s)] - runs[(0.0, s)] for s in range(5)])
    assert abs(_delta(_row(today, "3x20 λ=0.1 always − λ=0: Φ_N")) - want) < 5e-4
    first = mod.regularizer(None, "runs")
    assert "records of the code before 69489aa" in first


def test_regularizer_scale_spread_and_the_pairs_its_effect_needs():
    text = _script().regularizer_scale()
    for arch in ("3x20", "5x12", "3x40", "6x40"):
        for n in (1000, 5000):
            assert _row(text, f"{arch} | {n} | 0").endswith("|")
    m = re.search(r"pair-set sd (\d\.\d{4}); .* from (\d+) pairs", text)
    sd, need = float(m.group(1)), int(m.group(2))
    # pairs_needed: (z sqrt2 sd sqrt(1000) / effect)^2, with the sd rounded as printed
    z = 1.959963984540054
    assert abs(need - (z * 2**0.5 * sd * 1000**0.5 / 0.069) ** 2) < 2
