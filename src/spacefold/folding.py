"""Public entry points that join the stages: ``walk``, ``folding``, ``folding_batch``."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from . import measure
from ._util import check_choice, check_int, progress
from .patterns import (
    LayerSelector,
    PatternLayout,
    PatternRecorder,
    check_inputs,
    check_nonnegative,
    eval_mode,
    find_activations,
    model_device_dtype,
)
from .walk import METHODS, Walk, WalkBatch, resolve_tol
from .walk.bisect import STOP_RULES, bisect_walks, default_n0
from .walk.uniform import uniform_walks

__all__ = ["walk", "walk_batch", "folding", "folding_batch", "folding_pairs", "Folding", "FoldingBatch"]

DEFAULT_STEPS = 100
DEFAULT_TOL = None  # the method's own default (spacefold.walk.METHOD_TOL)


@dataclass(frozen=True)
class Folding:
    """Folding of one segment. ``profile`` is χ of every prefix of the walk
    (one value per region; ``walk.grid_index`` maps grid points to regions for
    ``method="uniform"``)."""

    chi: float
    r1: int
    r2: int
    n_regions: int
    profile: Tensor
    max_profile: float
    walk: Walk

    @property
    def patterns(self) -> Tensor:
        return self.walk.patterns


@dataclass(frozen=True)
class FoldingBatch:
    """Folding of many segments; every field is a tensor ``(batch,)``.

    ``walks`` is set only with ``return_walks=True``; ``per_layer`` (layer name ->
    χ ``(batch,)``) only with ``per_layer=True``.
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

    def __len__(self) -> int:
        return int(self.chi.numel())

    def to_pandas(self):
        """One row per segment: chi, r1, r2, n_regions, max_profile (and ``chi_<layer>`` with
        ``per_layer=True``) as a pandas DataFrame (pandas is optional: ``pip install pandas``)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("to_pandas needs pandas: pip install 'spacefold[pandas]'") from None
        cols = {k: getattr(self, k).numpy() for k in ("chi", "r1", "r2", "n_regions", "max_profile")}
        cols.update({f"chi_{k}": v.numpy() for k, v in (self.per_layer or {}).items()})
        return pd.DataFrame(cols)


def _check_pair(x1, x2, batched: bool) -> None:
    check_inputs(x1 if batched else _unsqueeze(x1, "x1"), "x1")
    check_inputs(x2 if batched else _unsqueeze(x2, "x2"), "x2")
    if x1.shape != x2.shape:
        raise ValueError(f"x1 and x2 must have the same shape, got x1 {tuple(x1.shape)} and x2 {tuple(x2.shape)}")
    if batched and x1.dim() < 2:
        raise ValueError(
            f"x1 and x2 must have shape (batch, *input_shape), got {tuple(x1.shape)}; "
            "for a single segment use spacefold.folding"
        )


def _unsqueeze(x, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (one input, without batch dimension), got {type(x).__name__}")
    if x.dim() == 0:
        raise ValueError(
            f"{name} must be one input of shape input_shape (without batch dimension), got a 0-d tensor; "
            "a single feature is a tensor of shape (1,)"
        )
    return x.unsqueeze(0)


def _prepare_model(model: nn.Module, dtype: torch.dtype | None) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if dtype is None:
        return model
    if dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise ValueError(f"dtype must be a floating torch dtype such as torch.float64, got {dtype!r}")
    if model_device_dtype(model)[1] == dtype:
        return model
    return copy.deepcopy(model).to(dtype)


def _default_n0(model: nn.Module, layers: LayerSelector) -> int:
    find_activations(model, layers)  # a clear error for a bad selection, before any work
    return default_n0(model)


def _walk_chunk(model, recorder, x1, x2, *, method, steps, tol, tie_tol, n0, stop, layers) -> WalkBatch:
    if method == "uniform":
        return uniform_walks(model, recorder, x1, x2, steps=steps, tie_tol=tie_tol)
    if method == "bisect":
        return bisect_walks(model, recorder, x1, x2, tol=tol, tie_tol=tie_tol, n0=n0, stop=stop)
    from .walk.exact import exact_walks

    return exact_walks(model, x1, x2, layers=layers, tie_tol=tie_tol, tol=tol)


def walk_batch(
    model: nn.Module,
    x1: Tensor,
    x2: Tensor,
    *,
    method: str = "exact",
    steps: int = DEFAULT_STEPS,
    tol: float | None = DEFAULT_TOL,
    tie_tol: float = 0.0,
    layers: LayerSelector = None,
    n0: int | None = None,
    stop: str = "strict",
    batch_size: int = 1024,
    dtype: torch.dtype | None = None,
) -> WalkBatch:
    """Walks of the segments ``x1[i] -> x2[i]``, inputs ``(batch, *input_shape)``."""
    return _run(model, x1, x2, method=method, steps=steps, tol=tol, tie_tol=tie_tol, layers=layers, n0=n0,
                stop=stop, batch_size=batch_size, dtype=dtype, return_walks=True, per_layer=False,
                progress_bar=False).walks  # type: ignore[return-value]


def _check_options(method, stop, steps, batch_size, tol, tie_tol, n0):
    check_choice(method, "method", METHODS)
    check_choice(stop, "stop", STOP_RULES)
    check_int(steps, "steps", 1)
    check_int(batch_size, "batch_size", 1)
    if n0 is not None:
        check_int(n0, "n0", 2)
    tie_tol = check_nonnegative(tie_tol, "tie_tol")
    return check_nonnegative(resolve_tol(method, tol, tie_tol), "tol"), tie_tol


def _run(model, x1, x2, *, batch_size, **kw) -> FoldingBatch:
    check_int(batch_size, "batch_size", 1)
    _check_pair(x1, x2, batched=True)
    b = x1.shape[0]
    if b == 0:
        raise ValueError("x1 and x2 must hold at least one segment, got batch size 0")
    chunks = ((x1[i : i + batch_size], x2[i : i + batch_size]) for i in range(0, b, batch_size))
    return _fold_chunks(model, chunks, n_chunks=-(-b // batch_size), batch_size=batch_size, **kw)


def _probe(model: nn.Module, recorder: PatternRecorder, a: Tensor) -> PatternLayout:
    """One forward pass on one segment end: a clear error if the inputs do not fit, and the layout."""
    recorder.clear()
    try:
        model(a[:1])
    except (RuntimeError, ValueError, IndexError) as err:
        raise ValueError(
            f"x1 and x2 hold inputs of shape {tuple(a.shape[1:])}, which do not fit the model "
            f"{type(model).__name__}: {str(err).splitlines()[0]}"
        ) from err
    return recorder.layout()


def _all_layers(model: nn.Module, recorder: PatternRecorder) -> tuple[PatternRecorder, set[str] | None]:
    """For bisection on a subset of layers: a recorder of every activation, and the
    names of the selected modules. Skipping a sub-segment whose ends share a pattern
    is exact only for the full pattern (a class of a subset is a union of regions),
    so the walk is made on all layers and then restricted. Falls back to the subset
    when some activation of the model has no binarisation rule."""
    try:
        full = PatternRecorder(model, None)
    except (TypeError, ValueError):
        return recorder, None
    return full, {name for name, _ in recorder.modules}


def _fold_chunks(model, chunks, *, n_chunks, method, steps, tol, tie_tol, layers, n0, stop, batch_size, dtype,
                 return_walks, per_layer, progress_bar) -> FoldingBatch:
    """Fold an iterable of ``(x1_chunk, x2_chunk)``; only one chunk's walks are alive at a time."""
    tol, tie_tol = _check_options(method, stop, steps, batch_size, tol, tie_tol, n0)
    model = _prepare_model(model, dtype)
    n0 = n0 or _default_n0(model, layers)
    device, mdtype = model_device_dtype(model)
    recorder = PatternRecorder(model, layers)
    walk_recorder, selected = recorder, None
    if method == "bisect" and layers is not None:
        walk_recorder, selected = _all_layers(model, recorder)
    sums, walks = [], []
    layout = columns = None
    with walk_recorder, eval_mode(model), torch.no_grad():
        for a, c in progress(chunks, total=n_chunks, desc=f"folding ({method})", enabled=progress_bar):
            a = a.to(device=device, dtype=mdtype)
            c = c.to(device=device, dtype=mdtype)
            if layout is None:
                if selected is None:
                    layout = _probe(model, recorder, a)
                else:
                    full = _probe(model, walk_recorder, a)
                    columns = torch.cat([torch.arange(lay.start, lay.stop) for lay in full.layers
                                         if lay.module_name in selected]).to(device)
                    with recorder:
                        layout = _probe(model, recorder, a)
            wb = _walk_chunk(model, walk_recorder, a, c, method=method, steps=steps, tol=tol, tie_tol=tie_tol,
                             n0=n0, stop=stop, layers=layers)
            if columns is not None:
                wb = wb.select_columns(columns)
            s = wb.summary()
            if per_layer:
                s["per_layer"] = {lay.name: wb.summary(lay.slice)["chi"] for lay in layout.layers}
            sums.append(s)
            if return_walks:
                walks.append(wb)
    if not sums:
        raise ValueError("no segment to fold: got zero pairs")
    cat = {k: torch.cat([s[k] for s in sums]) for k in ("r1", "r2", "chi", "max_profile", "n_points")}
    pl = None
    if per_layer:
        pl = {name: torch.cat([s["per_layer"][name] for s in sums]) for name in sums[0]["per_layer"]}
    return FoldingBatch(
        chi=cat["chi"], r1=cat["r1"], r2=cat["r2"], n_regions=cat["n_points"], max_profile=cat["max_profile"],
        method=method, layout=layout, walks=WalkBatch.concat(walks) if return_walks else None, per_layer=pl,
    )


def _index(idx, name: str) -> Tensor:
    try:
        t = torch.as_tensor(idx)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{name} must be integer indices (a sequence or an int tensor), got {type(idx).__name__}") from None
    if t.numel() > 0 and (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool):
        raise TypeError(f"{name} must be integer indices (a sequence or an int tensor), got dtype {t.dtype}")
    return t.to(torch.int64).reshape(-1)


def folding_pairs(
    model: nn.Module,
    x: Tensor,
    i: Tensor,
    j: Tensor,
    *,
    method: str = "exact",
    steps: int = DEFAULT_STEPS,
    tol: float | None = DEFAULT_TOL,
    tie_tol: float = 0.0,
    layers: LayerSelector = None,
    n0: int | None = None,
    stop: str = "strict",
    batch_size: int = 1024,
    dtype: torch.dtype | None = None,
    per_layer: bool = False,
    progress: bool = False,
) -> FoldingBatch:
    """Folding of the segments ``x[i[k]] -> x[j[k]]`` for index tensors ``i``, ``j``.

    Streams the pairs in chunks of ``batch_size``: the endpoint inputs of all pairs
    are never gathered at once, so millions of pairs fit in memory. Other arguments
    as in :func:`folding_batch`.
    """
    check_inputs(x, "x")
    if x.dim() < 2:
        raise ValueError(f"x must have shape (n_samples, *input_shape), got {tuple(x.shape)}")
    i, j = _index(i, "i"), _index(j, "j")
    if i.shape != j.shape:
        raise ValueError(f"i and j must have the same length, got {i.numel()} and {j.numel()}")
    if i.numel() == 0:
        raise ValueError("i and j must name at least one pair, got none")
    n = x.shape[0]
    for name, idx in (("i", i), ("j", j)):
        if (idx < 0).any() or (idx >= n).any():
            raise ValueError(f"{name} must index rows of x in [0, {n - 1}], got values outside")
    check_int(batch_size, "batch_size", 1)
    if method == "exact":
        out = _exact_pairs(model, x, i, j, steps=steps, tol=tol, tie_tol=tie_tol, layers=layers, n0=n0, stop=stop,
                           batch_size=batch_size, dtype=dtype, per_layer=per_layer, progress_bar=progress)
        if out is not None:
            return out
    chunks = ((x[i[k : k + batch_size]], x[j[k : k + batch_size]]) for k in range(0, i.numel(), batch_size))
    return _fold_chunks(model, chunks, n_chunks=-(-i.numel() // batch_size), method=method, steps=steps, tol=tol,
                        tie_tol=tie_tol, layers=layers, n0=n0, stop=stop, batch_size=batch_size, dtype=dtype,
                        return_walks=False, per_layer=per_layer, progress_bar=progress)


_PREFIX_CACHE_BYTES = 2 << 30


def _exact_pairs(model, x, i, j, *, steps, tol, tie_tol, layers, n0, stop, batch_size, dtype, per_layer,
                 progress_bar) -> FoldingBatch | None:
    """``folding_pairs`` for ``method="exact"`` with the first affine layers for free.

    Everything before the first activation is affine in the input, so along a segment
    it is the interpolation of its values at the two ends (FOLDING.md §7.4 (a′) step 1):
    it is evaluated once per input of ``x``, not once per pair. Returns ``None`` (use
    the plain path) when those values would not fit in memory.
    """
    from .patterns import pattern_layout
    from .walk.exact import compile_model, exact_walks

    tol, tie_tol = _check_options("exact", stop, steps, batch_size, tol, tie_tol, n0)
    model = _prepare_model(model, dtype)
    device, mdtype = model_device_dtype(model)
    with eval_mode(model), torch.no_grad():
        prog = compile_model(model, layers)
        probe = prog.prefix(x[:1].to(device=device, dtype=mdtype))
        per_sample = sum(p[0].numel() * p.element_size() for p in probe)
        if per_sample * x.shape[0] > max(_PREFIX_CACHE_BYTES, 4 * x[0].numel() * x.element_size() * x.shape[0]):
            return None
        parts = [prog.prefix(x[k : k + batch_size].to(device=device, dtype=mdtype))
                 for k in range(0, x.shape[0], batch_size)]
        pre = [torch.cat([p[m] for p in parts]) for m in range(len(probe))]
        del parts
        layout = pattern_layout(model, x[:1].to(device=device, dtype=mdtype), layers) if per_layer else None
        i, j = i.to(device), j.to(device)
        sums = []
        n_chunks = -(-i.numel() // batch_size)
        for k in progress(range(0, i.numel(), batch_size), total=n_chunks, desc="folding (exact)",
                          enabled=progress_bar):
            a, c = i[k : k + batch_size], j[k : k + batch_size]
            p1 = [t.index_select(0, a) for t in pre]
            p2 = [t.index_select(0, c) for t in pre]
            wb = exact_walks(model, p1[0], p2[0], layers=layers, tie_tol=tie_tol, tol=tol, prefix=(p1, p2))
            s = wb.summary()
            if per_layer:
                s["per_layer"] = {lay.name: wb.summary(lay.slice)["chi"] for lay in layout.layers}
            sums.append(s)
    cat = {k: torch.cat([s[k] for s in sums]) for k in ("r1", "r2", "chi", "max_profile", "n_points")}
    pl = None
    if per_layer:
        pl = {name: torch.cat([s["per_layer"][name] for s in sums]) for name in sums[0]["per_layer"]}
    return FoldingBatch(chi=cat["chi"], r1=cat["r1"], r2=cat["r2"], n_regions=cat["n_points"],
                        max_profile=cat["max_profile"], method="exact", layout=layout, walks=None, per_layer=pl)


def folding_batch(
    model: nn.Module,
    x1: Tensor,
    x2: Tensor,
    *,
    method: str = "exact",
    steps: int = DEFAULT_STEPS,
    tol: float | None = DEFAULT_TOL,
    tie_tol: float = 0.0,
    layers: LayerSelector = None,
    n0: int | None = None,
    stop: str = "strict",
    batch_size: int = 1024,
    dtype: torch.dtype | None = None,
    return_walks: bool = False,
    per_layer: bool = False,
    progress: bool = False,
) -> FoldingBatch:
    """Folding χ, r1, r2 and region counts of the segments ``x1[i] -> x2[i]``.

    Parameters
    ----------
    model : any ``nn.Module``; its activation modules are hooked (``layers``
        selects a subset by name or type).
    x1, x2 : ``(batch, *input_shape)``, the segment ends.
    method : ``"exact"`` (piecewise-linear networks), ``"bisect"`` or ``"uniform"``.
    steps : for ``"uniform"``: ``steps + 1`` equispaced points.
    tol : for ``"bisect"``: transitions are located within ``tol`` in t (default
        1e-6); for ``"exact"``: crossings closer than ``tol`` in t count as
        simultaneous (default 1e-9, or 1e-6 when ``tie_tol > 0``). ``None`` picks
        the method's default.
    tie_tol : bit = pre-activation > ``tie_tol``.
    n0, stop : ``"bisect"`` start grid (default 2 when every pattern class is
        convex: ReLU-type activations only, no max pooling or normalisation over
        features; 64 otherwise) and stop rule (``"strict"`` or ``"hamming1"``).
    batch_size : segments per chunk; walks of one chunk are held at a time.
    dtype : evaluate a copy of the model in this dtype (e.g. ``torch.float64``).
    return_walks : keep every walk (memory grows with the batch).
    per_layer : also χ of each layer's bits alone.
    """
    return _run(model, x1, x2, method=method, steps=steps, tol=tol, tie_tol=tie_tol, layers=layers, n0=n0,
                stop=stop, batch_size=batch_size, dtype=dtype, return_walks=return_walks, per_layer=per_layer,
                progress_bar=progress)


def walk(
    model: nn.Module,
    x1: Tensor,
    x2: Tensor,
    *,
    method: str = "exact",
    steps: int = DEFAULT_STEPS,
    tol: float | None = DEFAULT_TOL,
    tie_tol: float = 0.0,
    layers: LayerSelector = None,
    n0: int | None = None,
    stop: str = "strict",
    dtype: torch.dtype | None = None,
) -> Walk:
    """The walk of the segment ``x1 -> x2`` (single inputs, no batch dimension).

    ``w.patterns`` is bool ``(n_regions, n_neurons)`` with consecutive patterns
    distinct, ``w.t`` where on [0, 1] each region is entered. Arguments as in
    :func:`folding_batch`.
    """
    _check_pair(x1, x2, batched=False)
    wb = walk_batch(model, x1.unsqueeze(0), x2.unsqueeze(0), method=method, steps=steps, tol=tol, tie_tol=tie_tol,
                    layers=layers, n0=n0, stop=stop, dtype=dtype)
    return wb[0]


def folding(
    model: nn.Module,
    x1: Tensor,
    x2: Tensor,
    *,
    method: str = "exact",
    steps: int = DEFAULT_STEPS,
    tol: float | None = DEFAULT_TOL,
    tie_tol: float = 0.0,
    layers: LayerSelector = None,
    n0: int | None = None,
    stop: str = "strict",
    dtype: torch.dtype | None = None,
) -> Folding:
    """Folding of the segment ``x1 -> x2``: ``chi``, ``r1``, ``r2``, ``n_regions``, ``profile``."""
    w = walk(model, x1, x2, method=method, steps=steps, tol=tol, tie_tol=tie_tol, layers=layers, n0=n0, stop=stop,
             dtype=dtype)
    r1, r2 = measure.ranges(w.patterns)
    profile = measure.chi_profile(w.patterns)
    return Folding(
        chi=measure.chi(w.patterns), r1=r1, r2=r2, n_regions=w.n_regions, profile=profile,
        max_profile=float(profile.max()), walk=w,
    )
