"""Symmetries of the input and how a network treats them: mirrors, invariance, segments x -> T(x).

arXiv 2503.08502 argues that a symmetry of the data which a network learns (for example
invariance under a mirror) shows up as folding of the input space. This module holds the
pieces to test that claim on any model:

* :func:`mirror` / :class:`Mirror`: the reflection of a vector in a coordinate hyperplane
  (``x_k -> 2c - x_k``) or of an image along one of its axes (pixels in reverse order);
* :func:`invariance`: how invariant a model is under a transform ``T`` on inputs ``x``:
  the share of inputs whose predicted class is the same for ``x`` and ``T(x)``, and the
  Hamming distance between their activation patterns, overall and per layer;
* :func:`transform_segments`, :func:`matched_random_segments` and :func:`transplanted_segments`:
  the segments ``x -> T(x)``, and two controls without the symmetry: segments of the same
  Euclidean length in a random direction, and the same displacement ``T(x) - x`` from
  another start;
* :func:`check_symmetry`: whether ``T`` is a symmetry of a labelled data set (labels kept
  under ``T``; whether ``T(x)`` stays near the data);
* :func:`closed_walk_bound`: the lower bound on χ that a walk gets from its two ends;
* :func:`invariant_mlp`: a trainable MLP that is exactly invariant under a mirror from its
  second hidden layer on (tied weights), the positive control of a learned invariance.

Why a learned invariance should fold. Let ``N`` be a ReLU network whose layers from ``l``
on are invariant under ``T``, i.e. the patterns of ``x`` and ``T(x)`` agree there. The walk
of the segment ``x -> T(x)``, restricted to those layers, starts and ends at the same
pattern: it is closed. For any walk Γ = (π_1, ..., π_n), the triangle inequality along the
walk gives ``r2 >= d_H(π_1, π_i) + d_H(π_i, π_n)`` and ``d_H(π_i, π_n) >= d_H(π_1, π_i) -
d_H(π_1, π_n)``, so with ``h = d_H(π_1, π_n)``::

    r1 <= (r2 + h) / 2,    χ = 1 - r1 / r2 >= (1 - h / r2) / 2        (r2 > 0)

and a closed walk (h = 0) that moves at all has χ >= 1/2 (docs/method.md, 'The folding
measure', for r1, r2 and χ). The layers before ``l`` need not be invariant: the first
layer of ``f(x) = g(|x_1|, x_2)`` with ``|x_1| = relu(x_1) + relu(-x_1)`` swaps two bits
between ``x`` and its mirror image and does not fold the segment at all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .._core import measure
from .._core.patterns import activation_patterns, eval_mode, model_device_dtype
from .._util import check_int
from ..errors import InputError, InputTypeError

__all__ = [
    "Mirror",
    "mirror",
    "Invariance",
    "invariance",
    "transform_segments",
    "matched_random_segments",
    "transplanted_segments",
    "same_class_pairs",
    "SymmetryCheck",
    "check_symmetry",
    "closed_walk_bound",
    "invariant_mlp",
]

Transform = Callable[[Tensor], Tensor]


# --------------------------------------------------------------------------- mirrors


def _check_batch(x, name: str = "x", min_dim: int = 2) -> Tensor:
    if not isinstance(x, Tensor):
        raise InputTypeError(f"{name} must be a torch.Tensor of inputs (batch, *input_shape), got {type(x).__name__}")
    if x.dim() < min_dim:
        raise InputError(
            f"{name} must have shape (batch, *input_shape) with at least {min_dim} dimensions, "
            f"got shape {tuple(x.shape)}; for one input use x.unsqueeze(0)"
        )
    if not x.is_floating_point():
        raise InputTypeError(f"{name} must be a floating tensor, got dtype {x.dtype}")
    return x


def _check_image_shape(image_shape) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in image_shape)
    except TypeError:
        raise InputTypeError(f"image_shape must be a sequence of ints such as (28, 28), got {image_shape!r}") from None
    if not shape or any(s < 1 for s in shape):
        raise InputError(f"image_shape must be a non-empty sequence of positive ints such as (28, 28), got {shape}")
    return shape


@dataclass(frozen=True)
class Mirror:
    """A mirror as a callable transform of a batch; see :func:`mirror` for the arguments."""

    axis: int = -1
    image_shape: tuple[int, ...] | None = None
    center: float = 0.0

    def __post_init__(self):
        if isinstance(self.axis, bool) or not isinstance(self.axis, int):
            raise InputTypeError(f"axis must be an int, got {self.axis!r}")
        if self.image_shape is not None:
            object.__setattr__(self, "image_shape", _check_image_shape(self.image_shape))
        if not isinstance(self.center, (int, float)) or isinstance(self.center, bool):
            raise InputTypeError(f"center must be a number, got {self.center!r}")

    def __call__(self, x: Tensor) -> Tensor:
        return mirror(x, self.axis, image_shape=self.image_shape, center=self.center)

    @property
    def name(self) -> str:
        if self.image_shape is None:
            return f"mirror(x_{self.axis} -> {2 * self.center:g} - x_{self.axis})"
        return f"mirror(image axis {self.axis} of {self.image_shape})"


def mirror(x: Tensor, axis: int = -1, *, image_shape: Sequence[int] | None = None, center: float = 0.0) -> Tensor:
    """The mirror image of every input of the batch ``x``.

    * Vectors, ``x`` of shape ``(batch, d)`` and no ``image_shape``: the reflection in the
      hyperplane ``x_axis = center``, i.e. ``x_axis -> 2 * center - x_axis``, the other
      coordinates unchanged.
    * Images, ``x`` of shape ``(batch, *image_shape)`` or flattened ``(batch, prod(image_shape))``
      with ``image_shape`` given, or ``x`` of shape ``(batch, H, W, ...)`` (3 or more
      dimensions) without it: the pixels along image axis ``axis`` in reverse order
      (``axis=-1`` is the left-right mirror of an ``(H, W)`` image). ``center`` is unused.

    Both are involutions that keep Euclidean distances, linear when ``center`` is 0. The result
    has the shape of ``x``.
    """
    x = _check_batch(x)
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise InputTypeError(f"axis must be an int, got {axis!r}")
    if image_shape is None and x.dim() == 2:
        d = x.shape[1]
        if not -d <= axis < d:
            raise InputError(f"axis must index a coordinate of the inputs, in [{-d}, {d - 1}], got {axis}")
        if not isinstance(center, (int, float)) or isinstance(center, bool):
            raise InputTypeError(f"center must be a number, got {center!r}")
        out = x.clone()
        out[:, axis] = 2.0 * center - x[:, axis]
        return out
    if image_shape is None:
        image_shape = tuple(x.shape[1:])
    shape = _check_image_shape(image_shape)
    n_pixels = 1
    for s in shape:
        n_pixels *= s
    if tuple(x.shape[1:]) != shape and tuple(x.shape[1:]) != (n_pixels,):
        raise InputError(
            f"x must hold images of shape {shape} (or flattened to {n_pixels} features) for image_shape {shape}, "
            f"got inputs of shape {tuple(x.shape[1:])}"
        )
    k = len(shape)
    if not -k <= axis < k:
        raise InputError(f"axis must index an image axis of image_shape {shape}, in [{-k}, {k - 1}], got {axis}")
    img = x.reshape(x.shape[0], *shape)
    return img.flip(1 + axis % k).reshape(x.shape)


def _apply(transform, x: Tensor, name: str = "transform") -> Tensor:
    if not callable(transform):
        raise InputTypeError(
            f"{name} must be a callable mapping a batch of inputs to a batch of the same shape, "
            f"got {type(transform).__name__}"
        )
    out = transform(x)
    if not isinstance(out, Tensor) or out.shape != x.shape:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise InputError(f"{name} must return a tensor of the input's shape {tuple(x.shape)}, got {got}")
    if out.is_floating_point() and not torch.isfinite(out).all():
        raise InputError(f"{name} returned NaN or inf for finite inputs")
    return out


# --------------------------------------------------------------------------- invariance


@dataclass(frozen=True)
class Invariance:
    """How invariant a model is under a transform ``T`` on ``n`` inputs.

    ``agreement``: share of inputs whose argmax prediction is the same for ``x`` and ``T(x)``.
    ``hamming``: mean Hamming distance between the patterns of ``x`` and ``T(x)`` (bits);
    ``per_layer``: the same per layer (bits); ``per_layer_fraction``: divided by the layer's width.
    ``same_prediction`` (bool ``(n,)``) and ``distance`` (int ``(n,)``) are per input.
    """

    agreement: float
    hamming: float
    per_layer: dict[str, float]
    per_layer_fraction: dict[str, float]
    n: int
    same_prediction: Tensor = field(repr=False)
    distance: Tensor = field(repr=False)


def invariance(
    model: nn.Module, x: Tensor, transform: Transform, *, layers=None, batch_size: int | None = 4096
) -> Invariance:
    """Invariance of ``model`` under ``transform`` on the batch ``x`` (see :class:`Invariance`)."""
    if not isinstance(model, nn.Module):
        raise InputTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    x = _check_batch(x)
    if x.shape[0] == 0:
        raise InputError("x must hold at least one input, got batch size 0")
    if batch_size is not None:
        check_int(batch_size, "batch_size", 1)
    tx = _apply(transform, x)
    pa, layout = activation_patterns(model, x, layers, batch_size=batch_size, return_layout=True)
    pb = activation_patterns(model, tx, layers, batch_size=batch_size)
    device, dtype = model_device_dtype(model)
    step = batch_size or x.shape[0]
    agree: list[Tensor] = []
    with eval_mode(model), torch.no_grad():
        for i in range(0, x.shape[0], step):
            a = model(x[i : i + step].to(device=device, dtype=dtype)).argmax(1)
            b = model(tx[i : i + step].to(device=device, dtype=dtype)).argmax(1)
            agree.append((a == b).cpu())
    same = torch.cat(agree)
    diff = pa ^ pb
    per = {lay.name: float(diff[:, lay.slice].sum(1).double().mean()) for lay in layout.layers}
    frac = {lay.name: per[lay.name] / max(1, lay.size) for lay in layout.layers}
    dist = diff.sum(1)
    return Invariance(
        agreement=float(same.double().mean()),
        hamming=float(dist.double().mean()),
        per_layer=per,
        per_layer_fraction=frac,
        n=int(x.shape[0]),
        same_prediction=same,
        distance=dist,
    )


# --------------------------------------------------------------------------- segments


def transform_segments(
    x: Tensor,
    transform: Transform,
    *,
    y: Tensor | None = None,
    check: bool = False,
    tol: float = 0.0,
    label_fn: Callable[[Tensor], Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """The segments ``x[i] -> T(x[i])``: returns ``(x, T(x))`` for ``spacefold.folding_batch``.

    With ``check=True`` the transform is first checked to be a symmetry of the labelled
    set ``(x, y)`` (:func:`check_symmetry` with ``tol`` and ``label_fn``); a transform that
    changes more than ``tol`` of the labels raises :class:`~spacefold.errors.InputError`.
    """
    x = _check_batch(x)
    if check:
        if y is None:
            raise InputError(
                "y must hold the labels of x when check=True (the symmetry check compares labels), got None"
            )
        check_symmetry(x, y, transform, tol=tol, label_fn=label_fn)
    return x, _apply(transform, x)


def matched_random_segments(x1: Tensor, x2: Tensor, *, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Segments from ``x1[i]`` of the same Euclidean length as ``x1[i] -> x2[i]`` in a uniformly
    random direction: ``(x1, x1 + |x2 - x1| u)``, ``u`` uniform on the unit sphere (seeded).

    The control for :func:`transform_segments`: the displacement ``T(x) - x`` rotated at random,
    so that length is kept and the symmetry is not.
    """
    x1 = _check_batch(x1, "x1")
    x2 = _check_batch(x2, "x2")
    if x1.shape != x2.shape:
        raise InputError(f"x1 and x2 must have the same shape, got {tuple(x1.shape)} and {tuple(x2.shape)}")
    check_int(seed, "seed", 0)
    g = torch.Generator().manual_seed(seed)
    flat = x1.reshape(x1.shape[0], -1)
    u = torch.randn(flat.shape, generator=g, dtype=torch.float64)
    u = u / u.norm(dim=1, keepdim=True).clamp_min(1e-300)
    length = (x2.reshape(flat.shape).double() - flat.double()).norm(dim=1, keepdim=True)
    end = flat.double() + length * u
    return x1, end.to(x1.dtype).reshape(x1.shape)


def transplanted_segments(x1: Tensor, x2: Tensor, starts: Tensor) -> tuple[Tensor, Tensor]:
    """The displacements ``x2[i] - x1[i]`` moved to other starting points: ``(starts, starts + x2 - x1)``.

    The control with the same length *and* direction as ``x -> T(x)`` whose ends are not
    images of each other under ``T`` (for a mirror: the segment slid off the mirror axis, or
    the displacement of one image added to another).
    """
    x1 = _check_batch(x1, "x1")
    x2 = _check_batch(x2, "x2")
    starts = _check_batch(starts, "starts")
    if not x1.shape == x2.shape == starts.shape:
        raise InputError(
            f"x1, x2 and starts must have the same shape, got {tuple(x1.shape)}, {tuple(x2.shape)} "
            f"and {tuple(starts.shape)}"
        )
    return starts, starts + (x2 - x1)


def same_class_pairs(y: Tensor, n_pairs: int, *, seed: int = 0) -> tuple[Tensor, Tensor]:
    """``n_pairs`` random pairs of distinct indices ``(i, j)`` with ``y[i] == y[j]`` (seeded).

    Each pair draws a class in proportion to its size, then two distinct members of it.
    """
    if not isinstance(y, Tensor) or y.dim() != 1 or y.dtype.is_floating_point or y.dtype == torch.bool:
        raise InputTypeError(f"y must be a 1-D integer tensor of labels, got {y!r:.60}")
    check_int(n_pairs, "n_pairs", 1)
    check_int(seed, "seed", 0)
    classes, counts = torch.unique(y, return_counts=True)
    ok = counts >= 2
    if not ok.any():
        raise InputError("y must hold some class with at least two members to draw same-class pairs, got none")
    classes, counts = classes[ok], counts[ok]
    g = torch.Generator().manual_seed(seed)
    pick = torch.multinomial(counts.double(), n_pairs, replacement=True, generator=g)
    members = [torch.nonzero(y == c).flatten() for c in classes.tolist()]
    first = torch.empty(n_pairs, dtype=torch.int64)
    second = torch.empty(n_pairs, dtype=torch.int64)
    for k, c in enumerate(pick.tolist()):
        ij = torch.randperm(int(counts[c]), generator=g)[:2]
        first[k], second[k] = members[c][ij[0]], members[c][ij[1]]
    return first, second


# --------------------------------------------------------------------------- is T a symmetry of the data?


@dataclass(frozen=True)
class SymmetryCheck:
    """Whether a transform ``T`` is a symmetry of a labelled data set ``(x, y)``.

    ``label_change``: share of the checked samples whose label changes under ``T`` (the
    label of ``T(x)`` from ``label_fn``, else the majority label of its ``k`` nearest samples).
    ``distance_ratio``: median distance from ``T(x)`` to the nearest sample of the set,
    divided by the median distance from ``x`` to its nearest other sample; near 1 when the
    set covers its own image under ``T``, large when ``T`` maps the data where there is none
    (NaN with ``label_fn``).
    """

    label_change: float
    distance_ratio: float
    n: int
    method: str


def check_symmetry(
    x: Tensor,
    y: Tensor,
    transform: Transform,
    *,
    tol: float | None = None,
    label_fn: Callable[[Tensor], Tensor] | None = None,
    k: int = 1,
    max_samples: int | None = 2000,
    seed: int = 0,
) -> SymmetryCheck:
    """Check that ``transform`` keeps the labels of the data set ``(x, y)``.

    The label of ``T(x)`` comes from ``label_fn`` (a known labelling, e.g. of a synthetic
    task) or, without it, from a ``k``-nearest-neighbour vote among ``(x, y)``
    (scikit-learn). At most ``max_samples`` samples (seeded) are checked. With ``tol``,
    a share of changed labels above ``tol`` raises :class:`~spacefold.errors.InputError`.
    """
    x = _check_batch(x)
    if not isinstance(y, Tensor) or y.dtype.is_floating_point or y.dtype == torch.bool:
        raise InputTypeError(
            f"y must be an integer tensor of labels, got {type(y).__name__}"
            + (f" of dtype {y.dtype}" if isinstance(y, Tensor) else "")
        )
    if y.shape != (x.shape[0],):
        raise InputError(f"y must have shape ({x.shape[0]},) to match x, got {tuple(y.shape)}")
    if x.shape[0] < 2:
        raise InputError(f"x must hold at least two samples to check a symmetry, got {x.shape[0]}")
    check_int(k, "k", 1)
    check_int(seed, "seed", 0)
    if tol is not None and (isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 <= tol <= 1):
        raise InputError(f"tol must be a share in [0, 1] of labels allowed to change, got {tol!r}")
    idx = torch.arange(x.shape[0])
    if max_samples is not None:
        check_int(max_samples, "max_samples", 1)
        if max_samples < x.shape[0]:
            g = torch.Generator().manual_seed(seed)
            idx = torch.sort(torch.randperm(x.shape[0], generator=g)[:max_samples]).values
    xs, ys = x[idx], y[idx]
    tx = _apply(transform, xs)
    if label_fn is not None:
        if not callable(label_fn):
            raise InputTypeError(f"label_fn must be a callable mapping inputs to labels, got {type(label_fn).__name__}")
        ty = torch.as_tensor(label_fn(tx))
        if ty.shape != ys.shape:
            raise InputError(
                f"label_fn must return one label per input, shape {tuple(ys.shape)}, got {tuple(ty.shape)}"
            )
        changed = float((ty.to(ys.dtype) != ys).double().mean())
        ratio, method = float("nan"), "label_fn"
    else:
        try:
            from sklearn.neighbors import NearestNeighbors
        except ImportError:
            raise ImportError(
                "check_symmetry without label_fn needs scikit-learn: pip install 'spacefold[data]'"
            ) from None
        data = x.reshape(x.shape[0], -1).double().numpy()
        nn_ = NearestNeighbors(n_neighbors=max(k, 2)).fit(data)
        dist_t, ind_t = nn_.kneighbors(tx.reshape(tx.shape[0], -1).double().numpy(), n_neighbors=k)
        votes = y[torch.as_tensor(ind_t)]
        ty = torch.mode(votes, dim=1).values
        changed = float((ty != ys).double().mean())
        dist_x, _ = nn_.kneighbors(xs.reshape(xs.shape[0], -1).double().numpy(), n_neighbors=2)
        own = float(torch.as_tensor(dist_x[:, 1]).median())
        near = float(torch.as_tensor(dist_t[:, 0]).median())
        ratio = near / own if own > 0 else (1.0 if near == 0 else float("inf"))
        method = f"{k}-nn"
    if tol is not None and changed > tol:
        raise InputError(
            f"transform is not a symmetry of the data set: it changes the label of {changed:.1%} of "
            f"{len(idx)} samples (labels of T(x) by {method}), more than tol={tol:g}; pass a larger tol, "
            "or use a transform the labels are invariant under"
        )
    return SymmetryCheck(label_change=changed, distance_ratio=ratio, n=len(idx), method=method)


# --------------------------------------------------------------------------- the bound


def closed_walk_bound(walk: Tensor):
    """The lower bound ``χ >= (1 - d_H(π_1, π_n) / r2) / 2`` of a walk (0 when ``r2 = 0``).

    It holds for every walk (see the module docstring); for a closed walk (first and last
    pattern equal) it is 1/2. A float for one walk ``(n_points, n_neurons)``, a float64
    tensor ``(batch,)`` for a batch (walks padded by repeating the last pattern, as in
    ``spacefold._core.measure.pad_walks``).
    """
    w, single = measure.as_walk_batch(walk)
    ends = (w[:, 0] ^ w[:, -1]).sum(-1).double()
    _, r2 = measure._batch_ranges(w)
    r2 = r2.double()
    bound = torch.where(r2 > 0, 0.5 * (1.0 - ends / torch.where(r2 > 0, r2, torch.ones_like(r2))), torch.zeros_like(r2))
    return float(bound[0]) if single else bound


# --------------------------------------------------------------------------- an exactly invariant MLP


class _TieRows(nn.Module):
    """Weight ``(2k, d)`` -> ``[A; A M]`` with ``A`` the first ``k`` rows: the second half of the
    neurons sees the mirror image of the input (``(A M) x = A (M x)``)."""

    matrix: Tensor  # a buffer

    def __init__(self, matrix: Tensor):
        super().__init__()
        self.register_buffer("matrix", matrix)

    def forward(self, w: Tensor) -> Tensor:
        top = w[: w.shape[0] // 2]
        return torch.cat([top, top @ self.matrix.to(top.dtype)], 0)


class _TieBias(nn.Module):
    def forward(self, b: Tensor) -> Tensor:
        top = b[: b.shape[0] // 2]
        return torch.cat([top, top], 0)


class _TieColumns(nn.Module):
    """Weight ``(h, 2k)`` -> ``[B, B]``: the next layer sums the two halves, so swapping them changes nothing."""

    def forward(self, w: Tensor) -> Tensor:
        left = w[:, : w.shape[1] // 2]
        return torch.cat([left, left], 1)


def invariant_mlp(arch, in_features: int, n_classes: int, transform: Transform, *, seed: int = 0):
    """A spacefold MLP (``spacefold.mlp``) exactly invariant under the linear involution ``transform``
    from its second hidden layer on, with weights tied by ``torch.nn.utils.parametrize``.

    The first hidden layer holds pairs of neurons ``relu(a.x + c)`` and ``relu(a.Mx + c)``; the
    second sums the two members of each pair with equal weights, so its pre-activation and every
    later one is the same for ``x`` and ``Mx``. ``transform`` must be linear, orthogonal and its own
    inverse (a mirror: ``Mirror(axis)`` on vectors with ``center=0``, or a flip of images); the
    first hidden width must be even and there must be at least two hidden layers. The model
    trains like any other; ``torch.nn.utils.parametrize.remove_parametrizations(layer, name,
    leave_parametrized=True)`` on ``net[0]`` (weight, bias) and ``net[2]`` (weight) leaves a plain
    MLP with the tied values (for ``spacefold.save_checkpoint``).
    """
    from torch.nn.utils import parametrize

    from ..models.mlp import mlp, parse_arch

    check_int(in_features, "in_features", 1)
    hidden = parse_arch(arch)
    if len(hidden) < 2 or hidden[0] % 2:
        raise InputError(f"arch must have at least two hidden layers and an even first width, got {arch!r}")
    zero = _apply(transform, torch.zeros(1, in_features, dtype=torch.float64))
    if zero.abs().max() > 0:
        raise InputError("transform must be linear (map 0 to 0), got one that moves 0; use Mirror(..., center=0)")
    eye = torch.eye(in_features, dtype=torch.float64)
    m = _apply(transform, eye)  # row i is M e_i, so this is M^T = M for a symmetric M
    if not (torch.allclose(m @ m, eye) and torch.allclose(m, m.T)):
        raise InputError(
            "transform must be a linear orthogonal involution such as a mirror (M M = I, M = M^T), got one that is not"
        )
    model = mlp(hidden, in_features, n_classes, seed=seed)
    parametrize.register_parametrization(model.net[0], "weight", _TieRows(m.to(torch.float32)))
    parametrize.register_parametrization(model.net[0], "bias", _TieBias())
    parametrize.register_parametrization(model.net[2], "weight", _TieColumns())
    return model
