"""Global folding of a small CNN on MNIST (docs/cnn-folding.md; docs/method.md, 'The global measure').

Trains a small convolutional network (conv 3x3 - ReLU - max pool 2 - conv 3x3 - ReLU - max
pool 2 - flatten - linear - ReLU - linear) with several seeds on the full MNIST training set
(Adam, lr 1e-3, batch 128), then measures Φ_N with the exact walk over random inter-class
pairs of test images, drawn as in the MNIST depth study (docs/mnist-depth-study.md: evenly
spread over the ordered digit pairs, seed 0). With ``--mlps`` the depth study's MLPs are
trained with its protocol (30 epochs) and walked on the same pairs, for a comparison on
identical paths.

    python experiments/cnn_mnist_study.py --data-dir /path/to/mnist                 # everything
    python experiments/cnn_mnist_study.py --data-dir DIR --probe 200                # throughput only
    python experiments/cnn_mnist_study.py --data-dir DIR --phase report             # tables only

Every run resumes: trained networks (``models/``) and finished measurements (``runs/``)
under ``--out`` are read back, not recomputed.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from spacefold._core.global_folding import global_folding
from spacefold._core.pairs import pair_plan, plan_fingerprint
from spacefold._core.patterns import pattern_layout
from spacefold._util import atomic_path, atomic_write, json_safe
from spacefold.data import load_mnist
from spacefold.models import load_checkpoint
from spacefold.models.train import accuracy, train, train_mlp
from spacefold.studies.depth import run_provenance, seed_mean_ci

ROOT = Path(__file__).resolve().parent.parent


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def cnn(c1: int = 8, c2: int = 16, hidden: int = 32, seed: int = 0) -> nn.Sequential:
    """The study's CNN on flat 784-pixel inputs (PyTorch's default initialisation from ``seed``)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Unflatten(1, (1, 28, 28)),
        nn.Conv2d(1, c1, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),  # 26x26 -> 13x13
        nn.Conv2d(c1, c2, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),  # 11x11 -> 5x5
        nn.Flatten(),
        nn.Linear(c2 * 5 * 5, hidden),
        nn.ReLU(),
        nn.Linear(hidden, 10),
    )


def arch_name(args) -> str:
    return f"cnn{args.c1}-{args.c2}-{args.hidden}"


def trained_cnn(args, data, seed: int) -> tuple[nn.Module, dict]:
    """The CNN of ``seed``, trained on the first call and read back from ``models/`` after."""
    path = Path(args.out) / "models" / f"{arch_name(args)}_e{args.epochs}_s{seed}.pt"
    model = cnn(args.c1, args.c2, args.hidden, seed)
    if path.is_file():
        ck = torch.load(path, weights_only=True)
        model.load_state_dict(ck["state_dict"])
        return model.eval(), ck["meta"]
    log(f"training {arch_name(args)} seed {seed}, {args.epochs} epochs")
    res = train(
        model,
        data.x_train,
        data.y_train,
        epochs=args.epochs,
        lr=1e-3,
        batch_size=128,
        seed=seed,
        x_test=data.x_test,
        y_test=data.y_test,
    )
    meta = {
        "test_accuracy": res.test_accuracy[-1],
        "train_accuracy": res.train_accuracy[-1],
        "train_seconds": res.seconds,
        "epochs": args.epochs,
        "seed": seed,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save({"state_dict": model.state_dict(), "meta": meta}, tmp)
    log(f"  test accuracy {meta['test_accuracy']:.4f} ({res.seconds:.0f} s)")
    return model.eval(), meta


def measure(model, data, args) -> dict:
    """Global folding over the inter-class pairs of the study (wall time included)."""
    x, y = data.x_test, data.y_test
    plan = pair_plan(y, "inter-class", max_pairs=args.pairs, seed=args.pair_seed)
    t0 = time.perf_counter()
    g = global_folding(
        model,
        x,
        y,
        pairs=plan,
        method="exact",
        workers=args.workers,
        batch_size=args.batch_size,
        per_layer=args.per_layer,
    )
    wall = time.perf_counter() - t0
    s = g.summary(ci=True, n_boot=args.n_boot)
    s["pair_plan"] = plan_fingerprint(plan)
    if args.per_layer:
        s["per_layer"] = g.per_layer_summary()
    s["wall_seconds_total"] = wall
    s["median_regions"] = float(g.n_regions.double().median())
    s["max_regions"] = int(g.n_regions.max())
    s["test_accuracy"] = accuracy(model, x, y)
    return s


def run_one(args, data, kind: str, name: str, seed: int, build) -> dict:
    path = Path(args.out) / "runs" / f"{name}_s{seed}_p{args.pairs}{'_layers' if args.per_layer else ''}.json"
    if path.is_file():
        log(f"{name} seed {seed}: done before, read back")
        return json.loads(path.read_text())
    model, meta = build()
    n_params = sum(p.numel() for p in model.parameters())
    layout = pattern_layout(model, data.x_test[:1])
    bits = {name: layout[name].stop - layout[name].start for name in layout.names}
    log(f"{name} seed {seed}: walking {args.pairs} inter-class pairs")
    s = measure(model, data, args)
    # ``s["seed"]`` is the seed of the pairs; the network's seed is ``seed``
    row = {
        "kind": kind,
        "arch": name,
        "n_parameters": n_params,
        "train": meta,
        "threads": torch.get_num_threads(),
        "workers": args.workers,
        "bits": bits,
        **s,
        "pair_seed": s["seed"],
        "seed": seed,
        "provenance": run_provenance(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as fh:
        json.dump(json_safe(row), fh, indent=1, allow_nan=False)
    log(
        f"  Φ_N {row['phi']:.4f}, share folded {row['fraction_folded']:.4f}, mean regions "
        f"{row['mean_regions']:.1f}, {row['wall_seconds_total']:.0f} s"
    )
    return row


def probe(args, data) -> None:
    """Paths per second of the exact walk on a subset of the pairs (an untrained and a trained CNN)."""
    x, y = data.x_test, data.y_test
    plan = pair_plan(y, "inter-class", max_pairs=args.probe, seed=args.pair_seed)
    model, _ = trained_cnn(args, data, args.seeds[0])
    for label, m in (("untrained", cnn(args.c1, args.c2, args.hidden, args.seeds[0]).eval()), ("trained", model)):
        t0 = time.perf_counter()
        g = global_folding(m, x, y, pairs=plan, method="exact", workers=args.workers, batch_size=args.batch_size)
        dt = time.perf_counter() - t0
        log(
            f"{label} {arch_name(args)}: {args.probe} paths in {dt:.1f} s ({args.probe / dt:.2f} paths/s), mean "
            f"regions {g.mean_regions:.1f}, Φ_N {g.phi:.4f}; {args.pairs} pairs would take about "
            f"{args.pairs / args.probe * dt / 60:.1f} min"
        )


def mean_ci(v) -> str:
    m, lo, hi = seed_mean_ci(v)
    if len(v) < 2:
        return f"{m:.4f}"
    return f"{m:.4f} [{lo:.4f}, {hi:.4f}]"


def report(rows: list[dict]) -> str:
    rows = sorted(rows, key=lambda r: (r["kind"] != "cnn", r["arch"], r["seed"]))
    lines = [
        "| net | seed | parameters | test acc. | Φ_N [95% CI, pairs] | share folded | phi_max_p2 "
        "| mean regions | median regions | wall s | paths/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ci = r["ci95"]["phi"]
        lines.append(
            f"| {r['arch']} | {r['seed']} | {r['n_parameters']} | {r['test_accuracy']:.4f} | "
            f"{r['phi']:.4f} [{ci[0]:.4f}, {ci[1]:.4f}] | {r['fraction_folded']:.4f} | "
            f"{r['phi_max_p2']:.4f} | {r['mean_regions']:.1f} | {r['median_regions']:.0f} | "
            f"{r['wall_seconds_total']:.1f} | {r['n_paths'] / r['wall_seconds_total']:.1f} |"
        )
    lines += [
        "",
        "Mean over seeds [95% interval over seeds, Student t]:",
        "",
        "| net | seeds | test acc. | Φ_N | share folded | phi_max_p2 | mean regions |",
        "|---|---|---|---|---|---|---|",
    ]
    for a in dict.fromkeys(r["arch"] for r in rows):
        rs = [r for r in rows if r["arch"] == a]
        cells = [mean_ci([r[k] for r in rs]) for k in ("test_accuracy", "phi", "fraction_folded", "phi_max_p2")]
        regions = np.mean([r["mean_regions"] for r in rs])
        lines.append(f"| {a} | {len(rs)} | " + " | ".join(cells) + f" | {regions:.1f} |")
    return "\n".join(lines)


def per_layer_report(rows: list[dict]) -> str:
    lines = [
        "| net | seed | layer | bits | Φ_N of the layer's bits | share folded | mean χ |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        for lay in r["per_layer"]:
            lines.append(
                f"| {r['arch']} | {r['seed']} | {lay['layer']} | {r['bits'].get(lay['layer'], '')} | "
                f"{lay['phi']:.4f} | {lay['fraction_folded']:.4f} | {lay['mean_chi']:.4f} |"
            )
    return "\n".join(lines)


def write_summary(out: Path) -> None:
    """The tables of every finished run under ``out`` to ``out/summary.md`` (and to the screen)."""
    runs = sorted((out / "runs").glob("*.json"))
    rows = [json.loads(f.read_text()) for f in runs if not f.stem.endswith("_layers")]
    layers = [json.loads(f.read_text()) for f in runs if f.stem.endswith("_layers")]
    text = report(rows) if rows else "no finished run"
    if layers:
        text += "\n\nχ of each layer's bits alone (same pairs):\n\n" + per_layer_report(layers)
    with atomic_write(out / "summary.md") as fh:
        fh.write(text + "\n")
    print(text)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True, help="folder holding the MNIST IDX files")
    p.add_argument("--out", default=str(ROOT / "experiments" / "results" / "cnn-mnist"))
    p.add_argument("--phase", choices=("all", "report"), default="all")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--c1", type=int, default=8, help="channels of the first convolution")
    p.add_argument("--c2", type=int, default=16, help="channels of the second convolution")
    p.add_argument("--hidden", type=int, default=32, help="width of the hidden linear layer")
    p.add_argument("--pairs", type=int, default=10_000, help="inter-class test pairs per network")
    p.add_argument("--pair-seed", type=int, default=0)
    p.add_argument("--mlps", nargs="*", default=[], help="depth-study MLPs to walk on the same pairs (e.g. 3x20 5x12)")
    p.add_argument(
        "--per-layer",
        action="store_true",
        help="also χ of each layer's bits alone (runs are stored apart from those without)",
    )
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--n-boot", type=int, default=500)
    p.add_argument("--probe", type=int, default=0, help="only time this many pairs and estimate the full run")
    args = p.parse_args(argv)
    run_provenance()  # taken now: the runs record the code this process started with
    out = Path(args.out)
    if args.phase == "report":
        write_summary(out)
        return
    torch.set_num_threads(int(os.environ.get("SPACEFOLD_THREADS", "1")))
    data = load_mnist(args.data_dir)
    if args.probe:
        probe(args, data)
        return
    for seed in args.seeds:  # seed by seed, so that every net is covered early
        run_one(args, data, "cnn", arch_name(args), seed, lambda s=seed: trained_cnn(args, data, s))
        for arch in args.mlps:

            def build(a=arch, s=seed):
                ck = out / "models" / f"mlp{a}_e30_s{s}.pt"
                if ck.is_file():
                    return load_checkpoint(ck).eval(), {"epochs": 30, "seed": s}
                log(f"training MLP {a} seed {s}, 30 epochs (the depth study's protocol)")
                model, res = train_mlp(a, data, epochs=30, seed=s, checkpoint=ck)
                return model.eval(), {"test_accuracy": res.final_test_accuracy, "epochs": 30, "seed": s}

            run_one(args, data, "mlp", arch, seed, build)
    write_summary(out)


if __name__ == "__main__":
    main()
