"""Seeded training of classifiers and their accuracy on held-out data.

Defaults follow docs/mnist-depth-study.md: Adam, learning rate 1e-3, batch 128, 30 epochs,
cross-entropy. Every random choice (initialisation is the model's; shuffling
here) comes from ``seed``; the global RNG is not touched.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from .._core.patterns import check_inputs, eval_mode, model_device_dtype
from .._util import check_int
from .._util import progress as _progress
from ..errors import InputError, InputTypeError

__all__ = ["train", "accuracy", "TrainResult", "train_mlp"]


@dataclass
class TrainResult:
    """What a training run produced: per-epoch loss/accuracy and the final accuracies."""

    epochs: int
    lr: float
    batch_size: int
    seed: int
    loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)
    seconds: float = 0.0
    reg_loss: list[float] = field(default_factory=list)  # mean regulariser term per epoch (with a regularizer)
    tracked: list[dict] = field(default_factory=list)  # what on_epoch_end returned, epoch by epoch
    weight_decay: float = 0.0  # AdamW's decoupled weight decay (0: plain Adam)

    @property
    def final_train_accuracy(self) -> float:
        return self.train_accuracy[-1] if self.train_accuracy else float("nan")

    @property
    def final_test_accuracy(self) -> float:
        return self.test_accuracy[-1] if self.test_accuracy else float("nan")

    def as_dict(self) -> dict:
        return {
            "epochs": self.epochs,
            "lr": self.lr,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "optimizer": "adamw" if self.weight_decay > 0 else "adam",
            "weight_decay": self.weight_decay,
            "loss": self.loss,
            "train_accuracy": self.train_accuracy,
            "test_accuracy": self.test_accuracy,
            "final_train_accuracy": self.final_train_accuracy,
            "final_test_accuracy": self.final_test_accuracy,
            "seconds": self.seconds,
            **({"reg_loss": self.reg_loss} if self.reg_loss else {}),
            **({"tracked": self.tracked} if self.tracked else {}),
        }


def _check_xy(x, y, name: str) -> None:
    check_inputs(x, f"x_{name}" if name else "x")
    if not isinstance(y, Tensor):
        raise InputTypeError(f"y{'_' + name if name else ''} must be a torch.Tensor of labels, got {type(y).__name__}")
    if y.dim() != 1 or y.shape[0] != x.shape[0]:
        raise InputError(f"labels must have shape ({x.shape[0]},) to match the inputs, got {tuple(y.shape)}")
    if y.dtype.is_floating_point or y.dtype == torch.bool or y.dtype.is_complex:
        raise InputTypeError(f"labels must be an integer tensor, got dtype {y.dtype}")


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 4096) -> float:
    """Share of ``x`` whose argmax logit equals ``y``."""
    _check_xy(x, y, "")
    check_int(batch_size, "batch_size", 1)
    if y.numel() == 0:
        raise InputError("y must hold at least one sample for an accuracy, got none")
    device, dtype = model_device_dtype(model)
    correct = 0
    with eval_mode(model):
        for k in range(0, x.shape[0], batch_size):
            out = model(x[k : k + batch_size].to(device=device, dtype=dtype))
            correct += int((out.argmax(1).cpu() == y[k : k + batch_size]).sum())
    return correct / y.numel()


def _deprecated_progress(progress: bool, progress_bar: bool | None) -> bool:
    """``progress``, or the value of its old name ``progress_bar`` (with a DeprecationWarning)."""
    if progress_bar is None:
        return progress
    warnings.warn("progress_bar= is deprecated; use progress=", DeprecationWarning, stacklevel=3)
    return bool(progress_bar)


def train(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    epochs: int = 30,
    lr: float = 1e-3,
    batch_size: int = 128,
    seed: int = 0,
    x_test: Tensor | None = None,
    y_test: Tensor | None = None,
    progress: bool = False,
    desc: str = "training",
    progress_bar: bool | None = None,
    regularizer=None,
    on_epoch_end=None,
    weight_decay: float = 0.0,
) -> TrainResult:
    """Train ``model`` in place with Adam and cross-entropy; shuffling is seeded by ``seed``.

    ``weight_decay > 0`` trains with AdamW (decoupled weight decay of that strength on every
    parameter) instead; 0 keeps plain Adam.

    With ``x_test``/``y_test``, the held-out accuracy is recorded after every epoch.
    A loss that becomes NaN or infinite (the training diverged) raises
    :class:`spacefold.errors.InputError` naming the learning rate. ``progress`` shows a
    progress bar over the epochs (``progress_bar`` is its deprecated old name).
    ``regularizer(model, epoch, epochs)`` (e.g. :class:`spacefold.FoldingRegularizer`)
    is called at every step and its tensor, unless ``None``, is added to the task loss;
    ``on_epoch_end(model, epoch, epochs)`` (e.g. :class:`spacefold.FoldingTracker`)
    is called after every epoch and what it returns, unless ``None``, goes to ``tracked``.
    """
    import time

    progress = _deprecated_progress(progress, progress_bar)
    if not isinstance(model, nn.Module):
        raise InputTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _check_xy(x, y, "")
    check_int(epochs, "epochs", 1)
    check_int(batch_size, "batch_size", 1)
    check_int(seed, "seed", 0)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)):
        raise InputTypeError(f"lr must be a finite number > 0, got {lr!r}")
    if not (math.isfinite(lr) and lr > 0):
        raise InputError(f"lr must be a finite number > 0, got {lr!r}")
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)):
        raise InputTypeError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
    if not (math.isfinite(weight_decay) and weight_decay >= 0):
        raise InputError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
    if (x_test is None) != (y_test is None):
        raise InputError("x_test and y_test must be given together, got only one of them")
    if x_test is not None:
        _check_xy(x_test, y_test, "test")
    if x.shape[0] == 0:
        raise InputError("x must hold at least one training sample, got none")
    for hook, hook_name in ((regularizer, "regularizer"), (on_epoch_end, "on_epoch_end")):
        if hook is not None and not callable(hook):
            raise InputTypeError(f"{hook_name} must be callable or None, got {type(hook).__name__}")
    device, dtype = model_device_dtype(model)
    xd = x.to(device=device, dtype=dtype)
    yd = y.to(device=device)
    if weight_decay > 0:
        opt: torch.optim.Optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(seed)
    result = TrainResult(
        epochs=epochs, lr=float(lr), batch_size=batch_size, seed=seed, weight_decay=float(weight_decay)
    )
    t0 = time.perf_counter()
    n = x.shape[0]
    for epoch in _progress(range(epochs), total=epochs, desc=desc, enabled=progress):
        model.train()
        perm = torch.randperm(n, generator=g).to(device)
        total, count, reg_total, reg_steps = 0.0, 0, 0.0, 0
        for k in range(0, n, batch_size):
            idx = perm[k : k + batch_size]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xd[idx]), yd[idx])
            extra = regularizer(model, epoch, epochs) if regularizer is not None else None
            (loss if extra is None else loss + extra).backward()
            opt.step()
            value = float(loss.detach())
            if not math.isfinite(value):
                raise InputError(
                    f"lr must be small enough for the training to converge, got {lr:g}: the loss "
                    f"became {value} in epoch {len(result.loss) + 1} (try a smaller lr)"
                )
            total += value * idx.numel()
            count += idx.numel()
            if extra is not None:
                reg_total += float(extra.detach())
                reg_steps += 1
        model.eval()
        if regularizer is not None:
            result.reg_loss.append(reg_total / reg_steps if reg_steps else 0.0)
        result.loss.append(total / count)
        result.train_accuracy.append(accuracy(model, x, y))
        if x_test is not None:
            result.test_accuracy.append(accuracy(model, x_test, y_test))  # type: ignore[arg-type]
        if on_epoch_end is not None:
            row = on_epoch_end(model, epoch, epochs)
            if row is not None:
                result.tracked.append(row)
    result.seconds = time.perf_counter() - t0
    model.eval()
    return result


def train_mlp(
    arch: str,
    data,
    *,
    epochs: int = 30,
    lr: float = 1e-3,
    batch_size: int = 128,
    seed: int = 0,
    checkpoint: str | os.PathLike | None = None,
    progress: bool = False,
    progress_bar: bool | None = None,
    regularizer=None,
    on_epoch_end=None,
):
    """Build the MLP ``arch`` for a :class:`spacefold.data.Dataset`, train it (seeded),
    and optionally save it to ``checkpoint`` (atomically, with the run's record as
    metadata). Returns ``(model, TrainResult)``. ``progress``, ``regularizer`` and
    ``on_epoch_end`` as in :func:`train`; a regulariser with a ``describe()`` (such as
    :class:`spacefold.FoldingRegularizer`) is recorded in the metadata as ``"regularizer"``.
    """
    from .mlp import mlp, save_checkpoint

    progress = _deprecated_progress(progress, progress_bar)
    model = mlp(arch, data.n_features, data.n_classes, seed=seed)
    res = train(
        model,
        data.x_train,
        data.y_train,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
        x_test=data.x_test,
        y_test=data.y_test,
        progress=progress,
        desc=f"train {arch} s{seed}",
        regularizer=regularizer,
        on_epoch_end=on_epoch_end,
    )
    if checkpoint is not None:
        save_checkpoint(model, Path(checkpoint), metadata=checkpoint_metadata(model, data, res, regularizer))
    return model, res


def checkpoint_metadata(model, data, res: TrainResult, regularizer=None) -> dict:
    """The record :func:`train_mlp` saves with a checkpoint: architecture, seed, data, the
    training record and the regulariser's ``describe()`` (when one was used)."""
    meta = {"arch": model.arch, "seed": res.seed, "data": data.describe(), "training": res.as_dict()}
    if regularizer is not None:
        describe = getattr(regularizer, "describe", None)
        meta["regularizer"] = describe() if callable(describe) else type(regularizer).__name__
    return meta
