"""Exact walk vs regioncam (Regioncam1D.through_points, then add(net)) on the same segments.

Network: 784-256x6-10 MLP with PyTorch's default random weights (seed 0). Segments: random
pairs of MNIST test images (seed 0). Both count the regions of every segment; the table
gives paths per second (median over repeats, both measured in this run) and their ratio,
with the compiled kernels (the default on CPUs) and, at the default ``tol``, without them.
The last rows time only the matrix products the walk performs (replayed on random data
of the same shapes): the speed-up no amount of work on the rest of the walk can exceed.

    .venv/bin/python benchmarks/bench_regioncam.py --paths 1000 --repeats 3 --threads 1,2
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from _common import load_condition, load_mnist, random_mlp, table

import spacefold as sf


def regioncam_counts(net, x1, x2) -> list[int]:
    import regioncam

    out = []
    for a, b in zip(x1, x2):
        # size=2 spans exactly the segment a -> b (size=1 covers its middle half)
        cam = regioncam.Regioncam1D.through_points(torch.stack([a, b]).numpy(), size=2.0)
        cam.add(net)
        out.append(cam.num_edges)
    return out


def product_floor(net, x1, x2, threads: int, repeats: int) -> float:
    """Seconds for only the matrix products the exact walk performs on these segments: the
    shapes of every product are recorded during one walk, then the products are replayed on
    random data (``threads`` sub-batches at a time, one thread each, as the walk runs them)."""
    import importlib
    from concurrent.futures import ThreadPoolExecutor

    fused = importlib.import_module("spacefold._core.walk.exact.fused")  # where the walk looks up _linear
    driver = importlib.import_module("spacefold._core.walk.exact.driver")  # and _run
    shapes: list[list[tuple[int, int, int]]] = []
    original = fused._linear

    def recording(lin, x, out):
        shapes[-1].append((x.shape[0], lin.in_features, lin.out_features))
        return original(lin, x, out)

    original_run = driver._run

    def run(*args):
        shapes.append([])
        return original_run(*args)

    fused._linear, driver._run = recording, run
    try:
        torch.set_num_threads(1)
        sf.folding_batch(net, x1, x2, method="exact", batch_size=x1.shape[0])
    finally:
        fused._linear, driver._run = original, original_run
    weights = {(i, o): (torch.randn(o, i), torch.randn(o)) for sub in shapes for _, i, o in sub}
    data = [[(torch.rand(v, i), *weights[i, o]) for v, i, o in sub] for sub in shapes]

    def replay(sub):
        for y, w, b in sub:
            torch.addmm(b, y, w.t())

    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(replay, data))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--paths", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", default="1,2", help="torch thread counts to measure, comma separated")
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--width", type=int, default=256)
    args = ap.parse_args()
    try:
        import regioncam  # noqa: F401
    except ImportError:
        raise SystemExit("regioncam is not installed: pip install regioncam") from None
    x, _ = load_mnist("test")
    net = random_mlp([args.width] * args.depth, seed=0)
    g = torch.Generator().manual_seed(0)
    i = torch.randint(0, x.shape[0], (args.paths,), generator=g)
    j = torch.randint(0, x.shape[0], (args.paths,), generator=g)
    x1, x2 = x[i], x[j]
    print(f"# {args.paths} segments between MNIST test images, 784-{args.width}x{args.depth}-10 random MLP, float32")
    print(f"# {load_condition()}")

    # reference: the exact walk of the same network evaluated in float64
    ref = sf.folding_batch(net, x1, x2, method="exact", tol=0.0, dtype=torch.float64).n_regions
    # (threads, tol, compiled kernels): the default tol also without the kernels (torch operations only)
    configs = [
        (th, tol, k)
        for th in [int(t) for t in args.threads.split(",")]
        for tol, k in ((0.0, True), (1e-9, True), (1e-6, True), (1e-9, False))
    ]
    sf.folding_batch(net, x1[:50], x2[:50], method="exact")  # warm-up (tracing)
    # interleaved: every repeat times regioncam and then each configuration, so that both
    # see the same load; ratios are taken within a repeat
    rc_times, times, ratios, res, rc = [], {c: [] for c in configs}, {c: [] for c in configs}, {}, None
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        rc = regioncam_counts(net.net, x1, x2)  # regioncam takes the nn.Sequential inside the MLP
        t_rc = time.perf_counter() - t0
        rc_times.append(t_rc)
        for c in configs:
            th, tol, kernels = c
            torch.set_num_threads(th)
            os.environ["SPACEFOLD_NUMBA"] = "1" if kernels else "0"
            t0 = time.perf_counter()
            res[c] = sf.folding_batch(net, x1, x2, method="exact", tol=tol, batch_size=args.paths)
            t = time.perf_counter() - t0
            times[c].append(t)
            ratios[c].append(t_rc / t)
        os.environ["SPACEFOLD_NUMBA"] = "1"
    rc = torch.tensor(rc)

    def agree(counts):
        return f"{int((counts == ref).sum())}/{args.paths}"

    t_rc = statistics.median(rc_times)
    rows = [
        {
            "method": "regioncam 0.5.2 (Rust, 1 thread)",
            "torch threads": "-",
            "paths/s": args.paths / t_rc,
            "ms/path": 1e3 * t_rc / args.paths,
            "speed-up (median of per-repeat ratios)": 1.0,
            "regions/path": float(rc.float().mean()),
            "same count as regioncam": "-",
            "same count as float64": agree(rc),
        }
    ]
    for c in configs:
        th, tol, kernels = c
        t = statistics.median(times[c])
        r = res[c]
        name = f"spacefold exact, tol={tol:g}" + (" (default)" if tol == 1e-9 else "")
        if not kernels:
            name += ", torch operations only"
        rows.append(
            {
                "method": name,
                "torch threads": th,
                "paths/s": args.paths / t,
                "ms/path": 1e3 * t / args.paths,
                "speed-up (median of per-repeat ratios)": statistics.median(ratios[c]),
                "regions/path": float(r.n_regions.float().mean()),
                "same count as regioncam": f"{int((r.n_regions == rc).sum())}/{args.paths} (max diff "
                f"{int((r.n_regions - rc).abs().max())})",
                "same count as float64": agree(r.n_regions),
            }
        )
    for th in sorted({c[0] for c in configs}):
        t = product_floor(net, x1, x2, th, args.repeats)
        rows.append(
            {
                "method": "floor: only the walk's matrix products",
                "torch threads": th,
                "paths/s": args.paths / t,
                "ms/path": 1e3 * t / args.paths,
                "speed-up (median of per-repeat ratios)": t_rc / t,
                "regions/path": "-",
                "same count as regioncam": "-",
                "same count as float64": "-",
            }
        )
    print(table(rows))


if __name__ == "__main__":
    main()
