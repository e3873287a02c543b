"""Tables and figures of the transformer folding study (docs/transformer-folding.md) from its run JSONs.

    python experiments/transformer_folding_report.py [--out experiments/results/transformer-folding]

Writes ``tables.md`` and ``summary.json`` in ``--out`` and the figures in ``--figures``
(default: docs/transformer-folding/ for the study's own results folder, ``<out>/figures`` for any other).
Intervals are 95% percentile intervals of a two-level bootstrap:
each replicate draws the test pairs with replacement (one draw shared by every network of a family,
since they all walk the same pairs) and, at every depth, the seeds with replacement; so an interval
covers the seed-to-seed spread and the pair set, and a difference of two depths keeps the pairing of
the paths. Accuracy intervals are Student-t over seeds (spacefold.studies.depth.seed_mean_ci).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from spacefold._util import atomic_write
from spacefold.studies.depth import seed_mean_ci, spearman

sys.path.insert(0, str(Path(__file__).resolve().parent))
from transformer_folding_study import FAMILIES, read_per_path, read_runs

ROOT = Path(__file__).resolve().parent.parent
LABEL = {"vit": "ViT (GELU MLPs)", "swiglu": "SwiGLU MLP", "gelu": "GELU MLP", "relu": "ReLU MLP"}
N_BOOT = 1000


def median_nonzero(v: np.ndarray) -> float:
    nz = v[v > 0]
    return float(np.median(nz)) if nz.size else 0.0


STATS = {
    "phi": lambda p: median_nonzero(p["chi"]),
    "phi_max": lambda p: median_nonzero(p["max_profile"]),
    "fraction_folded": lambda p: float((p["chi"] > 0).mean()),
}


def family_bootstrap(by_depth: dict[int, list[dict]], stat, n_boot: int = N_BOOT, seed: int = 0):
    """``by_depth``: depth -> per-seed per-path dicts (arrays of one length n). Returns the estimate per
    depth (mean over seeds of ``stat``) and the bootstrap replicates ``(n_boot, n_depths)``."""
    depths = sorted(by_depth)
    n = len(by_depth[depths[0]][0]["chi"])
    rng = np.random.default_rng(seed)
    est = np.array([np.mean([stat(g) for g in by_depth[d]]) for d in depths])
    reps = np.empty((n_boot, len(depths)))
    for b in range(n_boot):
        idx = rng.integers(0, n, n)
        for k, d in enumerate(depths):
            gs = by_depth[d]
            picked = rng.integers(0, len(gs), len(gs))
            reps[b, k] = np.mean([stat(_take(gs[s], idx)) for s in picked])
    return depths, est, reps


def _prefix(ps: list[dict], n: int) -> list[dict]:
    """The per-path arrays of runs cut to their first ``n`` paths."""
    return [p if len(p["chi"]) == n else _take(p, np.arange(n)) for p in ps]


def _take(p: dict, idx: np.ndarray) -> dict:
    return {k: (v[idx] if isinstance(v, np.ndarray) else {kk: vv[idx] for kk, vv in v.items()}) for k, v in p.items()}


def interval(reps: np.ndarray) -> tuple[float, float]:
    lo, hi = np.quantile(reps, [0.025, 0.975])
    return float(lo), float(hi)


def layer_stat(k: int, which: str = "phi"):
    def f(p):
        names = list(p["per_layer"])
        v = p["per_layer"][names[k]]
        return median_nonzero(v) if which == "phi" else float((v > 0).mean())

    return f


def report(out: Path, runs: list[dict], args=None, figures: Path | None = None) -> dict:
    out = Path(out)
    if figures is None:  # the study's own results draw the page's figures; any other folder its own
        default = (ROOT / "experiments" / "results" / "transformer-folding").resolve()
        figures = ROOT / "docs" / "transformer-folding" if out.resolve() == default else out / "figures"
    figures = Path(figures)
    planned = len(FAMILIES) * 6 * 3  # the study's default plan
    if args is not None and hasattr(args, "families"):
        planned = len(args.families) * len(args.depths) * len(args.seeds)
    fams = [f for f in FAMILIES if any(r["settings"]["family"] == f for r in runs)]
    summary: dict = {"n_runs": len(runs), "n_planned": planned, "families": {}}
    lines = [f"{len(runs)} of {planned if planned else '?'} runs finished.\n"]
    lines += [
        "## Global folding by depth\n",
        "Mean over seeds [95% interval over seeds and test pairs]; accuracy: mean [t interval over seeds].\n",
        (
            "| family | depth | seeds | walk | paths | complete | test acc. | Φ_N | median of maxima "
            "| share folded | regions/path | CPU s/path |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    layer_lines = [
        "## Per layer\n",
        (
            "Φ_N of each layer's bits alone (χ of the path walked in the pattern of that "
            "layer only), mean over seeds [95% interval].\n"
        ),
    ]
    trend_lines = [
        "## Depth trend\n",
        (
            "Spearman's ρ of depth and the per-network Φ_N over every finished network "
            "of a family; Φ_N at the deepest finished depth minus Φ_N at depth 1 [95% "
            "interval, paths paired, on the pairs every network of the family walked].\n"
        ),
        "| family | networks | ρ(depth, Φ_N) | ΔΦ_N (deepest − depth 1) | Δ share folded |",
        "|---|---|---|---|---|",
    ]
    for fam in fams:
        rs = [r for r in runs if r["settings"]["family"] == fam]
        by_depth: dict[int, list[dict]] = {}
        recs: dict[int, list[dict]] = {}
        for r in sorted(rs, key=lambda r: (r["settings"]["depth"], r["settings"]["seed"])):
            by_depth.setdefault(r["settings"]["depth"], []).append(read_per_path(r))
            recs.setdefault(r["settings"]["depth"], []).append(r)
        # a longer walk extends a shorter one (its pairs are a prefix of the same order): the depths are compared on
        # the pairs every network of the family walked, each depth's row takes the pairs all its seeds walked
        by_depth = {d: _prefix(ps, min(len(p["chi"]) for p in ps)) for d, ps in by_depth.items()}
        n_common = min(len(ps[0]["chi"]) for ps in by_depth.values())
        fs: dict = {"depths": {}, "n_paths_compared": n_common}
        common = {d: _prefix(ps, n_common) for d, ps in by_depth.items()}
        res = {k: family_bootstrap(common, f) for k, f in STATS.items()}
        depths = res["phi"][0]
        for k, d in enumerate(depths):
            rr = recs[d]
            n_d = len(by_depth[d][0]["chi"])
            own = res if n_d == n_common else {s: family_bootstrap({d: by_depth[d]}, f) for s, f in STATS.items()}
            col = 0 if n_d != n_common else k
            acc = seed_mean_ci([r["test_accuracy"] for r in rr])
            row = {
                "seeds": [r["settings"]["seed"] for r in rr],
                "test_accuracy": acc,
                "share_complete": float(np.mean([r["share_complete"] for r in rr])),
                "mean_regions": float(np.mean([r["mean_regions"] for r in rr])),
                "cpu_seconds_per_path": float(np.mean([r["cpu_seconds_per_path"] for r in rr])),
                "n_paths": n_d,
                "method": rr[0]["settings"]["method"],
            }
            for s, (_, est, reps) in own.items():
                row[s] = [float(est[col]), *interval(reps[:, col])]
            fs["depths"][d] = row
            accs = f"{acc[0]:.4f}" + (f" [{acc[1]:.4f}, {acc[2]:.4f}]" if len(rr) > 1 else "")
            lines.append(
                f"| {LABEL[fam]} | {d} | {len(rr)} | {row['method']} | {row['n_paths']} | {row['share_complete']:.2f} "
                f"| {accs} | "
                + " | ".join(f"{row[s][0]:.3f} [{row[s][1]:.3f}, {row[s][2]:.3f}]" for s in STATS)
                + f" | {row['mean_regions']:.1f} | {row['cpu_seconds_per_path']:.3f} |"
            )
        # per layer
        layer_lines += [
            f"\n{LABEL[fam]}:\n",
            "| depth | " + " | ".join(f"layer {k + 1}" for k in range(max(depths))) + " |",
            "|---|" + "---|" * max(depths),
        ]
        fs["per_layer"] = {}
        for d in depths:
            cells = []
            fs["per_layer"][d] = []
            for k in range(d):
                _, est, reps = family_bootstrap({d: by_depth[d]}, layer_stat(k), n_boot=N_BOOT // 2)
                lo, hi = interval(reps[:, 0])
                fs["per_layer"][d].append([float(est[0]), lo, hi])
                cells.append(f"{est[0]:.3f} [{lo:.3f}, {hi:.3f}]")
            layer_lines.append(f"| {d} | " + " | ".join(cells + ["·"] * (max(depths) - d)) + " |")
        # trend
        xs = [r["settings"]["depth"] for r in rs]
        rho = spearman(xs, [r["phi"] for r in rs])
        fs["spearman_depth_phi"] = rho
        if len(depths) >= 2 and depths[0] == 1:
            diffs = {}
            for s in ("phi", "fraction_folded"):
                _, est, reps = res[s]
                diffs[s] = [float(est[-1] - est[0]), *interval(reps[:, -1] - reps[:, 0])]
            fs["delta_deepest_minus_1"] = {"deepest": depths[-1], **diffs}
            trend_lines.append(
                f"| {LABEL[fam]} | {len(rs)} | {rho:.2f} | {diffs['phi'][0]:+.3f} [{diffs['phi'][1]:+.3f}, "
                f"{diffs['phi'][2]:+.3f}] (depth {depths[-1]}) | {diffs['fraction_folded'][0]:+.3f} "
                f"[{diffs['fraction_folded'][1]:+.3f}, {diffs['fraction_folded'][2]:+.3f}] |"
            )
        summary["families"][fam] = fs
    audit_lines = [
        "## What bisection missed\n",
        (
            "The certified walk of the first pairs of every network walked with "
            "bisection (over the seeds: paths audited, share of them where the "
            "certified walk found more regions, share where χ differs, the "
            "largest |Δχ|, share of certified walks complete).\n"
        ),
        "| family | depth | paths | more regions | χ differs | max abs(Δχ) | certified complete |",
        "|---|---|---|---|---|---|---|",
    ]
    summary["audit"] = {}
    for fam in fams:
        for d in sorted({r["settings"]["depth"] for r in runs if r["settings"]["family"] == fam}):
            au = [
                r["audit"]
                for r in runs
                if r["settings"]["family"] == fam and r["settings"]["depth"] == d and r.get("audit")
            ]
            if not au:
                continue
            n = sum(a["n_paths"] for a in au)
            row = {
                "n_paths": n,
                **{
                    k: sum(a[k] * a["n_paths"] for a in au) / n
                    for k in ("share_more_regions", "share_chi_differs", "share_certified_complete")
                },
                "max_abs_chi_difference": max(a["max_abs_chi_difference"] for a in au),
            }
            summary["audit"][f"{fam}_d{d}"] = row
            audit_lines.append(
                f"| {LABEL[fam]} | {d} | {n} | {row['share_more_regions']:.2f} | "
                f"{row['share_chi_differs']:.2f} | {row['max_abs_chi_difference']:.3f} | "
                f"{row['share_certified_complete']:.2f} |"
            )
    text = "\n".join(lines) + "\n\n" + "\n".join(trend_lines) + "\n\n" + "\n".join(layer_lines) + "\n"
    if summary["audit"]:
        text += "\n" + "\n".join(audit_lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "tables.md") as fh:
        fh.write(text)
    with atomic_write(out / "summary.json") as fh:
        json.dump(summary, fh, indent=1)
    if fams:
        plots(summary, figures)
    return summary


def plots(summary: dict, figures: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures.mkdir(parents=True, exist_ok=True)
    fams = summary["families"]
    for stat, ylabel, fname in (
        ("phi", "Φ_N (median of non-zero χ)", "phi-vs-depth.png"),
        ("phi_max", "median of profile maxima", "phi-max-vs-depth.png"),
        ("fraction_folded", "share of paths folded", "fraction-folded-vs-depth.png"),
    ):
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        for k, (fam, fs) in enumerate(fams.items()):
            ds = sorted(int(d) for d in fs["depths"])
            v = np.array([fs["depths"][d][stat] for d in ds])
            x = np.array(ds) + (k - 1.5) * 0.06
            ax.errorbar(
                x, v[:, 0], yerr=[v[:, 0] - v[:, 1], v[:, 2] - v[:, 0]], marker="o", capsize=3, label=LABEL[fam]
            )
        ax.set_xlabel("depth (blocks / hidden layers, width 32)")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(figures / fname, dpi=110)
        plt.close(fig)
    fig, axes = plt.subplots(1, len(fams), figsize=(3.2 * len(fams), 3.2), sharey=True, squeeze=False)
    for ax, (fam, fs) in zip(axes[0], fams.items()):
        for d, vals in sorted(fs["per_layer"].items(), key=lambda kv: int(kv[0])):
            v = np.array(vals)
            ax.plot(np.arange(1, len(v) + 1), v[:, 0], marker="o", label=f"depth {d}")
        ax.set_title(LABEL[fam], fontsize=9)
        ax.set_xlabel("layer")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("Φ_N of the layer's bits alone")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(figures / "per-layer.png", dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "experiments" / "results" / "transformer-folding"))
    p.add_argument("--figures", default=None, help="folder of the figures (default: see above)")
    args = p.parse_args(argv)
    report(Path(args.out), read_runs(Path(args.out)), None, args.figures)
    print((Path(args.out) / "tables.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
