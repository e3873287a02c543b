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
    p.add_argument("--tol", type=float, default=1e-6,
                   help="bisect: locate transitions within TOL in t; exact: crossings closer than TOL are "
                   "simultaneous (default 1e-6)")
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
                      tol: float = 1e-6, tie_tol: float | None = None) -> dict:
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
        out["tol"] = tol
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


# --------------------------------------------------------------------------- main

_COMMANDS: list[Callable] = [_add_cantornet]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    except KeyboardInterrupt:
        print(f"spacefold {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
