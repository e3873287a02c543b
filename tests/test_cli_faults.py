"""The command line at its edges: arguments refused by argparse (exit 2, one line), strict
JSON, --out checked before any computation, resumed sweeps that check their checkpoints,
bugs that keep their traceback, and fuzzed argument lists that never end in a traceback."""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import spacefold.cli as cli
from spacefold.cli import (
    UsageError,
    finite_float,
    float_in,
    fraction,
    hidden_arch,
    int_in,
    main,
    nonnegative_float,
    output_dir,
    positive_float,
    positive_int,
    probability,
)
from spacefold.cli import cantornet as cli_cantornet
from spacefold.cli._args import _emit_json
from spacefold.data import DataError
from spacefold.errors import InputError
from spacefold.models import CheckpointError, mlp, save_checkpoint

FUZZ = settings(
    max_examples=int(os.environ.get("SPACEFOLD_FUZZ", 100)),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
TINY_SWEEP = [
    "sweep",
    "--data",
    "blobs",
    "--epochs",
    "1",
    "--batch-size",
    "64",
    "--pairs-per-class-pair",
    "2",
    "--n-boot",
    "5",
    "--method",
    "bisect",
    "--no-progress",
    "--no-plots",
]


def _exit_2(capsys, argv, needle: str) -> str:
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err and needle in lines[0], err
    return lines[0]


def _no_computation(monkeypatch):
    """Make training and measuring fail loudly: a test using this proves they never start."""

    def boom(*a, **k):
        raise AssertionError("computation started")

    for module, name in [
        ("spacefold.models.train", "train"),
        ("spacefold.studies.depth", "run_study"),
        ("spacefold._core.global_folding", "global_folding"),
        ("spacefold.models.mlp", "load_checkpoint"),
    ]:
        monkeypatch.setattr(importlib.import_module(module), name, boom)


# --------------------------------------------------------------------------- argument types


def test_type_helpers():
    assert finite_float("1e-3") == 1e-3 and finite_float("-2") == -2.0
    assert positive_float("3") == 3.0 and nonnegative_float("0") == 0.0
    assert fraction("1") == 1.0 and fraction("0") == 0.0 and probability("0") == 0.0
    assert positive_int("7") == 7 and int_in(2, 4)("4") == 4
    assert hidden_arch(" 3x20 ") == "3x20" and hidden_arch("30,20") == "30-20" and hidden_arch("2-2") == "2x2"
    assert float_in(-1, 1, lo_open=True)("1") == 1.0
    for fn, bad in [
        (finite_float, "nan"),
        (finite_float, "inf"),
        (finite_float, "-inf"),
        (finite_float, "x"),
        (positive_float, "0"),
        (positive_float, "inf"),
        (positive_float, "1e400"),
        (nonnegative_float, "-1e-300"),
        (fraction, "1.0001"),
        (fraction, "nan"),
        (probability, "1"),
        (positive_int, "0"),
        (positive_int, "1.5"),
        (positive_int, ""),
        (int_in(2, 4), "5"),
        (hidden_arch, "0"),
        (hidden_arch, "3y4"),
        (hidden_arch, "0x5"),
        (float_in(-1, 1, lo_open=True), "-1"),
    ]:
        with pytest.raises(argparse.ArgumentTypeError, match="must"):
            fn(bad)


def test_output_dir(tmp_path):
    assert output_dir(str(tmp_path / "new" / "deeper")) == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # checking creates nothing
    f = tmp_path / "file"
    f.write_text("x")
    for bad in (f, f / "sub"):
        with pytest.raises(argparse.ArgumentTypeError, match="is a file"):
            output_dir(str(bad))


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write to any directory")
def test_output_dir_not_writable(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(argparse.ArgumentTypeError, match="write"):
            output_dir(str(ro / "out"))
    finally:
        ro.chmod(0o700)


def test_error_classes_are_input_errors():
    for cls in (UsageError, DataError, CheckpointError):
        assert issubclass(cls, InputError)


# --------------------------------------------------------------------------- one test per defect


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--lr", "inf"], "--lr"),
        (["--lr", "nan"], "--lr"),
        (["--lr", "0"], "--lr"),
        (["--min-accuracy", "nan"], "--min-accuracy"),
        (["--min-accuracy", "1.5"], "--min-accuracy"),
        (["--archs", "0"], "--archs"),
        (["--archs", "3x4", "0x4"], "--archs"),
        (["--seeds", "-1"], "--seeds"),
        (["--epochs", "0"], "--epochs"),
        (["--method", "exactly"], "--method"),
        (["--n-train", "1"], "--n-train"),
        (["--steps", "0"], "--steps"),
        (["--n-boot", "0"], "--n-boot"),
        (["--data-seed", "-2"], "--data-seed"),
    ],
)
def test_sweep_arguments_refused_before_any_training(capsys, monkeypatch, tmp_path, argv, needle):
    _no_computation(monkeypatch)
    _exit_2(capsys, TINY_SWEEP + ["--out", str(tmp_path / "s")] + argv, needle)
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    "command", [TINY_SWEEP, ["demo", "--no-progress"], ["measure", "--model", "m.pt", "--data", "blobs"]]
)
def test_unwritable_out_is_found_before_the_computation(capsys, monkeypatch, tmp_path, command):
    _no_computation(monkeypatch)
    f = tmp_path / "file"
    f.write_text("x")
    _exit_2(capsys, command + ["--out", str(f / "results")], "--out")
    _exit_2(capsys, command + ["--out", str(f)], "--out")


def test_no_command_prints_usage_on_stderr(capsys):
    assert main([]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("usage: spacefold") and "a command is required" in err


def test_json_is_strict(capsys, tmp_path):
    # One architecture and one seed: the depth trend's Spearman correlation is NaN.
    assert main(TINY_SWEEP + ["--archs", "2x3", "--seeds", "0", "--out", str(tmp_path), "--json"]) == 0
    text = capsys.readouterr().out

    def refuse(name):
        raise AssertionError(f"bare {name} in the JSON output")

    res = json.loads(text, parse_constant=refuse)
    assert res["depth_trend"]["spearman_depth"] is None
    for p in [tmp_path / "results.json", *sorted((tmp_path / "runs").glob("*.json"))]:
        json.loads(p.read_text(), parse_constant=refuse)


def test_emit_json_maps_non_finite_to_null(capsys):
    _emit_json({"phi": math.nan, "ci": [-math.inf, 0.5], "n": 3})
    assert json.loads(capsys.readouterr().out) == {"phi": None, "ci": [None, 0.5], "n": 3}


def test_resumed_sweep_checks_what_a_checkpoint_is(capsys, tmp_path):
    assert main(TINY_SWEEP + ["--archs", "1x4", "--seeds", "0", "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    models = tmp_path / "models"
    shutil.copy(models / "1x4_s0.pt", models / "2x4_s0.pt")  # another architecture under the run's name
    shutil.copy(models / "1x4_s0.pt", models / "1x4_s1.pt")  # another seed under the run's name
    assert main(TINY_SWEEP + ["--archs", "2x4", "1x4", "--seeds", "0", "1", "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "2x4_s0: the checkpoint found is of architecture 1x4, not 2x4, trained again" in err
    assert "1x4_s1: the checkpoint found is of seed 0, not 1, trained again" in err
    assert "1x4_s0: done before, skipped" in err
    rows = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert {(r["arch"], r["seed"]) for r in rows} == {("2x4", 0), ("2x4", 1), ("1x4", 0), ("1x4", 1)}
    from spacefold.models import load_checkpoint

    _, meta = load_checkpoint(models / "2x4_s0.pt", with_metadata=True)
    assert (meta["arch"], meta["seed"]) == ("2x4", 0)
    # A result file of another run under a run's name is not taken either.
    runs = tmp_path / "runs"
    shutil.copy(runs / "1x4_s0.json", runs / "1x4_s1.json")
    assert main(TINY_SWEEP + ["--archs", "1x4", "--seeds", "1", "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "1x4_s1: checkpoint found, training skipped" in err and "done before" not in err
    assert json.loads((runs / "1x4_s1.json").read_text())["seed"] == 1


def test_checkpoint_errors_exit_2(capsys, tmp_path):
    p = save_checkpoint(mlp("1x4", 2, 3), tmp_path / "m.pt")
    import torch

    raw = torch.load(p, weights_only=True)
    raw["state_dict"]["net.0.weight"][0, 0] = float("nan")
    torch.save(raw, p)
    _exit_2(capsys, ["measure", "--model", str(p), "--data", "blobs"], "not finite")
    _exit_2(capsys, ["measure", "--model", str(tmp_path), "--data", "blobs"], "directory")


def test_model_the_method_cannot_walk_exits_2(capsys, tmp_path):
    p = save_checkpoint(mlp("2x3", 2, 3, activation="gelu"), tmp_path / "gelu.pt")
    _exit_2(capsys, ["measure", "--model", str(p), "--data", "blobs", "--max-pairs", "5", "--no-progress"], "bisect")


def test_bugs_keep_their_traceback(monkeypatch):
    """Only bad input is reported in one line; anything else propagates."""
    for exc in (
        ValueError("internal"),
        TypeError("internal"),
        KeyError("internal"),
        RuntimeError("internal"),
        OSError(5, "I/O error"),
    ):

        def broken(*a, exc=exc, **k):
            raise exc

        monkeypatch.setattr(cli_cantornet, "_cantornet_result", broken)
        with pytest.raises(type(exc)):
            main(["cantornet", "--method", "uniform"])


@pytest.mark.parametrize(
    "exc",
    [
        InputError("x must be y, got z"),
        FileNotFoundError("f not found"),
        IsADirectoryError("d is a directory"),
        NotADirectoryError("n"),
        PermissionError("p"),
        DataError("data"),
        CheckpointError("ckpt"),
    ],
)
def test_user_errors_exit_2(capsys, monkeypatch, exc):
    def broken(*a, **k):
        raise exc

    monkeypatch.setattr(cli_cantornet, "_cantornet_result", broken)
    _exit_2(capsys, ["cantornet"], str(exc).split()[0])


def test_multi_line_messages_are_kept_whole(capsys, monkeypatch):
    def broken(*a, **k):
        raise InputError("first part\n\tsecond part")

    monkeypatch.setattr(cli_cantornet, "_cantornet_result", broken)
    assert _exit_2(capsys, ["cantornet"], "first part").endswith("first part second part")


# --------------------------------------------------------------------------- fuzzing

VALUES = [
    "0",
    "1",
    "2",
    "-1",
    "3",
    "0.5",
    "1e-3",
    "nan",
    "inf",
    "-inf",
    "1e309",
    "",
    " ",
    "x",
    "A",
    "c",
    "exact",
    "BISECT",
    "uniform",
    "all",
    "random",
    "centroids",
    "inter-class",
    "3x4",
    "0",
    "0x5",
    "2-3",
    "1,2",
    "train",
    "test",
    "blobs",
    "--",
    "-",
    "é",
    "1 2",
    "1_0",
    "0x1",
    "+1",
    "٣",
]


def _options(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: [s for a in p._actions for s in a.option_strings] for name, p in sub.choices.items()}


OPTIONS = _options(cli.build_parser())
COMMANDS = sorted(OPTIONS)
ALL_OPTIONS = sorted({o for opts in OPTIONS.values() for o in opts} - {"-h", "--help"})


@st.composite
def argv_strategy(draw):
    words = []
    if draw(st.integers(0, 9)):
        words.append(draw(st.sampled_from(COMMANDS + ["nope", "-x", "--version"])))
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.integers(0, 5))
        if kind <= 2:
            cmd = words[0] if words and words[0] in OPTIONS else None
            pool = [o for o in OPTIONS[cmd] if o not in ("-h", "--help")] if cmd else ALL_OPTIONS
            words.append(draw(st.sampled_from(pool)))
        elif kind <= 4:
            words.append(draw(st.sampled_from(VALUES)))
        else:
            words.append(draw(st.text(max_size=6)))
    return words


@FUZZ
@given(argv_strategy())
def test_fuzz_argument_parsing(capsys, monkeypatch, tmp_path, argv):
    """Any argument list is parsed (the command then runs, stubbed here) or refused with exit 2."""
    monkeypatch.chdir(tmp_path)
    ran = []
    for command in ("cantornet", "measure", "sweep", "demo"):
        monkeypatch.setattr(
            importlib.import_module(f"spacefold.cli.{command}"), f"_cmd_{command}", lambda args: ran.append(args) or 0
        )
    try:
        rc = main(argv)
    except SystemExit as e:  # --version
        rc = e.code
        assert rc == 0
    out, err = capsys.readouterr()
    event(f"exit {rc}")
    assert rc in (0, 2) and "Traceback" not in err
    if rc == 2:
        assert not ran and err.strip().splitlines()[-1].startswith("spacefold")
    else:
        assert bool(ran) != ("--version" in argv)
    assert list(tmp_path.iterdir()) == []  # parsing writes nothing


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    np.savez(d / "tiny.npz", x=rng.normal(size=(16, 2)), y=np.arange(16) % 3)
    save_checkpoint(mlp("2x3", 2, 3, seed=0), d / "m.pt")
    return d


MEASURE_VALUES = {
    "--split": ["test", "train", "x"],
    "--n-test": ["1", "2", "5", "x"],
    "--pairs": ["inter-class", "all", "random", "centroids", "nope"],
    "--max-pairs": ["1", "2", "7", "0", "1.5"],
    "--n-clusters": ["1", "2", "50", "0"],
    "--method": ["exact", "bisect", "uniform", "Exact", "x"],
    "--steps": ["1", "3", "0", "nan"],
    "--seed": ["0", "3", "-1"],
    "--n-boot": ["1", "3", "0"],
    "--batch-size": ["1", "2", "1024", "0"],
    "--data-seed": ["0", "2", "-1"],
}
FLAGS = ["--per-layer", "--ci", "--json", "--no-progress"]


@FUZZ
@given(
    st.dictionaries(st.sampled_from(sorted(MEASURE_VALUES)), st.integers(0, 4), max_size=6),
    st.lists(st.sampled_from(FLAGS), unique=True),
)
def test_fuzz_measure_end_to_end(capsys, tiny, options, flags):
    argv = ["measure", "--model", str(tiny / "m.pt"), "--data", str(tiny / "tiny.npz"), "--no-progress"]
    for opt, k in options.items():
        argv += [opt, MEASURE_VALUES[opt][k % len(MEASURE_VALUES[opt])]]
    rc = main(argv + flags)
    out, err = capsys.readouterr()
    event(f"exit {rc}")
    assert rc in (0, 2), err
    if rc == 2:
        assert out == "" and len(err.strip().splitlines()) == 1
    elif "--json" in flags:
        json.loads(out, parse_constant=lambda c: pytest.fail(f"bare {c}"))


CANTOR_VALUES = {
    "--depth": ["1", "2", "3", "0", "11", "x"],
    "--representation": ["A", "b", "C", "D"],
    "--method": ["exact", "bisect", "uniform", "UNIFORM", "walk"],
    "--steps": ["1", "7", "0"],
    "--start": [["0", "0.75"], ["nan", "0"], ["1e300", "-1e300"], ["0.2", "0.1"]],
    "--end": [["1", "0.75"], ["0", "inf"], ["0.2", "0.1"], ["-3", "2"]],
    "--tol": ["1e-9", "0", "-1", "nan", "0.5"],
    "--tie-tol": ["0", "1e-9", "-1", "inf", "0.1"],
}


@FUZZ
@given(st.dictionaries(st.sampled_from(sorted(CANTOR_VALUES)), st.integers(0, 5), max_size=5), st.booleans())
def test_fuzz_cantornet_end_to_end(capsys, options, as_json):
    argv = ["cantornet"] + (["--json"] if as_json else [])
    for opt, k in options.items():
        v = CANTOR_VALUES[opt][k % len(CANTOR_VALUES[opt])]
        argv += [opt, *v] if isinstance(v, list) else [opt, v]
    rc = main(argv)
    out, err = capsys.readouterr()
    event(f"exit {rc}")
    assert rc in (0, 2), err
    if rc == 2:
        assert out == "" and len(err.strip().splitlines()) == 1
    elif as_json:
        json.loads(out, parse_constant=lambda c: pytest.fail(f"bare {c}"))


SWEEP_VALUES = {
    "--archs": [["1x3"], ["2x2", "1-2"], ["0"], ["3y"]],
    "--seeds": [["0"], ["1", "0"], ["-1"]],
    "--lr": ["1e-2", "1e30", "inf", "0"],
    "--batch-size": ["4", "1000", "0"],
    "--epochs": ["1", "0"],
    "--n-train": ["2", "3", "9", "1"],
    "--n-test": ["2", "3", "1"],
    "--method": ["exact", "bisect", "uniform"],
    "--steps": ["2", "0"],
    "--pairs-per-class-pair": ["1", "3", "0"],
    "--n-boot": ["1", "4", "0"],
    "--min-accuracy": ["0", "1", "0.5", "nan"],
    "--data-seed": ["0", "1"],
}


@settings(FUZZ, max_examples=int(os.environ.get("SPACEFOLD_FUZZ", 100)) // 4)
@given(st.dictionaries(st.sampled_from(sorted(SWEEP_VALUES)), st.integers(0, 3), max_size=6), st.booleans())
def test_fuzz_sweep_end_to_end(capsys, tmp_path_factory, tiny, options, as_json):
    argv = [
        "sweep",
        "--data",
        str(tiny / "tiny.npz"),
        "--epochs",
        "1",
        "--pairs-per-class-pair",
        "2",
        "--n-boot",
        "3",
        "--archs",
        "1x3",
        "--seeds",
        "0",
        "--no-progress",
        "--no-plots",
        "--out",
        str(tmp_path_factory.mktemp("s")),
    ]
    argv += ["--json"] if as_json else []
    for opt, k in options.items():
        v = SWEEP_VALUES[opt][k % len(SWEEP_VALUES[opt])]
        argv += [opt, *v] if isinstance(v, list) else [opt, v]
    rc = main(argv)
    out, err = capsys.readouterr()
    event(f"exit {rc}")
    assert rc in (0, 2), err
    if rc == 2:
        assert out == "" and err.strip().splitlines()[-1].startswith("spacefold sweep: error:")
    elif as_json:
        json.loads(out, parse_constant=lambda c: pytest.fail(f"bare {c}"))
