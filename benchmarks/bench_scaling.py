"""Throughput of the exact walk against depth, width and the number of paths.

Random MLPs (PyTorch default initialisation, seed 0) on segments between random pairs of
MNIST test images; ``sf.folding_batch(method="exact")``, median over repeats. The
"activation" table compares activation types with and without the compiled kernels
(``SPACEFOLD_NUMBA=0``), measured in turn in the same run. The last table is a small
convolutional net (convolutions, max and average pooling, then an MLP), whose activations
are not all followed by a Linear.

    .venv/bin/python benchmarks/bench_scaling.py --repeats 3 --threads 1
    .venv/bin/python benchmarks/bench_scaling.py --parts conv
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from _common import load_condition, load_mnist, random_mlp, table
from torch import nn

import spacefold as sf


def measure(net, x1, x2, repeats):
    sf.folding_batch(net, x1[:20], x2[:20], method="exact")  # warm-up (tracing)
    times, res = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = sf.folding_batch(net, x1, x2, method="exact", batch_size=x1.shape[0])
        times.append(time.perf_counter() - t0)
    t = statistics.median(times)
    n = x1.shape[0]
    regions = float(res.n_regions.float().mean())
    return {"paths/s": n / t, "regions/path": regions, "us/region": 1e6 * t / (n * regions)}


def act_mlp(act, depth: int = 6, width: int = 256, seed: int = 0) -> nn.Module:
    """784-width x depth-10 MLP with PyTorch's default initialisation and ``act()`` after each hidden layer."""
    net = random_mlp([width] * depth, seed=seed)
    for k, m in enumerate(net.net):
        if isinstance(m, nn.ReLU):
            net.net[k] = act()
    return net


def conv_net(seed: int = 0) -> nn.Sequential:
    """28x28 -> Conv(8, 3x3) ReLU MaxPool(2) -> Conv(16, 3x3) ReLU AvgPool(2) -> 400-64-10 MLP."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Unflatten(1, (1, 28, 28)),
        nn.Conv2d(1, 8, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(400, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    ).eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--paths", type=int, default=300)
    ap.add_argument("--conv-paths", type=int, default=50)
    ap.add_argument("--parts", default="depth,width,paths,acts,conv", help="tables to print, comma separated")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    torch.set_num_threads(args.threads)
    x, _ = load_mnist("test")
    g = torch.Generator().manual_seed(2)
    n_max = 10_000
    i = torch.randint(0, x.shape[0], (n_max,), generator=g)
    j = torch.randint(0, x.shape[0], (n_max,), generator=g)
    print(f"# {load_condition()}")
    n = args.paths
    if "depth" in parts:
        rows = [
            {"net": f"784-256x{d}-10", **measure(random_mlp([256] * d), x[i[:n]], x[j[:n]], args.repeats)}
            for d in (1, 2, 4, 6, 8)
        ]
        print(table(rows, f"depth (width 256, {n} paths)"))
    if "width" in parts:
        rows = [
            {"net": f"784-{w}x6-10", **measure(random_mlp([w] * 6), x[i[:n]], x[j[:n]], args.repeats)}
            for w in (32, 64, 128, 256, 512)
        ]
        print(table(rows, f"width (depth 6, {n} paths)"))
    if "paths" in parts:
        rows = []
        for arch, hidden in (("784-12x5-10", [12] * 5), ("784-256x6-10", [256] * 6)):
            for m in (100, 1000, 10_000):
                if hidden[0] == 256 and m > 1000:
                    continue
                rows.append({"net": arch, "paths": m, **measure(random_mlp(hidden), x[i[:m]], x[j[:m]], args.repeats)})
        print(table(rows, "number of paths"))
    if "acts" in parts:
        rows = []
        acts = (
            ("ReLU", nn.ReLU),
            ("LeakyReLU(0.1)", lambda: nn.LeakyReLU(0.1)),
            ("Hardtanh(-0.1, 0.3)", lambda: nn.Hardtanh(-0.1, 0.3)),
            ("ReLU6", nn.ReLU6),
        )
        before = os.environ.get("SPACEFOLD_NUMBA")
        try:
            for name, act in acts:
                net = act_mlp(act)
                res = {}
                for kernels in ("1", "0"):
                    os.environ["SPACEFOLD_NUMBA"] = kernels
                    res[kernels] = measure(net, x[i[:n]], x[j[:n]], args.repeats)
                rows.append(
                    {
                        "activation": name,
                        "regions/path": res["1"]["regions/path"],
                        "paths/s, kernels": res["1"]["paths/s"],
                        "paths/s, torch operations": res["0"]["paths/s"],
                        "speed-up": res["1"]["paths/s"] / res["0"]["paths/s"],
                    }
                )
        finally:
            if before is None:
                os.environ.pop("SPACEFOLD_NUMBA", None)
            else:
                os.environ["SPACEFOLD_NUMBA"] = before
        print(table(rows, f"activation (784-256x6-10, {n} paths)"))
    if "conv" in parts:
        m = args.conv_paths
        rows = [
            {
                "net": "conv 8-16, max/avg pool, 400-64-10",
                "paths": m,
                **measure(conv_net(), x[i[:m]], x[j[:m]], args.repeats),
            }
        ]
        print(table(rows, f"convolutional net ({m} paths)"))


if __name__ == "__main__":
    main()
