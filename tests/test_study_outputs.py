"""The study scripts write their figures under --out (or where --figures says), never into docs/ unless told.

Each report is run on a copy of its study's recorded runs in a temporary folder; docs/ must not change.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "experiments" / "results"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"_outputs_{name}", ROOT / "experiments" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _docs() -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in (ROOT / "docs").rglob("*") if p.is_file()}


def _pngs(folder: Path) -> set[str]:
    return {p.name for p in folder.glob("*.png")}


def test_generalisation_report_writes_its_figures_under_out(tmp_path):
    mod = _script("generalisation_study")
    shutil.copytree(RESULTS / "generalisation" / "runs", tmp_path / "out" / "runs")
    cfg = json.loads((RESULTS / "generalisation" / "config.json").read_text())
    before = _docs()
    mod.report(tmp_path / "out", cfg)
    assert _pngs(tmp_path / "out" / "figures") == {"phi-vs-test-error.png", "phi-vs-gap.png"}
    mod.report(tmp_path / "out", cfg, tmp_path / "elsewhere")
    assert _pngs(tmp_path / "elsewhere") == {"phi-vs-test-error.png", "phi-vs-gap.png"}
    assert _docs() == before


def test_regularizer_report_writes_its_figures_under_out(tmp_path):
    mod = _script("regularizer_study")
    runs = sorted((RESULTS / "regularizer" / "today" / "runs").glob("3x20_lam*_always_p0_bn0_s[01].json"))
    assert runs, "the regulariser study's recorded runs are missing"
    (tmp_path / "out" / "runs").mkdir(parents=True)
    for p in runs:
        shutil.copy(p, tmp_path / "out" / "runs" / p.name)
    before = _docs()
    assert mod.main(["--data-dir", str(tmp_path / "no-data"), "--out", str(tmp_path / "out"), "--phase", "report"]) == 0
    assert _pngs(tmp_path / "out" / "figures")
    assert not (tmp_path / "no-data").exists()
    assert _docs() == before
