"""Intervals over seeds and over the pair set for the comparisons the study pages report.

Reads the recorded runs (nothing is trained) and prints, per study, each comparison with two
95% intervals: over the seeds only (Student t, spacefold.studies.depth.seed_mean_ci) and over the seeds
and the pair set (spacefold.studies.depth.seed_pair_interval: a two-level bootstrap, seeds first, then
each run's value from the spread of its pair set). Where a run records a bootstrap interval over
its paths, that interval gives its pair-set spread; the regulariser study records none (300 pairs,
Φ_N per epoch), so its pair-set spread is the one measured by experiments/pair_spread.py on the
same architectures at 300 pairs. "pairs for the effect" is the number of pairs per network at
which the pair-set part of a difference (1.96 x sqrt 2 x its sd) falls below the effect
(spacefold.studies.depth.pairs_needed).

    python experiments/pair_set_intervals.py                  # every study, markdown on stdout
    python experiments/pair_set_intervals.py --only regularizer generalisation
    python experiments/pair_set_intervals.py --only generalisation-today   # the networks rerun with today's code
    python experiments/pair_set_intervals.py --only fixed-width            # steps between depths at fixed width
    python experiments/pair_set_intervals.py --only regularizer-today      # the regulariser study's rerun
    python experiments/pair_set_intervals.py --only regularizer-scale      # pair-set spread at scale
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from spacefold.studies.depth import pairs_needed, seed_mean_ci, seed_pair_interval, spearman

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "experiments" / "results"
Z = 1.959963984540054


def _load(pattern: str) -> list:
    return [json.loads(p.read_text()) for p in sorted(RESULTS.glob(pattern))]


def _f(v, lo, hi, d=3) -> str:
    if any(isinstance(x, float) and math.isnan(x) for x in (v, lo, hi)):
        return f"{v:+.{d}f}"
    return f"{v:+.{d}f} [{lo:+.{d}f}, {hi:+.{d}f}]"


def _covers0(lo, hi) -> str:
    if math.isnan(lo) or math.isnan(hi):
        return "one seed: no interval"
    return "covers 0" if lo <= 0 <= hi else "excludes 0"


def _row(label, a, sa, b, sb, n_paths) -> str:
    """One paired comparison: per-seed values ``a`` and ``b`` and the pair-set sds of their runs."""
    m, lo, hi = seed_mean_ci(np.subtract(a, b))
    e, plo, phi_ = seed_pair_interval(
        a,
        [(v - Z * s, v + Z * s) for v, s in zip(a, sa)],
        minus=b,
        minus_cis=[(v - Z * s, v + Z * s) for v, s in zip(b, sb)],
        paired=True,
    )
    sd1 = float(np.sqrt(np.mean(np.square(list(sa) + list(sb)))))
    need = pairs_needed(m, (0.0, 2 * Z * sd1), n_paths) if m != 0 and sd1 > 0 else None
    return (
        f"| {label} | {len(a)} | {_f(m, lo, hi)} | {_f(e, plo, phi_)} ({_covers0(plo, phi_)}) | "
        f"{sd1:.4f} | {need if need is not None else 'n/a'} |"
    )


HEADER = (
    "| comparison | seeds | Δ, seeds only | Δ, seeds and pairs | pair-set sd of one run "
    "| pairs for the effect |\n"
    "|---|---|---|---|---|---|"
)


def _sd(ci) -> float:
    return (ci[1] - ci[0]) / (2 * Z)


def mnist_depth() -> str:
    rows = _load("mnist-depth/runs/*.json")
    by = {}
    for r in rows:
        by.setdefault(r["arch"], {})[r["seed"]] = r
    archs = sorted(by, key=lambda a: int(a.split("x")[0]))
    out = [
        "### MNIST depth study (60 neurons, width 60/depth; 270,000 inter-class paths per network)",
        "",
        "| arch | seeds | Φ_N, seeds only | Φ_N, seeds and pairs | pair-set sd of one run |",
        "|---|---|---|---|---|",
    ]
    for a in archs:
        rs = [by[a][s] for s in sorted(by[a])]
        v = [r["phi"] for r in rs]
        m, lo, hi = seed_mean_ci(v)
        e, plo, phi_ = seed_pair_interval(v, [r["phi_ci"] for r in rs])
        out.append(
            f"| {a} | {len(v)} | {m:.4f} [{lo:.4f}, {hi:.4f}] | {e:.4f} [{plo:.4f}, {phi_:.4f}] | "
            f"{np.mean([_sd(r['phi_ci']) for r in rs]):.4f} |"
        )
    out += ["", "Consecutive depths (the deeper minus the shallower, seeds matched by number):", "", HEADER]
    for a, b in zip(archs[1:], archs[2:]):
        out.append(_step_row(by, a, b))
    return "\n".join(out)


def _step_row(by: dict, a: str, b: str) -> str:
    """The table row of Φ_N of network ``b`` minus that of ``a`` (``by[arch][seed]``: records), seeds matched."""
    seeds = sorted(set(by[a]) & set(by[b]))
    return _row(
        f"{b} − {a}",
        [by[b][s]["phi"] for s in seeds],
        [_sd(by[b][s]["phi_ci"]) for s in seeds],
        [by[a][s]["phi"] for s in seeds],
        [_sd(by[a][s]["phi_ci"]) for s in seeds],
        by[a][seeds[0]]["n_inter_class_paths"],
    )


def _generalisation_rows(sub: str) -> list[dict]:
    rows = []
    for p in sorted((RESULTS / "generalisation" / sub).glob("*.json")):
        rows += json.loads(p.read_text())
    for r in rows:
        r["test_error"] = 1 - r["test_accuracy"]
        if r["kind"] == "long":
            r["condition"] = "reference" if r["stage"] == "standard" else f"length: {r['stage']}"
        elif r["kind"] == "noise":
            r["condition"] = f"noise {r['level']:.0%}"
        else:
            r["condition"] = f"size {int(r['level'])}"
    return rows


def generalisation(rows: list[dict] | None = None, title: str | None = None) -> str:
    rows = _generalisation_rows("runs") if rows is None else rows
    title = title or "Generalisation study (10,000 inter-class pairs per network; records of the code before 69489aa)"
    archs = [a for a in ("3x20", "5x12") if any(r["arch"] == a for r in rows)]
    out = [f"### {title}", "", "Δ Φ_N, each condition minus the reference network of the same seed:", "", HEADER]
    for arch in archs:
        ref = {r["seed"]: r for r in rows if r["arch"] == arch and r["condition"] == "reference"}
        conds = sorted({r["condition"] for r in rows if r["arch"] == arch and r["condition"] != "reference"})
        for c in conds:
            sel = {r["seed"]: r for r in rows if r["arch"] == arch and r["condition"] == c}
            seeds = sorted(set(sel) & set(ref))
            out.append(
                _row(
                    f"{arch} {c}",
                    [sel[s]["phi"] for s in seeds],
                    [_sd(sel[s]["ci"]["phi"]) for s in seeds],
                    [ref[s]["phi"] for s in seeds],
                    [_sd(ref[s]["ci"]["phi"]) for s in seeds],
                    sel[seeds[0]]["n_paths"],
                )
            )
    r3 = {r["seed"]: r for r in rows if r["arch"] == "3x20" and r["condition"] == "reference"}
    r5 = {r["seed"]: r for r in rows if r["arch"] == "5x12" and r["condition"] == "reference"}
    seeds = sorted(set(r3) & set(r5))
    if seeds:
        out.append(
            _row(
                "5x12 − 3x20, reference networks",
                [r5[s]["phi"] for s in seeds],
                [_sd(r5[s]["ci"]["phi"]) for s in seeds],
                [r3[s]["phi"] for s in seeds],
                [_sd(r3[s]["ci"]["phi"]) for s in seeds],
                10000,
            )
        )
    out += [
        "",
        "Spearman ρ of the test error and Φ_N over the ten networks of one seed (four of the ten are "
        "snapshots of one 60-epoch run):",
        "",
    ]
    for arch in archs:
        rhos = []
        for s in sorted({r["seed"] for r in rows}):
            sel = [r for r in rows if r["arch"] == arch and r["seed"] == s]
            rhos.append(spearman([r["test_error"] for r in sel], [r["phi"] for r in sel]))
        out.append(f"- {arch}: " + ", ".join(f"{x:+.2f}" for x in rhos))
    return "\n".join(out)


def regularizer(spread: dict | None, sub: str = "runs") -> str:
    """The regulariser study's comparisons: its first records (``runs``) or its rerun with today's code
    (``today/runs``, the runs its page reports)."""
    runs = _load(f"regularizer/{sub}/*.json")
    sd300 = {}
    if spread:
        for arch, net in spread["networks"].items():
            if "300" in net["by_size"]:
                sd300[arch] = net["by_size"]["300"]["phi_sd"]
    which = (
        "records of the code before 69489aa" if sub == "runs" else "the rerun with today's code, pair-plan version 1"
    )
    out = [f"### Regulariser study (300 inter-class test pairs, the same for every run; {which})", ""]
    out.append(
        "Pair-set sd of Φ_N at 300 pairs (experiments/pair_spread.py, seed-0 networks of the depth study's "
        "recipe): "
        + (", ".join(f"{a} {v:.4f}" for a, v in sd300.items()) if sd300 else "not measured")
        + ". The CNN has no measured pair-set spread; its rows give the seed interval only."
    )
    out += ["", HEADER]

    def key(r):
        return (r["arch"], r["lam"], r["schedule"], r["dropout"], r["batchnorm"])

    groups = {}
    for r in runs:
        groups.setdefault(key(r), {})[r["seed"]] = r
    for arch in ("3x20", "5x12", "cnn"):
        base = groups.get((arch, 0.0, "always", 0.0, False)) or groups.get((arch, 0, "always", 0.0, False))
        if not base:
            continue
        sd = sd300.get(arch, 0.0)
        for k, g in sorted(groups.items(), key=lambda kv: str(kv[0])):
            if k[0] != arch or k[3] or k[4] or k[1] == 0:
                continue
            seeds = sorted(set(g) & set(base))
            for stat, lab in (("phi", "Φ_N"), ("test_accuracy", "test accuracy")):
                s_ = [sd if stat == "phi" else 0.0] * len(seeds)
                out.append(
                    _row(
                        f"{arch} λ={k[1]:g} {k[2]} − λ=0: {lab}",
                        [g[s]["final"][stat] for s in seeds],
                        s_,
                        [base[s]["final"][stat] for s in seeds],
                        s_,
                        300,
                    )
                )
        for lab, i, j in (
            ("Φ_N epoch 1 − initialisation", 0, 1),
            ("Φ_N last epoch − epoch 1", 1, -1),
            ("Φ_N last epoch − initialisation", 0, -1),
        ):
            ss = sorted(base)
            out.append(
                _row(
                    f"{arch} λ=0: {lab}",
                    [base[s]["per_epoch"][j]["phi"] for s in ss],
                    [sd] * len(ss),
                    [base[s]["per_epoch"][i]["phi"] for s in ss],
                    [sd] * len(ss),
                    300,
                )
            )
    return "\n".join(out)


def _fixed_width():
    """experiments/fixed_width_depth_study.py as a module (its Spearman interval)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "_fixed_width_depth_study", ROOT / "experiments" / "fixed_width_depth_study.py"
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def width_depth() -> str:
    rows = _load("width-depth/runs/*.json")
    out = [
        "### Width and depth (4,500 inter-class pairs per network)",
        "",
        (
            "Spearman ρ of depth and Φ_N at each width (every run, every seed); over depths 2-6 with a "
            "bootstrap interval over the seeds and the pair set (fixed_width_depth_study.spearman_interval):"
        ),
        "",
        "| width | depths 1-6 | depths 2-6 [95% interval] |",
        "|---|---|---|",
    ]
    spearman_interval = _fixed_width().spearman_interval
    for w in sorted({r["width"] for r in rows}):
        sel = [r for r in rows if r["width"] == w]
        s2 = [dict(r, phi_ci=r["ci95"]["phi"]) for r in sel if r["depth"] >= 2]
        rho, lo, hi = spearman_interval(s2)
        out.append(
            f"| {w} | {spearman([r['depth'] for r in sel], [r['phi'] for r in sel]):+.2f} | "
            f"{rho:+.2f} [{lo:+.2f}, {hi:+.2f}] |"
        )
    sds = [_sd(r["ci95"]["phi"]) for r in rows if r["depth"] >= 2]
    out += [
        "",
        f"Pair-set sd of one run's Φ_N (its bootstrap over paths): median {np.median(sds):.4f}, "
        f"largest {max(sds):.4f}.",
    ]
    return "\n".join(out)


def fixed_width() -> str:
    """Steps of Φ_N between depths of the fixed-width series: each family's neighbouring depths, and depth 2
    against depths 5 and 8 (the deeper minus the shallower, seeds matched by number, as for the depth study)."""
    rows = _load("fixed-width-depth/runs/*.json")
    by = {}
    for r in rows:
        by.setdefault(r["arch"], {})[r["seed"]] = r
    depths = sorted({r["depth"] for r in rows})
    out = ["### Fixed-width depth series (18,000 inter-class paths per network)"]
    for name, fam in _fixed_width().families([20, 40, 80], depths, "2x80"):
        steps = list(zip(depths, depths[1:])) + [(2, 5), (2, 8)]
        out += ["", f"{name}:", "", HEADER]
        for d0, d1 in steps:
            a, b = fam.get(d0), fam.get(d1)
            if a not in by or b not in by:
                continue
            out.append(_step_row(by, a, b))
    return "\n".join(out)


def regularizer_scale() -> str:
    """The pair-set spread of Φ_N in the regulariser-at-scale runs (1,000 test pairs each, every pair's χ at the
    chosen epoch recorded): a bootstrap over each run's pairs (200 draws), for λ = 0 and λ = 0.3 of the λ grid, and
    the pairs per network at which the pair-set part of a difference falls below the smallest effect on Φ_N the
    page reports (+0.069: 3x40, 1,000 images, the term at every 2nd step at 2λ, against no term)."""
    import base64
    import re

    from spacefold._core.global_folding import median_nonzero

    grid = re.compile(r"_lam(0|0\.3)_always_random_b10_wd0_p0_s\d+$")
    rng = np.random.default_rng(0)
    by: dict[tuple, list[float]] = {}
    for r in _load("regularizer-scale/runs/*.json"):
        if not grid.search(r["name"]):
            continue
        chi = np.frombuffer(base64.b64decode(r["chosen"]["chi"]), dtype=np.float32)
        draws = [median_nonzero(chi[rng.integers(0, chi.size, chi.size)]) for _ in range(200)]
        by.setdefault((r["arch"], r["n_train"], r["lam"]), []).append(float(np.std(draws, ddof=1)))
    out = [
        "### Regulariser at scale (1,000 test pairs per run, Φ_N at the chosen epoch)",
        "",
        "| arch | training images | λ | runs | pair-set sd of Φ_N (min–max over the runs) |",
        "|---|---|---|---|---|",
    ]
    for (arch, n, lam), sds in sorted(by.items()):
        out.append(f"| {arch} | {n} | {lam:g} | {len(sds)} | {min(sds):.4f}–{max(sds):.4f} |")
    ref = by.get(("3x40", 1000, 0.0), []) + by.get(("3x40", 1000, 0.3), [])
    if ref:
        sd = float(np.sqrt(np.mean(np.square(ref))))
        need = pairs_needed(0.069, (0.0, 2 * Z * sd), 1000)
        out += [
            "",
            f"3x40 on 1,000 images (λ = 0 and 0.3): pair-set sd {sd:.4f}; the pair-set part of a difference falls "
            f"below +0.069 from {need} pairs per network on.",
        ]
    return "\n".join(out)


def cnn() -> str:
    rows = _load("cnn-mnist/runs/*_p10000.json")
    by = {}
    for r in rows:
        by.setdefault(r["arch"], {})[r["seed"]] = r
    out = ["### CNN against the MLPs (the same 10,000 inter-class pairs)", "", HEADER]
    cnn_name = next(a for a in by if a.startswith("cnn"))
    for mlp in sorted(a for a in by if not a.startswith("cnn")):
        seeds = sorted(set(by[cnn_name]) & set(by[mlp]))
        for stat, lab in (("fraction_folded", "share folded"), ("phi", "Φ_N")):
            out.append(
                _row(
                    f"{cnn_name} − {mlp}: {lab}",
                    [by[cnn_name][s][stat] for s in seeds],
                    [_sd(by[cnn_name][s]["ci95"][stat]) for s in seeds],
                    [by[mlp][s][stat] for s in seeds],
                    [_sd(by[mlp][s]["ci95"][stat]) for s in seeds],
                    10000,
                )
            )
    return "\n".join(out)


def generalisation_today() -> str:
    """The networks rerun with today's code (``generalisation/today/runs``): each one's Φ_N and share folded on
    today's pairs against its record (the older code's pairs), and the comparisons above on today's runs."""
    today = _generalisation_rows("today/runs")
    if not today:
        return "### Generalisation study, today's code: no run under generalisation/today/runs"
    old = {(r["arch"], r["seed"], r["condition"]): r for r in _generalisation_rows("runs")}
    out = [
        (
            "### Generalisation study: networks rerun with today's code (pair-plan version 1, 10,000 pairs) "
            "against their records (10,080 pairs of the code before 69489aa)"
        ),
        "",
        (
            "| network | test acc. (today / record) | Φ_N today | Φ_N record | Δ Φ_N | share folded today | "
            "share folded record |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    deltas = []
    for r in sorted(today, key=lambda r: (r["arch"], r["seed"], r["condition"])):
        o = old.get((r["arch"], r["seed"], r["condition"]))
        if o is None:
            continue
        deltas.append(r["phi"] - o["phi"])
        out.append(
            f"| {r['arch']} s{r['seed']} {r['condition']} | {r['test_accuracy']:.4f} / {o['test_accuracy']:.4f} "
            f"| {r['phi']:.4f} | {o['phi']:.4f} | {r['phi'] - o['phi']:+.4f} | {r['fraction_folded']:.4f} | "
            f"{o['fraction_folded']:.4f} |"
        )
    if deltas:
        out += [
            "",
            (
                f"{len(deltas)} networks; Δ Φ_N: largest |Δ| {max(abs(d) for d in deltas):.4f}, "
                f"mean {np.mean(deltas):+.4f}, {sum(d == 0 for d in deltas)} unchanged."
            ),
        ]
    return (
        "\n".join(out)
        + "\n\n"
        + generalisation(today, "Generalisation study with today's code (the networks rerun so far)")
    )


STUDIES = {
    "mnist-depth": mnist_depth,
    "generalisation": generalisation,
    "generalisation-today": generalisation_today,
    "regularizer": None,
    "regularizer-today": None,
    "regularizer-scale": regularizer_scale,
    "width-depth": width_depth,
    "fixed-width": fixed_width,
    "cnn": cnn,
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="+", choices=list(STUDIES))
    p.add_argument(
        "--spread",
        default=str(RESULTS / "pair-spread" / "spread.json"),
        help="experiments/pair_spread.py's result (the regulariser study's pair-set spread)",
    )
    args = p.parse_args(argv)
    spread = json.loads(Path(args.spread).read_text()) if Path(args.spread).is_file() else None
    for name in args.only or list(STUDIES):
        if name in ("regularizer", "regularizer-today"):
            text = regularizer(spread, "runs" if name == "regularizer" else "today/runs")
        else:
            text = STUDIES[name]()
        print(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
