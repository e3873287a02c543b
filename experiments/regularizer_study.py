"""Folding during training on MNIST: the folding regulariser on/off over a λ grid, Φ_N
epoch by epoch, and the sensitivity of Φ_N to dropout and batch norm (arXiv 2502.09954
outlines the regulariser; arXiv 2503.08502's successor reports a steady rise of Φ_N in
training and low sensitivity to dropout and batch norm).

    python experiments/regularizer_study.py --data-dir DIR --phase lambda        # 3x20, 5x12 over the λ grid
    python experiments/regularizer_study.py --data-dir DIR --phase sensitivity   # dropout x batch norm, 3x20
    python experiments/regularizer_study.py --data-dir DIR --phase cnn           # a small CNN, λ on/off
    python experiments/regularizer_study.py --data-dir DIR --phase report        # tables and figures
    python experiments/regularizer_study.py --data-dir DIR --phase report --figures docs/folding-during-training

Every run is one JSON file under --out/runs; finished runs are read back, not rerun.
Training: Adam (lr 1e-3, batch 128) on the MNIST training set (or a stratified subset,
--n-train), cross-entropy plus λ · folding_loss on a probe set of inter-class training
pairs (--probe-train pairs, 8 drawn per step, 8 random points per segment, β = 10).
Φ_N, the median of maxima and the share of folded paths are measured after every epoch
with exact walks on a fixed probe set of inter-class *test* pairs (--probe-test); every
record keeps each test pair's χ of every measurement (``chi_per_epoch``), for intervals that
resample the pairs within each seed (the report's intervals over seeds and test pairs).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import spacefold as sf
from spacefold._core.pairs import pair_plan, plan_fingerprint
from spacefold._util import atomic_write
from spacefold.data import load_mnist
from spacefold.models.train import train
from spacefold.studies.depth import run_provenance, seed_mean_ci
from spacefold.training.regularize import FoldingRegularizer, FoldingTracker, probe_pairs

ROOT = Path(__file__).resolve().parent.parent


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def build(arch: str, *, dropout: float = 0.0, batchnorm: bool = False, seed: int = 0) -> nn.Module:
    """The MLP ``arch`` (Linear [-> BatchNorm] -> ReLU [-> Dropout] per hidden layer) or the CNN."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if arch == "cnn":
            return nn.Sequential(
                nn.Unflatten(1, (1, 28, 28)),
                nn.Conv2d(1, 8, 5, stride=2),
                nn.ReLU(),  # 8 x 12 x 12
                nn.Conv2d(8, 16, 5, stride=2),
                nn.ReLU(),  # 16 x 4 x 4
                nn.Flatten(),
                nn.Linear(256, 10),
            )
        layers: list[nn.Module] = []
        prev = 784
        for w in sf.models.parse_arch(arch):
            layers.append(nn.Linear(prev, w))
            if batchnorm:
                layers.append(nn.BatchNorm1d(w))
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            prev = w
        layers.append(nn.Linear(prev, 10))
        return nn.Sequential(*layers)


class ChiTracker(FoldingTracker):
    """The study's tracker, keeping every probe path's χ of every measurement (``chi``, in order), so that
    intervals can resample the test pairs within each seed (``spacefold.studies.depth.hierarchical_bootstrap``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.chi: list[list[float]] = []

    def measure(self, model: nn.Module) -> dict:
        from spacefold._core.folding import folding_batch
        from spacefold.training.metric import FoldingMetric

        metric, chi = FoldingMetric(), []
        for k in range(0, self.x1.shape[0], self.batch_size):
            b = folding_batch(
                model,
                self.x1[k : k + self.batch_size],
                self.x2[k : k + self.batch_size],
                method=self.method,
                steps=self.steps,
                layers=self.layers,
            )
            metric.update(b)
            chi += [float(v) for v in b.chi]
        self.chi.append(chi)
        return {k: (int(v) if k == "n_paths" else float(v)) for k, v in metric.compute().items()}


@torch.no_grad()
def test_loss(model: nn.Module, x, y) -> float:
    model.eval()
    return float(nn.functional.cross_entropy(model(x), y))


def run_one(data, cfg: dict, args, out: Path) -> dict:
    path = out / "runs" / f"{cfg['name']}.json"
    if path.exists():
        return json.loads(path.read_text())
    torch.manual_seed(cfg["seed"])  # dropout masks
    model = build(cfg["arch"], dropout=cfg["dropout"], batchnorm=cfg["batchnorm"], seed=cfg["seed"])
    p1, p2 = probe_pairs(data.x_train, data.y_train, args.probe_train, seed=1000 + cfg["seed"])
    t1, t2 = probe_pairs(data.x_test, data.y_test, args.probe_test, seed=7)  # the same test probe for every run
    reg = None
    if cfg["lam"] > 0:
        reg = FoldingRegularizer(
            p1,
            p2,
            cfg["lam"],
            schedule=cfg["schedule"],
            pairs_per_step=8,
            method="random",
            n_points=8,
            seed=cfg["seed"],
        )
    tracker = ChiTracker(t1, t2, every=1)
    epoch0 = {"epoch": -1, **tracker.measure(model)}
    losses = []

    def on_epoch_end(m, epoch, epochs):
        row = tracker(m, epoch, epochs)
        row["test_loss"] = test_loss(m, data.x_test, data.y_test)
        losses.append(row["test_loss"])
        return row

    t0 = time.perf_counter()
    res = train(
        model,
        data.x_train,
        data.y_train,
        epochs=args.epochs,
        seed=cfg["seed"],
        x_test=data.x_test,
        y_test=data.y_test,
        regularizer=reg,
        on_epoch_end=on_epoch_end,
    )
    rec = {
        **cfg,
        "epochs": args.epochs,
        "n_train": int(data.y_train.numel()),
        "seconds": time.perf_counter() - t0,
        "train": res.as_dict(),
        "per_epoch": [epoch0] + res.tracked,
        "final": {
            "test_accuracy": res.final_test_accuracy,
            "train_accuracy": res.final_train_accuracy,
            "test_loss": losses[-1],
            **{k: res.tracked[-1][k] for k in ("phi", "phi_max", "fraction_folded")},
        },
        "regularizer": reg.describe() if reg else None,
        "provenance": run_provenance(),
        # every test pair's χ at initialisation and after every epoch (the rows of per_epoch, in order)
        "chi_per_epoch": tracker.chi,
        # the pairs behind the probes (spacefold.probe_pairs draws them through pair_plan)
        "test_pairs": plan_fingerprint(pair_plan(data.y_test, "inter-class", max_pairs=args.probe_test, seed=7)),
        "train_probe_pairs": plan_fingerprint(
            pair_plan(data.y_train, "inter-class", max_pairs=args.probe_train, seed=1000 + cfg["seed"])
        ),
    }
    with atomic_write(path) as fh:
        json.dump(rec, fh, indent=1)
    log(
        f"{cfg['name']}: acc {rec['final']['test_accuracy']:.4f} loss {rec['final']['test_loss']:.4f} "
        f"phi {rec['final']['phi']:.4f} ({rec['seconds']:.0f}s)"
    )
    return rec


def configs(args) -> list[dict]:
    out = []

    def add(arch, lam, seed, dropout=0.0, bn=False, schedule="always"):
        name = f"{arch}_lam{lam:g}_{schedule.replace(':', '')}_p{dropout:g}_bn{int(bn)}_s{seed}"
        out.append(
            {
                "name": name,
                "arch": arch,
                "lam": lam,
                "seed": seed,
                "dropout": dropout,
                "batchnorm": bn,
                "schedule": schedule,
            }
        )

    for phase in args.phase:
        if phase == "lambda":
            for arch in ("3x20", "5x12"):
                for lam in args.lams:
                    for s in args.seeds:
                        add(arch, lam, s)
            for s in args.seeds:  # the papers' early window
                add("3x20", max(args.lams), s, schedule="early:0.3")
        elif phase == "sensitivity":
            for p in (0.0, 0.1, 0.3):
                for bn in (False, True):
                    for s in args.seeds:
                        add("3x20", 0.0, s, dropout=p, bn=bn)
        elif phase == "cnn":
            for lam in (0.0, args.cnn_lam):
                for s in args.seeds:
                    add("cnn", lam, s)
    return out


# --------------------------------------------------------------------------- report


def ci(values) -> tuple[float, float, float]:
    return seed_mean_ci(values)


def fmt(values, digits=4) -> str:
    m, lo, hi = ci(values)
    if math.isnan(lo):
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def group(runs: list[dict], keys: tuple[str, ...]) -> dict:
    g: dict = {}
    for r in runs:
        g.setdefault(tuple(r[k] for k in keys), []).append(r)
    return g


def report(out: Path, args) -> None:
    runs = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
    if not runs:
        log("no finished run to report")
        return
    lines = []
    cols = ("test_accuracy", "test_loss", "phi", "phi_max", "fraction_folded")
    head = (
        "| arch | λ | schedule | dropout | BN | seeds | test acc | test loss | Φ_N | median of maxima | share folded |"
    )
    sep = "|" + "---|" * 11

    def table(rows):
        lines.extend([head, sep])
        for _key, rs in rows:
            r0 = rs[0]
            cells = [fmt([r["final"][c] for r in rs]) for c in cols]
            lines.append(
                f"| {r0['arch']} | {r0['lam']:g} | {r0['schedule']} | {r0['dropout']:g} | "
                f"{'on' if r0['batchnorm'] else 'off'} | {len(rs)} | " + " | ".join(cells) + " |"
            )
        lines.append("")

    mlp_lam = [r for r in runs if r["arch"] != "cnn" and r["dropout"] == 0 and not r["batchnorm"]]
    g = group(mlp_lam, ("arch", "schedule", "lam"))
    lines.append("### λ grid (MLPs, no dropout, no batch norm)\n")
    table(sorted(g.items(), key=lambda kv: (kv[0][0], kv[0][1] != "always", kv[0][2])))
    # paired by seed: the change from λ = 0 (same initialisation, same batches)
    base = {(r["arch"], r["seed"]): r for r in runs if r["lam"] == 0 and r["dropout"] == 0 and not r["batchnorm"]}
    diffs = [r for r in runs if r["lam"] > 0 and (r["arch"], r["seed"]) in base]
    if diffs:
        lines.append("### Change from λ = 0, paired by seed (mean [95% CI over seeds])\n")
        lines.append("| arch | λ | schedule | seeds | Δ test acc | Δ test loss | Δ Φ_N | Δ median of maxima |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for key, rs in sorted(group(diffs, ("arch", "schedule", "lam")).items(), key=lambda kv: str(kv[0])):
            cells = [
                fmt([r["final"][c] - base[(r["arch"], r["seed"])]["final"][c] for r in rs])
                for c in ("test_accuracy", "test_loss", "phi", "phi_max")
            ]
            lines.append(f"| {key[0]} | {key[2]:g} | {key[1]} | {len(rs)} | " + " | ".join(cells) + " |")
        lines.append("")
    cnn = [r for r in runs if r["arch"] == "cnn"]
    if cnn:
        lines.append("### Small CNN\n")
        table(sorted(group(cnn, ("lam",)).items()))
    sens = [r for r in runs if r["arch"] == "3x20" and r["lam"] == 0]
    gs = group(sens, ("dropout", "batchnorm"))
    if len(gs) > 1:
        lines.append("### Dropout and batch norm (3x20, λ = 0)\n")
        table(sorted(gs.items()))
    # Φ_N epoch by epoch: mean over seeds
    lines.append("### Φ_N after each epoch (mean over seeds; epoch 0 = at initialisation)\n")
    ep_groups = sorted(
        group(runs, ("arch", "lam", "schedule", "dropout", "batchnorm")).items(),
        key=lambda kv: tuple(str(k) for k in kv[0]),
    )
    n_ep = max(len(r["per_epoch"]) for r in runs)
    lines.append("| run | " + " | ".join(str(e) for e in range(n_ep)) + " | Φ_N never falls after epoch 1 (seeds) |")
    lines.append("|" + "---|" * (n_ep + 2))
    curves = {}
    for key, rs in ep_groups:
        n = min(len(r["per_epoch"]) for r in rs)
        arr = np.array([[row["phi"] for row in r["per_epoch"][:n]] for r in rs])
        curves[key] = arr
        mono = int(sum(bool(np.all(np.diff(a[1:]) >= 0)) for a in arr))
        label = f"{key[0]} λ={key[1]:g} {key[2]} p={key[3]:g} bn={'on' if key[4] else 'off'}"
        cells = [f"{v:.3f}" for v in arr.mean(0)] + [""] * (n_ep - n)
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {mono}/{len(arr)} |")
    lines.append("")
    lines += pair_tables(runs)
    with atomic_write(out / "tables.md") as fh:
        fh.write("\n".join(lines))
    log(f"wrote {out / 'tables.md'}")
    figures(curves, runs, Path(args.figures) if getattr(args, "figures", None) else out / "figures")


N_BOOT = 2000


def _phi_diff(g) -> float:
    from spacefold._core.global_folding import median_nonzero

    return median_nonzero(g[:, 0]) - median_nonzero(g[:, 1])


def _share_diff(g) -> float:
    return float((g[:, 0] > 0).mean() - (g[:, 1] > 0).mean())


def paired_change(pairs: list[tuple[list[float], list[float]]]) -> dict:
    """The change ``a − b`` of Φ_N and of the share of folded paths over seeds, where each seed gives the
    χ of the same test pairs under ``a`` and ``b``: the mean over seeds with (1) a hierarchical bootstrap
    interval over the seeds and, within each seed, the test pairs (``hierarchical_bootstrap``, both arms
    with the same draw) and (2) the Student-t interval of the per-seed changes. ``effect``: both exclude 0."""
    from spacefold.studies.depth import hierarchical_bootstrap

    groups = [np.column_stack([np.asarray(a, dtype=float), np.asarray(b, dtype=float)]) for a, b in pairs]
    out = {}
    for name, stat in (("phi", _phi_diff), ("share", _share_diff)):
        est, lo, hi = hierarchical_bootstrap(groups, stat, n_boot=N_BOOT, seed=0)
        _, tlo, thi = seed_mean_ci([stat(g) for g in groups])
        excl = (lo > 0 or hi < 0) and not math.isnan(tlo) and (tlo > 0 or thi < 0)
        out[name] = (est, lo, hi, tlo, thi, excl)
    return out


def _cell(v, digits=3) -> str:
    est, lo, hi, tlo, thi, excl = v
    t = "" if math.isnan(tlo) else f"; t [{tlo:+.{digits}f}, {thi:+.{digits}f}]"
    return f"{est:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]{t}" + (" \\*" if excl else "")


def pair_tables(runs: list[dict]) -> list[str]:
    """Markdown: the changes of Φ_N and of the share folded with intervals over seeds and test pairs, from
    the runs that keep every test pair's χ (``chi_per_epoch``): λ > 0 against λ = 0 of the same seed at the
    last epoch, and within each run from initialisation and from epoch 1 to the last epoch."""
    runs = [r for r in runs if r.get("chi_per_epoch")]
    if not runs:
        return []
    lines = [
        "### Φ_N and share folded with intervals over seeds and test pairs\n",
        (
            "Each cell: mean change over seeds [95% hierarchical bootstrap interval over seeds and, within each "
            "seed, the test pairs, both arms on the same draw]; t [95% Student-t interval of the per-seed "
            f"changes]; \\* where both exclude 0. {N_BOOT} bootstrap draws.\n"
        ),
        "| arch | λ | schedule | seeds | Δ Φ_N (last epoch) | Δ share folded |",
        "|---|---|---|---|---|---|",
    ]
    base = {(r["arch"], r["seed"]): r for r in runs if r["lam"] == 0 and r["dropout"] == 0 and not r["batchnorm"]}
    diffs = [r for r in runs if r["lam"] > 0 and (r["arch"], r["seed"]) in base]
    for key, rs in sorted(group(diffs, ("arch", "schedule", "lam")).items(), key=lambda kv: str(kv[0])):
        rs = sorted(rs, key=lambda r: r["seed"])
        ch = paired_change([(r["chi_per_epoch"][-1], base[(r["arch"], r["seed"])]["chi_per_epoch"][-1]) for r in rs])
        lines.append(f"| {key[0]} | {key[2]:g} | {key[1]} | {len(rs)} | {_cell(ch['phi'])} | {_cell(ch['share'])} |")
    knobs = [
        r for r in runs if r["lam"] == 0 and (r["dropout"] > 0 or r["batchnorm"]) and (r["arch"], r["seed"]) in base
    ]
    if knobs:
        lines += [
            "",
            (
                "Dropout and batch norm against the plain network (λ = 0) of the same seed, last epoch "
                "(Δ test accuracy: Student-t interval over seeds):"
            ),
            "",
            "| arch | dropout | BN | seeds | Δ test acc | Δ Φ_N | Δ share folded |",
            "|---|---|---|---|---|---|---|",
        ]
        for key, rs in sorted(group(knobs, ("arch", "dropout", "batchnorm")).items(), key=lambda kv: str(kv[0])):
            rs = sorted(rs, key=lambda r: r["seed"])
            b = [base[(r["arch"], r["seed"])] for r in rs]
            ch = paired_change([(r["chi_per_epoch"][-1], q["chi_per_epoch"][-1]) for r, q in zip(rs, b)])
            acc = fmt([r["final"]["test_accuracy"] - q["final"]["test_accuracy"] for r, q in zip(rs, b)])
            lines.append(
                f"| {key[0]} | {key[1]:g} | {'on' if key[2] else 'off'} | {len(rs)} | {acc} | "
                f"{_cell(ch['phi'])} | {_cell(ch['share'])} |"
            )
    lines += [
        "",
        ("| run | seeds | Φ_N at 0 → last | Δ Φ_N, 0 → last | Δ Φ_N, epoch 1 → last | Δ share folded, 0 → last |"),
        "|---|---|---|---|---|---|",
    ]
    for key, rs in sorted(
        group(runs, ("arch", "lam", "schedule", "dropout", "batchnorm")).items(),
        key=lambda kv: tuple(str(k) for k in kv[0]),
    ):
        rs = sorted(rs, key=lambda r: r["seed"])
        first = paired_change([(r["chi_per_epoch"][-1], r["chi_per_epoch"][0]) for r in rs])
        one = paired_change([(r["chi_per_epoch"][-1], r["chi_per_epoch"][1]) for r in rs])
        p0 = np.mean([r["per_epoch"][0]["phi"] for r in rs])
        p1 = np.mean([r["per_epoch"][-1]["phi"] for r in rs])
        label = f"{key[0]} λ={key[1]:g} {key[2]} p={key[3]:g} bn={'on' if key[4] else 'off'}"
        lines.append(
            f"| {label} | {len(rs)} | {p0:.3f} → {p1:.3f} | {_cell(first['phi'])} | {_cell(one['phi'])} | "
            f"{_cell(first['share'])} |"
        )
    lines.append("")
    return lines


def figures(curves: dict, runs: list[dict], fig_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig_dir.mkdir(parents=True, exist_ok=True)
    archs = sorted({k[0] for k in curves})
    fig, axes = plt.subplots(1, len(archs), figsize=(4.2 * len(archs), 3.4), squeeze=False)
    for ax, arch in zip(axes[0], archs):
        for key, arr in sorted(curves.items(), key=lambda kv: str(kv[0])):
            if key[0] != arch or key[3] != 0 or key[4]:
                continue
            x = np.arange(arr.shape[1])
            m = arr.mean(0)
            ax.plot(x, m, marker="o", ms=3, label=f"λ={key[1]:g} {key[2] if key[2] != 'always' else ''}")
            if arr.shape[0] > 1:
                h = np.array([ci(arr[:, j])[2] - m[j] for j in range(arr.shape[1])])
                ax.fill_between(x, m - h, m + h, alpha=0.15)
        ax.set_title(f"{arch}: Φ_N on test pairs")
        ax.set_xlabel("epoch (0 = initialisation)")
        ax.set_ylabel("Φ_N")
        ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, fig_dir / "phi-per-epoch.png")
    plt.close(fig)
    # dropout x batch norm, 3x20 without the regulariser
    sens = {k: a for k, a in curves.items() if k[0] == "3x20" and k[1] == 0 and k[2] == "always"}
    if len(sens) > 1:
        fig, ax = plt.subplots(figsize=(4.8, 3.6))
        for key, arr in sorted(sens.items(), key=lambda kv: (kv[0][4], kv[0][3])):
            ax.plot(
                np.arange(arr.shape[1]),
                arr.mean(0),
                marker="o",
                ms=3,
                ls="--" if key[4] else "-",
                label=f"dropout {key[3]:g}, BN {'on' if key[4] else 'off'}",
            )
        ax.set_title("3x20, λ = 0: Φ_N on test pairs")
        ax.set_xlabel("epoch (0 = initialisation)")
        ax.set_ylabel("Φ_N (mean over seeds)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        _save(fig, fig_dir / "phi-dropout-batchnorm.png")
    plt.close(fig)
    # accuracy vs Φ_N per run
    fig, ax = plt.subplots(figsize=(4.8, 3.6))
    for arch in sorted({r["arch"] for r in runs}):
        for lam in sorted({r["lam"] for r in runs if r["arch"] == arch}):
            rs = [
                r
                for r in runs
                if r["arch"] == arch
                and r["lam"] == lam
                and r["dropout"] == 0
                and not r["batchnorm"]
                and r["schedule"] == "always"
            ]
            if rs:
                ax.scatter(
                    [r["final"]["phi"] for r in rs],
                    [r["final"]["test_accuracy"] for r in rs],
                    s=14,
                    label=f"{arch} λ={lam:g}",
                )
    ax.set_xlabel("final Φ_N (test pairs)")
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=6)
    fig.tight_layout()
    _save(fig, fig_dir / "accuracy-vs-phi.png")
    plt.close(fig)
    log(f"wrote figures in {fig_dir}")


def _save(fig, path: Path) -> None:
    from spacefold._util import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True, help="directory with the four MNIST IDX files")
    p.add_argument("--out", default=str(ROOT / "experiments" / "results" / "regularizer"))
    p.add_argument("--phase", nargs="+", default=["lambda"], choices=["lambda", "sensitivity", "cnn", "report"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--lams", type=float, nargs="+", default=[0.0, 0.01, 0.1, 1.0])
    p.add_argument("--cnn-lam", type=float, default=0.1)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--n-train", type=int, default=None, help="stratified subset of the training set")
    p.add_argument("--probe-train", type=int, default=512)
    p.add_argument("--probe-test", type=int, default=300)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--figures",
        type=Path,
        default=None,
        help="folder for the figures (default: <out>/figures; the docs' figures: docs/folding-during-training)",
    )
    args = p.parse_args(argv)
    run_provenance()  # taken now: the runs record the code this process started with
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    todo = configs(args)
    if todo:
        data = load_mnist(args.data_dir)
        if args.n_train:
            data = data.subset(args.n_train, None, seed=0)
        log(f"{len(todo)} runs, {args.epochs} epochs, n_train {data.y_train.numel()}")
        for cfg in todo:
            run_one(data, cfg, args, out)
    if "report" in args.phase or todo:
        report(out, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
