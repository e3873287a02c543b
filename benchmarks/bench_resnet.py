"""Exact walks at CNN scale: regions and seconds per path of ResNet-18 at 32x32.

Network: ResNet-18 as ``torchvision.models.resnet18(weights=None, num_classes=10)`` builds it
(ImageNet stem: 7x7 stride-2 convolution, BatchNorm, in-place ReLU, 3x3 stride-2 max pooling;
eight BasicBlocks, the reused in-place ReLU called twice in each; adaptive average pooling;
47,104 ReLU bits at 32x32). torchvision is used when it can be imported; otherwise the copy
below, which has torchvision's module names, parameter shapes, initialisation and forward pass
(tests/test_cnn_coverage.py compares the two where torchvision is installed). Seeded random
weights, BatchNorm running statistics and affine parameters set away from 0/1 as in
bench_cnn.py, eval mode. Segments: between seeded random Gaussian inputs (x[2k] -> x[2k+1]),
one path per call, so that every path has its own time.

    .venv/bin/python benchmarks/bench_resnet.py --pairs 5 --threads 1 --dtype float32
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time

import torch
from _common import load_condition, table
from torch import nn

import spacefold as sf
from spacefold.folding import walk_batch
from spacefold.measure import summarize
from spacefold.walk.exact import verify


class BasicBlock(nn.Module):
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
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet18(nn.Module):
    """torchvision's ResNet-18 (``resnet18(weights=None)``), for machines without torchvision."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(64, 1)
        self.layer2 = self._make_layer(128, 2)
        self.layer3 = self._make_layer(256, 2)
        self.layer4 = self._make_layer(512, 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes: int, stride: int) -> nn.Sequential:
        down = None
        if stride != 1 or self.inplanes != planes:
            down = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
        blocks = [BasicBlock(self.inplanes, planes, stride, down), BasicBlock(planes, planes)]
        self.inplanes = planes
        return nn.Sequential(*blocks)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(seed: int = 0) -> tuple[nn.Module, str]:
    """The network of the benchmark and where it comes from."""
    torch.manual_seed(seed)
    try:
        import torchvision.models

        net, source = torchvision.models.resnet18(weights=None, num_classes=10), "torchvision"
    except Exception as err:  # noqa: BLE001  (a torchvision built for another torch raises RuntimeError)
        net, source = ResNet18(10), f"the copy in this script (torchvision: {type(err).__name__})"
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0.0, 0.5, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.normal_(0.0, 0.2, generator=g)
    return net.eval(), source


def spread(v: list[float]) -> str:
    sd = statistics.stdev(v) if len(v) > 1 else 0.0
    return f"{statistics.mean(v):.4g} ± {sd:.3g} (min {min(v):.4g}, max {max(v):.4g})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--verify", action="store_true", help="also certify every walk (verify, mode='certificate')")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    net, source = resnet18(args.seed)
    net = net.to(dtype)
    g = torch.Generator().manual_seed(args.seed + 2)
    x = torch.randn(2 * args.pairs, 3, 32, 32, generator=g).to(dtype)
    x1, x2 = x[0::2], x[1::2]
    n_bits = sf.activation_patterns(net, x1[:1]).shape[1]
    print(f"# bench_resnet: ResNet-18 from {source}, {n_bits} ReLU bits, {args.pairs} paths, {args.dtype}, "
          f"{load_condition()}")
    # tracing and the compiled kernels' first compilation: on a short segment, not timed
    walk_batch(net, x1[:1], x1[:1] + 1e-3 * (x2[:1] - x1[:1]))
    rows, secs, regs = [], [], []
    for k in range(args.pairs):
        t0 = time.perf_counter()
        w = walk_batch(net, x1[k : k + 1], x2[k : k + 1])
        dt = time.perf_counter() - t0
        row = {"pair": k, "seconds": dt, "regions": int(w.n_regions[0]), "ms/region": 1e3 * dt / int(w.n_regions[0]),
               "chi": float(summarize(w)["chi"][0])}
        if args.verify:
            t0 = time.perf_counter()
            row["certified"] = verify(net, x1[k : k + 1], x2[k : k + 1], w).ok
            row["verify s"] = time.perf_counter() - t0
        rows.append(row)
        secs.append(dt)
        regs.append(int(w.n_regions[0]))
        print(f"  pair {k}: {row}", flush=True)
    print(table(rows))
    print(f"\nseconds/path: {spread(secs)}")
    print(f"regions/path: {spread(regs)}")
    print(f"peak resident memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; "
          f"{load_condition()}; SPACEFOLD_MEMORY={os.environ.get('SPACEFOLD_MEMORY', 'unset')}")


if __name__ == "__main__":
    main()
