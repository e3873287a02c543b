"""CantorNet (arXiv 2411.19713): ReLU networks with known decision boundaries.

The sandbox of docs/method.md, 'CantorNet'. CantorNet of recursion depth k decides, for a point
(x, y) of the unit square, whether it lies above the boundary

    y = (A^(k)(x) + 1) / 2,      A(x) = max(-3x + 1, 0, 3x - 2),  A^(k) = A ∘ ... ∘ A,

whose vertices sit on the endpoints of the Cantor intervals of level k. Three
networks compute the same decision (output > 0 iff the point is *above* the
boundary, i.e. outside R_k = {y <= (A^(k)(x) + 1)/2}):

- ``"A"``, recursion-based, 5k + 1 ReLU neurons: k copies of
  ``ReLU(W_1 ·) -> ReLU(W_2 ·)`` and one output neuron.
- ``"B"`` and ``"C"``, DNF-like, O(2^k) neurons: hyperplanes through
  consecutive boundary vertices, the "cantor shape" (the three outer hyperplanes
  and one *dent* max(h, h', h'') per bump), a ReLU layer on it, then a tree of
  pairwise minima realised with ReLUs (B: min(a,b) = b - ReLU(b-a);
  C: min(a,b) = ½(a + b - |a-b|)) and one output neuron.

All weights are computed in exact rational arithmetic (:class:`fractions.Fraction`)
from the formulas of docs/method.md, 'CantorNet' and only then converted to the requested
dtype [DESIGN: own construction; no third-party code]. Every ReLU'd layer is its own
``nn.ReLU`` module, so :func:`spacefold.activation_patterns` sees all of them in
forward order, the W_2 layers of A and the output neuron included (docs/method.md, 'Activation patterns').
The dent maxima of B and C are computed *outside* the ReLU network, by an
``nn.MaxPool1d`` over triples of hyperplanes; they contribute no bits.

Ties. Representation C computes each minimum as ½(a + b - |a - b|) from four ReLUs.
Many of its pre-activations are exactly 0 in exact arithmetic: both ReLU(b - a) and
ReLU(a - b) wherever a = b, and every neuron fed by a minimum whose exact value is 0
(one argument clipped to 0), the output neuron below the decision boundary for
instance, on whole intervals of the default path. In floating point the sums of the
folded weights leave residues of about 1e-17 of either sign there, and the bits
flicker (docs/method.md, 'CantorNet'). The remedy is a tie tolerance, bit = [z > tie_tol]: :data:`TIE_TOL`
(1e-9) for float64, far above the rounding residues and far below the smallest
non-zero pre-activation at the points of practical grids (on the 20001-point grid of
the default path at depth 5: 1/1944000 ≈ 5e-7 for B and C, 5e-5 for A). Near a true
crossing the tolerance moves the walkers' switch point by tie_tol/slope, about 1e-9 in
t. Every net built here carries its recommended value as ``net.tie_tol``; pass it on::

    net = spacefold.cantornet(depth=3, representation="C")
    spacefold.folding(net, x1, x2, method="uniform", steps=10, tie_tol=net.tie_tol)

For A and B the tolerance changes nothing on the default path, and it is harmless.

:func:`exact_preactivations` and :func:`exact_pattern` evaluate a point in exact
rational arithmetic directly from the formulas (no torch, no weight matrices): an
independent reference for tests.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections import OrderedDict
from collections.abc import Sequence
from fractions import Fraction

import torch
from torch import Tensor, nn

__all__ = [
    "cantornet",
    "CantorNet",
    "CantorShape",
    "REPRESENTATIONS",
    "MAX_DEPTH",
    "TIE_TOL",
    "DEFAULT_START",
    "DEFAULT_END",
    "tie_tolerance",
    "cantor_intervals",
    "decision_boundary_vertices",
    "boundary_hyperplanes",
    "cantor_shape_indices",
    "stage_shapes",
    "code_length",
    "recursion_A",
    "exact_preactivations",
    "exact_pattern",
    "exact_output",
    "exact_weights",
    "exact_walk",
]

REPRESENTATIONS = ("A", "B", "C")

#: Largest recursion depth accepted. B and C have O(2^k) neurons (C at k = 10:
#: about 3,600); A would allow more, but float64 loses the boundary beyond that
#: (every recursion multiplies rounding errors by 3).
MAX_DEPTH = 10

#: Recommended tie tolerance (bit = z > TIE_TOL) for float64 evaluation; see the
#: module docstring.
TIE_TOL = 1e-9

_TIE_TOLS = {torch.float64: TIE_TOL, torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 1e-2}

#: The path of docs/method.md, 'CantorNet': the horizontal line y = 3/4.
DEFAULT_START = (Fraction(0), Fraction(3, 4))
DEFAULT_END = (Fraction(1), Fraction(3, 4))

_HALF = Fraction(1, 2)


# --------------------------------------------------------------------------- validation


def _check_depth(depth) -> int:
    if isinstance(depth, bool) or not isinstance(depth, numbers.Integral):
        raise TypeError(f"depth must be an int in [1, {MAX_DEPTH}] (the recursion depth k), got {depth!r}")
    depth = int(depth)
    if not 1 <= depth <= MAX_DEPTH:
        raise ValueError(f"depth must be an int in [1, {MAX_DEPTH}] (the recursion depth k), got {depth}")
    return depth


def _check_representation(representation) -> str:
    if not isinstance(representation, str):
        raise TypeError(f"representation must be one of 'A', 'B', 'C', got {representation!r}")
    rep = representation.strip().upper()
    if rep not in REPRESENTATIONS:
        raise ValueError(f"representation must be one of 'A', 'B', 'C' (case-insensitive), got {representation!r}")
    return rep


def _check_dtype(dtype) -> torch.dtype:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point or dtype.is_complex:
        raise TypeError(f"dtype must be a real floating torch dtype such as torch.float64, got {dtype!r}")
    return dtype


def _to_fraction(value, name: str) -> Fraction:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a finite real number, got {value!r}")
    if isinstance(value, Fraction):
        return value
    if isinstance(value, numbers.Integral):
        return Fraction(int(value))
    if isinstance(value, numbers.Rational):
        return Fraction(int(value.numerator), int(value.denominator))
    if isinstance(value, numbers.Real):
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite real number, got {value}")
        return Fraction(value)  # exact value of the float
    raise TypeError(f"{name} must be a finite real number, got {value!r}")


def _check_point(point) -> tuple[Fraction, Fraction]:
    try:
        items = list(point)
    except TypeError:
        raise TypeError(f"point must be a pair (x, y) of real numbers, got {point!r}") from None
    if len(items) != 2:
        raise ValueError(f"point must be a pair (x, y) of real numbers, got {len(items)} values")
    return _to_fraction(items[0], "point x"), _to_fraction(items[1], "point y")


def tie_tolerance(dtype: torch.dtype = torch.float64) -> float:
    """Recommended tie tolerance for evaluating CantorNet in ``dtype``.

    float64: :data:`TIE_TOL` = 1e-9, exact on grids of up to ~10^5 points. float32:
    1e-4, which separates rounding from true values only on coarse grids such as the
    11-point grid of docs/method.md, 'CantorNet'; use float64 for anything finer.
    """
    return _TIE_TOLS.get(_check_dtype(dtype), 1e-2)


# --------------------------------------------------------------------------- geometry (exact)


def recursion_A(x, depth: int) -> Fraction:
    """A^(k)(x) in exact arithmetic, A(x) = max(-3x + 1, 0, 3x - 2) (docs/method.md, 'CantorNet')."""
    depth = _check_depth(depth)
    v = _to_fraction(x, "x")
    for _ in range(depth):
        v = max(1 - 3 * v, Fraction(0), 3 * v - 2)
    return v


def cantor_intervals(depth: int) -> list[tuple[Fraction, Fraction]]:
    """The 2^k closed intervals of the Cantor recursion at level k, left to right.

    C_0 = [0, 1], C_{n+1} = (1/3) C_n ∪ (2/3 + (1/3) C_n).
    """
    depth = _check_depth(depth)
    ivs = [(Fraction(0), Fraction(1))]
    third = Fraction(1, 3)
    for _ in range(depth):
        left = [(a * third, b * third) for a, b in ivs]
        ivs = left + [(2 * third + a, 2 * third + b) for a, b in left]
    return ivs


def decision_boundary_vertices(depth: int) -> list[tuple[Fraction, Fraction]]:
    """Vertices (x, y) of the piecewise-linear decision boundary at depth k (exact).

    x: the endpoints of the 2^k Cantor intervals of level k; y: the pattern
    [1, 1, ½, ½] repeated 2^(k-1) times, first element dropped, a final 1 appended
    (docs/method.md, 'CantorNet'). 2^(k+1) vertices.
    """
    depth = _check_depth(depth)
    xs = [e for iv in cantor_intervals(depth) for e in iv]
    ys = ([Fraction(1), Fraction(1), _HALF, _HALF] * 2 ** (depth - 1))[1:] + [Fraction(1)]
    return list(zip(xs, ys))


def boundary_hyperplanes(depth: int) -> list[tuple[Fraction, Fraction, Fraction]]:
    """Coefficients (a, b, c) of h(x, y) = a x + b y + c for each boundary edge.

    For consecutive vertices (x1, y1) -> (x2, y2) (docs/method.md, 'CantorNet'):
    h = (y1 - y2) x + (x2 - x1) y + (x1 y2 - x2 y1), positive above the edge's line.
    2^(k+1) - 1 hyperplanes.
    """
    v = decision_boundary_vertices(depth)
    return [(y1 - y2, x2 - x1, x1 * y2 - x2 * y1) for (x1, y1), (x2, y2) in zip(v[:-1], v[1:])]


def cantor_shape_indices(depth: int) -> tuple[list[int], list[tuple[int, int, int]]]:
    """Which hyperplanes form the cantor shape (docs/method.md, 'CantorNet').

    Returns ``(plain, dents)``: the indices of the hyperplanes used as they are, and
    the index triples of the dents (each dent is the max of its three hyperplanes).
    k = 1: all three hyperplanes, no dent. k >= 2 with H hyperplanes:
    plain = [0, 1, H - 1], dents (4j - 2, 4j - 1, 4j) for j = 1..⌊H/4⌋.
    """
    depth = _check_depth(depth)
    n_h = 2 ** (depth + 1) - 1
    if depth == 1:
        return [0, 1, 2], []
    return [0, 1, n_h - 1], [(4 * j - 2, 4 * j - 1, 4 * j) for j in range(1, n_h // 4 + 1)]


# --------------------------------------------------------------------------- exact weights


def _blocks(rep: str) -> tuple[list[list[Fraction]], list[Fraction]]:
    if rep == "B":  # min(a, b) = b - ReLU(b - a) = ReLU(b) - ReLU(-b) - ReLU(b - a)
        return [[Fraction(0), Fraction(1)], [Fraction(0), Fraction(-1)], [Fraction(-1), Fraction(1)]], [
            Fraction(1),
            Fraction(-1),
            Fraction(-1),
        ]
    # C: min(a, b) = ½ (ReLU(a+b) - ReLU(-a-b) - ReLU(b-a) - ReLU(a-b))
    return [
        [Fraction(1), Fraction(1)],
        [Fraction(-1), Fraction(-1)],
        [Fraction(-1), Fraction(1)],
        [Fraction(1), Fraction(-1)],
    ], [_HALF, -_HALF, -_HALF, -_HALF]


def _min_tree(n: int, rep: str) -> tuple[list[list[list[Fraction]]], list[Fraction]]:
    """Stage matrices of the pairwise-min tree over ``n`` values, and the final S.

    Stage m has the matrix kron(I, A_block) (plus a pass-through pair (+1, -1) for an
    odd count) times the previous sign matrix S_{m-1}, so its input is the previous
    stage's ReLU outputs. Values are paired as (v_0, v_1), (v_2, v_3), ...; the odd
    one out is the last. Stored sparse per row as {column: coefficient}.
    """
    block, signs = _blocks(rep)
    # sign matrix of the previous stage: value i = Σ_j S[i][j] * relu_out[j]
    prev_s: list[dict[int, Fraction]] = [{i: Fraction(1)} for i in range(n)]
    n_prev = n
    stages = []
    values = n
    while True:
        rows: list[dict[int, Fraction]] = []
        new_s: list[dict[int, Fraction]] = []
        for p in range(values // 2):
            a, b = 2 * p, 2 * p + 1
            group = {}
            for pair, sign in zip(block, signs):
                rows.append({a: pair[0], b: pair[1]})
                group[len(rows) - 1] = sign
            new_s.append(group)
        if values % 2:
            c = values - 1
            rows.append({c: Fraction(1)})
            rows.append({c: Fraction(-1)})
            new_s.append({len(rows) - 2: Fraction(1), len(rows) - 1: Fraction(-1)})
        # fold the previous S in: W = A_stage @ S_prev
        dense = []
        for row in rows:
            out = [Fraction(0)] * n_prev
            for i, coef in row.items():
                if coef:
                    for j, s in prev_s[i].items():
                        out[j] += coef * s
            dense.append(out)
        stages.append(dense)
        prev_s, n_prev, values = new_s, len(rows), len(new_s)
        if values == 1:
            break
    final = [Fraction(0)] * n_prev
    for j, s in prev_s[0].items():
        final[j] += s
    return stages, final


def exact_weights(depth: int, representation: str = "A") -> list[tuple[list[list[Fraction]], list[Fraction] | None]]:
    """The exact weights ``[(W, b), ...]`` of every affine map, in forward order.

    A: ``(W_1, b_1), (W_2, b_2)`` per recursion, then the top ``(W, b)``.
    B, C: the hyperplanes ``(W_h, b_h)`` (all H of them; the cantor shape then takes
    the plain ones and the dent maxima), the min-tree stages ``(W, None)`` and the
    final ``([S], None)``. ``W`` is a list of rows, ``b`` a list (``None``: no bias).
    """
    depth = _check_depth(depth)
    rep = _check_representation(representation)
    f = Fraction
    layers: list[tuple[list[list[Fraction]], list[Fraction] | None]]
    if rep == "A":
        layers = []
        for _ in range(depth):
            layers.append(([[f(3), f(0)], [f(-3), f(0)], [f(0), f(1)]], [f(-2), f(1), f(0)]))
            layers.append(([[f(1), f(1), f(0)], [f(0), f(0), f(1)]], [f(0), f(0)]))
        layers.append(([[-_HALF, f(1)]], [-_HALF]))
        return layers
    hyp = boundary_hyperplanes(depth)
    plain, dents = cantor_shape_indices(depth)
    layers = [([[a, b] for a, b, _ in hyp], [c for _, _, c in hyp])]
    stages, final = _min_tree(len(plain) + len(dents), rep)
    layers += [(w, None) for w in stages]
    layers.append(([final], None))
    return layers


def stage_shapes(depth: int, representation: str) -> list[tuple[int, ...]]:
    """Stage shapes of the DNF representations (docs/method.md, 'CantorNet').

    ``[(n,), W_1.shape, ..., W_L.shape, (q,)]``: the length of the cantor shape (the
    first ReLU layer), the min-tree stage matrices, and the final sign vector S.
    E.g. B, k = 1: ``[(3,), (5, 3), (3, 5), (3,)]``.
    """
    depth = _check_depth(depth)
    rep = _check_representation(representation)
    if rep == "A":
        raise ValueError("stage_shapes is defined for the DNF representations 'B' and 'C', got 'A'")
    plain, dents = cantor_shape_indices(depth)
    layers = exact_weights(depth, rep)
    shapes: list[tuple[int, ...]] = [(len(plain) + len(dents),)]
    shapes += [(len(w), len(w[0])) for w, _ in layers[1:-1]]
    shapes.append((len(layers[-1][0][0]),))
    return shapes


def code_length(depth: int, representation: str = "A") -> int:
    """Number of ReLU neurons m (bits of the pattern), output neuron included.

    A: 5k + 1. B, C: the cantor shape, every stage's rows, and the output neuron.
    """
    depth = _check_depth(depth)
    rep = _check_representation(representation)
    if rep == "A":
        return 5 * depth + 1
    shapes = stage_shapes(depth, rep)
    return shapes[0][0] + sum(s[0] for s in shapes[1:-1]) + 1


# --------------------------------------------------------------------------- exact evaluation (independent)


def _relu(v: Fraction) -> Fraction:
    return v if v > 0 else Fraction(0)


@functools.cache
def _geometry(depth: int):
    plain, dents = cantor_shape_indices(depth)
    return tuple(boundary_hyperplanes(depth)), tuple(plain), tuple(dents)


def _exact_trace(point, depth: int, representation: str) -> tuple[list[Fraction], Fraction]:
    depth = _check_depth(depth)
    rep = _check_representation(representation)
    x, y = _check_point(point)
    z: list[Fraction] = []
    if rep == "A":
        for _ in range(depth):
            u, v, w = 3 * x - 2, 1 - 3 * x, y  # layer (a)
            z += [u, v, w]
            ax, ay = _relu(u) + _relu(v), _relu(w)  # layer (b): A(x) and y
            z += [ax, ay]
            x, y = _relu(ax), _relu(ay)
        out = y - x / 2 - _HALF
        z.append(out)
        return z, _relu(out)
    # B, C: hyperplane values, the cantor shape with true maxima, then true minima
    hyperplanes, plain, dents = _geometry(depth)
    h = [a * x + b * y + c for a, b, c in hyperplanes]
    shape = [h[i] for i in plain] + [max(h[i] for i in d) for d in dents]
    z += shape
    values = [_relu(s) for s in shape]
    while len(values) > 1:
        nxt = []
        for p in range(len(values) // 2):
            a, b = values[2 * p], values[2 * p + 1]
            if rep == "B":
                z += [b, -b, b - a]
            else:
                z += [a + b, -a - b, b - a, a - b]
            nxt.append(min(a, b))
        if len(values) % 2:
            c = values[-1]
            z += [c, -c]
            nxt.append(c)
        values = nxt
    z.append(values[0])
    return z, _relu(values[0])


def exact_preactivations(point, depth: int, representation: str = "A") -> list[Fraction]:
    """Pre-activations of every ReLU neuron at ``point``, exact, in forward order.

    Computed directly from the formulas of docs/method.md, 'CantorNet' (the recursion for A; the
    boundary vertices, the cantor shape and true minima for B and C), without torch
    and without the weight matrices of :func:`exact_weights`: an independent
    reference. ``point`` is ``(x, y)``; floats are taken at their exact value.
    """
    return _exact_trace(point, depth, representation)[0]


def exact_pattern(point, depth: int, representation: str = "A") -> tuple[bool, ...]:
    """Activation pattern (bit = pre-activation > 0) of ``point``, exact."""
    return tuple(v > 0 for v in exact_preactivations(point, depth, representation))


def exact_output(point, depth: int, representation: str = "A") -> Fraction:
    """Network output at ``point``, exact: > 0 iff the point lies above the boundary."""
    return _exact_trace(point, depth, representation)[1]


def _layer_sizes(depth: int, rep: str) -> list[int]:
    if rep == "A":
        return [3, 2] * depth + [1]
    shapes = stage_shapes(depth, rep)
    return [shapes[0][0]] + [s[0] for s in shapes[1:-1]] + [1]


def exact_walk(
    depth: int, representation: str = "A", start=DEFAULT_START, end=DEFAULT_END
) -> tuple[list[Fraction], list[tuple[bool, ...]]]:
    """The reference walk Γ* of the segment ``start -> end``, in exact arithmetic.

    Returns ``(t, patterns)``: the point t ∈ [0, 1] where each region is entered
    (``t[0] == 0``) and its pattern, consecutive patterns distinct. Γ* (docs/method.md,
    'Walks: three samplers') is the pattern at t = 0, the pattern of every maximal open piece of (0, 1)
    on which the pattern is constant, and the pattern at t = 1; zeros of a
    pre-activation at isolated points are not recorded.

    Layer-wise splitting in rationals, independent of torch and of the float walkers:
    along the segment every pre-activation is piecewise affine in t, with kinks only
    where an earlier neuron crosses 0 or (B, C) where two hyperplanes of a dent are
    equal. Starting from the pieces {[0, 1]} split at the dent kinks, each layer in
    forward order is affine on every current piece, so its crossings are found
    exactly from its values at the piece ends (:func:`exact_preactivations`) and
    added as breakpoints. The pattern of each final piece is taken at its midpoint.
    """
    depth = _check_depth(depth)
    rep = _check_representation(representation)
    (ax, ay), (bx, by) = _check_point(start), _check_point(end)
    cache: dict[Fraction, list[Fraction]] = {}

    def z(t: Fraction) -> list[Fraction]:
        if t not in cache:
            cache[t] = exact_preactivations((ax + t * (bx - ax), ay + t * (by - ay)), depth, rep)
        return cache[t]

    ts = {Fraction(0), Fraction(1)}
    if rep != "A":  # kinks of the dent maxima: hyperplanes are affine along the whole segment
        hyp, _, dents = _geometry(depth)
        h0 = [a * ax + b * ay + c for a, b, c in hyp]
        h1 = [a * bx + b * by + c for a, b, c in hyp]
        for d in dents:
            for i, j in ((d[0], d[1]), (d[0], d[2]), (d[1], d[2])):
                da, db = h0[i] - h0[j], h1[i] - h1[j]
                if (da > 0 > db) or (da < 0 < db):
                    ts.add(da / (da - db))
    times = sorted(ts)
    offset = 0
    for size in _layer_sizes(depth, rep):
        new = set()
        for ta, tb in zip(times[:-1], times[1:]):
            za, zb = z(ta)[offset : offset + size], z(tb)[offset : offset + size]
            for a, b in zip(za, zb):
                if (a > 0 > b) or (a < 0 < b):
                    new.add(ta + (tb - ta) * a / (a - b))
        times = sorted(set(times) | new)
        offset += size
    entries = [(Fraction(0), z(Fraction(0)))]
    entries += [(ta, z((ta + tb) / 2)) for ta, tb in zip(times[:-1], times[1:])]
    entries.append((Fraction(1), z(Fraction(1))))
    out_t: list[Fraction] = []
    out_p: list[tuple[bool, ...]] = []
    for t, zz in entries:
        bits = tuple(v > 0 for v in zz)
        if not out_p or bits != out_p[-1]:
            out_t.append(t)
            out_p.append(bits)
    return out_t, out_p


# --------------------------------------------------------------------------- torch modules


def _tensor(rows: Sequence[Sequence[Fraction]], dtype: torch.dtype) -> Tensor:
    return torch.tensor([[float(v) for v in row] for row in rows], dtype=dtype)


def _linear(w: list[list[Fraction]], b: list[Fraction] | None, dtype: torch.dtype) -> nn.Linear:
    lin = nn.Linear(len(w[0]), len(w), bias=b is not None, dtype=dtype)
    with torch.no_grad():
        lin.weight.copy_(_tensor(w, dtype))
        if b is not None:
            lin.bias.copy_(torch.tensor([float(v) for v in b], dtype=dtype))
    lin.requires_grad_(False)
    return lin


class CantorShape(nn.Module):
    """The cantor shape of B and C: ``(batch, 2) -> (batch, n_plain + n_dents)``.

    Evaluates the boundary hyperplanes (``hyperplanes``, an ``nn.Linear``), keeps the
    plain ones and takes each dent as the max of its three hyperplanes with an
    ``nn.MaxPool1d(3)``. No ReLU here, so it contributes no bits.
    """

    plain_index: Tensor  # buffers
    dent_index: Tensor

    def __init__(self, depth: int, dtype: torch.dtype = torch.float64):
        super().__init__()
        w, b = exact_weights(depth, "B")[0]
        plain, dents = cantor_shape_indices(depth)
        self.hyperplanes = _linear(w, b, dtype)
        self.register_buffer("plain_index", torch.tensor(plain, dtype=torch.int64))
        self.register_buffer("dent_index", torch.tensor([i for d in dents for i in d], dtype=torch.int64))
        self.dent_max = nn.MaxPool1d(3)
        self.n_out = len(plain) + len(dents)

    def forward(self, x: Tensor) -> Tensor:
        h = self.hyperplanes(x)
        out = h.index_select(1, self.plain_index)
        if self.dent_index.numel():
            d = self.dent_max(h.index_select(1, self.dent_index).unsqueeze(1)).squeeze(1)
            out = torch.cat([out, d], dim=1)
        return out


class CantorNet(nn.Module):
    """CantorNet of one depth and representation: ``(batch, 2) -> (batch, 1)``.

    Output > 0 iff (x, y) lies above the decision boundary y = (A^(k)(x) + 1)/2.
    ``body`` is an ``nn.Sequential`` whose ``nn.ReLU`` modules give the activation
    pattern in forward order. Attributes: ``depth``, ``representation``,
    ``n_neurons`` (code length m) and ``tie_tol`` (recommended tie tolerance for
    the current dtype, see :func:`tie_tolerance`; pass it as ``tie_tol=`` to
    spacefold's functions). The weights do not require gradients.
    """

    def __init__(self, depth: int, representation: str = "A", dtype: torch.dtype = torch.float64):
        super().__init__()
        depth = _check_depth(depth)
        rep = _check_representation(representation)
        dtype = _check_dtype(dtype)
        layers = exact_weights(depth, rep)
        mods: OrderedDict[str, nn.Module] = OrderedDict()
        if rep == "A":
            for i in range(depth):
                (w1, b1), (w2, b2) = layers[2 * i], layers[2 * i + 1]
                mods[f"fold{i + 1}"] = _linear(w1, b1, dtype)
                mods[f"relu_fold{i + 1}"] = nn.ReLU()
                mods[f"merge{i + 1}"] = _linear(w2, b2, dtype)
                mods[f"relu_merge{i + 1}"] = nn.ReLU()
            w, b = layers[-1]
            mods["out"] = _linear(w, b, dtype)
        else:
            mods["shape"] = CantorShape(depth, dtype)
            mods["relu_shape"] = nn.ReLU()
            for i, (w, _) in enumerate(layers[1:-1], start=1):
                mods[f"min{i}"] = _linear(w, None, dtype)
                mods[f"relu_min{i}"] = nn.ReLU()
            mods["out"] = _linear(layers[-1][0], None, dtype)
        mods["relu_out"] = nn.ReLU()
        self.body = nn.Sequential(mods)
        self.depth = depth
        self.representation = rep
        self.n_neurons = code_length(depth, rep)

    @property
    def tie_tol(self) -> float:
        """Recommended tie tolerance for the current dtype of the weights."""
        out = self.body.out
        assert isinstance(out, nn.Linear)  # the last affine layer, built in __init__
        return tie_tolerance(out.weight.dtype)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)

    def extra_repr(self) -> str:
        return f"depth={self.depth}, representation='{self.representation}', n_neurons={self.n_neurons}"


def cantornet(depth: int, representation: str = "A", dtype: torch.dtype = torch.float64) -> CantorNet:
    """CantorNet (arXiv 2411.19713), the sandbox with known answers, as an ``nn.Module`` whose weights are
    computed in exact rationals from the construction.

    The pattern (``spacefold.activation_patterns``) has one bit per ReLU neuron, the output neuron
    included: m = 6, 11, 16, 21, 26 (A), 12, 14, 24, 42, 76 (B), 14, 17, 29, 51, 93 (C) for k = 1..5.
    Representation C has exact ties (two ReLUs of ±(a − b) both at 0) that float arithmetic misreads:
    pass ``tie_tol=net.tie_tol`` when walking it (docs/method.md, "CantorNet").

    Args:
        depth (int): the recursion depth k, in [1, 10].
        representation (str): ``"A"`` (recursive, 5k + 1 ReLU neurons), ``"B"`` or ``"C"`` (DNF-like,
            O(2^k) neurons); case-insensitive.
        dtype (torch.dtype): the dtype of the weights (``net.tie_tol`` follows it).

    Returns:
        CantorNet: ``(batch, 2) -> (batch, 1)``, with ``depth``, ``representation``, ``n_neurons`` (the
        code length m) and ``tie_tol`` (the recommended tie tolerance for its dtype).

    Raises:
        ValueError: ``depth`` outside [1, 10] or an unknown ``representation``.
        TypeError: ``dtype`` is not a real floating dtype.

    Examples:
        >>> import torch, spacefold as sf
        >>> net = sf.cantornet(depth=2)
        >>> net.n_neurons, net.tie_tol, sf.cantornet(2, "C").n_neurons
        (11, 1e-09, 17)
        >>> x = torch.tensor([[0.1, 0.75], [0.5, 0.75]], dtype=torch.float64)
        >>> sf.activation_patterns(net, x, tie_tol=net.tie_tol).shape
        torch.Size([2, 11])
    """
    return CantorNet(depth, representation, dtype)
