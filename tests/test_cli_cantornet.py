"""`spacefold cantornet`: the docs/method.md, 'CantorNet' oracle through the command line."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import spacefold as sf
from spacefold.cli import main

# docs/method.md, 'CantorNet', prefix profiles at the steps 0.1 ... 1.0
PROFILE_A3 = [0, 0, 0.5556, 0.6667, 0.6667, 0.6667, 0.6667, 0.7, 0.7273, 0.75]
PROFILE_C2 = [0, 0, 0.25, 0.25, 0.25, 0.25, 0.25, 0.5, 0.5, 0.5556]
GRID_T = [j / 10 for j in range(1, 11)]

X1 = torch.tensor([0.0, 0.75], dtype=torch.float64)
X2 = torch.tensor([1.0, 0.75], dtype=torch.float64)


def _run_json(capsys, *argv):
    rc = main(["cantornet", *argv, "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert err == ""
    lines = out.strip().splitlines()
    assert len(lines) == 1
    return json.loads(lines[0])


def test_uniform_json_is_the_oracle_row(capsys):
    res = _run_json(capsys, "--depth", "3", "--representation", "A", "--method", "uniform", "--steps", "10")
    assert {
        "r1",
        "r2",
        "chi",
        "n_regions",
        "profile",
        "t",
        "method",
        "steps",
        "depth",
        "representation",
        "n_neurons",
    } <= set(res)
    assert (res["r1"], res["r2"], res["depth"], res["representation"], res["n_neurons"]) == (6, 24, 3, "A", 16)
    assert (res["method"], res["steps"]) == ("uniform", 10)
    assert res["chi"] == pytest.approx(0.75, abs=1e-12)
    assert res["profile"] == pytest.approx(PROFILE_A3, abs=5e-5)
    assert res["t"] == pytest.approx(GRID_T, abs=1e-12)
    f = sf.folding(sf.cantornet(depth=3), X1, X2, method="uniform", steps=10)
    assert res["n_regions"] == f.n_regions


def test_representation_c_uses_the_tie_tolerance(capsys):
    res = _run_json(capsys, "--depth", "2", "--representation", "c", "--method", "uniform", "--steps", "10")
    assert (res["r1"], res["r2"], res["representation"], res["n_neurons"]) == (8, 18, "C", 17)
    assert res["profile"] == pytest.approx(PROFILE_C2, abs=5e-5)
    assert res["tie_tol"] == sf.cantornet(2, "C").tie_tol > 0


def test_bisect_json_profile_per_region(capsys):
    res = _run_json(capsys, "--depth", "2", "--representation", "B", "--method", "bisect", "--tol", "1e-9")
    net = sf.cantornet(depth=2, representation="B")
    f = sf.folding(net, X1, X2, method="bisect", tol=1e-9, tie_tol=net.tie_tol)
    assert "steps" not in res and res["method"] == "bisect"
    assert (res["r1"], res["r2"], res["n_regions"]) == (f.r1, f.r2, f.n_regions)
    assert res["chi"] == pytest.approx(f.chi, abs=1e-12)
    # one value per region after the first, entered at increasing t in (0, 1]
    assert len(res["profile"]) == len(res["t"]) == f.n_regions - 1
    assert res["profile"] == pytest.approx(f.profile[1:].tolist(), abs=1e-12)
    assert res["profile"][-1] == pytest.approx(res["chi"], abs=1e-12)
    assert all(0 < a < b <= 1 for a, b in zip(res["t"], res["t"][1:]))
    # the region-level walk of B at k = 2 on this path: 10 regions, χ = 2/3
    assert (res["n_regions"], res["r1"], res["r2"]) == (10, 6, 18)


def test_start_and_end(capsys):
    res = _run_json(capsys, "--depth", "1", "--method", "uniform", "--start", "1", "0.75", "--end", "0", "0.75")
    assert res["start"] == [1.0, 0.75] and res["end"] == [0.0, 0.75]
    f = sf.folding(sf.cantornet(1), X2, X1, method="uniform", steps=10, tie_tol=1e-9)
    assert (res["r1"], res["r2"]) == (f.r1, f.r2)


def test_text_table(capsys):
    rc = main(["cantornet", "--depth", "3", "--method", "uniform"])
    out, err = capsys.readouterr()
    assert rc == 0 and err == ""
    assert "CantorNet A, depth 3 (16 neurons)" in out
    assert "r1 6   r2 24   chi 0.7500" in out
    assert out.strip().splitlines()[-1].split() == ["1.000000", "0.7500"]


def test_default_method_is_exact():
    from spacefold.cli import build_parser

    args = build_parser().parse_args(["cantornet"])
    assert (args.method, args.depth, args.representation, tuple(args.start), tuple(args.end)) == (
        "exact",
        1,
        "A",
        (0.0, 0.75),
        (1.0, 0.75),
    )


@pytest.mark.skipif(
    importlib.util.find_spec("spacefold._core.walk.exact") is None, reason="spacefold._core.walk.exact missing"
)
def test_exact_matches_a_dense_grid(capsys):
    res = _run_json(capsys, "--depth", "3", "--representation", "A", "--method", "exact")
    dense = sf.folding(sf.cantornet(3), X1, X2, method="uniform", steps=20000, tie_tol=1e-9)
    assert res["method"] == "exact"
    assert (res["r1"], res["r2"], res["n_regions"]) == (dense.r1, dense.r2, dense.n_regions)
    assert res["chi"] == pytest.approx(dense.chi, abs=1e-12)
    assert len(res["profile"]) == len(res["t"]) == res["n_regions"] - 1


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--depth", "0"], "--depth"),
        (["--depth", "11"], "--depth"),
        (["--representation", "D"], "--representation"),
        (["--method", "foo"], "--method"),
        (["--steps", "0"], "--steps"),
        (["--start", "nan", "0.75"], "--start"),
        (["--end", "0", "inf"], "--end"),
        (["--tie-tol", "-1"], "--tie-tol"),
        (["--tol", "nan"], "--tol"),
    ],
)
def test_bad_input_exit_code_2(capsys, argv, needle):
    rc = main(["cantornet", *argv, "--method", "uniform"] if "--method" not in argv else ["cantornet", *argv])
    out, err = capsys.readouterr()
    assert rc == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spacefold cantornet: error:") and needle in lines[0]


def test_console_script():
    exe = Path(sys.executable).with_name("spacefold")
    if not exe.exists():
        pytest.skip("the spacefold console script is not installed next to this Python")
    proc = subprocess.run(
        [
            str(exe),
            "cantornet",
            "--depth",
            "3",
            "--representation",
            "A",
            "--method",
            "uniform",
            "--steps",
            "10",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert (res["r1"], res["r2"]) == (6, 24)
    assert res["chi"] == pytest.approx(0.75)
    assert res["profile"] == pytest.approx(PROFILE_A3, abs=5e-5)
