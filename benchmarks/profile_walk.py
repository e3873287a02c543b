"""Where the exact walk's time goes, tree by tree: ``folding_batch(method="exact")`` on a random MNIST MLP under
cProfile, its time grouped into the matrix products, the compiled split and new-row kernels, the zero rule
(candidates, the bound of their terms, the row norms) and the refinement of close crossings in float64 (with its
splice). Each tree runs in its own process (one torch thread), the current one and every commit given with
``--base`` (``git archive COMMIT src`` unpacked into a temporary folder).

    SPACEFOLD_MNIST=DIR python benchmarks/profile_walk.py --hidden 256 256 256 256 256 256 --paths 200 --base 6bb428a
    SPACEFOLD_MNIST=DIR python benchmarks/profile_walk.py --hidden 12 12 12 12 12 --paths 50000 --base 6bb428a

Seconds are the median of ``--repeats`` calls after two warm-up calls; the groups come from one more, profiled
call (cProfile's own time included), so they add up to less than it: the rest is the walk's other work (the
first layer's product included in the products).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

GROUPS = {
    "products": ("addmm", "_nn.linear"),
    "split": ("split_act",),
    "new rows": ("new_rows_linear",),
    "zero rule": ("zero_candidates", "zero_round_off", "vector_norm", "_row_mag"),
    "refinement": ("refine",),  # cumulative: the float64 walks of the sub-segments and the splice
}


def _measure(args) -> dict:
    import cProfile
    import inspect
    import pstats
    import statistics
    import time

    import torch

    sys.path.insert(0, str(HERE))
    from _common import load_mnist, random_mlp

    import spacefold as sf

    torch.set_num_threads(1)
    x, _ = load_mnist("test")
    g = torch.Generator().manual_seed(0)
    i = torch.randint(0, x.shape[0], (args.paths,), generator=g)
    j = torch.randint(0, x.shape[0], (args.paths,), generator=g)
    net = random_mlp(args.hidden, seed=0)
    kw = {"workers": 1} if "workers" in inspect.signature(sf.folding_batch).parameters else {}
    x1, x2 = x[i].clone(), x[j].clone()

    def run():
        return sf.folding_batch(net, x1, x2, method="exact", batch_size=args.paths, **kw)

    run()
    run()
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    prof = cProfile.Profile()
    prof.enable()
    run()
    prof.disable()
    out = {k: 0.0 for k in GROUPS}
    for (_, _, name), (_, _, tt, ct, _) in pstats.Stats(prof).stats.items():  # type: ignore[attr-defined]
        for group, keys in GROUPS.items():
            if any(k in name for k in keys):
                out[group] += ct if group == "refinement" else tt
    return {"seconds": statistics.median(times), **out, "spacefold": sf.__file__}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hidden", type=int, nargs="+", default=[256] * 6, help="hidden widths of the random MLP")
    p.add_argument("--paths", type=int, default=200, help="random MNIST test segments")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--base", nargs="*", default=[], help="commits to profile too")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(_measure(args)))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        trees = [("current", ROOT / "src")]
        for commit in args.base:
            dest = Path(tmp) / commit
            dest.mkdir()
            archive = subprocess.run(
                ["git", "-C", str(ROOT), "archive", commit, "src"], check=True, capture_output=True
            )
            with tarfile.open(fileobj=__import__("io").BytesIO(archive.stdout)) as tar:
                tar.extractall(dest, filter="data")
            trees.append((commit, dest / "src"))
        for name, src in trees:
            env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
            cmd = [sys.executable, __file__, "--worker", "--paths", str(args.paths), "--repeats", str(args.repeats)]
            cmd += ["--hidden", *map(str, args.hidden)]
            got = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
            rows.append((name, json.loads(got.stdout.strip().splitlines()[-1])))
    width = "x".join(map(str, args.hidden))
    print(f"# folding_batch(method='exact'), 784-{width}-10 random MLP, {args.paths} MNIST test segments, one thread")
    print()
    print("| tree | seconds (median) | " + " | ".join(GROUPS) + " |")
    print("|---|---|" + "---|" * len(GROUPS))
    for name, r in rows:
        print(f"| {name} | {r['seconds']:.3f} | " + " | ".join(f"{r[k]:.3f}" for k in GROUPS) + " |")


if __name__ == "__main__":
    main()
