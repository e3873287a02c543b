"""spacefold under torchrun: a sweep's runs shared by ranks, a rank that fails, work that the ranks cannot share
evenly. Every test starts torchrun's launcher (``python -m torch.distributed.run``) on gloo, in a few seconds."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import spacefold as sf
from spacefold.cli import main as cli_main
from spacefold.models import mlp, save_checkpoint

# a tiny sweep: 2 architectures x 2 seeds on three Gaussian blobs, two epochs
SWEEP = [
    "sweep",
    "--data",
    "blobs",
    "--archs",
    "1x6",
    "3x4",
    "--seeds",
    "0",
    "1",
    "--epochs",
    "2",
    "--batch-size",
    "32",
    "--pairs-per-class-pair",
    "6",
    "--n-boot",
    "20",
    "--no-progress",
    "--no-plots",
    "--json",
]
RUNS = ("1x6_s0", "1x6_s1", "3x4_s0", "3x4_s1")
# what differs between two processes by design: timings, the output directory, and the provenance (its command
# line is the process's own: torchrun's here, pytest's in the one-process run)
TIMES = {
    "train_seconds",
    "measure_seconds",
    "seconds",
    "wall_seconds",
    "paths_per_second",
    "workers",
    "world_size",
    "out",
    "provenance",
}


def _env(**extra) -> dict:
    src = str(Path(sf.__file__).resolve().parents[1])
    paths = [src, *extra.pop("PYTHONPATH", []), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p), **extra}


def _torchrun(n: int, args: list[str], cwd: Path, monitor: float | None = None, **env) -> subprocess.CompletedProcess:
    """``torchrun`` with ``n`` ranks; ``monitor``: seconds between its checks of the ranks (after a rank fails it
    stops the others at its next check: a longer interval leaves them time to report on a loaded machine)."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            str(n),
            *(["--monitor-interval", str(monitor)] if monitor is not None else []),
            "-m",
            "spacefold",
            *args,
        ],
        capture_output=True,
        text=True,
        env=_env(**env),
        timeout=300,
        cwd=cwd,
    )


def _untimed(obj):
    """``obj`` without the timings and the output directory (which differ from run to run)."""
    if isinstance(obj, dict):
        return {k: _untimed(v) for k, v in obj.items() if k not in TIMES}
    if isinstance(obj, list):
        return [_untimed(v) for v in obj]
    return obj


def _csv(path: Path) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMES} for row in csv.DictReader(path.open())]


def _same_results(a: Path, b: Path) -> None:
    """Two sweep directories hold the same numbers, bit for bit (timings aside), and the same weights."""

    def results(d: Path):
        return _untimed(json.loads((d / "results.json").read_text()))

    assert results(a) == results(b)
    assert _csv(a / "results.csv") == _csv(b / "results.csv")
    for name in RUNS:
        assert _untimed(json.loads((a / "runs" / f"{name}.json").read_text())) == _untimed(
            json.loads((b / "runs" / f"{name}.json").read_text())
        ), name
        pa = torch.load(a / "models" / f"{name}.pt", weights_only=True)
        pb = torch.load(b / "models" / f"{name}.pt", weights_only=True)
        assert pa["config"] == pb["config"]
        assert pa["state_dict"].keys() == pb["state_dict"].keys()
        assert all(torch.equal(pa["state_dict"][k], pb["state_dict"][k]) for k in pa["state_dict"]), name
        assert _untimed(json.loads(pa["metadata"])) == _untimed(json.loads(pb["metadata"])), name
    assert not [p for p in b.rglob(".*")], "temporary files left behind"


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The tiny sweep in this process: the reference."""
    out = tmp_path_factory.mktemp("one") / "sweep"
    assert cli_main(SWEEP + ["--out", str(out)]) == 0
    return out


def test_sweep_two_ranks_write_what_one_process_writes(one_process, tmp_path):
    r = _torchrun(2, SWEEP + ["--out", str(tmp_path / "two")], tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1  # rank 1 printed nothing
    summary = json.loads(lines[0])
    assert [row["arch"] for row in summary["by_arch"]] == ["1x6", "3x4"]
    assert "2 ranks" in r.stderr
    assert sum(f"{name}: trained 2 epochs" in r.stderr for name in RUNS) == 4  # rank 0 logged every run, once
    _same_results(one_process, tmp_path / "two")


def test_interrupted_sweep_is_completed_by_two_ranks(one_process, tmp_path):
    part = tmp_path / "part"
    shutil.copytree(one_process, part)
    for f in (
        "results.csv",
        "results.json",
        "summary.md",
        "runs/1x6_s1.json",
        "runs/3x4_s1.json",
        "models/3x4_s1.pt",
        "models/3x4_s1.pt.json",
    ):
        (part / f).unlink()
    # left: 1x6_s0 and 3x4_s0 finished, 1x6_s1 trained but not measured, 3x4_s1 not started
    r = _torchrun(2, SWEEP + ["--out", str(part)], tmp_path)
    assert r.returncode == 0, r.stderr
    err = r.stderr
    assert "1x6_s0: done before, skipped" in err and "3x4_s0: done before, skipped" in err
    assert "1x6_s1: checkpoint found, training skipped" in err
    assert "3x4_s1: trained 2 epochs" in err and "1x6_s1: trained" not in err
    _same_results(one_process, part)


def test_a_run_that_fails_stops_every_rank_with_its_error(tmp_path):
    """Training that diverges (an InputError on the rank that trains the run) stops both ranks with that
    error, in one line, without a hang; the sweep writes no result of a failed run."""
    argv = SWEEP + ["--lr", "1e30", "--archs", "2x8", "--seeds", "0", "1", "--out", str(tmp_path / "bad")]
    r = _torchrun(2, argv, tmp_path)
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("spacefold sweep: error:")]
    assert lines and all("lr must be small enough for the training to converge, got 1e+30" in ln for ln in lines)
    assert r.stderr.count("Traceback (most recent call last)") == 1  # torchrun's own, not a rank's
    assert not list((tmp_path / "bad" / "runs").iterdir())


FAILING_NET = '''
import os

import torch
from torch import nn


class Stopped(Exception):
    pass


class Net(nn.Module):
    """An MLP whose forward pass fails on rank 1 for batches of more than two inputs."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 10))

    def forward(self, x):
        if os.environ.get("RANK") == "1" and x.shape[0] > 2:
            raise Stopped("the walks of rank 1 stopped here")
        return self.body(x.flatten(1))
'''


def test_a_rank_that_fails_fails_the_run_and_writes_nothing(tmp_path, monkeypatch, capsys):
    (tmp_path / "failing_net.py").write_text(FAILING_NET)
    out = tmp_path / "out"
    args = [
        "measure",
        "--model",
        "failing_net:Net",
        "--data",
        "digits",
        "--method",
        "uniform",
        "--steps",
        "10",
        "--max-pairs",
        "4000",
        "--batch-size",
        "64",
        "--workers",
        "1",
        "--no-progress",
        "--json",
        "--out",
        str(out),
    ]
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("RANK", raising=False)
    assert cli_main(args[:-2]) == 0  # alone (outside torchrun) the model walks
    assert json.loads(capsys.readouterr().out)["n_paths"] == 4000
    r = _torchrun(2, args, tmp_path, monitor=5, PYTHONPATH=[str(tmp_path)])
    assert r.returncode != 0
    assert r.stdout.strip() == ""  # rank 0 printed no result
    assert "failing_net.Stopped: the walks of rank 1 stopped here" in r.stderr  # rank 1's traceback says why
    # rank 0, waiting for rank 1's results, says in one line what happened, without a traceback of gloo's
    assert "spacefold measure: error: rank 0 of 2 stopped: another rank failed" in r.stderr
    assert "[rank0]: Traceback" not in r.stderr
    assert "ChildFailedError" in r.stderr  # torchrun's summary of the ranks' exits
    assert not out.exists() or not any(out.iterdir())  # nothing written, not even a temporary file


def test_three_ranks_share_ten_pairs(tmp_path, capsys):
    p = save_checkpoint(mlp("3x8", 64, 10, seed=2), tmp_path / "m.pt")
    args = [
        "measure",
        "--model",
        str(p),
        "--data",
        "digits",
        "--pairs",
        "random",
        "--max-pairs",
        "10",
        "--per-layer",
        "--workers",
        "1",
        "--json",
        "--no-progress",
    ]
    assert cli_main(args) == 0
    a = json.loads(capsys.readouterr().out)
    three = _torchrun(3, args, tmp_path)  # shards of 4, 3 and 3 pairs
    assert three.returncode == 0, three.stderr
    b = json.loads(three.stdout.strip().splitlines()[-1])
    assert (a["n_paths"], a["world_size"], b["world_size"]) == (10, 1, 3)
    assert _untimed(a) == _untimed(b)
    assert len(three.stdout.strip().splitlines()) == 1


def test_alone_is_a_world_of_one(monkeypatch):
    from spacefold._core import parallel

    monkeypatch.setenv("WORLD_SIZE", "4")  # as under torchrun, but no process group is started inside alone()
    with parallel.alone():
        assert parallel.world() == (0, 1)
        assert parallel.all_gather({"a": 1}) == [{"a": 1}]
        assert parallel.broadcast([1, 2]) == [1, 2]
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert parallel.world() == (0, 1) and parallel.broadcast("x") == "x"
