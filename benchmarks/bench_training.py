"""Cost of the folding regulariser: time per training epoch with and without it, MNIST MLPs.

One epoch of :func:`spacefold.models.train.train` (Adam, batch 128, cross-entropy) with no
regulariser, then with ``FoldingRegularizer`` in several settings, interleaved
(plain, variant 1, variant 2, ..., plain, ...) and repeated; each variant's median time
is divided by the plain median measured in the same run. Target: <= 1.5x. Times are CPU
seconds of this process (``time.process_time``, one torch thread), which other processes on
a shared machine do not inflate; wall-clock medians are printed beside them.

    python benchmarks/bench_training.py --data-dir DIR                      # 3x20 and 5x12
    python benchmarks/bench_training.py --data-dir DIR --n-train 20000 --repeats 5

Every variant draws ``pairs`` probe segments per step from 512 inter-class training pairs
and evaluates ``points`` points on each (``pairs × points`` extra forward points per step
of 128 samples). Every timing is a 2-epoch run divided by 2, so ``every:2`` (on in every
other epoch) is averaged over an on and an off epoch like the others over two epochs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import spacefold as sf
from spacefold.data import load_mnist
from spacefold.models.train import train
from spacefold.training.regularize import FoldingRegularizer, probe_pairs

VARIANTS = {
    "random 8x8": dict(method="random", pairs_per_step=8, n_points=8),
    "random 4x8": dict(method="random", pairs_per_step=4, n_points=8),
    "grid 8x16": dict(method="grid", pairs_per_step=8, n_points=16),
    "exact 4": dict(method="exact", pairs_per_step=4),
    "random 8x8, every 2nd step": dict(method="random", pairs_per_step=8, n_points=8, every_steps=2),
    "random 8x8, every:2 epochs": dict(method="random", pairs_per_step=8, n_points=8, schedule="every:2"),
}


def one_epoch(arch: str, data, p1, p2, variant: dict | None) -> tuple[float, float]:
    """(CPU seconds, wall seconds) per training epoch, the mean of a 2-epoch run."""
    model = sf.mlp(arch, 784, 10, seed=0)
    reg = None
    if variant is not None:
        reg = FoldingRegularizer(p1, p2, 0.1, seed=0, **variant)
    epochs = 2  # the mean of two epochs for every variant (for every:2, an on and an off epoch)
    c0, t0 = time.process_time(), time.perf_counter()
    train(model, data.x_train, data.y_train, epochs=epochs, seed=0, regularizer=reg)
    return (time.process_time() - c0) / epochs, (time.perf_counter() - t0) / epochs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True, help="directory with the MNIST IDX files")
    p.add_argument("--archs", nargs="+", default=["3x20", "5x12"])
    p.add_argument("--n-train", type=int, default=None, help="stratified subset of the training set (default: all)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = load_mnist(args.data_dir)
    if args.n_train:
        data = data.subset(args.n_train, None, seed=0)
    p1, p2 = probe_pairs(data.x_train, data.y_train, 512, seed=0)
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), {data.y_train.numel()} training samples, "
        f"{args.repeats} repeats, λ = 0.1"
    )
    print(
        "| arch | variant | extra points / step | CPU s / epoch | ratio to plain (CPU) | wall s / epoch | "
        "ratio (wall) |"
    )
    print("|---|---|---|---|---|---|---|")
    for arch in args.archs:
        one_epoch(arch, data.subset(2000, None, seed=0), p1, p2, VARIANTS[args.variants[0]])  # warm-up
        times: dict[str, list[tuple[float, float]]] = {"plain": [], **{v: [] for v in args.variants}}
        for _ in range(args.repeats):
            times["plain"].append(one_epoch(arch, data, p1, p2, None))
            for v in args.variants:
                times[v].append(one_epoch(arch, data, p1, p2, VARIANTS[v]))
        cpu0 = statistics.median(c for c, _ in times["plain"])
        wall0 = statistics.median(w for _, w in times["plain"])
        print(f"| {arch} | plain | 0 | {cpu0:.2f} | 1.00 | {wall0:.2f} | 1.00 |")
        for v in args.variants:
            cfg = VARIANTS[v]
            pts = "regions" if cfg["method"] == "exact" else str(cfg["pairs_per_step"] * cfg["n_points"])
            cpu = statistics.median(c for c, _ in times[v])
            wall = statistics.median(w for _, w in times[v])
            print(
                f"| {arch} | {v} | {pts} | {cpu:.2f} | {cpu / cpu0:.2f} | {wall:.2f} | {wall / wall0:.2f} |", flush=True
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
