"""Figures (matplotlib, an optional dependency: ``pip install 'spacefold[plot]'``).

One style for every figure: the Okabe-Ito palette for lines and categories (safe for the
common colour-vision deficiencies), viridis for sequential quantities, titles that name the
data set, the model and the number of paths, a caption under every figure that explains
what its error bars are, and output as PNG (200 dpi) and/or SVG/PDF, chosen by the file's
suffix. Figures are drawn on ``matplotlib.figure.Figure`` objects with the Agg canvas (no
display, no global pyplot state) and saved atomically.

- :func:`plot_path`: one segment x1 -> x2: Hamming distance to the start, distance
  travelled (both as per-layer stacked bands) and the prefix χ against t, with the
  region boundaries (docs/method.md, 'The folding measure').
- :func:`plot_plane`: the plane through three inputs (or a 2-D input space such as
  CantorNet's square), every region coloured by its Hamming distance to one point's
  pattern, the segment drawn over it: a fold shows as colours that come back.
The figures of a depth study (``spacefold demo``/``sweep``) are in :mod:`spacefold.viz.study_plots`.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .._util import atomic_path, check_distinct
from ..errors import InputError, InputTypeError, MissingExtraError

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from torch import Tensor, nn

    from .._core.patterns import LayerSelector

__all__ = [
    "OKABE_ITO",
    "SEQUENTIAL",
    "PNG_DPI",
    "new_figure",
    "save_figure",
    "add_caption",
    "plot_path",
    "plot_paths",
    "plot_plane",
]

#: Okabe & Ito's colour-blind-safe qualitative palette (black last).
OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#D55E00", "#0072B2", "#CC79A7", "#F0E442", "#000000")
#: Sequential colour map (perceptually uniform, readable in grey and by colour-blind readers).
SEQUENTIAL = "viridis"
#: Resolution of PNG output.
PNG_DPI = 200
FORMATS = ("png", "svg", "pdf")


def new_figure(w: float = 6.0, h: float = 4.0):
    """A matplotlib Figure on the Agg canvas, in the spacefold style.

    It shows itself in Jupyter as the value of a cell (``_repr_png_``, laid out like a saved
    figure), without pyplot or ``%matplotlib inline``.
    """
    import types

    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingExtraError("plots need matplotlib: pip install 'spacefold[plot]'") from None
    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    setattr(fig, "_repr_png_", types.MethodType(_repr_png, fig))  # noqa: B010 - an attribute Figure does not declare
    return fig


def _repr_png(fig) -> bytes:
    """PNG bytes of ``fig`` as notebooks show it (100 dpi, everything inside the image)."""
    import io

    _layout(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", pad_inches=0.05, metadata={"Software": None})
    return buf.getvalue()


def colour(i: int, n: int | None = None):
    """The ``i``-th category colour: Okabe-Ito for up to 8 categories, viridis beyond."""
    if n is not None and n > len(OKABE_ITO):
        from matplotlib import colormaps

        return colormaps[SEQUENTIAL](i / max(n - 1, 1))
    return OKABE_ITO[i % len(OKABE_ITO)]


def add_caption(fig, text: str, width: int = 110) -> None:
    """A caption under the axes (wrapped), e.g. what the error bars are."""
    lines = textwrap.wrap(text, width)
    fig.text(0.01, 0.005, "\n".join(lines), ha="left", va="bottom", fontsize=7, color="0.25")
    fig._spacefold_caption_lines = len(lines)


def _layout(fig) -> None:
    n = getattr(fig, "_spacefold_caption_lines", 0)
    h = fig.get_figheight()
    bottom = min(0.4, (n * 7 * 1.35 + 6) / 72 / h) if n else 0
    fig.tight_layout(rect=(0, bottom, 1, 1))


def save_figure(fig, path: str | os.PathLike, formats: Sequence[str] | None = None) -> list[Path]:
    """Save ``fig`` atomically: to ``path`` in the format of its suffix, or, with ``formats``
    (e.g. ``("png", "svg")``), once per format with the suffix replaced. PNG at 200 dpi."""
    path = Path(path)
    fmts = [path.suffix.lstrip(".").lower() or "png"] if formats is None else [str(f).lower() for f in formats]
    for f in fmts:
        if f not in FORMATS:
            raise InputError(f"figure format must be one of {', '.join(FORMATS)}, got {f!r} (from {path})")
    check_distinct(fmts, "formats")
    _layout(fig)
    out = []
    for f in fmts:
        p = path if formats is None else path.with_suffix("." + f)
        with atomic_path(p) as tmp:
            # a tight box: legends beside the axes and wide captions stay inside the image
            fig.savefig(
                tmp,
                format=f,
                dpi=PNG_DPI if f == "png" else None,
                bbox_inches="tight",
                pad_inches=0.05,
                metadata={"Software": None} if f == "png" else None,
            )
        out.append(p)
    return out


def _save(fig, path, formats=None) -> Path:
    return save_figure(fig, path, formats)[0]


# --------------------------------------------------------------------------- one path


def _model_name(model) -> str:
    name = type(model).__name__
    arch = getattr(model, "arch", None)
    if isinstance(arch, str):
        name += f" {arch}"
    depth, rep = getattr(model, "depth", None), getattr(model, "representation", None)
    if isinstance(depth, int) and isinstance(rep, str):
        name += f" {rep}, depth {depth}"
    return name


def _walk_auto(model, x1, x2, *, method, layers, tie_tol, tol=None):
    """The walk of x1 -> x2: exact where the network allows it, else bisection."""
    from .._core.folding import walk
    from .._core.walk.exact import NotPiecewiseLinearError

    if method not in (None, "exact", "bisect", "uniform"):
        raise InputError(f"method must be None (exact where possible), 'exact', 'bisect' or 'uniform', got {method!r}")
    if method is not None:
        return walk(model, x1, x2, method=method, layers=layers, tie_tol=tie_tol, tol=tol), method
    try:
        return walk(model, x1, x2, method="exact", layers=layers, tie_tol=tie_tol, tol=tol), "exact"
    except NotPiecewiseLinearError:
        return walk(model, x1, x2, method="bisect", layers=layers, tie_tol=tie_tol, tol=tol), "bisect"


def path_curves(
    model, x1, x2, *, method: str | None = None, layers=None, tie_tol: float | None = None, tol: float | None = None
) -> dict:
    """What :func:`plot_path` draws, as arrays: ``t`` (region entry points), per-layer Hamming
    distance to the start ``hd_layers`` and distance travelled ``travel_layers`` (``(n_layers,
    n_regions)``), their sums ``hd``/``travelled``, the prefix χ ``profile``, ``layer_names``
    and the ``method`` used."""
    import torch

    from .._core.measure import chi_profile
    from .._core.patterns import pattern_layout

    tie = getattr(model, "tie_tol", 0.0) if tie_tol is None else tie_tol
    if not isinstance(tie, float):
        tie = 0.0
    w, used = _walk_auto(model, x1, x2, method=method, layers=layers, tie_tol=tie, tol=tol)
    layout = pattern_layout(model, torch.as_tensor(x1).unsqueeze(0), layers)
    p = w.patterns
    hd, tr = [], []
    for spec in layout.layers:
        q = p[:, spec.start : spec.stop]
        hd.append((q ^ q[0]).sum(1).numpy())
        steps = (q[1:] ^ q[:-1]).sum(1).numpy()
        tr.append(np.concatenate([[0], np.cumsum(steps)]))
    hd_l, tr_l = np.array(hd, dtype=float), np.array(tr, dtype=float)
    return {
        "t": w.t.numpy().astype(float),
        "hd_layers": hd_l,
        "travel_layers": tr_l,
        "hd": hd_l.sum(0),
        "travelled": tr_l.sum(0),
        "profile": chi_profile(p).numpy().astype(float),
        "layer_names": [s.name for s in layout.layers],
        "method": used,
        "n_regions": int(p.shape[0]),
    }


def _stacked(ax, edges, layers, names, legend: bool, colours: dict) -> None:
    base = np.zeros(layers.shape[1])
    for k in range(len(layers)):
        top = base + layers[k]
        ax.stairs(
            top,
            edges,
            baseline=base,
            fill=True,
            color=colours[names[k]],
            alpha=0.9,
            lw=0,
            label=names[k] if legend else None,
        )
        base = top
    ax.stairs(base, edges, baseline=None, color="black", lw=0.8)


def plot_paths(
    models: Sequence,
    x1,
    x2,
    *,
    names: Sequence[str] | None = None,
    method: str | None = None,
    layers=None,
    tie_tol: float | None = None,
    title: str | None = None,
    data: str | None = None,
    max_boundaries: int = 300,
):
    """:func:`plot_path` for several models side by side (one column each; the same segment)."""
    import torch

    models = list(models)
    if not models:
        raise InputError("models must hold at least one model, got none")
    for m in models:
        _check_model(m)
    names = list(names) if names is not None else [_model_name(m) for m in models]
    if len(names) != len(models):
        raise InputError(f"names must have one entry per model ({len(models)}), got {len(names)}")
    x1, x2 = torch.as_tensor(x1), torch.as_tensor(x2)
    curves = [path_curves(m, x1, x2, method=method, layers=layers, tie_tol=tie_tol) for m in models]
    ncol = len(models)
    fig = new_figure(min(3.2 * ncol + 1.5, 18), 6.6)
    axes = [[fig.add_subplot(3, ncol, r * ncol + c + 1) for c in range(ncol)] for r in range(3)]
    # one colour per layer name across all columns
    all_names = list(
        dict.fromkeys(n for cv in sorted(curves, key=lambda cv: -len(cv["layer_names"])) for n in cv["layer_names"])
    )
    colours = {n: colour(i, len(all_names)) for i, n in enumerate(all_names)}
    for c, (cv, nm) in enumerate(zip(curves, names)):
        edges = np.concatenate([cv["t"], [1.0]])
        legend = c == ncol - 1 and len(all_names) <= 16
        _stacked(axes[0][c], edges, cv["hd_layers"], cv["layer_names"], False, colours)
        _stacked(axes[1][c], edges, cv["travel_layers"], cv["layer_names"], False, colours)
        axes[2][c].stairs(cv["profile"], edges, baseline=None, color=OKABE_ITO[4], lw=1.4)
        axes[2][c].set_ylim(-0.02, 1.02)
        for r in range(3):
            ax = axes[r][c]
            if cv["n_regions"] - 1 <= max_boundaries:
                for tb in cv["t"][1:]:
                    ax.axvline(tb, color="0.6", lw=0.35, zorder=0)
            ax.set_xlim(0, 1)
            ax.tick_params(labelsize=7)
        axes[0][c].set_title(
            f"{nm}\n{cv['n_regions']} regions, χ = {cv['profile'][-1]:.3f} ({cv['method']})", fontsize=8
        )
        axes[2][c].set_xlabel("t (x = (1 − t)·x1 + t·x2)", fontsize=8)
        if legend:
            from matplotlib.patches import Patch

            axes[0][c].legend(
                handles=[Patch(color=colours[n], label=n) for n in all_names],
                fontsize=6,
                loc="upper left",
                bbox_to_anchor=(1.02, 1.0),
                title="layer",
                title_fontsize=6,
                frameon=False,
            )
    axes[0][0].set_ylabel("Hamming distance\nto the start", fontsize=8)
    axes[1][0].set_ylabel("distance travelled", fontsize=8)
    axes[2][0].set_ylabel("prefix χ", fontsize=8)
    what = f"{data}: " if data else ""
    fig.suptitle(
        title or f"{what}one path (1 segment), {', '.join(names) if ncol <= 2 else f'{ncol} models'}", fontsize=10
    )
    n_b = max(cv["n_regions"] - 1 for cv in curves)
    add_caption(
        fig,
        "Coloured bands: each layer's share of the Hamming distance (top) and of the distance "
        "travelled (middle), stacked; black line: their sum. Bottom: χ = 1 − r1/r2 of the walk up to t. "
        + (
            "Grey vertical lines: region boundaries crossed by the segment. "
            if n_b <= max_boundaries
            else f"Region boundaries not drawn (more than {max_boundaries}). "
        )
        + "exact: every region crossed (piecewise-linear nets); bisect: transitions located to 1e-6 in t. "
        "No error bars: one path, no sampling.",
    )
    return fig


def plot_path(
    model: nn.Module,
    x1: Tensor,
    x2: Tensor,
    *,
    method: str | None = None,
    layers: LayerSelector = None,
    tie_tol: float | None = None,
    name: str | None = None,
    title: str | None = None,
    data: str | None = None,
) -> Figure:
    """A figure of one segment ``x1 -> x2``: the Hamming distance to the start, the distance travelled
    (per-layer stacked bands) and the prefix χ against t, with the region boundaries crossed.

    Needs the ``plot`` extra (matplotlib). The figure is drawn on its own canvas (no pyplot state):
    save it with ``spacefold.viz.plot.save_figure(fig, path)`` (atomic; PNG at 200 dpi).

    Args:
        model (nn.Module): any PyTorch model.
        x1 (Tensor): the start, one input (no batch dimension).
        x2 (Tensor): the end, of the same shape.
        method (str | None): the walk method; ``None``: exact where the network is piecewise linear,
            bisection otherwise.
        layers (str | type | list | None): which activations give bits.
        tie_tol (float | None): the tie tolerance; ``None``: ``model.tie_tol`` where the model has one
            (CantorNet), else 0.
        name (str | None): the model's name in the titles (default: from its class).
        title (str | None): the figure's title (default: says what is shown).
        data (str | None): the data set's name, for the default title.

    Returns:
        Figure: a matplotlib figure with three rows of axes.

    Raises:
        MissingExtraError: matplotlib is not installed (an ``InputError`` and an ``ImportError``).
        InputTypeError: ``model`` is not an ``nn.Module``.
        InputError: inputs the walk refuses (as in ``spacefold.walk``).

    Examples:
        >>> import torch, spacefold as sf
        >>> net = sf.cantornet(depth=3)
        >>> x1 = torch.tensor([0.0, 0.75], dtype=torch.float64)
        >>> x2 = torch.tensor([1.0, 0.75], dtype=torch.float64)
        >>> fig = sf.plot_path(net, x1, x2)
        >>> len(fig.axes), fig.axes[0].get_title().splitlines()
        (3, ['CantorNet A, depth 3', '23 regions, χ = 0.806 (exact)'])
    """
    return plot_paths(
        [model],
        x1,
        x2,
        names=[name] if name else None,
        method=method,
        layers=layers,
        tie_tol=tie_tol,
        title=title,
        data=data,
    )


# --------------------------------------------------------------------------- one plane


def _first_in_features(model) -> int | None:
    from torch import nn

    for m in model.modules():
        if isinstance(m, nn.Linear):
            return m.in_features
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            return None
    return None


def plot_plane(
    model: nn.Module,
    x0: Tensor | None = None,
    x1: Tensor | None = None,
    x2: Tensor | None = None,
    *,
    reference: str | Tensor = "x1",
    bounds: Sequence[float] | None = None,
    margin: float = 0.15,
    resolution: int = 400,
    exact: bool | None = None,
    layers: LayerSelector = None,
    tie_tol: float | None = None,
    name: str | None = None,
    title: str | None = None,
    data: str | None = None,
    edges: bool = True,
) -> Figure:
    """A figure of the plane through ``x0, x1, x2``, every region coloured by the Hamming distance of its
    pattern to the pattern of ``reference``, with the segment ``x1 -> x2`` drawn over it.

    For a model with 2-D inputs ``x0`` may be left out: the plane is input space itself over
    ``bounds`` (default the unit square, CantorNet's domain; for CantorNet the default segment is its
    path y = 3/4). Regions are exact polygons where the network allows (``exact=None``), else a
    ``resolution`` x ``resolution`` raster of patterns. Needs the ``plot`` extra (matplotlib).

    Args:
        model (nn.Module): any PyTorch model.
        x0 (Tensor | None): the third input spanning the plane (one input, no batch dimension).
        x1 (Tensor | None): the start of the segment drawn.
        x2 (Tensor | None): its end.
        reference (str | Tensor): whose pattern the distances are to: ``"x0"``, ``"x1"``, ``"x2"``
            or an input.
        bounds (Sequence[float] | None): for 2-D inputs without ``x0``: ``(x_min, x_max, y_min, y_max)``.
        margin (float): how far the plane reaches beyond the three inputs, as a share of their span.
        resolution (int): the raster's points per side (where the regions are not exact).
        exact (bool | None): exact polygons (True), a raster (False), or exact where possible (None).
        layers (str | type | list | None): which activations give bits.
        tie_tol (float | None): the tie tolerance; ``None``: 0 for exact polygons, ``model.tie_tol``
            (CantorNet) or 0 for the raster.
        name (str | None): the model's name in the title (default: from its class).
        title (str | None): the figure's title.
        data (str | None): the data set's name, for the default title.
        edges (bool): draw the region edges (up to 5,000 regions).

    Returns:
        Figure: a matplotlib figure (the plane and a colour bar).

    Raises:
        MissingExtraError: matplotlib is not installed (an ``InputError`` and an ``ImportError``).
        InputTypeError: ``model`` is not an ``nn.Module``.
        InputError: ``x0`` without ``x1`` and ``x2``, no ``x0`` for a model whose inputs are not 2-D,
            or an unknown ``reference``.

    Examples:
        >>> import torch, spacefold as sf
        >>> fig = sf.plot_plane(sf.cantornet(depth=3))  # input space of CantorNet, its path y = 3/4
        >>> fig.axes[0].get_title()
        'CantorNet A, depth 3, plane of the inputs, 1 path'
        >>> net = sf.mlp("2x8", in_features=4, n_classes=3, seed=0)
        >>> x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
        >>> sf.plot_plane(net, x[0], x[1], x[2], resolution=40).axes[0].get_title()
        'MLP 2x8, plane through x0, x1, x2, 1 path'
    """
    import torch

    from .._core.patterns import activation_patterns
    from .._core.plane import input_plane, plane_regions, plane_through, raster_patterns, supports_exact_plane

    _check_model(model)
    tie = getattr(model, "tie_tol", 0.0) if tie_tol is None else tie_tol
    if not isinstance(tie, float):
        tie = 0.0
    pts = {}
    if x0 is not None:
        if x1 is None or x2 is None:
            raise InputError("x1 and x2 must be given with x0 (the plane through three inputs), got only x0")
        plane = plane_through(x0, x1, x2, margin=margin)
        pts = {"x0": plane.points[0], "x1": plane.points[1], "x2": plane.points[2]}
        inputs = {"x0": x0, "x1": x1, "x2": x2}
    else:
        if _first_in_features(model) != 2:
            raise InputError(
                "x0, x1, x2 must be given (the plane through three inputs) unless the model takes 2-D "
                "inputs, got x0=None"
            )
        if x1 is None and x2 is None and hasattr(model, "representation"):
            from ..models.cantornet import DEFAULT_END, DEFAULT_START

            x1 = torch.tensor([float(v) for v in DEFAULT_START], dtype=torch.float64)
            x2 = torch.tensor([float(v) for v in DEFAULT_END], dtype=torch.float64)
        inputs = {k: v for k, v in (("x1", x1), ("x2", x2)) if v is not None}
        for k, v in inputs.items():
            pts[k] = torch.as_tensor(v, dtype=torch.float64).reshape(-1).numpy()
        plane = input_plane(
            bounds if bounds is not None else (0.0, 1.0, 0.0, 1.0), np.array(list(pts.values())) if pts else None
        )
    if bounds is not None and x0 is not None:
        from .._core.plane import Plane, _check_bounds

        plane = Plane(plane.origin, plane.basis, _check_bounds(bounds), plane.points)
    if isinstance(reference, str):
        if reference not in inputs:
            raise InputError(
                f"reference must be one of {', '.join(repr(k) for k in inputs)} or an input, got {reference!r}"
            )
        ref_name, ref_x = reference, inputs[reference]
    else:
        ref_name, ref_x = "the reference input", reference
    ref = activation_patterns(model, torch.as_tensor(ref_x).unsqueeze(0), layers, tie_tol=tie)[0]
    why = supports_exact_plane(model, layers)
    if exact and why is not None:
        from .._core.walk.exact import NotPiecewiseLinearError

        raise NotPiecewiseLinearError(f"exact=True, but {why}")
    use_exact = why is None and exact is not False
    if use_exact and tie_tol is None:
        # exact polygons follow bit = z > 0; a tie tolerance would only add strips tie_tol wide
        tie = 0.0
        ref = activation_patterns(model, torch.as_tensor(ref_x).unsqueeze(0), layers, tie_tol=tie)[0]
    fig = new_figure(6.4, 5.6)
    ax = fig.add_subplot(1, 1, 1)
    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    cmap = colormaps[SEQUENTIAL]
    u0, u1, v0, v1 = plane.bounds
    if use_exact:
        from matplotlib.collections import PolyCollection

        reg = plane_regions(model, plane, layers=layers, tie_tol=tie)
        hd = reg.hamming_to(ref)
        norm = Normalize(0, max(int(hd.max()), 1))
        pc = PolyCollection(
            reg.polygons(),
            array=hd,
            cmap=cmap,
            norm=norm,
            edgecolors="white" if edges and reg.n_regions <= 5000 else "face",
            linewidths=0.3 if edges and reg.n_regions <= 5000 else 0.1,
        )
        ax.add_collection(pc)
        how = f"{reg.n_regions} regions, exact polygons"
    else:
        ids, pats, _, _ = raster_patterns(model, plane, resolution, layers=layers, tie_tol=tie)
        hd_p = (pats ^ ref).sum(1).numpy()
        img = hd_p[ids]
        norm = Normalize(0, max(int(img.max()), 1))
        ax.imshow(
            img, origin="lower", extent=(u0, u1, v0, v1), cmap=cmap, norm=norm, interpolation="nearest", aspect="auto"
        )
        how = f"{len(pats)} distinct patterns on a {resolution}x{resolution} raster" + (f" ({why})" if why else "")
    from matplotlib import patheffects
    from matplotlib.cm import ScalarMappable

    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=f"Hamming distance to the pattern of {ref_name}")
    if "x1" in pts and "x2" in pts:
        a, b = pts["x1"], pts["x2"]
        ax.plot([a[0], b[0]], [a[1], b[1]], color="white", lw=3.2, solid_capstyle="round")
        ax.plot([a[0], b[0]], [a[1], b[1]], color=OKABE_ITO[3], lw=1.6, solid_capstyle="round", label="segment x1 → x2")
    for k, p in pts.items():
        ax.plot([p[0]], [p[1]], "o", ms=6, mfc=OKABE_ITO[3] if k != "x0" else OKABE_ITO[1], mec="white")
        ax.annotate(
            k,
            (p[0], p[1]),
            xytext=(4, 4),
            textcoords="offset points",
            fontsize=8,
            color="black",
            fontweight="bold",
            path_effects=[patheffects.withStroke(linewidth=2.5, foreground="white")],
        )
    ax.set_xlim(u0, u1)
    ax.set_ylim(v0, v1)
    ax.set_aspect("equal")
    if x0 is not None:
        ax.set_xlabel("u: along x1 − x0", fontsize=8)
        ax.set_ylabel("v: along x2 − x0, orthogonal to u", fontsize=8)
    else:
        ax.set_xlabel("input 1", fontsize=8)
        ax.set_ylabel("input 2", fontsize=8)
    nm = name or _model_name(model)
    ax.set_title(
        title
        or f"{data + chr(10) if data else ''}{nm}, plane {'through x0, x1, x2' if x0 is not None else 'of the inputs'}"
        + (", 1 path" if "x1" in pts and "x2" in pts else ""),
        fontsize=9,
    )
    add_caption(
        fig,
        f"{how}. Colour: Hamming distance of each region's activation pattern to the pattern of "
        f"{ref_name}; along the segment, colours that come back mark a fold. No error bars (no sampling).",
    )
    return fig


# --------------------------------------------------------------------------- depth studies


def _check_model(model) -> None:
    from torch import nn

    if not isinstance(model, nn.Module):
        raise InputTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
