"""Command line: argument parsing and printing only; every command calls the public API.

One module per command (``cantornet``, ``demo``, ``measure``, ``sweep``, ``plot``, ``report``,
``adversarial``, ``train``): each adds its parser and runs it. Arguments are validated where they are
parsed, by the ``type=`` functions of ``_args`` and
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
import sys
from collections.abc import Callable, Sequence

from ..errors import InputError
from . import adversarial, cantornet, demo, measure, plot, report, sweep, train
from ._args import (  # noqa: F401 - the argument types, importable from here
    UsageError,
    finite_float,
    float_in,
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
    probability,
)

# every subcommand, in the order of ``spacefold --help``: its module adds its parser (``add``)
_COMMANDS: list[Callable] = [
    cantornet._add_cantornet,
    demo._add_demo,
    measure._add_measure,
    sweep._add_sweep,
    plot._add_plot,
    report._add_report,
    adversarial._add_adversarial,
    train._add_train,
]


#: What the user did wrong rather than the program: reported as one line, exit code 2.
USER_ERRORS: tuple[type[BaseException], ...] = (
    InputError,
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)


def _user_errors() -> tuple[type[BaseException], ...]:
    from .._core.walk.exact import (
        NotPiecewiseLinearError,  # a model the chosen method cannot walk: choose another method
    )

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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
