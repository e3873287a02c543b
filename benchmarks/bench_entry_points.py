"""The entry points with their defaults against the best hand-tuned configuration, side by side in one run.

A random ``--arch`` MLP (``spacefold.models.mlp``, seed 0) on the MNIST test images (or, with
``--data random``, on 10,000 random 784-d inputs with random labels). The pairs are those
``global_folding(x, y, max_pairs=--pairs)`` walks (inter-class pairs spread over the ordered
class pairs, seed 0); every configuration walks exactly those segments and must give the same χ:

- ``global_folding(x, y, max_pairs)`` with its defaults (worker processes on every core, chunks
  from the memory budget); it pays for everything, its pair plan included;
- ``folding_batch(x[i], x[j])`` with its defaults (the inputs gathered once, outside the timing);
- ``folding_pairs(x, i, j)`` with its defaults;
- hand-tuned: ``bench_protocol.py``'s configuration, one single-threaded worker process per core
  (``--workers``, default every core), started and warmed up before any timing, each calling
  ``folding_pairs(batch_size=1 << 17, workers=1)`` on its contiguous share of the pairs.

The configurations are interleaved: each of ``--repeats`` rounds times each configuration once,
in turn, so that the load of a shared machine falls on all of them alike. The second table gives,
for the defaults of ``global_folding`` (target >= 0.9) and ``folding_batch`` (target >= 0.5),
the median over rounds of the ratio of the hand-tuned time to theirs in the same round, the
lowest and highest of those ratios, and the ratio of the median throughputs.

    SPACEFOLD_MNIST=DIR python benchmarks/bench_entry_points.py --pairs 400000 --repeats 5
    python benchmarks/bench_entry_points.py --data random --pairs 100000      # no MNIST needed
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
from spacefold._core.pairs import pair_plan
from spacefold.models import mlp

_TUNED: dict = {}


def _inputs(data: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    if data == "mnist":
        from _common import load_mnist

        return load_mnist("test")
    g = torch.Generator().manual_seed(seed)
    return torch.rand(10_000, 784, generator=g), torch.randint(10, (10_000,), generator=g)


def _tuned_init(arch: str, data: str, seed: int) -> None:
    torch.set_num_threads(1)
    net = mlp(arch, 784, 10, seed=seed).eval()
    x, _ = _inputs(data, seed)
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
    ap.add_argument(
        "--data",
        choices=["mnist", "random"],
        default="mnist",
        help="mnist: the test images, from --data-dir or $SPACEFOLD_MNIST (or $SPACEFOLD_DATA)",
    )
    ap.add_argument("--data-dir", default=None, help="folder of the MNIST IDX files")
    ap.add_argument("--arch", default="5x12")
    ap.add_argument("--pairs", type=int, default=400_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--workers",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="worker processes of the hand-tuned configuration (default every core)",
    )
    args = ap.parse_args()
    if args.data_dir is not None:
        os.environ["SPACEFOLD_MNIST"] = args.data_dir  # read by _common, here and in the workers
    # the hand-tuned pool starts first, and is warm before anything is timed
    tuned = ProcessPoolExecutor(
        args.workers,
        mp_context=mp.get_context("forkserver"),
        initializer=_tuned_init,
        initargs=(args.arch, args.data, args.seed),
    )
    list(tuned.map(_tuned_ready, range(args.workers)))
    net = mlp(args.arch, 784, 10, seed=args.seed).eval()
    x, y = _inputs(args.data, args.seed)
    i, j = pair_plan(y, "inter-class", max_pairs=args.pairs, seed=0).indices()  # global_folding's pairs
    n = i.numel()
    x1, x2 = x[i], x[j]  # gathered once, outside the timing
    size = -(-n // args.workers)
    shares = [(i[a : a + size], j[a : a + size]) for a in range(0, n, size)]
    runs = {
        "global_folding(x, y, max_pairs)": lambda: sf.global_folding(net, x, y, max_pairs=args.pairs).chi,
        "hand-tuned (bench_protocol)": lambda: torch.cat(list(tuned.map(_tuned_walk, shares))),
        "folding_batch(x[i], x[j])": lambda: sf.folding_batch(net, x1, x2).chi,
        "folding_pairs(x, i, j)": lambda: sf.folding_pairs(net, x, i, j).chi,
    }
    chis = {k: fn() for k, fn in runs.items()}  # warm-up: kernels compiled, worker processes started
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.repeats):
        for k, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    tuned.shutdown()
    ref = chis["hand-tuned (bench_protocol)"]
    same = all(torch.equal(c.float(), ref.float()) for c in chis.values())
    print(f"spacefold from {sf.__file__}")
    rows = [
        {
            "configuration": k,
            "paths/s (median)": n / statistics.median(v),
            "s (median)": statistics.median(v),
            "s (each round)": " ".join(f"{t:.2f}" for t in v),
        }
        for k, v in times.items()
    ]
    print(
        table(
            rows,
            f"{args.arch} MLP (random weights, seed {args.seed}), {n} inter-class pairs of "
            f"{'MNIST test images' if args.data == 'mnist' else 'random 784-d inputs'}, {args.repeats} "
            f"interleaved rounds; same chi everywhere: {same}; {load_condition()}",
        )
    )
    best = times["hand-tuned (bench_protocol)"]
    ratios = []
    for k, target in (("global_folding(x, y, max_pairs)", 0.9), ("folding_batch(x[i], x[j])", 0.5)):
        per_round = [b / t for b, t in zip(best, times[k])]
        ratios.append(
            {
                "defaults": k,
                "x hand-tuned (median of rounds)": statistics.median(per_round),
                "lowest": min(per_round),
                "highest": max(per_round),
                "ratio of medians": statistics.median(best) / statistics.median(times[k]),
                "target": f">= {target}",
                "met": statistics.median(per_round) >= target,
            }
        )
    print()
    print(
        table(
            ratios,
            f"defaults against the hand-tuned configuration ({args.workers} single-threaded workers, "
            f"batch 131072), in the same rounds",
        )
    )


if __name__ == "__main__":
    main()
