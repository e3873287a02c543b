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
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_cantornet)


def _cmd_cantornet(args) -> int:
    raise UsageError("cantornet is not available in this build")


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
