"""The exact entry points on the same pairs: ``folding_batch``, ``folding_pairs``; and ``global_folding``.

A random ``--arch`` MLP (``spacefold.models.mlp``) on random 784-d inputs; ``--pairs``
random index pairs ``(i, j)`` into ``--samples`` inputs. ``folding_pairs(x, i, j)`` and
``folding_batch(x[i], x[j])`` walk the same segments and must give the same χ; the last
rows are ``global_folding`` on ``--pairs`` inter-class pairs (random labels) and
``folding_batch`` on ``--samples / 2`` segments whose ends are distinct inputs
(mostly: random pairs). The table gives paths per second of each (median over
``--repeats``, all measured in this run).
Run it on two versions in one run (``PYTHONPATH=A/src`` then ``PYTHONPATH=B/src``) to
compare them.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _common import load_condition, table

import spacefold as sf
from spacefold.models import mlp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="5x12")
    ap.add_argument("--samples", type=int, default=10_000)
    ap.add_argument("--pairs", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    net = mlp(args.arch, 784, 10, seed=args.seed).eval()
    g = torch.Generator().manual_seed(args.seed)
    x = torch.rand(args.samples, 784, generator=g)
    i = torch.randint(args.samples, (args.pairs,), generator=g)
    j = torch.randint(args.samples, (args.pairs,), generator=g)
    y = torch.randint(10, (args.samples,), generator=g)
    x1, x2 = x[i], x[j]  # gathered once, outside the timing
    runs = {
        "folding_pairs(x, i, j)": lambda: sf.folding_pairs(net, x, i, j).chi,
        "folding_batch(x[i], x[j])": lambda: sf.folding_batch(net, x1, x2).chi,
        "global_folding(x, y, max_pairs)": lambda: sf.global_folding(net, x, y, max_pairs=args.pairs).chi,
        "folding_batch, distinct inputs": lambda: sf.folding_batch(net, x1[: args.samples // 2],
                                                                   x2[: args.samples // 2]).chi,
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    chis = {}
    for k, fn in runs.items():
        chis[k] = fn()  # warm-up (compiles the kernels in a fresh environment)
    for _ in range(args.repeats):
        for k, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    same = torch.equal(chis["folding_pairs(x, i, j)"], chis["folding_batch(x[i], x[j])"])
    sizes = {k: c.numel() for k, c in chis.items()}
    rows = [{"entry point": k, "paths": sizes[k], "paths/s": sizes[k] / statistics.median(v),
             "s": statistics.median(v)} for k, v in times.items()]
    print(f"spacefold from {sf.__file__}")
    print(table(rows, f"{args.arch} MLP, {args.pairs} pairs of {args.samples} random 784-d inputs, "
                      f"{args.threads} threads; same chi: {same}; {load_condition()}"))


if __name__ == "__main__":
    main()
