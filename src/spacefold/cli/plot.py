"""``spacefold plot path|plane``: figures of one segment or one plane."""

from __future__ import annotations

from pathlib import Path

from ._args import Distinct, UsageError, _add_data_args, int_in, nonnegative_int, normalized


def _add_plot(sub) -> None:
    from .._core.walk import METHODS
    from ..models.cantornet import MAX_DEPTH

    p = sub.add_parser(
        "plot",
        help="figures of one segment (path) or one plane",
        description="Figures of one segment (plot path: Hamming distance to the start, distance travelled and prefix "
        "chi against t) or of the plane through three inputs (plot plane: regions coloured by Hamming distance, the "
        "segment drawn over them), for any model (--model) on any data set (--data), or CantorNet (--cantornet K).",
    )
    p.add_argument("kind", choices=["path", "plane"], help="path | plane")
    p.add_argument(
        "--model",
        default=None,
        help="spacefold checkpoint, TorchScript file, torch.export archive (.pt2) "
        "or package.module:factory (with --weights)",
    )
    p.add_argument("--weights", default=None, help="state_dict file for a package.module:factory model")
    p.add_argument(
        "--cantornet",
        type=int_in(1, MAX_DEPTH),
        default=None,
        metavar="K",
        help="CantorNet A of depth K on its unit square instead of --model/--data",
    )
    _add_data_args(p, "digits")
    p.add_argument("--split", default="test", choices=["test", "train"], help="split the inputs come from")
    p.add_argument(
        "--index",
        type=nonnegative_int,
        nargs="+",
        action=Distinct,
        default=None,
        metavar="I",
        help="inputs by index into the split: path I J (x1 x2), plane I J K (x0 x1 x2); "
        "default: the first samples of two (three) different classes",
    )
    p.add_argument(
        "--method",
        type=normalized,
        choices=METHODS,
        default=None,
        help="path: exact | bisect | uniform (default exact where possible, else bisect)",
    )
    p.add_argument(
        "--resolution",
        type=int_in(2),
        default=400,
        help="plane: raster size for nets that are not piecewise linear (default 400)",
    )
    p.add_argument("-o", "--out", required=True, help="output file: .png, .svg or .pdf")
    p.add_argument(
        "--format",
        nargs="+",
        type=normalized,
        action=Distinct,
        default=None,
        choices=["png", "svg", "pdf"],
        help="write these formats (the suffix of --out is replaced)",
    )
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
            raise UsageError(
                f"--data {args.data} has fewer than {need} classes in its {args.split} split; give --index"
            )
        if need == 3:  # the segment x1 -> x2 joins the first two classes; x0 is of the third
            idx = [idx[2], idx[0], idx[1]]
    xs = fit_input_shape(model, x[idx])
    return [xs[k] for k in range(need)], idx


def _cmd_plot(args) -> int:
    from ..data.load import load_data, load_model
    from ..viz.plot import plot_path, plot_plane, save_figure

    if args.cantornet is not None and (args.model is not None or args.weights is not None):
        raise UsageError(f"--cantornet {args.cantornet} plots CantorNet, so --model/--weights cannot be given with it")
    if args.cantornet is not None:
        from ..models.cantornet import cantornet

        net = cantornet(args.cantornet, "A")
        import torch

        x1 = torch.tensor([0.0, 0.75], dtype=torch.float64)
        x2 = torch.tensor([1.0, 0.75], dtype=torch.float64)
        fig = (
            plot_path(net, x1, x2, method=args.method)
            if args.kind == "path"
            else plot_plane(net, resolution=args.resolution)
        )
    else:
        if args.model is None:
            raise UsageError("--model is required (or --cantornet K)")
        data = load_data(
            args.data, args.data_dir, seed=args.data_seed, download=args.download, image_size=args.image_size
        )
        model = load_model(args.model, args.weights, example=data.x_test[:2])
        inputs, idx = _plot_inputs(args, data, model)
        what = f"{data.name} ({args.split} {', '.join(str(i) for i in idx)})"
        name = Path(args.model).name if ":" not in str(args.model) else str(args.model)
        fig = (
            plot_path(model, *inputs, method=args.method, data=what, name=name)
            if args.kind == "path"
            else plot_plane(model, *inputs, resolution=args.resolution, data=what, name=name)
        )
    paths = save_figure(fig, args.out, args.format)
    print("\n".join(str(p) for p in paths))
    return 0
