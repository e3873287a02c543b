"""The max pooling handler (docs/method.md, 'The exact walk', step 4): split the pieces where a
window's arg-max changes, until it is constant on every piece; paths the walk's dtype cannot
resolve raise :class:`_Unresolved`, and the driver walks them again in float64.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn
from torch.nn.modules.utils import _pair

from .. import _kernels
from .crossings import _split
from .program import _Step
from .roundoff import _err_split, _row_mag
from .settings import WalkSettings, _check_finite, _finite_max
from .state import _at, _interpolate_env, _kernels_take, _ranks, _State


class _Unresolved(Exception):
    """Max pooling could not be resolved in the walk's dtype on the paths ``paths`` (of the sub-batch)."""

    def __init__(self, paths: list[int]):
        super().__init__(f"max pooling unresolved on {len(paths)} paths")
        self.paths = paths


# relative round-off under which two inputs of a pooling window count as equal (a tie), and the
# rounds of splitting after which a max pooling counts as unresolved in the walk's dtype
_POOL_RTOL = 64


_POOL_MAX_ROUNDS = 64


def _split_maxpool(prog, env, state: _State, step: _Step, settings: WalkSettings) -> Tensor:
    """Split the pieces where the arg-max of a pooling window changes, until it is constant.

    Every round splits the pieces whose ends pick different inputs of a window where those
    two inputs are equal; only the new rows need their arg-max in the next round. A piece
    whose arg-max at one end is also a maximum at the other end, up to round-off, needs no
    split: the max of affine functions is convex, so that input is the maximum on the whole
    piece (to that round-off). Each round then either resolves a piece or finds an input that
    is larger by more than round-off at the new breakpoint, so the splitting ends after at
    most about as many rounds as a window has inputs. Should it not end within ``_POOL_MAX_ROUNDS``
    (round-off of the dtype larger than the margin) the paths concerned raise
    :class:`_Unresolved`, to be walked again in float64; with ``settings.accept`` (float64 already)
    they are kept as they are and counted in ``state.n_unresolved``. Returns the max pooling's
    output at every breakpoint (from the arg-max of the last round). Non-finite inputs raise
    :class:`InputError` (:func:`_check_finite`)."""
    mod = step.module
    assert mod is not None  # a maxpool step holds its module
    (node_in,) = [a for a in step.node.all_input_nodes if prog.dynamic.get(a, False)]
    tol_eff = max(settings.tol, 1e-9)
    margin = _POOL_RTOL * torch.finfo(env[node_in].dtype).eps
    am = None
    outs: list[Tensor] = []  # the output at the rows new in every round
    max_rounds = _POOL_MAX_ROUNDS
    for _ in range(max_rounds + 1):
        x = env[node_in].contiguous()
        V = x.shape[0]
        # the values are checked in the first round; later rounds interpolate between checked rows
        am_new, size, out_new = _pool_argmax(
            x if am is None else x[am.shape[0] :], mod, step.node if am is None else None
        )
        am = am_new if am is None else torch.cat([am, am_new])
        outs.append(out_new)
        planes = x.reshape(-1, size)  # one row per channel (and breakpoint): the H·W or L inputs
        per_plane = am.shape[1] // (planes.shape[0] // V)  # windows per plane
        nxt_old = state.nxt
        cand = am != am.index_select(0, nxt_old)
        p, m = cand.nonzero().unbind(1)
        if p.numel() == 0:
            break
        q = nxt_old.index_select(0, p)
        ia, ib = _at(am, p, m), _at(am, q, m)
        n_planes = planes.shape[0] // V
        rp, rq = p * n_planes + m // per_plane, q * n_planes + m // per_plane
        xa_i, xa_j = _at(planes, rp, ia).double(), _at(planes, rp, ib).double()
        xb_i, xb_j = _at(planes, rq, ia).double(), _at(planes, rq, ib).double()
        da = xa_i - xa_j  # >= 0
        db = xb_i - xb_j  # <= 0
        eps = margin * (xa_i.abs() + xa_j.abs() + xb_i.abs() + xb_j.abs())
        ok = (da > eps) & (-db > eps)  # else one of the two is a maximum at both ends (up to round-off)
        if not bool(ok.any()):
            break
        if _ == max_rounds:
            if settings.accept:
                _, path = _ranks(state)
                state.unresolved.update(torch.unique(path.index_select(0, p[ok])).tolist())
                break
            _, path = _ranks(state)
            raise _Unresolved(torch.unique(path.index_select(0, p[ok])).tolist())
        frac = da / (da - db)
        ta = state.t.index_select(0, p)
        tc = ta + (state.t.index_select(0, q) - ta) * frac
        tc = torch.where(ok, tc, ta)  # ties at an end: nothing to insert
        xmag = None if state.err is None else _row_mag(x)
        plan, rows = _split(state, p, tc, tol_eff)
        if plan is None:
            break
        _interpolate_env(prog, env, state, plan, nxt_old)
        if xmag is not None:
            _err_split(state, xmag, plan[0], nxt_old, x.dtype)
        # at its crossing the two inputs are equal: exactly, not up to the interpolation's round-off
        # (which a later layer taking their difference would read as a nonzero value)
        new = (ok & (rows >= V)).nonzero().squeeze(1)
        if new.numel():
            planes = env[node_in].reshape(-1, size)
            r = rows.index_select(0, new) * n_planes + m.index_select(0, new) // per_plane
            i_a, i_b = ia.index_select(0, new), ib.index_select(0, new)
            va, vb = _at(planes, r, i_a), _at(planes, r, i_b)
            close = ((va - vb).double().abs() <= eps.index_select(0, new)).nonzero().squeeze(1)
            planes.view(-1).index_put_(
                (r.index_select(0, close) * size + i_b.index_select(0, close),), va.index_select(0, close)
            )
    # every round ends before a split or goes on to the next, which pools the rows it added
    return outs[0] if len(outs) == 1 else torch.cat(outs)


# by dimension, called with return_indices=True: (output, indices)
_ADAPTIVE_MAX_POOLS: tuple[Callable[..., tuple[Tensor, Tensor]], ...] = (
    F.adaptive_max_pool1d,
    F.adaptive_max_pool2d,
    F.adaptive_max_pool3d,
)
_MAX_POOLS: tuple[Callable[..., tuple[Tensor, Tensor]], ...] = (F.max_pool1d, F.max_pool2d, F.max_pool3d)


def _pool_argmax(x: Tensor, mod: nn.Module, node: fx.Node | None = None) -> tuple[Tensor, int, Tensor]:
    """The arg-max of every pooling window of ``x`` (the first maximum of a window, padding
    excluded, as torch's max pooling picks it; with ``ceil_mode`` the partial windows at the
    edge too): ``(am, size, out)``, ``am`` ``(V, n_windows)`` flat indices into the ``size`` inputs
    of the window's plane (a channel's L, H·W or D·H·W values), ``out`` the max pooling's output.
    With ``node``, non-finite inputs raise :class:`InputError` (see :func:`_check_finite`). On CPUs a
    compiled kernel computes both in one pass for ``MaxPool1d`` and ``MaxPool2d`` (several times
    faster than torch's max pooling with indices)."""
    one_d = type(mod) is nn.MaxPool1d
    x4 = x.unsqueeze(2) if one_d else x
    if (
        type(mod) in (nn.MaxPool1d, nn.MaxPool2d)
        and not mod.ceil_mode
        and x4.dim() == 4
        and x4.shape[0]
        and x4.is_contiguous()
        and _kernels_take(x4)
    ):

        def pair(v, first: int) -> tuple[int, int]:
            return (first, v if isinstance(v, int) else v[0]) if one_d else _pair(v)

        k, st = pair(mod.kernel_size, 1), pair(mod.stride or mod.kernel_size, 1)
        pad, dil = pair(mod.padding, 0), pair(mod.dilation, 1)
        V, C, H, W = x4.shape
        Ho = (H + 2 * pad[0] - dil[0] * (k[0] - 1) - 1) // st[0] + 1
        Wo = (W + 2 * pad[1] - dil[1] * (k[1] - 1) - 1) // st[1] + 1
        am = torch.empty(V, C, Ho, Wo, dtype=torch.int64)
        out = torch.empty(V, C, Ho, Wo, dtype=x.dtype)
        big = _finite_max(x.dtype) if node is not None else float("inf")
        if not _kernels.pool_argmax(x4.numpy(), k, st, pad, dil, am.numpy(), out.numpy(), big) and node is not None:
            _check_finite(x, node)  # raises InputError with the range found
        return am.reshape(V, -1), H * W, out.squeeze(2) if one_d else out
    if node is not None:
        _check_finite(x, node)
    dims = (
        1
        if isinstance(mod, (nn.MaxPool1d, nn.AdaptiveMaxPool1d))
        else 2
        if isinstance(mod, (nn.MaxPool2d, nn.AdaptiveMaxPool2d))
        else 3
    )
    if isinstance(mod, (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)):
        pool = _ADAPTIVE_MAX_POOLS[dims - 1]
        out, am = pool(x, mod.output_size, return_indices=True)
    else:
        pool = _MAX_POOLS[dims - 1]
        out, am = pool(
            x, mod.kernel_size, mod.stride, mod.padding, mod.dilation, ceil_mode=mod.ceil_mode, return_indices=True
        )
    size = 1
    for n in x.shape[-dims:]:
        size *= n
    return am.reshape(x.shape[0], -1), size, out
