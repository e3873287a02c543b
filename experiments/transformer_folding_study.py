"""Folding in transformers: does folding grow with depth in ViTs and gated (SwiGLU) MLPs, as it
does in ReLU MLPs? (docs/transformer-folding.md)

Four families at a fixed width, depths 1 to 6, trained on MNIST:

- ``vit``: a small vision transformer: 7x7 patches (16 tokens) embedded by a 7x7 convolution
  with stride 7 into d = 32, a learned position embedding, ``depth`` pre-norm
  ``nn.TransformerEncoderLayer`` blocks (2 heads, feed-forward width 64 with an ``nn.GELU``
  module, LayerNorm, no dropout), a final LayerNorm, mean pooling over the tokens, a linear head;
- ``swiglu``: a Llama-style gated MLP: a linear embedding 784 -> 32, ``depth`` pre-norm residual
  blocks x + W_down SwiGLU(LayerNorm(x)) of 32 SwiGLU units (``spacefold.nn.SwiGLU(32, 32,
  bias=False)``: silu(x W_g) * (x W_u)), a final LayerNorm, a linear head;
- ``relu`` and ``gelu``: MLPs of ``depth`` hidden layers of 32 neurons (``spacefold.models.mlp``).

Every network is trained with Adam (lr 1e-3, batch 128, ``--epochs`` (3) epochs on the 60,000 training
images, one torch thread, seeded) and measured on one fixed set of inter-class pairs of MNIST test
images (``pair_plan(y_test, "inter-class", max_pairs=--pairs, seed=0)``, spread evenly over the 90
ordered class pairs, walked in an order shuffled with seed 0 so that every prefix is a random
subset): χ, the profile maximum, the number of regions, χ of each layer's bits alone, and whether
the walk is complete, for every path. The walk method of each family is ``--methods`` (``exact``
for ReLU, ``certified`` for GELU, ``bisect`` for the SwiGLU networks and the ViTs, whose walks are
not complete: a fold between two of its samples is not seen; the SwiGLU networks are also walked
with ``certified`` on the first ``--audit-pairs`` (50) pairs, to count what bisection missed);
``--pairs`` (1,000) for the MLPs, ``--vit-pairs`` (200) for the ViTs: a prefix of the same
shuffled order, which a later run with a larger ``--vit-pairs`` extends (the walked paths are
kept in ``models/``).

    python experiments/transformer_folding_study.py --data-dir DIR                   # train + walk, resumable
    python experiments/transformer_folding_study.py --data-dir DIR --phase pilot     # per-path walk cost
    python experiments/transformer_folding_study.py --data-dir DIR --phase report    # tables and figures only
    python experiments/transformer_folding_study.py --data-dir DIR --quick --out /tmp/tf-quick   # smoke run

Runs go in an order whose prefixes are useful: seed 0 at depths 1, 2, 4, 6 for every family, then
seed 0 at depths 3 and 5, then the other seeds in the same order. Each run leaves
``runs/<family>_d<depth>_s<seed>.json`` in ``--out`` (written atomically, with the provenance: the
spacefold version and commit, torch version, command line, pair-plan version and the hash of the
pairs walked); a finished run is skipped, so rerunning the same command resumes. Checkpoints and the
walks of an unfinished run (saved every ``--chunk`` paths) go to ``models/`` (not versioned), so an
interrupted walk resumes where it stopped.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

import spacefold as sf
import spacefold.global_folding
import spacefold.models.train
from spacefold._core.pairs import pair_plan, plan_fingerprint
from spacefold._util import atomic_write
from spacefold.data import load_mnist
from spacefold.models import mlp
from spacefold.models.train import train
from spacefold.nn import SwiGLU
from spacefold.studies.depth import run_provenance

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the report script beside this one
FAMILIES = ("vit", "swiglu", "gelu", "relu")
WIDTH = 32
VIT = {"d": 32, "heads": 2, "mlp": 64, "patch": 7}
DEFAULT_METHODS = {"vit": "bisect", "swiglu": "bisect", "gelu": "certified", "relu": "exact"}
AUDITED = ("swiglu",)  # bisection walks checked by the certified walk on the first --audit-pairs pairs
PAIR_SEED = 0
# version of this script's protocol (models, training, pair order): bump on any change
PROTOCOL = 1


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


# --------------------------------------------------------------------------- models


class ViT(nn.Module):
    """A small pre-norm vision transformer for 28x28 images given as 784 features."""

    def __init__(self, depth: int, d: int = 32, heads: int = 2, mlp: int = 64, patch: int = 7):
        super().__init__()
        self.patch = patch
        n_tokens = (28 // patch) ** 2
        self.embed = nn.Conv2d(1, d, patch, stride=patch)
        self.pos = nn.Parameter(torch.randn(1, n_tokens, d) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d, heads, mlp, dropout=0.0, activation=nn.GELU(), batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, 10)

    def forward(self, x):
        h = self.embed(x.reshape(-1, 1, 28, 28)).flatten(2).transpose(1, 2) + self.pos
        return self.head(self.norm(self.blocks(h)).mean(1))


class GatedMLP(nn.Module):
    """A Llama-style residual MLP: a linear embedding of the 784 pixels into ``width``, ``depth`` pre-norm
    blocks x + W_down SwiGLU(LayerNorm(x)) of ``width`` SwiGLU units each (no biases in the blocks, as in
    Llama), a final LayerNorm and a linear head."""

    def __init__(self, depth: int, width: int = WIDTH, d_in: int = 784):
        super().__init__()
        self.embed = nn.Linear(d_in, width)
        self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(depth))
        self.layers = nn.ModuleList(SwiGLU(width, width, bias=False) for _ in range(depth))
        self.down = nn.ModuleList(nn.Linear(width, width, bias=False) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, 10)

    def forward(self, x):
        x = self.embed(x)
        for norm, layer, down in zip(self.norms, self.layers, self.down):
            x = x + down(layer(norm(x)))
        return self.head(self.norm(x))


class CertifiableGatedMLP(nn.Module):
    """The same function as a :class:`GatedMLP` (its own modules), written with modules the certified walk
    encloses: each unit's output silu(x W_g) * (x W_u) goes through an ``nn.Hardtanh(-1e30, 1e30)``, the
    identity on every value a network of this size produces, whose bit [output > 0] is the unit's bit
    (spacefold.nn: [unit output > 0]). Walked with ``layers=`` :attr:`bits`, so that the gate's SiLU adds
    no bits of its own; :func:`check_twin` checks the outputs and patterns against those of the original."""

    def __init__(self, g: GatedMLP):
        super().__init__()
        self.embed, self.norms, self.down, self.norm, self.head = g.embed, g.norms, g.down, g.norm, g.head
        self.gate = nn.ModuleList(layer.gate for layer in g.layers)
        self.up = nn.ModuleList(layer.up for layer in g.layers)
        self.silu = nn.ModuleList(nn.SiLU() for _ in g.layers)
        self.bit = nn.ModuleList(nn.Hardtanh(-1e30, 1e30) for _ in g.layers)
        self.bits = [f"bit.{k}" for k in range(len(g.layers))]

    def forward(self, x):
        x = self.embed(x)
        for norm, gate, up, silu, bit, down in zip(self.norms, self.gate, self.up, self.silu, self.bit, self.down):
            h = norm(x)
            x = x + down(bit(silu(gate(h)) * up(h)))
        return self.head(self.norm(x))


def check_twin(model: GatedMLP, twin: CertifiableGatedMLP, x: torch.Tensor) -> None:
    """Raise unless the twin has the model's outputs and bit patterns on ``x``."""
    with torch.no_grad():
        same_out = torch.allclose(model(x), twin(x), rtol=0, atol=0)
    p1 = sf.activation_patterns(model, x)
    p2 = sf.activation_patterns(twin, x, layers=twin.bits)
    if not same_out or not torch.equal(p1, p2):
        raise RuntimeError("the certifiable twin of the SwiGLU network differs from it")


def build(family: str, depth: int, seed: int, width: int = WIDTH) -> nn.Module:
    """The network of ``family`` at ``depth``, initialised from ``seed`` (the global RNG is restored)."""
    if family in ("relu", "gelu"):
        return mlp([width] * depth, 784, 10, activation=family, seed=seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if family == "vit":
            return ViT(depth, **VIT)
        if family == "swiglu":
            return GatedMLP(depth, width)
    raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- pairs


def test_pairs(y_test: torch.Tensor, n_pairs: int):
    """The study's pairs: the inter-class plan of ``n_pairs`` pairs (seed 0), in an order shuffled with
    seed 0 (so that every prefix is a random subset of the class pairs). Returns starts, ends, their
    labels, and the plan's fingerprint."""
    plan = pair_plan(y_test, "inter-class", max_pairs=n_pairs, seed=PAIR_SEED)
    i, j = plan.indices()
    perm = torch.randperm(len(i), generator=torch.Generator().manual_seed(PAIR_SEED))
    return i[perm], j[perm], plan_fingerprint(plan), perm


def prefix_hash(i: torch.Tensor, j: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in (i, j):
        h.update(t.to(torch.int64).contiguous().numpy().astype("<i8").tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- one run


def pack(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")


def unpack(s: str, dtype) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype=dtype)


def run_name(family: str, depth: int, seed: int) -> str:
    return f"{family}_d{depth}_s{seed}"


def settings_of(args, family: str, depth: int, seed: int) -> dict:
    return {
        "family": family,
        "depth": depth,
        "seed": seed,
        "width": WIDTH,
        "vit": VIT if family == "vit" else None,
        "epochs": args.epochs,
        "n_train": args.n_train,
        "lr": 1e-3,
        "batch_size": 128,
        "method": args.method_of[family],
        "n_pairs": args.vit_pairs if family == "vit" else args.pairs,
        "plan_pairs": args.pairs,
        "pair_seed": PAIR_SEED,
        "protocol": PROTOCOL,
        **({"audit_pairs": args.audit_pairs} if family in AUDITED and args.method_of[family] == "bisect" else {}),
    }


def walk_key(cfg: dict) -> str:
    """The settings that decide a run's walks, less the number of pairs (a longer walk extends a shorter one:
    its pairs are a prefix of the same order)."""
    return json.dumps({k: v for k, v in cfg.items() if k != "n_pairs"}, sort_keys=True)


@torch.no_grad()
def accuracy(model: nn.Module, x, y) -> float:
    model.eval()
    out = torch.cat([model(x[k : k + 2000]) for k in range(0, x.shape[0], 2000)])
    return float((out.argmax(1) == y).double().mean())


def get_model(data, cfg: dict, models: Path, log=log) -> tuple[nn.Module, dict]:
    """The trained network of ``cfg``: read from its checkpoint (weights only) or trained and saved."""
    name = run_name(cfg["family"], cfg["depth"], cfg["seed"])
    ckpt = models / f"{name}.pt"
    model = build(cfg["family"], cfg["depth"], cfg["seed"])
    if ckpt.is_file():
        blob = torch.load(ckpt, weights_only=True)
        if blob["settings"] == {k: cfg[k] for k in blob["settings"]}:
            model.load_state_dict(blob["state"])
            return model.eval(), blob["train"]
        log(f"{name}: the checkpoint was trained with other settings; training again")
    x, y = data.x_train[: cfg["n_train"]], data.y_train[: cfg["n_train"]]
    t0, c0 = time.perf_counter(), time.process_time()
    res = train(model, x, y, epochs=cfg["epochs"], lr=cfg["lr"], batch_size=cfg["batch_size"], seed=cfg["seed"])
    tr = {
        "train_accuracy": float(res.train_accuracy[-1]) if res.train_accuracy else float("nan"),
        "final_loss": float(res.loss[-1]) if res.loss else float("nan"),
        "test_accuracy": accuracy(model, data.x_test, data.y_test),
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": time.process_time() - c0,
    }
    keys = ("family", "depth", "seed", "width", "epochs", "n_train", "lr", "batch_size", "protocol")
    models.mkdir(parents=True, exist_ok=True)
    with atomic_write(ckpt, "wb") as fh:
        torch.save({"state": model.state_dict(), "settings": {k: cfg[k] for k in keys}, "train": tr}, fh)
    log(f"{name}: trained {cfg['epochs']} epochs, test accuracy {tr['test_accuracy']:.4f} ({tr['seconds']:.0f} s)")
    return model.eval(), tr


def walk_chunk(model, x1, x2, method: str):
    """Walk the segments ``x1[k] -> x2[k]``; per path χ, profile maximum, regions, completeness, and
    χ of each layer's bits alone (a SwiGLU network is walked by the certified walk through its
    :class:`CertifiableGatedMLP`, its layers named ``layers.k`` as in the original)."""
    layers = None
    if method == "certified" and isinstance(model, GatedMLP):
        twin = CertifiableGatedMLP(model).eval()
        check_twin(model, twin, torch.cat([x1[:8], x2[:8], (x1[:8] + x2[:8]) / 2]))
        model, layers = twin, twin.bits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # incomplete certified paths are counted from fb.complete
        # a ViT one path at a time: the default chunk of a deep ViT's bisection walks held 13 GB for 20 paths
        fb = sf.folding_batch(
            model,
            x1,
            x2,
            method=method,
            per_layer=True,
            workers=1,
            layers=layers,
            batch_size=1 if isinstance(model, ViT) else None,
        )
    per_layer = {k.replace("bit.", "layers.") if layers else k: v for k, v in (fb.per_layer or {}).items()}
    comp = fb.complete if fb.complete is not None else torch.full((len(fb),), method == "exact")
    return {
        "chi": fb.chi.double().numpy(),
        "max_profile": fb.max_profile.double().numpy(),
        "n_regions": fb.n_regions.numpy().astype(np.int64),
        "complete": comp.numpy().astype(bool),
        "per_layer": {k: v.double().numpy() for k, v in per_layer.items()},
    }


def run_one(data, args, family: str, depth: int, seed: int, log=log) -> dict:
    out = Path(args.out)
    name = run_name(family, depth, seed)
    path = out / "runs" / f"{name}.json"
    cfg = settings_of(args, family, depth, seed)
    if path.is_file():
        rec = json.loads(path.read_text())
        if rec["settings"] == cfg:
            return rec
        if walk_key(rec["settings"]) != walk_key(cfg) or rec["settings"]["n_pairs"] > cfg["n_pairs"]:
            raise SystemExit(f"{path} was made with other settings ({rec['settings']}); use another --out")
        log(f"{name}: extending the walk from {rec['settings']['n_pairs']} to {cfg['n_pairs']} pairs")
    model, tr = get_model(data, cfg, out / "models", log=log)
    i, j, fp, _ = test_pairs(data.y_test, args.pairs)
    n = cfg["n_pairs"]
    i, j = i[:n], j[:n]
    # every walked path is kept here (not versioned), so that a later run with more pairs extends the walk
    partial = out / "models" / f"{name}.walk.npz"
    parts: dict[str, list] = {}
    done = 0
    walk_seconds = walk_cpu = 0.0
    if partial.is_file():
        z = np.load(partial, allow_pickle=False)
        if str(z["key"]) == walk_key(cfg):
            done = min(int(z["done"]), n)
            walk_seconds, walk_cpu = float(z["walk_seconds"]), float(z["walk_cpu"])
            parts = {k: [z[k][:done]] for k in z.files if k not in ("key", "done", "walk_seconds", "walk_cpu")}
            walk_seconds *= done / max(int(z["done"]), 1)
            walk_cpu *= done / max(int(z["done"]), 1)
    x = data.x_test
    while done < n:
        stop = min(n, done + args.chunk)
        t0, c0 = time.perf_counter(), time.process_time()
        w = walk_chunk(model, x[i[done:stop]], x[j[done:stop]], cfg["method"])
        walk_seconds += time.perf_counter() - t0
        walk_cpu += time.process_time() - c0
        for k in ("chi", "max_profile", "n_regions", "complete"):
            parts.setdefault(k, []).append(w[k])
        for k, v in w["per_layer"].items():
            parts.setdefault("layer:" + k, []).append(v)
        done = stop
        with atomic_write(partial, "wb") as fh:
            np.savez(
                fh,
                key=np.array(walk_key(cfg)),
                done=np.array(done),
                walk_seconds=np.array(walk_seconds),
                walk_cpu=np.array(walk_cpu),
                **{k: np.concatenate(v) for k, v in parts.items()},
            )
        log(
            f"{name}: walked {done}/{n} paths ({walk_seconds / done:.2f} s/path, {walk_cpu / done:.2f} s CPU, "
            f"{cfg['method']})"
        )
    audit = None
    if cfg.get("audit_pairs"):  # the certified walk of the first pairs, against the bisection walks of the same
        k = min(cfg["audit_pairs"], n)
        c0 = time.process_time()
        a = walk_chunk(model, x[i[:k]], x[j[:k]], "certified")
        b_regions = np.concatenate(parts["n_regions"])[:k]
        b_chi = np.concatenate(parts["chi"])[:k]
        audit = {
            "n_paths": k,
            "cpu_seconds_per_path": (time.process_time() - c0) / k,
            "certified_complete": pack(np.packbits(a["complete"])),
            "certified_chi": pack(a["chi"].astype(np.float32)),
            "certified_regions": pack(a["n_regions"].astype(np.int32)),
            "share_more_regions": float((a["n_regions"] > b_regions).mean()),
            "share_chi_differs": float((np.abs(a["chi"] - b_chi) > 1e-6).mean()),
            "max_abs_chi_difference": float(np.abs(a["chi"] - b_chi).max()),
            "share_certified_complete": float(a["complete"].mean()),
        }
        log(
            f"{name}: audit of {k} paths: certified found more regions on {audit['share_more_regions']:.2f}, "
            f"complete {audit['share_certified_complete']:.2f}, max |Δχ| {audit['max_abs_chi_difference']:.3f}"
        )
    arr = {k: np.concatenate(v) for k, v in parts.items()}
    chi = arr["chi"]
    nz = chi[chi > 0]
    mp = arr["max_profile"]
    layers = sorted(
        (k[len("layer:") :] for k in arr if k.startswith("layer:")), key=lambda k: list(arr).index("layer:" + k)
    )
    rec = {
        "name": name,
        "settings": cfg,
        "n_params": n_params(model),
        **tr,
        "phi": float(np.median(nz)) if nz.size else 0.0,
        "phi_max": float(np.median(mp[mp > 0])) if (mp > 0).any() else 0.0,
        "fraction_folded": float((chi > 0).mean()),
        "mean_regions": float(arr["n_regions"].mean()),
        "share_complete": float(arr["complete"].mean()),
        "n_paths": int(n),
        "walk_seconds": walk_seconds,
        "seconds_per_path": walk_seconds / n,
        "walk_cpu_seconds": walk_cpu,
        "cpu_seconds_per_path": walk_cpu / n,
        "pairs": {"plan": fp, "order_seed": PAIR_SEED, "prefix": n, "prefix_sha256": prefix_hash(i, j)},
        "layers": layers,
        "audit": audit,
        "per_path": {
            "chi": pack(chi.astype(np.float32)),
            "max_profile": pack(mp.astype(np.float32)),
            "n_regions": pack(arr["n_regions"].astype(np.int32)),
            "complete": pack(np.packbits(arr["complete"])),
            "per_layer": {k: pack(arr["layer:" + k].astype(np.float32)) for k in layers},
        },
        "provenance": {**run_provenance(), "protocol": PROTOCOL, "threads": torch.get_num_threads()},
    }
    (out / "runs").mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as fh:
        json.dump(rec, fh)
    log(
        f"{name}: acc {tr['test_accuracy']:.4f} phi {rec['phi']:.4f} folded {rec['fraction_folded']:.3f} "
        f"complete {rec['share_complete']:.3f} ({walk_seconds:.0f} s walking)"
    )
    return rec


def read_per_path(rec: dict) -> dict:
    """A run's per-path arrays: chi, max_profile, n_regions, complete and per_layer (layer -> chi)."""
    p = rec["per_path"]
    n = rec["n_paths"]
    return {
        "chi": unpack(p["chi"], np.float32).astype(float),
        "max_profile": unpack(p["max_profile"], np.float32),
        "n_regions": unpack(p["n_regions"], np.int32),
        "complete": np.unpackbits(unpack(p["complete"], np.uint8))[:n].astype(bool),
        "per_layer": {k: unpack(v, np.float32).astype(float) for k, v in p["per_layer"].items()},
    }


def read_runs(out: Path) -> list[dict]:
    return [json.loads(q.read_text()) for q in sorted((Path(out) / "runs").glob("*.json"))]


def plan(families, depths, seeds) -> list[tuple[str, int, int]]:
    """``(family, depth, seed)`` in the order run: per seed, depths 1, 2, 4, 6 (every family: ReLU, GELU, SwiGLU,
    ViT), then the others."""
    first = [d for d in (1, 2, 4, 6) if d in depths]
    order = first + [d for d in depths if d not in first]
    fams = [f for f in FAMILIES[::-1] if f in families]  # the cheap MLPs first, then the ViT of that depth
    return [(f, d, s) for s in seeds for d in order for f in fams]


# --------------------------------------------------------------------------- pilot


def pilot(data, args) -> dict:
    """Per-path walk cost of each family and method on 20 pairs, networks trained ``--pilot-epochs``
    epochs on the first 10,000 training images (the costs grow with training: regions multiply)."""
    i, j, _, _ = test_pairs(data.y_test, args.pairs)
    i, j = i[: args.pilot_pairs], j[: args.pilot_pairs]
    x1, x2 = data.x_test[i], data.x_test[j]
    rows = []
    for family, depth, methods in args.pilot_plan:
        model = build(family, depth, 0)
        c0 = time.process_time()
        train(model, data.x_train[:10000], data.y_train[:10000], epochs=args.pilot_epochs, seed=0)
        t_train = time.process_time() - c0
        acc = accuracy(model, data.x_test, data.y_test)
        model.eval()
        for method in methods:
            # the certified walk of a ViT, and any walk of a 6-block one, cost an order of magnitude more:
            # a quarter of the pairs
            slow = family == "vit" and (method == "certified" or depth >= 6)
            n = max(1, len(i) // 4) if slow else len(i)
            t0, c0 = time.perf_counter(), time.process_time()
            w = walk_chunk(model, x1[:n], x2[:n], method)
            s, c = time.perf_counter() - t0, time.process_time() - c0
            row = {
                "family": family,
                "depth": depth,
                "method": method,
                "paths": n,
                "seconds_per_path": s / n,
                "cpu_seconds_per_path": c / n,
                "mean_regions": float(w["n_regions"].mean()),
                "share_complete": float(w["complete"].mean()),
                "phi": float(np.median(w["chi"][w["chi"] > 0])) if (w["chi"] > 0).any() else 0.0,
                "train_cpu_seconds_per_10k": t_train / args.pilot_epochs,
                "test_accuracy": acc,
            }
            rows.append(row)
            log(
                f"pilot {family} d{depth} {method}: {row['seconds_per_path']:.3f} s/path "
                f"({row['cpu_seconds_per_path']:.3f} s CPU), "
                f"{row['mean_regions']:.1f} regions, complete {row['share_complete']:.2f}, "
                f"train {row['train_cpu_seconds_per_10k']:.1f} s CPU per 10k images"
            )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if (out / "pilot.json").is_file():  # rows of another pilot run are kept unless measured again
        new = {(r["family"], r["depth"], r["method"]) for r in rows}
        old = json.loads((out / "pilot.json").read_text())["rows"]
        rows = [r for r in old if (r["family"], r["depth"], r["method"]) not in new] + rows
    rec = {"rows": rows, "provenance": run_provenance(), "pilot_epochs": args.pilot_epochs}
    with atomic_write(out / "pilot.json") as fh:
        json.dump(rec, fh, indent=1)
    return rec


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True, help="directory with the four MNIST IDX files")
    p.add_argument("--out", default=None, help="results folder (default experiments/results/transformer-folding)")
    p.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES))
    p.add_argument("--depths", nargs="+", type=int, default=[1, 2, 3, 4, 5, 6])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--n-train", type=int, default=60000, help="the first N training images")
    p.add_argument("--pairs", type=int, default=1000, help="inter-class test pairs per network")
    p.add_argument(
        "--vit-pairs",
        type=int,
        default=200,
        help="pairs per ViT (a prefix of the same order, at "
        "most --pairs; default 200: a larger value later extends the finished walks)",
    )
    p.add_argument(
        "--methods",
        nargs="+",
        default=[],
        metavar="FAMILY=METHOD",
        help=f"walk method per family (default {DEFAULT_METHODS})",
    )
    p.add_argument(
        "--audit-pairs",
        type=int,
        default=50,
        help=f"families {AUDITED} walked with bisect: the "
        "certified walk of their first N pairs too, to count what bisection missed (0: none)",
    )
    p.add_argument("--chunk", type=int, default=50, help="paths walked between two saves of an unfinished walk")
    p.add_argument("--phase", choices=["run", "report", "pilot", "plan"], default="run")
    p.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: depths 1 and 2, seed 0, 1 epoch on 2,000 images, 6 pairs (needs --out)",
    )
    p.add_argument("--pilot-pairs", type=int, default=20)
    p.add_argument("--pilot-epochs", type=int, default=1)
    p.add_argument("--pilot-depths", nargs="+", type=int, default=[1, 3, 6])
    args = p.parse_args(argv)
    if args.quick:
        if args.out is None:
            p.error("--quick needs --out (a folder of its own, not the study's results)")
        args.depths, args.seeds, args.epochs, args.n_train, args.pairs = [1, 2], [0], 1, 2000, 6
        args.vit_pairs, args.chunk, args.pilot_pairs, args.audit_pairs = 6, 4, 4, 3
    for name in ("epochs", "n_train", "pairs", "chunk", "pilot_pairs", "pilot_epochs"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if any(d < 1 for d in args.depths) or any(s < 0 for s in args.seeds):
        p.error(f"--depths must be >= 1 and --seeds >= 0, got {args.depths} and {args.seeds}")
    args.vit_pairs = min(args.vit_pairs or args.pairs, args.pairs)
    args.method_of = dict(DEFAULT_METHODS)
    for m in args.methods:
        fam, _, meth = m.partition("=")
        if fam not in FAMILIES or meth not in ("exact", "bisect", "certified"):
            p.error(
                f"--methods takes FAMILY=METHOD with FAMILY in {FAMILIES} and METHOD exact, bisect or "
                f"certified, got {m!r}"
            )
        if meth == "exact" and fam != "relu":
            p.error(f"--methods: the exact walk needs a piecewise-linear network, and {fam} is not, got {m!r}")
        args.method_of[fam] = meth
    args.out = args.out or str(ROOT / "experiments" / "results" / "transformer-folding")
    torch.set_num_threads(1)
    torch.backends.mha.set_fastpath_enabled(False)  # the hooks must see the activations of every walk
    run_provenance()  # taken now: the runs record the code this process started with
    runs = plan(args.families, args.depths, args.seeds)
    if args.phase == "plan":
        for f, d, s in runs:
            print(f"{run_name(f, d, s)}  {n_params(build(f, d, s))} parameters  {args.method_of[f]}")
        return 0
    out = Path(args.out)
    if args.phase == "report":
        from transformer_folding_report import report

        report(out, read_runs(out), args)
        return 0
    data = load_mnist(args.data_dir)
    if args.phase == "pilot":
        both = {
            "vit": ("certified", "bisect"),
            "swiglu": ("certified", "bisect"),
            "gelu": ("certified", "bisect"),
            "relu": ("exact",),
        }
        # the certified walk of a deep ViT is not affordable (13 times bisection already at depth 1)
        deep = dict(both, vit=("bisect",))
        args.pilot_plan = [
            (f, d, both[f] if d == 1 else deep[f])
            for f in args.families
            for d in ((1,) if args.quick else args.pilot_depths)
        ]
        pilot(data, args)
        return 0
    log(
        f"data {data.describe()}, spacefold {sf.__version__}, {len(runs)} runs, methods {args.method_of}, "
        f"{args.pairs} pairs ({args.vit_pairs} for the ViTs)"
    )
    for k, (f, d, s) in enumerate(runs):
        run_one(data, args, f, d, s)
        log(f"run {k + 1}/{len(runs)} ({run_name(f, d, s)}) finished")
    if not args.quick:
        from transformer_folding_report import report

        report(out, read_runs(out), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
