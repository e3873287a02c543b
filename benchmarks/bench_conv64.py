"""The exact walk's operations on CNN feature maps, float32 against float64, and the float64 convolution of the walk.

For every distinct convolution, batch norm (eval), pooling of ``bench_cnn.py``'s VGG-style net and of
ResNet-18 at 32x32 as ``bench_resnet.py`` builds it (shapes read from one forward pass with hooks), plus a
few convolutions with 3x3 and 4x4 output maps (where the float64 path switches), on ``--rows`` breakpoint
rows each (random Gaussian inputs), and the interpolation of new rows (``torch.lerp`` of two gathered rows):

- torch in float32 and in float64, and their ratio;
- for each convolution, ``spacefold._core.walk.exact.conv64.conv2d`` in float64 (the path it takes by shape,
  and each of its paths forced: ``dense`` where the lowered matrix is at most 64 MiB), with its largest
  difference from ``F.conv2d`` in units of ``2^-52 sum(|w| |x|)`` (the float64 round-off of a dot product,
  relative to the sum of absolute terms).

Repeats are interleaved (every variant once per round, ``--repeats`` rounds); times are medians.
One torch thread (set ``OMP_NUM_THREADS=1`` as well).

    OMP_NUM_THREADS=1 python benchmarks/bench_conv64.py --rows 256,1024 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from _common import load_condition, table
from bench_cnn import vgg_cnn
from bench_resnet import resnet18
from torch import nn

from spacefold._core.walk.exact import conv64

# convolutions with 3x3 and 4x4 outputs (C, H, C_out, kernel, stride, padding): ResNet stages on larger inputs
EXTRA = [(128, 3, 128, 3, 1, 1), (256, 3, 256, 3, 1, 1), (256, 6, 512, 3, 2, 1), (128, 4, 256, 3, 1, 1)]


def shapes(net: nn.Module, name: str, x: torch.Tensor) -> list[tuple[str, nn.Module, tuple[int, ...]]]:
    """(net name, module, input shape without the batch) of every distinct conv / batch norm / pooling."""
    seen: dict = {}

    def hook(mod, inputs, output):
        key = (repr(mod), tuple(inputs[0].shape[1:]))
        seen.setdefault(key, (name, mod, tuple(inputs[0].shape[1:])))

    kinds = (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)
    hs = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, kinds)]
    with torch.no_grad():
        net(x)
    for h in hs:
        h.remove()
    return list(seen.values())


def timed_round(fns: dict, times: dict) -> dict:
    outs = {}
    for k, fn in fns.items():
        t0 = time.perf_counter()
        outs[k] = fn()
        times[k].append(time.perf_counter() - t0)
    return outs


def describe(mod: nn.Module, shape) -> str:
    if isinstance(mod, nn.Conv2d):
        return (
            f"conv {shape[0]}x{shape[1]}x{shape[2]} -> {mod.out_channels}, k{mod.kernel_size[0]} "
            f"s{mod.stride[0]} p{mod.padding[0]}"
        )
    return f"{type(mod).__name__} {shape[0]}x{shape[1]}x{shape[2]}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="256,1024", help="comma separated batch sizes (breakpoint rows)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--nets", default="vgg,resnet,extra", help="comma separated: vgg, resnet, extra")
    args = ap.parse_args()
    torch.set_num_threads(1)
    names = args.nets.split(",")
    items = []
    if "vgg" in names:
        items += shapes(vgg_cnn(0).eval(), "VGG", torch.randn(1, 3, 32, 32))
    if "resnet" in names:
        items += shapes(resnet18(0)[0], "ResNet-18", torch.randn(1, 3, 32, 32))
    if "extra" in names:
        torch.manual_seed(0)
        for c, h, co, k, s, p in EXTRA:
            items.append(("extra", nn.Conv2d(c, co, k, s, p), (c, h, h)))
    print(f"# bench_conv64: {load_condition()}; rows {args.rows}; {args.repeats} interleaved repeats, medians")
    rows_out, conv_rows = [], []
    g = torch.Generator().manual_seed(0)
    for n in [int(r) for r in args.rows.split(",")]:
        for net_name, mod, shape in items:
            x32 = torch.randn((n,) + shape, generator=g)
            m32 = mod.float().eval()
            m64 = _copy64(mod)
            x64 = x32.double()
            fns = {"f32": lambda: m32(x32), "f64": lambda: m64(x64)}
            if isinstance(mod, nn.Conv2d):
                a = (m64.weight, m64.bias, m64.stride, m64.padding, m64.dilation, m64.groups)
                fns["spacefold"] = lambda: conv64.conv2d(x64, *a)
                fns["gemm"] = lambda: conv64._conv_gemm(x64, *a)
                if mod.kernel_size != (1, 1):
                    fns["chunks"] = lambda: conv64._conv_chunks(x64, *a)
                if m64(x64[:1]).numel() * x64[0].numel() * 8 <= 4 * conv64._DENSE_BYTES:  # the lowered matrix
                    fns["dense"] = lambda: conv64._conv_dense(x64, *a)
            times = {k: [] for k in fns}
            with torch.no_grad():
                path = conv64._plan(x64, *a) if isinstance(mod, nn.Conv2d) else None
                for r in range(args.repeats):
                    outs = timed_round(fns, times)
                    if r == 0 and isinstance(mod, nn.Conv2d):
                        b = None if m64.bias is None else m64.bias.abs()
                        s = F.conv2d(x64.abs(), m64.weight.abs(), b, m64.stride, m64.padding, m64.dilation, m64.groups)
                        ours = [k for k in fns if k not in ("f32", "f64")]
                        err = max(((outs[k] - outs["f64"]).abs() / s).max().item() for k in ours)
                    del outs
            med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
            row = {
                "net": net_name,
                "op": describe(mod, shape),
                "rows": n,
                "f32 ms": med["f32"],
                "f64 ms": med["f64"],
                "f64 / f32": med["f64"] / med["f32"],
            }
            rows_out.append(row)
            if isinstance(mod, nn.Conv2d):
                conv_rows.append(
                    {
                        **{k: row[k] for k in ("net", "op", "rows")},
                        "path": path,
                        "torch f64 ms": med["f64"],
                        "spacefold f64 ms": med["spacefold"],
                        "speed-up": med["f64"] / med["spacefold"],
                        "gemm": med["f64"] / med["gemm"],
                        "chunks": med["f64"] / med["chunks"] if "chunks" in med else "-",
                        "dense": med["f64"] / med["dense"] if "dense" in med else "-",
                        "spacefold / f32": med["spacefold"] / med["f32"],
                        "max err (u S)": err / 2**-52,
                    }
                )
            print("  " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
        # the interpolation of new rows at one map of each net's size
        for shape in [(16, 32, 32), (64, 8, 8)]:
            x32 = torch.randn((n,) + shape, generator=g)
            x64 = x32.double()
            i = torch.randint(0, n, (n // 2,), generator=g)
            j = torch.randint(0, n, (n // 2,), generator=g)
            s32 = torch.rand(n // 2, 1, 1, 1, generator=g)
            s64 = s32.double()
            fns = {
                "f32": lambda: torch.lerp(x32.index_select(0, i), x32.index_select(0, j), s32),
                "f64": lambda: torch.lerp(x64.index_select(0, i), x64.index_select(0, j), s64),
            }
            times = {k: [] for k in fns}
            for _ in range(args.repeats):
                timed_round(fns, times)
            med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
            rows_out.append(
                {
                    "net": "-",
                    "op": f"interpolation {shape[0]}x{shape[1]}x{shape[2]}, {n // 2} new rows",
                    "rows": n,
                    "f32 ms": med["f32"],
                    "f64 ms": med["f64"],
                    "f64 / f32": med["f64"] / med["f32"],
                }
            )
    print(table(rows_out, "torch, float32 against float64"))
    print(table(conv_rows, "float64 convolutions: torch's against conv64.conv2d (speed-up: torch's time / ours)"))
    print(f"\n# {load_condition()} at the end")


def _copy64(mod: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(mod).double().eval()


if __name__ == "__main__":
    main()
