"""Argument checks of the folding loss, the regulariser and the tracker: one clear sentence per bad
argument, naming it, what was expected and what came."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .._core.patterns import LayerSelector, find_activations
from .._util import check_size
from ..errors import InputError, InputTypeError

LOSS_METHODS = ("grid", "random", "exact")


def _check_model(model) -> None:
    if not isinstance(model, nn.Module):
        raise InputTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")


def _check_hookable(model: nn.Module, layers: LayerSelector) -> None:
    """At least one activation module the soft patterns can be read from."""
    try:
        find_activations(model, layers)
    except TypeError as err:
        raise InputTypeError(str(err)) from None
    except ValueError as err:
        raise InputError(str(err)) from None


def _check_segments(x1, x2) -> None:
    for name, x in (("x1", x1), ("x2", x2)):
        if not isinstance(x, Tensor):
            raise InputTypeError(f"{name} must be a torch.Tensor (n_segments, *input_shape), got {type(x).__name__}")
        if not x.is_floating_point():
            raise InputTypeError(f"{name} must be a floating tensor, got dtype {x.dtype}")
        if x.dim() < 2:
            raise InputError(f"{name} must have shape (n_segments, *input_shape), got {tuple(x.shape)}")
        if x.shape[0] == 0:
            raise InputError(f"{name} must hold at least one segment, got an empty probe set")
        if not bool(torch.isfinite(x).all()):
            raise InputError(f"{name} holds NaN or inf; expected finite inputs")
    if x1.shape != x2.shape:
        raise InputError(f"x1 and x2 must have the same shape, got x1 {tuple(x1.shape)} and x2 {tuple(x2.shape)}")


def _check_positive(value, name: str, *, allow_zero: bool = False) -> float:
    what = "a finite number >= 0" if allow_zero else "a finite number > 0"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputTypeError(f"{name} must be {what}, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise InputError(f"{name} must be {what}, got {value!r}")
    return v


def _check_count(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputTypeError(f"{name} must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise InputError(f"{name} must be an int >= {minimum}, got {value}")
    return value


def _check_points(n_points: int, n_segments: int, x: Tensor) -> None:
    """The sample points of ``n_segments`` segments, each point an input like ``x[0]`` with its
    pre-activations and soft patterns (counted as three copies of the input), fit in memory."""
    per_point = 3 * x[0].numel() * x.element_size()
    check_size(
        "n_points",
        n_points,
        n_points * n_segments * per_point,
        f"{n_points} sample points on each of {n_segments} segments",
    )


def _check_method(method) -> str:
    if method not in LOSS_METHODS:
        raise InputError(f"method must be one of {', '.join(repr(m) for m in LOSS_METHODS)}, got {method!r}")
    return method


def _check_lambda(lam) -> float:
    if isinstance(lam, bool) or not isinstance(lam, (int, float)):
        raise InputTypeError(f"lam must be a finite number >= 0 (the weight of the folding loss), got {lam!r}")
    v = float(lam)
    if not math.isfinite(v) or v < 0:
        raise InputError(
            f"lam must be a finite number >= 0 (the weight of the folding loss; 0 turns it off), got {lam!r}"
        )
    return v
