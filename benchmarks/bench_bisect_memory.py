"""Peak memory of ``folding_batch(..., method="bisect")`` on the 6-block ViT of
``experiments/transformer_folding_study.py`` (patch 7 -> 16 tokens, d = 32, 2 heads, MLP 64, GELU,
pre-norm; random initialisation, seed 0, float32) between random points of [0, 1]^784 (seed 1), one
process, one worker (RESULTS.md, section "Bisection's memory against the number of segments").

Prints the peak resident memory of this process (``ru_maxrss``), the time, and the walks' regions and χ
per segment, so that runs with different settings can be compared. Run one setting per process:
the peak is the process's. ``--batch-size 1`` walks one segment at a time; ``SPACEFOLD_MEMORY`` in
the environment sets the budget.

    python benchmarks/bench_bisect_memory.py --segments 16
    python benchmarks/bench_bisect_memory.py --segments 16 --batch-size 1
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch

import spacefold as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
from transformer_folding_study import ViT  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--segments", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=None, help="segments per chunk (default: from the budget)")
    p.add_argument("--blocks", type=int, default=6)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    vit = ViT(args.blocks).eval()
    g = torch.Generator().manual_seed(1)
    x1 = torch.rand(args.segments, 784, generator=g)
    x2 = torch.rand(args.segments, 784, generator=g)
    t = time.perf_counter()
    fb = sf.folding_batch(vit, x1, x2, method="bisect", workers=1, batch_size=args.batch_size)
    wall = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"segments={args.segments} batch_size={args.batch_size} peak_rss_MiB={peak:.0f} seconds={wall:.1f}")
    print("regions", fb.n_regions.tolist())
    print("chi", [round(c, 9) for c in fb.chi.tolist()])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
