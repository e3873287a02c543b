"""Exact regions of a 2-D plane: spacefold.plane vs regioncam's 2-D Regioncam, on the same planes.

Network: a 784-WIDTHxDEPTH-10 ReLU MLP with PyTorch's default random weights (seed 0). Planes:
through three random MNIST test images (seed 0), the rectangle of ``plane_through`` (the three
points' bounding box grown by 15%). regioncam gets the same rectangle: the plane's affine map is
folded into the first Linear layer (a 2-input network on [-1, 1]^2), which is also the cheapest
form for it; spacefold is timed on the 784-d model itself (its general form: every vertex goes
through the network once) and on the same 2-input network, with its compiled cut (the default)
and with NumPy operations only (``kernel=False``). All count the regions; the ratios are
regioncam's time over spacefold's, median of the per-repeat ratios, measured in this run.

    .venv/bin/python benchmarks/bench_plane.py --planes 5 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _common import load_condition, load_mnist, mlp, table
from torch import nn

from spacefold.plane import input_plane, plane_regions, plane_through


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
    net = mlp([784] + [args.width] * args.depth + [10], seed=0)
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, x.shape[0], (args.planes, 3), generator=g)
    print(f"# {args.planes} planes through 3 MNIST test images, 784-{args.width}x{args.depth}-10 random MLP; "
          f"regioncam {getattr(regioncam, '__version__', '0.5.2')}, 1 thread each")
    print(f"# {load_condition()}")
    plane_regions(net, plane_through(x[0], x[1], x[2]))  # warm-up: compiles (or loads) the Numba kernel
    rows = []
    for k, (a, b, c) in enumerate(idx.tolist()):
        plane = plane_through(x[a], x[b], x[c])
        net2 = folded_net(net, plane)
        t_sf, t_sf2, t_np, t_rc, ratios, ratios2, ratios_np = [], [], [], [], [], [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            reg = plane_regions(net, plane)
            t1 = time.perf_counter()
            reg2 = plane_regions(net2, input_plane((-1, 1, -1, 1)))
            t2 = time.perf_counter()
            n_rc = regioncam_count(net2)
            t3 = time.perf_counter()
            reg3 = plane_regions(net2, input_plane((-1, 1, -1, 1)), kernel=False)
            t4 = time.perf_counter()
            t_sf.append(t1 - t0)
            t_sf2.append(t2 - t1)
            t_rc.append(t3 - t2)
            t_np.append(t4 - t3)
            ratios.append((t3 - t2) / (t1 - t0))
            ratios2.append((t3 - t2) / (t2 - t1))
            ratios_np.append((t3 - t2) / (t4 - t3))
        assert reg3.n_regions == reg2.n_regions
        rows.append({"plane": k, "regions spacefold (784-d)": reg.n_regions, "regions spacefold (2-input)":
                     reg2.n_regions, "regions regioncam": n_rc, "spacefold 784-d s": statistics.median(t_sf),
                     "spacefold 2-input s": statistics.median(t_sf2), "regioncam s": statistics.median(t_rc),
                     "regioncam / spacefold 784-d": statistics.median(ratios),
                     "regioncam / spacefold 2-input": statistics.median(ratios2),
                     "spacefold 2-input NumPy s": statistics.median(t_np),
                     "regioncam / spacefold NumPy": statistics.median(ratios_np)})
    print(table(rows))


if __name__ == "__main__":
    main()
