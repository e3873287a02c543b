"""The MLP kernels (``spacefold._core.walk.exact.mlp``) against the layer walk, by width, in the same run.

Random ``784-W x depth`` MLPs (``spacefold.models.mlp``, seed 0) on pairs of the first ``--images`` MNIST test images
(seed 0), one process, one thread. Each round times ``folding_pairs(workers=1)`` with the kernels and with them off
(``MAX_WIDTH`` set to 0: every path walked layer by layer), in turn; the script checks that both give the same χ and
regions, and prints the share of paths the kernels measure themselves (the others they hand to the float64 walk).

    SPACEFOLD_MNIST=DIR python benchmarks/bench_mlp_kernels.py
    SPACEFOLD_MNIST=DIR python benchmarks/bench_mlp_kernels.py --widths 12 16 24 32 48 --depth 4 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _common import load_condition, load_mnist, random_mlp, table

import spacefold as sf
import spacefold._core.walk.exact.mlp as kernels
from spacefold._core.walk.exact.program import compile_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[12, 16, 24, 32, 48])
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--paths", type=int, default=20000, help="pairs for widths up to 16 (a third beyond)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    x = load_mnist("test")[0][: args.images].clone()
    limit = kernels.MAX_WIDTH
    rows = []
    for w in args.widths:
        net = random_mlp([w] * args.depth, seed=0)
        n = args.paths if w <= 16 else args.paths // 3
        g = torch.Generator().manual_seed(0)
        i, j = torch.randint(0, x.shape[0], (2, n), generator=g)
        times: dict[str, list[float]] = {"kernels": [], "layer walk": []}
        out = {}
        for _ in range(args.rounds + 1):  # the first round warms up
            for name, width in (("kernels", max(limit, w)), ("layer walk", 0)):
                kernels.MAX_WIDTH = width
                t0 = time.perf_counter()
                out[name] = sf.folding_pairs(net, x, i, j, workers=1)
                times[name].append(time.perf_counter() - t0)
        kernels.MAX_WIDTH = max(limit, w)
        plan = kernels.mlp_summarizer(compile_model(net), 0.0, 1e-9)
        z, nrm = plan.prefix(x)
        _, clean = plan(z[i], z[j], nrm[i], nrm[j])
        kernels.MAX_WIDTH = limit
        k, lw = (statistics.median(times[m][1:]) for m in ("kernels", "layer walk"))
        same = torch.equal(out["kernels"].chi, out["layer walk"].chi) and torch.equal(
            out["kernels"].n_regions, out["layer walk"].n_regions
        )
        rows.append(
            {
                "width": w,
                "paths": n,
                "regions/path": float(out["kernels"].n_regions.float().mean()),
                "measured by the kernels": float(clean.float().mean()),
                "kernels s": k,
                "layer walk s": lw,
                "layer walk s / kernels s": lw / k,
                "same chi and regions": same,
            }
        )
    print(
        table(
            rows,
            f"784-W x{args.depth} random MLPs, pairs of the first {args.images} MNIST test images, one thread, medians "
            f"of {args.rounds} rounds; the library takes widths up to {limit}; {load_condition()}",
        )
    )


if __name__ == "__main__":
    main()
