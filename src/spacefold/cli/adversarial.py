"""``spacefold adversarial``: the interaction coefficient on adversarial paths."""

from __future__ import annotations

import sys

from .._util import json_dumps
from ._args import (
    Distinct,
    UsageError,
    _add_data_args,
    _cli_data,
    _emit_json,
    finite_float,
    int_in,
    nonnegative_float,
    nonnegative_int,
    normalized,
    output_dir,
    positive_float,
    positive_int,
)


def _add_adversarial(sub) -> None:
    p = sub.add_parser(
        "adversarial",
        help="interaction coefficient on paths with adversarial endpoints",
        description="Attack the samples of two classes (FGSM, PGD under L-inf or L2, via torchattacks) and "
        "measure the mean non-zero interaction coefficient on the paths a -> b, a -> b*, a* -> b and a* -> b* "
        "(* = adversarial; endpoints the attack does not flip are discarded), with bootstrap intervals.",
    )
    from ..studies.adversarial import ATTACKS

    p.add_argument(
        "--model",
        required=True,
        help="spacefold checkpoint, TorchScript file, torch.export archive "
        "(.pt2) or package.module:factory (with --weights)",
    )
    p.add_argument("--weights", default=None, help="state_dict file for a package.module:factory model")
    _add_data_args(p, None)
    p.add_argument("--split", default="test", choices=["test", "train"], help="which split (default test)")
    p.add_argument(
        "--classes",
        type=nonnegative_int,
        nargs=2,
        action=Distinct,
        default=[5, 7],
        metavar=("A", "B"),
        help="start class A and end class B of the paths (default 5 7)",
    )
    p.add_argument(
        "--attacks",
        nargs="+",
        action=Distinct,
        type=normalized,
        choices=ATTACKS,
        default=["fgsm", "pgd"],
        help="fgsm | pgd | pgd-l2 (default fgsm pgd)",
    )
    p.add_argument("--eps", type=nonnegative_float, default=0.1, help="attack budget in input units (default 0.1)")
    p.add_argument("--steps", type=positive_int, default=40, help="PGD steps (default 40)")
    p.add_argument("--step-size", type=positive_float, default=None, help="PGD step (default eps / 10)")
    p.add_argument(
        "--data-range",
        type=finite_float,
        nargs=2,
        default=None,
        metavar=("LO", "HI"),
        help="adversarial inputs are clipped to [LO, HI] (default [0, 1] when the data lie in it, "
        "else the data's minimum and maximum)",
    )
    p.add_argument("--max-pairs", type=positive_int, default=500, help="random (A, B) pairs (default 500)")
    p.add_argument(
        "--method",
        default="exact",
        choices=["exact", "uniform"],
        help="exact region walk (each region once; default) or the uniform grid of --n-points",
    )
    p.add_argument("--n-points", type=int_in(2), default=100, help="uniform: points per path (default 100)")
    p.add_argument("--n-boot", type=positive_int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the pairs, PGD's start and the bootstrap")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--out",
        type=output_dir,
        default=None,
        help="also write adversarial.json, adversarial.txt and interaction.png to this directory",
    )
    p.set_defaults(func=_cmd_adversarial)


def _cmd_adversarial(args) -> int:
    from ..data.load import fit_input_shape, load_model
    from ..studies.adversarial import adversarial_interaction

    out = args.out
    data = _cli_data(args)
    model = load_model(args.model, args.weights, example=data.x_test[:2])  # any model measure takes
    x, y = data.split(args.split)
    x = fit_input_shape(model, x)
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
            raise UsageError(
                f"--classes must name classes of --data {args.data} ({args.split} split: "
                f"{', '.join(map(str, present))}), got {c}"
            )
    try:
        res = adversarial_interaction(
            model,
            x,
            y,
            classes=args.classes,
            attacks=args.attacks,
            eps=args.eps,
            max_pairs=args.max_pairs,
            method=args.method,
            n_points=args.n_points,
            steps=args.steps,
            step_size=args.step_size,
            data_range=(lo, hi),
            seed=args.seed,
            n_boot=args.n_boot,
        )
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
