"""A bound of the round-off every breakpoint's values carry, for the zero rule (docs/failure-modes.md).

The values at a breakpoint are not those of a forward pass at its point: a breakpoint added by a
split gets the values at the ends of its piece interpolated, its crossing neurons set to their
level, and the layers after it compute from those. Each step adds round-off, and the layers after
it carry it on, scaled by their weights. :attr:`_State.err` holds, per row, a bound of the error of
the values of the network's (one) live tensor, in the max norm, in float64:

- at the start of the walk, the round-off of the values given there (``_err_start``);
- a split adds rows whose error is the larger of their piece's ends' plus the round-off of the
  interpolation and of the snap to a level, relative to the magnitudes of the split values at the
  ends and to the position of the row in float64 t (``_err_split``);
- an activation (1-Lipschitz: ReLU, LeakyReLU, Hardtanh, ReLU6) and a max pooling keep it;
- an ``nn.Linear`` with weight W and bias b maps it to ``‖W‖∞·(err + c·u·|x|∞) + c·u·|b|∞`` (its
  own round-off relative to its terms), an average pooling and a reshape keep it plus their own
  round-off (``_err_linear``, ``_err_affine``).

Where the walk holds several input-dependent tensors (branches) or meets another affine step,
the bound is dropped (``None``): the zero rule then falls back to the round-off of one layer.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .settings import _cancel_rtol
from .state import _State

_EPS64 = torch.finfo(torch.float64).eps

# steps that map the max norm of an error to at most itself (plus their own round-off)
_NONEXPANSIVE = (nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
                 nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
_NONEXPANSIVE_OPS = {"flatten", "unflatten", "reshape", "view", "contiguous", "squeeze", "unsqueeze", "clone"}


def _row_mag(x: Tensor) -> Tensor:
    """The largest magnitude of every row of ``x`` (one row per breakpoint), in float64."""
    x = x.reshape(x.shape[0], -1)
    if x.shape[1] == 0:
        return torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    return x.abs().amax(1).double()


def _err_start(state: _State, values: list) -> None:
    """Start the bound where the walk starts: the values given there carry the round-off of the
    affine layers that computed them (a few units of it, relative to their magnitude)."""
    state.err = None
    if len(values) == 1 and isinstance(values[0], Tensor) and values[0].dim() and values[0].shape[0] == state.n_rows:
        x = values[0]
        state.err = _row_mag(x).mul_(4 * _cancel_rtol(x.dtype))


def _err_split(state: _State, mag: Tensor, g_piece: Tensor, nxt_old: Tensor, dtype: torch.dtype, level: float = 0.0,
               snap_rtol: float = 16.0) -> None:
    """Extend the bound to the rows a split added (after those of ``mag``, the max norm of the split values
    at the rows before it): the rows are new breakpoint g inside the piece from row ``g_piece[g]`` to its
    next row ``nxt_old[g_piece[g]]``. ``level``: the largest magnitude of a level the split snaps to;
    ``snap_rtol``: the snap's tolerance in units of the dtype's eps."""
    err = state.err
    if err is None:
        return
    V = mag.numel()
    if err.numel() != V:
        state.err = None
        return
    if state.n_rows == V:
        return
    a = g_piece.to(torch.int64)
    b = nxt_old.index_select(0, a)
    ta, tb = state.t.index_select(0, a), state.t.index_select(0, b)
    # the row's t is rounded (float64): its place in the piece is off by that relative to the piece's length
    dt = (4 * _EPS64) * torch.maximum(torch.maximum(ta.abs(), tb.abs()), torch.ones_like(ta)) / (tb - ta).clamp_min(1e-300)
    rel = dt + (snap_rtol + 4) * torch.finfo(dtype).eps
    new = torch.maximum(err.index_select(0, a), err.index_select(0, b))
    new += rel * (mag.index_select(0, a) + mag.index_select(0, b) + 2 * abs(level))
    state.err = torch.cat([err, new])


def _err_linear(state: _State, lin: nn.Linear, xmag: Tensor, dtype: torch.dtype) -> None:
    """The bound after an ``nn.Linear`` whose input has the max norm ``xmag`` at every row."""
    if state.err is None:
        return
    if state.err.numel() != xmag.numel():
        state.err = None
        return
    w = lin.weight.detach()
    wmax = float(w.abs().sum(1).max()) if w.numel() else 0.0
    bmax = 0.0 if lin.bias is None or lin.bias.numel() == 0 else float(lin.bias.detach().abs().max())
    rt = 4 * _cancel_rtol(dtype)
    state.err = (state.err + rt * xmag).mul_(wmax).add_(rt * bmax)


def _err_affine(state: _State, module, target, x: Tensor | None, n_dynamic: int) -> None:
    """The bound after an affine step other than an ``nn.Linear`` (``module`` or the function or method
    name ``target``; ``x``: its input-dependent argument)."""
    if state.err is None:
        return
    name = target if isinstance(target, str) else getattr(target, "__name__", "")
    keeps = isinstance(module, _NONEXPANSIVE) if module is not None else name in _NONEXPANSIVE_OPS
    if n_dynamic != 1 or x is None or not keeps or x.dim() == 0 or x.shape[0] != state.err.numel():
        state.err = None
        return
    state.err = state.err + _row_mag(x).mul_(4 * _cancel_rtol(x.dtype))
