"""Figures of depth studies (matplotlib, optional dependency; nothing upstream imports this).

Figures are drawn on ``matplotlib.figure.Figure`` objects with the Agg canvas, so
no display and no global pyplot state are needed, and saved atomically.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._util import atomic_path

__all__ = ["study_figures", "phi_vs_depth", "chi_histograms", "per_layer_folding", "centroid_ablation"]


def _figure(w: float = 6.0, h: float = 4.0):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("plots need matplotlib: pip install 'spacefold[plot]'") from None
    fig = Figure(figsize=(w, h), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png")
    return path


def _depth_jitter(rows, key="depth"):
    d = np.array([r[key] for r in rows], dtype=float)
    seeds = np.array([r.get("seed", 0) for r in rows], dtype=float)
    span = max(seeds.max() - seeds.min(), 1.0) if seeds.size else 1.0
    return d + 0.25 * ((seeds - seeds.min()) / span - 0.5)


def phi_vs_depth(rows: Sequence[dict], path, *, stat: str = "phi", min_accuracy: float | None = None) -> Path:
    """``stat`` (with its bootstrap CI) against depth, one point per run, coloured by test accuracy.

    Runs below ``min_accuracy`` are drawn hollow; the line joins per-depth medians of
    the runs that reach it.
    """
    from matplotlib import colormaps

    labels = {"phi": "Φ_N (median of non-zero χ)", "fraction_folded": "share of folded paths",
              "phi_max_p2": "median of maxima (P2 aggregate)", "phi_max": "median of non-zero profile maxima"}
    ci_key = {"phi": "phi_ci", "fraction_folded": "fraction_ci", "phi_max_p2": "phi_max_p2_ci",
              "phi_max": "phi_max_ci"}.get(stat)
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    acc = np.array([r["test_accuracy"] for r in rows])
    x = _depth_jitter(rows)
    y = np.array([r[stat] for r in rows])
    lo, hi = float(acc.min()), float(acc.max())
    norm_acc = (acc - lo) / (hi - lo) if hi > lo else np.full_like(acc, 0.5)
    cmap = colormaps["viridis"]
    good = acc >= (min_accuracy if min_accuracy is not None else -1)
    for k in range(len(rows)):
        c = cmap(norm_acc[k])
        if ci_key and ci_key in rows[k]:
            ci = rows[k][ci_key]
            ax.plot([x[k], x[k]], ci, color=c, lw=1)
        ax.scatter([x[k]], [y[k]], s=36, facecolors=c if good[k] else "none", edgecolors=c, zorder=3)
    depths = sorted({r["depth"] for r in rows})
    med = [np.median([r[stat] for r, g in zip(rows, good) if r["depth"] == d and g] or [np.nan]) for d in depths]
    ax.plot(depths, med, color="0.4", lw=1, ls="--", label="median of kept runs")
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    sm = ScalarMappable(norm=Normalize(lo, hi), cmap=cmap)
    fig.colorbar(sm, ax=ax, label="test accuracy")
    ax.set_xticks(depths)
    arch = {r["depth"]: r["arch"] for r in rows}
    ax.set_xticklabels([arch[d] for d in depths])
    ax.set_xlabel("architecture (depth x width)")
    ax.set_ylabel(labels.get(stat, stat))
    title = "folding vs depth"
    if min_accuracy is not None:
        title += f" (hollow: test acc. < {min_accuracy:.2f})"
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def chi_histograms(rows: Sequence[dict], path) -> Path:
    """Histograms of the non-zero χ of every architecture (seeds pooled), as densities."""
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    archs = sorted({r["arch"] for r in rows}, key=lambda a: [r["depth"] for r in rows if r["arch"] == a][0])
    from matplotlib import colormaps

    cmap = colormaps["plasma"]
    for n, a in enumerate(archs):
        rs = [r for r in rows if r["arch"] == a]
        h = rs[0]["chi_histogram"]
        counts = np.sum([r["chi_histogram"]["counts_nonzero"] for r in rs], axis=0).astype(float)
        edges = np.linspace(h["range"][0], h["range"][1], h["bins"] + 1)
        if counts.sum() > 0:
            dens = counts / counts.sum() / np.diff(edges)
            ax.stairs(dens, edges, color=cmap(n / max(len(archs) - 1, 1)), lw=1.5,
                      label=f"{a} ({int(counts.sum())} folded paths)")
    ax.set_xlabel("χ (paths with χ > 0)")
    ax.set_ylabel("density")
    ax.set_title("distribution of non-zero χ, inter-class paths", fontsize=10)
    ax.legend(fontsize=7)
    return _save(fig, path)


def per_layer_folding(rows: Sequence[dict], path, stat: str = "fraction_folded") -> Path:
    """Per-layer folding (each hidden layer's bits alone), mean over seeds, one line per architecture."""
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    archs = sorted({r["arch"] for r in rows}, key=lambda a: [r["depth"] for r in rows if r["arch"] == a][0])
    from matplotlib import colormaps

    cmap = colormaps["plasma"]
    for n, a in enumerate(archs):
        rs = [r for r in rows if r["arch"] == a and r.get("per_layer")]
        if not rs:
            continue
        vals = np.array([[lay[stat] for lay in r["per_layer"]] for r in rs])
        ax.plot(np.arange(1, vals.shape[1] + 1), vals.mean(0), marker="o", color=cmap(n / max(len(archs) - 1, 1)),
                label=a)
    ax.set_xlabel("hidden layer")
    ax.set_ylabel({"fraction_folded": "share of paths folded by this layer's bits",
                   "phi": "Φ_N of this layer's bits", "mean_chi": "mean χ of this layer's bits"}.get(stat, stat))
    ax.set_title("per-layer folding (mean over seeds)", fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path)


def study_figures(rows: Sequence[dict], outdir, *, min_accuracy: float | None = None) -> list[Path]:
    """All figures of a depth study in ``outdir``; returns their paths."""
    if not rows:
        raise ValueError("rows must hold at least one run, got none")
    outdir = Path(outdir)
    figs = [
        phi_vs_depth(rows, outdir / "phi-vs-depth.png", stat="phi", min_accuracy=min_accuracy),
        phi_vs_depth(rows, outdir / "fraction-folded-vs-depth.png", stat="fraction_folded",
                     min_accuracy=min_accuracy),
        phi_vs_depth(rows, outdir / "phi-max-p2-vs-depth.png", stat="phi_max_p2", min_accuracy=min_accuracy),
        chi_histograms(rows, outdir / "chi-histograms.png"),
    ]
    if any(r.get("per_layer") for r in rows):
        figs.append(per_layer_folding(rows, outdir / "per-layer-folding.png"))
    return figs


def centroid_ablation(results: Sequence[dict], path) -> Path:
    """Mean ± sd of χ against the number of clusters (one class / both classes), with the
    all-pairs value as a horizontal line (FOLDING.md §10.3)."""
    fig = _figure(9.0, 3.8)
    axes = [fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)]
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    for n, r in enumerate(results):
        c = cmap(n % 10)
        for ax, key in zip(axes, ("one_class", "two_classes")):
            ks = [e["k"] for e in r[key]]
            m = np.array([e["mean_chi"] for e in r[key]])
            s = np.array([e["std_chi"] for e in r[key]])
            ax.errorbar(ks, m, yerr=s, marker="o", color=c, capsize=3, label=f"{r['arch']} centroids")
            ax.axhline(r["all_pairs"]["mean_chi"], color=c, ls="--", lw=1, label=f"{r['arch']} all pairs")
    for ax, t in zip(axes, ("within one class", "within two classes")):
        ax.set_xscale("log")
        ax.set_xlabel("clusters per class")
        ax.set_ylabel("mean ± sd of χ")
        ax.set_title(f"clustering {t}", fontsize=10)
        ax.legend(fontsize=7)
    return _save(fig, path)
