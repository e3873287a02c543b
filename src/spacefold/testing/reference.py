"""The exact rational reference walk: Γ* of a segment through a small network, in Fractions.

It follows the definition of the walk Γ* (the pattern at t = 0, the pattern of every maximal
open piece of (0, 1) on which it is constant, the pattern at t = 1; docs/method.md, 'The exact
walk') with :class:`fractions.Fraction`: layer by layer, every pre-activation is affine between
the breakpoints found so far, so its crossings of the activation's kinks and of the bit threshold
(and, for max pooling, every point where two inputs of a window are equal) are found exactly from
its values at the breakpoints; the pattern of each final piece is taken at its midpoint. It
shares no code with the walkers (nor with torch: weights and inputs are read as the exact
rationals their floats are). It is slow (Fractions): nets of a few dozen neurons.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import NamedTuple

from torch import nn

from ..errors import InputTypeError
from ..models.cantornet import exact_walk as _cantornet_exact_walk

__all__ = ["reference_walk", "reference_pattern", "ReferenceWalk", "cantornet_walk", "ACTIVATIONS", "LAYERS"]

ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.Hardtanh)
LAYERS = (nn.Linear, *ACTIVATIONS, nn.MaxPool1d, nn.Flatten, nn.Unflatten)


class ReferenceWalk(NamedTuple):
    """Γ* in exact arithmetic: ``t[i]`` where region i is entered (``t[0] == 0``), ``patterns[i]`` its
    bits (one per neuron of every activation layer, in order), ``breakpoints`` every kink crossing
    found (0 and 1 included), whether or not a bit changes there."""

    t: list[Fraction]
    patterns: list[tuple[bool, ...]]
    breakpoints: list[Fraction]


def _check(net: nn.Module) -> nn.Sequential:
    if not isinstance(net, nn.Sequential):
        raise InputTypeError(f"net must be a torch.nn.Sequential, got {type(net).__name__}")
    for mod in net:
        if not isinstance(mod, LAYERS):
            names = ", ".join(t.__name__ for t in LAYERS)
            raise InputTypeError(f"net holds a {type(mod).__name__}; the reference walk knows {names}")
    return net


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


def _windows(mod: nn.MaxPool1d, n: int) -> list[list[int]]:
    k, s = int(mod.kernel_size), int(mod.stride)  # type: ignore[arg-type]
    return [list(range(i, i + k)) for i in range(0, n - k + 1, s)]


def _forward(net: nn.Sequential, x: list[Fraction], upto: int) -> list[Fraction]:
    """The input of layer ``upto`` at the point x (everything in Fractions)."""
    v = x
    for mod in list(net)[:upto]:
        if isinstance(mod, nn.Linear):
            w = [[Fraction(float(a)) for a in row] for row in mod.weight.detach().tolist()]
            b = ([Fraction(float(a)) for a in mod.bias.detach().tolist()] if mod.bias is not None
                 else [Fraction(0)] * len(w))
            v = [sum((wi * vi for wi, vi in zip(row, v)), Fraction(0)) + bi for row, bi in zip(w, b)]
        elif isinstance(mod, ACTIVATIONS):
            v = _act(mod, v)
        elif isinstance(mod, nn.MaxPool1d):
            v = [max(v[i] for i in win) for win in _windows(mod, len(v))]
        # Unflatten / Flatten: the same numbers
    return v


def _pattern(net: nn.Sequential, x: list[Fraction]) -> tuple[bool, ...]:
    bits: list[bool] = []
    for k, mod in enumerate(net):
        if isinstance(mod, ACTIVATIONS):
            bits += [z > 0 for z in _forward(net, x, k)]
    return tuple(bits)


def reference_pattern(net: nn.Sequential, x: Sequence[float | Fraction]) -> tuple[bool, ...]:
    """The activation pattern of the single input ``x`` (a flat sequence), in exact arithmetic."""
    return _pattern(_check(net), [Fraction(v) for v in x])


def reference_walk(net: nn.Sequential, x1: Sequence[float | Fraction], x2: Sequence[float | Fraction]
                   ) -> ReferenceWalk:
    """Γ* of the segment ``x1 -> x2`` (flat sequences of numbers) in exact arithmetic.

    Raises :class:`~spacefold.InputTypeError` for a net that is not an ``nn.Sequential`` of
    :data:`LAYERS`.
    """
    _check(net)
    a = [Fraction(v) for v in x1]
    b = [Fraction(v) for v in x2]

    def point(t: Fraction) -> list[Fraction]:
        return [ai + t * (bi - ai) for ai, bi in zip(a, b)]

    ts = {Fraction(0), Fraction(1)}
    for k, mod in enumerate(net):
        if not isinstance(mod, (*ACTIVATIONS, nn.MaxPool1d)):
            continue
        tl = sorted(ts)
        vals = {t: _forward(net, point(t), k) for t in tl}
        for ta, tb in zip(tl, tl[1:]):
            za, zb = vals[ta], vals[tb]
            pairs = []
            if isinstance(mod, nn.MaxPool1d):
                for win in _windows(mod, len(za)):
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
    return ReferenceWalk(t_out, p_out, tl)


def cantornet_walk(depth: int, representation: str = "A", start: Sequence[float | Fraction] | None = None,
                   end: Sequence[float | Fraction] | None = None) -> tuple[list[Fraction], list[tuple[bool, ...]]]:
    """Γ* of a segment through CantorNet (default (0, 3/4) -> (1, 3/4)) from its exact weights:
    ``(t, patterns)`` as :func:`reference_walk` (this is ``spacefold.models.cantornet.exact_walk``)."""
    kw = {k: v for k, v in (("start", start), ("end", end)) if v is not None}
    return _cantornet_exact_walk(depth, representation, **kw)
