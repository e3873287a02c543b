"""The exact entry points on the same pairs: ``folding_batch``, ``folding_pairs``; and ``global_folding``.

A random ``--arch`` MLP (``spacefold.models.mlp``) on random 784-d inputs; ``--pairs``
random index pairs ``(i, j)`` into ``--samples`` inputs. ``folding_pairs(x, i, j)`` and
``folding_batch(x[i], x[j])`` walk the same segments and must give the same χ; the last
rows are ``global_folding`` on ``--pairs`` inter-class pairs (random labels) and
``folding_batch`` on ``--samples / 2`` segments whose ends are distinct inputs
(mostly: random pairs). The table gives paths per second of each (median over
``--repeats``, all measured in this run).

The second table puts the defaults against the best hand-tuned configuration of
``bench_protocol.py`` on the same ``--pairs`` pairs: one single-threaded worker process
per core (``--workers``, default every core), started and warmed up before the timing,
each calling ``folding_pairs(batch_size=1 << 17, workers=1)`` on its share. The defaults
(``global_folding`` with ``max_pairs=--pairs``, ``folding_batch(x[i], x[j])``) pay for
everything, their worker processes included; the ratios are paths/s over the
hand-tuned paths/s.
Run it on two versions in one run (``PYTHONPATH=A/src`` then ``PYTHONPATH=B/src``) to
compare them.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor

import torch
from _common import load_condition, table

import spacefold as sf
from spacefold.models import mlp


_TUNED: dict = {}


def _tuned_init(arch: str, samples: int, seed: int) -> None:
    torch.set_num_threads(1)
    net = mlp(arch, 784, 10, seed=seed).eval()
    x = torch.rand(samples, 784, generator=torch.Generator().manual_seed(seed))
    sf.folding_pairs(net, x, torch.zeros(1000, dtype=torch.int64), torch.arange(1000), workers=1)  # warm-up
    _TUNED.update(net=net, x=x)


def _tuned_ready(_: int) -> bool:
    time.sleep(0.2)  # every worker takes one
    return bool(_TUNED)


def _tuned_walk(ij):
    i, j = ij
    return sf.folding_pairs(_TUNED["net"], _TUNED["x"], i, j, batch_size=1 << 17, workers=1).chi


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="5x12")
    ap.add_argument("--samples", type=int, default=10_000)
    ap.add_argument("--pairs", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                    help="worker processes of the hand-tuned configuration (default every core)")
    args = ap.parse_args()
    # the hand-tuned pool starts first, and is warm before anything is timed
    tuned = ProcessPoolExecutor(args.workers, mp_context=mp.get_context("forkserver"), initializer=_tuned_init,
                                initargs=(args.arch, args.samples, args.seed))
    list(tuned.map(_tuned_ready, range(args.workers)))
    torch.set_num_threads(args.threads)
    net = mlp(args.arch, 784, 10, seed=args.seed).eval()
    x = torch.rand(args.samples, 784, generator=torch.Generator().manual_seed(args.seed))  # as the workers
    g = torch.Generator().manual_seed(args.seed + 1)
    i = torch.randint(args.samples, (args.pairs,), generator=g)
    j = torch.randint(args.samples, (args.pairs,), generator=g)
    y = torch.randint(10, (args.samples,), generator=g)
    x1, x2 = x[i], x[j]  # gathered once, outside the timing
    shares = [(i[a : a + -(-args.pairs // args.workers)], j[a : a + -(-args.pairs // args.workers)])
              for a in range(0, args.pairs, -(-args.pairs // args.workers))]
    runs = {
        "folding_pairs(x, i, j)": lambda: sf.folding_pairs(net, x, i, j).chi,
        "folding_batch(x[i], x[j])": lambda: sf.folding_batch(net, x1, x2).chi,
        "global_folding(x, y, max_pairs)": lambda: sf.global_folding(net, x, y, max_pairs=args.pairs).chi,
        "folding_batch, distinct inputs": lambda: sf.folding_batch(net, x1[: args.samples // 2],
                                                                   x2[: args.samples // 2]).chi,
        "hand-tuned (bench_protocol)": lambda: torch.cat(list(tuned.map(_tuned_walk, shares))),
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
    tuned.shutdown()
    same = same and torch.equal(chis["folding_pairs(x, i, j)"], chis["hand-tuned (bench_protocol)"])
    print(f"spacefold from {sf.__file__}")
    print(table(rows, f"{args.arch} MLP, {args.pairs} pairs of {args.samples} random 784-d inputs, "
                      f"{args.threads} threads; same chi: {same}; {load_condition()}"))
    rate = {r["entry point"]: r["paths/s"] for r in rows}
    best = rate["hand-tuned (bench_protocol)"]
    ratios = [{"defaults": k, "paths/s": rate[k], "x hand-tuned": rate[k] / best, "target": t}
              for k, t in (("global_folding(x, y, max_pairs)", ">= 0.9"), ("folding_batch(x[i], x[j])", ">= 0.5"))]
    print()
    print(table(ratios, f"defaults against the hand-tuned configuration ({args.workers} single-threaded workers, "
                        f"batch 131072), {best:,.0f} paths/s"))


if __name__ == "__main__":
    main()
