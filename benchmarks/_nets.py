"""Networks the benchmarks share, built from torch alone (so that ``bench_regression.py`` can build
them in any tree it times)."""

from __future__ import annotations

from torch import nn


def vgg_layers() -> nn.Sequential:
    """The VGG-style CIFAR-size CNN of ``bench_cnn.py`` (default initialisation): three stages of
    3x3 convolutions with batch norm and ReLU, max pooling, and a two-layer head."""

    def block(c_in: int, c_out: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]

    return nn.Sequential(
        *block(3, 16),
        *block(16, 16),
        nn.MaxPool2d(2),
        *block(16, 32),
        *block(32, 32),
        nn.MaxPool2d(2),
        *block(32, 64),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(1024, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )
