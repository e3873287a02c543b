"""Exact regions of a 2-D plane: spacefold._core.plane vs regioncam's 2-D Regioncam, on the same planes.

Network: a 784-WIDTHxDEPTH-10 ReLU MLP with PyTorch's default random weights (seed 0). Planes:
through three random MNIST test images (seed 0), the rectangle of ``plane_through`` (the three
points' bounding box grown by 15%). regioncam gets the same rectangle: the plane's affine map is
folded into the first Linear layer (a 2-input network on [-1, 1]^2), the cheapest form for it.
spacefold is timed three ways on the 784-d model: as given (an ``nn.Sequential`` starting with
Linear, into which ``plane_regions`` folds the plane by itself), wrapped in another module (the
general path for any ``nn.Module``: every vertex goes through the full network once), and as
given with NumPy operations instead of the compiled cut (``kernel=False``). All count the
regions; the ratios are regioncam's time over spacefold's, median of the per-repeat ratios,
all measured in this run, interleaved repeat by repeat.

    .venv/bin/python benchmarks/bench_plane.py --planes 5 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _common import load_condition, load_mnist, random_mlp, table
from torch import nn

from spacefold._core.plane import plane_regions, plane_through


def folded_net(net: nn.Sequential, plane) -> nn.Sequential:
    """``net`` restricted to ``plane``, as a 2-input network on [-1, 1]^2 (float64)."""
    u0, u1, v0, v1 = plane.bounds
    c = torch.tensor([(u0 + u1) / 2, (v0 + v1) / 2], dtype=torch.float64)
    h = torch.tensor([(u1 - u0) / 2, (v1 - v0) / 2], dtype=torch.float64)
    first = net[0]
    w = first.weight.double() @ plane.basis.reshape(2, -1).t()  # (out, 2)
    b = first.bias.double() + first.weight.double() @ plane.origin.reshape(-1) + w @ c
    lin = nn.Linear(2, w.shape[0]).double()
    with torch.no_grad():
        lin.weight.copy_(w * h)
        lin.bias.copy_(b)
    rest = [m.double() for m in list(net)[1:]]
    return nn.Sequential(lin, *rest).eval()


class Wrapped(nn.Module):
    """The model inside another module: plane_regions takes its general path."""

    def __init__(self, body):
        super().__init__()
        self.body = body

    def forward(self, x):
        return self.body(x)


def regioncam_count(net2: nn.Sequential) -> int:
    import regioncam

    cam = regioncam.Regioncam(size=1.0)
    cam.add(net2.float())
    return cam.num_faces


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--planes", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--width", type=int, default=64)
    args = ap.parse_args()
    try:
        import regioncam
    except ImportError:
        print("regioncam is not installed (pip install regioncam): nothing to compare, skipped")
        return
    torch.set_num_threads(1)
    x, _ = load_mnist("test")
    net = random_mlp([args.width] * args.depth, seed=0).net  # the nn.Sequential inside spacefold.models.MLP
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, x.shape[0], (args.planes, 3), generator=g)
    print(
        f"# {args.planes} planes through 3 MNIST test images, 784-{args.width}x{args.depth}-10 random MLP; "
        f"regioncam {getattr(regioncam, '__version__', '0.5.2')}, 1 thread each"
    )
    print(f"# {load_condition()}")
    plane_regions(net, plane_through(x[0], x[1], x[2]))  # warm-up: compiles (or loads) the Numba kernel
    rows = []
    for k, (a, b, c) in enumerate(idx.tolist()):
        plane = plane_through(x[a], x[b], x[c])
        net2 = folded_net(net, plane)
        runs = {
            "as given": lambda: plane_regions(net, plane),
            "general path": lambda: plane_regions(Wrapped(net), plane),
            "NumPy cut": lambda: plane_regions(net, plane, kernel=False),
        }
        times = {name: [] for name in runs}
        ratios = {name: [] for name in runs}
        t_rc, counts = [], {}
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            n_rc = regioncam_count(net2)
            t = time.perf_counter() - t0
            t_rc.append(t)
            for name, fn in runs.items():
                t0 = time.perf_counter()
                counts[name] = fn().n_regions
                dt = time.perf_counter() - t0
                times[name].append(dt)
                ratios[name].append(t / dt)
        row = {
            "plane": k,
            "regions regioncam": n_rc,
            "regions spacefold": "/".join(str(counts[n]) for n in runs),
            "regioncam s": statistics.median(t_rc),
        }
        for name in runs:
            row[f"spacefold {name} s"] = statistics.median(times[name])
            row[f"regioncam / {name}"] = statistics.median(ratios[name])
        rows.append(row)
    summary = {
        "plane": "median",
        "regions regioncam": statistics.median(r["regions regioncam"] for r in rows),
        "regions spacefold": "-",
    }
    for key in rows[0]:
        if key.endswith(" s") or key.startswith("regioncam /"):
            summary[key] = statistics.median(r[key] for r in rows)
    print(table(rows + [summary]))


if __name__ == "__main__":
    main()
