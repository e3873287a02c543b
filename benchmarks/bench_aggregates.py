"""The work around the walk of ``global_folding`` and ``spacefold measure``, this tree against a commit, in turn.

Times, in a child process per tree (``PYTHONPATH`` set to its ``src``, ``git archive BASE src`` unpacked beside),
median of ``--repeats``:

- ``pair_plan(y, "inter-class", max_pairs=--pairs, seed=0)`` on the MNIST test labels (or, without MNIST, on
  10,000 random labels of 10 classes), and the plan's hash (the same pairs in both trees);
- ``GlobalFolding.to_dict()`` of a synthetic result of ``--paths`` paths grouped by class pair as a pair plan orders
  them (10 classes, χ = 1 - r1/r2 of small random integers, seed 0), and Φ_N of it (the same numbers in both).

    SPACEFOLD_MNIST=DIR python benchmarks/bench_aggregates.py 8097455
    python benchmarks/bench_aggregates.py 8097455 --paths 30000000 --pairs 400000
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

HERE = Path(__file__).resolve().parent

CHILD = r"""
import json, os, statistics, sys, time
import torch
from spacefold._core.global_folding import GlobalFolding
from spacefold._core.pairs import pair_plan, plan_fingerprint
n_paths, n_pairs, repeats = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(len(os.sched_getaffinity(0)))
d = os.environ.get("SPACEFOLD_MNIST")
if d:
    sys.path.insert(0, os.environ["BENCH_DIR"])
    from _common import load_mnist
    y = load_mnist("test")[1]
else:
    y = torch.randint(0, 10, (10000,), generator=torch.Generator().manual_seed(0))
plan_s = []
for _ in range(repeats):
    t = time.perf_counter(); plan = pair_plan(y, "inter-class", max_pairs=n_pairs, seed=0)
    plan_s.append(time.perf_counter() - t)
g = torch.Generator().manual_seed(0)
la = torch.randint(0, 10, (n_paths,), generator=g)
lb = torch.randint(0, 10, (n_paths,), generator=g)
order = torch.argsort(la * 10 + lb, stable=True)
la, lb = la[order], lb[order]
r1 = torch.randint(0, 5, (n_paths,), generator=g)
r2 = r1 + torch.randint(0, 5, (n_paths,), generator=g)
chi = torch.where(r2 > 0, 1 - r1 / r2.clamp(min=1), torch.zeros(())).double()
gf = GlobalFolding(chi=chi, max_profile=chi.clone(), r1=r1, r2=r2, n_regions=r2 + 1, label_a=la, label_b=lb,
                   method="exact", pairs="all", seed=0)
dict_s = []
for _ in range(repeats):
    t = time.perf_counter(); out = gf.to_dict(); dict_s.append(time.perf_counter() - t)
print(json.dumps({"plan_s": statistics.median(plan_s), "to_dict_s": statistics.median(dict_s),
                  "plan_sha256": plan_fingerprint(plan)["sha256"], "phi": out["phi"],
                  "phi_max_p2": out["phi_max_p2"]}))
"""


def _run(src: Path, args) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "BENCH_DIR": str(HERE)}
    cmd = [sys.executable, "-c", CHILD, str(args.paths), str(args.pairs), str(args.repeats)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if r.returncode != 0:
        raise SystemExit(f"the child of {src} failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base", help="the commit to time against")
    ap.add_argument("--paths", type=int, default=10_000_000)
    ap.add_argument("--pairs", type=int, default=400_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2, help="each tree in turn, this many times")
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))
    from _common import load_condition, table

    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(
            ["git", "archive", args.base, "src"], cwd=HERE.parent, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        trees = {args.base: Path(tmp) / "src", "this tree": HERE.parent / "src"}
        res: dict[str, list[dict]] = {k: [] for k in trees}
        t0 = time.perf_counter()
        for _ in range(args.rounds):
            for k, src in trees.items():
                res[k].append(_run(src, args))
    rows = []
    for k, runs in res.items():
        rows.append(
            {
                "tree": k,
                "pair plan s": statistics.median(r["plan_s"] for r in runs),
                "to_dict s": statistics.median(r["to_dict_s"] for r in runs),
                "plan sha256": runs[0]["plan_sha256"][:16],
                "phi": runs[0]["phi"],
                "phi_max_p2": runs[0]["phi_max_p2"],
            }
        )
    base, cur = rows
    print(
        table(
            rows,
            f"pair plan of {args.pairs} MNIST test pairs; to_dict of {args.paths} paths; medians of {args.repeats} "
            f"calls, {args.rounds} rounds, trees in turn ({time.perf_counter() - t0:.0f} s); {load_condition()}",
        )
    )
    same_pairs = base["plan sha256"] == cur["plan sha256"]
    same = base["phi"] == cur["phi"] and base["phi_max_p2"] == cur["phi_max_p2"]
    print(
        f"\nspeed-up ({args.base} s / this tree's s): pair plan {base['pair plan s'] / cur['pair plan s']:.2f}x, "
        f"to_dict {base['to_dict s'] / cur['to_dict s']:.2f}x; same pairs: {same_pairs}, same numbers: {same}"
    )


if __name__ == "__main__":
    main()
