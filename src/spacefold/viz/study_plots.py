"""The figures of a depth study (``spacefold demo`` and ``spacefold sweep``, the MNIST depth study):
Φ_N against depth, the χ histograms, per-layer folding, the centroid ablation; in the style of
:mod:`spacefold.viz.plot`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError
from .plot import SEQUENTIAL, _save, add_caption, colour, new_figure

__all__ = ["study_figures", "phi_vs_depth", "chi_histograms", "per_layer_folding", "centroid_ablation"]


def _depth_jitter(rows, key="depth"):
    d = np.array([r[key] for r in rows], dtype=float)
    seeds = np.array([r.get("seed", 0) for r in rows], dtype=float)
    span = max(seeds.max() - seeds.min(), 1.0) if seeds.size else 1.0
    return d + 0.25 * ((seeds - seeds.min()) / span - 0.5)


def _study_context(rows: Sequence[dict]) -> str:
    """'<data set>, MLPs 1x60 ... 6x10, <n> seeds, <walked> paths walked per run (<inter> inter-class)'."""
    data = {(r.get("settings") or {}).get("data", {}).get("name") for r in rows} - {None}
    archs = sorted({r["arch"] for r in rows}, key=lambda a: [r["depth"] for r in rows if r["arch"] == a][0])
    seeds = {r.get("seed") for r in rows}

    def span(key):
        v = sorted({int(r[key]) for r in rows if key in r})
        return "" if not v else f"{v[0]}" if len(v) == 1 else f"{v[0]}-{v[-1]}"

    walked, inter = span("n_paths"), span("n_inter_class_paths")
    p = (
        f"{walked} paths walked per run" + (f" ({inter} inter-class)" if inter and inter != walked else "")
        if walked
        else f"{inter} inter-class paths per run"
        if inter
        else ""
    )
    arch = archs[0] if len(archs) == 1 else f"{archs[0]} ... {archs[-1]}"
    return ", ".join(x for x in [" / ".join(sorted(data)) or None, f"MLPs {arch}", f"{len(seeds)} seeds", p] if x)


def _arch_order(rows):
    return sorted({r["arch"] for r in rows}, key=lambda a: [r["depth"] for r in rows if r["arch"] == a][0])


def phi_vs_depth(
    rows: Sequence[dict],
    path,
    *,
    stat: str = "phi",
    min_accuracy: float | None = None,
    formats: Sequence[str] | None = None,
) -> Path:
    """``stat`` (with its bootstrap CI) against depth, one point per run, coloured by test accuracy.

    Runs below ``min_accuracy`` are drawn hollow; the line joins per-depth medians of
    the runs that reach it.
    """
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    labels = {
        "phi": "Φ_N (median of non-zero χ)",
        "fraction_folded": "share of folded paths",
        "phi_max_p2": "median of maxima (P2 aggregate)",
        "phi_max": "median of non-zero profile maxima",
    }
    ci_key = {
        "phi": "phi_ci",
        "fraction_folded": "fraction_ci",
        "phi_max_p2": "phi_max_p2_ci",
        "phi_max": "phi_max_ci",
    }.get(stat)
    fig = new_figure(6.0, 4.4)
    ax = fig.add_subplot(1, 1, 1)
    acc = np.array([r["test_accuracy"] for r in rows])
    x = _depth_jitter(rows)
    y = np.array([r[stat] for r in rows])
    lo, hi = float(acc.min()), float(acc.max())
    norm_acc = (acc - lo) / (hi - lo) if hi > lo else np.full_like(acc, 0.5)
    cmap = colormaps[SEQUENTIAL]
    good = acc >= (min_accuracy if min_accuracy is not None else -1)
    has_ci = False
    for k in range(len(rows)):
        c = cmap(norm_acc[k])
        if ci_key and ci_key in rows[k]:
            ci = rows[k][ci_key]
            ax.plot([x[k], x[k]], ci, color=c, lw=1.2)
            has_ci = True
        ax.scatter([x[k]], [y[k]], s=36, facecolors=c if good[k] else "none", edgecolors=c, zorder=3)
    depths = sorted({r["depth"] for r in rows})
    med = [np.median([r[stat] for r, g in zip(rows, good) if r["depth"] == d and g] or [np.nan]) for d in depths]
    ax.plot(depths, med, color="0.3", lw=1, ls="--", label="median of kept runs")
    fig.colorbar(ScalarMappable(norm=Normalize(lo, hi), cmap=cmap), ax=ax, label="test accuracy")
    ax.set_xticks(depths)
    arch = {r["depth"]: r["arch"] for r in rows}
    ax.set_xticklabels([arch[d] for d in depths])
    ax.set_xlabel("architecture (depth x width)")
    ax.set_ylabel(labels.get(stat, stat))
    ax.set_title(f"{labels.get(stat, stat)} vs depth\n{_study_context(rows)}", fontsize=9)
    ax.legend(fontsize=8, loc="best")
    n_boot = {(r.get("settings") or {}).get("n_boot") for r in rows} - {None}
    cap = "One point per run (architecture x seed, seeds spread sideways). "
    if has_ci:
        resamples = ", ".join(str(b) for b in sorted(n_boot))  # type: ignore[type-var]
        cap += (
            "Vertical bars: 95% percentile bootstrap interval of the run's statistic over its paths"
            + (f" ({resamples} resamples)" if n_boot else "")
            + "; "
        )
    cap += "colour: test accuracy."
    if min_accuracy is not None:
        cap += f" Hollow: test accuracy < {min_accuracy:.2f}, left out of the dashed median line."
    add_caption(fig, cap)
    return _save(fig, path, formats)


def chi_histograms(rows: Sequence[dict], path, formats: Sequence[str] | None = None) -> Path:
    """Histograms of the non-zero χ of every architecture (seeds pooled), as densities."""
    fig = new_figure(6.0, 4.4)
    ax = fig.add_subplot(1, 1, 1)
    archs = _arch_order(rows)
    for n, a in enumerate(archs):
        rs = [r for r in rows if r["arch"] == a]
        h = rs[0]["chi_histogram"]
        counts = np.sum([r["chi_histogram"]["counts_nonzero"] for r in rs], axis=0).astype(float)
        edges = np.linspace(h["range"][0], h["range"][1], h["bins"] + 1)
        if counts.sum() > 0:
            dens = counts / counts.sum() / np.diff(edges)
            ax.stairs(dens, edges, color=colour(n, len(archs)), lw=1.6, label=f"{a} ({int(counts.sum())} folded paths)")
    ax.set_xlabel("χ (paths with χ > 0)")
    ax.set_ylabel("density")
    ax.set_title(f"distribution of non-zero χ, inter-class paths\n{_study_context(rows)}", fontsize=9)
    ax.legend(fontsize=7)
    add_caption(
        fig,
        "Histogram of χ over the folded inter-class paths of every architecture, seeds pooled, "
        "normalised to unit area. No error bars.",
    )
    return _save(fig, path, formats)


def per_layer_folding(
    rows: Sequence[dict], path, stat: str = "fraction_folded", formats: Sequence[str] | None = None
) -> Path:
    """Per-layer folding (each hidden layer's bits alone), mean ± sd over seeds, one line per architecture."""
    fig = new_figure(6.0, 4.4)
    ax = fig.add_subplot(1, 1, 1)
    archs = _arch_order(rows)
    for n, a in enumerate(archs):
        rs = [r for r in rows if r["arch"] == a and r.get("per_layer")]
        if not rs:
            continue
        vals = np.array([[lay[stat] for lay in r["per_layer"]] for r in rs])
        ax.errorbar(
            np.arange(1, vals.shape[1] + 1),
            vals.mean(0),
            yerr=vals.std(0) if len(rs) > 1 else None,
            marker="o",
            color=colour(n, len(archs)),
            capsize=2,
            label=a,
        )
    ax.set_xlabel("hidden layer")
    ax.set_ylabel(
        {
            "fraction_folded": "share of paths folded by this layer's bits",
            "phi": "Φ_N of this layer's bits",
            "mean_chi": "mean χ of this layer's bits",
        }.get(stat, stat)
    )
    ax.set_title(f"per-layer folding\n{_study_context(rows)}", fontsize=9)
    ax.legend(fontsize=8)
    add_caption(
        fig,
        "Each layer's bits alone, walked along the same paths. Points: mean over seeds; error bars: "
        "± one standard deviation over seeds (none with one seed).",
    )
    return _save(fig, path, formats)


def study_figures(
    rows: Sequence[dict], outdir, *, min_accuracy: float | None = None, formats: Sequence[str] = ("png", "svg")
) -> list[Path]:
    """All figures of a depth study in ``outdir``, once per format in ``formats``; returns the
    paths of the first format's files."""
    if not rows:
        raise InputError("rows must hold at least one run, got none")
    outdir = Path(outdir)
    figs = [
        phi_vs_depth(rows, outdir / "phi-vs-depth.png", stat="phi", min_accuracy=min_accuracy, formats=formats),
        phi_vs_depth(
            rows,
            outdir / "fraction-folded-vs-depth.png",
            stat="fraction_folded",
            min_accuracy=min_accuracy,
            formats=formats,
        ),
        phi_vs_depth(
            rows, outdir / "phi-max-p2-vs-depth.png", stat="phi_max_p2", min_accuracy=min_accuracy, formats=formats
        ),
        chi_histograms(rows, outdir / "chi-histograms.png", formats=formats),
    ]
    if any(r.get("per_layer") for r in rows):
        figs.append(per_layer_folding(rows, outdir / "per-layer-folding.png", formats=formats))
    return figs


def centroid_ablation(results: Sequence[dict], path, formats: Sequence[str] | None = None) -> Path:
    """Mean ± sd of χ against the number of clusters (one class / both classes), with the
    all-pairs value as a horizontal line (docs/method.md, 'The global measure')."""
    fig = new_figure(9.0, 4.2)
    axes = [fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)]
    for n, r in enumerate(results):
        c = colour(n, len(results))
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
    add_caption(
        fig,
        "Points: mean χ over the paths between cluster centroids; error bars: ± one standard deviation "
        "of χ over those paths. Dashed: mean χ over all pairs of samples.",
    )
    return _save(fig, path, formats)
