"""``spacefold sweep``: train a family of models and measure each (the depth study), optionally
with the folding regulariser."""

from __future__ import annotations

import sys
from pathlib import Path

from ._args import (
    Distinct,
    _add_data_args,
    _cli_data,
    _emit_json,
    folding_schedule,
    fraction,
    hidden_arch,
    int_in,
    nonnegative_float,
    nonnegative_int,
    normalized,
    output_dir,
    positive_float,
    positive_int,
)


def _add_sweep(sub) -> None:
    from .._core.walk import METHODS
    from ..models.mlp import DEPTH_SERIES

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
    p.add_argument(
        "--archs",
        nargs="+",
        type=hidden_arch,
        action=Distinct,
        default=list(DEPTH_SERIES),
        help="architectures, e.g. 3x20 5x12 30-20",
    )
    p.add_argument(
        "--seeds", nargs="+", type=nonnegative_int, action=Distinct, default=[0, 1, 2], help="seeds (default 0 1 2)"
    )
    p.add_argument("--epochs", type=positive_int, default=30, help="training epochs (default 30)")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--batch-size", type=positive_int, default=128, help="training batch size (default 128)")
    p.add_argument(
        "--method", type=normalized, choices=METHODS, default="exact", help="exact | bisect | uniform (default exact)"
    )
    p.add_argument("--steps", type=positive_int, default=100, help="uniform: steps + 1 grid points (default 100)")
    p.add_argument(
        "--pairs-per-class-pair",
        type=positive_int,
        default=200,
        help="random test pairs per ordered class pair (default 200)",
    )
    p.add_argument(
        "--n-boot", type=positive_int, default=500, help="bootstrap resamples for the intervals (default 500)"
    )
    p.add_argument(
        "--min-accuracy",
        type=fraction,
        default=0.9,
        help="runs below this test accuracy are drawn hollow and left out of the depth trend (default 0.9)",
    )
    _add_regularizer_args(p)
    p.add_argument(
        "--out", type=output_dir, default="spacefold-sweep", help="output directory (default ./spacefold-sweep)"
    )
    p.add_argument("--no-plots", action="store_true", help="write no figures")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print one JSON object (the summary) on stdout")
    p.set_defaults(func=_cmd_sweep)


def _add_regularizer_args(p) -> None:
    """The folding regulariser's options of ``sweep`` (those of ``train``)."""
    from ..training.regularize import LOSS_METHODS

    g = p.add_argument_group(
        "folding regulariser",
        "train every run with LAMBDA x the folding loss on inter-class "
        "training pairs, as spacefold train --regularize does",
    )
    g.add_argument(
        "--regularize",
        type=nonnegative_float,
        default=0.0,
        metavar="LAMBDA",
        help="weight of the folding loss (default 0: plain training)",
    )
    g.add_argument(
        "--schedule",
        type=folding_schedule,
        default="always",
        help="when the folding loss is on: always | early:FRACTION (first epochs) | every:N (default always)",
    )
    g.add_argument(
        "--loss-method",
        type=normalized,
        choices=LOSS_METHODS,
        default="random",
        help="sample points of the folding loss: random | grid | exact (default random)",
    )
    g.add_argument(
        "--n-points",
        type=int_in(2),
        default=8,
        help="points per segment of the folding loss, at least 3 for random (default 8)",
    )
    g.add_argument(
        "--pairs-per-step", type=positive_int, default=8, help="probe segments per training step (default 8)"
    )
    g.add_argument(
        "--every-steps",
        type=positive_int,
        default=1,
        help="add the folding loss at every N-th training step only (default 1: every step)",
    )
    g.add_argument("--beta", type=positive_float, default=10.0, help="sharpness of the soft patterns (default 10)")
    g.add_argument(
        "--probe-pairs",
        type=positive_int,
        default=512,
        help="inter-class training pairs of the loss, drawn with each run's seed (default 512)",
    )


def _regularizer_settings(args):
    """The sweep's :class:`spacefold.studies.depth.RegularizerSettings`, ``None`` for plain training (λ = 0)."""
    from ..studies.depth import RegularizerSettings

    if args.regularize == 0:
        return None
    return RegularizerSettings(
        lam=args.regularize,
        schedule=args.schedule,
        method=args.loss_method,
        n_points=args.n_points,
        pairs_per_step=args.pairs_per_step,
        every_steps=args.every_steps,
        beta=args.beta,
        probe_pairs=args.probe_pairs,
    )


def _cmd_sweep(args) -> int:
    from ..studies.depth import StudySettings

    settings = StudySettings(
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        method=args.method,
        steps=args.steps,
        pairs_per_class_pair=args.pairs_per_class_pair,
        n_boot=args.n_boot,
        regularizer=_regularizer_settings(args),
    ).check()
    data = _cli_data(args)
    return _run_sweep(
        data,
        args.archs,
        args.seeds,
        settings,
        args.out,
        plots=not args.no_plots,
        progress=not args.no_progress,
        as_json=args.json,
        min_accuracy=args.min_accuracy,
    )


def _run_sweep(data, archs, seeds, settings, out, *, plots, progress, as_json, min_accuracy) -> int:
    from dataclasses import asdict

    from .._core.parallel import is_main, world
    from ..studies.depth import check_study, depth_trend, markdown_summary, run_study, summary_by_arch

    check_study(data, archs, seeds, settings)  # before the first line of the log

    out = Path(out)
    size = world()[1]  # under torchrun: the ranks share the runs, rank 0 prints and writes

    def log(msg):
        if is_main():
            print(msg, file=sys.stderr, flush=True)

    reg = settings.regularizer if settings.regularizing else None
    log(
        f"data {data.name}: {data.describe()['n_train']} train / {data.describe()['n_test']} test samples, "
        f"{len(archs)} architectures x {len(seeds)} seeds, method {settings.method}, "
        + (f"folding loss λ={reg.lam:g} ({reg.schedule}), " if reg else "")
        + (f"{size} ranks, " if size > 1 else "")
        + f"results in {out}"
    )
    rows = run_study(data, archs, seeds, out, settings, progress=progress, log=log)
    if not is_main():
        return 0
    from ..viz.report import write_provenance

    write_provenance(out, seeds=list(seeds))
    figs = []
    if plots:
        try:
            from ..viz.study_plots import study_figures

            figs = [str(p) for p in study_figures(rows, out / "plots", min_accuracy=min_accuracy)]
        except ImportError as err:
            log(f"plots skipped: {err}")
    trend = depth_trend(rows, min_accuracy, "phi")
    summary = {
        "out": str(out),
        "data": data.describe(),
        "method": settings.method,
        "regularizer": asdict(reg) if reg else None,
        "by_arch": summary_by_arch(rows),
        "depth_trend": trend,
        "figures": figs,
    }
    if as_json:
        _emit_json(summary)
    else:
        print(markdown_summary(rows))
        print()
        med = ", ".join(f"{d}: {v:.4f}" for d, v in trend["median_by_depth"].items())
        head = f"Φ_N by depth (median over runs with test accuracy >= {min_accuracy:.2f})"
        if not med:
            print(f"{head}: none, {trend['note']}")
        elif trend["note"] is not None:
            print(f"{head}: {med}; no Spearman ρ(depth, Φ_N): {trend['note']}")
        else:
            print(f"{head}: {med}; Spearman ρ(depth, Φ_N) = {trend['spearman_depth']:.3f}")
        print(
            f"tables: {out / 'results.csv'}, {out / 'results.json'}, {out / 'summary.md'}"
            + (f"; figures in {out / 'plots'}" if figs else "")
        )
    return 0
