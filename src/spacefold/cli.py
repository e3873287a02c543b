"""Command line: argument parsing and printing only; every command calls the public API.

Exit codes: 0 success, 2 bad input (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence


class UsageError(ValueError):
    """Bad input found by the CLI itself."""


def _emit_json(obj) -> None:
    print(json.dumps(obj, indent=None, sort_keys=False))


# --------------------------------------------------------------------------- cantornet


def _add_cantornet(sub) -> None:
    p = sub.add_parser(
        "cantornet",
        help="folding of CantorNet along a segment",
        description="Folding of CantorNet (representations A, B, C) along a segment, "
        "default (0, 0.75) -> (1, 0.75).",
    )
    p.add_argument("--depth", type=int, default=1, help="recursion depth k >= 1 (default 1)")
    p.add_argument("--representation", default="A", help="A (recursive), B or C (DNF-like); default A")
    p.add_argument("--method", default="exact", help="exact | bisect | uniform (default exact)")
    p.add_argument("--steps", type=int, default=10, help="uniform: steps + 1 grid points (default 10)")
    p.add_argument("--start", type=float, nargs=2, metavar=("X", "Y"), default=(0.0, 0.75))
    p.add_argument("--end", type=float, nargs=2, metavar=("X", "Y"), default=(1.0, 0.75))
    p.add_argument("--tol", type=float, default=None,
                   help="bisect: locate transitions within TOL in t; exact: crossings closer than TOL are "
                   "simultaneous (default: 1e-6 for bisect; for exact 1e-9, or 1e-6 with a tie tolerance)")
    p.add_argument("--tie-tol", type=float, default=None,
                   help="bit = pre-activation > TIE_TOL (default: the net's recommended value, 1e-9 in float64, "
                   "which representation C needs for its exact ties)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_cantornet)


def _cantornet_point(values, option: str):
    import math

    import torch

    x, y = (float(v) for v in values)
    if not (math.isfinite(x) and math.isfinite(y)):
        raise UsageError(f"{option} must be two finite numbers X Y, got {x} {y}")
    return torch.tensor([x, y], dtype=torch.float64)


def _cantornet_options(args) -> dict:
    """Validate the cantornet options; every message names the option."""
    import math

    from .cantornet import MAX_DEPTH, REPRESENTATIONS
    from .walk import METHODS

    if not 1 <= args.depth <= MAX_DEPTH:
        raise UsageError(f"--depth must be an int in [1, {MAX_DEPTH}] (the recursion depth k), got {args.depth}")
    rep = str(args.representation).strip().upper()
    if rep not in REPRESENTATIONS:
        raise UsageError(f"--representation must be one of A, B, C, got {args.representation!r}")
    method = str(args.method).strip().lower()
    if method not in METHODS:
        raise UsageError(f"--method must be one of {', '.join(METHODS)}, got {args.method!r}")
    if args.steps < 1:
        raise UsageError(f"--steps must be an int >= 1 (the uniform grid has steps + 1 points), got {args.steps}")
    for option, value in (("--tol", args.tol), ("--tie-tol", args.tie_tol)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise UsageError(f"{option} must be a finite number >= 0, got {value}")
    return {
        "depth": args.depth,
        "representation": rep,
        "method": method,
        "start": _cantornet_point(args.start, "--start"),
        "end": _cantornet_point(args.end, "--end"),
    }


def _cantornet_result(depth: int, representation: str, method: str, start, end, *, steps: int = 10,
                      tol: float | None = None, tie_tol: float | None = None) -> dict:
    """Folding of CantorNet along ``start -> end`` as a JSON-ready dict.

    ``profile`` is χ of every prefix after the start: for ``"uniform"`` one value per
    grid step (t = 1/steps, ..., 1, as plotted in P2's CantorNet figure), otherwise
    one value per region after the first, with ``t`` the regions' entry points.
    ``tie_tol=None`` uses the net's recommended tie tolerance.
    """
    import torch

    import spacefold as sf

    net = sf.cantornet(depth=depth, representation=representation)
    tie = net.tie_tol if tie_tol is None else tie_tol
    f = sf.folding(net, start, end, method=method, steps=steps, tol=tol, tie_tol=tie)
    out = {
        "depth": net.depth,
        "representation": net.representation,
        "method": method,
    }
    if method == "uniform":
        out["steps"] = steps
        profile = f.profile[f.walk.grid_index][1:]
        t = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)[1:]
    else:
        from .folding import resolve_tol

        out["tol"] = resolve_tol(method, tol, tie)
        profile = f.profile[1:]
        t = f.walk.t[1:]
    out.update({
        "start": [float(v) for v in start],
        "end": [float(v) for v in end],
        "tie_tol": tie,
        "n_neurons": net.n_neurons,
        "r1": int(f.r1),
        "r2": int(f.r2),
        "chi": float(f.chi),
        "n_regions": int(f.n_regions),
        "profile": [float(v) for v in profile],
        "t": [float(v) for v in t],
    })
    return out


def _cantornet_table(res: dict, max_rows: int = 40) -> str:
    how = f"{res['steps']} uniform steps" if res["method"] == "uniform" else f"method {res['method']}"
    lines = [
        f"CantorNet {res['representation']}, depth {res['depth']} ({res['n_neurons']} neurons), {how}, "
        f"({res['start'][0]:g}, {res['start'][1]:g}) -> ({res['end'][0]:g}, {res['end'][1]:g})",
        f"r1 {res['r1']}   r2 {res['r2']}   chi {res['chi']:.4f}   regions {res['n_regions']}",
    ]
    rows = list(zip(res["t"], res["profile"]))
    if rows:
        lines.append(f"{'t':>10}  {'prefix chi':>10}")
        half = max_rows // 2
        shown = rows if len(rows) <= max_rows else rows[:half] + [None] + rows[-half:]
        for row in shown:
            if row is None:
                lines.append(f"{'...':>10}  ({len(rows) - 2 * half} more; --json prints all)")
            else:
                lines.append(f"{row[0]:>10.6f}  {row[1]:>10.4f}")
    return "\n".join(lines)


def _cmd_cantornet(args) -> int:
    opts = _cantornet_options(args)
    res = _cantornet_result(**opts, steps=args.steps, tol=args.tol, tie_tol=args.tie_tol)
    if args.json:
        _emit_json(res)
    else:
        print(_cantornet_table(res))
    return 0


# --------------------------------------------------------------------------- measure, sweep, demo


def _cli_method(value: str) -> str:
    if value not in ("exact", "bisect", "uniform"):
        raise UsageError(f"--method must be one of exact, bisect, uniform, got {value!r}")
    return value


def _cli_data(args):
    from .data import load_dataset

    try:
        data = load_dataset(args.data, args.data_dir, download=getattr(args, "download", False), seed=args.data_seed)
    except ImportError as err:
        raise UsageError(str(err)) from None
    n_train, n_test = getattr(args, "n_train", None), getattr(args, "n_test", None)
    for opt, v in (("--n-train", n_train), ("--n-test", n_test)):
        if v is not None and v < 2:
            raise UsageError(f"{opt} must be an int >= 2, got {v}")
    if n_train is not None or n_test is not None:
        data = data.subset(n_train, n_test, seed=args.data_seed)
    return data


def _add_data_args(p, default: str | None) -> None:
    p.add_argument("--data", default=default, required=default is None,
                   help="mnist | digits | blobs | spirals | a directory of MNIST IDX files | an .npz file (x, y)"
                   + (f" (default {default})" if default else ""))
    p.add_argument("--data-dir", default=None, help="directory holding the MNIST IDX files (for --data mnist)")
    p.add_argument("--download", action="store_true", help="download MNIST into --data-dir (needs torchvision)")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the train/test split and subsets (default 0)")


def _add_measure(sub) -> None:
    p = sub.add_parser(
        "measure",
        help="global folding of a saved model on a data set",
        description="Global folding of a saved model (a checkpoint written by spacefold sweep/demo or "
        "spacefold.save_checkpoint) on the test split of a data set: Φ_N (median of the non-zero χ), "
        "the median of the non-zero profile maxima, the share of folded paths, per class pair table.",
    )
    p.add_argument("--model", required=True, help="checkpoint file (.pt)")
    _add_data_args(p, None)
    p.add_argument("--split", default="test", choices=["test", "train"], help="which split to walk (default test)")
    p.add_argument("--n-test", type=int, default=None, help="use a stratified subset of this many samples")
    p.add_argument("--pairs", default="inter-class", help="inter-class | all | centroids | random (default inter-class)")
    p.add_argument("--max-pairs", type=int, default=None, help="at most this many paths, spread over class pairs")
    p.add_argument("--n-clusters", type=int, default=10, help="k-means clusters per class for --pairs centroids")
    p.add_argument("--method", default="exact", help="exact | bisect | uniform (default exact)")
    p.add_argument("--steps", type=int, default=100, help="uniform: steps + 1 grid points (default 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the pair sample and the centroids (default 0)")
    p.add_argument("--per-layer", action="store_true", help="also the folding of each layer's bits alone")
    p.add_argument("--ci", action="store_true", help="bootstrap 95%% confidence intervals")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--batch-size", type=int, default=1024, help="segments walked at once (default 1024)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--out", default=None, help="also write measure.json and class_pairs.csv to this directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_measure)


def _cmd_measure(args) -> int:
    from .models import load_checkpoint

    method = _cli_method(args.method)
    for opt, v, lo in (("--max-pairs", args.max_pairs, 1), ("--n-clusters", args.n_clusters, 1),
                       ("--steps", args.steps, 1), ("--n-boot", args.n_boot, 1), ("--batch-size", args.batch_size, 1),
                       ("--seed", args.seed, 0)):
        if v is not None and v < lo:
            raise UsageError(f"{opt} must be an int >= {lo}, got {v}")
    if args.pairs not in ("inter-class", "all", "centroids", "random"):
        raise UsageError(f"--pairs must be one of inter-class, all, centroids, random, got {args.pairs!r}")
    model = load_checkpoint(args.model)
    data = _cli_data(args)
    if data.n_features != model.in_features:
        raise UsageError(f"--model takes {model.in_features} input features but --data {args.data} has "
                         f"{data.n_features}")
    x, y = data.split(args.split)
    if args.split == "train" and args.n_test is not None and args.n_test < len(y):
        from .data import stratified_indices

        idx = stratified_indices(y, args.n_test, args.data_seed)
        x, y = x[idx], y[idx]
    from .global_folding import global_folding

    try:
        g = global_folding(model, x, y, pairs=args.pairs, max_pairs=args.max_pairs, seed=args.seed, method=method,
                           n_clusters=args.n_clusters, steps=args.steps, per_layer=args.per_layer,
                           batch_size=args.batch_size, progress=not args.no_progress)
    except ImportError as err:
        raise UsageError(str(err)) from None
    res = g.to_dict(ci=args.ci, n_boot=args.n_boot, ci_seed=args.seed)
    res = {"model": str(args.model), "data": data.name, "split": args.split, **res}
    if args.out:
        _write_measure(res, args.out)
    if args.json:
        _emit_json(res)
    else:
        print(_measure_text(res))
    return 0


def _write_measure(res: dict, out) -> None:
    import csv
    from pathlib import Path

    from ._util import atomic_write

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out must be a directory, got the file {out}")
    with atomic_write(out / "measure.json") as fh:
        json.dump(res, fh, indent=1)
    rows = res["class_pairs"]
    with atomic_write(out / "class_pairs.csv") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _measure_text(res: dict) -> str:
    ci = res.get("ci95", {})

    def v(key, label):
        s = f"{label:<34}{res[key]:.4f}"
        if key in ci:
            s += f"  [{ci[key][0]:.4f}, {ci[key][1]:.4f}]"
        return s

    lines = [
        f"model {res['model']} on {res['data']} ({res['split']}), pairs {res['pairs']}, method {res['method']}",
        f"{'paths':<34}{res['n_paths']} ({res['n_folded']} folded)",
        v("phi", "Φ_N (median non-zero χ)"),
        v("phi_max", "median non-zero profile max"),
        v("phi_max_p2", "P2 aggregate over class pairs"),
        v("fraction_folded", "share of folded paths"),
        f"{'mean χ':<34}{res['mean_chi']:.4f}",
        f"{'mean regions per path':<34}{res['mean_regions']:.1f}",
        "",
        f"{'a':>3} {'b':>3} {'paths':>8} {'Φ_N':>8} {'folded':>8} {'max med':>8}",
    ]
    for r in res["class_pairs"]:
        lines.append(f"{r['a']:>3} {r['b']:>3} {r['n_paths']:>8} {r['phi']:>8.4f} {r['fraction_folded']:>8.4f} "
                     f"{r['phi_max']:>8.4f}")
    for r in res.get("per_layer", []):
        lines.append(f"layer {r['layer']}: Φ_N {r['phi']:.4f}, share folded {r['fraction_folded']:.4f}")
    return "\n".join(lines)


def _add_sweep(sub) -> None:
    from .models import DEPTH_SERIES

    p = sub.add_parser(
        "sweep",
        help="train a family of models and measure each (depth study)",
        description="Train a family of MLPs (by default the 60-neuron budget 1x60 ... 6x10) with several seeds "
        "and measure the global folding of each on test pairs. Finished runs are skipped when the sweep is "
        "started again. Writes results.csv, results.json, summary.md and plots to --out.",
    )
    _add_data_args(p, "digits")
    p.add_argument("--n-train", type=int, default=None, help="train on a stratified subset of this many samples")
    p.add_argument("--n-test", type=int, default=None, help="measure on a stratified subset of this many samples")
    p.add_argument("--archs", nargs="+", default=list(DEPTH_SERIES), help="architectures, e.g. 3x20 5x12 30-20")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds (default 0 1 2)")
    p.add_argument("--epochs", type=int, default=30, help="training epochs (default 30)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--batch-size", type=int, default=128, help="training batch size (default 128)")
    p.add_argument("--method", default="exact", help="exact | bisect | uniform (default exact)")
    p.add_argument("--steps", type=int, default=100, help="uniform: steps + 1 grid points (default 100)")
    p.add_argument("--pairs-per-class-pair", type=int, default=200,
                   help="random test pairs per ordered class pair (default 200)")
    p.add_argument("--n-boot", type=int, default=500, help="bootstrap resamples for the intervals (default 500)")
    p.add_argument("--min-accuracy", type=float, default=0.9,
                   help="runs below this test accuracy are drawn hollow and left out of the depth trend (default 0.9)")
    p.add_argument("--out", default="spacefold-sweep", help="output directory (default ./spacefold-sweep)")
    p.add_argument("--no-plots", action="store_true", help="write no figures")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print one JSON object (the summary) on stdout")
    p.set_defaults(func=_cmd_sweep)


def _cmd_sweep(args) -> int:
    from .models import parse_arch
    from .study import StudySettings

    for opt, v, lo in (("--epochs", args.epochs, 1), ("--batch-size", args.batch_size, 1), ("--steps", args.steps, 1),
                       ("--pairs-per-class-pair", args.pairs_per_class_pair, 1), ("--n-boot", args.n_boot, 1)):
        if v < lo:
            raise UsageError(f"{opt} must be an int >= {lo}, got {v}")
    if not args.lr > 0:
        raise UsageError(f"--lr must be > 0, got {args.lr}")
    if any(s < 0 for s in args.seeds):
        raise UsageError(f"--seeds must be ints >= 0, got {args.seeds}")
    for a in args.archs:
        try:
            parse_arch(a)
        except (ValueError, TypeError) as err:
            raise UsageError(f"--archs: {err}") from None
    settings = StudySettings(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                             method=_cli_method(args.method), steps=args.steps,
                             pairs_per_class_pair=args.pairs_per_class_pair, n_boot=args.n_boot)
    data = _cli_data(args)
    return _run_sweep(data, args.archs, args.seeds, settings, args.out, plots=not args.no_plots,
                      progress=not args.no_progress, as_json=args.json, min_accuracy=args.min_accuracy)


def _run_sweep(data, archs, seeds, settings, out, *, plots, progress, as_json, min_accuracy) -> int:
    from pathlib import Path

    from .study import depth_trend, markdown_summary, run_study, summary_by_arch

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out must be a directory, got the file {out}")

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    log(f"data {data.name}: {data.describe()['n_train']} train / {data.describe()['n_test']} test samples, "
        f"{len(archs)} architectures x {len(seeds)} seeds, method {settings.method}, results in {out}")
    rows = run_study(data, archs, seeds, out, settings, progress=progress, log=log)
    figs = []
    if plots:
        try:
            from .plot import study_figures

            figs = [str(p) for p in study_figures(rows, out / "plots", min_accuracy=min_accuracy)]
        except ImportError as err:
            log(f"plots skipped: {err}")
    trend = depth_trend(rows, min_accuracy, "phi")
    summary = {"out": str(out), "data": data.describe(), "method": settings.method, "by_arch": summary_by_arch(rows),
               "depth_trend": trend, "figures": figs}
    if as_json:
        _emit_json(summary)
    else:
        print(markdown_summary(rows))
        print()
        med = ", ".join(f"{d}: {v:.4f}" for d, v in trend["median_by_depth"].items())
        print(f"Φ_N by depth (median over runs with test accuracy >= {min_accuracy:.2f}): {med}; "
              f"Spearman ρ(depth, Φ_N) = {trend['spearman_depth']:.3f}")
        print(f"tables: {out / 'results.csv'}, {out / 'results.json'}, {out / 'summary.md'}"
              + (f"; figures in {out / 'plots'}" if figs else ""))
    return 0


def _add_demo(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="a small depth study on scikit-learn's digits (no download)",
        description="The embedded default: train the 60-neuron depth series 1x60 ... 6x10 with 3 seeds on "
        "scikit-learn's 8x8 digits and measure the global folding of each on test pairs; writes plots and a "
        "summary table (CSV, JSON, markdown) to --out. A few minutes on 2 CPU cores.",
    )
    p.add_argument("--out", default="spacefold-demo", help="output directory (default ./spacefold-demo)")
    p.add_argument("--method", default="exact", help="exact | bisect | uniform (default exact)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print one JSON object (the summary) on stdout")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args) -> int:
    from .data import load_digits
    from .models import DEPTH_SERIES
    from .study import demo_settings

    method = _cli_method(args.method)
    try:
        data = load_digits(seed=0)
    except ImportError as err:
        raise UsageError(str(err)) from None
    settings = demo_settings(method)
    return _run_sweep(data, list(DEPTH_SERIES), [0, 1, 2], settings, args.out, plots=True,
                      progress=not args.no_progress, as_json=args.json, min_accuracy=0.9)


# --------------------------------------------------------------------------- main

_COMMANDS: list[Callable] = [_add_cantornet, _add_demo, _add_measure, _add_sweep]


class _Parser(argparse.ArgumentParser):
    """argparse with bad arguments reported as one line on stderr and exit code 2."""

    def error(self, message: str):  # noqa: D102
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="spacefold",
        description="Measure how neural networks fold their input space (space folding, chi = 1 - r1/r2).",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"spacefold {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    return parser




def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, NotADirectoryError, KeyError) as err:
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"spacefold {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader of stdout went away (``| head``)
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"spacefold {args.command}: interrupted", file=sys.stderr)
        return 130


# --------------------------------------------------------------------------- train


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train one MLP, optionally with the folding regulariser, logging Φ_N every epoch",
        description="Train one MLP with Adam and cross-entropy, optionally plus LAMBDA x the differentiable folding "
        "loss on inter-class training pairs (spacefold.folding_loss), and measure Φ_N of a fixed probe set of "
        "inter-class test pairs with exact walks after every --track-every epochs. Writes model.pt (a spacefold "
        "checkpoint), log.json and log.csv (one row per epoch: loss, accuracies, Φ_N) to --out.",
    )
    p.add_argument("--arch", required=True, help="hidden layers, e.g. 3x20 or 30-20")
    _add_data_args(p, None)
    p.add_argument("--n-train", type=int, default=None, help="train on a stratified subset of this many samples")
    p.add_argument("--n-test", type=int, default=None, help="test on a stratified subset of this many samples")
    p.add_argument("--epochs", type=int, default=10, help="training epochs (default 10)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--batch-size", type=int, default=128, help="training batch size (default 128)")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation, shuffling and probe pairs (default 0)")
    p.add_argument("--regularize", type=float, default=0.0, metavar="LAMBDA",
                   help="weight of the folding loss (default 0: plain training)")
    p.add_argument("--schedule", default="always",
                   help="when the folding loss is on: always | early:FRACTION (first epochs) | every:N (default always)")
    p.add_argument("--loss-method", default="random", help="sample points of the folding loss: random | grid | exact "
                   "(default random)")
    p.add_argument("--n-points", type=int, default=8, help="points per segment of the folding loss (default 8)")
    p.add_argument("--pairs-per-step", type=int, default=8, help="probe segments per training step (default 8)")
    p.add_argument("--every-steps", type=int, default=1,
                   help="add the folding loss at every N-th training step only (default 1: every step)")
    p.add_argument("--beta", type=float, default=10.0, help="sharpness of the soft patterns (default 10)")
    p.add_argument("--probe-pairs", type=int, default=512, help="inter-class training pairs of the loss (default 512)")
    p.add_argument("--track-pairs", type=int, default=200, help="inter-class test pairs for Φ_N (default 200)")
    p.add_argument("--track-every", type=int, default=1, help="measure Φ_N every N epochs and the last (default 1)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the per-epoch log as one JSON object on stdout")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args) -> int:
    from pathlib import Path

    from ._util import atomic_write
    from .models import mlp, parse_arch, save_checkpoint
    from .regularize import FoldingRegularizer, FoldingSchedule, FoldingTracker, probe_pairs
    from .train import train

    for opt, v, lo in (("--epochs", args.epochs, 1), ("--batch-size", args.batch_size, 1), ("--seed", args.seed, 0),
                       ("--probe-pairs", args.probe_pairs, 1), ("--track-pairs", args.track_pairs, 1),
                       ("--track-every", args.track_every, 1), ("--pairs-per-step", args.pairs_per_step, 1),
                       ("--n-points", args.n_points, 2), ("--every-steps", args.every_steps, 1)):
        if v < lo:
            raise UsageError(f"{opt} must be an int >= {lo}, got {v}")
    if not args.lr > 0:
        raise UsageError(f"--lr must be > 0, got {args.lr}")
    try:
        parse_arch(args.arch)
    except (ValueError, TypeError) as err:
        raise UsageError(f"--arch: {err}") from None
    try:
        schedule = FoldingSchedule.parse(args.schedule)
    except ValueError as err:
        raise UsageError(f"--schedule: {err}") from None
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out must be a directory, got the file {out}")
    data = _cli_data(args)
    model = mlp(args.arch, data.n_features, data.n_classes, seed=args.seed)
    reg = None
    if args.regularize != 0:
        p1, p2 = probe_pairs(data.x_train, data.y_train, args.probe_pairs, seed=args.seed)
        reg = FoldingRegularizer(p1, p2, args.regularize, schedule=schedule, pairs_per_step=args.pairs_per_step,
                                 method=args.loss_method, n_points=args.n_points, beta=args.beta, seed=args.seed,
                                 every_steps=args.every_steps)
    t1, t2 = probe_pairs(data.x_test, data.y_test, args.track_pairs, seed=args.seed)
    tracker = FoldingTracker(t1, t2, every=args.track_every)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    log(f"train {args.arch} on {data.name} ({data.describe()['n_train']} samples), {args.epochs} epochs, "
        + (f"folding loss λ={args.regularize:g} ({schedule})" if reg else "no folding loss") + f"; results in {out}")
    res = train(model, data.x_train, data.y_train, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                seed=args.seed, x_test=data.x_test, y_test=data.y_test, progress_bar=not args.no_progress,
                desc=f"train {args.arch}", regularizer=reg, on_epoch_end=tracker)
    tracked = {r["epoch"]: r for r in res.tracked}
    rows = []
    for e in range(args.epochs):
        t = tracked.get(e, {})
        rows.append({"epoch": e + 1, "loss": res.loss[e], "reg_loss": res.reg_loss[e] if res.reg_loss else 0.0,
                     "train_accuracy": res.train_accuracy[e], "test_accuracy": res.test_accuracy[e],
                     "phi": t.get("phi"), "phi_max": t.get("phi_max"), "fraction_folded": t.get("fraction_folded")})
    meta = {"data": data.describe(), "training": res.as_dict(), "regularizer": reg.describe() if reg else None,
            "track_pairs": args.track_pairs}
    save_checkpoint(model, out / "model.pt", metadata=meta)
    record = {"arch": args.arch, "seed": args.seed, "regularizer": meta["regularizer"], "epochs": rows,
              "seconds": res.seconds}
    with atomic_write(out / "log.json") as fh:
        json.dump(record, fh, indent=1)
    cols = list(rows[0])
    with atomic_write(out / "log.csv") as fh:
        fh.write(",".join(cols) + "\n")
        for r in rows:
            fh.write(",".join("" if r[c] is None else f"{r[c]:.6g}" for c in cols) + "\n")
    if args.json:
        _emit_json(record)
    else:
        print("epoch  loss     test acc  Φ_N")
        for r in rows:
            phi = "" if r["phi"] is None else f"{r['phi']:.4f}"
            print(f"{r['epoch']:5d}  {r['loss']:.4f}   {r['test_accuracy']:.4f}    {phi}")
        print(f"checkpoint {out / 'model.pt'}; log {out / 'log.csv'}, {out / 'log.json'}")
    return 0


_COMMANDS.append(_add_train)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
