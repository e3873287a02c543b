"""Small shared helpers: argument checks, progress bars, atomic writes, strict JSON."""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import InputError, InputTypeError


def check_int(value, name: str, minimum: int = 1) -> int:
    """Validate an int >= ``minimum`` (bools and floats are refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputTypeError(f"{name} must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise InputError(f"{name} must be an int >= {minimum}, got {value}")
    return value


def check_choice(value, name: str, choices: Iterable[str]) -> str:
    choices = tuple(choices)
    if value not in choices:
        raise InputError(f"{name} must be one of {', '.join(repr(c) for c in choices)}, got {value!r}")
    return value


def check_distinct(values, name: str) -> list:
    """Validate a list without repeats (seeds, architectures, attacks, formats): a repeat would
    run or write the same thing twice and count it as two."""
    values = list(values)
    for i, v in enumerate(values):
        if v in values[:i]:
            raise InputError(f"{name} must be distinct, got {v!r} more than once")
    return values


def physical_memory() -> int | None:
    """Bytes of memory of this machine (``SC_PAGE_SIZE x SC_PHYS_PAGES``), ``None`` where the
    system does not say."""
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None
    return pages * size if pages > 0 and size > 0 else None


_TRIM: object = None  # glibc's malloc_trim once looked up, False where there is none


def release_freed_memory() -> None:
    """Give the memory that the C allocator holds free back to the system (glibc's ``malloc_trim``;
    nothing elsewhere). Called between the chunks of a walk: glibc keeps large freed tensors in its
    heap once it has raised its threshold for separate mappings, and the heap then grows with the
    number of chunks walked, although each chunk's walks are freed."""
    global _TRIM
    if _TRIM is None:
        _TRIM = False
        if sys.platform.startswith("linux"):
            try:
                _TRIM = ctypes.CDLL("libc.so.6").malloc_trim
            except (OSError, AttributeError):  # another C library
                pass
    if _TRIM:
        _TRIM(0)  # type: ignore[operator]


def format_bytes(n: float) -> str:
    """``n`` bytes in the largest binary unit below it, "1.5 GiB"."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError  # pragma: no cover


def check_size(name: str, value, n_bytes: float, what: str) -> None:
    """Refuse a size argument before anything is allocated: :class:`InputError` when ``n_bytes``,
    the memory that ``name = value`` would need for ``what``, exceeds the memory of this machine
    (:func:`physical_memory`). Every argument that sets a size (grid points, bootstrap draws,
    layer widths, segments at once, workers, the memory budget) is checked here."""
    limit = physical_memory()
    if limit is not None and n_bytes > limit:
        raise InputError(
            f"{name} = {value} would need {format_bytes(n_bytes)} for {what}, more than the "
            f"{format_bytes(limit)} of memory of this machine"
        )


def json_safe(obj):
    """``obj`` with every non-finite float (NaN, ±inf) replaced by ``None``, recursively
    through dicts, lists and tuples, so that it serialises as strict JSON (``null``)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def json_dumps(obj, **kw) -> str:
    """Strict JSON text of ``obj``: non-finite floats become ``null`` (never a bare ``NaN``)."""
    return json.dumps(json_safe(obj), allow_nan=False, **kw)


def progress(iterable: Iterable, *, total: int | None = None, desc: str = "", enabled: bool = False) -> Iterable:
    """Wrap ``iterable`` in a tqdm progress bar when ``enabled`` and tqdm is installed."""
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is an optional dependency
        return iterable
    return tqdm(iterable, total=total, desc=desc, leave=False)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator:
    """Open a temporary file beside ``path``; rename it onto ``path`` only on success."""
    with atomic_path(path) as tmp, open(tmp, mode) as fh:
        yield fh


def atomic_path(path: str | os.PathLike) -> contextlib.AbstractContextManager:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    For writers that take a file name (``torch.save``, ``savefig``).

    The file gets the mode of any file the user creates, ``0o666 & ~umask``
    (``mkstemp`` alone would leave it ``0o600``).
    """

    @contextlib.contextmanager
    def _cm():
        target = Path(path)
        probe = target.parent
        while not probe.exists() and probe.parent != probe:
            probe = probe.parent
        if not probe.is_dir():
            raise InputError(f"cannot write {path}: {probe} is a file, not a directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=target.suffix, dir=target.parent)
        try:
            try:
                os.fchmod(fd, 0o666 & ~current_umask())
            finally:
                os.close(fd)
            yield tmp
            os.replace(tmp, target)
        except BaseException as err:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            if isinstance(err, OSError) and err.errno is not None and tmp in (err.filename, err.filename2):
                # name the user's file, not the temporary one beside it (which is gone)
                raise type(err)(err.errno, err.strerror, str(target)) from None
            raise

    return _cm()


def current_umask() -> int:
    """The process's umask, read without changing it where the system tells it
    (``/proc/self/status`` on Linux); elsewhere set and restored at once."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
