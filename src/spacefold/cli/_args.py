"""Argument types (``type=`` functions that refuse bad values with one sentence) and the options
several commands share: the data set, JSON output."""

from __future__ import annotations

import argparse
import math
import tempfile
from collections.abc import Callable
from pathlib import Path

from .._util import json_dumps
from ..errors import InputError


class UsageError(InputError):
    """Bad input found by the CLI itself."""


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None


def finite_float(text: str) -> float:
    """A finite number (not nan, not ±inf)."""
    v = _number(text)
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return v


def float_in(
    lo: float = -math.inf, hi: float = math.inf, *, lo_open: bool = False, hi_open: bool = False
) -> Callable[[str], float]:
    """A ``type=`` for a finite number in the interval from ``lo`` to ``hi`` (closed unless ``*_open``)."""
    interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    if lo == 0 and hi == math.inf:
        what = "a finite number > 0" if lo_open else "a finite number >= 0"
    else:
        what = f"a finite number in {interval}"

    def parse(text: str) -> float:
        v = _number(text)
        ok = math.isfinite(v) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
        if not ok:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return v

    parse.__name__ = f"float in {interval}"
    return parse


positive_float = float_in(0.0, lo_open=True)


positive_float.__doc__ = "A finite number > 0."


nonnegative_float = float_in(0.0)


nonnegative_float.__doc__ = "A finite number >= 0."


fraction = float_in(0.0, 1.0)


fraction.__doc__ = "A number in [0, 1] (an accuracy, a share)."


probability = float_in(0.0, 1.0, hi_open=True)


probability.__doc__ = "A number in [0, 1) (a rate that must leave something, such as dropout)."


def int_in(lo: int, hi: int | None = None) -> Callable[[str], int]:
    """A ``type=`` for an integer >= ``lo`` (and <= ``hi`` when given)."""
    what = f"an int >= {lo}" if hi is None else f"an int in [{lo}, {hi}]"

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if v < lo or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return v

    parse.__name__ = what
    return parse


positive_int = int_in(1)


positive_int.__doc__ = "An int >= 1."


nonnegative_int = int_in(0)


nonnegative_int.__doc__ = "An int >= 0 (seeds)."


class Distinct(argparse.Action):
    """``action=`` of a list option whose values must not repeat (``--seeds 0 0`` would run seed 0
    twice and count it as two runs); compared after ``type=``, so "3x20 3-20" repeat too."""

    def __call__(self, parser, namespace, values, option_string=None):
        from .._util import check_distinct

        try:
            check_distinct(values, "values")
        except InputError as err:
            raise argparse.ArgumentError(self, str(err).replace("values must", "must")) from None
        setattr(namespace, self.dest, values)


def normalized(text: str) -> str:
    """Lower case without surrounding blanks, for ``choices=`` of lower-case names."""
    return text.strip().lower()


def hidden_arch(text: str) -> str:
    """An MLP architecture with at least one hidden layer ("3x20", "30-20"), in its canonical
    spelling (" 5 x 12 " -> "5x12", "30,20" -> "30-20")."""
    from ..models.mlp import arch_name, parse_arch

    try:
        widths = parse_arch(text)
    except InputError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if not widths:
        raise argparse.ArgumentTypeError(f"must have at least one hidden layer (e.g. 3x20), got {text!r}")
    return arch_name(widths)


def folding_schedule(text: str) -> str:
    """When the folding loss is on: "always", "early:FRACTION" or "every:N", in its canonical
    spelling ("EARLY:0.50" -> "early:0.5"; :class:`spacefold.FoldingSchedule`)."""
    from ..training.regularize import FoldingSchedule

    try:
        return str(FoldingSchedule.parse(text))
    except InputError:
        raise argparse.ArgumentTypeError(
            f"must be always, early:FRACTION (0 < FRACTION <= 1) or every:N (N >= 1), got {text!r}"
        ) from None


def output_dir(text: str) -> Path:
    """A directory to write results to: it exists or can be created, and the user may write there.

    Checked when the arguments are parsed, so that nothing is computed for results
    that could not be saved; nothing is created by the check.
    """
    path = Path(text).expanduser()
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise argparse.ArgumentTypeError(f"must be a directory (or one to create), got {text!r}: {probe} is a file")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as err:
        raise argparse.ArgumentTypeError(
            f"must be a directory you can write to, got {text!r} ({err.strerror or err} in {probe})"
        ) from None
    return path


def _emit_json(obj) -> None:
    """Print ``obj`` as strict JSON: a non-finite number is ``null``, never a bare ``NaN``."""
    print(json_dumps(obj, indent=None, sort_keys=False))


def _cli_data(args):
    from ..data.load import load_data

    try:
        data = load_data(
            args.data,
            args.data_dir,
            download=getattr(args, "download", False),
            seed=args.data_seed,
            image_size=args.image_size,
        )
    except ImportError as err:
        raise UsageError(str(err)) from None
    n_train, n_test = getattr(args, "n_train", None), getattr(args, "n_test", None)
    for option, n, have in (("--n-train", n_train, len(data.y_train)), ("--n-test", n_test, len(data.y_test))):
        if n is not None and n > have:  # a subset larger than the data would silently be all of it
            raise UsageError(f"{option} must be at most {have} (the samples of --data {args.data}), got {n}")
    if n_train is not None or n_test is not None:
        data = data.subset(n_train, n_test, seed=args.data_seed)
    return data


def _add_data_args(p, default: str | None) -> None:
    p.add_argument(
        "--data",
        default=default,
        required=default is None,
        help="mnist | digits | blobs | spirals | a directory of MNIST IDX files | an .npz file (x, y) | "
        "an image folder (ImageFolder layout)" + (f" (default {default})" if default else ""),
    )
    p.add_argument("--data-dir", default=None, help="directory holding the MNIST IDX files (for --data mnist)")
    p.add_argument("--download", action="store_true", help="download MNIST into --data-dir (needs torchvision)")
    p.add_argument(
        "--data-seed", type=nonnegative_int, default=0, help="seed of the train/test split and subsets (default 0)"
    )
    p.add_argument(
        "--image-size",
        type=positive_int,
        default=None,
        metavar="N",
        help="image folders: resize every image to N x N (needed when the images differ in size)",
    )
