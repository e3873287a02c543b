"""The breakpoints of all paths of a sub-batch (docs/method.md, 'The exact walk').

:class:`_State` holds every breakpoint as a row, linked to its neighbours on its path, so no
tensor of breakpoint values is ever reordered; :func:`_interpolate` appends the values at new
breakpoints to such a tensor and :func:`_ranks` orders the rows path by path.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from .. import _kernels
from .errors import _refuse

if TYPE_CHECKING:
    from .program import ExactProgram


class _State:
    """Breakpoints of all paths, stored in creation order and linked along each path.

    Row r is a breakpoint at ``t[r]``; ``nxt[r]`` is the next
    breakpoint of the same path (``nxt[r] == r`` at t = 1) and ``prv[r]`` the previous
    one (``prv[r] == r`` at t = 0). Rows 0..B-1 are the starts (t = 0) and rows
    B..2B-1 the ends (t = 1); new breakpoints are appended, so no tensor is ever
    reordered and a row keeps its number to the end.

    ``t_ends``: the t of the starts and of the ends, when the paths are pieces [t_a, t_b] of
    their segments (the driver's sub-segments) rather than whole segments. ``row_cap``: the
    most breakpoints the memory budget holds; a split beyond it raises :class:`_OverBudget`.
    """

    def __init__(
        self,
        n_paths: int,
        device: torch.device,
        t_ends: tuple[Tensor, Tensor] | None = None,
        row_cap: int | None = None,
    ):
        b = n_paths
        ar = torch.arange(b, device=device)
        self.n_paths = b
        if t_ends is None:
            t_ends = (
                torch.zeros(b, dtype=torch.float64, device=device),
                torch.ones(b, dtype=torch.float64, device=device),
            )
        self.t = torch.cat(t_ends)
        self.nxt = torch.cat([ar + b, ar + b])
        self.prv = torch.cat([ar, ar])
        self.starts = ar
        self.ends = ar + b
        self.peak_bytes = 0
        self.grown: dict = {}  # tensors of breakpoint values with spare rows (see _interpolate)
        self.unresolved: set[int] = set()  # paths whose max pooling float64 could not resolve (see _split_maxpool)
        # in a walk that can hand paths to a float64 walk (float32): the zero rule sets nothing to 0 but names where
        # it would, (path, t from, t to) around each such breakpoint, walked again in float64 (see fused._set_zeros)
        self.defer_zeros = False
        self.defer_marks: list[tuple[Tensor, Tensor, Tensor]] = []
        self.row_cap = row_cap
        self.err: Tensor | None = None  # a bound of the values' round-off per row (see .roundoff)

    @property
    def n_rows(self) -> int:
        return int(self.t.numel())

    @property
    def n_unresolved(self) -> int:
        return len(self.unresolved)


class _OverBudget(Exception):
    """The breakpoints of a sub-batch outgrew the memory budget (``rows`` of them)."""

    def __init__(self, rows: int):
        super().__init__(f"{rows} breakpoints exceed the memory budget")
        self.rows = rows


def _grew(state: _State) -> None:
    """Raise :class:`_OverBudget` when the breakpoints outgrow ``state.row_cap``: called after every split,
    before the values at the new breakpoints are computed."""
    if state.row_cap is not None and state.n_rows > state.row_cap:
        raise _OverBudget(state.n_rows)


def _at(x: Tensor, r: Tensor, c: Tensor) -> Tensor:
    """``x[r, c]`` for a contiguous 2-D ``x`` (a flat gather: faster than 2-D indexing)."""
    return x.reshape(-1).index_select(0, r * x.shape[1] + c)


_NUMPY_FLOATS = (torch.float32, torch.float64)


_EPS64 = float(torch.finfo(torch.float64).eps)


def _kernels_take(x: Tensor) -> bool:
    """Whether the compiled kernels can work on ``x`` (a float32/64 CPU tensor, no gradient)."""
    return (
        x.device.type == "cpu"
        and x.dtype in _NUMPY_FLOATS
        and not x.requires_grad
        and _kernels.available(np.float32 if x.dtype == torch.float32 else np.float64)
    )


def _interpolate(x: Tensor, plan, nxt_old: Tensor, grown: dict) -> Tensor:
    """``x`` with the values at the new breakpoints appended (exact: affine on a piece).

    The result is the head of a buffer with spare rows (half as many again), so that the
    next append of rows to it writes only the new rows instead of copying all of them
    (each split of a wide layer, and each round of max pooling, appends rows to every live
    tensor). ``grown`` maps ``id`` of such results to a weak reference to them: only those
    exact tensors, while alive, may grow in place."""
    g_piece, g_s = plan
    V, G = x.shape[0], g_piece.numel()
    ref = grown.pop(id(x), None)
    buf = x._base if ref is not None and ref() is x else None
    if buf is None or buf.shape[0] < V + G or buf.data_ptr() != x.data_ptr() or not buf.is_contiguous():
        buf = x.new_empty((V + G + (V + G) // 2,) + tuple(x.shape[1:]))
        buf[:V].copy_(x)
    g_next = nxt_old.index_select(0, g_piece)
    if x.is_contiguous() and x.numel() and _kernels_take(x):
        # one pass: the two rows are read where they are, not gathered into copies first
        _kernels.lerp_rows(
            x.reshape(V, -1).numpy(),
            g_piece.numpy(),
            g_next.numpy(),
            g_s.to(x.dtype).numpy(),
            buf[V : V + G].reshape(G, -1).numpy(),
        )
    else:
        s = g_s.to(x.dtype).view((-1,) + (1,) * (x.dim() - 1))
        torch.lerp(x.index_select(0, g_piece), x.index_select(0, g_next), s, out=buf[V : V + G])
    out = buf[: V + G]
    grown[id(out)] = weakref.ref(out)
    return out


def _interpolate_env(prog: ExactProgram, env: dict, state: _State, plan, nxt_old: Tensor) -> None:
    done: dict[int, Tensor] = {}  # a tensor held by several nodes is interpolated once
    for n, v in list(env.items()):
        if not prog.dynamic.get(n, False):
            continue
        if isinstance(v, Tensor):
            if id(v) not in done:
                done[id(v)] = _interpolate(v, plan, nxt_old, state.grown)
            env[n] = done[id(v)]
        else:
            raise _refuse(f"the input-dependent value '{n.name}' ({type(v).__name__}) is held across a nonlinear layer")


def _ranks(state: _State) -> tuple[Tensor, Tensor]:
    """Index of every row in path-major, t-ascending order, and its path, by list ranking.

    Pointer jumping along ``prv``: after round k every row knows its distance to a
    row 2^k places earlier, so ``log2(breakpoints per path)`` rounds of gathers (no
    sort). The pointers end on the start rows, whose numbers are the path numbers.
    """
    V = state.n_rows
    p = state.prv.clone()
    d = (p != torch.arange(V, device=p.device)).long()
    while True:
        pp = p.index_select(0, p)
        if torch.equal(pp, p):
            break
        d += d.index_select(0, p)
        p = pp
    path = p
    lengths = torch.bincount(path, minlength=state.n_paths)
    first = torch.cumsum(lengths, 0) - lengths
    return first.index_select(0, path) + d, path
