"""Exact walk vs the papers' uniform sampling (TMLR Algorithm 1) on trained MNIST MLPs.

For each model, random inter-class pairs of MNIST test images are walked exactly and
with n = 10, 100, 1,000, 10,000 equispaced points (steps = n - 1). For each n: the mean
and largest |χ_uniform − χ_exact|, the share of paths whose χ differs, the share of
regions the grid misses, Φ (median of the non-zero χ) and the time per path, with the
exact walk's time measured in the same run.

    .venv/bin/python benchmarks/bench_uniform.py --archs 3x20,5x12 --paths 500 --epochs 30
"""

from __future__ import annotations

import argparse

import torch
from _common import load_condition, load_mnist, table, timed, trained_mlp

import spacefold as sf
from spacefold._core.global_folding import median_nonzero as phi  # Φ_N: the median of the non-zero χ


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", default="3x20,5x12")
    ap.add_argument("--paths", type=int, default=500)
    ap.add_argument("--points", default="10,100,1000,10000")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x, y = load_mnist("test")
    g = torch.Generator().manual_seed(1)
    i = torch.randint(0, x.shape[0], (4 * args.paths,), generator=g)
    j = torch.randint(0, x.shape[0], (4 * args.paths,), generator=g)
    keep = (y[i] != y[j]).nonzero().squeeze(1)[: args.paths]  # inter-class pairs
    i, j = i[keep], j[keep]
    print(f"# {i.numel()} inter-class pairs of MNIST test images; {load_condition()}")
    for arch in args.archs.split(","):
        model, acc = trained_mlp(arch, epochs=args.epochs)
        x1, x2 = x[i], x[j]
        sf.folding_batch(model, x1[:8], x2[:8], method="exact")  # warm-up (tracing)
        t_ex, ex = timed(lambda m=model, a=x1, b=x2: sf.folding_batch(m, a, b, method="exact"), args.repeats, warmup=0)
        rows = [
            {
                "walk": "exact",
                "points": "-",
                "mean abs chi err": 0.0,
                "max abs chi err": 0.0,
                "paths with chi err": "0%",
                "regions missed": "0%",
                "phi": phi(ex.chi),
                "regions/path": float(ex.n_regions.float().mean()),
                "ms/path": 1e3 * t_ex / i.numel(),
                "time / exact": 1.0,
            }
        ]
        for n in [int(p) for p in args.points.split(",")]:
            reps = args.repeats if n <= 1000 else 1
            t_u, un = timed(
                lambda m=model, a=x1, b=x2, n=n: sf.folding_batch(
                    m, a, b, method="uniform", steps=n - 1, batch_size=max(1, 200_000 // n)
                ),
                reps,
                warmup=0,
            )
            err = (un.chi - ex.chi).abs()
            missed = 1.0 - (un.n_regions.double() / ex.n_regions.double()).mean()
            rows.append(
                {
                    "walk": "uniform",
                    "points": n,
                    "mean abs chi err": float(err.mean()),
                    "max abs chi err": float(err.max()),
                    "paths with chi err": f"{100 * float((err > 1e-12).double().mean()):.1f}%",
                    "regions missed": f"{100 * float(missed):.1f}%",
                    "phi": phi(un.chi),
                    "regions/path": float(un.n_regions.float().mean()),
                    "ms/path": 1e3 * t_u / i.numel(),
                    "time / exact": t_u / t_ex,
                }
            )
        print(table(rows, f"MNIST MLP {arch}, {args.epochs} epochs, test accuracy {acc:.4f}"))


if __name__ == "__main__":
    main()
