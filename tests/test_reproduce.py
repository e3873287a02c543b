"""experiments/reproduce.py: the comparison of a rerun with its record, on small synthetic records, and
(slow) the quick rerun of every study."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _reproduce():
    spec = importlib.util.spec_from_file_location("_reproduce", ROOT / "experiments" / "reproduce.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["_reproduce"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


RECORD = {
    "arch": "3x20",
    "seed": 0,
    "phi": 0.125,
    "n_paths": 4000,
    "ci": [0.1, 0.15],
    "ok": True,
    "per_layer": [{"layer": 1, "phi": 0.0}],
    "train_seconds": 31.2,
    "provenance": {"git_commit": "abc"},
    "missing": None,
}


def test_compare_identical_and_ignored_fields():
    r = _reproduce()
    new = json.loads(json.dumps(RECORD))
    assert r.compare(RECORD, new) == []
    # timings, provenance and fields only today's code records are not compared
    new.update(train_seconds=99.0, provenance={"git_commit": "def"}, pair_plan={"sha256": "0"})
    assert r.compare(RECORD, new) == []


def test_compare_tolerance_is_the_stated_one():
    r = _reproduce()
    assert r.RTOL == 1e-6 and r.ATOL == 1e-9
    within = dict(RECORD, phi=0.125 * (1 + 0.9e-6))
    assert r.compare(RECORD, within) == []
    beyond = dict(RECORD, phi=0.125 * (1 + 2e-6))
    (d,) = r.compare(RECORD, beyond)
    assert d.startswith("$.phi: recorded 0.125")


def test_compare_reports_every_kind_of_difference():
    r = _reproduce()
    new = json.loads(json.dumps(RECORD))
    new["n_paths"] = 4001
    new["ci"] = [0.1]
    new["ok"] = False
    new["per_layer"][0]["phi"] = 0.5
    del new["arch"]
    new["missing"] = 0.0
    diffs = r.compare(RECORD, new)
    assert len(diffs) == 6
    text = "\n".join(diffs)
    for frag in (
        "$.arch: recorded, missing now",
        "$.n_paths: recorded 4000, got 4001",
        "$.ci: recorded 2 items, got 1",
        "$.ok: recorded True, got False",
        "$.per_layer[0].phi: recorded 0.0, got 0.5",
        "$.missing: recorded None, got 0.0",
    ):
        assert frag in text
    # an int where a float was recorded compares as a number; a string never equals a number
    assert r.compare({"x": 1.0}, {"x": 1}) == []
    assert r.compare({"x": 1.0}, {"x": "1.0"}) != []
    assert r.compare({"x": float("nan")}, {"x": float("nan")}) == []


def test_check_and_exit_status_on_a_synthetic_study(tmp_path, monkeypatch):
    r = _reproduce()
    results = tmp_path / "results"
    (results / "toy" / "runs").mkdir(parents=True)
    (results / "toy" / "runs" / "a.json").write_text(json.dumps(RECORD))

    def rerun_same(tmp, data_dir):
        (tmp / "a.json").write_text(json.dumps(dict(RECORD, train_seconds=1.0)))
        return {"toy/runs/a.json": tmp / "a.json"}

    def rerun_other(tmp, data_dir):
        (tmp / "a.json").write_text(json.dumps(dict(RECORD, phi=0.2)))
        return {"toy/runs/a.json": tmp / "a.json"}

    assert r.check(r.Study("toy", rerun_same), "unused", results) == []
    (d,) = r.check(r.Study("toy", rerun_other), "unused", results)
    assert d.startswith("toy/runs/a.json $.phi: recorded 0.125, got 0.2")
    monkeypatch.setattr(r, "RESULTS", results)
    monkeypatch.setattr(r, "STUDIES", {"toy": r.Study("toy", rerun_same)})
    assert r.main(["--quick", "--data-dir", "unused"]) == 0
    monkeypatch.setattr(r, "STUDIES", {"toy": r.Study("toy", rerun_other)})
    monkeypatch.setattr(r, "check", lambda s, d: r.compare(RECORD, dict(RECORD, phi=0.2)))
    assert r.main(["--quick", "--data-dir", "unused"]) == 1
    with pytest.raises(SystemExit) as e:
        r.main(["--data-dir", "unused"])  # without --quick
    assert e.value.code == 2


def test_check_compares_only_the_part_a_study_makes_again(tmp_path):
    r = _reproduce()
    results = tmp_path / "results"
    (results / "toy").mkdir(parents=True)
    record = {"networks": {"a": {"phi": 0.1}, "b": {"phi": 0.2}}}
    (results / "toy" / "s.json").write_text(json.dumps(record))

    def rerun(phi_a):
        def make(tmp, data_dir):
            (tmp / "s.json").write_text(json.dumps({"networks": {"a": {"phi": phi_a}}}))
            return {"toy/s.json": tmp / "s.json"}

        return make

    def part(j):
        return j["networks"]["a"]

    # network b is not made again: without ``part`` it counts as missing, with it only a is compared
    assert r.check(r.Study("toy", rerun(0.1)), "unused", results) == ["toy/s.json $.networks.b: recorded, missing now"]
    assert r.check(r.Study("toy", rerun(0.1), part=part), "unused", results) == []
    (d,) = r.check(r.Study("toy", rerun(0.3), part=part), "unused", results)
    assert d.startswith("toy/s.json $.phi: recorded 0.1, got 0.3")
    (d,) = r.check(r.Study("toy", rerun(0.1), part=lambda j: j["networks"]["c"]), "unused", results)
    assert "the part compared is missing" in d


def test_every_study_with_records_has_a_check():
    """--quick reruns a run of every folder of records (a check is named after its study's folder)."""
    r = _reproduce()
    studies = {p.name for p in (ROOT / "experiments" / "results").iterdir() if p.is_dir()}
    assert studies == set(r.STUDIES)


@pytest.mark.slow
def test_reproduce_quick_every_study():
    data = os.environ.get("SPACEFOLD_DATA")
    if not data:
        pytest.skip("SPACEFOLD_DATA (the MNIST IDX files) not set")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    res = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "reproduce.py"), "--quick", "--data-dir", data],
        capture_output=True,
        text=True,
        env=env,
    )
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
