"""The full MNIST protocol of arXiv 2502.09954 for a 5x12 MLP: every ordered pair of MNIST
test images (10,000 x 10,000 = 100 million segments), walked exactly.

``--anchors K`` walks the K x 10,000 pairs whose start is one of the first K test images
(K = 10000 is the whole protocol) in blocks of ``--block`` anchors, keeping χ and the
profile maximum of every path (float32). It prints the throughput, the time the full
protocol takes at that rate, and the aggregates: Φ_N over inter-class pairs (median of
the non-zero χ), P2's "median of maxima" (per ordered digit pair the median of the
non-zero profile maxima, then the median over the 100 digit pairs) and the share of
folded paths.

``--images N`` keeps only the first N test images (every ordered pair of them, N x N
segments; ``bench_cli.py`` compares this with ``spacefold measure --pairs all`` on the same
images); ``--json`` prints one JSON object instead of the table.

    .venv/bin/python benchmarks/bench_protocol.py --anchors 200 --threads 1
    .venv/bin/python benchmarks/bench_protocol.py --anchors 10000 --threads 1   # the whole protocol
    .venv/bin/python benchmarks/bench_protocol.py --images 2000 --anchors 2000 --workers 2
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor

import torch
from _common import load_condition, load_mnist, table, trained_mlp

import spacefold as sf
from spacefold._core.global_folding import GlobalFolding, median_nonzero

_JOB: dict = {}


def _init(job: dict) -> None:
    torch.set_num_threads(job["threads"])
    x, _ = load_mnist("test")
    x = x[: job["images"]].clone()
    model, _ = trained_mlp(job["arch"], epochs=job["epochs"])
    sf.folding_pairs(model, x, torch.zeros(1000, dtype=torch.int64), torch.arange(1000))  # warm-up (tracing)
    _JOB.update(job, x=x, model=model)


def _ready(_: int) -> bool:
    time.sleep(0.2)  # every worker takes one
    return bool(_JOB)


def _walk_block(rows: tuple[int, int]):
    x, model = _JOB["x"], _JOB["model"]
    n = x.shape[0]
    a, b = rows
    i = torch.arange(a, b).repeat_interleave(n)
    j = torch.arange(n).repeat(b - a)
    f = sf.folding_pairs(model, x, i, j, method="exact", batch_size=_JOB["batch_size"])
    return f.chi.view(b - a, n).float(), f.max_profile.view(b - a, n).float(), int(f.n_regions.sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="5x12")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--anchors", type=int, default=200)
    ap.add_argument("--block", type=int, default=20, help="anchors per folding_pairs call")
    ap.add_argument("--batch-size", type=int, default=1 << 17)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    ap.add_argument("--workers", type=int, default=1, help="worker processes (anchors split between them)")
    ap.add_argument("--images", type=int, default=10_000, help="only the first IMAGES test images (default all)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x, y = load_mnist("test")
    x, y = x[: args.images], y[: args.images]
    n = x.shape[0]
    _, acc = trained_mlp(args.arch, epochs=args.epochs)
    if not args.json:
        print(
            f"# MNIST MLP {args.arch}, {args.epochs} epochs, test accuracy {acc:.4f}; {args.workers} worker(s) x "
            f"{args.threads} thread(s); {load_condition()}"
        )
    k = min(args.anchors, n)
    chi = torch.empty(k, n, dtype=torch.float32)
    mp = torch.empty(k, n, dtype=torch.float32)
    blocks = [(a, min(a + args.block, k)) for a in range(0, k, args.block)]
    job = {
        "arch": args.arch,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "images": n,
    }
    regions = 0
    if args.workers > 1:
        # one process per core, each single-threaded: anchors split between them
        with ProcessPoolExecutor(args.workers, initializer=_init, initargs=(job,)) as pool:
            list(pool.map(_ready, range(args.workers)))  # workers started and warmed up
            t0 = time.perf_counter()
            for (a, b), (c, m, r) in zip(blocks, pool.map(_walk_block, blocks)):
                chi[a:b], mp[a:b] = c, m
                regions += r
            dt = time.perf_counter() - t0
    else:
        _init(job)
        t0 = time.perf_counter()
        for a, b in blocks:
            chi[a:b], mp[a:b], r = _walk_block((a, b))
            regions += r
        dt = time.perf_counter() - t0
    n_paths = k * n
    rate = n_paths / dt
    # the aggregates of the library (Φ_N and P2's median of maxima as spacefold.global_folding defines them)
    la, lb = y[:k].repeat_interleave(n), y.repeat(k)
    zeros = torch.zeros(1, dtype=torch.int64).expand(k * n)  # not kept per path
    g = GlobalFolding(
        chi=chi.reshape(-1),
        max_profile=mp.reshape(-1),
        r1=zeros,
        r2=zeros,
        n_regions=zeros,
        label_a=la,
        label_b=lb,
        method="exact",
        pairs="all",
        seed=0,
    )
    c_inter = chi.reshape(-1)[la != lb]
    rows = [
        {
            "paths walked": n_paths,
            "seconds": dt,
            "paths/s": rate,
            "regions/path": regions / n_paths,
            "full protocol (1e8 paths) at this rate": f"{1e8 / rate / 60:.1f} min",
            "phi (inter-class)": median_nonzero(c_inter),
            "fraction folded (inter-class)": float((c_inter > 0).double().mean()),
            "median of maxima (P2)": g.phi_max_p2,
        }
    ]
    if args.json:
        print(
            json.dumps(
                {
                    "paths": n_paths,
                    "seconds": dt,
                    "paths_per_second": rate,
                    "images": n,
                    "phi_max_p2": g.phi_max_p2,
                    "workers": args.workers,
                    "load": load_condition(),
                }
            )
        )
        return
    print(
        table(
            rows,
            "exact walks, every ordered pair with the start among the first "
            f"{k} test images"
            + (f" and the end among the first {n}" if n < 10_000 else "")
            + (" (the whole protocol)" if k == n == 10_000 else ""),
        )
    )


if __name__ == "__main__":
    main()
