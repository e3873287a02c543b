"""Compiled kernels of the exact walk on CPUs (Numba).

One kernel call replaces the many small tensor operations of one layer of an elementwise
piecewise-linear activation (ReLU, LeakyReLU, PReLU, RReLU in eval mode, Hardtanh, ReLU6:
φ(z) = slope·z + offset on each segment between its kinks, per neuron): sign tests against
every kink and the bit threshold, the search for sign changes along the paths, the split
of the pieces and their links, the bits at the new breakpoints, the flip list, and, when
an ``nn.Linear`` follows, the activation itself. A second one computes the output of that
Linear at the new breakpoints without a matrix product (the product of the old breakpoints
stays with torch's BLAS). A third interpolates the tensors that other layers need at the
new breakpoints (residual and convolutional nets) without gathering the neighbours first.
A fourth gives max pooling and the index of every window's maximum, as torch does, in one pass.
All release the GIL, so sub-batches on several threads run side by side.

The Linear at new breakpoints. On a piece (a, b) split at the new breakpoints g_1 .. g_m
(fractions s_j of the piece), let the crossings c = (neuron n, kink L) be sorted by where
they happen; Δ_c is the change of φ's slope there in the direction of travel. Along the
piece φ(z_n(s)) is affine plus Σ_c Δ_c·(z_n(s) − L)·[s past the crossing], so the
activation at g_j differs from the interpolation of its values at a and b only in the
crossing neurons: by (1 − s_j)·Δ_c·(z_n(a) − L) for a crossing before g_j and by
−s_j·Δ_c·(z_n(b) − L) for one after it. So the Linear's output is

    y(g_j) = (1 − s_j)·(y(a) + Σ_{c before j} Δ_c (z_n(a) − L) W[:, n])
             + s_j·(y(b) − Σ_{c after j} Δ_c (z_n(b) − L) W[:, n]),

two running sums of weight columns along the piece (one column per crossing and
direction), accumulated in float64. A crossing merged into the breakpoint g_j (within
``tol`` of it) enters with its exact value at g_j instead. On the first layer,
whose piece is the whole segment crossed by a hundred neurons or more, that replaces a
product row of ``width²`` multiply-adds per new breakpoint by about ``4·width``.

``SPACEFOLD_NUMBA=0`` turns the kernels off (the walk then uses torch operations only, as
on accelerators and for every other layer type); without Numba they are off as well.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

_STATE: dict = {}


def available(dtype: np.dtype | type | None = None) -> bool:
    """Whether the kernels can be used (for arrays of ``dtype``, when given): Numba imports,
    ``SPACEFOLD_NUMBA`` is not ``0``, and the kernels compiled and passed a small walk.

    A Numba that cannot compile them turns them off for the process, with a warning; the
    exact walk then uses torch operations.
    """
    if os.environ.get("SPACEFOLD_NUMBA", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if "ok" not in _STATE:
        try:
            from . import _jit, _jit_mlp, _jit_zero
        except ImportError:  # no Numba: the walk uses torch operations, as documented
            _STATE["ok"] = False
        except Exception as err:  # noqa: BLE001 - a Numba that fails otherwise must not stop the walk
            _STATE["ok"] = False
            warnings.warn(
                f"spacefold's compiled kernels cannot be loaded here ({type(err).__name__}: {err}); the "
                "exact walk uses torch operations instead",
                RuntimeWarning,
                stacklevel=2,
            )
        else:
            _STATE.update(ok=True, jit=_jit, zero=_jit_zero, mlp=_jit_mlp, ready=set())
    if not _STATE["ok"]:
        return False
    if dtype is not None and np.dtype(dtype) not in _STATE["ready"]:
        try:
            _self_test(np.dtype(dtype))
        except Exception as err:  # noqa: BLE001 - any failure means the kernels are unusable here
            _STATE["ok"] = False
            warnings.warn(
                f"spacefold's compiled kernels are unusable here ({type(err).__name__}: {err}); the "
                "exact walk uses torch operations instead",
                RuntimeWarning,
                stacklevel=2,
            )
            return False
        _STATE["ready"].add(np.dtype(dtype))
    return True


def _self_test(dtype: np.dtype) -> None:
    """Compile (or load from Numba's cache) the kernels for ``dtype`` and check one split.

    One path, one layer of two neurons: z goes from (-1, 2) at t = 0 to (3, -2) at t = 1,
    so neuron 0 crosses at t = 0.25 and neuron 1 at t = 0.5.
    """
    z = np.array([[-1.0, 2.0], [3.0, -2.0]], dtype=dtype)
    t = np.array([0.0, 1.0])
    nxt = np.array([1, 1])
    prv = np.array([0, 0])
    levels, seg_slope, seg_off = np.zeros(1), np.tile([0.0, 1.0], (2, 1)), np.zeros((2, 2))  # ReLU
    t2, nxt2, prv2, g_piece, g_s, start_bits, f_row, f_n, f_bit, plan, snap, pos = split_act(
        z, t, nxt, prv, 1, 0.0, levels, 0, seg_slope, seg_off, True, 1e-12
    )
    if not (
        np.allclose(t2, [0, 1, 0.25, 0.5])
        and nxt2.tolist() == [2, 1, 3, 1]
        and g_piece.tolist() == [0, 0]
        and start_bits.tolist() == [[False, True]]
        and sorted(zip(f_row.tolist(), f_n.tolist(), f_bit.tolist())) == [(2, 0, True), (3, 1, False)]
    ):
        raise RuntimeError("the split kernel gave a wrong result on a known case")
    out = np.zeros((4, 1), dtype=dtype)
    out[:2, 0] = z.sum(1)  # the Linear y = z0 + z1 after the ReLU (z now holds the activation)
    new_rows_linear(
        out,
        2,
        np.ones((2, 1), dtype=dtype),
        levels,
        seg_slope,
        plan,
        g_s,
        z,
        seg_off,
        np.zeros(1),
        1e-12,
    )
    # at t = 0.25, z = (0, 1); at t = 0.5, z = (1, 0): y = 1 at both
    if not np.allclose(out[2:, 0], [1.0, 1.0]):
        raise RuntimeError("the new-row kernel gave a wrong result on a known case")
    rows = np.empty((2, 2), dtype=dtype)
    lerp_rows(
        np.array([[0.0, 2.0], [4.0, 6.0]], dtype=dtype),
        np.array([0, 1]),
        np.array([1, 0]),
        np.array([0.25, 0.75], dtype=dtype),
        rows,
    )
    if not np.allclose(rows, [[1.0, 3.0], [1.0, 3.0]]):
        raise RuntimeError("the interpolation kernel gave a wrong result on a known case")
    # 3 x 3 max pooling, stride 2, padding 1 of a 1 x 1 x 3 x 3 plane: windows rows -1..1 and 1..3
    x = np.array([[[[1.0, 5.0, 2.0], [7.0, 7.0, 0.0], [3.0, 9.0, 4.0]]]], dtype=dtype)
    am, out = np.empty((1, 1, 2, 2), np.int64), np.empty((1, 1, 2, 2), dtype)
    if (
        not pool_argmax(x, (3, 3), (2, 2), (1, 1), (1, 1), am, out)
        or am.ravel().tolist() != [3, 4, 7, 7]
        or out.ravel().tolist() != [7, 7, 9, 9]
    ):
        raise RuntimeError("the max pooling kernel gave a wrong result on a known case")


def split_act(z, t, nxt, prv, n_paths, tol, levels, thr, seg_slope, seg_off, act, rtol, big=np.inf):
    return _STATE["jit"].split_act(z, t, nxt, prv, n_paths, tol, levels, thr, seg_slope, seg_off, act, rtol, big)


def new_rows_linear(
    out, n_old, wt, levels, seg_slope, plan, g_s, y, seg_off, bias, rtol, w=None, wnorm=None, ynorm=None
):
    """See ``spacefold._core.walk._jit.new_rows_linear``; ``ynorm``: at least the Euclidean norm of every row of
    ``y`` (float64), computed here when not given."""
    if plan[0].size:
        w = np.ascontiguousarray(wt.T) if w is None else w
        wnorm = np.sqrt((w.astype(np.float64) ** 2).sum(1)) if wnorm is None else wnorm
        if ynorm is None:
            y64 = y.astype(np.float64)
            ynorm = np.sqrt((y64 * y64).sum(1)) * (1 + 1e-12)
        _STATE["jit"].new_rows_linear(
            out, n_old, wt, levels, seg_slope, *plan, g_s, y, seg_off, bias, rtol, w, wnorm, ynorm
        )


def zero_candidates(out, thr, nxt, prv, ends=False):
    """See ``spacefold._core.walk._jit_zero.zero_candidates``."""
    return _STATE["zero"].zero_candidates(out, thr, nxt, prv, ends)


def zero_round_off(out, x, wabs, babs, wnorm, err, thr, nxt, prv, n_old, ab_a, ab_b, rtol, touches=False):
    """See ``spacefold._core.walk._jit_zero.zero_round_off``; ``err`` ``None`` where the bound is not tracked,
    ``ab_a``, ``ab_b`` ``None`` for the nearest first rows."""
    tracked = err is not None
    none = np.zeros(0, np.int64)
    return _STATE["zero"].zero_round_off(
        out,
        x,
        wabs,
        babs,
        wnorm,
        err if tracked else np.zeros(0),
        thr,
        nxt,
        prv,
        n_old,
        none if ab_a is None else ab_a,
        none if ab_b is None else ab_b,
        rtol,
        tracked,
        touches,
    )


def mlp_split(Z, E, T, D, FB, NX, PATH, R, ok, slope, boff, u, gap, act, em, w1, ub):
    """See ``spacefold._core.walk._jit_mlp.mlp_split``."""
    return _STATE["mlp"].mlp_split(Z, E, T, D, FB, NX, PATH, R, ok, slope, boff, u, gap, act, em, w1, ub)


def mlp_first(X, W, b, Z, N):
    """See ``spacefold._core.walk._jit_mlp.mlp_first``."""
    _STATE["mlp"].mlp_first(X, W, b, Z, N)


def mlp_measure(FB, NX, n_paths, n_bits, ok, out_i, out_f):
    """See ``spacefold._core.walk._jit_mlp.mlp_measure``."""
    _STATE["mlp"].mlp_measure(FB, NX, n_paths, n_bits, ok, out_i, out_f)


def lerp_rows(x, ia, ib, w, out):
    """Rows ``ia`` and ``ib`` of the 2-D ``x`` interpolated at ``w`` (one weight per row, of
    ``x``'s dtype) into ``out``, as ``torch.lerp`` computes them, without gathering them first."""
    _STATE["jit"].lerp_rows(x, ia, ib, w, 1 - w, out)


def pool_argmax(x, kernel, stride, padding, dilation, am, out, big=np.inf) -> bool:
    """Max pooling of ``x`` (R, C, H, W) into ``out`` and the index of every window's maximum in its H·W
    plane into ``am`` (R, C, Ho, Wo), as ``torch.nn.functional.max_pool2d(..., return_indices=True)``
    gives them (pairs of ints: kernel size, stride, padding, dilation); false when some input is not
    below ``big`` in magnitude."""
    return _STATE["jit"].pool_argmax(x, *kernel, *stride, *padding, *dilation, am, out, big)


def list_ranks(nxt, n_paths):
    """``(rank, path, order)`` of the rows linked by ``nxt`` (see ``spacefold._core.walk.exact.state._ranks``)."""
    return _STATE["jit"].list_ranks(nxt, n_paths)


_ANNOUNCE_AFTER = 2.0  # seconds of compiling before prepare() says what it is doing


def prepare(dtype, announce=None) -> None:
    """Compile (or load from Numba's cache) every kernel for ``dtype`` and for float64 (the dtype of
    the walk's refinements) before a walk starts, so that worker processes started later load them
    from the cache instead of compiling them again side by side. Compiling takes a minute or more
    the first time on a machine; where it takes longer than two seconds ``announce(message)`` is
    called with a line saying so (and again with the time it took). Does nothing where the kernels
    are off or already prepared in this process."""
    import threading
    import time

    todo = [d for d in dict.fromkeys((np.dtype(dtype), np.dtype(np.float64))) if d not in _STATE.get("prepared", ())]
    if not todo or not available():
        return
    said: list[bool] = []

    def say() -> None:
        said.append(True)
        announce(
            "compiling the exact walk's kernels for this machine (the first run only: later runs "
            "load them from Numba's cache) ..."
        )

    timer = threading.Timer(_ANNOUNCE_AFTER, say) if announce is not None else None
    t0 = time.perf_counter()
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        for d in todo:
            if not available(d):
                return
            nxt = np.array([1, 1])
            list_ranks(nxt, 1)
            if d == np.float64:  # the MLP kernels work in float64 whatever the model's dtype
                ok = np.ones(1, np.bool_)
                T, D, FB = np.array([0.0, 1.0, 0.0]), np.zeros(3), np.array([-1, -1, 0])
                NX, PATH = np.array([1, -1, 0]), np.zeros(3, np.int64)
                Z = np.array([[1.0], [-1.0], [0.0]])
                em, none = np.zeros(3), np.zeros(0)
                mlp_split(Z, Z * 0, T, D, FB, NX, PATH, 2, ok, np.zeros(1), 0, 1e-16, 1e-6, True, em, none, none)
                mlp_measure(FB, NX, 1, 1, ok, np.zeros((1, 3), np.int64), np.zeros((1, 2)))
                mlp_first(np.ones((1, 2), np.float32), np.ones((1, 2)), np.zeros(1), np.empty((1, 1)), np.empty(1))
            _STATE.setdefault("prepared", set()).add(d)
    finally:
        if timer is not None:
            timer.cancel()
    if said and announce is not None:
        announce(f"compiled in {time.perf_counter() - t0:.0f} s")
