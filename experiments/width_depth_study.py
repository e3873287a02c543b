"""MNIST width and depth study: folding, the share of folded paths and the direction asymmetry
over a grid of MLPs (arXiv 2503.08502; the AAAI 2026 follow-up studies the share of folded
paths against depth and width and conjectures that |χ(Γ) − χ(−Γ)| vanishes in large networks).

For every depth (hidden layers) x width (neurons per layer) x seed the script trains an MLP on
MNIST (spacefold.models.train.train_mlp), walks random inter-class pairs of test images exactly and
records, per network:

- Φ_N (median of the non-zero χ), the median of the non-zero prefix-profile maxima and the
  share of folded paths (χ > 0), with bootstrap intervals over paths;
- the direction asymmetry |χ(Γ) − χ(−Γ)| of every path (the exact walk of the reversed
  segment is the reversed walk) and its deterministic bound D/L, D = d_H(π_1, π_n),
  L = r2 (docs/method.md, 'The folding measure');
- test accuracy.

    python experiments/width_depth_study.py --data-dir DIR                  # train + measure + report
    python experiments/width_depth_study.py --data-dir DIR --phase report   # tables and figures only

Every run leaves ``runs/<depth>x<width>_s<seed>.json`` (atomically); a run whose file exists
with the same settings is skipped, so an interrupted study resumes. Checkpoints go to
``models/`` (not versioned).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from spacefold._core.folding import walk_batch
from spacefold._core.global_folding import GlobalFolding
from spacefold._core.measure import ragged_ranges
from spacefold._core.pairs import pair_plan, plan_fingerprint
from spacefold._util import atomic_path, atomic_write
from spacefold.data import load_mnist
from spacefold.models import load_checkpoint
from spacefold.models.train import train_mlp
from spacefold.studies.depth import run_provenance

ROOT = Path(__file__).resolve().parent.parent
STATS = ("phi", "phi_max", "fraction_folded", "asym_mean", "asym_folded_mean", "bound_mean", "test_accuracy")
LABELS = {
    "phi": "Φ_N (median non-zero χ)",
    "phi_max": "median of non-zero profile maxima",
    "fraction_folded": "share of folded paths",
    "asym_mean": "mean |χ(Γ) − χ(−Γ)|",
    "asym_folded_mean": "mean |χ(Γ) − χ(−Γ)|, folded paths",
    "bound_mean": "mean bound D/L",
    "bound_folded_mean": "mean bound D/L, folded paths",
    "test_accuracy": "test accuracy",
}


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def settings_key(s: dict) -> str:
    return hashlib.sha256(json.dumps(s, sort_keys=True).encode()).hexdigest()[:16]


def reversed_rows(offsets: torch.Tensor) -> torch.Tensor:
    """Row index that reverses every walk of a ragged batch in place."""
    counts = offsets[1:] - offsets[:-1]
    wid = torch.repeat_interleave(torch.arange(counts.numel()), counts)
    pos = torch.arange(int(offsets[-1])) - offsets[:-1][wid]
    return offsets[1:][wid] - 1 - pos


def measure(model, x, y, n_pairs: int, seed: int, chunk: int = 256) -> dict:
    """Exact walks of ``n_pairs`` inter-class test pairs: χ, the profile maxima, χ of the
    reversed walks and the bound D/L, per path."""
    plan = pair_plan(y, "inter-class", max_pairs=n_pairs, seed=seed)
    i, j = plan.indices()
    la, lb = plan.labels()
    keys = ("chi", "max_profile", "r1", "r2", "n_points", "chi_rev", "d_ends")
    parts: dict[str, list] = {k: [] for k in keys}
    for k in range(0, i.numel(), chunk):
        wb = walk_batch(model, x[i[k : k + chunk]], x[j[k : k + chunk]], method="exact", batch_size=chunk)
        s = ragged_ranges(wb.patterns, wb.offsets)
        rev = ragged_ranges(wb.patterns[reversed_rows(wb.offsets)], wb.offsets)
        first, last = wb.patterns[wb.offsets[:-1]], wb.patterns[wb.offsets[1:] - 1]
        for key in keys[:5]:
            parts[key].append(s[key])
        parts["chi_rev"].append(rev["chi"])
        parts["d_ends"].append((first ^ last).sum(-1))
    out = {k: torch.cat(v) for k, v in parts.items()}
    out["label_a"], out["label_b"] = la, lb
    out["pair_plan"] = plan_fingerprint(plan)
    return out


def summarise(m: dict, n_boot: int, seed: int) -> dict:
    g = GlobalFolding(
        chi=m["chi"].double(),
        max_profile=m["max_profile"].double(),
        r1=m["r1"],
        r2=m["r2"],
        n_regions=m["n_points"],
        label_a=m["label_a"],
        label_b=m["label_b"],
        method="exact",
        pairs="inter-class",
        seed=seed,
    )
    chi = m["chi"].double().numpy()
    asym = (m["chi"].double() - m["chi_rev"].double()).abs().numpy()
    r2 = m["r2"].double().numpy()
    bound = np.where(r2 > 0, m["d_ends"].double().numpy() / np.maximum(r2, 1), 0.0)
    folded = chi > 0
    violations = int((asym > bound + 1e-12).sum())
    ci = g.bootstrap(n_boot=n_boot, seed=seed, stats=("phi", "phi_max", "fraction_folded"))
    rng = np.random.default_rng(seed)
    n = asym.size
    draws = {"asym_mean": [], "asym_folded_mean": [], "bound_mean": []}
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        f = folded[idx]
        draws["asym_mean"].append(asym[idx].mean())
        draws["asym_folded_mean"].append(asym[idx][f].mean() if f.any() else 0.0)
        draws["bound_mean"].append(bound[idx].mean())
    for k, v in draws.items():
        ci[k] = (float(np.quantile(v, 0.025)), float(np.quantile(v, 0.975)))
    return {
        "phi": g.phi,
        "phi_max": g.phi_max,
        "fraction_folded": g.fraction_folded,
        "mean_chi": g.mean,
        "asym_mean": float(asym.mean()),
        "asym_folded_mean": float(asym[folded].mean()) if folded.any() else 0.0,
        "asym_share_nonzero": float((asym > 0).mean()),
        "bound_mean": float(bound.mean()),
        "bound_folded_mean": float(bound[folded].mean()) if folded.any() else 0.0,
        "bound_violations": violations,
        "mean_regions": g.mean_regions,
        "n_paths": g.n_paths,
        "ci95": {k: list(v) for k, v in ci.items()},
    }


def run_grid(data, args, out: Path) -> None:
    settings = {
        "epochs": args.epochs,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "pairs": args.pairs,
        "pair_seed": args.pair_seed,
        "n_boot": args.n_boot,
        # the directory stays out of the results: they are committed, the path is the user's
        "data": {**data.describe(), "source": "MNIST IDX files from --data-dir"},
    }
    key = settings_key(settings)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    (out / "models").mkdir(parents=True, exist_ok=True)
    # Smallest networks first: a study cut short still covers the whole grid at its cheap end.
    grid = sorted(
        ((d, w, s) for d in args.depths for w in args.widths for s in args.seeds),
        key=lambda t: (t[2], t[0] * t[1], t[0], t[1]),
    )
    for depth, width, seed in grid:
        arch = "x".join([f"{depth}", f"{width}"])
        name = f"{arch}_s{seed}"
        res_path = out / "runs" / f"{name}.json"
        if res_path.is_file():
            try:
                if json.loads(res_path.read_text()).get("settings_key") == key:
                    log(f"{name}: done before, skipped")
                    continue
            except (OSError, ValueError):
                pass
        t0 = time.perf_counter()
        ckpt = out / "models" / f"{name}.pt"
        model, tr = None, None
        if ckpt.is_file():
            try:
                model, meta = load_checkpoint(ckpt, with_metadata=True)
                tr = meta.get("training", {})
                if any(tr.get(k) != settings[k] for k in ("epochs", "lr", "batch_size")):
                    model = None
            except (ValueError, OSError):
                model = None
        if model is None:
            model, res = train_mlp(
                arch, data, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, seed=seed, checkpoint=ckpt
            )
            tr = res.as_dict()
        t1 = time.perf_counter()
        m = measure(model, data.x_test, data.y_test, args.pairs, args.pair_seed)
        row = {
            "arch": arch,
            "depth": depth,
            "width": width,
            "seed": seed,
            "n_neurons": depth * width,
            "test_accuracy": tr["final_test_accuracy"],
            "train_accuracy": tr["final_train_accuracy"],
            **summarise(m, args.n_boot, args.pair_seed),
            "train_seconds": t1 - t0,
            "measure_seconds": time.perf_counter() - t1,
            "settings": settings,
            "settings_key": key,
            "pair_plan": m["pair_plan"],
            "provenance": run_provenance(),
        }
        with atomic_write(res_path) as fh:
            json.dump(row, fh, indent=1)
        log(
            f"{name}: acc {row['test_accuracy']:.4f} phi {row['phi']:.4f} folded {row['fraction_folded']:.4f} "
            f"asym {row['asym_mean']:.4f} bound {row['bound_mean']:.4f} regions {row['mean_regions']:.1f} "
            f"({row['train_seconds']:.0f} s train, {row['measure_seconds']:.0f} s measure)"
        )


# --------------------------------------------------------------------------- report

CSV_FIELDS = [
    "arch",
    "depth",
    "width",
    "seed",
    "n_neurons",
    "test_accuracy",
    "phi",
    "phi_lo",
    "phi_hi",
    "phi_max",
    "phi_max_lo",
    "phi_max_hi",
    "fraction_folded",
    "fraction_folded_lo",
    "fraction_folded_hi",
    "asym_mean",
    "asym_mean_lo",
    "asym_mean_hi",
    "asym_folded_mean",
    "bound_mean",
    "bound_folded_mean",
    "asym_share_nonzero",
    "bound_violations",
    "mean_regions",
    "n_paths",
    "train_seconds",
    "measure_seconds",
]


def load_runs(out: Path) -> list[dict]:
    rows = []
    for p in sorted((out / "runs").glob("*.json")):
        rows.append(json.loads(p.read_text()))
    return rows


def seed_mean_ci(values) -> tuple[float, float, float]:
    """Mean over seeds and a 95% Student-t interval (the interval is the mean itself for one seed)."""
    from scipy import stats as st  # scipy ships with scikit-learn

    v = np.asarray(values, dtype=float)
    m = float(v.mean())
    if v.size < 2:
        return m, m, m
    h = float(st.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return m, m - h, m + h


def cell_table(rows, stat: str, depths, widths, fmt="{:.3f}") -> str:
    lines = ["| depth \\ width | " + " | ".join(str(w) for w in widths) + " |", "|---|" + "---|" * len(widths)]
    for d in depths:
        cells = []
        for w in widths:
            v = [r[stat] for r in rows if r["depth"] == d and r["width"] == w]
            if not v:
                cells.append("missing")
                continue
            m, lo, hi = seed_mean_ci(v)
            cells.append(
                fmt.format(m) + (f" [{fmt.format(lo)}, {fmt.format(hi)}]" if len(v) > 1 else "") + f" (n={len(v)})"
            )
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def spearman(a, b) -> float | None:
    """Spearman's rank correlation; ``None`` (JSON null) when it is undefined (constant input)."""
    from scipy import stats as st

    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    return float(st.spearmanr(a, b).statistic)


def heatmaps(rows, depths, widths, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stats = ["test_accuracy", "phi", "phi_max", "fraction_folded", "asym_folded_mean", "bound_folded_mean"]
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5))
    for ax, stat in zip(axes.flat, stats):
        grid = np.full((len(depths), len(widths)), np.nan)
        for a, d in enumerate(depths):
            for b, w in enumerate(widths):
                v = [r[stat] for r in rows if r["depth"] == d and r["width"] == w]
                if v:
                    grid[a, b] = float(np.mean(v))
        im = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis")
        for a in range(len(depths)):
            for b in range(len(widths)):
                if not np.isnan(grid[a, b]):
                    ax.text(
                        b,
                        a,
                        f"{grid[a, b]:.3f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="w" if grid[a, b] < np.nanmean(grid) else "k",
                    )
        ax.set_xticks(range(len(widths)), [str(w) for w in widths])
        ax.set_yticks(range(len(depths)), [str(d) for d in depths])
        ax.set_xlabel("width (neurons per hidden layer)")
        ax.set_ylabel("depth (hidden layers)")
        ax.set_title(LABELS[stat], fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle("MNIST MLPs: mean over seeds (blank: not run)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format=path.suffix.lstrip("."))
    plt.close(fig)
    return path


def asymmetry_plot(rows, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r["depth"] >= 2]  # one hidden layer never folds: asymmetry 0
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, by in zip(axes, ("n_neurons", "depth")):
        for key, mark, lab in (
            ("asym_mean", "o", "mean |χ(Γ) − χ(−Γ)|, all paths"),
            ("asym_folded_mean", "s", "mean |χ(Γ) − χ(−Γ)|, folded paths"),
            ("bound_folded_mean", "^", "mean bound D/L, folded paths"),
        ):
            xs = np.array([r[by] for r in rows], dtype=float)
            jitter = (np.array([r["seed"] for r in rows]) - 1) * (0.03 * xs if by == "n_neurons" else 0.05)
            ax.scatter(xs + jitter, [r[key] for r in rows], marker=mark, s=16, alpha=0.7, label=lab)
        ax.set_xlabel("hidden neurons (depth x width)" if by == "n_neurons" else "depth (hidden layers)")
        if by == "n_neurons":
            ax.set_xscale("log")
        ax.set_ylabel("per network (log scale)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Direction asymmetry and its bound D/L, one point per network (depth >= 2)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format=path.suffix.lstrip("."))
    plt.close(fig)
    return path


def report(out: Path, depths, widths) -> dict:
    rows = load_runs(out)
    if not rows:
        raise SystemExit(f"no finished run in {out / 'runs'}")
    with atomic_write(out / "results.csv") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        w.writeheader()
        for r in rows:
            flat = {k: r.get(k) for k in CSV_FIELDS}
            for k in ("phi", "phi_max", "fraction_folded", "asym_mean"):
                flat[k + "_lo"], flat[k + "_hi"] = r["ci95"][k]
            w.writerow(flat)
    kept = rows
    trends = {}
    for stat in ("phi", "phi_max", "fraction_folded", "asym_mean", "asym_folded_mean", "bound_mean"):
        trends[stat] = {
            "spearman_width_at_fixed_depth": {
                d: spearman([r["width"] for r in kept if r["depth"] == d], [r[stat] for r in kept if r["depth"] == d])
                for d in depths
                if sum(r["depth"] == d for r in kept) >= 3
            },
            "spearman_depth_at_fixed_width": {
                w: spearman([r["depth"] for r in kept if r["width"] == w], [r[stat] for r in kept if r["width"] == w])
                for w in widths
                if sum(r["width"] == w for r in kept) >= 3
            },
            "spearman_neurons": spearman([r["n_neurons"] for r in kept], [r[stat] for r in kept]),
            "spearman_test_accuracy": spearman([r["test_accuracy"] for r in kept], [r[stat] for r in kept]),
        }
    summary = {
        "n_runs": len(rows),
        "bound_violations": int(sum(r["bound_violations"] for r in rows)),
        "trends": trends,
        "settings": rows[0]["settings"],
        "train_seconds": float(sum(r["train_seconds"] for r in rows)),
        "measure_seconds": float(sum(r["measure_seconds"] for r in rows)),
    }
    with atomic_write(out / "results.json") as fh:
        json.dump({"summary": summary, "runs": rows}, fh, indent=1, allow_nan=False)
    with atomic_write(out / "tables.md") as fh:
        for stat in STATS:
            fh.write(f"### {LABELS[stat]}\n\n{cell_table(rows, stat, depths, widths)}\n\n")
        fh.write(
            "### mean bound D/L, folded paths\n\n"
            + cell_table(rows, "bound_folded_mean", depths, widths)
            + "\n\n### mean regions per path\n\n"
            + cell_table(rows, "mean_regions", depths, widths, "{:.1f}")
            + "\n"
        )
    try:
        heatmaps(rows, depths, widths, out / "heatmaps.png")
        asymmetry_plot(rows, out / "asymmetry.png")
    except ImportError as err:
        log(f"figures skipped: {err}")
    log(f"report: {len(rows)} runs; tables in {out / 'tables.md'}")
    return summary


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", help="directory with the four MNIST IDX files")
    p.add_argument("--out", default=str(ROOT / "experiments" / "results" / "width-depth"))
    p.add_argument("--phase", choices=["all", "study", "report"], default="all")
    p.add_argument("--depths", nargs="+", type=int, default=[1, 2, 3, 4, 5, 6])
    p.add_argument("--widths", nargs="+", type=int, default=[10, 20, 40, 80])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument(
        "--pairs",
        type=int,
        default=1800,
        help="inter-class test pairs per network (spread over the 90 ordered digit pairs)",
    )
    p.add_argument("--pair-seed", type=int, default=0)
    p.add_argument("--n-boot", type=int, default=300)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    run_provenance()  # taken now: the runs record the code this process started with
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    if args.phase in ("all", "study"):
        if not args.data_dir:
            p.error("--data-dir is needed to train and measure")
        data = load_mnist(args.data_dir)
        log(
            f"data {data.describe()['n_train']} train / {data.describe()['n_test']} test, grid depths {args.depths} "
            f"x widths {args.widths} x seeds {args.seeds}, {args.epochs} epochs, {args.pairs} pairs per network"
        )
        run_grid(data, args, out)
    if args.phase in ("all", "report"):
        report(out, args.depths, args.widths)
    return 0


if __name__ == "__main__":
    sys.exit(main())
