"""Figures: one style (palette, dpi, formats, captions), path and plane pictures, the plot command."""

import struct

import numpy as np
import pytest
import torch
from torch import nn

import spacefold as sf
from spacefold.cli import main
from spacefold.errors import InputError
from spacefold.viz.plot import OKABE_ITO, PNG_DPI, path_curves, plot_path, plot_plane, save_figure

pytest.importorskip("matplotlib")


def _png_dpi(path):
    data = path.read_bytes()
    i = data.find(b"pHYs")
    ppm = struct.unpack(">I", data[i + 4 : i + 8])[0]
    return ppm * 0.0254


def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3)).double().eval()


def test_path_curves_against_the_walk():
    net = _net()
    x1, x2 = torch.randn(2, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    c = path_curves(net, x1, x2)
    f = sf.folding(net, x1, x2, method="exact")
    assert c["method"] == "exact" and c["n_regions"] == f.n_regions
    assert np.allclose(c["profile"], f.profile.numpy())
    # the layers' bands add up to the walk's r1 (end) and r2 (total travelled)
    assert c["hd"][-1] == f.r1 and c["travelled"][-1] == f.r2
    assert c["hd_layers"].shape == (2, f.n_regions) and c["layer_names"] == ["1", "3"]
    assert (np.diff(c["travelled"]) >= 1).all()  # consecutive patterns differ
    # not piecewise linear: bisection
    gelu = nn.Sequential(nn.Linear(5, 4), nn.GELU(), nn.Linear(4, 2)).double()
    assert path_curves(gelu, x1, x2)["method"] == "bisect"


def test_plot_path_and_plane_style(tmp_path):
    net = _net()
    x = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    fig = plot_path(net, x[0], x[1], data="toy")
    assert "toy" in fig._suptitle.get_text() and "1 segment" in fig._suptitle.get_text()
    assert any("No error bars" in t.get_text() for t in fig.texts)
    paths = save_figure(fig, tmp_path / "p.png", ("png", "svg", "pdf"))
    assert [p.suffix for p in paths] == [".png", ".svg", ".pdf"]
    assert _png_dpi(paths[0]) == pytest.approx(PNG_DPI, abs=1)
    assert paths[1].read_text().lstrip().startswith("<?xml") and paths[2].read_bytes()[:4] == b"%PDF"
    fig = plot_plane(net, x[0], x[1], x[2])
    colours = {c.get_color() for c in fig.axes[0].lines}
    assert OKABE_ITO[3] in colours  # the segment
    assert any("exact polygons" in t.get_text() for t in fig.texts)
    with pytest.raises(InputError, match="format"):
        save_figure(fig, tmp_path / "p.gif")


def test_plot_plane_cantornet_and_raster():
    fig = plot_plane(sf.cantornet(2, "A"))
    assert any("exact polygons" in t.get_text() for t in fig.texts)
    fig = plot_plane(sf.cantornet(1, "B"), resolution=60)
    assert any("60x60 raster" in t.get_text() for t in fig.texts)
    with pytest.raises(InputError, match="x0, x1, x2 must be given"):
        plot_plane(_net())
    with pytest.raises(InputError, match="reference"):
        plot_plane(sf.cantornet(1, "A"), reference="x0")


def test_lazy_exports():
    assert sf.plot_path is plot_path and sf.plot_plane is plot_plane


def test_plot_command(tmp_path, capsys):
    ck = tmp_path / "m.pt"
    sf.save_checkpoint(sf.mlp("2x8", 64, 10), ck)
    out = tmp_path / "path.png"
    assert main(["plot", "path", "--model", str(ck), "--data", "digits", "-o", str(out)]) == 0
    assert out.stat().st_size > 5000
    assert (
        main(
            [
                "plot",
                "plane",
                "--model",
                str(ck),
                "--data",
                "digits",
                "--index",
                "0",
                "1",
                "2",
                "-o",
                str(tmp_path / "plane.png"),
                "--format",
                "png",
                "svg",
            ]
        )
        == 0
    )
    assert (tmp_path / "plane.svg").is_file() and (tmp_path / "plane.png").is_file()
    capsys.readouterr()
    assert (
        main(
            [
                "plot",
                "plane",
                "--model",
                str(ck),
                "--data",
                "digits",
                "--index",
                "0",
                "1",
                "-o",
                str(tmp_path / "x.png"),
            ]
        )
        == 2
    )
    assert "--index must give 3 indices" in capsys.readouterr().err
    assert main(["plot", "path", "--model", str(ck), "--data", "blobs", "-o", str(tmp_path / "x.png")]) == 2
    assert "input features" in capsys.readouterr().err


def _edge_is_blank(png_bytes: bytes) -> bool:
    """True when the outermost rows and columns of the image are the white background."""
    import io

    import matplotlib.image as mpimg

    img = mpimg.imread(io.BytesIO(png_bytes), format="png")[..., :3]
    edges = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    return bool((edges > 0.99).all())


def test_saved_and_shown_figures_are_not_clipped(tmp_path):
    """Legends beside the axes and wide captions stay inside the image (saved and in notebooks)."""
    net = _net()
    x = torch.randn(2, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    fig = plot_path(net, x[0], x[1], data="toy")
    (p,) = save_figure(fig, tmp_path / "p.png")
    assert _edge_is_blank(p.read_bytes())
    shown = fig._repr_png_()  # what Jupyter displays for a figure that is a cell's value
    assert shown[:8] == b"\x89PNG\r\n\x1a\n" and _edge_is_blank(shown)
    plane = plot_plane(net, x[0], x[1], torch.zeros(5, dtype=torch.float64))
    assert _edge_is_blank(plane._repr_png_())


def test_study_titles_count_the_paths_walked():
    from spacefold.viz.study_plots import _study_context

    rows = [
        {
            "arch": a,
            "depth": d,
            "seed": s,
            "n_paths": 20000,
            "n_inter_class_paths": 18000,
            "settings": {"data": {"name": "digits"}},
        }
        for a, d in (("1x60", 1), ("2x30", 2))
        for s in (0, 1)
    ]
    assert _study_context(rows) == "digits, MLPs 1x60 ... 2x30, 2 seeds, 20000 paths walked per run (18000 inter-class)"
    # records without the total (older ones) say what they hold
    assert (
        _study_context([{"arch": "3x20", "depth": 3, "seed": 0, "n_inter_class_paths": 900}])
        == "MLPs 3x20, 1 seeds, 900 inter-class paths per run"
    )
