"""The exact walk's entry point (docs/method.md, 'The exact walk'): :func:`exact_walks`.

Compiles the model, evaluates the affine prefix at the segments' ends, and walks the paths in
sub-batches sized to a byte target (concurrently, one torch thread each, on multi-threaded
CPUs), walking again in float64 the paths whose max pooling the model's dtype cannot resolve.
"""

from __future__ import annotations

import copy
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor, nn

from ...patterns import LayerSelector
from .. import WalkBatch, _kernels, resolve_tol
from .assemble import ExactWalkBatch, _assemble
from .handlers import _run
from .maxpool import _Unresolved
from .program import ExactProgram, compile_model
from .settings import WalkSettings, _dtype_tol
from .state import _State


def exact_walks(
    model: nn.Module,
    x1: Tensor,
    x2: Tensor,
    *,
    layers: LayerSelector = None,
    tie_tol: float = 0.0,
    tol: float | None = None,
    prefix: tuple[list[Tensor], list[Tensor]] | None = None,
) -> WalkBatch:
    """Exact walks of the segments ``x1[i] -> x2[i]`` (inputs ``(batch, *input_shape)``).

    ``model`` must be piecewise linear (see the module docstring) and in eval mode;
    the computation runs on the model's device and dtype, without gradients.
    ``tie_tol``: bit = pre-activation > ``tie_tol``; ``tol``: crossings closer than
    ``tol`` in t are one breakpoint (``None``: 1e-9, or 1e-6 when ``tie_tol > 0``,
    see :func:`spacefold.walk.resolve_tol`; at least one unit of round-off of the
    model's dtype, 1.2e-7 in float32), a breakpoint gathering the crossings within
    ``tol`` after the first of them. ``prefix``: the values of
    :meth:`ExactProgram.prefix` at the two ends, if already computed (then ``x1`` and
    ``x2`` only give the batch size). Returns a :class:`WalkBatch` whose walks are the
    reference walks Γ* of docs/method.md, 'Walks: three samplers'.

    Non-finite values inside the network (inputs or weights that overflow the dtype) raise
    :class:`spacefold.errors.InputError`. Segments whose max pooling cannot be resolved in
    the model's dtype are walked again in float64 (counted in ``n_float64`` of the result).
    """
    if x1.shape[0] == 0:
        raise ValueError("x1 and x2 must hold at least one segment, got batch size 0")
    prog = compile_model(model, layers)
    tol = resolve_tol("exact", tol, tie_tol)
    with torch.no_grad():
        out = _exact(prog, x1, x2, tie_tol, tol, prefix)
    if getattr(out, "n_unresolved", 0):
        warnings.warn(f"max pooling could not be resolved in float64 on {out.n_unresolved} of {len(out)} segments "
                      "(near ties of a window's arg-max); their walks take the arg-max up to float64 round-off",
                      RuntimeWarning, stacklevel=2)
    return out


# Largest tensor of breakpoint values aimed at per sub-batch. Small tensors are reused by
# the memory allocator and stay in cache; large ones are mapped afresh and page-faulted
# on every layer, which costs more than the products themselves on wide networks (glibc
# serves blocks up to 32 MB from its heap once it has seen them freed; 16 MB measured a few
# percent faster than 8 MB and much faster than 64 MB on the 784-256x6-10 benchmark).
_TARGET_BYTES = 16 << 20


# With the compiled kernels a layer is a few calls, not hundreds of operations: smaller
# sub-batches keep the breakpoint values in the cache between the product and the kernel
# (2 MB measured 6-10% faster than 16 MB on the 784-256x6-10 benchmark, 1 MB no faster).
_TARGET_BYTES_COMPILED = 2 << 20


# On GPUs memory is pooled by the caching allocator and each operation has a launch
# cost, so sub-batches there are as large as memory comfortably allows.
_TARGET_BYTES_ACCELERATOR = 512 << 20


def _exact(prog: ExactProgram, x1: Tensor, x2: Tensor, tie_tol: float, tol: float, prefix=None) -> WalkBatch:
    b = x1.shape[0]
    if prefix is None:
        p1, p2 = prog.prefix(x1), prog.prefix(x2)
    else:
        p1, p2 = prefix
    cpu = x1.device.type == "cpu"
    if not cpu:
        target = _TARGET_BYTES_ACCELERATOR
    elif prog.kernel_friendly and _kernels.available():
        target = _TARGET_BYTES_COMPILED
    else:
        target = _TARGET_BYTES

    dtype = p1[0].dtype if p1 else x1.dtype
    tol = max(tol, _dtype_tol(dtype))
    is64 = dtype == torch.float64  # nothing finer to walk again in
    fine: list[ExactProgram] = []
    lock = threading.Lock()

    def walk(pr: ExactProgram, ends: list[tuple[Tensor, Tensor]], n: int, accept: bool) -> tuple[ExactWalkBatch, float]:
        state = _State(n, x1.device)
        env = pr._consts()
        for node, (a, c) in zip(pr._live_at_prefix(), ends):
            env[node] = torch.cat([a, c])
        with torch.no_grad():  # grad mode is per thread
            records = _run(pr, env, state, pr.prefix_end, WalkSettings(tie_tol, tol, accept))
            part = _assemble(state, records, state.n_paths)
        object.__setattr__(part, "n_unresolved", state.n_unresolved)
        return part, max(state.peak_bytes / state.n_paths, 1.0)

    def in_float64(k: int, n: int) -> tuple[ExactWalkBatch, float]:
        """The paths k .. k + n - 1 walked again in float64 (max pooling unresolved in the model's dtype)."""
        with lock:
            if not fine:
                model = prog.model
                if model is None:
                    raise RuntimeError("the model of this ExactProgram no longer exists")
                fine.append(ExactProgram(copy.deepcopy(model).to(torch.float64), prog.layers))
        pr = fine[0]
        if prefix is None:
            ends = list(zip(pr.prefix(x1[k : k + n].to(torch.float64)), pr.prefix(x2[k : k + n].to(torch.float64))))
        else:
            ends = [(a[k : k + n].to(torch.float64), c[k : k + n].to(torch.float64)) for a, c in zip(p1, p2)]
        part, per_path = walk(pr, ends, n, True)
        object.__setattr__(part, "n_float64", n)
        return part, per_path

    def sub_batch(k: int, n: int) -> tuple[ExactWalkBatch, float]:
        try:
            return walk(prog, [(a[k : k + n], c[k : k + n]) for a, c in zip(p1, p2)], n, is64)
        except _Unresolved as err:
            # walk the others again in the model's dtype and these in float64, in order
            bad = set(err.paths)
            parts, i = [], 0
            while i < n:
                j = i
                while j < n and ((j in bad) == (i in bad)):
                    j += 1
                parts.append(in_float64(k + i, j - i) if i in bad else sub_batch(k + i, j - i))
                i = j
            return ExactWalkBatch.concat([p for p, _ in parts]), max(pp for _, pp in parts)

    def next_step(per_path: float) -> int:
        # as many paths as fit the target size of the largest tensor
        return int(min(max(target / per_path, 16), 1 << 20))

    n0 = min(b, 64)  # the first sub-batches measure the size per path
    n_threads = torch.get_num_threads()
    if cpu and n_threads > 1 and b > n0:
        # On CPUs only the matrix products use torch's threads; the rest of the walk is many
        # small operations. Independent sub-batches on one thread each keep every core busy
        # (torch releases the GIL inside its operations).
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(min(n_threads, -(-b // n0))) as pool:
                starts = list(range(0, min(b, n0 * n_threads), n0))
                first = list(pool.map(lambda k0: sub_batch(k0, min(n0, b - k0)), starts))
                parts = [p for p, _ in first]
                step = next_step(max(pp for _, pp in first))
                k = min(b, starts[-1] + n0)
                if k < b:
                    # equal sub-batches, as many as a multiple of the threads: no thread is left
                    # alone with the last one
                    rounds = -(-(b - k) // (step * n_threads))
                    step = -(-(b - k) // (rounds * n_threads))
                parts += [p for p, _ in pool.map(lambda k0: sub_batch(k0, min(step, b - k0)), range(k, b, step))]
        finally:
            torch.set_num_threads(n_threads)
    else:
        part, per_path = sub_batch(0, n0)
        parts, k, step = [part], n0, next_step(per_path)
        while k < b:
            part, per_path = sub_batch(k, min(step, b - k))
            parts.append(part)
            k += part.n_walks
            step = next_step(per_path)
    return parts[0] if len(parts) == 1 else ExactWalkBatch.concat(parts)
