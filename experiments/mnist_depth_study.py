"""MNIST depth study (arXiv 2502.09954, docs/mnist-depth-study.md; docs/method.md, 'The global measure').

Trains the 60-neuron depth series (1x60, 2x30, 3x20, 4x15, 5x12, 6x10) with several
seeds on the full MNIST training set (Adam, lr 1e-3, batch 128, 30 epochs), measures
each network on pairs of MNIST test images, runs the centroid ablation (1-100
k-means clusters vs all pairs of one digit pair) and writes the study's page (into --out;
--doc and --figures put the page and its figures elsewhere, such as docs/).

    python experiments/mnist_depth_study.py --data-dir /path/to/mnist            # everything
    python experiments/mnist_depth_study.py --data-dir DIR --phase train         # train (checkpoints) only
    python experiments/mnist_depth_study.py --data-dir DIR --phase study         # train + measure
    python experiments/mnist_depth_study.py --data-dir DIR --phase ablation
    python experiments/mnist_depth_study.py --data-dir DIR --phase report        # tables, plots, page in --out
    python experiments/mnist_depth_study.py --data-dir DIR --phase report --figures docs/mnist-depth-study \
        --doc docs/mnist-depth-study.md                                            # the docs' page and figures

Every phase resumes: finished runs are read back, not recomputed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

import spacefold as sf
from spacefold._core.global_folding import global_folding
from spacefold._core.pairs import PairBlock, PairPlan, class_centroids, class_pair_block
from spacefold._util import atomic_write, json_safe
from spacefold.cli import fraction, hidden_arch, int_in, nonnegative_int, output_dir, positive_int
from spacefold.data import load_mnist
from spacefold.models import DEPTH_SERIES, load_checkpoint
from spacefold.studies.depth import (
    StudySettings,
    depth_trend,
    markdown_summary,
    markdown_table,
    read_run,
    run_provenance,
    run_study,
    seed_mean_ci,
    summary_by_arch,
    write_tables,
)

ROOT = Path(__file__).resolve().parent.parent
ONE_CLASS_K = (1, 2, 5, 10, 20, 50, 100)
TWO_CLASS_K = (5, 10, 20, 50, 100)


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def chi_stats(g) -> dict:
    c = g.chi.numpy()
    return {
        "n_paths": int(c.size),
        "mean_chi": float(c.mean()),
        "std_chi": float(c.std()),
        "phi": g.phi,
        "fraction_folded": g.fraction_folded,
        "phi_max": g.phi_max,
    }


def ablation(model, x, y, a: int, b: int, method: str, seed: int) -> dict:
    """The centroid ablation (docs/mnist-depth-study.md, 'Centroids vs all pairs'): centroids of one class (the
    other keeps all samples), of both classes, and all |C_a| x |C_b| pairs, for the digit pair (a, b)."""
    out = {"a": a, "b": b, "method": method, "seed": seed}
    t0 = time.perf_counter()
    g = global_folding(
        model, x, y, pairs=PairPlan((class_pair_block(y, a, b),), "inter-class"), method=method, batch_size=4096
    )
    out["all_pairs"] = chi_stats(g)
    out["all_pairs"]["seconds"] = time.perf_counter() - t0
    log(f"  all pairs {a}->{b}: {out['all_pairs']}")
    xb = x[y == b]
    one, two = [], []
    for k in ONE_CLASS_K:
        ca, _ = class_centroids(x, y, k, seed=seed, classes=[a])
        xx = torch.cat([ca, xb])
        yy = torch.cat([torch.full((ca.shape[0],), a), torch.full((xb.shape[0],), b)])
        blk = PairBlock(a, b, torch.arange(ca.shape[0]), ca.shape[0] + torch.arange(xb.shape[0]))
        g = global_folding(model, xx, yy, pairs=PairPlan((blk,), "centroids-one-class"), method=method, batch_size=4096)
        one.append({"k": k, **chi_stats(g)})
        log(f"  one class k={k}: {one[-1]}")
    for k in TWO_CLASS_K:
        g = global_folding(model, x, y, pairs="centroids", n_clusters=k, classes=[a, b], method=method, seed=seed)
        g = g.subset((g.label_a == a) & (g.label_b == b))
        two.append({"k": k, **chi_stats(g)})
        log(f"  two classes k={k}: {two[-1]}")
    out["one_class"] = one
    out["two_classes"] = two
    return out


def global_centroids(model, x, y, method: str, seed: int) -> list[dict]:
    """Φ_N over all 90 ordered pairs of distinct digits with both ends replaced by the
    k-means centroids of their digit (k per digit)."""
    res = []
    for k in ONE_CLASS_K:
        g = global_folding(model, x, y, pairs="centroids", n_clusters=k, method=method, seed=seed, batch_size=4096)
        res.append({"k": k, **chi_stats(g)})
        log(f"  all digits, k={k}: {res[-1]}")
    return res


def phase_study(args, data) -> list[dict]:
    settings = StudySettings(
        epochs=args.epochs, method=args.method, pairs_per_class_pair=args.pairs_per_class_pair, n_boot=args.n_boot
    )
    rows = []
    for seed in args.seeds:  # seed by seed, so that every architecture is covered early
        rows += run_study(data, args.archs, [seed], args.out, settings, log=log)
        if seed == args.seeds[0] and args.phase == "all":
            phase_ablation(args, data)
    return rows


def phase_train(args, data) -> None:
    """Train (and checkpoint) every network; the study phase reuses the checkpoints."""
    from spacefold.models.train import train_mlp

    for arch in args.archs:
        for seed in args.seeds:
            ckpt = Path(args.out) / "models" / f"{arch}_s{seed}.pt"
            if ckpt.is_file():
                continue
            _, res = train_mlp(arch, data, epochs=args.epochs, seed=seed, checkpoint=ckpt)
            log(f"{arch}_s{seed}: test accuracy {res.final_test_accuracy:.4f} ({res.seconds:.0f} s)")


def phase_ablation(args, data) -> None:
    a, b = args.ablation_pair
    for arch in args.ablation_archs:
        name = f"{arch}_s{args.seeds[0]}"
        path = Path(args.out) / "ablation" / f"{name}_{a}-{b}.json"
        if path.is_file():
            log(f"ablation {name}: done before, skipped")
            continue
        ckpt = Path(args.out) / "models" / f"{name}.pt"
        model = load_checkpoint(ckpt)
        log(f"ablation {name} on digits {a}->{b}")
        res = ablation(model, data.x_test, data.y_test, a, b, args.method, seed=0)
        res["arch"] = arch
        res["all_digits_centroids"] = global_centroids(model, data.x_test, data.y_test, args.method, seed=0)
        with atomic_write(path) as fh:
            json.dump(json_safe(res), fh, indent=1, allow_nan=False)


def _load_rows(out: Path) -> list[dict]:
    rows = [read_run(p) for p in sorted((out / "runs").glob("*.json"))]
    if not rows:
        raise SystemExit(f"no finished run in {out / 'runs'}; run the study phase first")
    return rows


def phase_report(args, data) -> None:
    out = Path(args.out)
    rows = _load_rows(out)
    write_tables(rows, out)
    figdir = Path(args.figures) if args.figures else out / "figures"
    figs = []
    try:
        from spacefold.viz import study_plots as plot

        figs = plot.study_figures(rows, figdir, min_accuracy=args.min_accuracy)
    except ImportError as err:
        log(f"plots skipped: {err}")
    abl = [read_run(p) for p in sorted((out / "ablation").glob("*.json"))]
    if abl:
        try:
            from spacefold.viz import study_plots as plot

            figs.append(plot.centroid_ablation(abl, figdir / "centroid-ablation.png"))
        except ImportError:
            pass
    write_doc(args, rows, abl, figs, data)


def _trend_sentence(t: dict, what: str) -> str:
    med = ", ".join(f"depth {d}: {v:.4f}" for d, v in t["median_by_depth"].items())
    rho = t["spearman_depth"]
    verdict = (
        "increase monotonically with depth" if t["medians_increase"] else "do not increase monotonically with depth"
    )
    return (
        f"Over the {t['n_runs']} of {t['n_runs_total']} runs with test accuracy ≥ {t['min_accuracy']:.2f}, "
        f"the per-depth medians of {what} are {med}; they {verdict}; Spearman rank correlation of depth and "
        f"{what} over those runs: ρ = {rho:.3f}."
    )


def seed_ci_table(rows) -> str:
    lines = ["| arch | seeds | test acc. | Φ_N | share folded | phi_max_p2 |", "|---|---|---|---|---|---|"]
    for a in [s["arch"] for s in summary_by_arch(rows)]:
        rs = [r for r in rows if r["arch"] == a]
        cells = []
        for k in ("test_accuracy", "phi", "fraction_folded", "phi_max_p2"):
            m, lo, hi = seed_mean_ci([r[k] for r in rs])
            cells.append(f"{m:.4f} [{lo:.4f}, {hi:.4f}]" if len(rs) > 1 else f"{m:.4f}")
        lines.append(f"| {a} | {len(rs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_layer_table(rows) -> str:
    archs = [s["arch"] for s in summary_by_arch(rows)]
    depth = max(r["depth"] for r in rows)
    lines = ["| arch | " + " | ".join(f"layer {k}" for k in range(1, depth + 1)) + " |", "|---|" + "---|" * depth]
    for a in archs:
        rs = [r for r in rows if r["arch"] == a and r.get("per_layer")]
        if not rs:
            continue
        vals = np.mean([[lay["fraction_folded"] for lay in r["per_layer"]] for r in rs], axis=0)
        cells = [f"{v:.4f}" for v in vals] + [""] * (depth - len(vals))
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_doc(args, rows, abl, figs, data) -> None:
    doc = Path(args.doc) if args.doc else Path(args.out) / "mnist-depth-study.md"
    s0 = rows[0]["settings"]
    seeds = sorted({r["seed"] for r in rows})
    cmd = (
        f"python experiments/mnist_depth_study.py --data-dir {args.data_dir_shown} --seeds "
        f"{' '.join(map(str, seeds))} --pairs-per-class-pair {s0['pairs_per_class_pair']} "
        f"--method {s0['method']}"
    )
    t_phi = depth_trend(rows, args.min_accuracy, "phi")
    t_p2 = depth_trend(rows, args.min_accuracy, "phi_max_p2")
    t_frac = depth_trend(rows, args.min_accuracy, "fraction_folded")
    t_all = depth_trend(rows, 0.0, "phi")
    acc = {s["arch"]: s for s in summary_by_arch(rows)}
    lines = [
        "# MNIST depth study",
        "",
        "Reproduction of the MNIST depth study of arXiv 2502.09954 (docs/method.md, 'The global measure') "
        "with `spacefold`.",
        "",
        "Command (all phases; each resumes from the files it finds):",
        "",
        f"```bash\n{cmd}\n```",
        "",
        "This page and its figures are written by the report phase (the text between the `STATEMENT` markers is kept):",
        "",
        f"```bash\npython experiments/mnist_depth_study.py --data-dir {args.data_dir_shown} --phase report "
        "--figures docs/mnist-depth-study --doc docs/mnist-depth-study.md\n```",
        "",
        "## Set-up",
        "",
        f"- Data: MNIST IDX files, {data.describe()['n_train']} training and {data.describe()['n_test']} test images, "
        "pixels scaled to [0, 1], flattened to 784.",
        "- Models: ReLU MLPs with 60 hidden neurons spread over depth, so the width is 60/depth "
        f"({', '.join(args.archs)}), seeds "
        f"{', '.join(map(str, seeds))} (the seed sets initialisation and shuffling).",
        f"- Training: Adam, lr {s0['lr']}, batch {s0['batch_size']}, {s0['epochs']} epochs, cross-entropy; "
        "test accuracy after the last epoch.",
        f"- Walks: method `{s0['method']}` "
        + (
            "(the exact region walk: every linear region a segment crosses, once)."
            if s0["method"] == "exact"
            else "(for ReLU networks `bisect` locates every transition to 1e-6 in t, so it is region-exact up to "
            "regions thinner than that)."
        ),
        f"- Pairs: test images, the 100 ordered digit pairs (same digit included), "
        f"{s0['pairs_per_class_pair']} random pairs per ordered digit pair (seed {s0['pair_seed']}): "
        f"{rows[0]['n_paths']} paths per network, {rows[0]['n_inter_class_paths']} of them between different "
        "digits. The papers walk every pair (about 1M per digit pair); this sample is what fits the time here.",
        "- Φ_N = median of the non-zero χ over the inter-class paths; share folded = share of inter-class paths with "
        "χ > 0; phi_max_p2 = P2's aggregate: per ordered digit pair the median of the non-zero maxima of the "
        "prefix profile, then the median over the 100 digit pairs.",
        "- χ = 1 − r1/r2 takes few distinct values (ratios of small integers), so a median sits on one of "
        "them and its bootstrap interval is often a single point.",
        f"- Confidence intervals: 95% percentile bootstrap ({s0['n_boot']} resamples, paths resampled within each "
        "digit pair). They cover the sampling of pairs for one network, not the spread over seeds (that is the "
        "± sd over seeds in the first table).",
        "",
        "## Results per architecture (mean ± sd over seeds)",
        "",
        markdown_summary(rows),
        "",
        "Mean over seeds with a 95% confidence interval over seeds (Student t; it covers the variation from "
        "one training run to the next, which is much larger than the pair-sampling intervals below):",
        "",
        seed_ci_table(rows),
        "",
        "## Results per run",
        "",
        markdown_table(rows),
        "",
        "## Per-layer folding",
        "",
        "Share of inter-class paths whose walk restricted to one hidden layer's bits folds (χ > 0), mean over "
        "seeds. The first layer never folds: it is affine along a segment, so each of its bits flips at most once.",
        "",
        per_layer_table(rows),
        "",
        "## Does folding grow with depth?",
        "",
        _trend_sentence(t_phi, "Φ_N"),
        "",
        _trend_sentence(t_p2, "phi_max_p2"),
        "",
        _trend_sentence(t_frac, "the share of folded paths"),
        "",
        f"Over all {t_all['n_runs']} runs regardless of accuracy, Spearman ρ(depth, Φ_N) = "
        f"{t_all['spearman_depth']:.3f}.",
        "",
        "Accuracy targets: 3x20 "
        + (f"{acc['3x20']['test_accuracy']:.4f}" if "3x20" in acc else "n/a")
        + " (≥ 0.95 wanted), 5x12 "
        + (f"{acc['5x12']['test_accuracy']:.4f}" if "5x12" in acc else "n/a")
        + " (≥ 0.94 wanted), mean over seeds.",
        "",
        "@@PLAIN_STATEMENT@@",
        "",
    ]
    if abl:
        lines += ["## Centroids vs all pairs", ""]
        for r in abl:
            ap = r["all_pairs"]
            lines += [
                f"### {r['arch']} (seed {args.seeds[0]}), digits {r['a']} → {r['b']}",
                "",
                f"All {ap['n_paths']} pairs: mean χ {ap['mean_chi']:.4f} ± {ap['std_chi']:.4f} (sd), "
                f"Φ_N {ap['phi']:.4f}, share folded {ap['fraction_folded']:.4f}.",
                "",
                "| centroids | k | paths | mean χ ± sd | Φ_N | share folded |",
                "|---|---|---|---|---|---|",
            ]
            for kind, key in (("digit " + str(r["a"]) + " only", "one_class"), ("both digits", "two_classes")):
                for e in r[key]:
                    lines.append(
                        f"| {kind} | {e['k']} | {e['n_paths']} | {e['mean_chi']:.4f} ± {e['std_chi']:.4f} "
                        f"| {e['phi']:.4f} | {e['fraction_folded']:.4f} |"
                    )
            lines.append("")
        rows_by = {(r["arch"], r["seed"]): r for r in rows}
        for r in abl:
            ref = rows_by.get((r["arch"], args.seeds[0]))
            if not r.get("all_digits_centroids") or ref is None:
                continue
            lines += [
                f"### {r['arch']} (seed {args.seeds[0]}), all 90 ordered pairs of distinct digits",
                "",
                f"Reference from the study (random sample of {ref['n_inter_class_paths']} inter-class pairs): "
                f"mean χ {ref['mean_chi']:.4f}, Φ_N {ref['phi']:.4f}, share folded {ref['fraction_folded']:.4f}.",
                "",
                "| centroids per digit | paths | mean χ ± sd | Φ_N | share folded |",
                "|---|---|---|---|---|",
            ]
            for e in r["all_digits_centroids"]:
                lines.append(
                    f"| {e['k']} | {e['n_paths']} | {e['mean_chi']:.4f} ± {e['std_chi']:.4f} | "
                    f"{e['phi']:.4f} | {e['fraction_folded']:.4f} |"
                )
            lines.append("")
        lines += ["@@ABLATION_STATEMENT@@", ""]
    if figs:
        lines += ["## Figures", ""]
        for f in figs:
            rel = Path(os.path.relpath(Path(f).resolve(), doc.resolve().parent))
            lines.append(f"![{Path(f).stem}]({rel.as_posix()})")
            lines.append("")
    text = "\n".join(lines)
    old = doc.read_text() if doc.is_file() else ""
    for marker in ("PLAIN_STATEMENT", "ABLATION_STATEMENT"):
        # keep the hand-written interpretation between the markers of the previous version
        block = f"<!-- {marker} -->\n<!-- /{marker} -->"
        start, end = old.find(f"<!-- {marker} -->"), old.find(f"<!-- /{marker} -->")
        if 0 <= start < end:
            block = old[start : end + len(f"<!-- /{marker} -->")]
        text = text.replace(f"@@{marker}@@", block)
    with atomic_write(doc) as fh:
        fh.write(text)
    log(f"wrote {doc}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True, help="directory with the four MNIST IDX files")
    p.add_argument("--out", type=output_dir, default=str(ROOT / "experiments" / "results" / "mnist-depth"))
    p.add_argument("--archs", nargs="+", type=hidden_arch, default=list(DEPTH_SERIES))
    p.add_argument("--seeds", nargs="+", type=nonnegative_int, default=[0, 1, 2, 3, 4])
    p.add_argument("--epochs", type=positive_int, default=30)
    p.add_argument("--pairs-per-class-pair", type=positive_int, default=5000)
    p.add_argument("--n-boot", type=positive_int, default=500)
    p.add_argument(
        "--method",
        default="exact",
        choices=["exact", "bisect", "uniform"],
        help="walk method (default exact: every region of every path)",
    )
    p.add_argument("--min-accuracy", type=fraction, default=0.94, help="well-generalising threshold (default 0.94)")
    p.add_argument("--ablation-archs", nargs="+", type=hidden_arch, default=["3x20", "5x12"])
    p.add_argument("--ablation-pair", nargs=2, type=int_in(0, 9), default=[4, 9])
    p.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        help="torch CPU threads (default 1: small MLPs train faster on one thread when cores are shared)",
    )
    p.add_argument("--phase", choices=["all", "train", "study", "ablation", "report"], default="all")
    p.add_argument("--figures", default=None, help="folder for the figures (default: <out>/figures)")
    p.add_argument("--doc", default=None, help="the page written by the report (default: <out>/mnist-depth-study.md)")
    args = p.parse_args(argv)
    run_provenance()  # taken now: the runs record the code this process started with
    args.data_dir_shown = "DIR"  # the page is shared; the folder is this machine's
    torch.set_num_threads(args.threads)
    data = load_mnist(args.data_dir)
    log(f"data {data.describe()}, method {args.method}, spacefold {sf.__version__}")
    if args.phase == "train":
        phase_train(args, data)
    if args.phase in ("all", "study"):
        phase_study(args, data)
    if args.phase == "ablation":
        phase_ablation(args, data)
    if args.phase in ("all", "report"):
        phase_report(args, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
