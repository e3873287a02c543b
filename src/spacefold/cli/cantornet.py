"""``spacefold cantornet``: folding of CantorNet along a segment."""

from __future__ import annotations

from ._args import _emit_json, finite_float, int_in, nonnegative_float, normalized, positive_int


def _add_cantornet(sub) -> None:
    from .._core.walk import METHODS
    from ..models.cantornet import MAX_DEPTH, REPRESENTATIONS

    p = sub.add_parser(
        "cantornet",
        help="folding of CantorNet along a segment",
        description="Folding of CantorNet (representations A, B, C) along a segment, default (0, 0.75) -> (1, 0.75).",
    )
    p.add_argument(
        "--depth", type=int_in(1, MAX_DEPTH), default=1, help=f"recursion depth k in [1, {MAX_DEPTH}] (default 1)"
    )
    p.add_argument(
        "--representation",
        type=lambda t: t.strip().upper(),
        choices=REPRESENTATIONS,
        default="A",
        help="A (recursive), B or C (DNF-like); default A",
    )
    p.add_argument(
        "--method", type=normalized, choices=METHODS, default="exact", help="exact | bisect | uniform (default exact)"
    )
    p.add_argument("--steps", type=positive_int, default=10, help="uniform: steps + 1 grid points (default 10)")
    p.add_argument("--start", type=finite_float, nargs=2, metavar=("X", "Y"), default=(0.0, 0.75))
    p.add_argument("--end", type=finite_float, nargs=2, metavar=("X", "Y"), default=(1.0, 0.75))
    p.add_argument(
        "--tol",
        type=nonnegative_float,
        default=None,
        help="bisect: locate transitions within TOL in t; exact: crossings closer than TOL are "
        "simultaneous (default: 1e-6 for bisect; for exact 1e-9, or 1e-6 with a tie tolerance)",
    )
    p.add_argument(
        "--tie-tol",
        type=nonnegative_float,
        default=None,
        help="bit = pre-activation > TIE_TOL (default: the net's recommended value, 1e-9 in float64, "
        "which representation C needs for its exact ties)",
    )
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


def _cantornet_result(
    depth: int,
    representation: str,
    method: str,
    start,
    end,
    *,
    steps: int = 10,
    tol: float | None = None,
    tie_tol: float | None = None,
) -> dict:
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
    out.update(
        {
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
        }
    )
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
        shown = rows if len(rows) <= max_rows else [*rows[:half], None, *rows[-half:]]
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
