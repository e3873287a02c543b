"""The exact method's walker for the pipeline (:mod:`spacefold._core.pipeline`): the values before the first
activation computed once per input and cached (or per range of paired segments, as the ranges are sent to worker
processes, for the layer walk), the walks of a chunk's segments from them, and for small MLPs their measures without
walks (:mod:`.walk.exact.mlp`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor, nn

from .measure import summarize
from .patterns import LayerSelector
from .walk import WalkBatch

if TYPE_CHECKING:
    from .walk.exact.mlp import MLPSummarizer


class _Options(Protocol):
    """What the walker reads of the pipeline's ``WalkOptions``."""

    @property
    def layers(self) -> LayerSelector: ...

    @property
    def tie_tol(self) -> float: ...

    @property
    def tol(self) -> float | None: ...

    @property
    def batch_size(self) -> int | None: ...


# Values of the widest layer for the segments measured at once by walk.exact.mlp (so that its rows stay in the cache;
# 512 segments of 64-wide layers, 2,730 of 12-wide ones: fewer calls where each costs less)
_FAST_VALUES = 1 << 15


# Values before the first activation are cached for every input up to this size (or four
# times the size of the inputs themselves, when larger), computed in blocks of about
# _PREFIX_BLOCK_BYTES of inputs: a few large products instead of two small ones per chunk.
_PREFIX_CACHE_BYTES = 2 << 30

_PREFIX_BLOCK_BYTES = 32 << 20


def _float64_copy(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model).to(torch.float64).eval()


class _ExactWalker:
    """``exact``: the walk starts from the values of everything before the first
    activation at the two ends (:meth:`ExactProgram.prefix`), computed once per input and
    in large blocks before the walks: for every sample of ``x`` (index pairs), or for
    every row of ``x1`` and ``x2``. When those values would not fit in memory, they are
    computed per chunk instead."""

    def __init__(self, model: nn.Module, opts: _Options, segments: Any, device, dtype):
        from .walk.exact import compile_model

        self.model, self.opts, self.segments = model, opts, segments
        self.device, self.dtype = device, dtype
        self.prog = compile_model(model, opts.layers)
        self.cache: list[list[Tensor]] | None = None  # per table of inputs (x, or x1 and x2)
        # paired segments shared by worker processes: the values of each range are computed only when
        # the range is sent (block size here; 0 before start), while the workers walk the ranges before it
        self.deferred: int | None = None
        self.k = 0  # the first paired segment of the next chunk (chunks come in order; see seek)
        # small MLPs measured without walks (walk.exact.mlp): the plan, and the first layer's values in float64 with
        # the inputs' norms, per table like ``cache``
        self.fast: MLPSummarizer | None = None
        self.fast_cache: list[tuple[Tensor, Tensor]] | None = None
        self.model64: nn.Module | None = None  # a float64 copy, for the segments the kernels leave

    def cache_bytes(self) -> int:
        tables = [*(self.cache or ()), *(self.fast_cache or ())]
        return sum(t.numel() * t.element_size() for table in tables for t in table)

    def cached(self) -> bool:
        """Whether the values before the first activation are cached (in the model's dtype, or for :attr:`fast`)."""
        return self.cache is not None or self.fast_cache is not None

    def start(self, sample: Tensor) -> None:
        tables = [self.segments.x] if self.segments.x is not None else list(self.segments.pair or ())
        n = sum(t.shape[0] for t in tables)
        x = tables[0]
        per_input = sum(p[0].numel() * p.element_size() for p in self.prog.prefix(sample))
        if per_input * n > max(_PREFIX_CACHE_BYTES, 4 * x[0].numel() * x.element_size() * n):
            return
        block = max(self.opts.batch_size or 1, (_PREFIX_BLOCK_BYTES // max(x[0].numel() * x.element_size(), 1)))
        # paired segments shared by worker processes: the values of each range computed as the range is sent (see
        # _RangeTask.part), while the workers walk the ranges before it; but the first layer of the MLP kernels is
        # computed here at once, on every thread (the workers then only measure)
        if self.deferred is not None and self.segments.pair is not None and self.fast is None:
            self.deferred = block
            return
        # (in shared memory where worker processes will receive the ranges' values: see _RangeTask.part)
        self.fast_cache = self._fast_blocks(
            tables, block, shared=self.deferred is not None and self.segments.pair is not None
        )
        if self.fast_cache is None:
            self.fast = None
            self.cache = [self._prefix_blocks(t, block) for t in tables]

    def _fast_blocks(
        self, tables: list[Tensor], block: int, *, shared: bool = False
    ) -> list[tuple[Tensor, Tensor]] | None:
        fast = self.fast
        if fast is None or tables[0][0].numel() != fast.first.in_features:  # (the first Linear takes the input)
            return None
        return [fast.prefix(x, block, shared=shared) for x in tables]

    def fast_measures(self, a: Tensor, c: Tensor) -> tuple[dict[str, Tensor], int] | None:
        """The measures of the chunk's segments ``a``, ``c`` in float64 (``None`` where :attr:`fast` does not
        serve): by the kernels of :mod:`.walk.exact.mlp` where they can decide every step, by the float64 walk of
        the model from the same values elsewhere; and how many segments that walk took."""
        from .walk.exact import exact_walks

        fast = self.fast
        if fast is None:
            return None
        seg = self.segments
        if self.fast_cache is None:  # computed per chunk, from the inputs (when the walker has them)
            if seg.x is None and seg.pair is None:
                return None
            x1, x2 = seg.inputs(a, c)
            if x1[0].numel() != fast.first.in_features:  # (the first Linear takes the input)
                return None
            (z1, n1), (z2, n2) = fast.prefix(x1), fast.prefix(x2)
        elif seg.by_index:
            z, e = self.fast_cache[0]
            a, c = a.to(z.device), c.to(z.device)
            z1, z2, n1, n2 = z.index_select(0, a), z.index_select(0, c), e.index_select(0, a), e.index_select(0, c)
        else:
            rows = slice(self.k, self.k + a.shape[0])
            self.k += a.shape[0]
            (z1, n1), (z2, n2) = ((z[rows], e[rows]) for z, e in self.fast_cache)
        ends = (z1, z2, n1, n2)
        block = max(1, _FAST_VALUES // max(fast.widths))
        parts = [fast(*(t[k : k + block] for t in ends)) for k in range(0, a.shape[0], block)]
        got = {k: torch.cat([p[0][k] for p in parts]) for k in parts[0][0]} if len(parts) > 1 else parts[0][0]
        clean = torch.cat([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
        bad = (~clean).nonzero().squeeze(1)
        if bad.numel():
            opts = self.opts
            if self.model64 is None:
                self.model64 = _float64_copy(self.model)
            p1, p2 = z1.index_select(0, bad), z2.index_select(0, bad)
            wb = exact_walks(
                self.model64, p1, p2, prefix=([p1], [p2]), layers=opts.layers, tie_tol=opts.tie_tol, tol=opts.tol
            )
            walked = summarize(wb)
            for k, v in got.items():
                v[bad] = walked[k].to(v.dtype)
        return got, int(bad.numel())

    def seek(self, start: int) -> None:
        """The next chunk starts at position ``start``."""
        self.k = start

    def _prefix_blocks(self, x: Tensor, block: int) -> list[Tensor]:
        parts = [
            self.prog.prefix(x[k : k + block].to(device=self.device, dtype=self.dtype))
            for k in range(0, x.shape[0], block)
        ]
        return [torch.cat([p[m] for p in parts]) if len(parts) > 1 else parts[0][m] for m in range(len(parts[0]))]

    def __call__(self, a: Tensor, c: Tensor) -> WalkBatch:
        """The walks of the chunk's segments ``a``, ``c`` (index pairs, or rows of ``x1`` and ``x2``)."""
        from .walk.exact import exact_walks

        opts = self.opts
        seg = self.segments
        if self.cache is None:  # the walk computes the prefix, in float64 too where it walks pieces again
            x1, x2 = (x.to(device=self.device, dtype=self.dtype) for x in self.segments.inputs(a, c))
            return exact_walks(self.model, x1, x2, layers=opts.layers, tie_tol=opts.tie_tol, tol=opts.tol)
        # from the cached values; pieces walked again in float64 start from the end inputs, gathered only
        # for them (a worker process that received the cached values alone has no inputs: there they
        # start from the cached values, widened)
        ends: Callable[[Tensor], tuple[Tensor, Tensor]] | None
        if seg.by_index:
            xs = seg.x
            ends = None if xs is None else (lambda path, a=a, c=c, xs=xs: (xs[a[path]], xs[c[path]]))
            a, c = a.to(self.device), c.to(self.device)
            p1 = [t.index_select(0, a) for t in self.cache[0]]
            p2 = [t.index_select(0, c) for t in self.cache[0]]
        else:
            ends = None if seg.pair is None else (lambda path, a=a, c=c: (a[path], c[path]))
            rows = slice(self.k, self.k + a.shape[0])
            self.k += a.shape[0]
            p1 = [t[rows] for t in self.cache[0]]
            p2 = [t[rows] for t in self.cache[1]]
        return exact_walks(
            self.model, p1[0], p2[0], prefix=(p1, p2), ends=ends, layers=opts.layers, tie_tol=opts.tie_tol, tol=opts.tol
        )
