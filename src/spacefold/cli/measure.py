"""``spacefold measure``: global folding of a saved model over a data set."""

from __future__ import annotations

from pathlib import Path

from .._util import json_dumps
from ._args import (
    UsageError,
    _add_data_args,
    _cli_data,
    _emit_json,
    int_in,
    nonnegative_int,
    normalized,
    output_dir,
    positive_int,
)


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
    p.add_argument(
        "--model",
        required=True,
        help="spacefold checkpoint, TorchScript file, torch.export archive (.pt2) "
        "or package.module:factory (with --weights)",
    )
    p.add_argument("--weights", default=None, help="state_dict file for a package.module:factory model")
    _add_data_args(p, None)
    p.add_argument("--split", default="test", choices=["test", "train"], help="which split to walk (default test)")
    p.add_argument("--n-test", type=int_in(2), default=None, help="use a stratified subset of this many samples")
    p.add_argument(
        "--pairs",
        type=normalized,
        choices=PAIR_CHOICES,
        default="inter-class",
        help="inter-class | all | centroids | random (default inter-class)",
    )
    p.add_argument(
        "--max-pairs",
        type=positive_int,
        default=None,
        help="at most this many paths, spread over class pairs (needed by --pairs random)",
    )
    p.add_argument(
        "--n-clusters", type=positive_int, default=10, help="k-means clusters per class for --pairs centroids"
    )
    p.add_argument(
        "--method", type=normalized, choices=METHODS, default="exact", help="exact | bisect | uniform (default exact)"
    )
    p.add_argument("--steps", type=positive_int, default=100, help="uniform: steps + 1 grid points (default 100)")
    p.add_argument(
        "--seed", type=nonnegative_int, default=0, help="seed of the pair sample and the centroids (default 0)"
    )
    p.add_argument("--per-layer", action="store_true", help="also the folding of each layer's bits alone")
    p.add_argument("--ci", action="store_true", help="bootstrap 95%% confidence intervals")
    p.add_argument("--n-boot", type=positive_int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="segments walked at once (default: from the memory budget, SPACEFOLD_MEMORY bytes)",
    )
    p.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help="worker processes (default: every core; 1: in this process). Under torchrun the ranks "
        "share the pairs and rank 0 prints and writes",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--out", type=output_dir, default=None, help="also write measure.json and class_pairs.csv to this directory"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_measure)


def _cmd_measure(args) -> int:
    from ..data.load import fit_input_shape, load_model

    if args.ci:  # before the walks, not after
        from .._core.global_folding import check_n_boot

        check_n_boot(args.n_boot)
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
        g = global_folding(
            model,
            x,
            y,
            pairs=args.pairs,
            max_pairs=args.max_pairs,
            seed=args.seed,
            method=args.method,
            n_clusters=args.n_clusters,
            steps=args.steps,
            per_layer=args.per_layer,
            batch_size=args.batch_size,
            progress=not args.no_progress,
            workers=args.workers,
        )
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
        lines.append(
            f"{r['a']:>3} {r['b']:>3} {r['n_paths']:>8} {r['phi']:>8.4f} {r['fraction_folded']:>8.4f} "
            f"{r['phi_max']:>8.4f}"
        )
    for r in res.get("per_layer", []):
        lines.append(f"layer {r['layer']}: Φ_N {r['phi']:.4f}, share folded {r['fraction_folded']:.4f}")
    return "\n".join(lines)
