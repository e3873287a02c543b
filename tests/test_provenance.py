"""The provenance recorded with every study run names no machine's paths."""

from __future__ import annotations

import os

from spacefold.studies import provenance as pv


def test_command_hides_data_dirs_and_shows_paths_relative_to_the_tree():
    root = pv._ROOT
    argv = [
        "experiments/x.py",
        "--data-dir",
        "/data/mnist",
        "--out",
        str(root / "experiments" / "results" / "x"),
        "--figures=" + str(root / "docs" / "x"),
        "--cache",
        os.path.join(os.sep, "elsewhere", "cache"),
        "--seeds",
        "0",
        "1",
        "--data-dir=/d",
        "relative/out",
    ]
    assert pv._shown_command(argv) == [
        "experiments/x.py",
        "--data-dir",
        "DIR",
        "--out",
        os.path.join("experiments", "results", "x"),
        "--figures=" + os.path.join("docs", "x"),
        "--cache",
        "PATH",
        "--seeds",
        "0",
        "1",
        "--data-dir=DIR",
        "relative/out",
    ]


def test_run_provenance_holds_its_fields():
    p = pv.run_provenance()
    assert set(p) >= {
        "spacefold_version",
        "git_commit",
        "git_dirty",
        "torch_version",
        "numpy_version",
        "python_version",
        "command",
        "pair_plan_version",
    }
    assert isinstance(p["command"], list)
    assert not any(os.path.isabs(a) for a in p["command"][1:])
