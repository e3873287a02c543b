"""The activation handler's building blocks (docs/method.md, 'The exact walk', steps 2-3): split
the pieces at an activation's kinks and record its flips, with torch operations or with the
compiled kernel (:mod:`spacefold._core.walk._kernels`), whose per-layer form :func:`_compiled_act` builds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from .. import _kernels
from .assemble import _BitRecord, _flips
from .crossings import _cut, _levels, _signs, _snap, _snap_list, _snap_rtol
from .program import _KERNEL_ACTS, _Step
from .roundoff import _act_out, _err_split, _row_mag
from .settings import WalkSettings, _check_finite, _finite_max
from .state import _grew, _interpolate_env, _kernels_take, _State


def _split_activation(prog, env, state: _State, node_in: fx.Node, step: _Step, settings: WalkSettings):
    """Split the pieces at the kinks of an activation; return its flips (bit layers)."""
    x = env[node_in]
    z = x.reshape(x.shape[0], -1)
    act_form = _compiled_act(step, z, None, settings.tie_tol, x.shape[1] if x.dim() > 2 else None)
    zmag: Tensor | None = None
    amag: Tensor | None = None
    if state.err is not None:  # the magnitudes of the split values and of the activation's output
        assert step.module is not None  # an activation step holds its module
        zmag, amag = _row_mag(z), _row_mag(_act_out(step.module, x))
    if act_form is not None:  # the compiled kernel splits; the live tensors are interpolated after it
        nxt_old = state.nxt
        split = _compiled_split(state, step, z.contiguous(), act_form, settings.tol, False)
        if split.g_piece.size:
            g_piece = torch.from_numpy(split.g_piece)
            _interpolate_env(prog, env, state, (g_piece, torch.from_numpy(split.g_s)), nxt_old)
            if zmag is not None and amag is not None:
                _err_split(
                    state,
                    amag,
                    g_piece,
                    nxt_old,
                    z.dtype,
                    float(np.abs(act_form.levels).max(initial=0.0)),
                    zmag,
                    z.shape[1],
                )
        _snap(env[node_in], *map(torch.from_numpy, split.snap))
        return split.rec
    _check_finite(z, step.node)
    cut = _cut(z, state, step, settings)
    if cut.plan is not None:
        _interpolate_env(prog, env, state, cut.plan, cut.nxt_old)
        if zmag is not None and amag is not None:
            _err_split(
                state, amag, cut.plan[0], cut.nxt_old, z.dtype, max(map(abs, cut.levels), default=0.0), zmag, z.shape[1]
            )
    if cut.rows is not None:
        _snap(env[node_in], *_snap_list(state, cut, z))
    if cut.thr is None:
        return None
    pos = cut.pos
    assert pos is not None  # a layer with bits has signs (Cut.pos)
    if cut.plan is not None:
        V = z.shape[0]
        znew = env[node_in].reshape(-1, z.shape[1])[V:]
        pos = torch.cat([pos, _signs(znew, settings.tie_tol)])
    return _flips(state, cut, pos, state.n_rows - z.shape[0], z.shape[1])


def _act_inplace(module: nn.Module, z: Tensor) -> Tensor:
    """Apply an activation module, in place where torch offers it (``z`` is not needed after)."""
    if type(module) is nn.ReLU:
        return torch.relu_(z)
    if type(module) is nn.LeakyReLU:
        return F.leaky_relu_(z, module.negative_slope)
    if type(module) is nn.Hardtanh or type(module) is nn.ReLU6:
        return F.hardtanh_(z, module.min_val, module.max_val)
    return module(z)


def _elementwise(module: nn.Module) -> bool:
    """Whether the activation acts on every number alone, the same way (no per-neuron parameter)."""
    if type(module) in (nn.ReLU, nn.LeakyReLU, nn.Hardtanh, nn.ReLU6, nn.RReLU):
        return True
    return type(module) is nn.PReLU and module.weight.numel() == 1


@dataclass(frozen=True, slots=True)
class _ActForm:
    """An activation as the compiled kernels take it: its kinks and bit threshold (``levels``,
    float64, sorted; the threshold is ``levels[thr]``, ``thr = -1`` without bits), and per neuron
    its slope and offset on each segment between the levels (``seg_slope``, ``seg_off``,
    ``(F, K + 1)``, contiguous float64)."""

    levels: np.ndarray
    thr: int
    seg_slope: np.ndarray
    seg_off: np.ndarray


@dataclass(slots=True)
class _KernelSplit:
    """What the compiled split of one activation gives (:func:`_compiled_split`): its flips
    (``None`` without bits), every new breakpoint's piece start and fraction, the plan the
    fused Linear's kernel takes, and the crossings to snap ``(row, neuron, level, za, zb)``."""

    rec: _BitRecord | None
    g_piece: np.ndarray
    g_s: np.ndarray
    plan: object
    snap: tuple


def _compiled_act(
    step: _Step, z: Tensor, lin: nn.Linear | None, tie_tol: float, channels: int | None = None
) -> _ActForm | None:
    """The :class:`_ActForm` of ``step`` for the compiled kernels when they can run this
    layer (CPU, float32/64, an elementwise activation of known form), else None.
    ``channels``: the size of dim 1 of the activation's input before it was flattened to
    ``z`` (a PReLU with one slope per channel)."""
    if not _kernels_take(z):
        return None
    if lin is not None and (lin.weight.dtype != z.dtype or lin.weight.device != z.device):
        return None
    mod, F_ = step.module, z.shape[1]
    kind = type(mod)
    if kind not in _KERNEL_ACTS:
        return None
    w = mod.weight if isinstance(mod, nn.PReLU) else None  # the only kernel activation with a parameter
    if w is not None and w.numel() not in (1, F_) and not (w.numel() == channels and F_ % channels == 0):
        return None
    key = (
        F_,
        tie_tol,
        step.bit_layer,
        channels,
        None if w is None else (w.data_ptr(), w._version),
        *(getattr(mod, k, None) for k in ("negative_slope", "lower", "upper", "min_val", "max_val")),
    )
    form = step.kernel_form.get(key)
    if form is not None:
        return form
    a: float | np.ndarray | None
    if kind is nn.ReLU:
        a = 0.0
    elif isinstance(mod, nn.LeakyReLU):
        a = float(mod.negative_slope)
    elif isinstance(mod, nn.RReLU):  # eval mode (training mode is refused when compiling)
        a = (float(mod.lower) + float(mod.upper)) / 2
    elif w is not None:  # PReLU: one slope, one per neuron, or one per channel
        a = np.repeat(w.detach().to("cpu", torch.float64).numpy(), F_ // w.numel())
    else:  # Hardtanh, ReLU6
        a = None
    levels, thr = _levels(step, tie_tol)
    K = len(levels)
    lower = np.array([-np.inf] + levels)  # segment j lies between lower[j] and upper[j]
    upper = np.array(levels + [np.inf])
    if a is not None:  # z above 0, slope a below
        below = upper <= 0.0
        seg_slope = np.where(below[None, :], np.broadcast_to(np.asarray(a, dtype=np.float64), (F_,))[:, None], 1.0)
        seg_off = np.zeros((F_, K + 1))
    else:  # hardtanh: min_val below, z between, max_val above
        assert isinstance(mod, nn.Hardtanh)  # ReLU6 is one
        lo, hi = float(mod.min_val), float(mod.max_val)
        slope = np.where((upper <= lo) | (lower >= hi), 0.0, 1.0)
        off = np.where(upper <= lo, lo, np.where(lower >= hi, hi, 0.0))
        seg_slope, seg_off = np.tile(slope, (F_, 1)), np.tile(off, (F_, 1))
    form = _ActForm(
        np.array(levels, dtype=np.float64),
        -1 if thr is None else thr,
        np.ascontiguousarray(seg_slope),
        np.ascontiguousarray(seg_off),
    )
    step.kernel_form = {key: form}  # one form kept (the parameters may change); replaced whole for threads
    return form


def _compiled_split(state: _State, step: _Step, z: Tensor, act_form: _ActForm, tol: float, act: bool) -> _KernelSplit:
    """Split, bits and flips of one activation by the compiled kernel (:mod:`spacefold._core.walk._kernels`);
    with ``act`` it also applies the activation to ``z`` in place."""
    thr = act_form.thr
    try:
        t2, nxt2, prv2, g_piece, g_s, start_bits, f_row, f_n, f_bit, plan, snap, _ = _kernels.split_act(
            z.numpy(),
            state.t.numpy(),
            state.nxt.numpy(),
            state.prv.numpy(),
            state.n_paths,
            float(tol),
            act_form.levels,
            thr,
            act_form.seg_slope,
            act_form.seg_off,
            act,
            _snap_rtol(z.dtype),
            _finite_max(z.dtype),
        )
    except FloatingPointError:
        _check_finite(z, step.node)  # raises InputError with the range found
        raise
    state.t, state.nxt, state.prv = torch.from_numpy(t2), torch.from_numpy(nxt2), torch.from_numpy(prv2)
    _grew(state)
    rec = None
    if thr >= 0:
        rec = _BitRecord(
            torch.from_numpy(start_bits), torch.from_numpy(f_row), torch.from_numpy(f_n), torch.from_numpy(f_bit)
        )
    return _KernelSplit(rec, g_piece, g_s, plan, snap)
