"""The walk's settings, the tolerances derived from its dtype, and the check that its values are finite.

:class:`WalkSettings` carries ``tie_tol`` and ``tol`` (docs/method.md, 'The exact walk') from the
driver to every handler. The functions give the smallest merge tolerance in t, the round-off under
which a value is snapped to its level or recomputed, and the largest magnitude the walk accepts;
they are shared by the handlers, the driver and :mod:`.verification`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, fx

from ....errors import InputError


@dataclass(frozen=True, slots=True)
class WalkSettings:
    """What every step of one walk reads: the bit threshold ``tie_tol`` (bit = pre-activation >
    ``tie_tol``), the merge tolerance ``tol`` in t (already raised to :func:`_dtype_tol` of the
    walk's dtype), and ``accept``: keep paths whose max pooling is unresolved instead of raising
    (the walk is in float64 already, nothing finer to walk them again in)."""

    tie_tol: float
    tol: float
    accept: bool = False


def _dtype_tol(dtype: torch.dtype) -> float:
    """The smallest merge tolerance in t for walks in ``dtype``: crossings closer than one unit of its
    round-off at t = 1 cannot be told apart (float32: 1.2e-7; float64: 2.2e-16). Four units merged
    distinct crossings of ordinary float32 walks (9 of 400 MNIST segments of a 784-256x6 MLP counted
    other regions than float64; 2 with one unit)."""
    return torch.finfo(dtype).eps


def _finite_max(dtype: torch.dtype) -> float:
    """Values of the walk must stay below this in magnitude (see :func:`_check_finite`)."""
    return torch.finfo(dtype).max / 4


def _check_finite(x: Tensor, node: fx.Node) -> None:
    """Non-finite values (an overflow of the dtype, inf or nan weights) make every sign test meaningless;
    so do values within a factor 4 of the dtype's largest number, whose differences and
    interpolations between breakpoints overflow."""
    if x.numel() == 0:
        return
    lo, hi = torch.aminmax(x)
    big = _finite_max(x.dtype)
    if not (bool(lo > -big) and bool(hi < big)):  # false for nan too
        name = node.target if node.op == "call_module" else node.name
        raise InputError(
            f"the network's values are not finite or overflow {x.dtype} (min {float(lo):.3g}, max {float(hi):.3g}) "
            f"at the input of its layer '{name}' on some of the segments: scale the inputs down, check the weights "
            "for inf/nan, or walk in float64"
        )


def _cancel_rtol(dtype: torch.dtype) -> float:
    """An output of the Linear at a new breakpoint within this times a bound of its terms of 0 is
    computed again as a plain product (see :func:`_exact_cancellations`)."""
    return 16 * torch.finfo(dtype).eps
