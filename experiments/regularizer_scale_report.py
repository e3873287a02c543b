"""Tables and figures of experiments/regularizer_scale_study.py (``--stage report``).

Every comparison is paired: the two arms share the seed, hence the training subset, the
initialisation and the order of the batches, and they are measured on the same test images and
the same 1,000 test pairs. Intervals are 95% hierarchical bootstrap intervals: each replicate
draws the seeds with replacement and, within each drawn seed, the test images (accuracy, loss)
or the test pairs (Φ_N, share folded) with replacement, the same draw for both arms
(``spacefold.studies.depth.hierarchical_bootstrap`` on per-seed arrays of paired values). A difference
counts as an effect only where that interval and the Student-t interval of the per-seed differences
both exclude 0; otherwise there is no detectable effect.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from regularizer_scale_study import (
    COST_DEFAULTS,
    DROPOUTS,
    GRID_ARCHS,
    LAMS,
    SMALL,
    WDS,
    chosen_baseline,
    chosen_lambda,
    is_plain,
    knob,
    log,
    unpack,
)

from spacefold._core.global_folding import median_nonzero
from spacefold._util import atomic_write
from spacefold.studies.depth import hierarchical_bootstrap, seed_mean_ci

N_TEST = 10_000


def items(run: dict, what: str) -> np.ndarray:
    """Per-item values of a run at its chosen epoch: ``correct`` and ``loss`` per test image, ``chi`` per pair."""
    c = run["chosen"]
    if what == "correct":
        return np.unpackbits(unpack(c["correct"], np.uint8))[:N_TEST].astype(float)
    if what == "loss":
        return unpack(c["loss"], np.float16).astype(float)
    return unpack(c["chi"], np.float32).astype(float)


MEASURES: dict[str, tuple[str, Callable[[np.ndarray], float], int]] = {
    # name: (per-item array, statistic, digits)
    "test acc": ("correct", np.mean, 4),
    "test loss": ("loss", np.mean, 3),
    "Φ_N": ("chi", median_nonzero, 4),
    "share folded": ("chi", lambda c: float(np.mean(c > 0)), 3),
}


def paired(a: Sequence[dict], b: Sequence[dict], measure: str, n_boot: int) -> tuple[float, float, float, bool]:
    """Mean over seeds of stat(a) − stat(b), its paired hierarchical bootstrap interval, and whether
    the Student-t interval of the per-seed differences excludes 0 as well (with five seeds a
    percentile bootstrap over seeds is narrower than it should be, so an effect needs both)."""
    what, stat, _ = MEASURES[measure]
    groups = [np.stack([items(ra, what), items(rb, what)], axis=1) for ra, rb in zip(a, b)]
    est, lo, hi = hierarchical_bootstrap(groups, lambda g: stat(g[:, 0]) - stat(g[:, 1]), n_boot=n_boot, seed=0)
    _, tlo, thi = seed_mean_ci([stat(g[:, 0]) - stat(g[:, 1]) for g in groups])
    return est, lo, hi, not (tlo <= 0 <= thi)


def fmt(est: float, lo: float, hi: float, t_excludes_0: bool, digits: int) -> str:
    mark = " *" if t_excludes_0 and not (lo <= 0 <= hi) else ""
    return f"{est:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]{mark}"


PLAIN = {"schedule": "always", "surrogate": "random", "beta": 10.0, "wd": 0.0, "dropout": 0.0, **COST_DEFAULTS}


def select(runs, **kw) -> dict[int, dict]:
    """The runs of one arm by seed: ``kw`` fixes fields; those not given take the plain values
    (schedule always, random surrogate, β 10, no weight decay, no dropout, the term at every step on
    8 segments of 8 points)."""
    want = {**PLAIN, **kw}
    return {r["seed"]: r for r in runs if all(knob(r, k) == v for k, v in want.items())}


def loso_lambda(runs, arch: str, n: int, seeds) -> dict[int, float]:
    """λ > 0 chosen for each seed on the validation accuracy of the *other* seeds (leave one seed
    out), so that no seed's test result profits from its own validation luck."""
    out = {}
    for s in seeds:
        lam = chosen_lambda(runs, arch, n, [t for t in seeds if t != s])
        if lam is not None and s in select(runs, arch=arch, n_train=n, lam=lam):
            out[s] = lam
    return out


def comparison_rows(label: str, arm: dict[int, dict], base: dict[int, dict], seeds, n_boot: int) -> str | None:
    common = [s for s in seeds if s in arm and s in base]
    if len(common) < 2:
        return None
    a, b = [arm[s] for s in common], [base[s] for s in common]
    cells = [fmt(*paired(a, b, m, n_boot), MEASURES[m][2]) for m in MEASURES]
    return f"| {label} | {len(common)} | " + " | ".join(cells) + " |"


def knob_settings(lam: float) -> list[tuple[str, dict]]:
    """The settings of the folding term in the knobs stage (3x40, 1,000 images), the default first."""
    return [
        ("every step (`always`)", {}),
        ("schedule early:0.3", {"schedule": "early:0.3"}),
        ("schedule every:2", {"schedule": "every:2"}),
        ("schedule every:5", {"schedule": "every:5"}),
        ("every 2nd step", {"every_steps": 2}),
        ("every 2nd step, 2λ", {"every_steps": 2, "lam": 2 * lam}),
        ("every 5th step", {"every_steps": 5}),
        ("every 5th step, 5λ", {"every_steps": 5, "lam": 5 * lam}),
        ("exact surrogate", {"surrogate": "exact"}),
        ("β = 3", {"beta": 3.0}),
        ("β = 30", {"beta": 30.0}),
    ]


def efficiency_rows(runs, lam: float, seeds, n_boot: int) -> list[str]:
    """Each setting of the folding term against no folding term (3x40, 1,000 images): which of the
    cheaper settings keep the effect on Φ_N (the cost of each: benchmarks/bench_regularizer.py)."""
    lines = [
        f"## Settings of the folding term against no folding term (3x40, 1,000 images, λ = {lam:g})",
        "",
        "Which settings keep the effect on Φ_N. Columns as above at the chosen epoch; then Φ_N at the last "
        "epoch (the records keep its value only, so the interval is the Student-t interval of the per-seed "
        "differences) and the chosen epochs.",
        "",
        "| setting | seeds | Δ test acc | Δ test loss | Δ Φ_N | Δ share folded | Δ Φ_N, last epoch | chosen epochs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    base = select(runs, arch="3x40", n_train=1000, lam=0.0)
    for label, kw in knob_settings(lam):
        arm = select(runs, arch="3x40", n_train=1000, **{"lam": lam, **kw})
        row = comparison_rows(label, arm, base, seeds, n_boot)
        if row:
            common = [s for s in seeds if s in arm and s in base]
            est, lo, hi = seed_mean_ci([arm[s]["final"]["phi"] - base[s]["final"]["phi"] for s in common])
            mark = " *" if not (lo <= 0 <= hi) else ""
            epochs = ", ".join(str(arm[s]["chosen"]["epoch"]) for s in common)
            lines.append(f"{row} {est:+.4f} [{lo:+.4f}, {hi:+.4f}]{mark} | {epochs} |")
    return lines + [""]


HEAD = "| arms | seeds | Δ test acc | Δ test loss | Δ Φ_N | Δ share folded |\n|---|---|---|---|---|---|"


def report(out: Path, runs: list[dict], seeds: Sequence[int], n_boot: int = 1000) -> None:
    lines = [
        "# The folding regulariser at scale: tables",
        "",
        "Paired differences at the epoch chosen on validation accuracy, mean over seeds with 95% hierarchical "
        "bootstrap intervals (seeds, then test images or test pairs); * marks a difference whose bootstrap interval "
        "and whose Student-t interval over the per-seed differences both exclude 0.",
        "",
    ]
    # 1. λ chosen on validation against λ = 0
    lines += [
        "## λ chosen on validation against no folding term",
        "",
        "For each seed, λ is the value of the grid with the best mean validation accuracy over the other "
        "seeds (leave one seed out); the column lists the choices.",
        "",
        "| arch | training images | λ chosen | seeds | Δ test acc | Δ test loss | Δ Φ_N | Δ share folded |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n in (*SMALL, 55000):
        for arch in GRID_ARCHS:
            lams = loso_lambda(runs, arch, n, seeds)
            if len(lams) < 2:
                continue
            arm = {s: select(runs, arch=arch, n_train=n, lam=lam)[s] for s, lam in lams.items()}
            label = "/".join(f"{v:g}" for v in sorted(set(lams.values())))
            row = comparison_rows(
                f"{arch} | {n} | {label}", arm, select(runs, arch=arch, n_train=n, lam=0.0), seeds, n_boot
            )
            if row:
                lines.append(row)
    lines.append("")
    # 2. every λ of the grid (means over seeds)
    lines += [
        "## Every λ of the grid (means over seeds at the chosen epoch)",
        "",
        "| arch | training images | λ | seeds | val acc | test acc | test loss | Φ_N | share folded |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n in (*SMALL, 55000):
        for arch in GRID_ARCHS:
            for lam in LAMS:
                rs = [r for r in runs if r["arch"] == arch and r["n_train"] == n and r["lam"] == lam and is_plain(r)]
                if not rs:
                    continue
                m = {
                    k: float(np.mean([r["chosen"][k] for r in rs]))
                    for k in ("val_accuracy", "test_accuracy", "test_loss", "phi", "fraction_folded")
                }
                lines.append(
                    f"| {arch} | {n} | {lam:g} | {len(rs)} | {m['val_accuracy']:.4f} | "
                    f"{m['test_accuracy']:.4f} | {m['test_loss']:.3f} | {m['phi']:.4f} | "
                    f"{m['fraction_folded']:.3f} |"
                )
    lines.append("")
    # 3. weight decay and dropout, alone and with the folding term (3x40)
    lines += [
        "## Against weight decay and dropout (3x40)",
        "",
        "Weight decay, dropout and λ: the best mean validation accuracy over all seeds; the rows with "
        "both regularisers ask whether the folding term adds anything to the other one.",
        "",
        HEAD,
    ]
    for n in SMALL:
        plain = select(runs, arch="3x40", n_train=n, lam=0.0)
        lam = chosen_lambda(runs, "3x40", n, seeds)
        wd = chosen_baseline(runs, n, "wd", (0.0, *WDS), seeds)
        p = chosen_baseline(runs, n, "dropout", (0.0, *DROPOUTS), seeds)
        arms = []
        for key, v, grid in (("weight decay", wd, WDS), ("dropout", p, DROPOUTS)):
            if v == 0:
                lines.append(
                    f"| n={n}: {key}: none of {', '.join(f'{g:g}' for g in grid)} had a better mean "
                    f"validation accuracy than none | | | | | |"
                )
        if wd:
            arms.append(
                (f"n={n}: weight decay {wd:g} − none", select(runs, arch="3x40", n_train=n, lam=0.0, wd=wd), plain)
            )
            if lam:
                arms.append(
                    (
                        f"n={n}: weight decay {wd:g} + λ {lam:g} − weight decay {wd:g}",
                        select(runs, arch="3x40", n_train=n, lam=lam, wd=wd),
                        select(runs, arch="3x40", n_train=n, lam=0.0, wd=wd),
                    )
                )
        if p:
            arms.append(
                (f"n={n}: dropout {p:g} − none", select(runs, arch="3x40", n_train=n, lam=0.0, dropout=p), plain)
            )
            if lam:
                arms.append(
                    (
                        f"n={n}: dropout {p:g} + λ {lam:g} − dropout {p:g}",
                        select(runs, arch="3x40", n_train=n, lam=lam, dropout=p),
                        select(runs, arch="3x40", n_train=n, lam=0.0, dropout=p),
                    )
                )
        for label, arm, base in arms:
            row = comparison_rows(label, arm, base, seeds, n_boot)
            if row:
                lines.append(row)
    lines.append("")
    # 4. schedules, surrogates, β (3x40, 1,000 images, at the chosen λ) against the plain regulariser
    lam = chosen_lambda(runs, "3x40", 1000, seeds)
    if lam:
        lines += efficiency_rows(runs, lam, seeds, n_boot)
        ref = select(runs, arch="3x40", n_train=1000, lam=lam)
        lines += [
            f"## Knobs of the folding term (3x40, 1,000 images, λ = {lam:g}) against `always`, `random`, β = 10",
            "",
            "λ: the best mean validation accuracy over all seeds (these arms compare settings of the "
            "folding term, not the term against none).",
            "",
            HEAD,
        ]
        for label, kw in knob_settings(lam)[1:]:
            row = comparison_rows(
                label, select(runs, arch="3x40", n_train=1000, **{"lam": lam, **kw}), ref, seeds, n_boot
            )
            if row:
                lines.append(row)
        lines.append("")
    # 5. the CNN
    lines += ["## The small CNN", "", HEAD]
    for n in SMALL:
        base = select(runs, arch="cnn", n_train=n, lam=0.0)
        for lam in (0.03, 0.1, 0.3):
            row = comparison_rows(
                f"n={n}: λ {lam:g} − 0", select(runs, arch="cnn", n_train=n, lam=lam), base, seeds, n_boot
            )
            if row:
                lines.append(row)
    lines.append("")
    with atomic_write(out / "tables.md") as fh:
        fh.write("\n".join(lines))
    log(f"wrote {out / 'tables.md'} ({len(runs)} runs)")
    figures(out, runs)


def figures(out: Path, runs: list[dict]) -> None:
    """Test accuracy and Φ_N against λ, one panel per training-set size, one line per architecture."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from spacefold.viz.plot import OKABE_ITO

    sizes = [n for n in (*SMALL, 55000) if any(r["n_train"] == n and is_plain(r) for r in runs)]
    if not sizes:
        return
    fig, axes = plt.subplots(2, len(sizes), figsize=(4.2 * len(sizes), 6.4), squeeze=False)
    for j, n in enumerate(sizes):
        for i, arch in enumerate(GRID_ARCHS):
            rows = []
            for lam in LAMS:
                rs = [r for r in runs if r["arch"] == arch and r["n_train"] == n and r["lam"] == lam and is_plain(r)]
                if rs:
                    rows.append((lam, [r["chosen"]["test_accuracy"] for r in rs], [r["chosen"]["phi"] for r in rs]))
            if not rows:
                continue
            x = [LAMS.index(r[0]) for r in rows]  # one position per λ of the grid, whatever is finished
            for ax, k in ((axes[0, j], 1), (axes[1, j], 2)):
                v = [np.mean(r[k]) for r in rows]
                sd = [np.std(r[k], ddof=1) if len(r[k]) > 1 else 0.0 for r in rows]
                ax.errorbar(x, v, yerr=sd, marker="o", ms=3, capsize=2, color=OKABE_ITO[i], label=arch)
                ax.set_xticks(range(len(LAMS)), [f"{lam:g}" for lam in LAMS])
        axes[0, j].set_title(f"{n} training images")
        axes[0, j].set_ylabel("test accuracy (chosen epoch)")
        axes[1, j].set_ylabel("Φ_N on 1,000 test pairs")
        axes[1, j].set_xlabel("λ")
        axes[0, j].legend(fontsize=7)
    fig.text(0.01, 0.005, "Mean over seeds; bars: one standard deviation over seeds.", fontsize=7, color="0.25")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    from spacefold._util import atomic_path

    (out / "figures").mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "figures" / "accuracy-phi-vs-lambda.png") as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
