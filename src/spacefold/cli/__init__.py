"""Command line: argument parsing and printing only; every command calls the public API.

Arguments are validated where they are parsed, by the ``type=`` functions below and
``choices=``; what only the library can judge (a data file, a checkpoint) it reports
as :class:`spacefold.errors.InputError`.

Exit codes: 0 success; 2 bad input, one line on stderr, no traceback (an argument
refused by argparse, an ``InputError``, a model the method cannot walk, a file that is
missing, a directory, not a directory or not permitted); 1 under ``torchrun`` when another
rank failed (one line; that rank reports its own error); 130 interrupted. Any other exception is a bug and
keeps its traceback.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from .._util import json_dumps
from ..errors import InputError


class UsageError(InputError):
    """Bad input found by the CLI itself."""


# --------------------------------------------------------------------------- argument types
# Small ``type=`` functions for argparse, for every command: each returns the parsed
# value or raises ``argparse.ArgumentTypeError`` with "must be ..., got ...", which
# argparse prefixes with the option's name ("argument --lr: must be ...").


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None


def finite_float(text: str) -> float:
    """A finite number (not nan, not ±inf)."""
    v = _number(text)
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return v


def float_in(lo: float = -math.inf, hi: float = math.inf, *, lo_open: bool = False,
             hi_open: bool = False) -> Callable[[str], float]:
    """A ``type=`` for a finite number in the interval from ``lo`` to ``hi`` (closed unless ``*_open``)."""
    interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    if lo == 0 and hi == math.inf:
        what = "a finite number > 0" if lo_open else "a finite number >= 0"
    else:
        what = f"a finite number in {interval}"

    def parse(text: str) -> float:
        v = _number(text)
        ok = math.isfinite(v) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
        if not ok:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return v

    parse.__name__ = f"float in {interval}"
    return parse


positive_float = float_in(0.0, lo_open=True)
positive_float.__doc__ = "A finite number > 0."
nonnegative_float = float_in(0.0)
nonnegative_float.__doc__ = "A finite number >= 0."
fraction = float_in(0.0, 1.0)
fraction.__doc__ = "A number in [0, 1] (an accuracy, a share)."
probability = float_in(0.0, 1.0, hi_open=True)
probability.__doc__ = "A number in [0, 1) (a rate that must leave something, such as dropout)."


def int_in(lo: int, hi: int | None = None) -> Callable[[str], int]:
    """A ``type=`` for an integer >= ``lo`` (and <= ``hi`` when given)."""
    what = f"an int >= {lo}" if hi is None else f"an int in [{lo}, {hi}]"

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if v < lo or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return v

    parse.__name__ = what
    return parse


positive_int = int_in(1)
positive_int.__doc__ = "An int >= 1."
nonnegative_int = int_in(0)
nonnegative_int.__doc__ = "An int >= 0 (seeds)."


def normalized(text: str) -> str:
    """Lower case without surrounding blanks, for ``choices=`` of lower-case names."""
    return text.strip().lower()


def hidden_arch(text: str) -> str:
    """An MLP architecture with at least one hidden layer ("3x20", "30-20"), in its canonical
    spelling (" 5 x 12 " -> "5x12", "30,20" -> "30-20")."""
    from ..models.mlp import arch_name, parse_arch

    try:
        widths = parse_arch(text)
    except InputError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if not widths:
        raise argparse.ArgumentTypeError(f"must have at least one hidden layer (e.g. 3x20), got {text!r}")
    return arch_name(widths)


def folding_schedule(text: str) -> str:
    """When the folding loss is on: "always", "early:FRACTION" or "every:N", in its canonical
    spelling ("EARLY:0.50" -> "early:0.5"; :class:`spacefold.regularize.FoldingSchedule`)."""
    from ..training.regularize import FoldingSchedule

    try:
        return str(FoldingSchedule.parse(text))
    except InputError:
        raise argparse.ArgumentTypeError(f"must be always, early:FRACTION (0 < FRACTION <= 1) or every:N (N >= 1), "
                                         f"got {text!r}") from None


def output_dir(text: str) -> Path:
    """A directory to write results to: it exists or can be created, and the user may write there.

    Checked when the arguments are parsed, so that nothing is computed for results
    that could not be saved; nothing is created by the check.
    """
    path = Path(text).expanduser()
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise argparse.ArgumentTypeError(f"must be a directory (or one to create), got {text!r}: {probe} is a file")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as err:
        raise argparse.ArgumentTypeError(
            f"must be a directory you can write to, got {text!r} ({err.strerror or err} in {probe})") from None
    return path


def _emit_json(obj) -> None:
    """Print ``obj`` as strict JSON: a non-finite number is ``null``, never a bare ``NaN``."""
    print(json_dumps(obj, indent=None, sort_keys=False))


# --------------------------------------------------------------------------- cantornet


def _add_cantornet(sub) -> None:
    from ..models.cantornet import MAX_DEPTH, REPRESENTATIONS
    from .._core.walk import METHODS

    p = sub.add_parser(
        "cantornet",
        help="folding of CantorNet along a segment",
        description="Folding of CantorNet (representations A, B, C) along a segment, "
        "default (0, 0.75) -> (1, 0.75).",
    )
    p.add_argument("--depth", type=int_in(1, MAX_DEPTH), default=1,
                   help=f"recursion depth k in [1, {MAX_DEPTH}] (default 1)")
    p.add_argument("--representation", type=lambda t: t.strip().upper(), choices=REPRESENTATIONS, default="A",
                   help="A (recursive), B or C (DNF-like); default A")
    p.add_argument("--method", type=normalized, choices=METHODS, default="exact",
                   help="exact | bisect | uniform (default exact)")
    p.add_argument("--steps", type=positive_int, default=10, help="uniform: steps + 1 grid points (default 10)")
    p.add_argument("--start", type=finite_float, nargs=2, metavar=("X", "Y"), default=(0.0, 0.75))
    p.add_argument("--end", type=finite_float, nargs=2, metavar=("X", "Y"), default=(1.0, 0.75))
    p.add_argument("--tol", type=nonnegative_float, default=None,
                   help="bisect: locate transitions within TOL in t; exact: crossings closer than TOL are "
                   "simultaneous (default: 1e-6 for bisect; for exact 1e-9, or 1e-6 with a tie tolerance)")
    p.add_argument("--tie-tol", type=nonnegative_float, default=None,
                   help="bit = pre-activation > TIE_TOL (default: the net's recommended value, 1e-9 in float64, "
                   "which representation C needs for its exact ties)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_cantornet)


def _cantornet_options(args) -> dict:
    """The validated cantornet options as the arguments of :func:`_cantornet_result`."""
    import torch

    return {
        "depth": args.depth,
        "representation": args.representation,
        "method": args.method,
        "start": torch.tensor(args.start, dtype=torch.float64),
        "end": torch.tensor(args.end, dtype=torch.float64),
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
        from .._core.folding import resolve_tol

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


def _cli_data(args):
    from ..data.load import load_data

    try:
        data = load_data(args.data, args.data_dir, download=getattr(args, "download", False), seed=args.data_seed)
    except ImportError as err:
        raise UsageError(str(err)) from None
    n_train, n_test = getattr(args, "n_train", None), getattr(args, "n_test", None)
    if n_train is not None or n_test is not None:
        data = data.subset(n_train, n_test, seed=args.data_seed)
    return data


def _add_data_args(p, default: str | None) -> None:
    p.add_argument("--data", default=default, required=default is None,
                   help="mnist | digits | blobs | spirals | a directory of MNIST IDX files | an .npz file (x, y) | "
                   "an image folder (ImageFolder layout)"
                   + (f" (default {default})" if default else ""))
    p.add_argument("--data-dir", default=None, help="directory holding the MNIST IDX files (for --data mnist)")
    p.add_argument("--download", action="store_true", help="download MNIST into --data-dir (needs torchvision)")
    p.add_argument("--data-seed", type=nonnegative_int, default=0,
                   help="seed of the train/test split and subsets (default 0)")


def _add_measure(sub) -> None:
    from .._core.global_folding import PAIR_CHOICES
    from .._core.walk import METHODS

    p = sub.add_parser(
        "measure",
        help="global folding of a saved model on a data set",
        description="Global folding of a saved model (a checkpoint written by spacefold sweep/demo or "
        "spacefold.save_checkpoint) on the test split of a data set: Φ_N (median of the non-zero χ), "
        "the median of the non-zero profile maxima, the share of folded paths, per class pair table.",
    )
    p.add_argument("--model", required=True, help="spacefold checkpoint, TorchScript file, torch.export archive (.pt2) "
                   "or package.module:factory (with --weights)")
    p.add_argument("--weights", default=None, help="state_dict file for a package.module:factory model")
    _add_data_args(p, None)
    p.add_argument("--split", default="test", choices=["test", "train"], help="which split to walk (default test)")
    p.add_argument("--n-test", type=int_in(2), default=None, help="use a stratified subset of this many samples")
    p.add_argument("--pairs", type=normalized, choices=PAIR_CHOICES, default="inter-class",
                   help="inter-class | all | centroids | random (default inter-class)")
    p.add_argument("--max-pairs", type=positive_int, default=None,
                   help="at most this many paths, spread over class pairs (needed by --pairs random)")
    p.add_argument("--n-clusters", type=positive_int, default=10,
                   help="k-means clusters per class for --pairs centroids")
    p.add_argument("--method", type=normalized, choices=METHODS, default="exact",
                   help="exact | bisect | uniform (default exact)")
    p.add_argument("--steps", type=positive_int, default=100, help="uniform: steps + 1 grid points (default 100)")
    p.add_argument("--seed", type=nonnegative_int, default=0,
                   help="seed of the pair sample and the centroids (default 0)")
    p.add_argument("--per-layer", action="store_true", help="also the folding of each layer's bits alone")
    p.add_argument("--ci", action="store_true", help="bootstrap 95%% confidence intervals")
    p.add_argument("--n-boot", type=positive_int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="segments walked at once (default: from the memory budget, SPACEFOLD_MEMORY bytes)")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="worker processes (default: every core; 1: in this process). Under torchrun the ranks "
                   "share the pairs and rank 0 prints and writes")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--out", type=output_dir, default=None,
                   help="also write measure.json and class_pairs.csv to this directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_measure)


def _cmd_measure(args) -> int:
    from ..data.load import fit_input_shape, load_model

    data = _cli_data(args)
    model = load_model(args.model, args.weights, example=data.x_test[:2])
    x, y = data.split(args.split)
    x = fit_input_shape(model, x)
    if args.split == "train" and args.n_test is not None and args.n_test < len(y):
        from ..data.datasets import stratified_indices

        idx = stratified_indices(y, args.n_test, args.data_seed)
        x, y = x[idx], y[idx]
    from .._core.global_folding import global_folding

    try:
        g = global_folding(model, x, y, pairs=args.pairs, max_pairs=args.max_pairs, seed=args.seed, method=args.method,
                           n_clusters=args.n_clusters, steps=args.steps, per_layer=args.per_layer,
                           batch_size=args.batch_size, progress=not args.no_progress, workers=args.workers)
    except ImportError as err:
        raise UsageError(str(err)) from None
    from .._core.parallel import is_main

    if not is_main():  # under torchrun every rank has the result; rank 0 prints and writes
        return 0
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

    from .._util import atomic_write

    out = Path(out)
    with atomic_write(out / "measure.json") as fh:
        fh.write(json_dumps(res, indent=1))
    rows = res["class_pairs"]
    with atomic_write(out / "class_pairs.csv") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    from ..viz.report import write_provenance

    write_provenance(out)


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
    from ..models.mlp import DEPTH_SERIES
    from .._core.walk import METHODS

    p = sub.add_parser(
        "sweep",
        help="train a family of models and measure each (depth study)",
        description="Train a family of MLPs (by default the 60-neuron budget 1x60 ... 6x10) with several seeds "
        "and measure the global folding of each on test pairs. Finished runs are skipped when the sweep is "
        "started again. Writes results.csv, results.json, summary.md and plots to --out. Under torchrun the ranks "
        "share the runs (the same numbers as one process) and rank 0 writes.",
    )
    _add_data_args(p, "digits")
    p.add_argument("--n-train", type=int_in(2), default=None, help="train on a stratified subset of this many samples")
    p.add_argument("--n-test", type=int_in(2), default=None, help="measure on a stratified subset of this many samples")
    p.add_argument("--archs", nargs="+", type=hidden_arch, default=list(DEPTH_SERIES),
                   help="architectures, e.g. 3x20 5x12 30-20")
    p.add_argument("--seeds", nargs="+", type=nonnegative_int, default=[0, 1, 2], help="seeds (default 0 1 2)")
    p.add_argument("--epochs", type=positive_int, default=30, help="training epochs (default 30)")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--batch-size", type=positive_int, default=128, help="training batch size (default 128)")
    p.add_argument("--method", type=normalized, choices=METHODS, default="exact",
                   help="exact | bisect | uniform (default exact)")
    p.add_argument("--steps", type=positive_int, default=100, help="uniform: steps + 1 grid points (default 100)")
    p.add_argument("--pairs-per-class-pair", type=positive_int, default=200,
                   help="random test pairs per ordered class pair (default 200)")
    p.add_argument("--n-boot", type=positive_int, default=500,
                   help="bootstrap resamples for the intervals (default 500)")
    p.add_argument("--min-accuracy", type=fraction, default=0.9,
                   help="runs below this test accuracy are drawn hollow and left out of the depth trend (default 0.9)")
    _add_regularizer_args(p)
    p.add_argument("--out", type=output_dir, default="spacefold-sweep",
                   help="output directory (default ./spacefold-sweep)")
    p.add_argument("--no-plots", action="store_true", help="write no figures")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print one JSON object (the summary) on stdout")
    p.set_defaults(func=_cmd_sweep)


def _add_regularizer_args(p) -> None:
    """The folding regulariser's options of ``sweep`` (those of ``train``)."""
    from ..training.regularize import LOSS_METHODS

    g = p.add_argument_group("folding regulariser", "train every run with LAMBDA x the folding loss on inter-class "
                             "training pairs, as spacefold train --regularize does")
    g.add_argument("--regularize", type=nonnegative_float, default=0.0, metavar="LAMBDA",
                   help="weight of the folding loss (default 0: plain training)")
    g.add_argument("--schedule", type=folding_schedule, default="always",
                   help="when the folding loss is on: always | early:FRACTION (first epochs) | every:N "
                   "(default always)")
    g.add_argument("--loss-method", type=normalized, choices=LOSS_METHODS, default="random",
                   help="sample points of the folding loss: random | grid | exact (default random)")
    g.add_argument("--n-points", type=int_in(2), default=8,
                   help="points per segment of the folding loss, at least 3 for random (default 8)")
    g.add_argument("--pairs-per-step", type=positive_int, default=8,
                   help="probe segments per training step (default 8)")
    g.add_argument("--every-steps", type=positive_int, default=1,
                   help="add the folding loss at every N-th training step only (default 1: every step)")
    g.add_argument("--beta", type=positive_float, default=10.0, help="sharpness of the soft patterns (default 10)")
    g.add_argument("--probe-pairs", type=positive_int, default=512,
                   help="inter-class training pairs of the loss, drawn with each run's seed (default 512)")


def _regularizer_settings(args):
    """The sweep's :class:`spacefold.study.RegularizerSettings`, ``None`` for plain training (λ = 0)."""
    from ..studies.depth import RegularizerSettings

    if args.regularize == 0:
        return None
    return RegularizerSettings(lam=args.regularize, schedule=args.schedule, method=args.loss_method,
                               n_points=args.n_points, pairs_per_step=args.pairs_per_step,
                               every_steps=args.every_steps, beta=args.beta, probe_pairs=args.probe_pairs)


def _cmd_sweep(args) -> int:
    from ..studies.depth import StudySettings

    settings = StudySettings(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, method=args.method,
                             steps=args.steps, pairs_per_class_pair=args.pairs_per_class_pair, n_boot=args.n_boot,
                             regularizer=_regularizer_settings(args)).check()
    data = _cli_data(args)
    return _run_sweep(data, args.archs, args.seeds, settings, args.out, plots=not args.no_plots,
                      progress=not args.no_progress, as_json=args.json, min_accuracy=args.min_accuracy)


def _run_sweep(data, archs, seeds, settings, out, *, plots, progress, as_json, min_accuracy) -> int:
    from dataclasses import asdict

    from .._core.parallel import is_main, world
    from ..studies.depth import depth_trend, markdown_summary, run_study, summary_by_arch

    out = Path(out)
    size = world()[1]  # under torchrun: the ranks share the runs, rank 0 prints and writes

    def log(msg):
        if is_main():
            print(msg, file=sys.stderr, flush=True)

    reg = settings.regularizer if settings.regularizing else None
    log(f"data {data.name}: {data.describe()['n_train']} train / {data.describe()['n_test']} test samples, "
        f"{len(archs)} architectures x {len(seeds)} seeds, method {settings.method}, "
        + (f"folding loss λ={reg.lam:g} ({reg.schedule}), " if reg else "")
        + (f"{size} ranks, " if size > 1 else "") + f"results in {out}")
    rows = run_study(data, archs, seeds, out, settings, progress=progress, log=log)
    if not is_main():
        return 0
    from ..viz.report import write_provenance

    write_provenance(out, seeds=list(seeds))
    figs = []
    if plots:
        try:
            from ..viz.plot import study_figures

            figs = [str(p) for p in study_figures(rows, out / "plots", min_accuracy=min_accuracy)]
        except ImportError as err:
            log(f"plots skipped: {err}")
    trend = depth_trend(rows, min_accuracy, "phi")
    summary = {"out": str(out), "data": data.describe(), "method": settings.method,
               "regularizer": asdict(reg) if reg else None, "by_arch": summary_by_arch(rows),
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
    from .._core.walk import METHODS

    p = sub.add_parser(
        "demo",
        help="a small depth study on scikit-learn's digits (no download)",
        description="The embedded default: train the 60-neuron depth series 1x60 ... 6x10 with 3 seeds on "
        "scikit-learn's 8x8 digits and measure the global folding of each on test pairs; writes plots and a "
        "summary table (CSV, JSON, markdown) to --out. A few minutes on 2 CPU cores.",
    )
    p.add_argument("--out", type=output_dir, default="spacefold-demo",
                   help="output directory (default ./spacefold-demo)")
    p.add_argument("--method", type=normalized, choices=METHODS, default="exact",
                   help="exact | bisect | uniform (default exact)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print one JSON object (the summary) on stdout")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args) -> int:
    from ..data.datasets import load_digits
    from ..models.mlp import DEPTH_SERIES
    from ..studies.depth import demo_settings

    try:
        data = load_digits(seed=0)
    except ImportError as err:
        raise UsageError(str(err)) from None
    settings = demo_settings(args.method)
    return _run_sweep(data, list(DEPTH_SERIES), [0, 1, 2], settings, args.out, plots=True,
                      progress=not args.no_progress, as_json=args.json, min_accuracy=0.9)


# --------------------------------------------------------------------------- main

_COMMANDS: list[Callable] = [_add_cantornet, _add_demo, _add_measure, _add_sweep]

#: What the user did wrong rather than the program: reported as one line, exit code 2.
USER_ERRORS: tuple[type[BaseException], ...] = (InputError, FileNotFoundError, IsADirectoryError, NotADirectoryError,
                                                PermissionError)


def _user_errors() -> tuple[type[BaseException], ...]:
    from .._core.walk.exact import NotPiecewiseLinearError  # a model the chosen method cannot walk: choose another method

    return (*USER_ERRORS, NotPiecewiseLinearError)


class _ArgumentError(Exception):
    """An argument refused while parsing; ``main`` prints it and returns 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with bad arguments reported as one line on stderr and exit code 2."""

    def error(self, message: str):  # noqa: D102
        raise _ArgumentError(f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="spacefold",
        description="Measure how neural networks fold their input space (space folding, chi = 1 - r1/r2).",
    )
    from .._version import __version__

    parser.add_argument("--version", action="version", version=f"spacefold {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    return parser


def _one_line(err: BaseException | str) -> str:
    """The message on one line: every run of white space (line breaks of any kind too) is one blank."""
    return " ".join(str(err).split()) or type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _ArgumentError as err:
        print(err, file=sys.stderr)
        return 2
    if getattr(args, "func", None) is None:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: a command is required (see {parser.prog} --help)", file=sys.stderr)
        return 2
    try:
        rc = int(args.func(args) or 0)
    except _user_errors() as err:
        print(f"spacefold {args.command}: error: {_one_line(err)}", file=sys.stderr)
        rc = 2
    except BrokenPipeError:  # the reader of stdout went away (``| head``)
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"spacefold {args.command}: interrupted", file=sys.stderr)
        rc = 130
    except Exception as err:
        from .._core.parallel import RankFailedError

        if not isinstance(err, RankFailedError):  # under torchrun: another rank failed, and said why
            _failed()
            raise
        print(f"spacefold {args.command}: error: {_one_line(err)}", file=sys.stderr)
        rc = 1
    except BaseException:
        _failed()
        raise
    if rc != 0:
        _failed()
    return rc


def _failed() -> None:
    """Under torchrun: this rank ends in failure and does not wait for the others at exit."""
    from .._core.parallel import failed

    failed()


# --------------------------------------------------------------------------- plot, report


def _add_plot(sub) -> None:
    from ..models.cantornet import MAX_DEPTH
    from .._core.walk import METHODS

    p = sub.add_parser(
        "plot",
        help="figures of one segment (path) or one plane",
        description="Figures of one segment (plot path: Hamming distance to the start, distance travelled and prefix "
        "chi against t) or of the plane through three inputs (plot plane: regions coloured by Hamming distance, the "
        "segment drawn over them), for any model (--model) on any data set (--data), or CantorNet (--cantornet K).",
    )
    p.add_argument("kind", choices=["path", "plane"], help="path | plane")
    p.add_argument("--model", default=None, help="spacefold checkpoint, TorchScript file, torch.export archive (.pt2) "
                   "or package.module:factory (with --weights)")
    p.add_argument("--weights", default=None, help="state_dict file for a package.module:factory model")
    p.add_argument("--cantornet", type=int_in(1, MAX_DEPTH), default=None, metavar="K",
                   help="CantorNet A of depth K on its unit square instead of --model/--data")
    _add_data_args(p, "digits")
    p.add_argument("--split", default="test", choices=["test", "train"], help="split the inputs come from")
    p.add_argument("--index", type=nonnegative_int, nargs="+", default=None, metavar="I",
                   help="inputs by index into the split: path I J (x1 x2), plane I J K (x0 x1 x2); "
                   "default: the first samples of two (three) different classes")
    p.add_argument("--method", type=normalized, choices=METHODS, default=None,
                   help="path: exact | bisect | uniform (default exact where possible, else bisect)")
    p.add_argument("--resolution", type=int_in(2), default=400,
                   help="plane: raster size for nets that are not piecewise linear (default 400)")
    p.add_argument("-o", "--out", required=True, help="output file: .png, .svg or .pdf")
    p.add_argument("--format", nargs="+", default=None, choices=["png", "svg", "pdf"],
                   help="write these formats (the suffix of --out is replaced)")
    p.set_defaults(func=_cmd_plot)


def _plot_inputs(args, data, model):
    from ..data.load import fit_input_shape

    x, y = data.split(args.split)
    need = 2 if args.kind == "path" else 3
    if args.index is not None:
        if len(args.index) != need:
            raise UsageError(f"--index must give {need} indices for plot {args.kind}, got {len(args.index)}")
        for i in args.index:
            if i >= len(y):
                raise UsageError(f"--index must be in [0, {len(y) - 1}] (the {args.split} split), got {i}")
        idx = list(args.index)
    else:
        idx, seen = [], set()
        for i, c in enumerate(y.tolist()):
            if c not in seen:
                seen.add(c)
                idx.append(i)
            if len(idx) == need:
                break
        if len(idx) < need:
            raise UsageError(f"--data {args.data} has fewer than {need} classes in its {args.split} split; "
                             "give --index")
        if need == 3:  # the segment x1 -> x2 joins the first two classes; x0 is of the third
            idx = [idx[2], idx[0], idx[1]]
    xs = fit_input_shape(model, x[idx])
    return [xs[k] for k in range(need)], idx


def _cmd_plot(args) -> int:
    from ..data.load import load_data, load_model
    from ..viz.plot import plot_path, plot_plane, save_figure

    if args.cantornet is not None:
        from ..models.cantornet import cantornet

        net = cantornet(args.cantornet, "A")
        import torch

        x1 = torch.tensor([0.0, 0.75], dtype=torch.float64)
        x2 = torch.tensor([1.0, 0.75], dtype=torch.float64)
        fig = (plot_path(net, x1, x2, method=args.method) if args.kind == "path"
               else plot_plane(net, resolution=args.resolution))
    else:
        if args.model is None:
            raise UsageError("--model is required (or --cantornet K)")
        data = load_data(args.data, args.data_dir, seed=args.data_seed, download=args.download)
        model = load_model(args.model, args.weights, example=data.x_test[:2])
        inputs, idx = _plot_inputs(args, data, model)
        what = f"{data.name} ({args.split} {', '.join(str(i) for i in idx)})"
        name = Path(args.model).name if ":" not in str(args.model) else str(args.model)
        fig = (plot_path(model, *inputs, method=args.method, data=what, name=name) if args.kind == "path"
               else plot_plane(model, *inputs, resolution=args.resolution, data=what, name=name))
    paths = save_figure(fig, args.out, args.format)
    print("\n".join(str(p) for p in paths))
    return 0


def _add_report(sub) -> None:
    p = sub.add_parser(
        "report",
        help="one self-contained HTML file from a results directory",
        description="One self-contained HTML file (figures embedded, tables, the settings, seeds, command and versions "
        "recorded with each result) from a directory written by spacefold demo, sweep, measure --out or plot. It "
        "opens in any browser without a server or network.",
    )
    p.add_argument("results_dir", metavar="RESULTS_DIR", help="directory holding the results")
    p.add_argument("-o", "--out", default="report.html", help="output HTML file (default report.html)")
    p.set_defaults(func=_cmd_report)


def _cmd_report(args) -> int:
    from ..viz.report import write_report

    print(write_report(args.results_dir, args.out, argv=sys.argv[1:]))
    return 0


_COMMANDS += [_add_plot, _add_report]

# --------------------------------------------------------------------------- adversarial


def _add_adversarial(sub) -> None:
    p = sub.add_parser(
        "adversarial",
        help="interaction coefficient on paths with adversarial endpoints",
        description="Attack the samples of two classes (FGSM, PGD under L-inf or L2, via torchattacks) and "
        "measure the mean non-zero interaction coefficient on the paths a -> b, a -> b*, a* -> b and a* -> b* "
        "(* = adversarial; endpoints the attack does not flip are discarded), with bootstrap intervals.",
    )
    from ..studies.adversarial import ATTACKS

    p.add_argument("--model", required=True, help="checkpoint file (.pt)")
    _add_data_args(p, None)
    p.add_argument("--split", default="test", choices=["test", "train"], help="which split (default test)")
    p.add_argument("--classes", type=nonnegative_int, nargs=2, default=[5, 7], metavar=("A", "B"),
                   help="start class A and end class B of the paths (default 5 7)")
    p.add_argument("--attacks", nargs="+", type=normalized, choices=ATTACKS, default=["fgsm", "pgd"],
                   help="fgsm | pgd | pgd-l2 (default fgsm pgd)")
    p.add_argument("--eps", type=nonnegative_float, default=0.1, help="attack budget in input units (default 0.1)")
    p.add_argument("--steps", type=positive_int, default=40, help="PGD steps (default 40)")
    p.add_argument("--step-size", type=positive_float, default=None, help="PGD step (default eps / 10)")
    p.add_argument("--data-range", type=finite_float, nargs=2, default=None, metavar=("LO", "HI"),
                   help="adversarial inputs are clipped to [LO, HI] (default [0, 1] when the data lie in it, "
                   "else the data's minimum and maximum)")
    p.add_argument("--max-pairs", type=positive_int, default=500, help="random (A, B) pairs (default 500)")
    p.add_argument("--method", default="exact", choices=["exact", "uniform"],
                   help="exact region walk (each region once; default) or the uniform grid of --n-points")
    p.add_argument("--n-points", type=int_in(2), default=100, help="uniform: points per path (default 100)")
    p.add_argument("--n-boot", type=positive_int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the pairs, PGD's start and the bootstrap")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--out", type=output_dir, default=None,
                   help="also write adversarial.json, adversarial.txt and interaction.png to this directory")
    p.set_defaults(func=_cmd_adversarial)


def _cmd_adversarial(args) -> int:
    from ..studies.adversarial import adversarial_interaction
    from ..models.mlp import load_checkpoint

    out = args.out
    model = load_checkpoint(args.model)
    data = _cli_data(args)
    if data.n_features != model.in_features:
        raise UsageError(f"--model takes {model.in_features} input features but --data {args.data} has "
                         f"{data.n_features}")
    x, y = data.split(args.split)
    if args.data_range is not None:
        lo, hi = args.data_range
    else:
        lo = min(float(data.x_train.min()), float(data.x_test.min()))
        hi = max(float(data.x_train.max()), float(data.x_test.max()))
        if lo >= 0.0 and hi <= 1.0:
            lo, hi = 0.0, 1.0
    if not lo < hi:
        raise UsageError(f"--data-range must be two numbers LO < HI, got {lo} {hi}")
    present = sorted(int(c) for c in y.unique())
    for c in args.classes:
        if c not in present:
            raise UsageError(f"--classes must name classes of --data {args.data} ({args.split} split: "
                             f"{', '.join(map(str, present))}), got {c}")
    try:
        res = adversarial_interaction(model, x, y, classes=args.classes, attacks=args.attacks, eps=args.eps,
                                      max_pairs=args.max_pairs, method=args.method, n_points=args.n_points,
                                      steps=args.steps, step_size=args.step_size, data_range=(lo, hi),
                                      seed=args.seed, n_boot=args.n_boot)
    except ImportError as err:
        raise UsageError(str(err)) from None
    obj = {"model": str(args.model), "data": data.name, "split": args.split, **res.to_dict()}
    table = res.table()
    if out is not None:
        from .._util import atomic_write

        out.mkdir(parents=True, exist_ok=True)
        with atomic_write(out / "adversarial.json") as fh:
            fh.write(json_dumps(obj, indent=1) + "\n")
        with atomic_write(out / "adversarial.txt") as fh:
            fh.write(table + "\n")
        try:
            from ..studies.adversarial import bubble_chart

            bubble_chart(res, out / "interaction.png")
        except ImportError as err:
            print(f"bubble chart skipped: {err}", file=sys.stderr)
    if args.json:
        _emit_json(obj)
    else:
        print(table)
    return 0


_COMMANDS.append(_add_adversarial)

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
    p.add_argument("--arch", required=True, type=hidden_arch, help="hidden layers, e.g. 3x20 or 30-20")
    _add_data_args(p, None)
    p.add_argument("--n-train", type=positive_int, default=None, help="train on a stratified subset of this many samples")
    p.add_argument("--n-test", type=positive_int, default=None, help="test on a stratified subset of this many samples")
    p.add_argument("--epochs", type=positive_int, default=10, help="training epochs (default 10)")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--batch-size", type=positive_int, default=128, help="training batch size (default 128)")
    p.add_argument("--seed", type=nonnegative_int, default=0,
                   help="seed of initialisation, shuffling and probe pairs (default 0)")
    p.add_argument("--regularize", type=nonnegative_float, default=0.0, metavar="LAMBDA",
                   help="weight of the folding loss (default 0: plain training)")
    p.add_argument("--schedule", default="always",
                   help="when the folding loss is on: always | early:FRACTION (first epochs) | every:N (default always)")
    p.add_argument("--loss-method", default="random", type=normalized, choices=["random", "grid", "exact"], help="sample points of the folding loss: random | grid | exact "
                   "(default random)")
    p.add_argument("--n-points", type=int_in(2), default=8, help="points per segment of the folding loss (default 8)")
    p.add_argument("--pairs-per-step", type=positive_int, default=8, help="probe segments per training step (default 8)")
    p.add_argument("--every-steps", type=positive_int, default=1,
                   help="add the folding loss at every N-th training step only (default 1: every step)")
    p.add_argument("--beta", type=positive_float, default=10.0, help="sharpness of the soft patterns (default 10)")
    p.add_argument("--probe-pairs", type=positive_int, default=512, help="inter-class training pairs of the loss (default 512)")
    p.add_argument("--track-pairs", type=positive_int, default=200, help="inter-class test pairs for Φ_N (default 200)")
    p.add_argument("--track-every", type=positive_int, default=1, help="measure Φ_N every N epochs and the last (default 1)")
    p.add_argument("--out", required=True, type=output_dir, help="output directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the per-epoch log as one JSON object on stdout")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args) -> int:
    from .._util import atomic_write
    from ..models.mlp import mlp, save_checkpoint
    from ..training.regularize import FoldingRegularizer, FoldingSchedule, FoldingTracker, probe_pairs
    from ..models.train import train

    try:
        schedule = FoldingSchedule.parse(args.schedule)
    except ValueError as err:
        raise UsageError(f"--schedule: {err}") from None
    out = args.out
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
                seed=args.seed, x_test=data.x_test, y_test=data.y_test, progress=not args.no_progress,
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
        fh.write(json_dumps(record, indent=1) + "\n")
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
