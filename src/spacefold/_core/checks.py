"""Checks of the models and inputs every entry point takes, and where a model lives: one clear sentence
per bad argument, naming it, what was expected and what came."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import InputError, InputTypeError


def check_nonnegative(value: float, name: str) -> float:
    """Validate a finite number >= 0 (a tolerance) and return it as float."""
    if isinstance(value, bool):
        raise InputTypeError(f"{name} must be a number >= 0, got {value!r}")
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise InputTypeError(f"{name} must be a number >= 0, got {value!r}") from None
    if not (value >= 0.0) or value == float("inf"):
        raise InputError(f"{name} must be a finite number >= 0, got {value}")
    return value


def check_inputs(x: Tensor, name: str = "x", finite: bool = True) -> None:
    """Validate inputs ``(batch, *input_shape)``: a real tensor of finite values (with ``finite=False`` the values are
    left to be checked later, as :func:`spacefold._core.pipeline._fold` does for paired segments)."""
    if not isinstance(x, Tensor):
        raise InputTypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 1:
        raise InputError(f"{name} must have a batch dimension (batch, *input_shape), got a scalar")
    if x.is_complex():
        raise InputTypeError(f"{name} must hold real values, got dtype {x.dtype}; pass x.real or x.abs() explicitly")
    # A finite sum proves every value finite (NaN and inf propagate through a sum); only when
    # it is not (NaN, inf, or an overflow of large finite values) are the values counted.
    if finite and x.is_floating_point() and not bool(torch.isfinite(x.sum())):
        bad = int((~torch.isfinite(x)).sum())
        if bad:
            raise InputError(f"{name} holds {bad} NaN or inf value(s); expected finite inputs")


def check_model(model) -> None:
    """Validate a model to run: an ``nn.Module`` whose parameters hold values on a
    device this build of torch can use."""
    if not isinstance(model, nn.Module):
        raise InputTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    device, _ = model_device_dtype(model)
    if device.type == "meta":
        raise InputError(
            "model must hold its weights, got a model on the meta device (parameters without values); "
            "create it on a real device or load its weights, e.g. model.to_empty(device='cpu') then load_state_dict"
        )
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"model is on {device}, but this build of torch has no CUDA device; move it with model.cpu()")


def run_model(model: nn.Module, x: Tensor, name: str = "x") -> Tensor:
    """Forward pass with a clear error when the input does not fit the model."""
    try:
        return model(x)
    except InputError:
        raise
    except (RuntimeError, ValueError, IndexError) as err:
        raise InputError(
            f"{name} of shape {tuple(x.shape)} does not fit the model {type(model).__name__} "
            f"(expected (batch, *input_shape) for its first layer): {str(err).splitlines()[0]}"
        ) from err


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for p in model.parameters():
        return p.device, p.dtype
    for b in model.buffers():
        if b.is_floating_point():
            return b.device, b.dtype
    return torch.device("cpu"), torch.get_default_dtype()


def to_model(model: nn.Module, x: Tensor) -> Tensor:
    device, dtype = model_device_dtype(model)
    return x.to(device=device, dtype=dtype)
