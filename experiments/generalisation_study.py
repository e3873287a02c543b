"""Folding against generalisation error at a fixed architecture (arXiv 2503.08502's headline).

arXiv 2503.08502 states that "space folding values increase with network depth when
the generalization error is low, but decrease when the error increases". The depth
study (docs/mnist-depth-study.md) changes depth and error together; this study makes the
error the variable and keeps the architecture fixed. For each architecture and seed it
trains MNIST MLPs under three controlled changes of the generalisation error:

- ``noise``: a share of the training labels replaced by uniformly random classes
  (the test labels stay clean);
- ``size``: a stratified subset of the training set, trained for the same number of
  gradient steps as the full set;
- ``length``: one long run on the full training set, measured after the first epoch
  (under-trained), at the epoch of the best held-out accuracy (trained), at the standard
  30 epochs and at the end (over-trained).

Every network is measured on the same inter-class test pairs: Φ_N, the median of maxima
and the share of folded paths with bootstrap intervals, training and test accuracy, the
gap between them (the generalisation error) and the test loss. The held-out set for
early stopping is the last 5,000 training images, never trained on.

    python experiments/generalisation_study.py --data-dir DIR --out experiments/results/generalisation
    python experiments/generalisation_study.py --data-dir DIR --phase report     # tables, figures (<out>/figures)
    python experiments/generalisation_study.py --data-dir DIR --phase report --figures docs/generalisation-study

Resumable: each finished network is a JSON file under OUT/runs/ and is read back, not
recomputed. OUT/config.json records the configuration; a study directory written by
another configuration is refused.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import nn

from spacefold.studies.depth import run_provenance

ROOT = Path(__file__).resolve().parent.parent
# The two readings of "generalisation error": the test error, and the gap between the
# accuracy on the (possibly noisy) training labels and on the test set.
ERRORS = ("test_error", "gap")
DEFAULTS = {
    "archs": ["1x60", "3x20", "5x12"],
    "seeds": [0, 1, 2],
    "noise": [0.0, 0.2, 0.4, 0.6],
    "sizes": [1000, 3000, 10000],
    "epochs": 30,
    "long_epochs": 60,
    "lr": 1e-3,
    "batch_size": 128,
    "n_val": 5000,
    "max_pairs": 10000,
    "pair_seed": 0,
    "n_boot": 200,
}


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def check_config(cfg: dict, n_train_total: int) -> None:
    """Reject configurations that cannot be run; every message names the option."""
    for p in cfg["noise"]:
        if not (isinstance(p, (int, float)) and math.isfinite(p) and 0.0 <= p < 1.0):
            raise ValueError(f"--noise levels must be in [0, 1), got {p}")
    n_fit = n_train_total - cfg["n_val"]
    for n in cfg["sizes"]:
        if not 10 <= n <= n_fit:
            raise ValueError(
                f"--sizes must be between 10 and the {n_fit} training images left after the held-out set, got {n}"
            )
    for key in ("epochs", "long_epochs", "batch_size", "max_pairs", "n_boot"):
        if cfg[key] < 1:
            raise ValueError(f"--{key.replace('_', '-')} must be >= 1, got {cfg[key]}")
    if cfg["long_epochs"] < cfg["epochs"]:
        raise ValueError(f"--long-epochs ({cfg['long_epochs']}) must be >= --epochs ({cfg['epochs']})")


def claim_study_dir(out: Path, cfg: dict) -> None:
    """Write OUT/config.json, or check that the one there is this configuration."""
    from spacefold._util import atomic_write

    path = out / "config.json"
    if path.exists():
        old = json.loads(path.read_text())
        if old != cfg:
            diff = sorted(k for k in set(old) | set(cfg) if old.get(k) != cfg.get(k))
            raise ValueError(
                f"{out} holds a study with another configuration (differs in {', '.join(diff)}); "
                "use another --out or the same options"
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as fh:
        json.dump(cfg, fh, indent=1, sort_keys=True)


def runs_of(cfg: dict) -> list[dict]:
    """Every network of the study: (arch, seed, condition, level)."""
    runs = []
    for arch in cfg["archs"]:
        for seed in cfg["seeds"]:
            runs.append({"arch": arch, "seed": seed, "kind": "long"})
            for p in cfg["noise"]:
                if p > 0:
                    runs.append({"arch": arch, "seed": seed, "kind": "noise", "level": p})
            for n in cfg["sizes"]:
                runs.append({"arch": arch, "seed": seed, "kind": "size", "level": n})
    return runs


def run_name(run: dict) -> str:
    if run["kind"] == "long":
        return f"{run['arch']}_s{run['seed']}_long"
    return f"{run['arch']}_s{run['seed']}_{run['kind']}{run['level']:g}"


def _load(data_dir: str, n_val: int):
    from spacefold.data import load_mnist

    d = load_mnist(data_dir)
    n = d.x_train.shape[0] - n_val
    return d, (d.x_train[:n], d.y_train[:n]), (d.x_train[n:], d.y_train[n:])


def _noisy(y: torch.Tensor, share: float, n_classes: int, seed: int) -> torch.Tensor:
    """``y`` with a random ``share`` of its entries replaced by uniformly random classes."""
    g = torch.Generator().manual_seed(10_000 + seed)
    pick = torch.randperm(y.numel(), generator=g)[: round(share * y.numel())]
    out = y.clone()
    out[pick] = torch.randint(0, n_classes, (pick.numel(),), generator=g)
    return out


@torch.no_grad()
def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float(nn.functional.cross_entropy(model(x), y))


def measure(model: nn.Module, d, fit, cfg: dict, seed: int) -> dict:
    """Accuracies, gap, test loss and folding on the study's fixed test pairs."""
    from spacefold._core.global_folding import global_folding
    from spacefold._core.pairs import pair_plan, plan_fingerprint
    from spacefold.models.train import accuracy

    model.eval()
    t0 = time.perf_counter()
    plan = pair_plan(d.y_test, "inter-class", max_pairs=cfg["max_pairs"], seed=cfg["pair_seed"])
    g = global_folding(model, d.x_test, d.y_test, pairs=plan, seed=cfg["pair_seed"], batch_size=8192)
    ci = g.bootstrap(n_boot=cfg["n_boot"], seed=seed, stats=("phi", "phi_max", "fraction_folded"))
    train_acc = accuracy(model, fit[0], fit[1])
    test_acc = accuracy(model, d.x_test, d.y_test)
    return {
        "train_accuracy": train_acc,
        "test_accuracy": test_acc,
        "gap": train_acc - test_acc,
        "test_loss": _loss(model, d.x_test, d.y_test),
        "phi": g.phi,
        "phi_max": g.phi_max,
        "fraction_folded": g.fraction_folded,
        "n_paths": g.n_paths,
        "ci": {k: list(v) for k, v in ci.items()},
        "measure_seconds": time.perf_counter() - t0,
        "pair_plan": plan_fingerprint(plan),
    }


def train_run(run: dict, cfg: dict, data_dir: str) -> list[dict]:
    """Train one network of the study and measure it (several snapshots for ``long``)."""
    import copy

    from spacefold.models import mlp
    from spacefold.models.train import accuracy

    torch.set_num_threads(1)
    d, (xf, yf), (xv, yv) = _load(data_dir, cfg["n_val"])
    seed = run["seed"]
    if run["kind"] == "noise":
        yf_train = _noisy(yf, run["level"], d.n_classes, seed)
        xf_train, epochs = xf, cfg["epochs"]
    elif run["kind"] == "size":
        from spacefold.data.datasets import stratified_indices

        idx = stratified_indices(yf, run["level"], seed)
        xf_train, yf_train = xf[idx], yf[idx]
        steps = cfg["epochs"] * math.ceil(xf.shape[0] / cfg["batch_size"])
        epochs = max(1, round(steps / math.ceil(run["level"] / cfg["batch_size"])))
    else:
        xf_train, yf_train, epochs = xf, yf, cfg["long_epochs"]
    fit = (xf_train, yf_train)
    model = mlp(run["arch"], d.n_features, d.n_classes, seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    g = torch.Generator().manual_seed(seed)
    n = xf_train.shape[0]
    snaps = {1: "under-trained", cfg["epochs"]: "standard", epochs: "final"}
    best = (-1.0, 0, None)
    out = []
    t0 = time.perf_counter()
    for ep in range(1, epochs + 1):
        model.train()
        perm = torch.randperm(n, generator=g)
        for k in range(0, n, cfg["batch_size"]):
            idx = perm[k : k + cfg["batch_size"]]
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(xf_train[idx]), yf_train[idx]).backward()
            opt.step()
        model.eval()
        if run["kind"] == "long":
            val = accuracy(model, xv, yv)
            if val > best[0]:
                best = (val, ep, copy.deepcopy(model.state_dict()))
            if ep in snaps and ep != epochs:
                out.append({**run, "stage": snaps[ep], "epoch": ep, **measure(model, d, fit, cfg, seed)})
    seconds = time.perf_counter() - t0
    base = {**run, "train_seconds": seconds}
    if run["kind"] == "long":
        out.append({**run, "stage": "over-trained", "epoch": epochs, **measure(model, d, fit, cfg, seed)})
        model.load_state_dict(best[2])
        out.append(
            {
                **run,
                "stage": "best-held-out",
                "epoch": best[1],
                "val_accuracy": best[0],
                **measure(model, d, fit, cfg, seed),
            }
        )
        return [{**base, **r} for r in out]
    return [{**base, "epoch": epochs, **measure(model, d, fit, cfg, seed)}]


def run_all(cfg: dict, data_dir: str, out: Path, workers: int) -> None:
    from spacefold._util import atomic_write

    todo = [r for r in runs_of(cfg) if not (out / "runs" / f"{run_name(r)}.json").exists()]
    log(f"{len(runs_of(cfg)) - len(todo)} runs done, {len(todo)} to do, {workers} worker(s)")
    (out / "runs").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        futs = {pool.submit(train_run, r, cfg, data_dir): r for r in todo}
        for fut in futs:
            r = futs[fut]
            rows = [{**x, "provenance": run_provenance()} for x in fut.result()]
            with atomic_write(out / "runs" / f"{run_name(r)}.json") as fh:
                json.dump(rows, fh, indent=1)
            log(
                f"{run_name(r)}: "
                + ", ".join(f"{x.get('stage', r['kind'])} gap {x['gap']:.3f} phi {x['phi']:.3f}" for x in rows)
            )
    log(f"training and measuring took {time.perf_counter() - t0:.0f} s")


# ------------------------------------------------------------------------------- analysis


def load_rows(out: Path) -> list[dict]:
    rows = []
    for p in sorted((out / "runs").glob("*.json")):
        rows.extend(json.loads(p.read_text()))
    for r in rows:
        r["test_error"] = 1.0 - r["test_accuracy"]
        if r["kind"] == "long":
            r["condition"] = (
                f"length: {r['stage']} ({r['epoch']} ep)" if r["stage"] != "best-held-out" else "length: best held-out"
            )
        elif r["kind"] == "noise":
            r["condition"] = f"noise {r['level']:.0%}"
        else:
            r["condition"] = f"size {int(r['level'])}"
        if r["kind"] == "long" and r["stage"] == "standard":
            r["condition"] = f"reference (noise 0, all, {r['epoch']} ep)"
    return rows


def t_interval(v) -> tuple[float, float, float]:
    """Mean and 95% t-interval over seeds."""
    from scipy import stats as st  # noqa: F401  (scipy ships with scikit-learn)

    v = np.asarray(v, dtype=float)
    m = float(v.mean())
    if v.size < 2:
        return m, m, m
    h = float(st.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return m, m - h, m + h


def spearman(a, b) -> float:
    from scipy.stats import spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def analyse(rows: list[dict], cfg: dict) -> dict:
    """Within each architecture: rank correlation of Φ_N (and the other folding numbers)
    with the gap, per seed over all conditions, then a t-interval over seeds; across
    architectures: least squares Φ_N ~ depth + gap with a bootstrap over seeds."""
    res = {"within": {}, "across": {}}
    for arch in cfg["archs"]:
        res["within"][arch] = {}
        for err in ERRORS:
            per_seed = {}
            for key in ("phi", "phi_max", "fraction_folded"):
                rs = []
                for s in cfg["seeds"]:
                    sel = [r for r in rows if r["arch"] == arch and r["seed"] == s]
                    if len(sel) >= 3:
                        rs.append(spearman([r[err] for r in sel], [r[key] for r in sel]))
                rs = [x for x in rs if math.isfinite(x)]
                per_seed[key] = {"rho": t_interval(rs) if rs else None, "per_seed": rs}
            res["within"][arch][err] = per_seed
    depth = {a: int(a.split("x")[0]) for a in cfg["archs"]}
    rng = np.random.default_rng(0)

    deep = [r for r in rows if depth[r["arch"]] > 1]  # one hidden layer never folds
    if len({depth[r["arch"]] for r in deep}) < 2:
        res["across"] = {"model": "needs two architectures with more than one hidden layer"}
        return res
    seeds = np.array(cfg["seeds"])
    for err in ERRORS:

        def fit(sel):
            X = np.array([[1.0, depth[r["arch"]], r[err]] for r in sel])
            yv = np.array([r["phi"] for r in sel])
            return np.linalg.lstsq(X, yv, rcond=None)[0]

        coef = fit(deep)
        boots = []
        for _ in range(1000):
            pick = rng.choice(seeds, seeds.size)
            boots.append(fit([r for s in pick for r in deep if r["seed"] == s]))
        lo, hi = np.percentile(np.array(boots), [2.5, 97.5], axis=0)
        res["across"][err] = {
            "model": f"phi ~ 1 + depth + {err} (networks with more than one hidden layer)",
            "coef": {"intercept": coef[0], "depth": coef[1], err: coef[2]},
            "ci": {"intercept": [lo[0], hi[0]], "depth": [lo[1], hi[1]], err: [lo[2], hi[2]]},
        }
    return res


def paired(rows: list[dict], cfg: dict) -> str:
    """For each architecture: each condition minus the reference network of the same seed
    (test error, Φ_N, share folded), mean and 95% t-interval over seeds."""
    lines = [
        "| arch | condition − reference | Δ test error | Δ Φ_N | Δ median of maxima | Δ share folded |",
        "|---|---|---|---|---|---|",
    ]
    for arch in cfg["archs"]:
        ref = {r["seed"]: r for r in rows if r["arch"] == arch and r["kind"] == "long" and r["stage"] == "standard"}
        conds = []
        for r in rows:
            if r["arch"] == arch and r["condition"] not in conds and not r["condition"].startswith("reference"):
                conds.append(r["condition"])
        for c in sorted(conds):
            sel = [r for r in rows if r["arch"] == arch and r["condition"] == c and r["seed"] in ref]
            if not sel:
                continue

            def d(key, digits=3):
                m, lo, hi = t_interval([r[key] - ref[r["seed"]][key] for r in sel])
                return f"{m:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"

            lines.append(
                f"| {arch} | {c} | {d('test_error')} | {d('phi')} | {d('phi_max')} | {d('fraction_folded', 2)} |"
            )
    return "\n".join(lines)


def table(rows: list[dict], cfg: dict) -> str:
    conds = []
    for r in rows:
        if r["condition"] not in conds:
            conds.append(r["condition"])
    order = sorted(
        conds,
        key=lambda c: (
            0 if c.startswith("reference") else 1 if c.startswith("noise") else 2 if c.startswith("size") else 3,
            c,
        ),
    )
    lines = [
        "| arch | condition | train acc | test acc | gap | test loss | Φ_N | median of maxima | share folded |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for arch in cfg["archs"]:
        for c in order:
            sel = [r for r in rows if r["arch"] == arch and r["condition"] == c]
            if not sel:
                continue

            def f(key, digits=3):
                m, lo, hi = t_interval([r[key] for r in sel])
                return f"{m:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"

            lines.append(
                f"| {arch} | {c} | {f('train_accuracy')} | {f('test_accuracy')} | {f('gap')} | "
                f"{f('test_loss', 2)} | {f('phi')} | {f('phi_max')} | {f('fraction_folded', 2)} |"
            )
    return "\n".join(lines)


def figure(rows: list[dict], cfg: dict, path: Path, xkey: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from spacefold._util import atomic_path

    xlabel = {"test_error": "test error (1 − test accuracy)", "gap": "gap (train − test accuracy)"}[xkey]
    colours = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    for ax, kind, title in zip(
        axes, ("noise", "size", "long"), ("label noise", "training set size", "length of training")
    ):
        for arch, col in zip(cfg["archs"], colours):
            sel = [r for r in rows if r["arch"] == arch and r["kind"] == kind]
            if kind != "long":
                sel += [r for r in rows if r["arch"] == arch and r["kind"] == "long" and r["stage"] == "standard"]
            groups = {}
            for r in sel:
                groups.setdefault(r["condition"], []).append(r)
            pts = []
            for g in groups.values():
                gm = t_interval([r[xkey] for r in g])
                pm = t_interval([r["phi"] for r in g])
                pts.append((gm, pm))
            pts.sort(key=lambda p: p[0][0])
            if not pts:
                continue
            x = [p[0][0] for p in pts]
            y = [p[1][0] for p in pts]
            yerr = [[p[1][0] - p[1][1] for p in pts], [p[1][2] - p[1][0] for p in pts]]
            ax.errorbar(x, y, yerr=yerr, marker="o", color=col, label=arch, capsize=3)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("Φ_N")
        ax.set_title(f"MNIST, {title}")
        ax.grid(alpha=0.3)
    axes[0].legend(title="architecture")
    n = len({r["seed"] for r in rows})
    fig.suptitle(
        f"Φ_N against the {xlabel.split(' (')[0]}; {cfg['max_pairs']} inter-class test pairs per network; "
        f"mean over {n} seeds, bars: 95% t-interval over seeds",
        fontsize=10,
    )
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=150, format="png")
    plt.close(fig)


def report(out: Path, cfg: dict, figdir: Path | None = None) -> None:
    from spacefold._util import atomic_write

    rows = load_rows(out)
    if not rows:
        raise ValueError(f"{out}/runs holds no finished run; run the study first")
    res = analyse(rows, cfg)
    with atomic_write(out / "results.json") as fh:
        json.dump({"config": cfg, "runs": rows, "analysis": res}, fh, indent=1, default=float)
    keys = [
        "arch",
        "seed",
        "kind",
        "level",
        "stage",
        "epoch",
        "condition",
        "train_accuracy",
        "test_accuracy",
        "test_error",
        "gap",
        "test_loss",
        "phi",
        "phi_max",
        "fraction_folded",
        "n_paths",
        "train_seconds",
    ]
    with atomic_write(out / "results.csv") as fh:
        fh.write(",".join(keys) + "\n")
        for r in rows:
            fh.write(",".join(json.dumps(r.get(k, "")) for k in keys) + "\n")
    figdir = Path(figdir) if figdir is not None else out / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    figure(rows, cfg, figdir / "phi-vs-test-error.png", "test_error")
    figure(rows, cfg, figdir / "phi-vs-gap.png", "gap")
    with atomic_write(out / "tables.md") as fh:
        fh.write(
            "## Every condition\n\n" + table(rows, cfg) + "\n\n## Paired with the reference network of the same "
            "seed\n\n" + paired(rows, cfg) + "\n"
        )
    print(table(rows, cfg))
    print(paired(rows, cfg))
    print(json.dumps(res, indent=1, default=float))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True, help="folder with the four MNIST IDX files")
    p.add_argument("--out", default=str(ROOT / "experiments" / "results" / "generalisation"))
    p.add_argument("--phase", choices=("all", "run", "report"), default="all")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="training processes (default: every core)")
    p.add_argument("--archs", nargs="+", default=DEFAULTS["archs"])
    p.add_argument("--seeds", nargs="+", type=int, default=DEFAULTS["seeds"])
    p.add_argument("--noise", nargs="+", type=float, default=DEFAULTS["noise"])
    p.add_argument("--sizes", nargs="+", type=int, default=DEFAULTS["sizes"])
    for key in ("epochs", "long_epochs", "batch_size", "n_val", "max_pairs", "n_boot"):
        p.add_argument(f"--{key.replace('_', '-')}", type=int, default=DEFAULTS[key])
    p.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    p.add_argument(
        "--figures",
        type=Path,
        default=None,
        help="folder for the figures (default: <out>/figures; the docs' figures: docs/generalisation-study)",
    )
    a = p.parse_args(argv)
    run_provenance()  # taken now: the runs record the code this process started with
    cfg = {k: getattr(a, k) for k in DEFAULTS if k != "pair_seed"}
    cfg["pair_seed"] = DEFAULTS["pair_seed"]
    out = Path(a.out)
    try:
        from spacefold.models import parse_arch

        for arch in cfg["archs"]:
            parse_arch(arch)
        d, _, _ = _load(a.data_dir, cfg["n_val"])
        check_config(cfg, d.x_train.shape[0])
        claim_study_dir(out, cfg)
    except (ValueError, OSError) as err:
        print(f"generalisation_study: {err}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    if a.phase in ("all", "run"):
        run_all(cfg, a.data_dir, out, max(1, a.workers))
    if a.phase in ("all", "report"):
        report(out, cfg, a.figures)
    log(f"done in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
