"""The segments a walk goes through, served in chunks of a range of positions (picklable, for worker processes):
paired rows of two tensors, or index pairs into one table of samples."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch
from torch import Tensor

from .checks import check_inputs


class _Segments:
    """The segments to walk, served in chunks of a range of positions: ``x1[k] -> x2[k]``,
    or ``x[i[k]] -> x[j[k]]`` for index pairs into the samples ``x`` (then the chunks are
    index tensors and the inputs are gathered one chunk at a time). Picklable, for
    worker processes."""

    def __init__(
        self,
        n: int,
        sample: Tensor,
        chunks,
        *,
        x: Tensor | None = None,
        pair: tuple[Tensor, Tensor] | None = None,
        indexed: bool | None = None,
    ):
        self.n = n
        self.sample = sample  # one input, (1, *input_shape)
        self._chunks = chunks  # (start, stop, size) -> iterator of (a, c) over [start, stop), in order
        self.x = x  # the samples that index chunks point into
        self.pair = pair  # (x1, x2) of paired segments
        self.by_index = x is not None if indexed is None else indexed  # chunks of indices into x, or of rows
        self.checked = True  # the inputs are known to be finite

    def check_finite(self, norms: list[Tensor] | None) -> None:
        """Check inputs not yet known to be finite: ``norms`` (one tensor per table, or None), the inputs' Euclidean
        norms, prove them finite where every one is (a NaN or an inf makes a norm NaN or inf); otherwise every
        value is checked, and an error names the table that holds NaN or inf."""
        if self.checked:
            return
        if norms is None or not all(bool(torch.isfinite(n).all()) for n in norms):
            tables = [("x", self.x)] if self.x is not None else list(zip(("x1", "x2"), self.pair or ()))
            for name, t in tables:
                check_inputs(t, name)
        self.checked = True

    def input_bytes(self) -> int:
        tables = [self.x] if self.x is not None else list(self.pair or ())
        return sum(t.numel() * t.element_size() for t in tables)

    def without_inputs(self, chunks=None) -> _Segments:
        """The same segments without their inputs, for a walker that has the values it needs
        (the exact walker's values before the first activation): index pairs keep their
        indices (or take ``chunks``), paired segments become positions."""
        if chunks is None:
            chunks = self._chunks if self.by_index else _Positions()
        # a view pickles its whole storage: the sample alone, copied
        return _Segments(self.n, self.sample.clone(), chunks, indexed=self.by_index)

    def index_bytes(self) -> int | None:
        """The bytes of the index pairs' tables (``None`` where unknown)."""
        nbytes = getattr(self._chunks, "nbytes", None)
        return None if nbytes is None else int(nbytes())

    def range_pairs(self, start: int, stop: int) -> tuple[Tensor, Tensor]:
        """The index pairs at positions ``[start, stop)``, at once."""
        parts = list(self._chunks(start, stop, max(stop - start, 1)))
        # copies (a view would pickle its whole storage), by numpy: this runs beside busy worker processes, where an
        # operation of torch's on more than one thread waits for a thread the cores are not free to run
        return tuple(  # type: ignore[return-value]
            torch.from_numpy(np.concatenate([p[k].numpy() for p in parts]) if parts else np.zeros(0, np.int64))
            for k in (0, 1)
        )

    @staticmethod
    def paired(x1: Tensor, x2: Tensor, checked: bool = True) -> _Segments:
        """``checked``: whether ``x1`` and ``x2`` are known to hold finite values (see :meth:`check_finite`)."""
        seg = _Segments(x1.shape[0], x1[:1], _Slices(x1, x2), pair=(x1, x2))
        seg.checked = checked
        return seg

    @staticmethod
    def indexed(
        x: Tensor, index_chunks: Callable[[int, int, int], Iterable[tuple[Tensor, Tensor]]], n: int
    ) -> _Segments:
        """``index_chunks(start, stop, size)`` (a picklable callable) yields the index pairs
        of positions ``[start, stop)`` as pairs of int64 index tensors of any length."""
        return _Segments(n, x[:1], index_chunks, x=x)

    def chunks(self, start: int, stop: int, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        for i, j in self._chunks(start, stop, batch_size):
            for k in range(0, i.shape[0], batch_size):
                yield i[k : k + batch_size], j[k : k + batch_size]

    def inputs(self, a: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """The end inputs of a chunk."""
        return (a, c) if self.x is None else (self.x[a], self.x[c])


class _Positions:
    """``(start, stop, size) ->`` the positions ``[start, stop)``, ``size`` at a time (twice)."""

    def __call__(self, start: int, stop: int, size: int) -> Iterator[tuple[Tensor, Tensor]]:
        for k in range(start, stop, size):
            pos = torch.arange(k, min(k + size, stop))
            yield pos, pos


class _Slices:
    """``(start, stop, size) ->`` the rows ``[start, stop)`` of two tensors, ``size`` at a time (their first row
    being position ``offset``)."""

    def __init__(self, a: Tensor, b: Tensor, offset: int = 0):
        self.a, self.b, self.offset = a, b, offset

    def __call__(self, start: int, stop: int, size: int) -> Iterator[tuple[Tensor, Tensor]]:
        o = self.offset
        for k in range(start, stop, size):
            yield self.a[k - o : min(k + size, stop) - o], self.b[k - o : min(k + size, stop) - o]

    def nbytes(self) -> int:
        return self.a.numel() * self.a.element_size() + self.b.numel() * self.b.element_size()
