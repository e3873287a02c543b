"""spacefold demo / measure / sweep and the depth study behind them (tiny data, 1-2 epochs)."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from spacefold.cli import main
from spacefold.models import mlp, save_checkpoint
from spacefold.studies.depth import depth_trend

SWEEP = [
    "sweep",
    "--data",
    "blobs",
    "--archs",
    "1x6",
    "3x4",
    "--seeds",
    "0",
    "--epochs",
    "2",
    "--batch-size",
    "32",
    "--pairs-per-class-pair",
    "6",
    "--n-boot",
    "20",
    "--method",
    "bisect",
    "--no-progress",
]


def _one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


@pytest.mark.parametrize("cmd", ["demo", "measure", "sweep"])
def test_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    assert cmd in capsys.readouterr().out


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    assert main(SWEEP + ["--out", str(out), "--json"]) == 0
    return out


def test_sweep_writes_tables_and_plots(sweep_dir):
    rows = list(csv.DictReader((sweep_dir / "results.csv").read_text().splitlines()))
    assert [(r["arch"], r["seed"]) for r in rows] == [("1x6", "0"), ("3x4", "0")]
    one = rows[0]
    assert float(one["phi"]) == 0.0 and float(one["fraction_folded"]) == 0.0  # one hidden layer never folds
    for r in rows:
        assert 0.0 <= float(r["test_accuracy"]) <= 1.0
        assert float(r["phi_lo"]) <= float(r["phi_hi"])
        assert int(r["n_paths"]) == 6 * 9 and int(r["n_inter_class_paths"]) == 6 * 6  # blobs: 3 classes
    full = json.loads((sweep_dir / "results.json").read_text())
    assert {r["arch"] for r in full["by_arch"]} == {"1x6", "3x4"}
    assert len(full["runs"][1]["per_layer"]) == 3
    assert (sweep_dir / "summary.md").read_text().startswith("# Depth study")
    assert (sweep_dir / "models" / "3x4_s0.pt").is_file()
    pytest.importorskip("matplotlib")
    assert (sweep_dir / "plots" / "phi-vs-depth.png").stat().st_size > 1000


def test_sweep_runs_record_provenance_and_their_pairs(sweep_dir):
    import spacefold
    from spacefold._core.pairs import PLAN_VERSION, pair_plan, plan_fingerprint
    from spacefold.data import make_synthetic

    run = json.loads((sweep_dir / "runs" / "3x4_s0.json").read_text())
    prov = run["provenance"]
    assert prov["spacefold_version"] == spacefold.__version__
    assert prov["torch_version"] == torch.__version__
    assert prov["pair_plan_version"] == PLAN_VERSION
    assert isinstance(prov["command"], list) and prov["command"]
    assert prov["git_commit"] is None or len(prov["git_commit"]) == 40
    # the hash is that of the pairs the sweep walked: every ordered class pair of the blobs' test split,
    # 6 pairs each, seed 0
    y_test = make_synthetic("blobs", seed=0).y_test
    assert run["pair_plan"] == plan_fingerprint(pair_plan(y_test, "all", max_pairs=6 * 9, seed=0))
    assert run["pair_plan"]["n_pairs"] == run["n_paths"] == 54


def test_sweep_resumes(sweep_dir, capsys):
    before = (sweep_dir / "runs" / "3x4_s0.json").read_text()
    assert main(SWEEP + ["--out", str(sweep_dir), "--no-plots"]) == 0
    err = capsys.readouterr().err
    assert err.count("skipped") == 2
    assert (sweep_dir / "runs" / "3x4_s0.json").read_text() == before


def test_sweep_remeasures_when_settings_change(tmp_path, capsys):
    argv = SWEEP[:3] + [
        "--archs",
        "2x4",
        "--seeds",
        "1",
        "--epochs",
        "1",
        "--pairs-per-class-pair",
        "3",
        "--n-boot",
        "10",
        "--method",
        "bisect",
        "--no-progress",
        "--no-plots",
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 0
    capsys.readouterr()
    argv[argv.index("--pairs-per-class-pair") + 1] = "4"
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "checkpoint found, training skipped" in err and "done before" not in err
    row = json.loads((tmp_path / "runs" / "2x4_s1.json").read_text())
    assert row["n_paths"] == 4 * 9


def test_measure_json_and_out(sweep_dir, tmp_path, capsys):
    ckpt = str(sweep_dir / "models" / "3x4_s0.pt")
    argv = [
        "measure",
        "--model",
        ckpt,
        "--data",
        "blobs",
        "--method",
        "bisect",
        "--json",
        "--per-layer",
        "--ci",
        "--n-boot",
        "20",
        "--no-progress",
        "--out",
        str(tmp_path / "m"),
    ]
    assert main(argv) == 0
    res = json.loads(capsys.readouterr().out)
    for k in ("phi", "phi_max", "fraction_folded", "n_paths", "class_pairs", "ci95", "per_layer"):
        assert k in res
    assert res["pairs"] == "inter-class" and len(res["class_pairs"]) == 6
    assert sum(r["n_paths"] for r in res["class_pairs"]) == res["n_paths"]
    assert json.loads((tmp_path / "m" / "measure.json").read_text())["phi"] == res["phi"]
    assert len(list(csv.DictReader((tmp_path / "m" / "class_pairs.csv").read_text().splitlines()))) == 6


def test_measure_text_and_pair_modes(sweep_dir, capsys):
    ckpt = str(sweep_dir / "models" / "3x4_s0.pt")
    assert (
        main(
            [
                "measure",
                "--model",
                ckpt,
                "--data",
                "blobs",
                "--method",
                "uniform",
                "--steps",
                "50",
                "--pairs",
                "all",
                "--max-pairs",
                "45",
                "--no-progress",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "Φ_N" in out and "share of folded paths" in out
    pytest.importorskip("sklearn")
    assert (
        main(
            [
                "measure",
                "--model",
                ckpt,
                "--data",
                "blobs",
                "--method",
                "bisect",
                "--pairs",
                "centroids",
                "--n-clusters",
                "2",
                "--json",
                "--no-progress",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["n_paths"] == 2 * 2 * 6


def test_bad_input_exit_2(sweep_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SPACEFOLD_DATA", raising=False)  # "no data directory" must be reached
    ckpt = str(sweep_dir / "models" / "3x4_s0.pt")
    err = _one_line_error(capsys, ["measure", "--model", str(tmp_path / "none.pt"), "--data", "blobs"])
    assert "none.pt" in err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    assert "bad.pt" in _one_line_error(capsys, ["measure", "--model", str(bad), "--data", "blobs"])
    assert "cifar" in _one_line_error(capsys, ["measure", "--model", ckpt, "--data", "cifar"])
    assert "data_dir" in _one_line_error(capsys, ["measure", "--model", ckpt, "--data", "mnist"])
    assert "MNIST files not found" in _one_line_error(
        capsys, ["measure", "--model", ckpt, "--data", "mnist", "--data-dir", str(tmp_path)]
    )
    assert "--pairs" in _one_line_error(capsys, ["measure", "--model", ckpt, "--data", "blobs", "--pairs", "x"])
    assert "--method" in _one_line_error(capsys, ["measure", "--model", ckpt, "--data", "blobs", "--method", "x"])
    assert "--max-pairs" in _one_line_error(capsys, ["measure", "--model", ckpt, "--data", "blobs", "--max-pairs", "0"])
    other = save_checkpoint(mlp("2x4", 5, 3), tmp_path / "five.pt")
    assert "5 input features" in _one_line_error(capsys, ["measure", "--model", str(other), "--data", "blobs"])
    assert "--archs" in _one_line_error(capsys, SWEEP[:3] + ["--archs", "3y4", "--out", str(tmp_path / "s")])
    assert "--epochs" in _one_line_error(capsys, SWEEP[:3] + ["--epochs", "0", "--out", str(tmp_path / "s")])
    f = tmp_path / "file"
    f.write_text("x")
    assert "--out" in _one_line_error(capsys, SWEEP + ["--out", str(f)])


def test_depth_trend_oracle():
    rows = [
        {"depth": d, "test_accuracy": acc, "phi": v}
        for d, acc, v in [(1, 0.99, 0.0), (2, 0.98, 0.1), (2, 0.97, 0.2), (3, 0.97, 0.3), (3, 0.5, 0.0)]
    ]
    t = depth_trend(rows, min_accuracy=0.9)
    assert t["n_runs"] == 4 and t["median_by_depth"] == {1: 0.0, 2: pytest.approx(0.15), 3: 0.3}
    assert t["medians_increase"] and t["spearman_depth"] == pytest.approx(0.9486832980505138)
    t_all = depth_trend(rows, 0.0)
    assert t_all["median_by_depth"][3] == pytest.approx(0.15)
    flat = depth_trend([{"depth": 1, "test_accuracy": 1.0, "phi": 0.1}], 0.0)
    assert math.isnan(flat["spearman_depth"])
    assert t["note"] is None and t_all["note"] is None


def test_depth_trend_says_why_it_is_empty_or_undefined():
    def rows(*runs):
        return [{"depth": d, "test_accuracy": acc, "phi": v} for d, acc, v in runs]

    none = depth_trend(rows((1, 0.38, 0.0), (2, 0.10, 0.1)), 0.9)
    assert none["median_by_depth"] == {} and math.isnan(none["spearman_depth"])
    assert none["note"] == (
        "no run of 2 reached test accuracy >= 0.90 (the best reached 0.3800): train longer "
        "(more epochs) or lower the accuracy threshold"
    )
    one_depth = depth_trend(rows((2, 0.95, 0.1), (2, 0.5, 0.3), (1, 0.5, 0.0)), 0.9)
    assert one_depth["median_by_depth"] == {2: 0.1}
    assert one_depth["note"] == (
        "the 1 run(s) with test accuracy >= 0.90 all have depth 2: a trend needs runs at two depths or more"
    )
    two_runs = depth_trend(rows((1, 0.95, 0.0), (2, 0.95, 0.1)), 0.9)
    assert two_runs["note"] == "a rank correlation needs 3 runs or more with test accuracy >= 0.90, got 2"
    constant = depth_trend(rows((1, 0.95, 0.2), (2, 0.95, 0.2), (3, 0.95, 0.2)), 0.9)
    assert math.isnan(constant["spearman_depth"])
    assert (
        constant["note"] == "phi is the same in every run with test accuracy >= 0.90, so it has no rank correlation "
        "with depth"
    )
    assert depth_trend([], 0.9)["note"] == "no run finished"


def test_short_sweep_says_why_there_is_no_trend(tmp_path, capsys):
    argv = SWEEP[:3] + [
        "--archs",
        "2x3",
        "--seeds",
        "0",
        "--epochs",
        "1",
        "--pairs-per-class-pair",
        "2",
        "--n-boot",
        "5",
        "--method",
        "bisect",
        "--no-progress",
        "--no-plots",
        "--min-accuracy",
        "0",
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("Φ_N by depth"))
    assert line.endswith(
        "; no Spearman ρ(depth, Φ_N): the 1 run(s) with test accuracy >= 0.00 all have depth 2: "
        "a trend needs runs at two depths or more"
    )
    assert "nan" not in out.lower()


class _Bar:
    """Stands in for tqdm: records every bar made, its total and how far it got."""

    made: list = []

    def __init__(self, iterable=None, total=None, desc=None, **kw):
        self.iterable, self.total, self.desc, self.n, self.closed = iterable, total, desc, 0, False
        _Bar.made.append(self)

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.n += 1

    def update(self, n=1):
        self.n += n

    def close(self):
        self.closed = True

    @staticmethod
    def external_write_mode(file=None, nolock=False):
        import contextlib

        return contextlib.nullcontext()


def test_sweep_shows_one_bar_per_stage(tmp_path, capsys, monkeypatch):
    """Two runs: one training bar over both runs' epochs and one measuring bar over both runs' paths, each full
    at the end; started again with nothing left to do, no bar at all."""
    pytest.importorskip("tqdm")
    import tqdm.auto

    monkeypatch.setattr(tqdm.auto, "tqdm", _Bar)
    monkeypatch.setattr(_Bar, "made", [])
    argv = [a for a in SWEEP if a != "--no-progress"] + ["--out", str(tmp_path), "--no-plots"]
    assert main(argv) == 0
    bars = {b.desc: b for b in _Bar.made}
    assert len(_Bar.made) == 2 and set(bars) == {"training", "measuring"}
    assert bars["training"].total == bars["training"].n == 2 * 2  # 2 runs x 2 epochs
    assert bars["measuring"].total == bars["measuring"].n == 2 * 6 * 9  # 2 runs x 54 paths (blobs: 3 classes)
    assert all(b.closed for b in _Bar.made)
    assert "skipped" not in capsys.readouterr().err
    _Bar.made.clear()
    assert main(argv) == 0
    assert _Bar.made == [] and capsys.readouterr().err.count("done before, skipped") == 2


@pytest.mark.parametrize(
    "archs,settings,needle",
    [
        (["0"], {}, "hidden layer"),
        (["3x4", "0"], {}, "hidden layer"),
        (["3x4"], {"lr": float("inf")}, "lr"),
        (["3x4"], {"n_boot": 0}, "n_boot"),
        (["3x4"], {"steps": 0}, "steps"),
        (["3x4"], {"method": "walk"}, "method"),
    ],
)
def test_run_study_refuses_before_training(tmp_path, monkeypatch, archs, settings, needle):
    from spacefold.data import make_synthetic
    from spacefold.errors import InputError
    from spacefold.models import train as train_module
    from spacefold.studies.depth import StudySettings, run_study

    monkeypatch.setattr(train_module, "train_mlp", lambda *a, **k: pytest.fail("trained"))
    data = make_synthetic("blobs", n_samples=60)
    with pytest.raises(InputError, match=needle):
        run_study(data, archs, [0], tmp_path / "s", StudySettings(**settings))
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_full_demo(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--json", "--no-progress"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert len(res["by_arch"]) == 6
    by = {r["arch"]: r for r in res["by_arch"]}
    assert by["1x60"]["phi"] == 0.0  # one hidden layer never folds
    assert by["3x20"]["test_accuracy"] > 0.9
    assert (tmp_path / "plots" / "phi-vs-depth.png").is_file()
    assert len(list(csv.DictReader((tmp_path / "results.csv").read_text().splitlines()))) == 18
    assert torch.load(tmp_path / "models" / "3x20_s0.pt", weights_only=True)["format"] == "spacefold-mlp"
