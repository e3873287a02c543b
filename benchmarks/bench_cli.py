"""``spacefold measure --pairs all`` against ``bench_protocol.py`` on the same MNIST test images.

Both walk every ordered pair of the first ``--images`` N MNIST test images exactly, through the
5x12 MLP of ``bench_protocol.py`` (trained ``--epochs`` epochs, cached in ``benchmarks/.cache``):

- ``bench_protocol.py --images N --anchors N --workers W``: the hand-tuned script (W
  single-threaded worker processes started and warmed up before its timing); N x N paths,
  the N pairs of an image with itself included;
- ``python -m spacefold measure --model CHECKPOINT --data SAMPLE.npz --pairs all --json``
  with its defaults (worker processes on every core, chunks from the memory budget): the
  command line on an ``.npz`` holding those N images as its test split; N x (N - 1) paths
  (the command never pairs an image with itself).

Each round runs both commands, one after the other (``--repeats`` rounds, interleaved), and
times each whole command (Python, torch and data loading included) and its walking part: the
command's own ``wall_seconds`` (pair plan, worker start-up and walks) and the script's timed loop
(walks only). The ratios are the command line's time over the script's, per round, then the
median over rounds (target: within 1.2x).

With ``--base COMMIT`` each round also runs that commit's ``bench_protocol.py`` (``git archive COMMIT src
benchmarks`` unpacked into a temporary folder, with its own ``src``) on ``--base-anchors`` anchors against all
10,000 test images, and prints the command line's walking time per path over that script's.

    SPACEFOLD_MNIST=DIR python benchmarks/bench_cli.py --images 2000 --repeats 3
    SPACEFOLD_MNIST=DIR python benchmarks/bench_cli.py --images 10000 --repeats 1   # the whole protocol, twice
    SPACEFOLD_MNIST=DIR python benchmarks/bench_cli.py --images 10000 --repeats 1 --base 6bb428a
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

import numpy as np
from _common import CACHE, load_condition, load_mnist, table, trained_mlp

HERE = Path(__file__).resolve().parent


def _run(cmd: list[str], env: dict) -> tuple[float, dict]:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=HERE)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr}")
    return wall, json.loads(r.stdout.strip().splitlines()[-1])


def _protocol_cmd(args, anchors: int) -> list[str]:
    """``bench_protocol.py`` with ``anchors`` anchors, the workers, model and epochs of ``args``."""
    return [
        sys.executable,
        "bench_protocol.py",
        *("--anchors", str(anchors), "--workers", str(args.workers)),
        *("--epochs", str(args.epochs), "--arch", args.arch),
    ]


def _table_rate(text: str) -> float:
    """The paths/s of bench_protocol.py's table (any version of it)."""
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    row = [c.strip() for c in lines[-1].strip("|").split("|")]
    return float(row[head.index("paths/s")])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2000, help="the first N MNIST test images (default 2000)")
    ap.add_argument("--arch", default="5x12")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--workers",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="worker processes of bench_protocol.py (default every core)",
    )
    ap.add_argument("--data-dir", default=None, help="folder of the MNIST IDX files (default $SPACEFOLD_MNIST)")
    ap.add_argument("--base", default=None, help="also time this commit's bench_protocol.py in every round")
    ap.add_argument("--base-anchors", type=int, default=1000, help="anchors of the base script (x 10,000 images)")
    args = ap.parse_args()
    if args.data_dir is not None:
        os.environ["SPACEFOLD_MNIST"] = args.data_dir
    _, acc = trained_mlp(args.arch, epochs=args.epochs)  # trained once, then cached
    model = CACHE / f"mnist-{args.arch}-e{args.epochs}-s0.pt"
    x, y = load_mnist("test")
    xt, yt = load_mnist("train")
    n = args.images
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in [str(HERE.parent / "src"), os.environ.get("PYTHONPATH", "")] if p),
    }
    with tempfile.TemporaryDirectory() as tmp:
        sample = Path(tmp) / "sample.npz"  # the first N test images as the test split
        np.savez(sample, x_test=x[:n].numpy(), y_test=y[:n].numpy(), x_train=xt[:100].numpy(), y_train=yt[:100].numpy())
        cmds = {
            "bench_protocol.py": _protocol_cmd(args, n) + ["--images", str(n), "--json"],
            "spacefold measure": [
                sys.executable,
                "-m",
                "spacefold",
                "measure",
                "--model",
                str(model),
                "--data",
                str(sample),
                "--pairs",
                "all",
                "--json",
                "--no-progress",
            ],
        }
        base_rates: list[float] = []
        if args.base:
            base = Path(tmp) / "base"
            base.mkdir()
            archive = subprocess.run(
                ["git", "archive", args.base, "src", "benchmarks"], cwd=HERE.parent, capture_output=True, check=True
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
            (base / "benchmarks" / ".cache").symlink_to(CACHE)  # the same trained model
            base_env = {**os.environ, "PYTHONPATH": str(base / "src")}
            base_cmd = _protocol_cmd(args, args.base_anchors)
        res: dict[str, list[tuple[float, dict]]] = {k: [] for k in cmds}
        for _ in range(args.repeats):
            for k, cmd in cmds.items():
                res[k].append(_run(cmd, env))
            if args.base:
                out = subprocess.run(base_cmd, capture_output=True, text=True, env=base_env, cwd=base / "benchmarks")
                if out.returncode != 0:
                    raise SystemExit(f"{args.base}'s bench_protocol.py failed:\n{out.stderr}")
                base_rates.append(_table_rate(out.stdout))
    inner = {"bench_protocol.py": "seconds", "spacefold measure": "wall_seconds"}
    paths = {"bench_protocol.py": "paths", "spacefold measure": "n_paths"}
    rows = []
    for k, runs in res.items():
        whole = [w for w, _ in runs]
        walk = [o[inner[k]] for _, o in runs]
        rows.append(
            {
                "command": k,
                "paths": runs[0][1][paths[k]],
                "whole command s (median)": statistics.median(whole),
                "walking s (median)": statistics.median(walk),
                "paths/s walking": runs[0][1][paths[k]] / statistics.median(walk),
                "walking s (each round)": " ".join(f"{t:.1f}" for t in walk),
                "phi_max_p2": runs[0][1]["phi_max_p2"],
            }
        )
    print(
        table(
            rows,
            f"every ordered pair of the first {n} MNIST test images, {args.arch} MLP ({args.epochs} epochs, "
            f"test accuracy {acc:.4f}), {args.repeats} interleaved rounds; bench_protocol.py with "
            f"{args.workers} workers, spacefold measure with its defaults; {load_condition()}",
        )
    )
    b, c = res["bench_protocol.py"], res["spacefold measure"]
    ratio_walk = [
        (cw[1]["wall_seconds"] / cw[1]["n_paths"]) / (bw[1]["seconds"] / bw[1]["paths"]) for bw, cw in zip(b, c)
    ]
    ratio_whole = [cw[0] / bw[0] for bw, cw in zip(b, c)]
    print()
    print(
        table(
            [
                {
                    "ratio (spacefold measure / bench_protocol.py)": "walking time per path",
                    "median": statistics.median(ratio_walk),
                    "each round": " ".join(f"{r:.2f}" for r in ratio_walk),
                    "target": "<= 1.2",
                },
                {
                    "ratio (spacefold measure / bench_protocol.py)": "whole command",
                    "median": statistics.median(ratio_whole),
                    "each round": " ".join(f"{r:.2f}" for r in ratio_whole),
                    "target": "",
                },
            ],
            "the command line against the hand-tuned script, round by round",
        )
    )
    if base_rates:
        per_path = [cw[1]["wall_seconds"] / cw[1]["n_paths"] * r for cw, r in zip(c, base_rates)]
        minutes = 1e8 * statistics.median(cw[1]["wall_seconds"] / cw[1]["n_paths"] for cw in c) / 60
        print()
        print(
            table(
                [
                    {
                        "ratio": f"spacefold measure (this tree) / bench_protocol.py at {args.base}, time per path",
                        "median": statistics.median(per_path),
                        "each round": " ".join(f"{r:.2f}" for r in per_path),
                        f"{args.base} paths/s": " ".join(f"{r:.0f}" for r in base_rates),
                        "1e8 paths through spacefold measure at this rate": f"{minutes:.1f} min",
                    }
                ],
                f"the command line against {args.base}'s script ({args.workers} workers, {args.base_anchors} "
                "anchors x 10,000 images), round by round",
            )
        )


if __name__ == "__main__":
    main()
