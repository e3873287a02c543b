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

``--torch-conv``: the walk's float64 convolutions by torch's own ``F.conv2d`` instead of
``spacefold._core.walk.exact.conv64`` (the comparison of ``bench_conv64.py``, on whole walks).
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
from spacefold._core.folding import walk_batch
from spacefold._core.measure import summarize
from spacefold._core.walk.exact import verify
from spacefold.models.resnet import ResNet, randomize_batchnorm


def resnet18(seed: int = 0) -> tuple[nn.Module, str]:
    """The network of the benchmark and where it comes from."""
    torch.manual_seed(seed)
    try:
        import torchvision.models

        net, source = torchvision.models.resnet18(weights=None, num_classes=10), "torchvision"
    except Exception as err:  # noqa: BLE001  (a torchvision built for another torch raises RuntimeError)
        net, source = ResNet(num_classes=10), f"spacefold.models.resnet.ResNet (torchvision: {type(err).__name__})"
    randomize_batchnorm(net, seed + 1)
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
    ap.add_argument("--torch-conv", action="store_true", help="float64 convolutions by torch's F.conv2d")
    args = ap.parse_args()
    if args.torch_conv:
        from spacefold._core.walk.exact import conv64

        conv64._plan = lambda *a: "torch"
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    net, source = resnet18(args.seed)
    net = net.to(dtype)
    g = torch.Generator().manual_seed(args.seed + 2)
    x = torch.randn(2 * args.pairs, 3, 32, 32, generator=g).to(dtype)
    x1, x2 = x[0::2], x[1::2]
    n_bits = sf.activation_patterns(net, x1[:1]).shape[1]
    print(
        f"# bench_resnet: ResNet-18 from {source}, {n_bits} ReLU bits, {args.pairs} paths, {args.dtype}"
        f"{', torch convolutions' if args.torch_conv else ''}, {load_condition()}"
    )
    # tracing and the compiled kernels' first compilation: on a short segment, not timed
    walk_batch(net, x1[:1], x1[:1] + 1e-3 * (x2[:1] - x1[:1]))
    rows, secs, regs = [], [], []
    for k in range(args.pairs):
        t0 = time.perf_counter()
        w = walk_batch(net, x1[k : k + 1], x2[k : k + 1])
        dt = time.perf_counter() - t0
        row = {
            "pair": k,
            "seconds": dt,
            "regions": int(w.n_regions[0]),
            "ms/region": 1e3 * dt / int(w.n_regions[0]),
            "chi": float(summarize(w)["chi"][0]),
        }
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
    print(
        f"peak resident memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; "
        f"{load_condition()}; SPACEFOLD_MEMORY={os.environ.get('SPACEFOLD_MEMORY', 'unset')}"
    )


if __name__ == "__main__":
    main()
