"""Inputs at their edges: zero-length and round-off-length segments of the folding loss, duplicate
list options, sizes checked before anything is allocated, and one clear line for each bad input."""

from __future__ import annotations

import math

import pytest
import torch

import spacefold as sf
from spacefold.training.regularize import folding_loss, point_segments, soft_chi


def _segments(dtype, n=64):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 2, generator=g, dtype=dtype)
    d = torch.randn(n, 2, generator=g, dtype=dtype)
    return x, d / d.abs().amax(1, keepdim=True)  # directions with max-norm 1


# --------------------------------------------------------------------------- zero-length segments


def test_point_segments_rule_by_hand():
    eps = torch.finfo(torch.float32).eps
    x1 = torch.tensor([[2.0, -1.0], [2.0, -1.0], [0.0, 0.0], [0.0, 0.0]])
    x2 = torch.tensor(
        [[2.0, -1.0 + 1.9 * math.sqrt(eps)], [2.0, -1.0 + 2.1 * math.sqrt(eps)], [0.0, 0.0], [0.0, 1e-30]]
    )
    # scale = 2 (the largest coordinate): a step of 1.9 √ε is within 2 √ε, 2.1 √ε is not;
    # the zero vector to itself is a point, the zero vector to 1e-30 is not (nothing to round)
    assert point_segments(x1, x2).tolist() == [True, False, True, False]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method", ["grid", "random", "exact"])
def test_zero_and_round_off_length_segments_have_loss_one_under_every_method(dtype, method):
    model = sf.mlp("3x20", 2, 3, seed=0).to(dtype)
    x, d = _segments(dtype)
    scale = x.abs().amax(1, keepdim=True)
    gen = torch.Generator().manual_seed(0)
    for x2 in (x.clone(), x + 0.5 * math.sqrt(torch.finfo(dtype).eps) * scale * d, x + 1e-3 * torch.finfo(dtype).eps):
        loss = folding_loss(model, x, x2, method=method, reduction="none", generator=gen)
        assert torch.equal(loss.detach(), torch.ones_like(loss)), (method, dtype, loss)
    # the docstring's promise, the same for the mean and for soft χ
    assert float(folding_loss(model, x, x, method=method, generator=gen).detach()) == 1.0
    assert torch.equal(soft_chi(model, x, x, method=method, generator=gen).detach(), torch.zeros(len(x), dtype=dtype))


@pytest.mark.parametrize("method", ["grid", "random"])
def test_segments_just_longer_than_the_rule_are_not_noise(method):
    """Above the rule, a segment in one region (exact walk: one region, so χ = 0) has loss 1 up to
    round-off in float32; without the rule the noise was up to 0.3 at relative length 1e-6."""
    from spacefold._core.folding import walk_batch

    model = sf.mlp("3x20", 2, 3, seed=0)
    x, d = _segments(torch.float32, 200)
    x2 = x + 4 * math.sqrt(torch.finfo(torch.float32).eps) * x.abs().amax(1, keepdim=True) * d
    assert not point_segments(x, x2).any()
    wb = walk_batch(model, x, x2, method="exact")
    one = (wb.offsets[1:] - wb.offsets[:-1]) == 1
    assert one.sum() > 150
    loss = folding_loss(model, x, x2, method=method, reduction="none", generator=torch.Generator().manual_seed(0))
    assert float((loss.detach()[one] - 1).abs().max()) < 1e-3


# --------------------------------------------------------------------------- duplicate list options


def _exit_2(capsys, argv, needle: str) -> str:
    from spacefold.cli import main

    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err and needle in lines[0], err
    return lines[0]


@pytest.mark.parametrize(
    "argv, option",
    [
        (["sweep", "--seeds", "0", "0"], "--seeds"),
        (["sweep", "--seeds", "0", "1", "0"], "--seeds"),
        (["sweep", "--archs", "3x20", "20-20-20"], "--archs"),  # one architecture in two spellings
        (["plot", "path", "--cantornet", "1", "--index", "1", "1", "-o", "x.png"], "--index"),
        (["plot", "path", "--cantornet", "1", "--format", "png", "PNG", "-o", "x.png"], "--format"),
        (["adversarial", "--model", "m.pt", "--data", "blobs", "--classes", "1", "1"], "--classes"),
        (["adversarial", "--model", "m.pt", "--data", "blobs", "--attacks", "fgsm", "FGSM"], "--attacks"),
    ],
)
def test_repeated_list_values_are_refused(capsys, monkeypatch, tmp_path, argv, option):
    monkeypatch.chdir(tmp_path)
    line = _exit_2(capsys, argv, option)
    assert "must be distinct" in line and "more than once" in line
    assert list(tmp_path.iterdir()) == []  # nothing trained, nothing written


def test_repeated_values_refused_by_the_api(tmp_path):
    from spacefold.data import make_synthetic
    from spacefold.errors import InputError
    from spacefold.studies.depth import run_study

    data = make_synthetic("blobs", seed=0)
    with pytest.raises(InputError, match="seeds must be distinct, got 0 more than once"):
        run_study(data, ["3x20"], [0, 0], tmp_path)
    with pytest.raises(InputError, match="archs must be distinct, got '3x20' more than once"):
        run_study(data, ["3x20", "20,20,20"], [0], tmp_path)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- sizes checked before allocation


@pytest.fixture(scope="module")
def blobs_model(tmp_path_factory):
    from spacefold.models import mlp, save_checkpoint

    path = tmp_path_factory.mktemp("m") / "model.pt"
    save_checkpoint(mlp("3x20", 2, 3, seed=0), path)
    return str(path)


def test_check_size_names_the_size_and_the_limit(monkeypatch):
    from spacefold import _util
    from spacefold.errors import InputError

    monkeypatch.setattr(_util, "physical_memory", lambda: 2 << 30)
    _util.check_size("steps", 10, 2 << 30, "the points")  # exactly the memory: allowed
    with pytest.raises(InputError) as err:
        _util.check_size("steps", 10**9, 3 << 30, "the points of one segment")
    assert str(err.value) == (
        "steps = 1000000000 would need 3.0 GiB for the points of one segment, more than the "
        "2.0 GiB of memory of this machine"
    )
    assert _util.physical_memory is not None


def test_physical_memory_is_the_machine_s():
    import os

    from spacefold._util import physical_memory

    assert physical_memory() == os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


@pytest.mark.parametrize(
    "argv, needle",
    [
        (
            ["measure", "--data", "blobs", "--method", "uniform", "--steps", "100000000000"],
            "steps = 100000000000 would need",
        ),
        (
            ["measure", "--data", "blobs", "--method", "uniform", "--steps", "10000", "--batch-size", "100000000"],
            "batch_size = 100000000 would need",
        ),
        (["measure", "--data", "blobs", "--ci", "--n-boot", "100000000000"], "n_boot = 100000000000 would need"),
        (["cantornet", "--method", "uniform", "--steps", "100000000000"], "steps = 100000000000 would need"),
    ],
)
def test_cli_sizes_refused_before_the_walks(capsys, monkeypatch, blobs_model, argv, needle):
    import importlib

    from spacefold import _util

    monkeypatch.setattr(_util, "physical_memory", lambda: 16 << 30)
    if argv[0] == "measure":
        argv = [argv[0], "--model", blobs_model, *argv[1:], "--no-progress"]
        monkeypatch.setattr(
            importlib.import_module("spacefold._core.walk.uniform"),
            "uniform_walks",
            lambda *a, **k: pytest.fail("walked"),
        )
    line = _exit_2(capsys, argv, needle)
    assert "16.0 GiB of memory of this machine" in line


def test_cli_train_sizes_refused_before_training(capsys, monkeypatch, tmp_path):
    from spacefold import _util

    monkeypatch.setattr(_util, "physical_memory", lambda: 16 << 30)
    out = tmp_path / "t"
    line = _exit_2(
        capsys,
        ["train", "--arch", "100000x100000", "--data", "blobs", "--out", str(out)],
        "arch = 100000x100000 would need",
    )
    assert "parameters" in line and not out.exists()
    pytest.importorskip("sklearn")
    line = _exit_2(
        capsys,
        ["train", "--arch", "3x20", "--data", "digits", "--n-train", "100000000", "--out", str(out)],
        "--n-train must be at most 1348",
    )
    assert "got 100000000" in line and not out.exists()
    _exit_2(capsys, ["sweep", "--data", "blobs", "--n-boot", "100000000000", "--out", str(out)], "n_boot = ")
    _exit_2(
        capsys,
        ["sweep", "--data", "blobs", "--method", "uniform", "--steps", "100000000000", "--out", str(out)],
        "steps = 100000000000 would need",
    )
    assert not out.exists()


def test_api_sizes_refused(monkeypatch):
    from spacefold import _util
    from spacefold.errors import InputError
    from spacefold.training.regularize import FoldingRegularizer

    monkeypatch.setattr(_util, "physical_memory", lambda: 16 << 30)
    model = sf.mlp("3x20", 2, 3, seed=0)
    x = torch.randn(8, 2)
    with pytest.raises(InputError, match=r"^n_points = 1000000000 would need .* for 1000000000 sample points"):
        folding_loss(model, x, x + 1, n_points=10**9)
    with pytest.raises(InputError, match=r"^arch = 100000x100000 would need"):
        sf.mlp("100000x100000", 2, 3)
    with pytest.raises(InputError, match=r"^n_points = 1000000000 would need"):
        FoldingRegularizer(x, x + 1, 1.0, n_points=10**9)
    monkeypatch.setenv("SPACEFOLD_MEMORY", str(17 << 30))
    with pytest.raises(InputError, match=r"^SPACEFOLD_MEMORY = 18253611008 would need"):
        sf.folding(model, x[0], x[1])


def test_workers_are_at_most_the_cores_and_checked_against_memory(monkeypatch):
    from spacefold import _util
    from spacefold._core import parallel
    from spacefold.errors import InputError

    seen = []
    monkeypatch.setattr(parallel, "cpu_count", lambda: 4)
    monkeypatch.setattr(parallel, "_pool_starting", lambda w: seen.append(w) or pytest.fail("pool started"))
    monkeypatch.setattr(_util, "physical_memory", lambda: 256 << 20)  # two workers' worth
    with pytest.raises(InputError, match=r"^workers = 4 would need 512.0 MiB for 4 worker processes"):
        parallel.map_ranges(lambda a, b, t: None, 0, 100_000, 100_000, min_size=256)
    assert seen == []


def test_small_memory_budgets_never_divide_by_zero(monkeypatch):
    """Budgets between 4 and 20 KB once ended in ZeroDivisionError (a sub-batch measured 0 bytes
    per path); each now walks or says the budget is too small."""
    from spacefold.errors import InputError

    model = sf.mlp("1x5", 2, 10, seed=0)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(60, 2, generator=g), torch.arange(60) % 10
    ref = sf.global_folding(model, x, y, workers=1, progress=False)
    walked = 0
    for mem in range(4000, 21000, 500):
        monkeypatch.setenv("SPACEFOLD_MEMORY", str(mem))
        try:
            g_ = sf.global_folding(model, x, y, workers=1, progress=False)
        except InputError as err:
            assert "SPACEFOLD_MEMORY" in str(err)
            continue
        walked += 1
        assert torch.equal(g_.chi, ref.chi)  # the same walks, whatever the budget
    assert walked > 10


# --------------------------------------------------------------------------- one clear line for each


def test_folding_metric_refuses_integer_chi():
    from spacefold.errors import InputTypeError
    from spacefold.training.metric import FoldingMetric

    m = FoldingMetric()
    with pytest.raises(InputTypeError, match=r"^chi must be a float tensor .* got dtype torch.int64"):
        m.update(torch.tensor([0, 0, 1]), torch.tensor([0.0, 0.5, 1.0]))
    with pytest.raises(InputTypeError, match=r"^max_profile must be a float tensor"):
        m.update(torch.tensor([0.0, 0.25]), torch.tensor([0, 1], dtype=torch.int32))
    m.update(torch.tensor([0.0, 0.25]), torch.tensor([0.0, 0.5]))  # floats: fine
    assert int(m.compute()["n_paths"]) == 2


def test_idx_header_with_a_zero_dimension_names_the_file(tmp_path):
    from spacefold.data import DataError, read_idx

    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 8, 3]) + (0).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2)
    with pytest.raises(DataError, match=r"holds no data: its header announces shape \(0, 28, 28\)") as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_factory_that_needs_arguments_is_one_line(capsys):
    line = _exit_2(
        capsys,
        ["measure", "--model", "spacefold.models:mlp", "--data", "blobs"],
        "the factory must be callable with no arguments",
    )
    assert "'arch'" in line


def test_report_out_under_a_file_is_one_line(capsys, tmp_path):
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "results.csv").write_text("arch,seed\n3x20,0\n")
    line = _exit_2(capsys, ["report", str(tmp_path), "-o", str(tmp_path / "a_file" / "r.html")], "is a file")
    assert str(tmp_path / "a_file") in line


def test_report_with_a_file_name_that_is_not_utf8(tmp_path):
    import os

    from spacefold.viz.report import write_report

    res = tmp_path / "res"
    res.mkdir()
    (res / "results.csv").write_text("arch,seed\n3x20,0\n")
    bad = os.path.join(os.fsencode(res), b"r\xffesults.csv")
    with open(bad, "w") as fh:
        fh.write("arch,seed\n3x20,0\n")
    out = write_report(res, tmp_path / "r.html")
    assert "r?esults.csv" in out.read_text(encoding="utf-8")


def test_plot_path_refuses_model_with_cantornet(capsys, blobs_model, tmp_path):
    _exit_2(
        capsys,
        ["plot", "path", "--model", blobs_model, "--cantornet", "2", "-o", str(tmp_path / "p.png")],
        "--cantornet 2 plots CantorNet, so --model/--weights cannot be given with it",
    )
    assert not (tmp_path / "p.png").exists()


def test_truncated_pt2_is_one_line(tmp_path):
    import subprocess
    import sys

    model = sf.mlp("3x20", 2, 3, seed=0)
    full = tmp_path / "m.pt2"
    torch.export.save(torch.export.export(model, (torch.randn(2, 2),)), full)
    cut = tmp_path / "cut.pt2"
    cut.write_bytes(full.read_bytes()[:3000])
    r = subprocess.run(
        [sys.executable, "-m", "spacefold", "measure", "--model", str(cut), "--data", "blobs"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [
        f"spacefold measure: error: model {cut} is not a torch.export archive "
        "(.pt2 from torch.export.save): File is not a zip file"
    ]


def test_missing_extra_is_one_line_exit_2(tmp_path):
    """matplotlib made unimportable in a fresh interpreter: plot names the extra to install."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from spacefold.cli import main\n"
        f"sys.exit(main(['plot', 'path', '--cantornet', '1', '-o', {str(tmp_path / 'p.png')!r}]))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [
        "spacefold plot: error: plots need matplotlib: pip install 'spacefold[plot]'"
    ]
    assert not (tmp_path / "p.png").exists()


def test_missing_extra_of_demo_is_one_line_exit_2(tmp_path):
    """scikit-learn made unimportable: demo names the extra to install and writes nothing."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['sklearn'] = None\n"
        "from spacefold.cli import main\n"
        f"sys.exit(main(['demo', '--out', {str(tmp_path / 'demo')!r}]))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [
        "spacefold demo: error: the digits data set needs scikit-learn: pip install 'spacefold[data]'"
    ]
    assert not (tmp_path / "demo").exists()


def test_missing_extra_is_still_an_import_error():
    from spacefold.errors import InputError, MissingExtraError

    assert issubclass(MissingExtraError, ImportError) and issubclass(MissingExtraError, InputError)


def _image_folder(root, sizes):
    from PIL import Image

    for c, size in zip(("a", "b"), sizes):
        (root / c).mkdir(parents=True)
        for k in range(4):
            Image.new("L", (size, size), color=40 * k).save(root / c / f"{k}.png")


def test_image_size_option_resizes_image_folders(capsys, tmp_path):
    pytest.importorskip("PIL")
    from spacefold.cli import main

    _image_folder(tmp_path / "imgs", (8, 6))
    line = _exit_2(
        capsys,
        ["train", "--arch", "4", "--data", str(tmp_path / "imgs"), "--out", str(tmp_path / "o")],
        "images must have one size",
    )
    assert "--image-size" in line
    rc = main(
        [
            "train",
            "--arch",
            "4",
            "--data",
            str(tmp_path / "imgs"),
            "--image-size",
            "5",
            "--epochs",
            "1",
            "--track-pairs",
            "2",
            "--out",
            str(tmp_path / "o"),
            "--no-progress",
            "--json",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0 and '"epochs"' in out
    from spacefold.models import load_checkpoint

    # every image resized to 5 x 5, read as RGB: 75 input features
    assert load_checkpoint(tmp_path / "o" / "model.pt").in_features == 5 * 5 * 3


def test_class_folders_without_images_say_what_was_found(capsys, tmp_path):
    for c in ("cats", "dogs"):
        (tmp_path / "d" / c).mkdir(parents=True)
        (tmp_path / "d" / c / "notes.txt").write_text("x")
    line = _exit_2(
        capsys,
        ["train", "--arch", "4", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "o")],
        "found 2 sub-folders (cats, dogs) but no image",
    )
    assert "MNIST files not found" not in line


def _traced(tmp_path, n_in):
    from torch import nn

    m = nn.Sequential(nn.Linear(n_in, 6), nn.ReLU(), nn.Linear(6, 3))
    path = tmp_path / f"ts{n_in}.pt"
    torch.jit.save(torch.jit.trace(m, torch.randn(2, n_in)), path)
    return path


def test_torchscript_input_size_mismatch_is_one_line(tmp_path):
    import subprocess
    import sys

    path = _traced(tmp_path, 5)
    r = subprocess.run(
        [sys.executable, "-m", "spacefold", "measure", "--model", str(path), "--data", "blobs"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [
        f"spacefold measure: error: model {path} does not take inputs of shape "
        "(2,) (its first layer takes 5 input features)"
    ]


def test_plot_plane_of_torchscript_warns_nothing(tmp_path):
    pytest.importorskip("matplotlib")
    import warnings

    from spacefold.cli import main

    path = _traced(tmp_path, 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["plot", "plane", "--model", str(path), "--data", "blobs", "-o", str(tmp_path / "p.png")]) == 0
    assert [str(w.message) for w in caught if issubclass(w.category, FutureWarning)] == []
    assert (tmp_path / "p.png").stat().st_size > 0


def test_adversarial_takes_torchscript_with_the_checkpoint_s_numbers(capsys, tmp_path):
    """The README says --model takes TorchScript: the same network as a checkpoint and as a
    TorchScript trace gives the same interaction table."""
    pytest.importorskip("torchattacks")
    import json

    from spacefold.cli import main
    from spacefold.data import make_synthetic
    from spacefold.models import save_checkpoint
    from spacefold.models.train import train

    data = make_synthetic("blobs", seed=0)
    model = sf.mlp("2x16", data.n_features, data.n_classes, seed=0)
    train(model, data.x_train, data.y_train, epochs=20, seed=0)
    save_checkpoint(model, tmp_path / "m.pt")
    model.eval()
    torch.jit.save(torch.jit.trace(model, data.x_test[:2]), tmp_path / "ts.pt")
    results = []
    for name in ("m.pt", "ts.pt"):
        argv = [
            "adversarial",
            "--model",
            str(tmp_path / name),
            "--data",
            "blobs",
            "--classes",
            "0",
            "1",
            "--attacks",
            "fgsm",
            "--eps",
            "0.5",
            "--max-pairs",
            "40",
            "--n-boot",
            "20",
            "--json",
        ]
        assert main(argv) == 0
        res = json.loads(capsys.readouterr().out)
        res.pop("model")
        results.append(res)
    assert results[0] == results[1]
    assert results[0]["n_pairs"] > 0 and results[0]["attacks"]["fgsm"]["attack_success"] > 0


@pytest.mark.parametrize("suffix", [".pt", ".pt2"])
def test_unflatten_in_a_converted_program_is_walked_as_the_reshape_it_is(tmp_path, suffix):
    """nn.Unflatten / flatten inside a TorchScript or torch.export program: the exact walk of the
    loaded program equals the exact walk of the plain module (which has nn.Unflatten as a module),
    and its patterns are those of plain forward passes inside each region."""
    from torch import nn

    from spacefold.data.load import load_model

    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Linear(4, 12), nn.ReLU(), nn.Unflatten(1, (3, 4)), nn.Flatten(), nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 2)
    ).double()
    ex = torch.randn(2, 4, dtype=torch.float64)
    path = tmp_path / f"m{suffix}"
    if suffix == ".pt":
        torch.jit.save(torch.jit.trace(m, ex), path)
    else:
        torch.export.save(torch.export.export(m, (ex,)), path)
    loaded = load_model(path, example=ex)
    g = torch.Generator().manual_seed(3)
    for _ in range(5):
        x1 = torch.randn(4, generator=g, dtype=torch.float64) * 3
        x2 = torch.randn(4, generator=g, dtype=torch.float64) * 3
        ref, got = sf.folding(m, x1, x2), sf.folding(loaded, x1, x2)
        assert got.n_regions == ref.n_regions and torch.allclose(got.walk.t, ref.walk.t)
        assert torch.equal(got.walk.patterns, ref.walk.patterns)
        # the oracle: plain forward passes of the original module at the middle of each region
        t = got.walk.t
        mid = (t + torch.cat([t[1:], torch.ones(1, dtype=t.dtype)])) / 2
        pts = (1 - mid[:, None]) * x1 + mid[:, None] * x2
        h1 = m[1](m[0](pts))
        h2 = m[5](m[4](m[3](m[2](h1))))
        bits = torch.cat([h1 > 0, h2 > 0], 1)
        assert torch.equal(got.walk.patterns.bool(), bits)


def test_write_errors_name_the_user_s_file_not_the_temporary_one(tmp_path):
    import errno

    from spacefold._util import atomic_path

    target = tmp_path / "out.json"
    with pytest.raises(OSError) as err:
        with atomic_path(target) as tmp:
            raise OSError(errno.ENOSPC, "No space left on device", tmp)
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(target)
    assert str(target) in str(err.value) and ".out." not in str(err.value)
    assert list(tmp_path.iterdir()) == []  # the temporary file is gone, no target written
