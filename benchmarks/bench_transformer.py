"""Walks of many segments in shared forward passes against one segment at a time, and against a
dense grid of the same resolution, on small transformers and a SwiGLU MLP (RESULTS.md, section
"Transformer walks batched").

Models, on scikit-learn's 8x8 digits (random initialisation, seed 0, eval mode, float32):

- ViT: a 4x4 convolution with stride 4 as patch embedding into 4 tokens of d = 32, a learned
  position embedding, ``--blocks`` ``nn.TransformerEncoderLayer`` blocks (4 heads, feed-forward
  width 64, ``activation="gelu"``, the functional GELU), mean pooling, a linear head.
- SwiGLU MLP: a linear map 64 -> 32, three Llama-style blocks ``SwiGLU(32, 64)`` then
  ``nn.Linear(64, 32)``, a linear head.

For each model and each of ``bisect`` (its default start grid of 1025 samples, resolution
2^-10 in t) and ``certified``: the same segments between random test digits walked by one call of
``folding_batch`` for all of them ("batched"), by one call per segment ("per-path loop", the
same public call), and by ``method="uniform"`` with 1024 steps in one call (the dense grid at
bisection's start resolution). The three are interleaved repeat by repeat; the table gives
paths per second (median over repeats) and the median of the per-repeat ratios, and checks that
the batched walks equal the per-path loop's (same χ and regions on every segment).

    python benchmarks/bench_transformer.py --paths 16 --certified-paths 4 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_condition, table

from spacefold._core.folding import folding_batch
from spacefold.data import load_digits
from spacefold.nn import SwiGLU


class ViT(nn.Module):
    def __init__(self, d: int = 32, blocks: int = 2, patch: int = 4, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.embed = nn.Conv2d(1, d, patch, stride=patch)
        self.pos = nn.Parameter(torch.randn(1, (8 // patch) ** 2, d) * 0.1)
        layer = nn.TransformerEncoderLayer(d, 4, 2 * d, dropout=0.0, activation="gelu", batch_first=True)
        self.enc = nn.TransformerEncoder(layer, blocks, enable_nested_tensor=False)
        self.head = nn.Linear(d, 10)

    def forward(self, x):
        h = self.embed(x.reshape(-1, 1, 8, 8)).flatten(2).transpose(1, 2) + self.pos
        return self.head(self.enc(h).mean(1))


def swiglu_mlp(d: int = 32, hidden: int = 64, blocks: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Linear(64, d)]
    for _ in range(blocks):
        layers += [SwiGLU(d, hidden), nn.Linear(hidden, d)]
    return nn.Sequential(*layers, nn.Linear(d, 10))


def pairs(x: torch.Tensor, n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    i = torch.randint(0, x.shape[0], (n,), generator=g)
    j = torch.randint(0, x.shape[0], (n,), generator=g)
    return x[i], x[j]


def run(model, x1, x2, method: str, repeats: int) -> dict:
    n = x1.shape[0]
    kinds = {
        "batched": lambda: folding_batch(model, x1, x2, method=method),
        "loop": lambda: [folding_batch(model, x1[i : i + 1], x2[i : i + 1], method=method) for i in range(n)],
        "grid": lambda: folding_batch(model, x1, x2, method="uniform", steps=1024),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in kinds.values():  # one-time set-up (traces, critical points of the functions) before timing
            folding_batch(model, x1[:1], x2[:1], method=method)
        times: dict[str, list[float]] = {k: [] for k in kinds}
        out = {}
        for _ in range(repeats):
            for k, f in kinds.items():
                t0 = time.perf_counter()
                out[k] = f()
                times[k].append(time.perf_counter() - t0)
    b, loop = out["batched"], out["loop"]
    same = bool(
        torch.equal(b.chi, torch.cat([f.chi for f in loop]))
        and torch.equal(b.n_regions, torch.cat([f.n_regions for f in loop]))
    )
    return {
        "paths/s batched": n / statistics.median(times["batched"]),
        "paths/s loop": n / statistics.median(times["loop"]),
        "paths/s grid 1024": n / statistics.median(times["grid"]),
        "batched / loop speed": statistics.median(lp / s for s, lp in zip(times["batched"], times["loop"])),
        "batched / grid speed": statistics.median(g / s for s, g in zip(times["batched"], times["grid"])),
        "regions/path": float(b.n_regions.double().mean()),
        "complete": f"{int(b.complete.sum())}/{n}",
        "same walks as loop": same,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--paths", type=int, default=16, help="segments walked with bisect")
    ap.add_argument("--certified-paths", type=int, default=4, help="segments walked with certified")
    ap.add_argument("--blocks", type=int, nargs="+", default=[2, 4], help="ViT depths")
    ap.add_argument("--certified-blocks", type=int, default=2, help="ViT depths up to this one walked certified")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# Transformer walks: batched against one path at a time\n\n{load_condition()}\n")
    digits = load_digits().x_test.reshape(-1, 64)
    models = [(f"ViT d=32, {b} block(s)", ViT(blocks=b).eval(), b <= args.certified_blocks) for b in args.blocks]
    models.append(("SwiGLU MLP 64-32-(SwiGLU 64 + Linear 32)x3-10", swiglu_mlp().eval(), True))
    rows = []
    for name, model, certified in models:
        for method in ("bisect", "certified") if certified else ("bisect",):
            n = args.paths if method == "bisect" else args.certified_paths
            x1, x2 = pairs(digits, n, seed=1)
            r = run(model, x1, x2, method, args.repeats)
            rows.append({"model": name, "method": method, "segments": n, **r})
            print(table(rows[-1:]), flush=True)
    print(table(rows, "All"))


if __name__ == "__main__":
    main()
