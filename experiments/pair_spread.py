"""How much Φ_N moves with the pair set alone, by the number of pairs (the studies' pages cite it).

Trains the depth study's 3x20 and 5x12 (seed 0; Adam, lr 1e-3, batch 128, 30 epochs, one torch thread;
spacefold.models.train.train_mlp) and measures each, unchanged, on inter-class MNIST test pairs drawn with
``--pair-seeds`` different seeds for every size in ``--sizes``: the spread of Φ_N (median of the
non-zero χ) and of the share of folded paths over the pair sets is the pair-set spread of a study
that measures that many pairs. A page compares it with the effects it reports: an effect smaller
than about 2.8 pair-set standard deviations (1.96 x sqrt 2, the difference of two estimates) cannot
be told from a change of pairs.

    python experiments/pair_spread.py --data-dir DIR        # writes experiments/results/pair-spread/spread.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from spacefold._core.global_folding import global_folding
from spacefold._core.pairs import pair_plan, plan_fingerprint
from spacefold._util import atomic_write, json_safe
from spacefold.cli import nonnegative_int, positive_int
from spacefold.data import load_mnist
from spacefold.models import load_checkpoint
from spacefold.models.train import train_mlp
from spacefold.studies.depth import run_provenance

ROOT = Path(__file__).resolve().parent.parent


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True, help="directory with the four MNIST IDX files")
    p.add_argument("--out", default=str(ROOT / "experiments" / "results" / "pair-spread"))
    p.add_argument("--archs", nargs="+", default=["3x20", "5x12"])
    p.add_argument("--seed", type=nonnegative_int, default=0, help="the networks' seed")
    p.add_argument("--sizes", nargs="+", type=positive_int, default=[300, 1000, 3000, 10000])
    p.add_argument("--pair-seeds", type=positive_int, default=20, help="pair sets per size (seeds 0, 1, ...)")
    args = p.parse_args(argv)
    run_provenance()
    torch.set_num_threads(1)
    out = Path(args.out)
    data = load_mnist(args.data_dir)
    res = {
        "provenance": run_provenance(),
        "sizes": args.sizes,
        "pair_seeds": list(range(args.pair_seeds)),
        "networks": {},
    }
    for arch in args.archs:
        ckpt = out / "models" / f"{arch}_s{args.seed}.pt"
        if ckpt.is_file():
            model = load_checkpoint(ckpt)
            acc = None
        else:
            model, tr = train_mlp(arch, data, epochs=30, seed=args.seed, checkpoint=ckpt)
            acc = tr.final_test_accuracy
        model.eval()
        net = {"arch": arch, "seed": args.seed, "test_accuracy": acc, "by_size": {}}
        for n in args.sizes:
            phis, fracs, hashes = [], [], []
            for s in range(args.pair_seeds):
                plan = pair_plan(data.y_test, "inter-class", max_pairs=n, seed=s)
                g = global_folding(model, data.x_test, data.y_test, pairs=plan, seed=s, batch_size=4096)
                phis.append(g.phi)
                fracs.append(g.fraction_folded)
                hashes.append(plan_fingerprint(plan)["sha256"])
            phis, fracs = np.array(phis), np.array(fracs)
            net["by_size"][str(n)] = {
                "phi": phis.tolist(),
                "fraction_folded": fracs.tolist(),
                "pairs_sha256": hashes,
                "phi_mean": float(phis.mean()),
                "phi_sd": float(phis.std(ddof=1)),
                "phi_range": [float(phis.min()), float(phis.max())],
                "fraction_sd": float(fracs.std(ddof=1)),
            }
            log(
                f"{arch}: {n} pairs: Φ_N {phis.mean():.4f} sd {phis.std(ddof=1):.4f} "
                f"(range {phis.min():.4f}-{phis.max():.4f}), share folded sd {fracs.std(ddof=1):.4f}"
            )
        res["networks"][arch] = net
    with atomic_write(out / "spread.json") as fh:
        json.dump(json_safe(res), fh, indent=1, allow_nan=False)
    log(f"wrote {out / 'spread.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
