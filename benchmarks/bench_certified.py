"""The certified walk against bisection (RESULTS.md, section "Certified walk").

1. A 784-20x3-10 GELU MLP (spacefold.models.mlp, seed 0, PyTorch's default initialisation) on
   segments between random pairs of MNIST test images (``$SPACEFOLD_DATA``), or of
   scikit-learn's 8x8 digits when MNIST is absent: time of ``method="certified"`` and
   ``method="bisect"`` (defaults: tol 1e-6, n0 = 64) on the same segments, interleaved repeat
   by repeat, their ratio, the regions each finds, and the segments where bisection missed
   regions the certified walk found.
2. A gated MLP on 8x8 digits (3 blocks of 20 SwiGLU-style units silu(x W_g) * (x W_u), each
   followed by an ``nn.Tanh`` whose bit is the gate's, [unit output > 0]; random
   initialisation, seed 0): the segments where bisection misses regions the certified walk finds.
3. A small ViT-like model on 8x8 digits (patch embedding by a 4x4 convolution into 4 tokens,
   d = 32, 4 heads, 1 or 2 ``nn.TransformerEncoderLayer`` blocks with an ``nn.GELU`` module,
   mean pooling, linear head; random initialisation, seed 0): time per path and completeness.

    python benchmarks/bench_certified.py --paths 50 --vit-paths 10 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import itertools

from _common import load_condition, table

from spacefold._core.folding import folding_batch
from spacefold.data import load_digits, load_mnist
from spacefold.models import mlp


class ViT(nn.Module):
    def __init__(self, d: int = 32, blocks: int = 1, patch: int = 4, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.embed = nn.Conv2d(1, d, patch, stride=patch)
        self.pos = nn.Parameter(torch.randn(1, (8 // patch) ** 2, d) * 0.1)
        layer = nn.TransformerEncoderLayer(d, 4, 2 * d, dropout=0.0, activation=nn.GELU(), batch_first=True)
        self.enc = nn.TransformerEncoder(layer, blocks, enable_nested_tensor=False)
        self.head = nn.Linear(d, 10)

    def forward(self, x):
        h = self.embed(x.reshape(-1, 1, 8, 8)).flatten(2).transpose(1, 2) + self.pos
        return self.head(self.enc(h).mean(1))


class GatedMLP(nn.Module):
    def __init__(self, d_in: int = 64, width: int = 20, depth: int = 3, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        dims = [d_in] + [width] * depth
        self.g = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(dims))
        self.u = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(dims))
        self.act = nn.ModuleList(nn.SiLU() for _ in range(depth))
        self.bit = nn.ModuleList(nn.Tanh() for _ in range(depth))
        self.head = nn.Linear(width, 10)

    def forward(self, x):
        for g, u, a, b in zip(self.g, self.u, self.act, self.bit):
            x = b(a(g(x)) * u(x))
        return self.head(x)


def pairs(x: torch.Tensor, n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    i = torch.randint(0, x.shape[0], (n,), generator=g)
    j = torch.randint(0, x.shape[0], (n,), generator=g)
    return x[i], x[j]


def compare(model, x1, x2, repeats: int):
    times = {"bisect": [], "certified": []}
    res = {}
    with warnings.catch_warnings():  # once before timing: one-time set-up (critical points of f, f', f'')
        warnings.simplefilter("ignore")
        for method in ("bisect", "certified"):
            folding_batch(model, x1[:1], x2[:1], method=method)
    for _ in range(repeats):
        for method in ("bisect", "certified"):
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res[method] = folding_batch(model, x1, x2, method=method)
            times[method].append(time.perf_counter() - t0)
    ratios = [c / b for b, c in zip(times["bisect"], times["certified"])]
    return {m: statistics.median(v) for m, v in times.items()}, statistics.median(ratios), res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--paths", type=int, default=50)
    ap.add_argument("--vit-paths", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.backends.mha.set_fastpath_enabled(False)  # the hooks must see the activations of every walk
    print(f"# Certified walk against bisection\n\n{load_condition()}\n")

    data_dir = os.environ.get("SPACEFOLD_DATA")
    if data_dir:
        x = load_mnist(data_dir).x_test.reshape(-1, 784)
        source, d_in = "MNIST test images", 784
    else:
        x = load_digits().x_test.reshape(-1, 64)
        source, d_in = "8x8 digits (MNIST absent)", 64
    model = mlp("3x20", d_in, 10, activation="gelu", seed=0).eval()
    x1, x2 = pairs(x, args.paths)
    t, ratio, res = compare(model, x1, x2, args.repeats)
    c, b = res["certified"], res["bisect"]
    missed = int((c.n_regions > b.n_regions).sum())
    rows = [
        {
            "model": f"{d_in}-20x3-10 GELU",
            "segments": f"{args.paths} ({source})",
            "bisect s": t["bisect"],
            "certified s": t["certified"],
            "certified / bisect (median ratio)": ratio,
            "regions/path bisect": float(b.n_regions.double().mean()),
            "regions/path certified": float(c.n_regions.double().mean()),
            "paths where bisect missed regions": missed,
            "certified complete": f"{int(c.complete.sum())}/{len(c)}",
        }
    ]
    print(table(rows, "GELU MLP"))

    digits = load_digits().x_test.reshape(-1, 64)
    g1, g2 = pairs(digits, args.paths, seed=2)
    gated = GatedMLP().eval()
    t, ratio, res = compare(gated, g1, g2, args.repeats)
    c, b = res["certified"], res["bisect"]
    fewer = c.n_regions > b.n_regions
    rows = [
        {
            "model": "64-(SwiGLU 20 + Tanh)x3-10",
            "segments": f"{args.paths} (8x8 digits)",
            "bisect s": t["bisect"],
            "certified s": t["certified"],
            "certified / bisect (median ratio)": ratio,
            "regions/path bisect": float(b.n_regions.double().mean()),
            "regions/path certified": float(c.n_regions.double().mean()),
            "paths where bisect missed regions": int(fewer.sum()),
            "max chi difference": float((c.chi - b.chi).abs().max()),
            "certified complete": f"{int(c.complete.sum())}/{len(c)}",
        }
    ]
    print(table(rows, "Gated MLP (SwiGLU-style units)"))

    v1, v2 = pairs(digits, args.vit_paths, seed=1)
    rows = []
    for blocks in (1, 2):
        vit = ViT(blocks=blocks).eval()
        t, ratio, res = compare(vit, v1, v2, max(1, args.repeats - 2))
        c, b = res["certified"], res["bisect"]
        rows.append(
            {
                "model": f"ViT d=32, {blocks} block(s)",
                "segments": f"{args.vit_paths} (8x8 digits)",
                "bisect s/path": t["bisect"] / args.vit_paths,
                "certified s/path": t["certified"] / args.vit_paths,
                "certified / bisect": ratio,
                "regions/path bisect": float(b.n_regions.double().mean()),
                "regions/path certified": float(c.n_regions.double().mean()),
                "paths where bisect missed regions": int((c.n_regions > b.n_regions).sum()),
                "certified complete": f"{int(c.complete.sum())}/{len(c)}",
            }
        )
    print(table(rows, "ViT-like model on 8x8 digits"))


if __name__ == "__main__":
    main()
