"""Adversarial paths and the interaction coefficient on MNIST (arXiv 2503.08502 defines the
interaction coefficient; the AAAI 2026 follow-up reports that on MNIST digits 5 and 7, under
FGSM and PGD, the interaction is highest when neither endpoint is perturbed).

For every architecture x seed the script trains an MLP (spacefold.models.train.train_mlp), then

1. attack success against ε: the share of 1000 test images (stratified) whose predicted
   class FGSM, PGD (L∞) and PGD (L2) change, for a range of budgets;
2. the interaction on the paths 5 -> 7, 5 -> 7*, 5* -> 7, 5* -> 7* (spacefold.studies.adversarial.
   adversarial_interaction, exact walks) for each ε in --eps and each attack in --attacks;
3. the same with the papers' uniform grid of 100 points at one ε (--uniform-eps), for
   comparison of the two samplings.

    python experiments/adversarial_study.py --data-dir DIR                  # everything
    python experiments/adversarial_study.py --data-dir DIR --phase report   # tables and figures only

Every result is a JSON file under ``runs/`` written atomically; finished results are read
back, not recomputed. Checkpoints go to ``models/`` (not versioned).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from spacefold._util import atomic_path, atomic_write
from spacefold.data.datasets import load_mnist, stratified_indices
from spacefold.models import load_checkpoint
from spacefold.models.train import train_mlp
from spacefold.studies.adversarial import (
    COMBINATIONS,
    AdversarialInteraction,
    adversarial_interaction,
    attack,
    bubble_chart,
    predict,
)
from spacefold.studies.depth import run_provenance

ROOT = Path(__file__).resolve().parent.parent
SUCCESS_EPS = {
    "fgsm": [0.02, 0.05, 0.1, 0.15, 0.2, 0.3],
    "pgd": [0.02, 0.05, 0.1, 0.15, 0.2, 0.3],
    "pgd-l2": [0.5, 1.0, 1.5, 2.0, 3.0],
}


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def done(path: Path, settings: dict) -> dict | None:
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if old.get("settings") == settings:
            return old
    return None


def save(path: Path, obj: dict) -> None:
    with atomic_write(path) as fh:
        json.dump({**obj, "provenance": run_provenance()}, fh, indent=1, allow_nan=False)


def get_model(data, arch: str, seed: int, args, out: Path):
    ckpt = out / "models" / f"{arch}_s{seed}.pt"
    if ckpt.is_file():
        model, meta = load_checkpoint(ckpt, with_metadata=True)
        tr = meta.get("training", {})
        if tr.get("epochs") == args.epochs:
            return model, tr
    t0 = time.perf_counter()
    model, res = train_mlp(arch, data, epochs=args.epochs, seed=seed, checkpoint=ckpt)
    log(
        f"{arch}_s{seed}: trained {args.epochs} epochs, test accuracy {res.final_test_accuracy:.4f} "
        f"({time.perf_counter() - t0:.0f} s)"
    )
    return model, res.as_dict()


def run(data, args, out: Path) -> None:
    for d in ("models", "runs"):
        (out / d).mkdir(parents=True, exist_ok=True)
    idx = stratified_indices(data.y_test, args.n_success, 0)
    xs, ys = data.x_test[idx], data.y_test[idx]
    for seed in args.seeds:
        for arch in args.archs:
            name = f"{arch}_s{seed}"
            model, tr = get_model(data, arch, seed, args, out)
            acc = tr["final_test_accuracy"]
            # 1. success against eps
            settings = {"n_success": args.n_success, "eps": SUCCESS_EPS, "steps": args.steps, "epochs": args.epochs}
            path = out / "runs" / f"success_{name}.json"
            if done(path, settings) is None:
                t0 = time.perf_counter()
                pred = predict(model, xs)
                rows = []
                for atk, epss in SUCCESS_EPS.items():
                    for eps in epss:
                        adv = attack(model, xs, ys, atk, eps, steps=args.steps, seed=seed)
                        flipped = predict(model, adv) != pred
                        rows.append(
                            {
                                "attack": atk,
                                "eps": eps,
                                "success": float(flipped.double().mean()),
                                "accuracy_adv": float((predict(model, adv) == ys).double().mean()),
                            }
                        )
                save(
                    path,
                    {
                        "arch": arch,
                        "seed": seed,
                        "test_accuracy": acc,
                        "rows": rows,
                        "settings": settings,
                        "seconds": time.perf_counter() - t0,
                    },
                )
                log(f"{name}: success " + ", ".join(f"{r['attack']}@{r['eps']:g}={r['success']:.3f}" for r in rows))
            # 2. and 3. interaction
            jobs = [("exact", eps, args.max_pairs) for eps in args.eps]
            if args.uniform_eps is not None:
                jobs.append(("uniform", args.uniform_eps, args.uniform_pairs))
            for method, eps, pairs in jobs:
                settings = {
                    "classes": args.classes,
                    "attacks": args.attacks,
                    "eps": eps,
                    "method": method,
                    "n_points": args.n_points,
                    "max_pairs": pairs,
                    "steps": args.steps,
                    "n_boot": args.n_boot,
                    "epochs": args.epochs,
                }
                path = out / "runs" / f"interaction_{method}_{name}_eps{eps:g}.json"
                if done(path, settings) is not None:
                    continue
                t0 = time.perf_counter()
                res = adversarial_interaction(
                    model,
                    data.x_test,
                    data.y_test,
                    args.classes,
                    args.attacks,
                    eps,
                    max_pairs=pairs,
                    method=method,
                    n_points=args.n_points,
                    steps=args.steps,
                    seed=seed,
                    n_boot=args.n_boot,
                )
                save(
                    path,
                    {
                        "arch": arch,
                        "seed": seed,
                        "test_accuracy": acc,
                        **res.to_dict(),
                        "settings": settings,
                        "seconds": time.perf_counter() - t0,
                    },
                )
                log(f"{name} {method} eps {eps:g} ({time.perf_counter() - t0:.0f} s)\n{res.table()}")


# --------------------------------------------------------------------------- report


def interaction_rows(out: Path) -> list[dict]:
    rows = []
    for p in sorted((out / "runs").glob("interaction_*.json")):
        r = json.loads(p.read_text())
        for atk, v in r["attacks"].items():
            for comb, c in v["combinations"].items():
                ci = c["ci"] or [None, None]
                rows.append(
                    {
                        "arch": r["arch"],
                        "seed": r["seed"],
                        "test_accuracy": r["test_accuracy"],
                        "method": r["method"],
                        "eps": r["eps"],
                        "attack": atk,
                        "attack_success": v["attack_success"],
                        "combination": comb,
                        "mean_nonzero_interaction": c["mean_nonzero_interaction"],
                        "ci_lo": ci[0],
                        "ci_hi": ci[1],
                        "n_paths": c["n_paths"],
                        "n_pairs": c["n_pairs"],
                        "mean_points": c["mean_points"],
                    }
                )
    return rows


def success_rows(out: Path) -> list[dict]:
    rows = []
    for p in sorted((out / "runs").glob("success_*.json")):
        r = json.loads(p.read_text())
        rows += [{"arch": r["arch"], "seed": r["seed"], "test_accuracy": r["test_accuracy"], **x} for x in r["rows"]]
    return rows


def write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    with atomic_write(path) as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def rankings(rows: list[dict]) -> list[dict]:
    """Per (method, arch, seed, eps, attack): the combinations ordered by mean Ī_nz and whether
    (a, b) is the highest, and whether the clean pair beats the doubly perturbed one with
    non-overlapping intervals."""
    keys = sorted({(r["method"], r["arch"], r["seed"], r["eps"], r["attack"]) for r in rows})
    out = []
    for k in keys:
        rs = {r["combination"]: r for r in rows if (r["method"], r["arch"], r["seed"], r["eps"], r["attack"]) == k}
        vals = {
            c: rs[c]["mean_nonzero_interaction"] for c in COMBINATIONS if rs[c]["mean_nonzero_interaction"] is not None
        }
        order = sorted(vals, key=vals.get, reverse=True)
        ab, abs_ = rs["a-b"], rs["a*-b*"]
        separated = None
        if ab["ci_lo"] is not None and abs_["ci_lo"] is not None:
            separated = (
                "a-b higher"
                if ab["ci_lo"] > abs_["ci_hi"]
                else ("a*-b* higher" if abs_["ci_lo"] > ab["ci_hi"] else "overlap")
            )
        out.append(
            {
                "method": k[0],
                "arch": k[1],
                "seed": k[2],
                "eps": k[3],
                "attack": k[4],
                "order": " > ".join(order),
                "clean_highest": bool(order) and order[0] == "a-b",
                "clean_lowest": bool(order) and order[-1] == "a-b",
                "a-b_vs_a*-b*": separated,
            }
        )
    return out


def fmt(v, lo=None, hi=None) -> str:
    if v is None:
        return "none"
    return f"{v:.4f}" + (f" [{lo:.4f}, {hi:.4f}]" if lo is not None else "")


def seed_mean_ci(v) -> tuple[float, float, float]:
    from scipy import stats as st

    v = np.asarray(v, dtype=float)
    m = float(v.mean())
    if v.size < 2:
        return m, m, m
    h = float(st.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return m, m - h, m + h


def figures(out: Path, irows: list[dict], srows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    atks = sorted({r["attack"] for r in srows})
    fig, axes = plt.subplots(1, len(atks), figsize=(4.2 * len(atks), 3.6))
    for ax, atk in zip(np.atleast_1d(axes), atks):
        for k, arch in enumerate(sorted({r["arch"] for r in srows})):
            for seed in sorted({r["seed"] for r in srows}):
                rs = [r for r in srows if r["attack"] == atk and r["arch"] == arch and r["seed"] == seed]
                ax.plot(
                    [r["eps"] for r in rs],
                    [r["success"] for r in rs],
                    "o-",
                    color=f"C{k}",
                    alpha=0.7,
                    label=arch if seed == min(r["seed"] for r in srows) else None,
                )
        ax.set_xlabel("ε (L2)" if atk == "pgd-l2" else "ε (L∞, pixels in [0, 1])")
        ax.set_ylabel("share of predictions changed")
        ax.set_title(atk)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(out / "success.png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)

    ex = [r for r in irows if r["method"] == "exact"]
    archs = sorted({r["arch"] for r in ex})
    atks = sorted({r["attack"] for r in ex})
    fig, axes = plt.subplots(len(archs), len(atks), figsize=(4.6 * len(atks), 3.4 * len(archs)), squeeze=False)
    for i, arch in enumerate(archs):
        for j, atk in enumerate(atks):
            ax = axes[i, j]
            for k, comb in enumerate(COMBINATIONS):
                epss = sorted({r["eps"] for r in ex})
                m, lo, hi = [], [], []
                for eps in epss:
                    v = [
                        r["mean_nonzero_interaction"]
                        for r in ex
                        if r["arch"] == arch
                        and r["attack"] == atk
                        and r["eps"] == eps
                        and r["combination"] == comb
                        and r["mean_nonzero_interaction"] is not None
                    ]
                    a, b, c = seed_mean_ci(v) if v else (np.nan, np.nan, np.nan)
                    m.append(a)
                    lo.append(b)
                    hi.append(c)
                ax.errorbar(
                    np.array(epss) * (1 + 0.03 * (k - 1.5)),
                    m,
                    yerr=[np.array(m) - np.array(lo), np.array(hi) - np.array(m)],
                    fmt="o-",
                    capsize=3,
                    label=comb.replace("a", "5").replace("b", "7"),
                    color=f"C{k}",
                )
            ax.set_title(f"{arch}, {atk}", fontsize=9)
            ax.set_xlabel("ε")
            ax.set_ylabel("mean Ī_nz (mean over seeds, 95% CI)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(out / "interaction-vs-eps.png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def bubble_for(out: Path, run_file: Path) -> None:
    r = json.loads(run_file.read_text())
    res = AdversarialInteraction(
        classes=tuple(r["classes"]),
        eps=r["eps"],
        method=r["method"],
        n_points=r["n_points"],
        n_pairs=r["n_pairs"],
        attacks=tuple(r["attacks"]),
        results={a: v["combinations"] for a, v in r["attacks"].items()},
        attack_success={a: v["attack_success"] for a, v in r["attacks"].items()},
    )
    bubble_chart(res, out / f"bubble_{run_file.stem.removeprefix('interaction_')}.png")


def report(out: Path) -> dict:
    irows, srows = interaction_rows(out), success_rows(out)
    write_csv(out / "interaction.csv", irows)
    write_csv(out / "success.csv", srows)
    rk = rankings(irows)
    write_csv(out / "rankings.csv", rk)
    summary = {}
    for method in sorted({r["method"] for r in rk}):
        rs = [r for r in rk if r["method"] == method]
        summary[method] = {
            "n_cases": len(rs),
            "clean_highest": int(sum(r["clean_highest"] for r in rs)),
            "clean_lowest": int(sum(r["clean_lowest"] for r in rs)),
            "a-b_vs_a*-b*": {
                k: int(sum(r["a-b_vs_a*-b*"] == k for r in rs)) for k in ("a-b higher", "a*-b* higher", "overlap", None)
            },
        }
    # mean over seeds per arch x eps x attack x combination
    table = []
    for method in sorted({r["method"] for r in irows}):
        for arch in sorted({r["arch"] for r in irows}):
            for eps in sorted({r["eps"] for r in irows if r["method"] == method}):
                for atk in sorted({r["attack"] for r in irows}):
                    row = {"method": method, "arch": arch, "eps": eps, "attack": atk}
                    key = (method, arch, eps, atk)
                    rs = [r for r in irows if (r["method"], r["arch"], r["eps"], r["attack"]) == key]
                    if not rs:
                        continue
                    row["success"] = float(np.mean([r["attack_success"] for r in rs if r["combination"] == "a-b"]))
                    for comb in COMBINATIONS:
                        v = [
                            r["mean_nonzero_interaction"]
                            for r in rs
                            if r["combination"] == comb and r["mean_nonzero_interaction"] is not None
                        ]
                        n = [r["n_paths"] for r in rs if r["combination"] == comb]
                        row[comb] = seed_mean_ci(v) if v else None
                        row[comb + "_paths"] = int(np.sum(n))
                        row[comb + "_seeds"] = len(v)
                    table.append(row)
    with atomic_write(out / "tables.md") as fh:
        fh.write(
            "| walks | arch | ε | attack | success | 5→7 | 5→7* | 5*→7 | 5*→7* |\n"
            "|---|---|---|---|---|---|---|---|---|\n"
        )
        for r in table:
            cells = []
            for comb in COMBINATIONS:
                c = r[comb]
                cells.append("none" if c is None else f"{c[0]:.4f} [{c[1]:.4f}, {c[2]:.4f}] ({r[comb + '_paths']})")
            fh.write(
                f"| {r['method']} | {r['arch']} | {r['eps']:g} | {r['attack']} | {r['success']:.3f} | "
                + " | ".join(cells)
                + " |\n"
            )
        fh.write(
            "\n| walks | arch | seed | ε | attack | order of mean Ī_nz | 5→7 vs 5*→7* (95% CIs) |\n"
            "|---|---|---|---|---|---|---|\n"
        )
        for r in rk:
            fh.write(
                f"| {r['method']} | {r['arch']} | {r['seed']} | {r['eps']:g} | {r['attack']} | "
                f"{r['order'].replace('a', '5').replace('b', '7')} | {r['a-b_vs_a*-b*']} |\n"
            )
        n_eps = max(len(v) for v in SUCCESS_EPS.values())
        fh.write(
            "\n| arch | seed | test acc. | attack | "
            + " | ".join(["success (ε)"] * n_eps)
            + " |\n"
            + "|---|---|---|---|"
            + "---|" * n_eps
            + "\n"
        )
        for arch in sorted({r["arch"] for r in srows}):
            for seed in sorted({r["seed"] for r in srows}):
                for atk in SUCCESS_EPS:
                    rs = [r for r in srows if (r["arch"], r["seed"], r["attack"]) == (arch, seed, atk)]
                    if rs:
                        fh.write(
                            f"| {arch} | {seed} | {rs[0]['test_accuracy']:.4f} | {atk} | "
                            + " | ".join(f"{r['success']:.3f} (ε={r['eps']:g})" for r in rs)
                            + " |\n"
                        )
    with atomic_write(out / "summary.json") as fh:
        json.dump({"rankings": summary, "by_setting": table}, fh, indent=1, allow_nan=False)
    try:
        figures(out, irows, srows)
        first = sorted((out / "runs").glob("interaction_exact_*_s0_eps0.1.json"))
        for f in first:
            bubble_for(out, f)
    except ImportError as err:
        log(f"figures skipped: {err}")
    log(f"report: {len(irows)} interaction rows, {len(srows)} success rows; {json.dumps(summary)}")
    return summary


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", help="directory with the four MNIST IDX files")
    p.add_argument("--out", default=str(ROOT / "experiments" / "results" / "adversarial"))
    p.add_argument("--phase", choices=["all", "study", "report"], default="all")
    p.add_argument("--archs", nargs="+", default=["3x20", "5x12"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--classes", nargs=2, type=int, default=[5, 7])
    p.add_argument("--attacks", nargs="+", default=["fgsm", "pgd"])
    p.add_argument("--eps", nargs="+", type=float, default=[0.05, 0.1, 0.2, 0.3])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--max-pairs", type=int, default=1000)
    p.add_argument("--uniform-eps", type=float, default=0.1, help="ε of the uniform-grid comparison")
    p.add_argument("--uniform-pairs", type=int, default=500)
    p.add_argument("--n-points", type=int, default=100)
    p.add_argument("--n-success", type=int, default=1000, help="test images for the success-vs-ε curves")
    p.add_argument("--n-boot", type=int, default=1000)
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
            f"archs {args.archs} x seeds {args.seeds}, {args.epochs} epochs, classes {args.classes}, attacks "
            f"{args.attacks}, eps {args.eps}, {args.max_pairs} pairs"
        )
        run(data, args, out)
    if args.phase in ("all", "report"):
        report(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
