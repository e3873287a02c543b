"""spacefold sweep with the folding regulariser (--regularize LAMBDA --schedule ...) and the study settings' key."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from spacefold.cli import main
from spacefold.errors import InputError, InputTypeError
from spacefold.studies.depth import RegularizerSettings, StudySettings

SWEEP = [
    "sweep",
    "--data",
    "blobs",
    "--archs",
    "2x8",
    "--seeds",
    "1",
    "--epochs",
    "2",
    "--batch-size",
    "32",
    "--lr",
    "1e-2",
    "--pairs-per-class-pair",
    "3",
    "--n-boot",
    "10",
    "--method",
    "bisect",
    "--no-progress",
    "--no-plots",
]
REG = ["--regularize", "0.5", "--schedule", "every:2", "--probe-pairs", "64", "--pairs-per-step", "4"]


def _old_key(d: dict) -> str:
    """The settings key as it was computed before the regulariser was a setting: the hash of every field."""
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def test_plain_key_is_the_one_of_before():
    old_fields = {
        "epochs": 30,
        "lr": 1e-3,
        "batch_size": 128,
        "method": "exact",
        "steps": 100,
        "pairs_per_class_pair": 1000,
        "pair_seed": 0,
        "n_boot": 500,
        "per_layer": True,
        "data": {},
    }
    assert StudySettings().key() == _old_key(old_fields)
    assert StudySettings().as_dict() == old_fields
    # the key recorded in experiments/results/mnist-depth/runs/*.json by the MNIST depth study
    mnist = {
        "name": "mnist",
        "n_train": 60000,
        "n_test": 10000,
        "n_features": 784,
        "n_classes": 10,
        "source": "MNIST IDX files",
    }
    assert StudySettings(pairs_per_class_pair=3000, data=mnist).key() == "ebeb22af94d2c94d"
    # λ = 0 is plain training, whatever the other options of the regulariser
    off = StudySettings(regularizer=RegularizerSettings(0.0, schedule="every:3", beta=2.0))
    assert off.key() == StudySettings().key() and "regularizer" not in off.as_dict()


def test_key_names_the_regulariser():
    on = StudySettings(regularizer=RegularizerSettings(0.1)).check()
    assert on.key() != StudySettings().key()
    assert on.as_dict()["regularizer"]["lam"] == 0.1
    assert StudySettings(regularizer=RegularizerSettings(0.2)).key() != on.key()
    assert StudySettings(regularizer=RegularizerSettings(0.1, schedule="early:0.5")).key() != on.key()
    same = StudySettings(regularizer=RegularizerSettings(0.1, schedule=" ALWAYS ")).check()
    assert same.key() == on.key()
    a = StudySettings(regularizer=RegularizerSettings(0.1, schedule="EARLY:0.50")).check()
    b = StudySettings(regularizer=RegularizerSettings(0.1, schedule="early:.5")).check()
    assert a.regularizer.schedule == "early:0.5" and a.key() == b.key()


@pytest.mark.parametrize(
    "kw,err,needle",
    [
        ({"lam": -0.1}, InputError, "lam"),
        ({"lam": float("nan")}, InputError, "lam"),
        ({"lam": "1"}, InputTypeError, "lam"),
        ({"lam": 1, "schedule": "sometimes"}, InputError, "schedule"),
        ({"lam": 1, "schedule": "early:0"}, InputError, "F"),
        ({"lam": 1, "method": "walk"}, InputError, "method"),
        ({"lam": 1, "n_points": 2}, InputError, "n_points"),
        ({"lam": 1, "beta": 0.0}, InputError, "beta"),
        ({"lam": 1, "probe_pairs": 0}, InputError, "probe_pairs"),
        ({"lam": 1, "every_steps": 1.5}, InputTypeError, "every_steps"),
    ],
)
def test_regularizer_settings_refused(kw, err, needle):
    with pytest.raises(err, match=needle):
        StudySettings(regularizer=RegularizerSettings(**kw)).check()


def test_grid_takes_two_points():
    assert RegularizerSettings(1.0, method="grid", n_points=2).check().n_points == 2


def _weights(path) -> list[torch.Tensor]:
    from spacefold.models import load_checkpoint

    return [p.detach().clone() for p in load_checkpoint(path).parameters()]


@pytest.fixture(scope="module")
def plain_and_reg(tmp_path_factory):
    plain, reg = tmp_path_factory.mktemp("plain"), tmp_path_factory.mktemp("reg")
    assert main(SWEEP + ["--out", str(plain)]) == 0
    assert main(SWEEP + REG + ["--out", str(reg), "--json"]) == 0
    return plain, reg


def test_sweep_trains_with_the_folding_loss(plain_and_reg, capsys):
    from spacefold.data import make_synthetic
    from spacefold.models.train import train_mlp

    plain, reg = plain_and_reg
    row = json.loads((reg / "runs" / "2x8_s1.json").read_text())
    assert row["regularizer"]["lam"] == 0.5 and row["regularizer"]["schedule"] == "every:2"
    assert row["regularizer"]["n_probe"] == 64 and row["regularizer"]["pairs_per_step"] == 4
    assert row["settings"]["regularizer"]["lam"] == 0.5
    assert json.loads((plain / "runs" / "2x8_s1.json").read_text())["regularizer"] is None
    meta = json.loads((reg / "models" / "2x8_s1.pt.json").read_text())["metadata"]
    assert meta["regularizer"] == row["regularizer"]
    on, off = meta["training"]["reg_loss"]  # every:2 of 2 epochs: on in the first, off in the second
    assert on > 0 and off == 0.0
    # same seed, same initialisation and shuffling: only the loss differs
    w_plain, w_reg = _weights(plain / "models" / "2x8_s1.pt"), _weights(reg / "models" / "2x8_s1.pt")
    assert any(not torch.equal(a, b) for a, b in zip(w_plain, w_reg))
    # the run's regulariser is the one built by hand from the training split and the run's seed
    data = make_synthetic("blobs", seed=0)
    by_hand = RegularizerSettings(0.5, schedule="every:2", probe_pairs=64, pairs_per_step=4).build(
        data.x_train, data.y_train, seed=1
    )
    model, res = train_mlp("2x8", data, epochs=2, lr=1e-2, batch_size=32, seed=1, regularizer=by_hand)
    assert res.reg_loss == pytest.approx(meta["training"]["reg_loss"], rel=1e-6, abs=1e-9)
    for a, b in zip(model.parameters(), w_reg):
        torch.testing.assert_close(a.detach(), b, rtol=1e-6, atol=1e-7)


def test_resume_same_options_skips_other_lambda_retrains(tmp_path, plain_and_reg, capsys):
    import shutil

    _, reg = plain_and_reg
    out = tmp_path / "r"
    shutil.copytree(reg, out)
    capsys.readouterr()
    assert main(SWEEP + REG + ["--out", str(out)]) == 0
    assert "2x8_s1: done before, skipped" in capsys.readouterr().err
    other = REG.copy()
    other[1] = "0.25"
    assert main(SWEEP + other + ["--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "of another folding regulariser, trained again" in err and "done before" not in err
    assert "trained 2 epochs with the folding loss (λ=0.25, every:2)" in err
    assert json.loads((out / "runs" / "2x8_s1.json").read_text())["regularizer"]["lam"] == 0.25
    assert main(SWEEP + ["--out", str(out)]) == 0  # plain training: the regularised checkpoint is not reused
    err = capsys.readouterr().err
    assert "of training with the folding regulariser, trained again" in err
    assert json.loads((out / "runs" / "2x8_s1.json").read_text())["regularizer"] is None


def test_resume_plain_result_of_before(plain_and_reg, capsys):
    """A result written before the regulariser was a setting (no ``regularizer`` in the run nor the checkpoint)
    is still the plain run's; with --regularize it is trained again."""
    plain, _ = plain_and_reg
    res = plain / "runs" / "2x8_s1.json"
    row = json.loads(res.read_text())
    del row["regularizer"]
    res.write_text(json.dumps(row))
    capsys.readouterr()
    assert main(SWEEP + ["--out", str(plain)]) == 0
    assert "2x8_s1: done before, skipped" in capsys.readouterr().err
    assert main(SWEEP + ["--regularize", "0", "--schedule", "early:0.5", "--out", str(plain)]) == 0
    assert "2x8_s1: done before, skipped" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--regularize", "-1"], "--regularize"),
        (["--regularize", "nan"], "--regularize"),
        (["--regularize", "1", "--schedule", "sometimes"], "--schedule"),
        (["--regularize", "1", "--schedule", "early:0"], "--schedule"),
        (["--regularize", "1", "--schedule", "every:0"], "--schedule"),
        (["--regularize", "1", "--loss-method", "walk"], "--loss-method"),
        (["--regularize", "1", "--n-points", "1"], "--n-points"),
        (["--regularize", "1", "--n-points", "2"], "n_points"),  # random needs 3: refused before any training
        (["--regularize", "1", "--beta", "0"], "--beta"),
        (["--regularize", "1", "--probe-pairs", "0"], "--probe-pairs"),
        (["--regularize", "1", "--pairs-per-step", "0"], "--pairs-per-step"),
        (["--regularize", "1", "--every-steps", "x"], "--every-steps"),
    ],
)
def test_bad_regularizer_options_exit_2(tmp_path, capsys, extra, needle):
    assert main(SWEEP + extra + ["--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and needle in err
    assert not (tmp_path / "s").exists()


def test_help_names_the_options(capsys):
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    out = capsys.readouterr().out
    for opt in (
        "--regularize",
        "--schedule",
        "--loss-method",
        "--n-points",
        "--pairs-per-step",
        "--every-steps",
        "--beta",
        "--probe-pairs",
    ):
        assert opt in out
