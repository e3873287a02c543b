"""Compiled kernels of the exact walk on CPUs (Numba), for the layer pattern of MLPs.

One kernel call replaces the many small tensor operations of one activation layer whose
only kink is at 0 (ReLU, LeakyReLU, PReLU, RReLU in eval mode) and whose bit threshold
is 0: sign tests, the search for sign changes along the paths, the split of the pieces
and their links, the bits at the new breakpoints, the flip list, and the activation
itself. A second one computes the output of the ``nn.Linear`` after the activation at the
new breakpoints without a matrix product (the product of the old breakpoints stays with
torch's BLAS). Both release the GIL, so sub-batches on several threads run side by side.

The Linear at new breakpoints. On a piece (a, b) crossed by the neurons n_1 .. n_k (sorted
by where they cross) and split at the new breakpoints g_1 .. g_m (fractions s_j of the
piece), the activation φ at g_j differs from the interpolation of φ at a and b only in
the crossing neurons: by (1 − s_j)·c^a_n for a neuron crossing at or before g_j and by
s_j·c^b_n for one crossing after it, where c^a_n = −(1 − α_n)|z_n(a)| and
c^b_n = −(1 − α_n)|z_n(b)| (α_n the slope below 0). So the Linear's output is

    y(g_j) = (1 − s_j)·(y(a) + Σ_{n ≤ j} c^a_n W[:, n]) + s_j·(y(b) + Σ_{n > j} c^b_n W[:, n]),

two running sums of weight columns along the piece (one column per crossing neuron and
direction), accumulated in float64. A neuron merged into the breakpoint g_j (crossing
within ``tol`` of it) gets its exact value φ(z_n(g_j)) there instead. On the first layer,
whose piece is the whole segment crossed by a hundred neurons or more, that replaces a
product row of ``width²`` multiply-adds per new breakpoint by about ``4·width``.

``SPACEFOLD_NUMBA=0`` turns the kernels off (the walk then uses torch operations only, as
on accelerators and for every other layer type); without Numba they are off as well.
"""

from __future__ import annotations

import os

_STATE: dict = {}


def available() -> bool:
    """Whether the kernels can be used: Numba imports and ``SPACEFOLD_NUMBA`` is not ``0``."""
    if os.environ.get("SPACEFOLD_NUMBA", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if "ok" not in _STATE:
        try:
            from . import _jit
        except ImportError:
            _STATE["ok"] = False
        else:
            _STATE.update(ok=True, split_act=_jit.split_act, new_rows_linear=_jit.new_rows_linear)
    return _STATE["ok"]


def split_act(z, t, nxt, prv, n_paths, tol, slope, bits, act):
    return _STATE["split_act"](z, t, nxt, prv, n_paths, tol, slope, bits, act)


def new_rows_linear(out, n_old, wt, slope, plan, g_s):
    if plan[0].size:
        _STATE["new_rows_linear"](out, n_old, wt, slope, *plan, g_s)
