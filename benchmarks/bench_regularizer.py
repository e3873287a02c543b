"""Cost of the folding regulariser in whole training runs: each setting's time as a ratio to plain training.

The setting of experiments/regularizer_scale_study.py: MLPs 3x20, 5x12 and 3x40 on a stratified
subset of 1,000 MNIST training images, Adam, lr 1e-3, batch 128, the same epochs and the same
data for every setting; the folding term (λ = 0.3, 512 inter-class training pairs as the probe
set) in the settings below. One repetition trains every setting once, in an order rotated from
one repetition to the next, plain training included; each setting's time is divided by the
plain time of the same repetition, and the table gives the median of these ratios over the
repetitions (with their range). Times: wall clock (``time.perf_counter``) and CPU time of this
process (``time.process_time``, which other processes on a shared machine inflate less), one
torch thread.

    python benchmarks/bench_regularizer.py --data-dir DIR                    # 10 epochs, 5 repetitions
    python benchmarks/bench_regularizer.py --data-dir DIR --archs 3x40 --repeats 9

Settings (``FoldingRegularizer`` arguments): ``K segments x P points`` per step (``pairs_per_step``,
``n_points``); the term at every step, at every k-th step (``every_steps``), in every k-th epoch
(``schedule="every:k"``) or in the first 30% of the epochs (``early:0.3``); the ``random`` and
``exact`` surrogates; and ``8x8, hooks``: the default setting computed through the pattern hooks
(the path of every model that is not a plain ``nn.Sequential``/``spacefold.models.MLP`` chain, and of
every model before the chain was read without hooks), for the cost of the hooks themselves.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

import spacefold as sf
from spacefold.data import load_mnist
from spacefold.data.datasets import stratified_indices
from spacefold.models.train import train
from spacefold.training.regularize import FoldingRegularizer, probe_pairs

SETTINGS: dict[str, dict | None] = {
    "plain": None,
    "8x8, every step": dict(),
    "8x8, every step, hooks": dict(hooks=True),
    "8x8, every 2nd step": dict(every_steps=2),
    "8x8, every 5th step": dict(every_steps=5),
    "8x8, every 10th step": dict(every_steps=10),
    "8x8, every:2 epochs": dict(schedule="every:2"),
    "8x8, every:5 epochs": dict(schedule="every:5"),
    "8x8, every:10 epochs": dict(schedule="every:10"),
    "8x8, early:0.3": dict(schedule="early:0.3"),
    "4x8, every step": dict(pairs_per_step=4),
    "4x4, every step": dict(pairs_per_step=4, n_points=4),
    "4x4, every 2nd step": dict(pairs_per_step=4, n_points=4, every_steps=2),
    "exact 8, every step": dict(method="exact"),
}


class Hooked(nn.Module):
    """The same network behind a forward of its own: the folding loss reads it through the pattern hooks."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)


def run(arch: str, x, y, p1, p2, setting: dict | None, epochs: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one training run of ``epochs`` epochs."""
    model = sf.mlp(arch, 784, 10, seed=0)
    reg = None
    if setting is not None:
        kw = {k: v for k, v in setting.items() if k != "hooks"}
        kw = {"pairs_per_step": 8, "n_points": 8, "method": "random", **kw}
        reg = FoldingRegularizer(p1, p2, 0.3, seed=0, **kw)
        if setting.get("hooks"):
            model = Hooked(model)
    t0, c0 = time.perf_counter(), time.process_time()
    train(model, x, y, epochs=epochs, seed=0, regularizer=reg)
    return time.perf_counter() - t0, time.process_time() - c0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True, help="directory with the MNIST IDX files")
    p.add_argument("--archs", nargs="+", default=["3x20", "5x12", "3x40"])
    p.add_argument("--n-train", type=int, default=1000, help="stratified subset of the training file")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    data = load_mnist(args.data_dir)
    idx = stratified_indices(data.y_train, args.n_train, 100)
    x, y = data.x_train[idx], data.y_train[idx]
    p1, p2 = probe_pairs(x, y, 512, seed=1000)
    names = ["plain", *[s for s in args.settings if s != "plain"]]
    steps = -(-x.shape[0] // 128) * args.epochs
    print(
        f"torch {torch.__version__}, 1 thread, {x.shape[0]} training images, {args.epochs} epochs ({steps} steps), "
        f"batch 128, {args.repeats} repetitions, λ = 0.3"
    )
    print(
        "| arch | setting | ratio to plain, wall (median [range]) | ratio to plain, CPU (median [range]) | "
        "plain s (wall, median) |"
    )
    print("|---|---|---|---|---|")
    for arch in args.archs:
        for warm in ("8x8, every step", "exact 8, every step"):  # warm-up
            run(arch, x[:256], y[:256], p1, p2, SETTINGS[warm], 1)
        times: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
        for r in range(args.repeats):
            k = r % len(names)
            for name in names[k:] + names[:k]:  # rotated order: no setting always runs first or last
                times[name].append(run(arch, x, y, p1, p2, SETTINGS[name], args.epochs))
        plain = times["plain"]
        for name in names:
            cells = []
            for j in (0, 1):
                ratios = [t[j] / b[j] for t, b in zip(times[name], plain)]
                cells.append(f"{statistics.median(ratios):.2f} [{min(ratios):.2f}, {max(ratios):.2f}]")
            base = statistics.median(t[0] for t in plain)
            print(f"| {arch} | {name} | {cells[0]} | {cells[1]} | {base:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
