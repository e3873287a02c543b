"""The exact rational reference walk: Γ* of a segment through a small network, in Fractions.

It follows the definition of the walk Γ* (the pattern at t = 0, the pattern of every maximal open
piece of (0, 1) on which it is constant, the pattern at t = 1; docs/method.md, 'The exact walk') with
:class:`fractions.Fraction`: layer by layer, every pre-activation is affine between the breakpoints
found so far, so its crossings of the activation's kinks and of the bit threshold (and, for max
pooling, every point where two inputs of a window are equal) are found exactly from its values at
the breakpoints; the pattern of each final piece is taken at its midpoint. It shares no code with
the walkers (nor with torch: weights and inputs are read as the exact rationals their floats are).
It is slow (Fractions): nets of a few dozen neurons. The layers it reads are :data:`LAYERS`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from fractions import Fraction
from typing import NamedTuple

from torch import nn

from ..errors import InputTypeError
from ..models.cantornet import exact_walk as _cantornet_exact_walk

__all__ = ["reference_walk", "reference_pattern", "ReferenceWalk", "cantornet_walk", "ACTIVATIONS", "LAYERS"]


_ACTS = (nn.ReLU, nn.LeakyReLU, nn.Hardtanh)  # nn.ReLU6 is a Hardtanh(0, 6)
_MAXPOOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
_AVGPOOLS = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)


def _kinks(mod: nn.Module) -> list[Fraction]:
    if isinstance(mod, nn.Hardtanh):
        return [Fraction(float(mod.min_val)), Fraction(float(mod.max_val))]
    return [Fraction(0)]


def _act(mod: nn.Module, v: list[Fraction]) -> list[Fraction]:
    if isinstance(mod, nn.ReLU):
        return [max(z, Fraction(0)) for z in v]
    if isinstance(mod, nn.LeakyReLU):
        a = Fraction(float(mod.negative_slope))
        return [z if z > 0 else a * z for z in v]
    lo, hi = _kinks(mod)
    return [min(max(z, lo), hi) for z in v]


def _dims(mod: nn.Module) -> int:
    return int(type(mod).__name__[-2])  # MaxPool2d -> 2


def _tup(v, n: int) -> tuple[int, ...]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


def _axis_windows(mod: nn.Module, n: int, axis: int) -> list[tuple[list[int], int]]:
    """Per output position along dimension ``axis`` (of size n) of a pooling: the input positions of its
    window and (average pooling) the count its divisor takes, from torch's documented output sizes."""
    d = _dims(mod)
    if isinstance(
        mod,
        (
            nn.AdaptiveMaxPool1d,
            nn.AdaptiveMaxPool2d,
            nn.AdaptiveMaxPool3d,
            nn.AdaptiveAvgPool1d,
            nn.AdaptiveAvgPool2d,
            nn.AdaptiveAvgPool3d,
        ),
    ):
        o = _tup(mod.output_size, d)[axis]
        o = n if o is None else o
        out = []
        for i in range(o):
            a, b = (i * n) // o, -((-(i + 1) * n) // o)  # floor(i n / o), ceil((i + 1) n / o)
            out.append((list(range(a, b)), b - a))
        return out
    k = _tup(mod.kernel_size, d)[axis]
    s = _tup(mod.stride if mod.stride else mod.kernel_size, d)[axis]
    p = _tup(mod.padding, d)[axis]
    dil = _tup(getattr(mod, "dilation", 1), d)[axis]
    span = n + 2 * p - dil * (k - 1) - 1
    o = (-(-span // s) if mod.ceil_mode else span // s) + 1
    if mod.ceil_mode and (o - 1) * s >= n + p:  # the last window must start inside the input or left padding
        o -= 1
    out = []
    for i in range(o):
        start = i * s - p
        if isinstance(mod, _MAXPOOLS):
            out.append(([start + j * dil for j in range(k) if 0 <= start + j * dil < n], 0))
        else:  # average pooling: the divisor counts the padding, not what lies past it
            end = min(start + k, n + p)
            size = end - start
            a, b = max(start, 0), min(end, n)
            out.append((list(range(a, b)), size if mod.count_include_pad else b - a))
    return out


def _pool(mod: nn.Module, v: list[Fraction], shape: tuple[int, ...]) -> tuple[list[Fraction], tuple[int, ...]]:
    """Max or average pooling of the values v of shape (C, *spatial) (flat, row-major)."""
    d = _dims(mod)
    spatial = shape[-d:]
    lead = 1
    for n in shape[:-d]:
        lead *= n
    axes = [_axis_windows(mod, n, a) for a, n in enumerate(spatial)]
    strides = [1] * d
    for a in range(d - 2, -1, -1):
        strides[a] = strides[a + 1] * spatial[a + 1]
    plane = 1
    for n in spatial:
        plane *= n
    out = []
    for c in range(lead):
        for combo in itertools.product(*axes):
            idx = [
                c * plane + sum(strides[a] * i for a, i in enumerate(pos))
                for pos in itertools.product(*[w for w, _ in combo])
            ]
            if isinstance(mod, _MAXPOOLS):
                out.append(max(v[i] for i in idx))
            else:
                div = getattr(mod, "divisor_override", None)
                if not div:
                    div = 1
                    for _, size in combo:
                        div *= size
                out.append(sum((v[i] for i in idx), Fraction(0)) / div)
    return out, (*shape[:-d], *(len(w) for w in axes))


def _windows(mod: nn.Module, shape: tuple[int, ...]) -> list[list[int]]:
    """The flat input indices of every window of a max pooling of values of shape (C, *spatial)."""
    d = _dims(mod)
    spatial = shape[-d:]
    lead = 1
    for n in shape[:-d]:
        lead *= n
    axes = [_axis_windows(mod, n, a) for a, n in enumerate(spatial)]
    strides = [1] * d
    for a in range(d - 2, -1, -1):
        strides[a] = strides[a + 1] * spatial[a + 1]
    plane = 1
    for n in spatial:
        plane *= n
    return [
        [
            c * plane + sum(strides[a] * i for a, i in enumerate(pos))
            for pos in itertools.product(*[w for w, _ in combo])
        ]
        for c in range(lead)
        for combo in itertools.product(*axes)
    ]


def _forward(net: nn.Sequential, x: list[Fraction], upto: int) -> tuple[list[Fraction], tuple[int, ...]]:
    """The input of layer ``upto`` at the point x and its shape without the batch (everything in Fractions)."""
    v: list[Fraction] = x
    shape: tuple[int, ...] = (len(x),)
    for mod in list(net)[:upto]:
        if isinstance(mod, nn.Linear):
            w = [[Fraction(float(a)) for a in row] for row in mod.weight.detach().tolist()]
            b = (
                [Fraction(float(a)) for a in mod.bias.detach().tolist()]
                if mod.bias is not None
                else [Fraction(0)] * len(w)
            )
            v = [sum((wi * vi for wi, vi in zip(row, v)), Fraction(0)) + bi for row, bi in zip(w, b)]
            shape = (len(v),)
        elif isinstance(mod, _ACTS):
            v = _act(mod, v)
        elif isinstance(mod, (*_MAXPOOLS, *_AVGPOOLS)):
            v, shape = _pool(mod, v, shape)
        elif isinstance(mod, nn.Unflatten):
            shape = tuple(mod.unflattened_size)
        elif isinstance(mod, nn.Flatten):
            shape = (len(v),)
        else:
            raise InputTypeError(f"the reference walk does not know {type(mod).__name__}")
    return v, shape


def _pattern(net: nn.Sequential, x: list[Fraction]) -> tuple[bool, ...]:
    bits: list[bool] = []
    for k, mod in enumerate(net):
        if isinstance(mod, _ACTS):
            bits += [z > 0 for z in _forward(net, x, k)[0]]
    return tuple(bits)


def _reference_walk(
    net: nn.Sequential, x1: list[float], x2: list[float]
) -> tuple[list[Fraction], list[tuple[bool, ...]], list[Fraction]]:
    """Γ* of the segment x1 -> x2 in exact arithmetic: ``(t, patterns, breakpoints)``, t where each region is
    entered, and every breakpoint (kink crossing or window tie) found."""
    a = [Fraction(v) for v in x1]
    b = [Fraction(v) for v in x2]

    def point(t: Fraction) -> list[Fraction]:
        return [ai + t * (bi - ai) for ai, bi in zip(a, b)]

    ts = {Fraction(0), Fraction(1)}
    for k, mod in enumerate(net):
        if not isinstance(mod, (*_ACTS, *_MAXPOOLS)):
            continue
        tl = sorted(ts)
        vals = {t: _forward(net, point(t), k) for t in tl}
        for ta, tb in zip(tl, tl[1:]):
            (za, shape), (zb, _) = vals[ta], vals[tb]
            pairs = []
            if isinstance(mod, _MAXPOOLS):
                for win in _windows(mod, shape):
                    pairs += [(za[i] - za[j], zb[i] - zb[j]) for i in win for j in win if i < j]
            else:
                # the kinks, and the bit threshold 0 (not a kink of a Hardtanh, but the bit changes there)
                levels = set(_kinks(mod)) | {Fraction(0)}
                pairs += [(za[n] - lv, zb[n] - lv) for n in range(len(za)) for lv in levels]
            for da, db in pairs:
                if da * db < 0:  # strictly inside the piece
                    ts.add(ta + (tb - ta) * da / (da - db))
    tl = sorted(ts)
    entries = [(Fraction(0), _pattern(net, point(Fraction(0))))]
    entries += [(ta, _pattern(net, point((ta + tb) / 2))) for ta, tb in zip(tl, tl[1:])]
    entries += [(Fraction(1), _pattern(net, point(Fraction(1))))]
    t_out: list[Fraction] = []
    p_out: list[tuple[bool, ...]] = []
    for t, p in entries:
        if not p_out or p != p_out[-1]:
            t_out.append(t)
            p_out.append(p)
    return t_out, p_out, tl


ACTIVATIONS = _ACTS
LAYERS = (nn.Linear, *_ACTS, *(*_MAXPOOLS, *_AVGPOOLS), nn.Flatten, nn.Unflatten)


class ReferenceWalk(NamedTuple):
    """The walk Γ* of a segment in exact rational arithmetic, as ``reference_walk`` returns it.

    Attributes:
        t (list[Fraction]): where each region is entered (``t[0] == 0``).
        patterns (list[tuple[bool, ...]]): the bits of each region, one per neuron of every activation
            layer, in order; consecutive patterns distinct.
        breakpoints (list[Fraction]): every kink crossing or window tie found (0 and 1 included),
            whether or not a bit changes there.

    Examples:
        >>> import torch
        >>> from spacefold.testing import reference_walk
        >>> net = torch.nn.Sequential(torch.nn.Linear(1, 2), torch.nn.ReLU())
        >>> with torch.no_grad():
        ...     _ = net[0].weight.copy_(torch.tensor([[1.0], [-1.0]])), net[0].bias.zero_()
        >>> ref = reference_walk(net, [-1.0], [1.0])
        >>> [str(t) for t in ref.t], ref.patterns, [str(b) for b in ref.breakpoints]
        (['0', '1/2'], [(False, True), (True, False)], ['0', '1/2', '1'])
    """

    t: list[Fraction]
    patterns: list[tuple[bool, ...]]
    breakpoints: list[Fraction]


def _check(net: nn.Module) -> nn.Sequential:
    if not isinstance(net, nn.Sequential):
        raise InputTypeError(f"net must be a torch.nn.Sequential, got {type(net).__name__}")
    for mod in net:
        if not isinstance(mod, LAYERS):
            known = ", ".join(t.__name__ for t in LAYERS)
            raise InputTypeError(f"net holds a {type(mod).__name__}; the reference walk knows {known}")
    return net


def reference_pattern(net: nn.Sequential, x: Sequence[float | Fraction]) -> tuple[bool, ...]:
    """The activation pattern of one input in exact rational arithmetic (no torch arithmetic).

    Args:
        net (nn.Sequential): a sequence of ``Linear``, ``ReLU``, ``LeakyReLU``, ``Hardtanh``, max and
            average pooling, ``Flatten`` and ``Unflatten`` layers; its weights are read as exact fractions.
        x (Sequence[float | Fraction]): one input, flattened.

    Returns:
        tuple[bool, ...]: one bit per neuron of every activation layer, in order (bit = z > 0).

    Raises:
        InputTypeError: ``net`` is not an ``nn.Sequential`` of those layers.

    Examples:
        >>> import torch
        >>> from spacefold.testing import reference_pattern
        >>> net = torch.nn.Sequential(torch.nn.Linear(1, 2), torch.nn.ReLU())
        >>> with torch.no_grad():
        ...     _ = net[0].weight.copy_(torch.tensor([[1.0], [-1.0]])), net[0].bias.zero_()
        >>> reference_pattern(net, [0.5]), reference_pattern(net, [0])  # a tie (z = 0) is bit 0
        ((True, False), (False, False))
    """
    return _pattern(_check(net), [Fraction(v) for v in x])


def reference_walk(net: nn.Sequential, x1: Sequence[float | Fraction], x2: Sequence[float | Fraction]) -> ReferenceWalk:
    """The walk Γ* of the segment ``x1 -> x2`` in exact rational arithmetic: an oracle that shares no code
    with the walkers (nor with torch's arithmetic), to check a walk against.

    Args:
        net (nn.Sequential): a sequence of ``Linear``, ``ReLU``, ``LeakyReLU``, ``Hardtanh``, max and
            average pooling, ``Flatten`` and ``Unflatten`` layers; its weights are read as exact fractions.
        x1 (Sequence[float | Fraction]): the start, one input flattened.
        x2 (Sequence[float | Fraction]): the end, of the same length.

    Returns:
        ReferenceWalk: ``t`` (where each region is entered), ``patterns`` and ``breakpoints``, in fractions.

    Raises:
        InputTypeError: ``net`` is not an ``nn.Sequential`` of those layers.

    Examples:
        >>> import torch, spacefold as sf
        >>> from spacefold.testing import reference_walk
        >>> net = torch.nn.Sequential(torch.nn.Linear(1, 2), torch.nn.ReLU()).double()
        >>> with torch.no_grad():
        ...     _ = net[0].weight.copy_(torch.tensor([[1.0], [-1.0]])), net[0].bias.zero_()
        >>> ref = reference_walk(net, [-1.0], [1.0])
        >>> [str(t) for t in ref.t], ref.patterns
        (['0', '1/2'], [(False, True), (True, False)])
        >>> w = sf.walk(net, torch.tensor([-1.0], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64))
        >>> [tuple(p) for p in w.patterns.tolist()] == ref.patterns  # the exact walk agrees
        True
    """
    t, patterns, breakpoints = _reference_walk(_check(net), list(x1), list(x2))  # type: ignore[arg-type]
    return ReferenceWalk(t, [tuple(p) for p in patterns], breakpoints)


def cantornet_walk(
    depth: int,
    representation: str = "A",
    start: Sequence[float | Fraction] | None = None,
    end: Sequence[float | Fraction] | None = None,
) -> tuple[list[Fraction], list[tuple[bool, ...]]]:
    """The walk Γ* of a segment through CantorNet, from its exact rational weights.

    Args:
        depth (int): the recursion depth k, in [1, 10].
        representation (str): ``"A"``, ``"B"`` or ``"C"`` (as in ``spacefold.cantornet``).
        start (Sequence[float | Fraction] | None): the start (default (0, 3/4)).
        end (Sequence[float | Fraction] | None): the end (default (1, 3/4)).

    Returns:
        tuple[list[Fraction], list[tuple[bool, ...]]]: ``(t, patterns)``, where each region is entered
        (fractions) and its bits, as in ``reference_walk``.

    Raises:
        ValueError: ``depth`` outside [1, 10] or an unknown ``representation``.

    Examples:
        >>> import torch, spacefold as sf
        >>> from spacefold.testing import cantornet_walk
        >>> t, patterns = cantornet_walk(2)
        >>> len(t), [str(v) for v in t[:3]]
        (11, ['0', '1/18', '1/9'])
        >>> net = sf.cantornet(2)
        >>> x1, x2 = torch.tensor([0.0, 0.75], dtype=torch.float64), torch.tensor([1.0, 0.75], dtype=torch.float64)
        >>> w = sf.walk(net, x1, x2, tie_tol=net.tie_tol)
        >>> [tuple(p) for p in w.patterns.tolist()] == patterns  # the exact walk agrees
        True
        >>> max(abs(float(a) - b) for a, b in zip(t, w.t.tolist())) < 1e-8  # tie_tol moves a switch by ~1e-9
        True
    """
    kw = {k: v for k, v in (("start", start), ("end", end)) if v is not None}
    return _cantornet_exact_walk(depth, representation, **kw)
