"""A bound of the round-off every breakpoint's values carry, for the zero rule (docs/failure-modes.md).

The values at a breakpoint are not those of a forward pass at its point: a breakpoint added by a
split gets the values at the ends of its piece interpolated, its crossing neurons set to their
level, and the layers after it compute from those. Each step adds round-off, and the layers after
it carry it on, scaled by their weights. :attr:`_State.err` holds, per row, a bound of the error of
the values of the network's (one) live tensor, in the max norm, in float64:

- at the start of the walk, the round-off of the values given there (``_err_start``);
- a split adds rows whose error is that of their piece's ends plus the round-off of the
  interpolation, relative to the magnitudes at the ends, and of the row's place in float64 t
  (``_err_split``);
- an activation (1-Lipschitz: ReLU, LeakyReLU, Hardtanh, ReLU6) keeps it, a pooling stretches it by
  at most the square root of the number of windows an input is in (``_stretch``);
- an ``nn.Linear`` with weight W and bias b maps it to ``‖W‖₂·err + c·(‖W‖_F·‖x‖₂ + ‖b‖₂)`` (its
  own round-off relative to its terms, ``c = _cancel_rtol``); a reshape keeps it plus its own
  round-off (``_err_linear``, ``_err_affine``).

An output o of a Linear is then off by at most ``‖W_o‖₂·err`` (Cauchy-Schwarz) plus its own round-off.

Where the walk holds several input-dependent tensors (branches) or meets another affine step,
the bound is dropped (``None``): the zero rule then falls back to the round-off of one layer.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .settings import _cancel_rtol
from .state import _State

_EPS64 = torch.finfo(torch.float64).eps

_AVGPOOLS = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
# steps after which the bound holds stretched by at most _stretch (plus their own round-off)
_NONEXPANSIVE = (nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout, *_AVGPOOLS)
_NONEXPANSIVE_OPS = {"flatten", "unflatten", "reshape", "view", "contiguous", "squeeze", "unsqueeze", "clone"}


def _act_out(module: nn.Module, z: Tensor) -> Tensor:
    """The activation of ``z`` as a new tensor, ``z`` left as it was (an in-place activation such as
    ``nn.ReLU(inplace=True)`` is given a copy). Rows flattened from ``(channels, ...)`` keep PReLU's slope
    per channel (the first dimension after the batch)."""
    if isinstance(module, nn.PReLU) and module.num_parameters > 1 and z.dim() == 2:
        return module(z.view(z.shape[0], module.num_parameters, -1)).view(z.shape)
    return module(z.clone() if getattr(module, "inplace", False) else z)


def _row_mag(x: Tensor) -> Tensor:
    """The Euclidean norm of every row of ``x`` (one row per breakpoint), in float64."""
    x = x.reshape(x.shape[0], -1)
    if x.shape[1] == 0:
        return torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    # in x's dtype (no float64 copy of x), widened by the round-off of the sum of squares
    return torch.linalg.vector_norm(x, dim=1).double().mul_(1 + (x.shape[1] + 2) * torch.finfo(x.dtype).eps)


_NORMS: dict = {}


def _norms(lin: nn.Linear) -> tuple[float, float, float]:
    """``(‖W‖₂, ‖W‖_F, ‖b‖₂)`` of an ``nn.Linear`` (the spectral norm: the most it stretches an error
    vector), kept while its parameters are unchanged."""
    w, b = lin.weight, lin.bias
    key = (id(lin), w.data_ptr(), w._version, None if b is None else (b.data_ptr(), b._version))
    got = _NORMS.get(key)
    if got is None:
        wd = w.detach().double().cpu()
        if not bool(torch.isfinite(wd).all()):  # the walk raises at the next activation
            return (math.nan, math.nan, math.nan)
        spec = float(torch.linalg.matrix_norm(wd, 2)) if wd.numel() else 0.0
        got = (
            spec,
            float(torch.linalg.matrix_norm(wd)),
            0.0 if b is None else float(torch.linalg.vector_norm(b.detach().double())),
        )
        if len(_NORMS) > 256:
            _NORMS.clear()
        _NORMS[key] = got
    return got


def _err_start(state: _State, values: list) -> None:
    """Start the bound where the walk starts: the values given there carry the round-off of the
    affine layers that computed them (a few units of it, relative to their magnitude)."""
    state.err = None
    if values and isinstance(values[0], Tensor) and values[0].dtype != torch.float64:
        return  # float64 only: in float32 the bound is loose enough to take genuine values for 0 in wide layers
    if len(values) == 1 and isinstance(values[0], Tensor) and values[0].dim() and values[0].shape[0] == state.n_rows:
        x = values[0]
        state.err = _row_mag(x).mul_(_cancel_rtol(x.dtype))


def _err_split(
    state: _State,
    mag: Tensor,
    g_piece: Tensor,
    nxt_old: Tensor,
    dtype: torch.dtype,
    level: float = 0.0,
    zmag: Tensor | None = None,
    n: int = 1,
) -> None:
    """Extend the bound to the rows a split added, after the rows before it: new row g lies inside the piece
    from row ``g_piece[g]`` to its next row ``nxt_old[g_piece[g]]``. ``mag``: per row before the split, the
    Euclidean norm of the values the layer after reads (the activation's output; the split values for a
    pooling), interpolated in ``dtype`` at the new rows; ``zmag``: that of the split values (``mag`` when
    not given); ``level``: the largest magnitude of a level the split sets a crossing neuron to.

    A crossing neuron set to its level at its row is off from its value at the row's t by the error of
    the crossing's place: the errors of the ends' values (``err(a) + err(b)``) and the rounding of the
    row's t in float64, relative to the piece's length; the other neurons by the interpolation's
    round-off. The running sums of the compiled Linear at the new rows (in float64) add that of the
    crossing neurons' terms, relative to the split values."""
    err = state.err
    if err is None:
        return
    V = mag.numel()
    if err.numel() != V:
        state.err = None
        return
    if state.n_rows == V:
        return
    zmag = mag if zmag is None else zmag
    a = g_piece.to(torch.int64)
    b = nxt_old.index_select(0, a)
    ta, tb = state.t.index_select(0, a), state.t.index_select(0, b)
    span = torch.maximum(torch.maximum(ta.abs(), tb.abs()), torch.ones_like(ta))
    dt = (4 * _EPS64) * span / (tb - ta).clamp_min(1e-300)
    new = err.index_select(0, a) + err.index_select(0, b)
    new += (4 * torch.finfo(dtype).eps) * (mag.index_select(0, a) + mag.index_select(0, b))
    new += (dt + 16 * _EPS64) * (zmag.index_select(0, a) + zmag.index_select(0, b) + 2 * abs(level) * n**0.5)
    state.err = torch.cat([err, new])


def _err_linear(state: _State, lin: nn.Linear, xmag: Tensor, dtype: torch.dtype) -> None:
    """The bound after an ``nn.Linear`` whose input has the Euclidean norm ``xmag`` at every row."""
    if state.err is None:
        return
    if state.err.numel() != xmag.numel():
        state.err = None
        return
    spec, frob, bnorm = _norms(lin)
    if not math.isfinite(spec + frob + bnorm):
        state.err = None
        return
    rt = _cancel_rtol(dtype)
    # ‖W e + r‖₂ <= ‖W‖₂‖e‖₂ + ‖r‖₂, the round-off r of every output at most rt·(|W||x| + |b|)
    state.err = (state.err * spec).add_(xmag * (rt * frob)).add_(rt * bnorm)


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
    state.err = state.err * _stretch(module) + _row_mag(x).mul_(_cancel_rtol(x.dtype))


def _stretch(module) -> float:
    """A bound of how much a pooling (max or average) stretches the Euclidean norm of an error: an output
    moves by at most the norm of its window's errors (a maximum by at most the largest, an average by at
    most their mean), and an input is in at most as many windows as a window has inputs (2 per
    dimension for the adaptive ones): the square root of that."""
    if module is None or isinstance(module, (nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout)):
        return 1.0
    name = type(module).__name__
    d = int(name[-2]) if name[-2:-1].isdigit() else 3
    if name.startswith("Adaptive"):
        return float(2**d) ** 0.5
    k = module.kernel_size
    k = (k,) * d if isinstance(k, int) else tuple(k)
    n = 1
    for v in k:
        n *= int(v)
    return float(n) ** 0.5


def _err_pool(state: _State, module) -> None:
    """The bound after a max pooling (see :func:`_stretch`)."""
    if state.err is not None:
        state.err = state.err * _stretch(module)
