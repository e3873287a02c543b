"""Checks of the models and inputs every entry point takes, and where a model lives: one clear sentence
per bad argument, naming it, what was expected and what came; the modes every forward pass of a
measurement runs in (:func:`eval_mode`, :func:`no_fastpath`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

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
        where = _failed_in(model, err)
        raise InputError(
            f"{name} of shape {tuple(x.shape)} does not fit the model {type(model).__name__} "
            f"(expected (batch, *input_shape) for its first layer){where}: {str(err).splitlines()[0]}"
        ) from err


def _failed_in(model: nn.Module, err: BaseException) -> str:
    """Where in ``model`` the error ``err`` arose: ``" in the forward of 'name' (Type)"`` for the innermost
    submodule whose code was running, or "" where that is the model itself or not known."""
    names = {id(m): n for n, m in model.named_modules()}
    last = None
    tb = err.__traceback__
    while tb is not None:
        owner = tb.tb_frame.f_locals.get("self")
        if isinstance(owner, nn.Module) and id(owner) in names:
            last = owner
        tb = tb.tb_next
    if last is None or not names[id(last)]:
        return ""
    return f"; it failed in the forward of '{names[id(last)]}' ({type(last).__name__})"


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


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode for the block, then restore each flag."""
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
    except NotImplementedError as err:  # a module of torch.export, ExportedProgram.module()
        raise InputError(
            f"model {type(model).__name__} is or holds a module of torch.export (ExportedProgram.module()), whose "
            "train or eval mode was fixed when it was exported and cannot be switched for the measurement: save "
            "the program with torch.export.save and load it with spacefold.data.load_model(path), or pass the "
            "eager model"
        ) from err
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


@contextlib.contextmanager
def no_fastpath() -> Iterator[None]:
    """PyTorch's fused fast path of attention and transformer layers switched off for the block
    (and restored after): it runs their activations in C++, where no hook or intercepted call
    sees them. Every forward pass that records patterns runs under it."""
    mha = getattr(torch.backends, "mha", None)
    if mha is None or not hasattr(mha, "set_fastpath_enabled"):
        yield
        return
    old = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(old)
