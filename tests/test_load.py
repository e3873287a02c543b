"""load_model / load_data: every kind of model file and data set the CLI accepts, and their bad inputs."""

import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

import spacefold as sf
from spacefold.data.load import fit_input_shape, load_data, load_model
from spacefold.errors import InputError, InputTypeError


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 5), nn.LeakyReLU(0.1), nn.Linear(5, 3)).eval()


X = torch.randn(20, 4, generator=torch.Generator().manual_seed(1))


def _same_model(a, b):
    """Same outputs, same activation patterns, same exact walks."""
    assert torch.allclose(a(X), b(X), atol=1e-6)
    assert torch.equal(sf.activation_patterns(a, X), sf.activation_patterns(b, X))
    fa = sf.folding_batch(a, X[:10], X[10:], method="exact")
    fb = sf.folding_batch(b, X[:10], X[10:], method="exact")
    assert torch.equal(fa.n_regions, fb.n_regions) and torch.allclose(fa.chi, fb.chi)


def test_checkpoint(tmp_path):
    m = sf.mlp("6-5", 4, 3)
    sf.save_checkpoint(m, tmp_path / "m.pt")
    _same_model(m, load_model(tmp_path / "m.pt"))


def test_export_archive(tmp_path):
    m = _mlp()
    ep = torch.export.export(m, (X[:2],), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(ep, tmp_path / "m.pt2")
    loaded = load_model(tmp_path / "m.pt2")
    assert isinstance(loaded, torch.fx.GraphModule)
    _same_model(m, loaded)


def test_torchscript(tmp_path):
    m = _mlp()
    torch.jit.save(torch.jit.script(m), tmp_path / "m.ts")
    _same_model(m, load_model(tmp_path / "m.ts"))


def test_factory_with_weights(tmp_path, monkeypatch):
    (tmp_path / "mynets.py").write_text(
        textwrap.dedent("""
        from torch import nn
        def net():
            return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 5), nn.LeakyReLU(0.1), nn.Linear(5, 3))
        def not_a_module():
            return 3
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    m = _mlp()
    torch.save(m.state_dict(), tmp_path / "w.pt")
    _same_model(m, load_model("mynets:net", tmp_path / "w.pt"))
    with pytest.raises(InputTypeError, match="must return a torch.nn.Module, got int"):
        load_model("mynets:not_a_module")
    with pytest.raises(InputError, match="no attribute"):
        load_model("mynets:nothing")
    with pytest.raises(InputError, match="cannot import"):
        load_model("no_such_package_xyz:net")
    torch.save({"0.weight": torch.zeros(2, 2)}, tmp_path / "bad.pt")
    with pytest.raises(InputError, match="do not fit"):
        load_model("mynets:net", tmp_path / "bad.pt")
    sys.modules.pop("mynets", None)


def test_not_a_model(tmp_path):
    (tmp_path / "x.pt2").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not a torch.export archive"):
        load_model(tmp_path / "x.pt2")
    torch.save({"a": torch.zeros(2)}, tmp_path / "x.pt")
    with pytest.raises(InputError, match="neither a spacefold checkpoint"):
        load_model(tmp_path / "x.pt")
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.pt")


def _image_folder(root, classes=("cat", "dog", "ant"), n=4, size=(5, 3)):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in classes:
        d = root / c / "sub"
        d.mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(d / f"{i}.PNG")
    (root / "notes.txt").write_text("ignored")


def test_image_folder_layout_and_class_order(tmp_path):
    from PIL import Image

    _image_folder(tmp_path / "imgs")
    ds = load_data(tmp_path / "imgs", seed=0)
    assert ds.n_classes == 3 and ds.n_features == 3 * 3 * 5
    assert len(ds.y_train) + len(ds.y_test) == 12
    # ImageFolder's order: classes sorted by name -> ant 0, cat 1, dog 2; pixels in C, H, W order / 255
    a = np.asarray(Image.open(tmp_path / "imgs" / "ant" / "sub" / "0.PNG").convert("RGB"), dtype=np.float32) / 255
    flat = torch.from_numpy(a.transpose(2, 0, 1).reshape(-1))
    x = torch.cat([ds.x_train, ds.x_test])
    y = torch.cat([ds.y_train, ds.y_test])
    hit = (x == flat).all(1)
    assert hit.sum() == 1 and y[hit].item() == 0
    g = load_data(tmp_path / "imgs", grayscale=True, image_size=4)
    assert g.n_features == 16


def test_image_folder_train_test_split_and_errors(tmp_path):
    _image_folder(tmp_path / "s" / "train")
    _image_folder(tmp_path / "s" / "test", n=2)
    ds = load_data(tmp_path / "s")
    assert (len(ds.y_train), len(ds.y_test)) == (12, 6)
    _image_folder(tmp_path / "mixed", classes=("a",))
    _image_folder(tmp_path / "mixed2", classes=("b",), size=(4, 4))
    (tmp_path / "mixed2" / "b").rename(tmp_path / "mixed" / "b")
    with pytest.raises(InputError, match="one size"):
        load_data(tmp_path / "mixed")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    (tmp_path / "empty" / "b").mkdir()
    (tmp_path / "empty" / "b" / "x.png").write_bytes(b"not png")
    with pytest.raises(InputError, match="class folder 'a' holds no image"):
        load_data(tmp_path / "empty")
    (tmp_path / "empty" / "a" / "y.png").write_bytes(b"not png")
    with pytest.raises(InputError, match="cannot be read"):
        load_data(tmp_path / "empty")


def test_fit_input_shape():
    conv = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    x = torch.rand(5, 36)
    assert fit_input_shape(conv, x).shape == (5, 1, 6, 6)
    assert fit_input_shape(_mlp(), torch.rand(5, 4)).shape == (5, 4)
    with pytest.raises(InputError, match="takes 4 input features but the data has 7"):
        fit_input_shape(_mlp(), torch.rand(5, 7))
    with pytest.raises(InputError, match="none of the input shapes"):
        fit_input_shape(conv, torch.rand(5, 7))


def test_to_pandas():
    pd = pytest.importorskip("pandas")
    m = _mlp()
    b = sf.folding_batch(m, X[:10], X[10:], method="exact")
    df = b.to_pandas()
    assert isinstance(df, pd.DataFrame) and len(df) == 10
    assert np.allclose(df["chi"].to_numpy(), b.chi.numpy())
    g = sf.global_folding(m, X, torch.arange(20) % 2, pairs="all", max_pairs=30, seed=0)
    dg = g.to_pandas()
    assert len(dg) == g.n_paths and np.allclose(dg["chi"].to_numpy(), g.chi.numpy())


def test_cli_any_model_and_image_folder(tmp_path, monkeypatch, capsys):
    """measure and plot with a factory conv net + state_dict on an image folder, and with a .pt2
    archive; bad factories and archives exit 2 with one line."""
    from spacefold.cli import main

    (tmp_path / "convnets.py").write_text(
        textwrap.dedent("""
        from torch import nn
        def conv():
            return nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 4), nn.ReLU(),
                                 nn.Linear(4, 3))
        def broken():
            return "not a model"
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    _image_folder(tmp_path / "imgs", n=6, size=(6, 6))
    import convnets

    torch.manual_seed(0)
    torch.save(convnets.conv().state_dict(), tmp_path / "w.pt")
    out = tmp_path / "m"
    assert (
        main(
            [
                "measure",
                "--model",
                "convnets:conv",
                "--weights",
                str(tmp_path / "w.pt"),
                "--data",
                str(tmp_path / "imgs"),
                "--pairs",
                "all",
                "--no-progress",
                "--json",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    res = __import__("json").loads(capsys.readouterr().out)
    assert res["n_paths"] > 0 and res["method"] == "exact"
    assert (
        main(
            [
                "plot",
                "plane",
                "--model",
                "convnets:conv",
                "--weights",
                str(tmp_path / "w.pt"),
                "--data",
                str(tmp_path / "imgs"),
                "-o",
                str(out / "plane.png"),
            ]
        )
        == 0
    )
    assert (out / "plane.png").stat().st_size > 5000
    capsys.readouterr()
    assert main(["measure", "--model", "convnets:broken", "--data", str(tmp_path / "imgs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "must return a torch.nn.Module, got str" in err[0]
    (tmp_path / "bad.pt2").write_bytes(b"PK not really")
    assert (
        main(["plot", "path", "--model", str(tmp_path / "bad.pt2"), "--data", "digits", "-o", str(tmp_path / "x.png")])
        == 2
    )
    assert "not a torch.export archive" in capsys.readouterr().err
    m = _mlp()
    ep = torch.export.export(
        nn.Sequential(nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 10)),
        (torch.zeros(2, 64),),
        dynamic_shapes=({0: torch.export.Dim("batch")},),
    )
    torch.export.save(ep, tmp_path / "d.pt2")
    assert (
        main(["plot", "path", "--model", str(tmp_path / "d.pt2"), "--data", "digits", "-o", str(tmp_path / "d.svg")])
        == 0
    )
    assert (tmp_path / "d.svg").is_file()
    sys.modules.pop("convnets", None)
    del m
