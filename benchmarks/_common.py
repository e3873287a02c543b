"""Shared helpers for the benchmark scripts: MNIST loading, random MLPs, timing, tables."""

from __future__ import annotations

import gzip
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

MNIST_DIR = Path(os.environ.get("SPACEFOLD_MNIST", "/work/shared/data/mnist"))


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_mnist(split: str = "test", data_dir: Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST images as float32 ``(n, 784)`` in [0, 1] and labels ``(n,)``."""
    d = Path(data_dir or MNIST_DIR)
    prefix = "t10k" if split == "test" else "train"
    img = d / f"{prefix}-images-idx3-ubyte.gz"
    lab = d / f"{prefix}-labels-idx1-ubyte.gz"
    if not img.exists():
        raise SystemExit(f"MNIST not found in {d}; set SPACEFOLD_MNIST to the folder holding the IDX .gz files")
    x = torch.from_numpy(_read_idx(img).reshape(-1, 784).astype(np.float32) / 255.0)
    y = torch.from_numpy(_read_idx(lab).astype(np.int64))
    return x, y


def mlp(widths: list[int], seed: int = 0) -> nn.Sequential:
    """A ReLU MLP with PyTorch's default (random) initialisation; no ReLU after the last layer."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i in range(len(widths) - 1):
        layers.append(nn.Linear(widths[i], widths[i + 1]))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).eval()


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
        return f"load average {la[0]:.2f} {la[1]:.2f} {la[2]:.2f} on {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}"
    except OSError:
        return f"{os.cpu_count()} CPUs"


CACHE = Path(__file__).resolve().parent / ".cache"


def trained_mlp(arch: str, epochs: int = 10, seed: int = 0):
    """An MLP trained on MNIST (Adam, lr 1e-3, batch 128; FOLDING.md §10.1 defaults but
    ``epochs``), cached in ``benchmarks/.cache``. Returns ``(model, test accuracy)``."""
    from spacefold.data import load_mnist as sf_load_mnist
    from spacefold.models import load_checkpoint
    from spacefold.train import train_mlp

    path = CACHE / f"mnist-{arch}-e{epochs}-s{seed}.pt"
    if path.exists():
        model = load_checkpoint(path)
        return model.eval(), _test_accuracy(model)
    data = sf_load_mnist(MNIST_DIR)
    model, _ = train_mlp(arch, data, epochs=epochs, seed=seed, checkpoint=path)
    return model.eval(), _test_accuracy(model)


def _test_accuracy(model) -> float:
    x, y = load_mnist("test")
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def set_threads(n: int) -> None:
    torch.set_num_threads(n)
