"""``spacefold demo``: the embedded default, a small depth study on a data set that needs no download."""

from __future__ import annotations

from ._args import UsageError, normalized, output_dir
from .sweep import _run_sweep


def _add_demo(sub) -> None:
    from .._core.walk import METHODS

    p = sub.add_parser(
        "demo",
        help="a small depth study on scikit-learn's digits (no download)",
        description="The embedded default: train the 60-neuron depth series 1x60 ... 6x10 with 3 seeds on "
        "scikit-learn's 8x8 digits and measure the global folding of each on test pairs; writes plots and a "
        "summary table (CSV, JSON, markdown) to --out. A few minutes on 2 CPU cores.",
    )
    p.add_argument(
        "--out", type=output_dir, default="spacefold-demo", help="output directory (default ./spacefold-demo)"
    )
    p.add_argument(
        "--method", type=normalized, choices=METHODS, default="exact", help="exact | bisect | uniform (default exact)"
    )
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
    return _run_sweep(
        data,
        list(DEPTH_SERIES),
        [0, 1, 2],
        settings,
        args.out,
        plots=True,
        progress=not args.no_progress,
        as_json=args.json,
        min_accuracy=0.9,
    )
