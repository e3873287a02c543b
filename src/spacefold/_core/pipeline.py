"""The one pipeline behind every entry point, and the results it returns.

The walk settings are checked once (:class:`WalkOptions`); the model is checked and probed with one
input; the segments are walked ``batch_size`` at a time so that only one chunk's walks are alive (by
default the chunk size follows from the memory budget: :func:`chunk_size`); each chunk's walks are
measured once and the chunks' measures concatenated (:func:`_fold`). Contiguous ranges of segments
go to worker processes and, under ``torchrun``, to ranks (:mod:`spacefold._core.parallel`). The entry
points that call it are in :mod:`spacefold._core.folding`.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, overload

import torch
from torch import Tensor, nn

from .._util import check_choice, check_int, check_size, release_freed_memory
from ..errors import InputError, MissingExtraError
from . import measure, parallel
from .exact_walker import _ExactWalker
from .patterns import (
    LayerSelector,
    PatternLayout,
    PatternRecorder,
    check_model,
    check_nonnegative,
    eval_mode,
    find_activations,
    model_device_dtype,
)
from .segments import _Segments, _Slices
from .walk import METHODS, Walk, WalkBatch, _kernels, check_certified_tol, memory_budget, points_per_pass, resolve_tol
from .walk.bisect import NONCONVEX_N0, STOP_RULES, bisect_walks, default_n0
from .walk.uniform import uniform_walks

if TYPE_CHECKING:
    import pandas


DEFAULT_STEPS = 100

DEFAULT_TOL = None  # the method's own default (spacefold._core.walk.METHOD_TOL)

MAX_CHUNK = 1 << 17  # segments per chunk at most


@dataclass(frozen=True)
class Folding:
    """The folding of one segment, as ``spacefold.folding`` returns it.

    ``n_regions`` counts the regions of the walk, end points included: a segment that starts or ends
    exactly on a boundary counts a region of zero length there (the papers' grid includes t = 0 and
    t = 1), so it is then not the number of linear pieces along the segment; ``n_pieces``
    (``walk.n_pieces``) counts the regions of positive length.

    Attributes:
        chi (float): χ = 1 − r1/r2 of the walk (0 when r2 = 0).
        r1 (int): the largest Hamming distance from the first pattern.
        r2 (int): the total Hamming distance travelled.
        n_regions (int): the regions of the walk.
        profile (Tensor): float64 ``(n_regions,)``, χ of every prefix of the walk (one value per region;
            ``walk.grid_index`` maps grid points to regions for ``method="uniform"``).
        max_profile (float): the largest value of ``profile``.
        walk (Walk): the walk itself (``walk.patterns``, ``walk.t``).

    Examples:
        >>> import torch, spacefold as sf
        >>> net = sf.cantornet(depth=1)
        >>> f = sf.folding(net, torch.tensor([0.0, 0.75], dtype=torch.float64),
        ...                torch.tensor([1.0, 0.75], dtype=torch.float64), tie_tol=net.tie_tol)
        >>> f.chi == 1 - f.r1 / f.r2, f.profile[-1].item() == f.chi, f.complete
        (True, True, True)
    """

    chi: float
    r1: int
    r2: int
    n_regions: int
    profile: Tensor
    max_profile: float
    walk: Walk

    @property
    def patterns(self) -> Tensor:
        """The walk's patterns, bool ``(n_regions, n_neurons)`` (``walk.patterns``)."""
        return self.walk.patterns

    @property
    def complete(self) -> bool:
        """Whether the walk provably holds every change of every bit (see ``WalkBatch.completeness``)."""
        return self.walk.complete

    @property
    def n_pieces(self) -> int:
        """The regions of positive length (see ``spacefold._core.walk.Walk.n_pieces``)."""
        return self.walk.n_pieces


@dataclass(frozen=True)
class FoldingBatch:
    """The folding of many segments, as ``spacefold.folding_batch`` and
    ``spacefold.folding_pairs`` return it; one entry per segment in every tensor.

    ``n_regions`` counts a region of zero length where a segment starts or ends exactly on a boundary
    (see ``Folding``); with ``return_walks=True``, ``walks.n_pieces`` counts the regions of
    positive length.

    Attributes:
        chi (Tensor): float64 ``(batch,)``, χ of every segment.
        r1 (Tensor): int64 ``(batch,)``, the largest Hamming distance from the first pattern.
        r2 (Tensor): int64 ``(batch,)``, the total Hamming distance travelled.
        n_regions (Tensor): int64 ``(batch,)``, the regions of every walk.
        max_profile (Tensor): float64 ``(batch,)``, the largest χ of a prefix of every walk.
        method (str): the walk method.
        layout (PatternLayout | None): where each layer's bits sit in a pattern.
        walks (WalkBatch | None): every walk, back to back (``walks[i]`` is a ``Walk``); only with
            ``return_walks=True``.
        per_layer (dict[str, Tensor] | None): layer name -> χ ``(batch,)`` of that layer's bits alone; only
            with ``per_layer=True``.
        n_float64 (int): exact walk: segments walked again in float64 where the model's dtype could not resolve
            max pooling (an arg-max tie below its round-off) or the zero rule at a segment's ends.
        n_unresolved (int): those of them that float64 did not resolve either (their arg-max is decided up
            to float64 round-off; a warning says so).
        n_refined (int): exact walk: sub-segments walked again in float64 around crossings the model's
            dtype cannot tell apart (docs/method.md, "The exact walk"). All three counts are 0 for the
            other methods. Small MLPs are measured in float64 without walks (docs/method.md, "Small MLPs
            measured without walks"): there ``n_float64`` counts the segments walked layer by layer.
        complete (Tensor | None): bool ``(batch,)``, whether each walk provably holds every change of
            every bit: True for ``exact``, True for ``certified`` unless the path ran out of its interval
            budget, False (not guaranteed) for ``bisect`` and ``uniform``.

    Examples:
        >>> import torch, spacefold as sf
        >>> net = sf.mlp("8x8", in_features=2, n_classes=2, seed=0)
        >>> g = torch.Generator().manual_seed(0)
        >>> b = sf.folding_batch(net, torch.randn(4, 2, generator=g), torch.randn(4, 2, generator=g),
        ...                      return_walks=True, workers=1)
        >>> len(b), len(b.walks), bool(b.complete.all())
        (4, 4, True)
        >>> b.chi.shape, b.r1.dtype
        (torch.Size([4]), torch.int64)
        >>> list(b.to_pandas().columns)
        ['chi', 'r1', 'r2', 'n_regions', 'max_profile']
    """

    chi: Tensor
    r1: Tensor
    r2: Tensor
    n_regions: Tensor
    max_profile: Tensor
    method: str
    layout: PatternLayout | None = None
    walks: WalkBatch | None = None
    per_layer: dict[str, Tensor] | None = None
    n_float64: int = 0
    n_unresolved: int = 0
    n_refined: int = 0
    complete: Tensor | None = None  # bool (batch,): every change of every bit found (exact, certified)

    def __len__(self) -> int:
        return int(self.chi.numel())

    def to_pandas(self) -> pandas.DataFrame:
        """One row per segment: chi, r1, r2, n_regions, max_profile (and ``chi_<layer>`` with
        ``per_layer=True``) as a pandas DataFrame (pandas is optional: ``pip install pandas``)."""
        try:
            import pandas as pd
        except ImportError:
            raise MissingExtraError("to_pandas needs pandas: pip install 'spacefold[pandas]'") from None
        cols = {k: getattr(self, k).numpy() for k in ("chi", "r1", "r2", "n_regions", "max_profile")}
        cols.update({f"chi_{k}": v.numpy() for k, v in (self.per_layer or {}).items()})
        return pd.DataFrame(cols)


@dataclass(frozen=True)
class WalkOptions:
    """The walk settings of every entry point, checked once (:meth:`check`).

    ``tol`` is resolved to the method's default when ``None`` was given.
    """

    method: str = "exact"
    steps: int = DEFAULT_STEPS
    tol: float | None = DEFAULT_TOL
    tie_tol: float = 0.0
    layers: LayerSelector = None
    n0: int | None = None
    stop: str = "strict"
    batch_size: int | None = None
    dtype: torch.dtype | None = None

    @staticmethod
    def check(*, method, steps, tol, tie_tol, layers, n0, stop, batch_size, dtype) -> WalkOptions:
        check_choice(method, "method", METHODS)
        check_choice(stop, "stop", STOP_RULES)
        check_int(steps, "steps", 1)
        if batch_size is not None:
            check_int(batch_size, "batch_size", 1)
        if n0 is not None:
            check_int(n0, "n0", 2)
        if dtype is not None and dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
            raise InputError(f"dtype must be a floating torch dtype such as torch.float64, got {dtype!r}")
        tie_tol = check_nonnegative(tie_tol, "tie_tol")
        tol = check_nonnegative(resolve_tol(method, tol, tie_tol), "tol")
        if method == "certified":
            tol = check_certified_tol(tol)
        return WalkOptions(method, steps, tol, tie_tol, layers, n0, stop, batch_size, dtype)


class _SampledWalker:
    """``uniform`` and ``bisect``: forward passes under activation hooks."""

    def __init__(
        self,
        model: nn.Module,
        opts: WalkOptions,
        recorder: PatternRecorder,
        segments: _Segments,
        device,
        dtype,
        keep_walks: bool,
        max_points: int = 65536,
    ):
        self.model, self.opts, self.segments = model, opts, segments
        self.max_points = max_points  # points of many segments in one forward pass
        self.grid_index = keep_walks  # the map from grid points to regions only for walks returned
        self.device, self.dtype = device, dtype
        self.n0 = opts.n0 or default_n0(model)
        self.recorder = recorder
        self.columns: Tensor | None = None
        self.selected: PatternRecorder | None = None
        if opts.method == "bisect" and opts.layers is not None:
            self.recorder, self.selected = _all_layers(model, recorder)

    def start(self, sample: Tensor) -> None:
        if self.selected is not None:  # the selected layers' columns in the walk of every layer
            try:
                full = _probe(self.model, self.recorder, sample)
            except InputError:  # an activation the subset leaves out: without a rule, or without a row per input
                self.recorder, self.selected = self.selected, None
                return
            names = set(_probe(self.model, self.selected, sample).names)
            self.columns = torch.cat(
                [torch.arange(lay.start, lay.stop) for lay in full.layers if lay.name in names]
            ).to(self.device)

    def __call__(self, a: Tensor, c: Tensor) -> WalkBatch:
        a, c = self.segments.inputs(a, c)
        a = a.to(device=self.device, dtype=self.dtype)
        c = c.to(device=self.device, dtype=self.dtype)
        opts = self.opts
        with self.recorder:
            if opts.method == "uniform":
                wb = uniform_walks(
                    self.model,
                    self.recorder,
                    a,
                    c,
                    steps=opts.steps,
                    tie_tol=opts.tie_tol,
                    grid_index=self.grid_index,
                    max_points=self.max_points,
                )
            else:
                assert opts.tol is not None  # resolved by WalkOptions.check
                wb = bisect_walks(
                    self.model,
                    self.recorder,
                    a,
                    c,
                    tol=opts.tol,
                    tie_tol=opts.tie_tol,
                    n0=self.n0,
                    stop=opts.stop,
                    max_points=self.max_points,
                    memory=memory_budget() // 2,
                )
        return wb if self.columns is None else wb.select_columns(self.columns)


def _probe(model: nn.Module, recorder: PatternRecorder, a: Tensor, holder: str = "x1 and x2 hold") -> PatternLayout:
    """One forward pass on one segment end: a clear error if the inputs do not fit, and the layout."""
    recorder.clear()
    called: list[nn.Module] = []
    hooks = [
        m.register_forward_pre_hook(lambda mod, args: called.append(mod))
        for m in model.modules()
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))
    ]
    try:
        with recorder:
            model(a[:1])
    except (RuntimeError, ValueError, IndexError) as err:
        if isinstance(err, InputError):
            raise
        where = ""
        if called and isinstance(called[-1], nn.Linear):
            where = f" (its layer {called[-1]} takes {called[-1].in_features} features)"
        elif called:
            where = f" (its layer {called[-1]} takes {called[-1].in_channels} channels)"
        raise InputError(
            f"{holder} inputs of shape {tuple(a.shape[1:])}, which do not fit the model "
            f"{type(model).__name__}{where}: {str(err).splitlines()[0]}"
        ) from err
    finally:
        for h in hooks:
            h.remove()
    return recorder.layout()


def _all_layers(model: nn.Module, recorder: PatternRecorder) -> tuple[PatternRecorder, PatternRecorder | None]:
    """For bisection on a subset of layers: a recorder of every activation, and the
    recorder of the selected ones (whose blocks are picked from the full walk by name).
    Skipping a sub-segment whose ends share a pattern is exact only for the full pattern
    (a class of a subset is a union of regions), so the walk is made on all layers and
    then restricted. Falls back to the subset when some activation of the model has no
    binarisation rule."""
    try:
        full = PatternRecorder(model, None)
    except (TypeError, ValueError):
        return recorder, None
    return full, recorder


def _prepare_model(model: nn.Module, dtype: torch.dtype | None) -> nn.Module:
    check_model(model)
    if dtype is None or model_device_dtype(model)[1] == dtype:
        return model
    return copy.deepcopy(model).to(dtype)


def segment_bytes(opts: WalkOptions, n_inputs: int, n_neurons: int, itemsize: int) -> int:
    """An estimate of one segment's memory: its two end inputs and, for the sampled methods,
    the inputs and activations of its points (``steps + 1`` for ``"uniform"``, about
    ``4 n0`` for ``"bisect"``); for ``"exact"`` (whose walk bounds its own working
    memory) about 32 regions of activations."""
    inputs = n_inputs * itemsize
    acts = max(n_neurons, 1) * itemsize
    if opts.method == "uniform":
        return (opts.steps + 1) * (inputs + 2 * acts)
    if opts.method == "bisect":
        return 4 * (opts.n0 or NONCONVEX_N0) * (inputs + 2 * acts)
    return 2 * inputs + 32 * acts


def chunk_size(opts: WalkOptions, layout: PatternLayout, sample: Tensor, memory: int | None = None) -> int:
    """Segments walked at once when ``batch_size`` is not given: the memory budget
    (:func:`memory_budget`) over :func:`segment_bytes`, at most :data:`MAX_CHUNK`; at least 1
    for the sampled methods (whose chunk's walks are all in memory at once: a large network's
    segments may need many megabytes each), at least 256 for ``"exact"`` (whose walk holds
    itself to the budget)."""
    per = segment_bytes(opts, sample[0].numel(), layout.n_neurons, sample.element_size())
    least = 256 if opts.method == "exact" else 1
    return int(min(MAX_CHUNK, max(least, (memory or memory_budget()) // per)))


def check_walk_size(
    opts: WalkOptions, n_segments: int, n_inputs: int, n_neurons: int, itemsize: int, *, batch_given: bool
) -> None:
    """Refuse ``steps`` (``n0``, ``batch_size``) whose walks of ``min(batch_size, n_segments)``
    segments at once would not fit in this machine's memory (:func:`spacefold._util.check_size`)."""
    if opts.method == "exact":  # the exact walk holds itself to the memory budget
        return
    per = segment_bytes(opts, n_inputs, n_neurons, itemsize)
    name, value = ("steps", opts.steps) if opts.method == "uniform" else ("n0", opts.n0 or 64)
    points = f"{opts.steps + 1} points" if opts.method == "uniform" else f"about {4 * (opts.n0 or 64)} points"
    check_size(name, value, per, f"the {points} of one segment and their activations")
    k = max(1, min(opts.batch_size or 1, n_segments))
    if batch_given:
        assert opts.batch_size is not None  # given
        name, value = "batch_size", opts.batch_size
    check_size(name, value, k * per, f"the {points} of each of {k} segments walked at once and their activations")


_NO_PAIRS = (torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64))


@dataclasses.dataclass
class _Part:
    """The exact walker's values of one range of paired segments (see :meth:`_RangeTask.part`)."""

    cache: list[list[Tensor]] | None
    fast_cache: list[tuple[Tensor, Tensor]] | None
    offset: int
    pairs: tuple[Tensor, Tensor] | None = None  # index pairs: the range's, the values of every sample in the base
    shared: bool = False  # fast_cache holds views of shared memory (sent as handles, not copied)


class _RangeTask:
    """Walk and measure the segments at positions ``[start, stop)``: ``task(start, stop,
    tick)`` -> per-path tensors (the fields of :class:`spacefold._core.measure.WalkSummary`,
    ``"layer:<name>"`` per layer). Picklable: the walker is built again where it runs."""

    def __init__(
        self,
        model: nn.Module,
        segments: _Segments,
        opts: WalkOptions,
        layout: PatternLayout,
        *,
        per_layer: bool,
        measures: bool,
        keep: bool,
    ):
        self.model, self.segments, self.opts, self.layout = model, segments, opts, layout
        self.per_layer, self.measures, self.keep = per_layer, measures, keep
        self.walker: _ExactWalker | _SampledWalker | None = None
        self.walks: list[WalkBatch] = []
        self.cache: list[list[Tensor]] | None = None  # the exact walker's values, received by a worker
        self.fast_cache: list[tuple[Tensor, Tensor]] | None = None  # and its values for walk.exact.mlp
        self.offset = 0  # the position of the first row of a paired cache

    def __getstate__(self) -> dict:
        """What a worker process gets: the exact walker's values before the first activation
        instead of the inputs when they are smaller (a few numbers per MNIST image instead of
        784), so that the worker neither receives the inputs nor computes them again."""
        state = {**self.__dict__, "walker": None, "walks": []}
        w = self.walker
        if isinstance(w, _ExactWalker) and w.cached() and w.cache_bytes() <= self.segments.input_bytes():
            state.update(segments=self.segments.without_inputs(), cache=w.cache, fast_cache=w.fast_cache, offset=0)
        return state

    def part(self, start: int, stop: int) -> _Part | None:
        """What the positions ``[start, stop)`` need beyond :meth:`base`, when the task can travel without it:
        paired segments with the exact walker's values send only their rows; index pairs send their pairs, where the
        pairs' tables are larger than the range's (the values of every sample go with the base). ``None``: the whole
        task travels with every range (a worker unpickles it once per call)."""
        w = self.walker
        if isinstance(w, _ExactWalker) and w.deferred and not w.cached() and not self.segments.by_index:
            pair = self.segments.pair
            assert pair is not None
            with torch.no_grad():  # a thread of the worker pool may run this: grad mode is per thread
                fast = w._fast_blocks([x[start:stop] for x in pair], w.deferred)
                cache = None if fast is not None else [w._prefix_blocks(x[start:stop], w.deferred) for x in pair]
            return _Part(
                cache=None if cache is None else [[v.clone() if v._base is not None else v for v in t] for t in cache],
                fast_cache=fast,
                offset=start,
            )
        state = self.__getstate__()
        if state["cache"] is None and state["fast_cache"] is None:
            return None
        if self.segments.by_index:
            # the values of every sample go with the base, the range's pairs with the range, where the pairs are
            # tables larger than the range's (a plan of whole class pairs is a few index sets: it travels whole)
            if (self.segments.index_bytes() or 0) <= 16 * (stop - start):
                return None
            return _Part(cache=None, fast_cache=None, offset=start, pairs=self.segments.range_pairs(start, stop))
        # copies (a view would pickle its whole storage; the float64 values by numpy, see _Segments.range_pairs), but
        # views of shared memory: those travel as handles
        rows = slice(start - self.offset, stop - self.offset)
        fast = state.get("fast_cache")
        shared = fast is not None and all(v.is_shared() for t in fast for v in t)

        def take(v: Tensor) -> Tensor:
            return v[rows] if shared else torch.from_numpy(v[rows].numpy().copy())

        return _Part(
            cache=None if state["cache"] is None else [[v[rows].clone() for v in table] for table in state["cache"]],
            fast_cache=None if fast is None else [(take(z), take(e)) for z, e in fast],
            offset=start,
            shared=shared,
        )

    def base(self) -> _RangeTask:
        """What the ranges of :meth:`part` share: the task without its inputs and values (a worker builds its
        walker from it once per call, then takes the values of each range it runs)."""
        t = _RangeTask.__new__(_RangeTask)
        if self.segments.by_index:  # the values of every sample, without the pairs (each range brings its own)
            state = self.__getstate__()
            t.__dict__.update(state, segments=state["segments"].without_inputs(_Slices(*_NO_PAIRS)))
            return t
        t.__dict__.update(
            self.__dict__,
            walker=None,
            walks=[],
            segments=self.segments.without_inputs(),
            cache=None,
            fast_cache=None,
            offset=0,
        )
        return t

    def take(self, part: _Part | None) -> None:
        """In a worker, before running a range of :meth:`part`: that range's values (the walker, once built, keeps
        its plan, its kernels' working arrays and its float64 copy of the model); ``None`` after it: none."""
        if part is None:
            if not self.segments.by_index:  # (index pairs keep the values of every sample: the base's)
                self.cache = self.fast_cache = None
                if isinstance(self.walker, _ExactWalker):
                    self.walker.cache = self.walker.fast_cache = None
            return
        if part.pairs is not None:
            self.segments = self.segments.without_inputs(_Slices(*part.pairs, part.offset))
            if self.walker is not None:
                self.walker.segments = self.segments
            return
        self.cache, self.fast_cache, self.offset = part.cache, part.fast_cache, part.offset
        w = self.walker
        if isinstance(w, _ExactWalker):
            w.cache, w.fast_cache = part.cache, part.fast_cache
            if part.fast_cache is None:
                w.fast = None

    def make_walker(
        self, recorder: PatternRecorder | None = None, *, defer: bool = False
    ) -> _ExactWalker | _SampledWalker:
        model, opts = self.model, self.opts
        device, dtype = model_device_dtype(model)
        sample = self.segments.sample
        points = points_per_pass(sample[0].numel(), self.layout.n_neurons, sample.element_size())
        if opts.method == "certified":
            from .walk.certified import FoldingWalker

            return FoldingWalker(
                model,
                opts,
                self.segments,
                device,
                dtype,  # type: ignore[return-value]
                n_inputs=sample[0].numel(),
                n_neurons=self.layout.n_neurons,
            )
        walker: _ExactWalker | _SampledWalker
        if opts.method == "exact":
            walker = _ExactWalker(model, opts, self.segments, device, dtype)
            if self.measures and not self.keep and not self.per_layer:
                from .walk.exact.mlp import mlp_summarizer

                assert opts.tol is not None  # resolved by WalkOptions.check
                walker.fast = mlp_summarizer(walker.prog, opts.tie_tol, opts.tol)
            if self.cache is not None or self.fast_cache is not None:  # received with the task
                walker.cache = self.cache
                walker.fast_cache = self.fast_cache
                if self.fast_cache is None:
                    walker.fast = None
                return walker
            walker.deferred = 0 if defer else None
        else:
            recorder = recorder or PatternRecorder(model, opts.layers)
            walker = _SampledWalker(model, opts, recorder, self.segments, device, dtype, self.keep, points)
        walker.start(self.segments.sample.to(device=device, dtype=dtype))
        return walker

    def __call__(self, start: int, stop: int, tick) -> dict[str, Tensor]:
        with eval_mode(self.model), torch.no_grad():
            if self.walker is None:
                self.walker = self.make_walker()
            walker, opts = self.walker, self.opts
            if isinstance(walker, _ExactWalker):
                walker.seek(start - self.offset)
            sums: list[measure.WalkSummary] = []
            complete: list[Tensor] = []
            layers: dict[str, list[Tensor]] = {}
            # exact walks redone in float64, those of them unresolved, and sub-segments refined in float64
            redone = torch.zeros(3, dtype=torch.int64)
            assert opts.batch_size is not None  # set by _fold before any task runs
            for a, c in self.segments.chunks(start, stop, opts.batch_size):
                if isinstance(walker, _ExactWalker):
                    fast = walker.fast_measures(a, c)
                    if fast is not None:  # measured in float64 without walks (small MLPs)
                        sums.append(measure.WalkSummary(**fast[0]))
                        redone[0] += fast[1]
                        complete.append(torch.ones(a.shape[0], dtype=torch.bool))
                        if tick is not None:
                            tick(a.shape[0])
                        continue
                wb = walker(a, c)
                redone[0] += getattr(wb, "n_float64", 0)
                redone[1] += getattr(wb, "n_unresolved", 0)
                redone[2] += getattr(wb, "n_refined", 0)
                if self.keep:
                    self.walks.append(wb)
                if self.measures:
                    sums.append(measure.summarize(wb))
                    complete.append(
                        wb.complete if wb.complete is not None else torch.full((len(sums[-1]),), opts.method == "exact")
                    )
                    if self.per_layer:
                        for lay in self.layout.layers:
                            layers.setdefault(lay.name, []).append(measure.summarize(wb, lay.slice).chi)
                if tick is not None:
                    tick(len(wb))
                del wb
                if not isinstance(walker, _ExactWalker):  # (the exact walk holds itself to the budget)
                    release_freed_memory()  # the chunk's walks, before the next chunk's
        out = {k: getattr(measure.WalkSummary.concat(sums), k) for k in measure.WalkSummary.FIELDS} if sums else {}
        out.update({f"layer:{name}": torch.cat(v) for name, v in layers.items()})
        if sums:
            out.update(
                n_float64=redone[:1], n_unresolved=redone[1:2], n_refined=redone[2:], complete=torch.cat(complete)
            )
        return out


@overload
def _fold(
    model: nn.Module,
    segments: _Segments,
    opts: WalkOptions,
    *,
    measures: Literal[True] = ...,
    return_walks: bool = ...,
    per_layer: bool = ...,
    progress: bool = ...,
    workers: int = ...,
    auto_workers: bool = ...,
    distributed: bool = ...,
) -> FoldingBatch: ...


@overload
def _fold(
    model: nn.Module,
    segments: _Segments,
    opts: WalkOptions,
    *,
    measures: Literal[False],
    return_walks: bool = ...,
    per_layer: bool = ...,
    progress: bool = ...,
    workers: int = ...,
    auto_workers: bool = ...,
    distributed: bool = ...,
) -> WalkBatch: ...


def _fold(
    model: nn.Module,
    segments: _Segments,
    opts: WalkOptions,
    *,
    measures: bool = True,
    return_walks: bool = False,
    per_layer: bool = False,
    progress: bool = False,
    workers: int = 1,
    auto_workers: bool = False,
    distributed: bool = False,
) -> FoldingBatch | WalkBatch:
    """Walk and measure every segment; see the module docstring.

    With ``measures=False`` returns the walks (a :class:`WalkBatch`) and measures nothing.
    ``workers`` worker processes share the segments (only when measuring without keeping
    the walks; ``auto_workers``: ``workers`` was chosen, not asked for, see
    :func:`spacefold._core.parallel.map_ranges`); with ``distributed`` and under ``torchrun`` the ranks do
    (:mod:`spacefold._core.parallel`).
    """
    if segments.n == 0:
        raise InputError("x1 and x2 must hold at least one segment, got batch size 0")
    model = _prepare_model(model, opts.dtype)
    find_activations(model, opts.layers)  # a clear error for a bad selection, before any work
    device, dtype = model_device_dtype(model)
    recorder = PatternRecorder(model, opts.layers)
    keep = return_walks or not measures
    with eval_mode(model), torch.no_grad():
        sample = segments.sample.to(device=device, dtype=dtype)
        layout = _probe(model, recorder, sample, "x1 and x2 hold" if segments.x is None else "x holds")
        if opts.method == "bisect" and opts.n0 is None:
            opts = dataclasses.replace(opts, n0=default_n0(model))
        batch_given = opts.batch_size is not None
        if not batch_given:
            opts = dataclasses.replace(opts, batch_size=chunk_size(opts, layout, sample))
        check_walk_size(
            opts, segments.n, sample[0].numel(), layout.n_neurons, sample.element_size(), batch_given=batch_given
        )
        if opts.method == "exact" and device.type == "cpu" and dtype in (torch.float32, torch.float64):
            # compiled here, once, before any worker process starts (they then load them from the cache)
            _kernels.prepare(str(dtype).removeprefix("torch."), announce=parallel.say if progress else None)
        task = _RangeTask(model, segments, opts, layout, per_layer=per_layer, measures=measures, keep=keep)
        # paired segments shared by worker processes: the values before the first activation are computed
        # range by range as the ranges are sent, while the workers walk the earlier ones (but at once, on every
        # thread, for the MLP kernels: see _ExactWalker.start)
        task.walker = task.make_walker(recorder, defer=workers > 1 and not keep)
        # inputs not yet checked for NaN and inf: the norms the MLP kernels' first layer computed prove them finite
        fast = getattr(task.walker, "fast_cache", None)
        segments.check_finite(None if fast is None else [nrm for _, nrm in fast])

        rank, size = parallel.world(device) if distributed else (0, 1)
        lo, hi = parallel.shard(segments.n, rank, size)
        bar = parallel.Progress(
            hi - lo, f"folding ({opts.method})" + (f", rank 0 of {size}" if size > 1 else ""), progress
        )
        try:
            if keep or hi == lo:
                parts = [task(lo, hi, bar.update)] if hi > lo else []
            else:
                parts = parallel.map_ranges(
                    task,
                    lo,
                    hi,
                    workers,
                    min_size=256,
                    first=min(256, hi - lo),
                    progress=bar,
                    device=device,
                    auto=auto_workers,
                )
        finally:
            bar.close()
    if size > 1:
        parts = [p for rank_parts in parallel.all_gather(parts) for p in rank_parts]
    walks = task.walks
    if not measures:
        return WalkBatch.concat(walks)
    cat = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    n_float64 = int(cat.pop("n_float64").sum()) if "n_float64" in cat else 0
    n_unresolved = int(cat.pop("n_unresolved").sum()) if "n_unresolved" in cat else 0
    n_refined = int(cat.pop("n_refined").sum()) if "n_refined" in cat else 0
    return FoldingBatch(
        chi=cat["chi"],
        r1=cat["r1"],
        r2=cat["r2"],
        n_regions=cat["n_regions"],
        max_profile=cat["max_profile"],
        method=opts.method,
        layout=layout,
        walks=WalkBatch.concat(walks) if return_walks else None,
        per_layer={lay.name: cat[f"layer:{lay.name}"] for lay in layout.layers} if per_layer else None,
        n_float64=n_float64,
        n_unresolved=n_unresolved,
        n_refined=n_refined,
        complete=cat.get("complete"),
    )
