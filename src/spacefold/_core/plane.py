"""Exact activation regions of a 2-D slice of input space.

A plane ``x(u, v) = origin + u·e1 + v·e2`` (``u, v`` in a rectangle) is cut into convex
polygons on each of which the activation pattern is constant, layer by layer (the idea of
the regioncam package, here for any ``nn.Module`` whose activations are hooked):

1. start with the rectangle, on which the first activation's pre-activation z is affine;
2. for every neuron of the current activation, cut every polygon on which z changes sign
   along the neuron's zero line (z at a new vertex is interpolated along its edge; a
   polygon piece's bit is z > 0 on its interior);
3. after the last neuron of an activation, every polygon has a constant pattern up to that
   activation, so the next activation's pre-activation is affine on it: evaluate it at the
   vertices (one forward pass over the vertices, with hooks) and go on with step 2.

For a network whose bits are the signs of its kinks (ReLU, LeakyReLU, PReLU, RReLU;
docs/method.md, 'Activation patterns'), a pattern class is convex: with the pattern fixed,
every pre-activation is affine in the input and its sign is fixed, so the class is an
intersection of half-spaces. The polygons are therefore exactly the regions: one polygon
per distinct pattern. Vertices are shared between neighbouring
polygons (a crossing on an edge is created once), every vertex goes through the network
once, and the cuts of a layer run in one compiled Numba call (NumPy operations, one
vectorised pass per neuron, without Numba or with ``SPACEFOLD_NUMBA=0``): a 784-64x3 MLP
slice with a few thousand regions takes about 0.1 s. Networks with other
nonlinearities (GELU, max pooling, activations that bend away from zero) have no such
polygons: use :func:`raster_patterns` for them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from .._util import check_size
from ..errors import InputError, InputTypeError
from .patterns import (
    LayerSelector,
    PatternLayout,
    PatternRecorder,
    eval_mode,
    find_activations,
    is_piecewise_linear,
    run_model,
)

__all__ = [
    "Plane",
    "PlaneRegions",
    "plane_through",
    "input_plane",
    "plane_regions",
    "raster_patterns",
    "supports_exact_plane",
]

_MAX_POOLS = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)


@dataclass(frozen=True)
class Plane:
    """The affine map ``(u, v) -> origin + u·basis[0] + v·basis[1]`` over ``bounds``
    ``(u_min, u_max, v_min, v_max)``; ``points`` are the (u, v) of the inputs it was built
    from (``(k, 2)``, possibly empty)."""

    origin: Tensor
    basis: Tensor
    bounds: tuple[float, float, float, float]
    points: np.ndarray

    def inputs(self, uv) -> Tensor:
        """The inputs at plane coordinates ``uv`` ``(n, 2)``: ``(n, *input_shape)``."""
        uv = torch.as_tensor(np.asarray(uv, dtype=np.float64), dtype=self.origin.dtype)
        flat = self.origin.reshape(1, -1) + uv @ self.basis.reshape(2, -1)
        return flat.reshape((uv.shape[0],) + tuple(self.origin.shape))

    @property
    def area(self) -> float:
        u0, u1, v0, v1 = self.bounds
        return (u1 - u0) * (v1 - v0)


def _as_input(x, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        try:
            x = torch.as_tensor(np.asarray(x, dtype=np.float64))
        except (TypeError, ValueError):
            raise InputTypeError(
                f"{name} must be a tensor (one input, no batch dimension), got {type(x).__name__}"
            ) from None
    if not x.is_floating_point():
        x = x.double()
    if x.numel() == 0 or not torch.isfinite(x).all():
        raise InputError(f"{name} must be a non-empty tensor of finite values, got shape {tuple(x.shape)}")
    return x.detach().to(torch.float64)


def plane_through(x0, x1, x2, *, margin: float = 0.15) -> Plane:
    """The plane through three inputs: origin ``x0``, ``e1`` along ``x1 − x0``, ``e2`` the
    part of ``x2 − x0`` orthogonal to it (both unit length, so distances and angles in the
    picture are those of input space); the rectangle is the three points' bounding box
    grown by ``margin`` of its larger side on every side."""
    a, b, c = (_as_input(x, n) for x, n in ((x0, "x0"), (x1, "x1"), (x2, "x2")))
    if not (a.shape == b.shape == c.shape):
        raise InputError(f"x0, x1, x2 must have one shape, got {tuple(a.shape)}, {tuple(b.shape)}, {tuple(c.shape)}")
    if not (margin >= 0 and np.isfinite(margin)):
        raise InputError(f"margin must be a finite number >= 0, got {margin!r}")
    d1 = (b - a).reshape(-1)
    n1 = float(d1.norm())
    if n1 == 0:
        raise InputError("x0 and x1 must differ (they span the plane's first axis), got equal inputs")
    e1 = d1 / n1
    d2 = (c - a).reshape(-1)
    d2 = d2 - (d2 @ e1) * e1
    n2 = float(d2.norm())
    if n2 <= 1e-12 * max(n1, float((c - a).norm())):
        raise InputError("x0, x1, x2 must not lie on one line (they span a plane), got collinear inputs")
    e2 = d2 / n2
    pts = np.array([[0.0, 0.0], [n1, 0.0], [float((c - a).reshape(-1) @ e1), n2]])
    return _plane(a, torch.stack([e1, e2]).reshape((2,) + tuple(a.shape)), pts, margin)


def input_plane(bounds=(0.0, 1.0, 0.0, 1.0), points=None) -> Plane:
    """Input space itself, for models with 2-D inputs (CantorNet's unit square)."""
    bounds = _check_bounds(bounds)
    pts = np.zeros((0, 2)) if points is None else np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return Plane(torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64), bounds, pts)


def _check_bounds(bounds) -> tuple[float, float, float, float]:
    try:
        b = tuple(float(v) for v in bounds)
    except (TypeError, ValueError):
        raise InputTypeError(f"bounds must be four numbers (u_min, u_max, v_min, v_max), got {bounds!r}") from None
    if len(b) != 4 or not all(np.isfinite(b)) or not (b[0] < b[1] and b[2] < b[3]):
        raise InputError(f"bounds must be four finite numbers u_min < u_max, v_min < v_max, got {bounds!r}")
    return b  # type: ignore[return-value]


def _plane(origin: Tensor, basis: Tensor, pts: np.ndarray, margin: float) -> Plane:
    lo, hi = pts.min(0), pts.max(0)
    pad = margin * float((hi - lo).max())
    return Plane(origin, basis, (lo[0] - pad, hi[0] + pad, lo[1] - pad, hi[1] + pad), pts)


# --------------------------------------------------------------------------- the regions


@dataclass(frozen=True)
class PlaneRegions:
    """Convex polygons of constant activation pattern that tile ``plane``.

    ``vertices``: float64 ``(n_vertices, 2)`` plane coordinates; polygon ``i`` has the
    corners ``vertices[corners[offsets[i]:offsets[i + 1]]]`` in counter-clockwise order;
    ``patterns``: bool ``(n_regions, n_neurons)``, one distinct pattern per polygon, laid
    out as ``layout``.
    """

    plane: Plane
    vertices: np.ndarray
    corners: np.ndarray
    offsets: np.ndarray
    patterns: Tensor
    layout: PatternLayout

    @property
    def n_regions(self) -> int:
        return len(self.offsets) - 1

    def polygon(self, i: int) -> np.ndarray:
        return self.vertices[self.corners[self.offsets[i] : self.offsets[i + 1]]]

    def polygons(self) -> list[np.ndarray]:
        return [self.polygon(i) for i in range(self.n_regions)]

    def _shoelace(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        poly = np.repeat(np.arange(self.n_regions), np.diff(self.offsets))
        # relative to each polygon's first corner: no cancellation for tiny polygons far from 0
        ref = self.vertices[self.corners[self.offsets[:-1]]]
        p = self.vertices[self.corners] - ref[poly]
        nxt = np.arange(len(self.corners)) + 1
        nxt[self.offsets[1:] - 1] = self.offsets[:-1]
        q = p[nxt]
        cross = p[:, 0] * q[:, 1] - q[:, 0] * p[:, 1]
        a = np.bincount(poly, cross, self.n_regions) / 2
        cx = np.bincount(poly, (p[:, 0] + q[:, 0]) * cross, self.n_regions)
        cy = np.bincount(poly, (p[:, 1] + q[:, 1]) * cross, self.n_regions)
        return a, cx, cy, ref

    def areas(self) -> np.ndarray:
        """Every polygon's area (shoelace formula), ``(n_regions,)``."""
        return self._shoelace()[0]

    def centroids(self) -> np.ndarray:
        """Every polygon's centroid ``(n_regions, 2)``; the mean of its corners for a polygon of
        zero area."""
        a, cx, cy, ref = self._shoelace()
        with np.errstate(invalid="ignore", divide="ignore"):
            c = np.stack([cx, cy], 1) / (6 * a[:, None]) + ref
        mean = np.stack(
            [
                np.bincount(
                    np.repeat(np.arange(self.n_regions), np.diff(self.offsets)),
                    self.vertices[self.corners][:, k],
                    self.n_regions,
                )
                / np.diff(self.offsets)
                for k in range(2)
            ],
            1,
        )
        bad = ~np.isfinite(c).all(1) | (np.abs(a) < 1e-300)
        c[bad] = mean[bad]
        return c

    def hamming_to(self, pattern: Tensor) -> np.ndarray:
        """Hamming distance of every region's pattern to ``pattern`` ``(n_neurons,)``."""
        pattern = torch.as_tensor(pattern, dtype=torch.bool).reshape(-1)
        if pattern.numel() != self.patterns.shape[1]:
            raise InputError(f"pattern must have {self.patterns.shape[1]} bits, got {pattern.numel()}")
        return (self.patterns ^ pattern).sum(1).numpy()


def supports_exact_plane(model: nn.Module, layers: LayerSelector = None) -> str | None:
    """``None`` when :func:`plane_regions` is exact for ``model``; else the reason why not."""
    for name, m in find_activations(model, layers):
        if not is_piecewise_linear(m):
            return (
                f"activation '{name}' ({type(m).__name__}) is not piecewise linear with its kink at 0, "
                "so its pattern classes are not polygons"
            )
    for name, m in model.named_modules():
        if isinstance(m, _MAX_POOLS):
            return f"max pooling '{name}' bends where no bit records it, so pattern classes are not polygons"
    from .walk.bisect import classes_convex

    if not classes_convex(model):
        return (
            "a nonlinearity bends the map where no bit records it (an activation function that is not "
            "piecewise linear with its kink at 0, such as F.gelu or F.hardtanh, an operation such as torch.abs, "
            "or a model torch.fx cannot trace), so pattern classes are not polygons"
        )
    return None


def _scores(model: nn.Module, rec: PatternRecorder, x: Tensor, chunk: int) -> Tensor:
    """Scores of every activation at ``x`` (forward passes of ``chunk`` inputs)."""
    out = []
    for i in range(0, x.shape[0], chunk):
        rec.clear()
        run_model(model, x[i : i + chunk])
        out.append(rec.scores())
    return torch.cat(out)


def plane_regions(
    model: nn.Module,
    plane: Plane,
    *,
    layers: LayerSelector = None,
    tie_tol: float = 0.0,
    dtype: torch.dtype = torch.float64,
    chunk: int = 8192,
    kernel: bool | None = None,
) -> PlaneRegions:
    """The exact regions of ``model`` on ``plane`` (see the module notes).

    The model is evaluated in ``dtype`` (a float64 copy by default, so that the vertices of
    tiny regions are placed well). Raises :class:`spacefold.NotPiecewiseLinearError` for
    networks whose pattern classes are not polygons (use :func:`raster_patterns`).
    An ``nn.Sequential`` that starts with a Linear layer (after an optional Flatten) is cut on
    (u, v) directly, with the plane folded into that layer (same regions, no full-size inputs).
    ``kernel``: cut with the compiled Numba kernel (``None``: where available; ``SPACEFOLD_NUMBA=0``
    turns it off) or with NumPy operations (``False``); both give the same polygons.
    """
    import copy

    from .walk.exact import NotPiecewiseLinearError

    if not isinstance(model, nn.Module):
        raise InputTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(plane, Plane):
        raise InputTypeError(
            f"plane must be a spacefold._core.plane.Plane (plane_through or input_plane), got {type(plane).__name__}"
        )
    why = supports_exact_plane(model, layers)
    if why is not None:
        raise NotPiecewiseLinearError(f"no exact plane: {why}; use raster_patterns (plot_plane does so by itself)")
    with warnings.catch_warnings():  # torch's own deprecation inside a copy of an exported program
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*treespec.*")
        net = copy.deepcopy(model).to(device="cpu", dtype=dtype)  # the cuts run on the CPU
    origin = plane.origin.to(dtype)
    basis = plane.basis.to(dtype)
    pl = Plane(origin, basis, plane.bounds, plane.points)
    folded = _fold_first_linear(net, pl)
    if folded is not None:  # the same network on (u, v) directly: no full-size inputs
        net, pl = folded
    u0, u1, v0, v1 = plane.bounds
    verts = np.array([[u0, v0], [u1, v0], [u1, v1], [u0, v1]], dtype=np.float64)
    nv = 4
    corners = np.arange(4, dtype=np.int64)
    offsets = np.array([0, 4], dtype=np.int64)
    cut_layer = _cut_layer_kernel() if kernel is None or kernel else None
    if kernel and cut_layer is None:
        raise RuntimeError("kernel=True, but the Numba kernel is not available (numba missing or SPACEFOLD_NUMBA=0)")
    if cut_layer is None:
        cut_layer = _cut_layer
    rec = PatternRecorder(net, layers)
    bits: list[np.ndarray] = []
    with rec, eval_mode(net), torch.no_grad():
        rec.clear()
        run_model(net, pl.inputs(verts[:1]))
        layout = rec.layout()
        # every vertex is evaluated once, with all its layers' scores kept for the layers still to
        # come: a vertex made while cutting layer l is first needed by layer l + 1
        cache = np.zeros((0, layout.n_neurons), dtype=np.float64)
        col0 = 0
        for spec in layout.layers:
            if len(cache) < nv:
                new = _scores(net, rec, pl.inputs(verts[len(cache) : nv]), chunk)[:, col0:]
                cache = np.concatenate([cache, new.to(torch.float64).numpy()])
            # the pre-activation of this block at every vertex: affine on every current polygon
            z = np.empty((len(verts), spec.stop - spec.start))
            z[:nv] = cache[:, spec.start - col0 : spec.stop - col0] - tie_tol
            cache = cache[:, spec.stop - col0 :]
            col0 = spec.stop
            tol = 1e-12 * (np.abs(z[:nv]).max(0) + 1e-300)
            verts, z, nv, corners, offsets, layer_bits, origin_poly = cut_layer(verts, z, nv, corners, offsets, tol)
            bits = [b[origin_poly] for b in bits] + [np.asarray(layer_bits)]
    n_poly = len(offsets) - 1
    patterns = torch.from_numpy(np.concatenate(bits, axis=1) if bits else np.zeros((n_poly, 0), dtype=bool))
    return PlaneRegions(plane, verts[:nv].copy(), corners, offsets, patterns, layout)


def _fold_first_linear(net: nn.Module, plane: Plane):
    """For an ``nn.Sequential`` that starts with a Linear layer (after an optional Flatten), the
    same network with the plane's affine map folded into that layer, and the plane of its 2-D
    inputs (module names kept, so the pattern layout is the same); else None."""
    from collections import OrderedDict

    if not isinstance(net, nn.Sequential) or len(net) == 0:
        return None
    items = list(net.named_children())
    k = 1 if isinstance(items[0][1], nn.Flatten) and len(items) > 1 else 0
    first = items[k][1]
    if type(first) is not nn.Linear or (k == 0 and plane.origin.dim() != 1):
        return None
    if first.in_features != plane.origin.numel():
        return None
    w = first.weight.detach()
    lin = nn.Linear(2, first.out_features, bias=True, dtype=w.dtype)
    with torch.no_grad():
        lin.weight.copy_(w @ plane.basis.reshape(2, -1).t())
        bias = w @ plane.origin.reshape(-1)
        lin.bias.copy_(bias + first.bias.detach() if first.bias is not None else bias)
    mods = OrderedDict([(items[k][0], lin)] + items[k + 1 :])
    return nn.Sequential(mods), Plane(
        torch.zeros(2, dtype=w.dtype), torch.eye(2, dtype=w.dtype), plane.bounds, plane.points
    )


def _cut_layer_kernel():
    """The compiled :func:`_cut_layer`, or None without Numba or with ``SPACEFOLD_NUMBA=0``."""
    import os

    if os.environ.get("SPACEFOLD_NUMBA", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    try:
        from ._plane_jit import cut_layer
    except ImportError:
        return None
    return cut_layer


def _cut_layer(verts, z, nv, corners, offsets, tol):
    """Cut the mesh by the zero line of every column of ``z`` in turn (NumPy; the same as the
    compiled ``spacefold._plane_jit.cut_layer``). Returns ``(verts, z, nv, corners, offsets,
    bits, origin)``: every polygon's bits of this layer and the polygon it came from."""
    n_poly = len(offsets) - 1
    poly_of = np.repeat(np.arange(n_poly), np.diff(offsets))
    layer_bits = np.zeros((n_poly, z.shape[1]), dtype=bool)
    origin_poly = np.arange(n_poly)
    for j in range(z.shape[1]):
        s = z[:nv, j]
        s[np.abs(s) <= tol[j]] = 0.0
        verts, z, nv, corners, poly_of, n_poly, parent, side = _cut(verts, z, nv, corners, poly_of, n_poly, j)
        if parent is not None:
            layer_bits = layer_bits[parent]
            origin_poly = origin_poly[parent]
        layer_bits[:, j] = side
    offsets = np.concatenate([[0], np.cumsum(np.bincount(poly_of, minlength=n_poly))])
    return verts, z, nv, corners, offsets, layer_bits, origin_poly


def _cut(verts, z, nv, corners, poly_of, n_poly, j):
    """Cut every polygon on which column ``j`` of ``z`` (the values at the vertices) changes
    sign along its zero line. ``verts`` and ``z`` are buffers whose first ``nv`` rows are the
    vertices (grown by doubling). Returns the new mesh, ``parent`` (the old polygon of every
    new polygon, or None when nothing was cut) and ``side`` (every polygon's bit z > 0)."""
    s = z[corners, j]
    n_c = len(corners)
    # corners are grouped by polygon (every polygon has >= 3): the first corner of each group
    first = np.flatnonzero(np.concatenate([[True], poly_of[1:] != poly_of[:-1]]))
    pos = np.maximum.reduceat(s, first) > 0
    neg = np.minimum.reduceat(s, first) < 0
    split = pos & neg
    if not split.any():
        return verts, z, nv, corners, poly_of, n_poly, None, pos
    nxt = np.arange(1, n_c + 1)
    nxt[np.concatenate([first[1:], [n_c]]) - 1] = first
    sc = split[poly_of]
    s_n = s[nxt]
    cross = sc & (((s > 0) & (s_n < 0)) | ((s < 0) & (s_n > 0)))
    # one new vertex per crossed edge, shared by the two polygons on either side of it
    a, b = corners[cross], corners[nxt][cross]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    key = lo.astype(np.int64) * nv + hi
    ukey, inv = np.unique(key, return_inverse=True)
    ua, ub = ukey // nv, ukey % nv
    t = z[ua, j] / (z[ua, j] - z[ub, j])
    new_v = verts[ua] + t[:, None] * (verts[ub] - verts[ua])
    new_z = z[ua] + t[:, None] * (z[ub] - z[ua])
    new_z[:, j] = 0.0
    k = len(ukey)
    if nv + k > len(verts):
        cap = max(2 * len(verts), nv + k)
        verts = np.concatenate([verts[:nv], np.empty((cap - nv, 2))])
        z = np.concatenate([z[:nv], np.empty((cap - nv, z.shape[1]))])
    verts[nv : nv + k] = new_v
    z[nv : nv + k] = new_z
    new_ids = nv + np.arange(k)
    nv += k
    # the corners of cut polygons with the crossings inserted after their edge's first corner
    idx = np.flatnonzero(sc)
    rep = 1 + cross[idx].astype(np.int64)
    seq_v = np.repeat(corners[idx], rep)
    seq_s = np.repeat(s[idx], rep)
    seq_p = np.repeat(poly_of[idx], rep)
    is_new = np.zeros(len(seq_v), dtype=bool)
    ends = np.cumsum(rep) - 1
    is_new[ends[rep == 2]] = True
    seq_v[is_new] = new_ids[inv]
    seq_s[is_new] = 0.0
    # positive piece keeps the polygon's id, negative piece gets a new one
    split_ids = np.flatnonzero(split)
    new_poly = np.full(n_poly, -1, dtype=np.int64)
    new_poly[split_ids] = n_poly + np.arange(len(split_ids))
    keep = ~sc
    pos_m = seq_s >= 0
    neg_m = seq_s <= 0
    all_v = np.concatenate([corners[keep], seq_v[pos_m], seq_v[neg_m]])
    all_p = np.concatenate([poly_of[keep], seq_p[pos_m], new_poly[seq_p[neg_m]]])
    order = np.argsort(all_p, kind="stable")
    parent = np.concatenate([np.arange(n_poly), split_ids])
    side = np.concatenate([pos, np.zeros(len(split_ids), dtype=bool)])
    return verts, z, nv, all_v[order], all_p[order], n_poly + len(split_ids), parent, side


# --------------------------------------------------------------------------- raster


def raster_patterns(
    model: nn.Module,
    plane: Plane,
    resolution: int = 400,
    *,
    layers: LayerSelector = None,
    tie_tol: float = 0.0,
    chunk: int = 8192,
) -> tuple[np.ndarray, Tensor, np.ndarray, np.ndarray]:
    """Patterns at the centres of a ``resolution`` x ``resolution`` grid over ``plane``, for any
    network. Returns ``(ids, patterns, u, v)``: ``ids`` int ``(resolution, resolution)`` indexes
    the distinct ``patterns`` (row = v, column = u), ``u``/``v`` the pixel centres."""
    from .patterns import activation_patterns

    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 2:
        raise InputError(f"resolution must be an int >= 2, got {resolution!r}")
    # per pixel at least its coordinates (u, v and their grids: 48 bytes) and its region id
    check_size("resolution", resolution, 64 * resolution**2, f"a {resolution}x{resolution} raster")
    u0, u1, v0, v1 = plane.bounds
    u = u0 + (np.arange(resolution) + 0.5) * (u1 - u0) / resolution
    v = v0 + (np.arange(resolution) + 0.5) * (v1 - v0) / resolution
    uu, vv = np.meshgrid(u, v)
    uv = np.stack([uu.ravel(), vv.ravel()], 1)
    pats = activation_patterns(model, plane.inputs(uv), layers, tie_tol=tie_tol, batch_size=chunk)
    uniq, ids = torch.unique(pats, dim=0, return_inverse=True)
    return ids.reshape(resolution, resolution).numpy(), uniq, u, v
