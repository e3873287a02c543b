"""Shared helpers for the benchmark scripts: MNIST loading, random MLPs, timing, tables."""

from __future__ import annotations

import functools
import os
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from spacefold.data import load_mnist as sf_load_mnist
from spacefold.models import mlp


def mnist_dir() -> Path:
    """The folder of the MNIST IDX files: ``$SPACEFOLD_MNIST`` (or ``$SPACEFOLD_DATA``)."""
    d = os.environ.get("SPACEFOLD_MNIST") or os.environ.get("SPACEFOLD_DATA")
    if not d:
        raise SystemExit("set SPACEFOLD_MNIST to the folder holding the MNIST IDX files")
    return Path(d)


def load_mnist(split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST images as float32 ``(n, 784)`` in [0, 1] and labels ``(n,)``
    (:func:`spacefold.data.load_mnist`)."""
    data = _mnist()
    return (data.x_test, data.y_test) if split == "test" else (data.x_train, data.y_train)


@functools.lru_cache(maxsize=1)
def _mnist():
    return sf_load_mnist(mnist_dir())


def random_mlp(hidden: list[int], seed: int = 0) -> nn.Module:
    """A 784-hidden-10 ReLU MLP with PyTorch's default (random) initialisation from ``seed``
    (:func:`spacefold.models.mlp`), in eval mode."""
    return mlp(hidden, 784, 10, seed=seed).eval()


def timed(fn, repeats: int = 3, warmup: int = 1):
    """Run ``fn`` ``warmup + repeats`` times; return (median seconds, last result)."""
    out = None
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def table(rows: list[dict], title: str = "") -> str:
    """A GitHub-markdown table of ``rows`` (dicts with the same keys)."""
    if not rows:
        return ""
    keys = list(rows[0])

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    lines = []
    if title:
        lines.append(f"\n{title}\n")
    lines.append("| " + " | ".join(keys) + " |")
    lines.append("|" + "|".join("---" for _ in keys) + "|")
    for r in rows:
        lines.append("| " + " | ".join(fmt(r[k]) for k in keys) + " |")
    return "\n".join(lines)


def load_condition() -> str:
    try:
        la = os.getloadavg()
        threads = torch.get_num_threads()
        return f"load average {la[0]:.2f} {la[1]:.2f} {la[2]:.2f} on {os.cpu_count()} CPUs, torch threads {threads}"
    except OSError:
        return f"{os.cpu_count()} CPUs"


CACHE = Path(__file__).resolve().parent / ".cache"


def trained_mlp(arch: str, epochs: int = 10, seed: int = 0):
    """An MLP trained on MNIST (Adam, lr 1e-3, batch 128; the defaults of spacefold.models.train but
    ``epochs``), cached in ``benchmarks/.cache``. Returns ``(model, test accuracy)``."""
    from spacefold.models import load_checkpoint
    from spacefold.models.train import train_mlp

    path = CACHE / f"mnist-{arch}-e{epochs}-s{seed}.pt"
    if path.exists():
        model = load_checkpoint(path)
        return model.eval(), _test_accuracy(model)
    data = _mnist()
    model, _ = train_mlp(arch, data, epochs=epochs, seed=seed, checkpoint=path)
    return model.eval(), _test_accuracy(model)


def _test_accuracy(model) -> float:
    x, y = load_mnist("test")
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def set_threads(n: int) -> None:
    torch.set_num_threads(n)
