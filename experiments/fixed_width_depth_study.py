"""MNIST depth series at fixed width and at a fixed parameter budget (docs/mnist-depth-study.md,
'Depth at fixed width').

The depth study (experiments/mnist_depth_study.py) keeps 60 neurons in all (1x60 ... 6x10), so
its width falls as its depth rises; this script separates the two:

- fixed width: widths 20, 40 and 80, depths 2 to 8;
- fixed budget: depths 2 to 8, each at the width whose parameter count (weights and biases,
  784 inputs, 10 classes) is closest to that of ``--budget-arch`` (default 2x80, 70,090
  parameters).

Every network is trained and measured as in the depth study (spacefold.studies.depth.run_study: Adam,
lr 1e-3, batch 128, 30 epochs, one torch thread; exact walks of pairs of MNIST test images drawn
with the pair seed over the 10 x 10 ordered digit pairs, Φ_N over the inter-class ones).
``--pairs-per-class-pair 200`` gives 20,000 paths, 18,000 of them inter-class: on the depth study's
3x20 the pair-set sd of Φ_N is 0.0027 at 3,000 inter-class pairs and 0.0005 at 10,000
(experiments/pair_spread.py), and the steps between consecutive depths of the 60-neuron family
are 0.016-0.027.

    python experiments/fixed_width_depth_study.py --data-dir DIR                  # train + measure, resumable
    python experiments/fixed_width_depth_study.py --data-dir DIR --phase report   # tables only

``--phase report`` also writes ``fixed_width_tables.md`` (``report_tables``): Φ_N by depth for each
width and the budget with intervals over the seeds and the pair set, the test error by depth, and
Spearman's ρ of depth and Φ_N over depths 2 to 8 per family with a bootstrap interval.

Runs go in an order whose prefixes are useful: seed 0 at depths 2, 4, 6, 8 for every family,
then seed 0 at depths 3, 5, 7, then the other seeds in the same order. Each run leaves
``runs/<depth>x<width>_s<seed>.json`` in ``--out`` (written atomically, with the spacefold
version and commit, torch version, command line, pair-plan version and the hash of the pairs
walked); a finished run is skipped, so rerunning the same command resumes. Checkpoints go to
``models/`` (not versioned).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

import spacefold as sf
import spacefold.global_folding  # noqa: F401  (imported now: a long run keeps the code it started with)
import spacefold.models.train  # noqa: F401
from spacefold.cli import nonnegative_int, output_dir, positive_int
from spacefold.data import load_mnist
from spacefold.models import parse_arch
from spacefold.studies.depth import StudySettings, read_run, run_provenance, run_study, write_tables

ROOT = Path(__file__).resolve().parent.parent
N_IN, N_OUT = 784, 10


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def n_params(depth: int, width: int, n_in: int = N_IN, n_out: int = N_OUT) -> int:
    """Weights and biases of an MLP with ``depth`` hidden layers of ``width`` neurons."""
    return n_in * width + width + (depth - 1) * (width * width + width) + width * n_out + n_out


def budget_width(depth: int, budget: int, n_in: int = N_IN, n_out: int = N_OUT) -> int:
    """The width whose parameter count at ``depth`` is closest to ``budget`` (the smaller on a tie)."""
    a, b, c = depth - 1, n_in + 1 + (depth - 1) + n_out, n_out - budget
    w = -c / b if a == 0 else (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)
    lo = max(1, math.floor(w))
    return min((lo, lo + 1), key=lambda v: (abs(n_params(depth, v, n_in, n_out) - budget), v))


def plan(widths, depths, seeds, budget_arch: str | None) -> list[tuple[str, int]]:
    """``(arch, seed)`` in the order run: per seed, depths 2, 4, 6, 8 first (every family), then the others;
    an architecture shared by two families is run once."""
    budget = None
    if budget_arch:
        h = parse_arch(budget_arch)
        budget = n_params(len(h), h[0])
    first = [d for d in depths if d % 2 == 0]
    order = first + [d for d in depths if d % 2]
    runs: list[tuple[str, int]] = []
    for s in seeds:
        for d in order:
            archs = [f"{d}x{w}" for w in widths]
            if budget is not None:
                archs.append(f"{d}x{budget_width(d, budget)}")
            for a in archs:
                if (a, s) not in runs:
                    runs.append((a, s))
    return runs


def depth_table(rows, widths, depths, budget_arch: str | None) -> str:
    """Markdown: Φ_N (mean over the finished seeds, their number in brackets) and test accuracy, one row
    per family (each width, then the budget), one column per depth; '·' where no run has finished."""
    budget = None
    if budget_arch:
        h = parse_arch(budget_arch)
        budget = n_params(len(h), h[0])
    fams = [(f"width {w}", {d: f"{d}x{w}" for d in depths}) for w in widths]
    if budget is not None:
        fams.append((f"budget {budget}", {d: f"{d}x{budget_width(d, budget)}" for d in depths}))
    by = {}
    for r in rows:
        by.setdefault(r["arch"], []).append(r)
    lines = ["| family | " + " | ".join(f"depth {d}" for d in depths) + " |", "|---|" + "---|" * len(depths)]
    for name, archs in fams:
        cells = []
        for d in depths:
            rs = by.get(archs[d], [])
            if not rs:
                cells.append("·")
                continue
            phi = sum(r["phi"] for r in rs) / len(rs)
            acc = sum(r["test_accuracy"] for r in rs) / len(rs)
            cells.append(f"{archs[d]}: Φ_N {phi:.3f}, acc {acc:.3f} ({len(rs)})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def families(widths, depths, budget_arch: str | None) -> list[tuple[str, dict[int, str]]]:
    """``(name, {depth: arch})`` for each width, then the fixed budget (if any)."""
    fams = [(f"width {w}", {d: f"{d}x{w}" for d in depths}) for w in widths]
    if budget_arch:
        h = parse_arch(budget_arch)
        budget = n_params(len(h), h[0])
        fams.append((f"budget {budget:,}", {d: f"{d}x{budget_width(d, budget)}" for d in depths}))
    return fams


def spearman_interval(runs, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """Spearman's ρ of depth and Φ_N over ``runs`` (dicts with ``depth``, ``phi`` and ``phi_ci``, one per
    network) and a bootstrap interval that covers the seeds and the pair set: each replicate redraws, at
    every depth, as many networks as it has with replacement, and moves each drawn Φ_N by a normal draw
    with the pair-set sd its recorded interval over paths implies (``spacefold.studies.depth``'s reading:
    sd = width / (2 z)). Returns ``(ρ, lo, hi)``; NaN where ρ is undefined (fewer than two depths or
    three networks) and lo, hi NaN where no replicate defines it."""
    import numpy as np
    from scipy import stats

    from spacefold.studies.depth import spearman

    by: dict[int, list[tuple[float, float]]] = {}
    z = float(stats.norm.ppf(0.5 + level / 2))
    for r in runs:
        lo, hi = r["phi_ci"]
        by.setdefault(int(r["depth"]), []).append((float(r["phi"]), (float(hi) - float(lo)) / (2 * z)))
    depths = sorted(by)
    if len(depths) < 2 or sum(len(v) for v in by.values()) < 3:
        return float("nan"), float("nan"), float("nan")
    xs = [d for d in depths for _ in by[d]]
    est = spearman(xs, [phi for d in depths for phi, _ in by[d]])
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot):
        ys = []
        for d in depths:
            vals = by[d]
            for k in rng.integers(0, len(vals), len(vals)):
                phi, sd = vals[k]
                ys.append(phi + (rng.normal(0.0, sd) if sd > 0 else 0.0))
        rho = spearman(xs, ys)
        if not math.isnan(rho):
            draws.append(rho)
    if not draws:
        return est, float("nan"), float("nan")
    lo, hi = np.quantile(draws, [0.5 - level / 2, 0.5 + level / 2])
    return est, float(lo), float(hi)


def report_tables(rows, widths, depths, budget_arch: str | None, *, n_boot: int = 2000) -> str:
    """Markdown for the depth page: per family (each width, then the budget) and depth, Φ_N (mean over
    seeds, interval over the seeds and the pair set: ``seed_pair_interval``) and the test error (mean, Student-t
    interval over seeds, in %); per family, Spearman's ρ of depth and Φ_N over every network of the family's
    depths ≥ 2 with a bootstrap interval over seeds and the pair set (``spearman_interval``), and ρ of depth
    and the test error. A cell shows the number of seeds in brackets; '·' where none has finished."""
    from spacefold.studies.depth import seed_mean_ci, seed_pair_interval, spearman

    fams = families(widths, depths, budget_arch)
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["arch"], []).append(r)
    head = "| family | " + " | ".join(f"depth {d}" for d in depths) + " |"
    sep = "|---|" + "---|" * len(depths)

    def interval(m, lo, hi, digits, scale=1.0):
        if math.isnan(lo):
            return f"{m * scale:.{digits}f}"
        return f"{m * scale:.{digits}f} [{lo * scale:.{digits}f}, {hi * scale:.{digits}f}]"

    phi_lines, err_lines = [head, sep], [head, sep]
    rho_lines = ["| family | networks | ρ(depth, Φ_N) [95% interval] | ρ(depth, test error) |", "|---|---|---|---|"]
    for name, archs in fams:
        phi_cells, err_cells, fam_runs = [], [], []
        for d in depths:
            rs = sorted(by.get(archs[d], []), key=lambda r: r["seed"])
            if not rs:
                phi_cells.append("·")
                err_cells.append("·")
                continue
            m, lo, hi = seed_pair_interval([r["phi"] for r in rs], [r["phi_ci"] for r in rs])
            phi_cells.append(f"{archs[d]}: {interval(m, lo, hi, 3)} ({len(rs)})")
            m, lo, hi = seed_mean_ci([1.0 - r["test_accuracy"] for r in rs])
            err_cells.append(f"{interval(m, lo, hi, 2, 100.0)} ({len(rs)})")
            if d >= 2:
                fam_runs += [dict(r, depth=d) for r in rs]
        phi_lines.append(f"| {name} | " + " | ".join(phi_cells) + " |")
        err_lines.append(f"| {name} | " + " | ".join(err_cells) + " |")
        rho, lo, hi = spearman_interval(fam_runs, n_boot=n_boot)
        rho_err = (
            spearman([r["depth"] for r in fam_runs], [1.0 - r["test_accuracy"] for r in fam_runs])
            if len(fam_runs) >= 3
            else float("nan")
        )
        rho_cell = "·" if math.isnan(rho) else interval(rho, lo, hi, 2)
        rho_lines.append(
            f"| {name} | {len(fam_runs)} | {rho_cell} | " + ("·" if math.isnan(rho_err) else f"{rho_err:.2f}") + " |"
        )
    return "\n".join(
        [
            "Φ_N by depth: mean over seeds [95% interval over the seeds and the pair set] (seeds)\n",
            *phi_lines,
            "",
            "Test error (%) by depth: mean over seeds [95% Student-t interval over seeds] (seeds)\n",
            *err_lines,
            "",
            (
                "Spearman's ρ over the networks of depths 2 to 8 (every seed one point), with a bootstrap interval "
                "that "
                "redraws the seeds within each depth and each network's Φ_N within its pair-set spread:\n"
            ),
            *rho_lines,
            "",
        ]
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True, help="directory with the four MNIST IDX files")
    p.add_argument("--out", type=output_dir, default=str(ROOT / "experiments" / "results" / "fixed-width-depth"))
    p.add_argument("--widths", nargs="+", type=positive_int, default=[20, 40, 80])
    p.add_argument("--depths", nargs="+", type=positive_int, default=[2, 3, 4, 5, 6, 7, 8])
    p.add_argument("--seeds", nargs="+", type=nonnegative_int, default=[0, 1, 2, 3, 4])
    p.add_argument(
        "--budget-arch",
        default="2x80",
        help="the fixed-budget series keeps this network's parameter count ('' for none; default 2x80)",
    )
    p.add_argument("--epochs", type=positive_int, default=30)
    p.add_argument("--pairs-per-class-pair", type=positive_int, default=200)
    p.add_argument("--n-boot", type=positive_int, default=500)
    p.add_argument("--limit", type=nonnegative_int, default=0, help="stop after this many runs trained (0: all)")
    p.add_argument("--phase", choices=["run", "report", "plan"], default="run")
    args = p.parse_args(argv)
    run_provenance()  # taken now: the runs record the code this process started with
    runs = plan(args.widths, args.depths, args.seeds, args.budget_arch)
    if args.phase == "plan":
        for a, s in runs:
            h = parse_arch(a)
            print(f"{a}_s{s}  {n_params(len(h), h[0])} parameters")
        return 0
    torch.set_num_threads(1)
    data = load_mnist(args.data_dir)
    out = Path(args.out)
    settings = StudySettings(epochs=args.epochs, pairs_per_class_pair=args.pairs_per_class_pair, n_boot=args.n_boot)
    log(f"data {data.describe()}, spacefold {sf.__version__}, {len(runs)} runs")
    if args.phase == "run":
        trained = 0
        for k, (arch, seed) in enumerate(runs):
            done = (out / "runs" / f"{arch}_s{seed}.json").is_file()
            run_study(data, [arch], [seed], out, settings, log=log)
            trained += not done
            log(f"run {k + 1}/{len(runs)} ({arch}_s{seed}) finished")
            rows = [read_run(q) for q in sorted((out / "runs").glob("*.json"))]
            write_tables(rows, out)
            if args.limit and trained >= args.limit:
                break
    rows = [read_run(q) for q in sorted((out / "runs").glob("*.json"))]
    if rows:
        write_tables(rows, out)
        from spacefold._util import atomic_write

        with atomic_write(out / "depth_table.md") as fh:
            fh.write(
                f"{len(rows)} of {len(runs)} runs finished.\n\n"
                + depth_table(rows, args.widths, args.depths, args.budget_arch)
                + "\n"
            )
        if args.phase == "report":
            with atomic_write(out / "fixed_width_tables.md") as fh:
                fh.write(
                    f"{len(rows)} of {len(runs)} runs finished.\n\n"
                    + report_tables(rows, args.widths, args.depths, args.budget_arch)
                    + "\n"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
