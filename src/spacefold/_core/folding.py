"""Public entry points that join the stages patterns → walk → measure: ``walk``,
``walk_batch``, ``folding``, ``folding_batch``, ``folding_pairs``.

Every entry point runs one pipeline (:mod:`spacefold._core.pipeline`): the walk settings are checked once
(:class:`WalkOptions`); the model is checked and probed with one input (a clear error
when the inputs do not fit it); the segments are walked ``batch_size`` at a time, so that
only one chunk's walks are alive (by default the chunk size follows from a memory
budget, :data:`DEFAULT_MEMORY` bytes, or ``SPACEFOLD_MEMORY`` in the environment: see
:func:`chunk_size`); each chunk's walks are measured once
(:func:`spacefold._core.measure.summarize`) and the chunks' measures concatenated. With
``method="exact"`` everything before the first activation is affine in the input, so
along a segment it is the interpolation of its values at the two ends (docs/method.md,
'The exact walk'): it is evaluated once per input (once per sample of ``x`` for
``folding_pairs``), never at the points of a walk. ``folding_pairs`` and ``global_folding`` spread contiguous
ranges of their segments over worker processes and, under ``torchrun``, over ranks
(:mod:`spacefold._core.parallel`); every path's numbers are those of a single process.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import InputError, InputTypeError
from . import measure, parallel
from .patterns import LayerSelector, check_inputs
from .pipeline import (  # noqa: F401 - also importable from here
    DEFAULT_STEPS,
    DEFAULT_TOL,
    MAX_CHUNK,
    Folding,
    FoldingBatch,
    WalkOptions,
    _fold,
    _Segments,
    _Slices,
    check_walk_size,
    chunk_size,
    segment_bytes,
)
from .walk import DEFAULT_MEMORY, METHODS, Walk, WalkBatch, memory_budget, resolve_tol  # noqa: F401

__all__ = [
    "walk",
    "walk_batch",
    "folding",
    "folding_batch",
    "folding_pairs",
    "Folding",
    "FoldingBatch",
    "WalkOptions",
    "resolve_tol",
]


# --------------------------------------------------------------------------- input checks


def _check_pair(x1, x2, batched: bool, finite: bool = True) -> None:
    check_inputs(x1 if batched else _unsqueeze(x1, "x1"), "x1", finite)
    check_inputs(x2 if batched else _unsqueeze(x2, "x2"), "x2", finite)
    if x1.shape != x2.shape:
        raise InputError(f"x1 and x2 must have the same shape, got x1 {tuple(x1.shape)} and x2 {tuple(x2.shape)}")
    if batched and x1.dim() < 2:
        raise InputError(
            f"x1 and x2 must have shape (batch, *input_shape), got {tuple(x1.shape)}; "
            "for a single segment use spacefold.folding"
        )


def _unsqueeze(x, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise InputTypeError(
            f"{name} must be a torch.Tensor (one input, without batch dimension), got {type(x).__name__}"
        )
    if x.dim() == 0:
        raise InputError(
            f"{name} must be one input of shape input_shape (without batch dimension), got a 0-d tensor; "
            "a single feature is a tensor of shape (1,)"
        )
    return x.unsqueeze(0)


def _check_single(model: nn.Module, x1: Tensor) -> None:
    """Refuse a batch given where one input is expected: when the first module applied to
    the input is an ``nn.Linear`` (or ``ConvNd``) and ``x1`` has more dimensions than one
    input of it, the module would treat the extra leading dimension as a batch."""
    if not isinstance(model, nn.Module):
        return
    first = _first_layer(model)
    if first is None:
        return
    if isinstance(first, nn.Linear):
        dims, what = 1, f"(in_features={first.in_features},)"
    else:
        conv_dims: dict[type[nn.Module], int] = {nn.Conv1d: 2, nn.Conv2d: 3, nn.Conv3d: 4}
        dims = conv_dims[type(first)]
        what = f"{dims} dimensions (channels, ...)"
    if x1.dim() > dims:
        raise InputError(
            f"x1 must be one input (the model's first layer {type(first).__name__} takes {what}), got shape "
            f"{tuple(x1.shape)}, a batch of {x1.shape[0]}; for many segments use spacefold.folding_batch"
        )


def _first_layer(model: nn.Module) -> nn.Module | None:
    """The first module of a (nested) ``nn.Sequential`` when it is ``Linear`` or ``Conv1d/2d/3d``."""
    m = model
    while isinstance(m, nn.Sequential) and len(m) > 0:
        m = m[0]
    return m if type(m) in (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d) else None


def _index(idx, name: str) -> Tensor:
    try:
        t = torch.as_tensor(idx)
    except (TypeError, ValueError, RuntimeError):
        raise InputTypeError(
            f"{name} must be integer indices (a sequence or an int tensor), got {type(idx).__name__}"
        ) from None
    if t.numel() > 0 and (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool):
        raise InputTypeError(f"{name} must be integer indices (a sequence or an int tensor), got dtype {t.dtype}")
    return t.to(torch.int64).reshape(-1)


def _check_samples(x, name: str = "x") -> None:
    check_inputs(x, name)
    if x.dim() < 2:
        raise InputError(f"{name} must have shape (n_samples, *input_shape), got {tuple(x.shape)}")


# --------------------------------------------------------------------------- entry points


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
    batch_size: int | None = None,
    dtype: torch.dtype | None = None,
) -> WalkBatch:
    """Walks of the segments ``x1[i] -> x2[i]``, inputs ``(batch, *input_shape)``; no measure."""
    opts = WalkOptions.check(
        method=method,
        steps=steps,
        tol=tol,
        tie_tol=tie_tol,
        layers=layers,
        n0=n0,
        stop=stop,
        batch_size=batch_size,
        dtype=dtype,
    )
    _check_pair(x1, x2, batched=True)
    return _fold(model, _Segments.paired(x1, x2), opts, measures=False)


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
    batch_size: int | None = None,
    dtype: torch.dtype | None = None,
    per_layer: bool = False,
    progress: bool = False,
    workers: int | None = None,
) -> FoldingBatch:
    """The folding of the segments ``x[i[k]] -> x[j[k]]`` between rows of one set of samples.

    The pairs are streamed in chunks of ``batch_size``: the end points of all pairs are never gathered
    at once, so millions of pairs fit in memory. With ``method="exact"`` everything before the first
    activation is evaluated once per sample of ``x``, not once per pair.

    Args:
        model (nn.Module): any PyTorch model; its activation modules are hooked and its activation
            functions (``F.relu``, ``F.gelu``, ``torch.tanh``, ...) intercepted.
        x (Tensor): the samples, ``(n_samples, *input_shape)``.
        i (Tensor): the rows where the segments start, integer indices ``(n_pairs,)`` (a tensor or a
            sequence), each in ``[0, n_samples − 1]``.
        j (Tensor): the rows where they end, of the same length.
        method (str): ``"exact"`` (every region, for piecewise-linear networks), ``"bisect"`` (adaptive,
            any activation), ``"uniform"`` (the papers' grid of ``steps + 1`` points) or ``"certified"``
            (smooth and piecewise-smooth networks, every bit change proved); docs/method.md, "Walk methods".
        steps (int): for ``"uniform"``: ``steps + 1`` equispaced points on the segment.
        tol (float | None): for ``"bisect"``: transitions are located within ``tol`` in t (default 1e-6);
            for ``"certified"`` likewise, with 0 < ``tol`` < 1 (default 1e-6); for ``"exact"``: crossings
            closer than ``tol`` in t count as simultaneous (default 1e-9, or 1e-6 when ``tie_tol > 0``).
            ``None`` picks the method's default.
        tie_tol (float): a neuron is on where its pre-activation exceeds ``tie_tol`` (>= 0).
        layers (str | type | list | None): which activations give bits (a module name, a call site
            ``"<module>:<function>"``, an activation type, or a list of them); ``None``: all.
        n0 (int | None): for ``"bisect"``: the start grid (default 2 when every pattern class is convex,
            ReLU-type activations without max pooling or normalisation over features; 1025 otherwise,
            and nothing between two of its samples is seen).
        stop (str): for ``"bisect"``: the stop rule, ``"strict"`` or ``"hamming1"``.
        batch_size (int | None): segments per chunk; the walks of one chunk are held at a time (``None``:
            from the memory budget, ``SPACEFOLD_MEMORY`` bytes in the environment).
        dtype (torch.dtype | None): evaluate a copy of the model in this dtype (e.g. ``torch.float64``).
        per_layer (bool): also χ of each layer's bits alone (``result.per_layer``).
        progress (bool): show a progress bar (paths/s and the time left; with tqdm installed).
        workers (int | None): worker processes sharing the segments in contiguous ranges (``None``: one per
            core for large batches, ``1``: in this process); the numbers are the same for any count.

    Returns:
        FoldingBatch: one entry per pair, ``chi``, ``r1``, ``r2``, ``n_regions``, ``max_profile`` and
        ``complete`` tensors ``(n_pairs,)`` (``per_layer`` when asked for).

    Raises:
        InputTypeError: an argument of the wrong type (``model`` not an ``nn.Module``, ``x`` not a tensor,
            ``i`` or ``j`` not integer indices).
        InputError: ``x`` not of shape ``(n_samples, *input_shape)`` or holding NaN or inf; ``i`` and ``j``
            of different lengths, empty, or outside the rows of ``x``; an unknown ``method`` or ``stop``, a
            negative ``tie_tol``, or inputs the model cannot take (the message says which).
        NotPiecewiseLinearError: ``method="exact"`` on a model that is not piecewise linear (use
            ``"bisect"`` or ``"certified"``).

    Examples:
        >>> import torch, spacefold as sf
        >>> net = sf.mlp("8x8", in_features=2, n_classes=2, seed=0)
        >>> x = torch.randn(6, 2, generator=torch.Generator().manual_seed(0))
        >>> i, j = torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5])
        >>> b = sf.folding_pairs(net, x, i, j, workers=1)
        >>> torch.equal(b.chi, sf.folding_batch(net, x[i], x[j], workers=1).chi)
        True
    """
    opts = WalkOptions.check(
        method=method,
        steps=steps,
        tol=tol,
        tie_tol=tie_tol,
        layers=layers,
        n0=n0,
        stop=stop,
        batch_size=batch_size,
        dtype=dtype,
    )
    parallel.resolve_workers(workers)  # checked before any work
    _check_samples(x)
    i, j = _index(i, "i"), _index(j, "j")
    if i.shape != j.shape:
        raise InputError(f"i and j must have the same length, got {i.numel()} and {j.numel()}")
    if i.numel() == 0:
        raise InputError("i and j must name at least one pair, got none")
    n = x.shape[0]
    for name, idx in (("i", i), ("j", j)):
        if (idx < 0).any() or (idx >= n).any():
            raise InputError(f"{name} must index rows of x in [0, {n - 1}], got values outside")
    return _fold(
        model,
        _Segments.indexed(x, _Slices(i, j), i.numel()),
        opts,
        per_layer=per_layer,
        progress=progress,
        workers=parallel.resolve_workers(workers, i.numel()),
        auto_workers=workers is None,
    )


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
    batch_size: int | None = None,
    dtype: torch.dtype | None = None,
    return_walks: bool = False,
    per_layer: bool = False,
    progress: bool = False,
    workers: int | None = None,
) -> FoldingBatch:
    """The folding of the segments ``x1[i] -> x2[i]``: χ, r1, r2 and region counts of each.

    The segments are walked ``batch_size`` at a time, so only one chunk's walks are alive; with
    ``method="exact"`` everything before the first activation is evaluated once per input.

    Args:
        model (nn.Module): any PyTorch model; its activation modules are hooked and its activation
            functions (``F.relu``, ``F.gelu``, ``torch.tanh``, ...) intercepted.
        x1 (Tensor): the starts, ``(batch, *input_shape)``.
        x2 (Tensor): the ends, of the same shape.
        method (str): ``"exact"`` (every region, for piecewise-linear networks), ``"bisect"`` (adaptive,
            any activation), ``"uniform"`` (the papers' grid of ``steps + 1`` points) or ``"certified"``
            (smooth and piecewise-smooth networks, every bit change proved); docs/method.md, "Walk methods".
        steps (int): for ``"uniform"``: ``steps + 1`` equispaced points on the segment.
        tol (float | None): for ``"bisect"``: transitions are located within ``tol`` in t (default 1e-6);
            for ``"certified"`` likewise, with 0 < ``tol`` < 1 (default 1e-6); for ``"exact"``: crossings
            closer than ``tol`` in t count as simultaneous (default 1e-9, or 1e-6 when ``tie_tol > 0``).
            ``None`` picks the method's default.
        tie_tol (float): a neuron is on where its pre-activation exceeds ``tie_tol`` (>= 0).
        layers (str | type | list | None): which activations give bits (a module name, a call site
            ``"<module>:<function>"``, an activation type, or a list of them); ``None``: all.
        n0 (int | None): for ``"bisect"``: the start grid (default 2 when every pattern class is convex,
            ReLU-type activations without max pooling or normalisation over features; 1025 otherwise,
            and nothing between two of its samples is seen).
        stop (str): for ``"bisect"``: the stop rule, ``"strict"`` or ``"hamming1"``.
        batch_size (int | None): segments per chunk; the walks of one chunk are held at a time (``None``:
            from the memory budget, ``SPACEFOLD_MEMORY`` bytes in the environment).
        dtype (torch.dtype | None): evaluate a copy of the model in this dtype (e.g. ``torch.float64``).
        return_walks (bool): keep every walk (``result.walks``; memory grows with the batch). The walks
            stay in this process.
        per_layer (bool): also χ of each layer's bits alone (``result.per_layer``).
        progress (bool): show a progress bar (paths/s and the time left; with tqdm installed).
        workers (int | None): worker processes sharing the segments in contiguous ranges (``None``: one per
            core for large batches, ``1``: in this process); the numbers are the same for any count.

    Returns:
        FoldingBatch: ``chi``, ``r1``, ``r2``, ``n_regions``, ``max_profile`` and ``complete``, tensors
        ``(batch,)``; ``walks`` and ``per_layer`` when asked for.

    Raises:
        InputTypeError: an argument of the wrong type (``model`` not an ``nn.Module``, inputs not tensors).
        InputError: inputs of different or wrong shapes, NaN or inf in them, an unknown ``method`` or
            ``stop``, a negative ``tie_tol``, or inputs the model cannot take (the message says which).
        NotPiecewiseLinearError: ``method="exact"`` on a model that is not piecewise linear (use
            ``"bisect"`` or ``"certified"``).

    Examples:
        >>> import torch, spacefold as sf
        >>> net = sf.mlp("8x8", in_features=2, n_classes=2, seed=0)
        >>> g = torch.Generator().manual_seed(0)
        >>> x1, x2 = torch.randn(5, 2, generator=g), torch.randn(5, 2, generator=g)
        >>> b = sf.folding_batch(net, x1, x2, workers=1)
        >>> b.chi.shape, b.chi.dtype, len(b)
        (torch.Size([5]), torch.float64, 5)
        >>> b.chi[2].item() == sf.folding(net, x1[2], x2[2]).chi  # one segment alone: the same number
        True
    """
    opts = WalkOptions.check(
        method=method,
        steps=steps,
        tol=tol,
        tie_tol=tie_tol,
        layers=layers,
        n0=n0,
        stop=stop,
        batch_size=batch_size,
        dtype=dtype,
    )
    parallel.resolve_workers(workers)  # checked before any work
    _check_pair(x1, x2, batched=True, finite=False)  # (NaN and inf: in _fold, from the first layer's values if it can)
    return _fold(
        model,
        _Segments.paired(x1, x2, checked=False),
        opts,
        return_walks=return_walks,
        per_layer=per_layer,
        progress=progress,
        workers=parallel.resolve_workers(workers, x1.shape[0]),
        auto_workers=workers is None,
    )


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
    """The walk of the segment ``x1 -> x2``: the activation patterns of the regions it crosses, in order.

    Args:
        model (nn.Module): any PyTorch model; its activation modules are hooked and its activation
            functions (``F.relu``, ``F.gelu``, ``torch.tanh``, ...) intercepted.
        x1 (Tensor): the start, one input of shape ``input_shape`` (no batch dimension).
        x2 (Tensor): the end, of the same shape.
        method (str): ``"exact"`` (every region, for piecewise-linear networks), ``"bisect"`` (adaptive,
            any activation), ``"uniform"`` (the papers' grid of ``steps + 1`` points) or ``"certified"``
            (smooth and piecewise-smooth networks, every bit change proved); docs/method.md, "Walk methods".
        steps (int): for ``"uniform"``: ``steps + 1`` equispaced points on the segment.
        tol (float | None): for ``"bisect"``: transitions are located within ``tol`` in t (default 1e-6);
            for ``"certified"`` likewise, with 0 < ``tol`` < 1 (default 1e-6); for ``"exact"``: crossings
            closer than ``tol`` in t count as simultaneous (default 1e-9, or 1e-6 when ``tie_tol > 0``).
            ``None`` picks the method's default.
        tie_tol (float): a neuron is on where its pre-activation exceeds ``tie_tol`` (>= 0).
        layers (str | type | list | None): which activations give bits (a module name, a call site
            ``"<module>:<function>"``, an activation type, or a list of them); ``None``: all.
        n0 (int | None): for ``"bisect"``: the start grid (default 2 when every pattern class is convex,
            ReLU-type activations without max pooling or normalisation over features; 1025 otherwise,
            and nothing between two of its samples is seen).
        stop (str): for ``"bisect"``: the stop rule, ``"strict"`` or ``"hamming1"``.
        dtype (torch.dtype | None): evaluate a copy of the model in this dtype (e.g. ``torch.float64``).

    Returns:
        Walk: ``patterns``, bool ``(n_regions, n_neurons)`` with consecutive patterns distinct, and
        ``t``, float64 ``(n_regions,)``: where on [0, 1] each region is entered.

    Raises:
        InputTypeError: an argument of the wrong type (``model`` not an ``nn.Module``, inputs not tensors).
        InputError: inputs of different or wrong shapes, NaN or inf in them, an unknown ``method`` or
            ``stop``, a negative ``tie_tol``, or inputs the model cannot take (the message says which).
        NotPiecewiseLinearError: ``method="exact"`` on a model that is not piecewise linear (use
            ``"bisect"`` or ``"certified"``).

    Examples:
        >>> import torch, spacefold as sf
        >>> net = sf.cantornet(depth=3)  # float64, exact rational weights
        >>> x1 = torch.tensor([0.0, 0.75], dtype=torch.float64)
        >>> x2 = torch.tensor([1.0, 0.75], dtype=torch.float64)
        >>> w = sf.walk(net, x1, x2, tie_tol=net.tie_tol)
        >>> w.patterns.shape, w.t.shape
        (torch.Size([23, 16]), torch.Size([23]))
        >>> sf.chi(w.patterns)
        0.805...
    """
    opts = WalkOptions.check(
        method=method, steps=steps, tol=tol, tie_tol=tie_tol, layers=layers, n0=n0, stop=stop, batch_size=1, dtype=dtype
    )
    _check_pair(x1, x2, batched=False)
    _check_single(model, x1)
    wb = _fold(model, _Segments.paired(x1.unsqueeze(0), x2.unsqueeze(0)), opts, measures=False)
    return wb[0]  # type: ignore[index]


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
    """The folding of the segment ``x1 -> x2``: χ, r1, r2, the number of regions and the prefix profile.

    For many segments use ``folding_batch``, which walks them in batches.

    Args:
        model (nn.Module): any PyTorch model; its activation modules are hooked and its activation
            functions (``F.relu``, ``F.gelu``, ``torch.tanh``, ...) intercepted.
        x1 (Tensor): the start, one input of shape ``input_shape`` (no batch dimension).
        x2 (Tensor): the end, of the same shape.
        method (str): ``"exact"`` (every region, for piecewise-linear networks), ``"bisect"`` (adaptive,
            any activation), ``"uniform"`` (the papers' grid of ``steps + 1`` points) or ``"certified"``
            (smooth and piecewise-smooth networks, every bit change proved); docs/method.md, "Walk methods".
        steps (int): for ``"uniform"``: ``steps + 1`` equispaced points on the segment.
        tol (float | None): for ``"bisect"``: transitions are located within ``tol`` in t (default 1e-6);
            for ``"certified"`` likewise, with 0 < ``tol`` < 1 (default 1e-6); for ``"exact"``: crossings
            closer than ``tol`` in t count as simultaneous (default 1e-9, or 1e-6 when ``tie_tol > 0``).
            ``None`` picks the method's default.
        tie_tol (float): a neuron is on where its pre-activation exceeds ``tie_tol`` (>= 0).
        layers (str | type | list | None): which activations give bits (a module name, a call site
            ``"<module>:<function>"``, an activation type, or a list of them); ``None``: all.
        n0 (int | None): for ``"bisect"``: the start grid (default 2 when every pattern class is convex,
            ReLU-type activations without max pooling or normalisation over features; 1025 otherwise,
            and nothing between two of its samples is seen).
        stop (str): for ``"bisect"``: the stop rule, ``"strict"`` or ``"hamming1"``.
        dtype (torch.dtype | None): evaluate a copy of the model in this dtype (e.g. ``torch.float64``).

    Returns:
        Folding: ``chi``, ``r1``, ``r2``, ``n_regions``, ``profile`` (χ of every prefix, float64
        ``(n_regions,)``), ``max_profile`` and the ``walk`` itself.

    Raises:
        InputTypeError: an argument of the wrong type (``model`` not an ``nn.Module``, inputs not tensors).
        InputError: inputs of different or wrong shapes, NaN or inf in them, an unknown ``method`` or
            ``stop``, a negative ``tie_tol``, or inputs the model cannot take (the message says which).
        NotPiecewiseLinearError: ``method="exact"`` on a model that is not piecewise linear (use
            ``"bisect"`` or ``"certified"``).

    Examples:
        >>> import torch, spacefold as sf
        >>> net = sf.cantornet(depth=3)  # float64, exact rational weights
        >>> x1 = torch.tensor([0.0, 0.75], dtype=torch.float64)
        >>> x2 = torch.tensor([1.0, 0.75], dtype=torch.float64)
        >>> f = sf.folding(net, x1, x2, tie_tol=net.tie_tol)  # the exact walk: every region
        >>> f.r1, f.r2, f.n_regions, round(f.chi, 4)
        (7, 36, 23, 0.8056)
        >>> g = sf.folding(net, x1, x2, method="uniform", steps=10, tie_tol=net.tie_tol)  # the papers' grid
        >>> g.r1, g.r2, g.chi
        (6, 24, 0.75)
    """
    w = walk(
        model,
        x1,
        x2,
        method=method,
        steps=steps,
        tol=tol,
        tie_tol=tie_tol,
        layers=layers,
        n0=n0,
        stop=stop,
        dtype=dtype,
    )
    run_r1, run_r2 = measure.prefix_ranges(w.patterns)
    profile = measure.chi_from_ranges(run_r1, run_r2)  # χ of every prefix; the last is χ of the walk
    return Folding(
        chi=float(profile[-1]),
        r1=int(run_r1[-1]),
        r2=int(run_r2[-1]),
        n_regions=w.n_regions,
        profile=profile,
        max_profile=float(profile.max()),
        walk=w,
    )
