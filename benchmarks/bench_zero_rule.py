"""The cost of a change to the exact walk, timed against a git revision in turn (interleaved) on one machine.

Two worker processes import spacefold from two source trees: this checkout's ``src`` and ``--base``
(a git revision, exported with ``git archive`` into a temporary folder). Both build the same
seeded random MLPs (784-12x5-10 and 784-256x6-10 by default, float32) and walk the same segments
between MNIST test images (``$SPACEFOLD_MNIST`` or ``$SPACEFOLD_DATA``; random points in [0, 1]^784
without them) with ``method="exact"``; the parent asks them in turn, base then this tree then base
..., ``--rounds`` times, and reports per network the median time of each and the median of the
per-round ratios (this tree / base), and the regions each found.

    .venv/bin/python benchmarks/bench_zero_rule.py --base HEAD~2 --rounds 7
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NETS = {"5x12": ([12] * 5, 3000), "256x6": ([256] * 6, 64)}  # hidden widths, segments


def _worker(nets: list[str]) -> None:
    import torch

    torch.set_num_threads(1)
    import spacefold as sf
    from spacefold.models import mlp

    try:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from _common import load_mnist

        x, _ = load_mnist("test")
    except SystemExit:
        x = torch.rand(2000, 784, generator=torch.Generator().manual_seed(0))
    jobs = {}
    for name in nets:
        hidden, n = NETS[name]
        model = mlp(hidden, 784, 10, seed=0).eval()
        g = torch.Generator().manual_seed(1)
        i = torch.randint(0, x.shape[0], (n,), generator=g)
        j = torch.randint(0, x.shape[0], (n,), generator=g)
        jobs[name] = (model, i, j)
        sf.folding_pairs(model, x, i, j, method="exact", workers=1)  # warm-up: tracing, kernels
    print("ready", flush=True)
    for line in sys.stdin:
        name = line.strip()
        model, i, j = jobs[name]
        t0 = time.perf_counter()
        f = sf.folding_pairs(model, x, i, j, method="exact", workers=1)
        dt = time.perf_counter() - t0
        print(json.dumps({"s": dt, "regions": int(f.n_regions.sum())}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="HEAD~1", help="the git revision to compare with")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--nets", default="5x12,256x6")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    nets = args.nets.split(",")
    if args.worker:
        _worker(nets)
        return
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", args.base, "src"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        procs = {}
        for label, src in (("base", Path(tmp) / "src"), ("this", ROOT / "src")):
            env = dict(os.environ, PYTHONPATH=str(src), OMP_NUM_THREADS="1")
            procs[label] = subprocess.Popen(
                [sys.executable, __file__, "--worker", "--nets", args.nets],
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                cwd=tmp,
            )
        for p in procs.values():
            assert p.stdout.readline().strip() == "ready"
        res = {(lb, n): [] for lb in procs for n in nets}
        for _ in range(args.rounds):
            for n in nets:
                for lb, p in procs.items():  # base, then this tree
                    p.stdin.write(n + "\n")
                    p.stdin.flush()
                    res[lb, n].append(json.loads(p.stdout.readline()))
        for p in procs.values():
            p.stdin.close()
            p.wait()
    print(f"base {args.base}; {args.rounds} rounds, in turn; load average {os.getloadavg()[0]:.1f}")
    for n in nets:
        b, t = [r["s"] for r in res["base", n]], [r["s"] for r in res["this", n]]
        ratios = [y / x for x, y in zip(b, t)]
        print(
            f"{n}: base {statistics.median(b):.3f} s, this {statistics.median(t):.3f} s, ratio this/base: median "
            f"{statistics.median(ratios):.3f} (rounds {', '.join(f'{r:.2f}' for r in ratios)}); regions base "
            f"{res['base', n][0]['regions']}, this {res['this', n][0]['regions']}"
        )


if __name__ == "__main__":
    main()
