"""``spacefold train``: train one model, optionally with the folding regulariser, logging Φ_N."""

from __future__ import annotations

import sys

from .._util import json_dumps
from ._args import (
    UsageError,
    _add_data_args,
    _cli_data,
    _emit_json,
    hidden_arch,
    int_in,
    nonnegative_float,
    nonnegative_int,
    normalized,
    output_dir,
    positive_float,
    positive_int,
)


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
    p.add_argument(
        "--n-train", type=positive_int, default=None, help="train on a stratified subset of this many samples"
    )
    p.add_argument("--n-test", type=positive_int, default=None, help="test on a stratified subset of this many samples")
    p.add_argument("--epochs", type=positive_int, default=10, help="training epochs (default 10)")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--batch-size", type=positive_int, default=128, help="training batch size (default 128)")
    p.add_argument(
        "--seed", type=nonnegative_int, default=0, help="seed of initialisation, shuffling and probe pairs (default 0)"
    )
    p.add_argument(
        "--regularize",
        type=nonnegative_float,
        default=0.0,
        metavar="LAMBDA",
        help="weight of the folding loss (default 0: plain training)",
    )
    p.add_argument(
        "--schedule",
        default="always",
        help="when the folding loss is on: always | early:FRACTION (first epochs) | every:N (default always)",
    )
    p.add_argument(
        "--loss-method",
        default="random",
        type=normalized,
        choices=["random", "grid", "exact"],
        help="sample points of the folding loss: random | grid | exact (default random)",
    )
    p.add_argument("--n-points", type=int_in(2), default=8, help="points per segment of the folding loss (default 8)")
    p.add_argument(
        "--pairs-per-step", type=positive_int, default=8, help="probe segments per training step (default 8)"
    )
    p.add_argument(
        "--every-steps",
        type=positive_int,
        default=1,
        help="add the folding loss at every N-th training step only (default 1: every step)",
    )
    p.add_argument("--beta", type=positive_float, default=10.0, help="sharpness of the soft patterns (default 10)")
    p.add_argument(
        "--probe-pairs", type=positive_int, default=512, help="inter-class training pairs of the loss (default 512)"
    )
    p.add_argument("--track-pairs", type=positive_int, default=200, help="inter-class test pairs for Φ_N (default 200)")
    p.add_argument(
        "--track-every", type=positive_int, default=1, help="measure Φ_N every N epochs and the last (default 1)"
    )
    p.add_argument("--out", required=True, type=output_dir, help="output directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the per-epoch log as one JSON object on stdout")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args) -> int:
    from .._util import atomic_write
    from ..models.mlp import mlp, save_checkpoint
    from ..models.train import train
    from ..training.regularize import FoldingRegularizer, FoldingSchedule, FoldingTracker, probe_pairs

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
        reg = FoldingRegularizer(
            p1,
            p2,
            args.regularize,
            schedule=schedule,
            pairs_per_step=args.pairs_per_step,
            method=args.loss_method,
            n_points=args.n_points,
            beta=args.beta,
            seed=args.seed,
            every_steps=args.every_steps,
        )
    t1, t2 = probe_pairs(data.x_test, data.y_test, args.track_pairs, seed=args.seed)
    tracker = FoldingTracker(t1, t2, every=args.track_every)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    log(
        f"train {args.arch} on {data.name} ({data.describe()['n_train']} samples), {args.epochs} epochs, "
        + (f"folding loss λ={args.regularize:g} ({schedule})" if reg else "no folding loss")
        + f"; results in {out}"
    )
    res = train(
        model,
        data.x_train,
        data.y_train,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        seed=args.seed,
        x_test=data.x_test,
        y_test=data.y_test,
        progress=not args.no_progress,
        desc=f"train {args.arch}",
        regularizer=reg,
        on_epoch_end=tracker,
    )
    tracked = {r["epoch"]: r for r in res.tracked}
    rows = []
    for e in range(args.epochs):
        t = tracked.get(e, {})
        rows.append(
            {
                "epoch": e + 1,
                "loss": res.loss[e],
                "reg_loss": res.reg_loss[e] if res.reg_loss else 0.0,
                "train_accuracy": res.train_accuracy[e],
                "test_accuracy": res.test_accuracy[e],
                "phi": t.get("phi"),
                "phi_max": t.get("phi_max"),
                "fraction_folded": t.get("fraction_folded"),
            }
        )
    meta = {
        "data": data.describe(),
        "training": res.as_dict(),
        "regularizer": reg.describe() if reg else None,
        "track_pairs": args.track_pairs,
    }
    save_checkpoint(model, out / "model.pt", metadata=meta)
    record = {
        "arch": args.arch,
        "seed": args.seed,
        "regularizer": meta["regularizer"],
        "epochs": rows,
        "seconds": res.seconds,
    }
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
