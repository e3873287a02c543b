"""Exact walks at CNN scale: time, regions and memory against the floor of forward passes and bisection.

Network: a CIFAR-size VGG-style CNN (3x32x32 input; conv 16-16-pool-32-32-pool-64-pool, each
conv followed by BatchNorm and ReLU; Linear 1024-128-10; 53,376 ReLUs), seeded random weights,
BatchNorm running statistics and affine parameters set away from 0/1, eval mode. Segments:
between seeded random Gaussian inputs (x[2k] -> x[2k+1]).

One run measures, on the same paths:

- the exact walk (``spacefold._core.folding.walk_batch``, all paths in one call: the walk sizes its own work to the
  memory budget, ``SPACEFOLD_MEMORY``): seconds/path, regions/path, breakpoints/path;
- the floor, the cost of evaluating each layer at the breakpoints it has: every layer run alone
  on as many inputs of its shape as the walk had breakpoints there (counted with forward hooks
  on a second walk), in batches of ``--floor-batch``, median of ``--repeats``. Also the forward
  passes of the whole network at every breakpoint the walk ended with (the points
  (1 − t) x1 + t x2 at its breakpoints t), an upper bound of that floor (earlier layers see fewer
  breakpoints than the last), and at one point per region;
- ``method="bisect"`` on the first ``--bisect-paths`` paths: seconds/path and regions;
- the exact walk in float64 (``dtype=torch.float64``): the share of paths with the same
  region count as the walk in the model's dtype (whose sub-segments around crossings it cannot
  tell apart are walked again in float64: ``n_refined``, printed at the end);
- peak resident memory (``ru_maxrss``) after the exact walk, which runs first.

    .venv/bin/python benchmarks/bench_cnn.py --paths 8 --bisect-paths 1
    .venv/bin/python benchmarks/bench_cnn.py --quick
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time

import torch
from _common import load_condition, table
from _nets import vgg_layers
from torch import nn

from spacefold._core.folding import walk_batch
from spacefold._core.walk import segment_points
from spacefold.models.resnet import randomize_batchnorm


def vgg_cnn(seed: int = 0) -> nn.Module:
    """The network of the benchmark (see the module docstring), in eval mode."""
    torch.manual_seed(seed)
    return randomize_batchnorm(vgg_layers(), seed + 1)


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def floor_seconds(net: nn.Module, x1, x2, path, t, batch: int, repeats: int) -> float:
    """Median seconds of forward passes of ``net`` at the points of ``path``, ``t``, ``batch`` at a time."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        with torch.no_grad():
            for k in range(0, path.numel(), batch):
                net(segment_points(x1, x2, path[k : k + batch], t[k : k + batch]))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def layer_rows(net: nn.Sequential, run) -> list[int]:
    """Rows (points) each layer of ``net`` sees while ``run()`` walks: forward hooks count the rows of every
    module the walk calls (convolutions, batch norms, linear layers; calls on one row, the walk's probe of
    its tensors' sizes, are left out); an activation or a max pooling, which the walk splits instead of
    calling, sees the rows of the next layer that is called (its breakpoints after the split), and the last
    ones all rows the walk ended with (``run()`` returns their number)."""
    rows = [0] * len(net)

    def hook(i):
        def count(mod, inputs, output):
            if inputs[0].shape[0] > 1:
                rows[i] += inputs[0].shape[0]

        return count

    handles = [m.register_forward_hook(hook(i)) for i, m in enumerate(net)]
    try:
        total = run()
    finally:
        for h in handles:
            h.remove()
    after = total
    for i in reversed(range(len(net))):
        if rows[i] == 0:
            rows[i] = after
        else:
            after = rows[i]
    return rows


def layer_floor_seconds(net: nn.Sequential, sample, rows: list[int], batch: int, repeats: int) -> float:
    """Median seconds of running each layer of ``net`` alone on ``rows[i]`` inputs of its shape, ``batch``
    at a time: the forward passes of each layer at the breakpoints it has."""
    inputs, x = [], sample[:1]
    with torch.no_grad():
        for m in net:
            inputs.append(x)
            x = m(x)
    g = torch.Generator().manual_seed(0)
    data = [torch.randn((batch,) + tuple(a.shape[1:]), generator=g).to(a.dtype) for a in inputs]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        with torch.no_grad():
            for m, d, n in zip(net, data, rows):
                for k in range(0, n, batch):
                    m(d[: min(batch, n - k)])
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--paths", type=int, default=8)
    ap.add_argument("--bisect-paths", type=int, default=1, help="paths walked by bisection (slow), 0: none")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--repeats", type=int, default=3, help="repeats of the floor's forward passes")
    ap.add_argument("--floor-batch", type=int, default=256, help="points per forward pass of the floor")
    ap.add_argument("--no-float64", action="store_true", help="skip the float64 agreement")
    ap.add_argument(
        "--batch",
        type=int,
        default=0,
        help="paths per call of the walk (0: all in one call, the walk bounds its own memory)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="2 paths, no bisection, 1 repeat")
    args = ap.parse_args()
    if args.quick:
        args.paths, args.bisect_paths, args.repeats = 2, 0, 1
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    net = vgg_cnn(args.seed).to(dtype)
    g = torch.Generator().manual_seed(args.seed + 2)
    x = torch.randn(2 * args.paths, 3, 32, 32, generator=g).to(dtype)
    x1, x2 = x[0::2], x[1::2]
    print(
        f"# bench_cnn: {args.paths} paths, {args.dtype}, {load_condition()}, "
        f"SPACEFOLD_MEMORY={os.environ.get('SPACEFOLD_MEMORY', 'unset')}"
    )

    # the compiled kernels compile on first use: warm them up on a short segment
    walk_batch(net, x1[:1], (x1[:1] + 1e-3 * (x2[:1] - x1[:1])))
    rss0 = maxrss_mb()
    batch = args.batch or args.paths
    parts, t_walk, n64, n_ref = [], 0.0, 0, 0
    for k in range(0, args.paths, batch):
        t0 = time.perf_counter()
        w = walk_batch(net, x1[k : k + batch], x2[k : k + batch])
        t_walk += time.perf_counter() - t0
        n64 += w.n_float64
        n_ref += w.n_refined
        # every breakpoint of every path in order of t, and the t where each region begins
        path, t = w.path_sorted + k, w.t_sorted
        cnt, _ = w._per_breakpoint(None)
        starts = cnt > 0
        starts[w.first] = True
        parts.append((w.n_regions, path, t, path[starts], t[starts]))
        del w
    rss = maxrss_mb()
    regions, path, t, reg_path, t_reg = (torch.cat(z) for z in zip(*parts))
    n_bp = path.numel()

    f_bp = floor_seconds(net, x1, x2, path, t, args.floor_batch, args.repeats)
    # the rows every layer saw (a second walk of the same paths, with hooks; not timed)
    rows_seen = [0] * len(net)
    for k in range(0, args.paths, batch):
        r = layer_rows(net, lambda: walk_batch(net, x1[k : k + batch], x2[k : k + batch]).t_sorted.numel())
        rows_seen = [a + b for a, b in zip(rows_seen, r)]
    f_layer = layer_floor_seconds(net, x1, rows_seen, args.floor_batch, args.repeats)
    # one point per region: the middle of the region's t-range
    t_end = torch.cat([t_reg[1:], torch.ones(1, dtype=t_reg.dtype)])
    last = torch.ones_like(reg_path, dtype=torch.bool)
    last[:-1] = reg_path[1:] != reg_path[:-1]
    t_end[last] = 1.0
    f_reg = floor_seconds(net, x1, x2, reg_path, (t_reg + t_end) / 2, args.floor_batch, args.repeats)

    rows = [
        {
            "what": f"exact ({args.dtype}, {batch} paths per call)",
            "s/path": t_walk / args.paths,
            "regions/path": float(regions.double().mean()),
            "breakpoints/path": n_bp / args.paths,
            "ratio": "-",
            "maxrss MB": f"{rss:.0f} (before: {rss0:.0f})",
        },
        {
            "what": "floor: forward at every breakpoint",
            "s/path": f_bp / args.paths,
            "regions/path": "-",
            "breakpoints/path": n_bp / args.paths,
            "ratio": f"walk/floor = {t_walk / f_bp:.2f}",
            "maxrss MB": "-",
        },
        {
            "what": "floor: each layer alone at the breakpoints it has",
            "s/path": f_layer / args.paths,
            "regions/path": "-",
            "breakpoints/path": "-",
            "ratio": f"walk/floor = {t_walk / f_layer:.2f}",
            "maxrss MB": "-",
        },
        {
            "what": "forward at one point per region",
            "s/path": f_reg / args.paths,
            "regions/path": "-",
            "breakpoints/path": "-",
            "ratio": f"walk/this = {t_walk / f_reg:.2f}",
            "maxrss MB": "-",
        },
    ]
    if not args.no_float64:
        t64, r64, bp64 = 0.0, [], 0
        for k in range(0, args.paths, batch):
            t0 = time.perf_counter()
            w = walk_batch(net, x1[k : k + batch], x2[k : k + batch], dtype=torch.float64)
            t64 += time.perf_counter() - t0
            r64.append(w.n_regions)
            bp64 += w.t_sorted.numel()
            del w
        r64 = torch.cat(r64)
        same = int((r64 == regions).sum())
        rows.append(
            {
                "what": "exact (float64)",
                "s/path": t64 / args.paths,
                "regions/path": float(r64.double().mean()),
                "breakpoints/path": bp64 / args.paths,
                "ratio": f"same count as {args.dtype}: {same}/{args.paths} "
                f"(max diff {int((r64 - regions).abs().max())})",
                "maxrss MB": f"{maxrss_mb():.0f}",
            }
        )
    if args.bisect_paths:
        k = min(args.bisect_paths, args.paths)
        t0 = time.perf_counter()
        wb = walk_batch(net, x1[:k], x2[:k], method="bisect")
        tb = time.perf_counter() - t0
        rows.append(
            {
                "what": "bisect",
                "s/path": tb / k,
                "regions/path": float(wb.n_regions.double().mean()),
                "breakpoints/path": "-",
                "ratio": f"bisect/walk = {(tb / k) / (t_walk / args.paths):.1f}; regions bisect - exact on its "
                f"{k} paths: {int((wb.n_regions - regions[:k]).sum())}",
                "maxrss MB": f"{maxrss_mb():.0f}",
            }
        )
    print(table(rows))
    print(f"\npaths walked again in float64 (max pooling unresolved in {args.dtype}): {n64}")
    print(f"sub-segments walked again in float64 (crossings {args.dtype} cannot tell apart): {n_ref}")
    print("rows per layer (all paths):", rows_seen)
    print("regions per path:", regions.tolist())
    if not args.no_float64:
        print("regions per path, float64:", r64.tolist())


if __name__ == "__main__":
    main()
