"""Where a study's result came from: the provenance recorded with every run of every study (the
spacefold version and git commit, the versions of torch, NumPy and Python, the command line with data
directories hidden, the pair-drawing version)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["run_provenance"]


_PROVENANCE: dict | None = None


_MACHINE_OPTIONS = ("--data-dir",)
# the source tree this module belongs to (src/spacefold/studies/provenance.py), where it is one
_ROOT = Path(__file__).resolve().parents[3]


def _shown_path(arg: str) -> str:
    """An absolute path as recorded: relative to the source tree where it lies inside it, else ``PATH``
    (another argument is left as it is)."""
    if not os.path.isabs(arg):
        return arg
    path = os.path.normpath(arg)
    root = str(_ROOT)
    if os.path.commonpath([path, root]) == root:
        return os.path.relpath(path, root)
    return "PATH"


def _shown_command(argv: Sequence[str]) -> list[str]:
    """The command line as recorded: the values of the options that name a machine's data
    directory (``--data-dir``) replaced by ``DIR``, and every other absolute path shown relative to
    the source tree (``PATH`` outside it); the results are shared, the paths are not."""
    out: list[str] = []
    hide = False
    for a in argv:
        if hide:
            out.append("DIR")
            hide = False
        elif a in _MACHINE_OPTIONS:
            out.append(a)
            hide = True
        elif any(a.startswith(o + "=") for o in _MACHINE_OPTIONS):
            out.append(a.split("=", 1)[0] + "=DIR")
        elif a.startswith("-") and "=" in a:
            opt, value = a.split("=", 1)
            out.append(f"{opt}={_shown_path(value)}")
        elif out:
            out.append(_shown_path(a))
        else:
            out.append(a)
    if out and os.path.isabs(out[0]):
        out[0] = os.path.relpath(out[0]) if not os.path.relpath(out[0]).startswith("..") else Path(out[0]).name
    return out


def run_provenance() -> dict:
    """Where a result came from, recorded with every run of every study: the spacefold version,
    the git commit of the source tree it was imported from (``None`` outside a git checkout) and
    whether that tree's code (``src/``, ``experiments/*.py``) had uncommitted changes, the torch, numpy and Python
    versions, the command line (data directories shown as ``DIR``, other absolute paths relative to the
    source tree), and the pair-drawing version
    (:data:`spacefold._core.pairs.PLAN_VERSION`).

    Taken once per process (the first call), so that every run of one process records the
    code that process imported."""
    global _PROVENANCE
    if _PROVENANCE is None:
        import torch

        from .._core.pairs import PLAN_VERSION
        from .._version import __version__

        here = Path(__file__).resolve().parent
        commit = dirty = None
        try:
            git = ["git", "-C", str(here)]
            commit = (
                subprocess.run(
                    git + ["rev-parse", "HEAD"], capture_output=True, text=True, timeout=30, check=True
                ).stdout.strip()
                or None
            )
            # the code only: results written into the tree do not make it dirty
            dirty = bool(
                subprocess.run(
                    git + ["status", "--porcelain", "--untracked-files=no", "--", ":/src", ":/experiments/*.py"],
                    capture_output=True,
                    text=True,
                    timeout=30,
                    check=True,
                ).stdout.strip()
            )
        except (OSError, subprocess.SubprocessError):
            commit = dirty = None
        _PROVENANCE = {
            "spacefold_version": __version__,
            "git_commit": commit,
            "git_dirty": dirty,
            "torch_version": torch.__version__,
            "numpy_version": np.__version__,
            "python_version": sys.version.split()[0],
            "command": _shown_command(sys.argv),
            "pair_plan_version": PLAN_VERSION,
        }
    return dict(_PROVENANCE)
