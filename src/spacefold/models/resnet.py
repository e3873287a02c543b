"""torchvision's ResNet with ``BasicBlock``, line for line, for machines without torchvision,
and BatchNorm statistics set away from the identity, for measuring untrained networks.

``ResNet()`` is ``torchvision.models.resnet18(weights=None)``: the same module names,
parameter shapes, initialisation (for the same torch seed) and forward pass, so a state
dict moves between the two (tests/test_cnn_coverage.py checks it where torchvision
imports). The exact walk follows every layer of it (docs/method.md, 'The exact walk').
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["BasicBlock", "ResNet", "basic_block", "randomize_batchnorm"]


class BasicBlock(nn.Module):
    """torchvision's ResNet ``BasicBlock`` (torchvision/models/resnet.py), line for line: one
    in-place ``nn.ReLU`` called twice, ``out += identity``, a strided 1x1 convolution with
    BatchNorm on the skip branch when the shape changes."""

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


def basic_block(inplanes: int, planes: int, stride: int = 1) -> BasicBlock:
    """A ``BasicBlock`` with the skip branch torchvision gives it (a strided 1x1 convolution with
    BatchNorm where the shape changes)."""
    down = None
    if stride != 1 or inplanes != planes:
        down = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
    return BasicBlock(inplanes, planes, stride, down)


class ResNet(nn.Module):
    """torchvision's ``ResNet`` with ``BasicBlock`` (ImageNet stem: 7x7 stride-2 convolution,
    BatchNorm, in-place ReLU, 3x3 stride-2 max pooling; adaptive average pooling and
    ``torch.flatten`` before the classifier). ``ResNet((2, 2, 2, 2))`` is ResNet-18 with the
    module names, parameter shapes, initialisation and forward pass of
    ``torchvision.models.resnet18(weights=None)``."""

    def __init__(self, layers=(2, 2, 2, 2), widths=(64, 128, 256, 512), in_channels=3, num_classes=1000):
        super().__init__()
        self.inplanes = widths[0]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        for k, (n, w) in enumerate(zip(layers, widths)):
            setattr(self, f"layer{k + 1}", self._make_layer(w, n, stride=1 if k == 0 else 2))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[-1], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes, blocks, stride):
        layers = [basic_block(self.inplanes, planes, stride)]
        self.inplanes = planes
        layers += [basic_block(planes, planes, 1) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)


def randomize_batchnorm(net: nn.Module, seed: int = 0) -> nn.Module:
    """Set every BatchNorm's running statistics and affine parameters away from 0 and 1 (so it is
    not the identity, as in a trained network), from ``torch.Generator().manual_seed(seed)``:
    running mean ~ N(0, 0.5²), running variance ~ U(0.5, 2), weight ~ U(0.5, 1.5), bias ~ N(0, 0.2²).
    Returns ``net`` in eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                m.running_mean.normal_(0.0, 0.5, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)  # type: ignore[union-attr]
                if m.affine:
                    m.weight.uniform_(0.5, 1.5, generator=g)
                    m.bias.normal_(0.0, 0.2, generator=g)
    return net.eval()
