"""An activation fused with the ``nn.Linear`` after it (docs/method.md, 'The exact walk', steps 2-3).

The product runs on the breakpoints that existed before the split; at a new breakpoint the output
is interpolated and corrected by the crossing neurons' weight columns (by torch operations, or
by :func:`spacefold._core.walk._kernels.new_rows_linear`), and outputs that cancel to round-off are
computed again as a plain product.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, fx, nn

from .. import _kernels
from .activation import _act_inplace, _ActForm, _compiled_act, _compiled_split, _elementwise
from .assemble import _flips
from .crossings import _cut, _signs, _snap, _snap_list, _snap_pairs
from .program import _Step
from .roundoff import _act_out, _err_linear, _err_split, _row_mag
from .settings import WalkSettings, _cancel_rtol, _check_finite
from .state import _at, _kernels_take, _ranks, _State

# a new breakpoint whose piece is crossed by more neurons than this gets a plain product
_SPARSE_MAX = 4


def _rows_at(z: Tensor, g_piece: Tensor, g_next: Tensor, s_: Tensor, rows: Tensor | None) -> Tensor:
    """``z`` interpolated at the new breakpoints (only those in ``rows``, when given)."""
    if rows is not None:
        g_piece, g_next, s_ = g_piece.index_select(0, rows), g_next.index_select(0, rows), s_.index_select(0, rows)
    return torch.lerp(z.index_select(0, g_piece), z.index_select(0, g_next), s_)


def _linear(lin: nn.Linear, x: Tensor, out: Tensor) -> None:
    """``lin(x)`` written into ``out``."""
    if lin.bias is not None:
        torch.addmm(lin.bias, x, lin.weight.t(), out=out)
    else:
        torch.mm(x, lin.weight.t(), out=out)


_ABS_FORMS: dict = {}


def _abs_form(lin: nn.Linear) -> tuple[Tensor, Tensor, Tensor]:
    """``(|W|, ‖W_o‖₂, |b|)`` of an ``nn.Linear`` in float64 on the CPU (``|W|`` by rows, one per output),
    kept while its parameters are unchanged."""
    w, b = lin.weight, lin.bias
    key = (id(lin), w.data_ptr(), w._version, None if b is None else (b.data_ptr(), b._version))
    got = _ABS_FORMS.get(key)
    if got is None:
        w64 = w.detach().double().cpu()
        got = (
            w64.abs(),
            torch.linalg.vector_norm(w64, dim=1),
            torch.zeros(lin.out_features, dtype=torch.float64) if b is None else b.detach().double().abs().cpu(),
        )
        if len(_ABS_FORMS) > 256:
            _ABS_FORMS.clear()
        _ABS_FORMS[key] = got
    return got


def _zero_round_off(
    lin: nn.Linear,
    out: Tensor,
    x: Tensor,
    state: _State,
    ab: tuple[Tensor, Tensor] | None = None,
    xmag: Tensor | None = None,
) -> None:
    """Set to 0 the outputs of ``lin`` (``out``, one row per breakpoint of ``state``) that are 0 on a
    piece up to round-off, and carry the bound of the round-off (:mod:`.roundoff`) past the Linear.

    ``x``: the Linear's input at the first rows (all, or the ``V`` old rows of a split); row ``V + g``
    then lies inside the piece between old rows ``ab[0][g]`` and ``ab[1][g]``, and its input is at
    most the larger of theirs neuron by neuron (the activations are monotone along a piece).

    An output is 0 on a piece when it is within its round-off bound of 0 at a row and at a
    neighbouring row of the same path. The bound of an output o at row r is that of one layer,
    ``_cancel_rtol·(Σ|w_o|·|x(r)| + |b_o|)`` (at a row the split added, with the outputs at its
    piece's ends, from which it was interpolated), plus the error its input carries from earlier
    layers, splits and snaps, ``‖w_o‖₂·err(r)`` (``state.err``; where that is not tracked, three more
    times the round-off of one layer).

    The inputs at breakpoints carry the round-off of their interpolation (a Hardtanh's
    unsaturated neuron at 1.5000000000000002 instead of 1.5), so an output that cancels exactly
    on a piece (a saturated neuron against another, two pooling windows sharing their maximum,
    quantised or bias-free weights) comes out as ±4e-16, and the bit rule would read 1 where exact
    arithmetic gives 0. A crossing of 0 leaves a small value at one row only (its neighbours are
    away from 0), so it is not moved (but where the walk hands such places to float64, ``state.defer_zeros``, a
    small value at an inner row between neighbours on the same side of 0 is handed over too: the output may touch
    0 there and turn back, or cross it twice, which only a finer dtype can tell); at an end of a path (a
    segment starting or ending on a boundary) one row is enough where the bound is tracked (float64: in float32
    one layer's round-off bound would take a crossing 1e-4 from the end for one at the end). One pass over the
    outputs with a cheap bound, the largest
    any output can have (compiled where the kernels run); the bound of the terms only for the
    few outputs that pass it."""
    if out.numel() == 0 or x.numel() == 0:
        return
    V, R = x.shape[0], out.shape[0]
    wabs, wnorm, babs = _abs_form(lin)
    rtol = _cancel_rtol(out.dtype)
    nxt, prv = state.nxt.to(out.device), state.prv.to(out.device)
    err = state.err if state.err is not None and state.err.numel() == R else None
    if xmag is None:
        xmag = _row_mag(x)
    if R > V:
        if ab is not None:
            xmag = torch.cat([xmag, torch.maximum(xmag.index_select(0, ab[0]), xmag.index_select(0, ab[1]))])
        else:
            state.err = err = None
    if err is not None:
        _err_linear(state, lin, xmag, out.dtype)  # the bound after the Linear, from the one before it
    xn = float(xmag.max()) if xmag.numel() else 0.0
    # the largest bound any output can have: at a row the split added, Σ|w||x| <= 2‖w‖₂·max‖x‖₂ and
    # |out(a)| + |out(b)| <= 2(‖w‖₂·max‖x‖₂ + |b|) (and their round-off, covered by the margin)
    emax = 0.0 if err is None else float(err.max())
    thr = ((wnorm * (4 * xn) + 3 * babs).mul_(rtol) + wnorm * emax).mul_(1.01)
    if err is None:
        thr.mul_(4)
    thr = thr.to(out.device)
    if _kernels_take(out) and out.is_contiguous() and x.is_contiguous():
        r, o = _kernels.zero_round_off(
            out.numpy(),
            x.numpy(),
            wabs.numpy(),
            babs.numpy(),
            wnorm.numpy(),
            None if err is None else err.double().contiguous().numpy(),
            thr.numpy(),
            state.nxt.numpy(),
            state.prv.numpy(),
            V,
            None if ab is None or R == V else ab[0].contiguous().numpy(),
            None if ab is None or R == V else ab[1].contiguous().numpy(),
            rtol,
            state.defer_zeros,
        )
        _set_zeros(out, torch.from_numpy(r), torch.from_numpy(o), state)
        return
    # torch operations where the kernels do not run
    small = out.abs() <= thr
    if not bool(small.any()):
        return
    ar = torch.arange(out.shape[0], device=out.device).unsqueeze(1)
    near = (small.index_select(0, nxt) & (nxt.unsqueeze(1) != ar)) | (
        small.index_select(0, prv) & (prv.unsqueeze(1) != ar)
    )
    if err is not None:
        near |= (nxt.unsqueeze(1) == ar) | (prv.unsqueeze(1) == ar)
    if state.defer_zeros:  # an inner row between neighbours on the same side: the output may touch 0 there
        near |= _touching(out, nxt, prv, ar)
    r, o = (small & near).nonzero().unbind(1)
    if r.numel() == 0:
        return
    # the bound of the terms, output by output, at the candidates and at their neighbours along the path
    q, p = nxt.index_select(0, r), prv.index_select(0, r)
    rows, cols = torch.cat([r, q, p]), o.repeat(3)
    later = rows >= V
    if R == V:
        a, b = rows, rows
    elif ab is not None:
        g = (rows - V).clamp_min(0)
        a = torch.where(later, ab[0].index_select(0, g), rows)
        b = torch.where(later, ab[1].index_select(0, g), rows)
    else:  # the nearest first rows before and after (a row the split added lies between them)
        a, b = rows.clone(), rows.clone()
        while bool((a >= V).any()):
            a = torch.where(a >= V, prv.index_select(0, a), a)
        while bool((b >= V).any()):
            b = torch.where(b >= V, nxt.index_select(0, b), b)
    xa = x.index_select(0, a).abs().double()
    xin = torch.where(later.unsqueeze(1), xa + x.index_select(0, b).abs().double(), xa)
    wo = wabs.to(out.device).index_select(0, cols)
    bound = (xin * wo).sum(1) + babs.to(out.device).index_select(0, cols)
    # a later row of a split is interpolated from the outputs at a and b (and corrected): their round-off too
    bound += torch.where(later, out[a, cols].double().abs() + out[b, cols].double().abs(), 0.0)
    bound.mul_(rtol)
    if err is None:
        bound.mul_(4)  # the inputs carry the round-off of earlier layers too
    else:  # the error the inputs carry
        bound += err.index_select(0, rows) * wnorm.to(out.device).index_select(0, cols)
    ok = out[rows, cols].double().abs() <= bound
    k = r.numel()
    near = ((q != r) & ok[k : 2 * k]) | ((p != r) & ok[2 * k :])
    if err is not None:  # an end of a path: one row is enough where the bound is tracked (float64)
        near |= (q == r) | (p == r)
    if state.defer_zeros:
        near |= (q != r) & (p != r) & ((out[q, o] > 0) == (out[p, o] > 0))
    keep = ok[:k] & near
    _set_zeros(out, r[keep], o[keep], state)


def _touching(out: Tensor, nxt: Tensor, prv: Tensor, ar: Tensor) -> Tensor:
    """Where an output's row is an inner row whose neighbours along the path hold it on the same side of 0."""
    inner = (nxt.unsqueeze(1) != ar) & (prv.unsqueeze(1) != ar)
    return inner & ((out.index_select(0, nxt) > 0) == (out.index_select(0, prv) > 0))


def _set_zeros(out: Tensor, r: Tensor, o: Tensor, state: _State) -> None:
    """``out[r, o] = 0``; where the walk hands such places to a float64 walk (``state.defer_zeros``: float32,
    whose zero rule cannot tell a cancellation from a genuine value near 0 on a wide net), :func:`_defer` instead."""
    if r.numel() == 0:
        return
    if state.defer_zeros:
        _defer(state, r)
        return
    out[r.to(out.device), o.to(out.device)] = 0.0


def _defer(state: _State, rows: Tensor) -> None:
    """Name the pieces on both sides of the breakpoints ``rows`` for a float64 walk: ``(path, t of the row before,
    t of the row after)`` (the values there are interpolated from these rows)."""
    _, path = _ranks(state)
    r = torch.unique(rows.to(path.device))
    state.defer_marks.append(
        (
            path.index_select(0, r),
            state.t.index_select(0, state.prv.index_select(0, r)),
            state.t.index_select(0, state.nxt.index_select(0, r)),
        )
    )


def _zero_pooled_round_off(pool: nn.Module, out: Tensor, x: Tensor, state: _State) -> None:
    """Set to 0 the outputs of an average pooling ``pool`` (``out``, of its input ``x``; one row per breakpoint)
    that are 0 on a piece up to round-off: within ``4·_cancel_rtol`` of the pooling of ``|x|`` (and the
    bound of the round-off ``x`` carries, where tracked) at a row and at a neighbouring row of the same
    path, or (where tracked) at an end row of its path. Two inputs that cancel in a window (a Hardtanh at -0.5 against
    one at 0.5 interpolated) leave ±1e-17 there, with no magnitude of its own for the Linear after it to
    compare with. See :func:`_zero_round_off`."""
    flat = out.reshape(out.shape[0], -1)
    if flat.numel() == 0:
        return
    bound = pool(x.abs()).reshape(flat.shape).double().mul_(4 * _cancel_rtol(out.dtype))
    if state.err is not None and state.err.numel() == flat.shape[0]:
        bound += state.err.unsqueeze(1).to(bound.device)
    small = flat.double().abs() <= bound
    if not bool(small.any()):
        return
    nxt, prv = state.nxt.to(out.device), state.prv.to(out.device)
    ar = torch.arange(flat.shape[0], device=out.device).unsqueeze(1)
    near = (small.index_select(0, nxt) & (nxt.unsqueeze(1) != ar)) | (
        small.index_select(0, prv) & (prv.unsqueeze(1) != ar)
    )
    if state.err is not None:
        near |= (nxt.unsqueeze(1) == ar) | (prv.unsqueeze(1) == ar)
    if state.defer_zeros:
        hit = (small & near).any(1).nonzero().squeeze(1)
        if hit.numel():
            _defer(state, hit)
        return
    flat.masked_fill_(small & near, 0.0)


@dataclass(slots=True)
class _NewRows:
    """The new breakpoints of one split as the fused Linear computes them (:func:`_act_linear`).

    New breakpoint g lies at fraction ``s_[g]`` (``(G, 1)``, in the activation's dtype) of the piece
    from row ``g_piece[g]`` to row ``g_next[g]``. A piece crossed by at most ``_SPARSE_MAX`` neurons
    is sparse: its new breakpoints are listed once per crossing neuron as pairs (``g_rep``, ``k``),
    with their pieces' ends ``gp``, ``gq`` and fraction ``s_k``; the others are dense, ``dg``
    (``None`` when every piece is dense, ``all_dense``), and get whole rows."""

    g_piece: Tensor
    g_next: Tensor
    s_: Tensor
    g_rep: Tensor
    k: Tensor
    gp: Tensor
    gq: Tensor
    s_k: Tensor
    dg: Tensor | None
    all_dense: bool


def _act_linear(env, state: _State, node_in: fx.Node, step: _Step, lin: nn.Linear | None, settings: WalkSettings):
    """An activation followed by an ``nn.Linear``, fused (docs/method.md, 'The exact walk').

    The product runs only on the breakpoints that existed before the split. At a new
    breakpoint inside piece (a, b) the activation differs from the interpolation of its
    values at a and b only in the neurons that cross inside the piece, so the Linear's
    output there is the interpolation of its outputs at a and b plus one column of the
    weight per crossing neuron (a plain product where many neurons cross). Returns
    ``(flips or None, output of the Linear)``. With ``lin=None`` the activation's output
    is not needed (only its bits): nothing after the split is computed.
    """
    z = env.pop(node_in)
    if lin is None:
        z = z.reshape(z.shape[0], -1)
    tie_tol = settings.tie_tol
    act_form = _compiled_act(step, z, lin, tie_tol)
    if act_form is not None:
        return _act_linear_compiled(state, step, z.contiguous(), lin, act_form, settings.tol)
    _check_finite(z, step.node)
    assert step.module is not None  # an activation step holds its module
    V, F_ = z.shape
    zmag = None if state.err is None else _row_mag(z)
    cut = _cut(z, state, step, settings)
    levels, pos, pieces, neurons, plan, nxt_old = cut.levels, cut.pos, cut.pieces, cut.neurons, cut.plan, cut.nxt_old
    if plan is not None and zmag is not None:
        _err_split(
            state,
            _row_mag(_act_out(step.module, z)),
            plan[0],
            nxt_old,
            z.dtype,
            max(map(abs, levels), default=0.0),
            zmag,
            F_,
        )
    snap: tuple[Tensor, ...] | None = None
    if cut.rows is not None:  # crossing neurons are at their level at their breakpoints
        snap = _snap_list(state, cut, z)
        old_rows = (snap[0] < V).nonzero().squeeze(1)
        new_rows = (snap[0] >= V).nonzero().squeeze(1)
        _snap(z, *(a.index_select(0, old_rows) for a in snap))
        snap = tuple(a.index_select(0, new_rows) for a in snap)
        snap = (snap[0] - V, *snap[1:])  # (new breakpoint, neuron, level, za, zb)
    if plan is None:
        if lin is not None:
            y = _act_inplace(step.module, z)
            out = lin(y)
            _zero_round_off(lin, out, y, state)
        else:
            out = None
    elif lin is None and pos is None:
        out = None
    else:
        g_piece, g_s = plan
        assert snap is not None  # breakpoints are inserted at crossings only
        g_next = nxt_old.index_select(0, g_piece)
        s_ = g_s.to(z.dtype).unsqueeze(1)
        # crossing neurons of every piece; a neuron crossing several levels in one piece counts once
        key = pieces * F_ + neurons
        key = torch.unique(key) if len(levels) > 1 else torch.sort(key).values
        cp, cn = key // F_, key % F_
        per_piece = torch.bincount(cp, minlength=V)
        cstart = (torch.cumsum(per_piece, 0) - per_piece).index_select(0, g_piece)
        npair = per_piece.index_select(0, g_piece)
        dense = npair > _SPARSE_MAX
        all_dense = bool(dense.all())
        g_sp = (~dense).nonzero().squeeze(1)
        np_sp = npair.index_select(0, g_sp)
        # (g_rep, k): every new breakpoint of a sparse piece with every neuron crossing in its piece
        g_rep = torch.repeat_interleave(g_sp, np_sp)
        first = torch.cumsum(np_sp, 0) - np_sp
        c_idx = torch.repeat_interleave(cstart.index_select(0, g_sp) - first, np_sp) + torch.arange(
            g_rep.numel(), device=z.device
        )
        k = cn.index_select(0, c_idx)
        gp = g_piece.index_select(0, g_rep)
        gq = g_next.index_select(0, g_rep)
        s_k = g_s.to(z.dtype).index_select(0, g_rep)
        dg = None if all_dense else dense.nonzero().squeeze(1)
        yk = yd = None
        if _elementwise(step.module):
            # At a new breakpoint of a sparse piece only the crossing neurons need their value:
            # every other neuron stays on one side of the threshold on the whole piece, so its
            # bit there is pos[a] | pos[b]. Dense pieces get whole rows.
            zk = torch.lerp(_at(z, gp, k), _at(z, gq, k), s_k)
            zd = _rows_at(z, g_piece, g_next, s_, dg)
            _snap_pairs(zk, g_rep, k, F_, *snap)
            if dg is None:
                _snap(zd, *snap)
            elif dg.numel():
                at_dense = torch.full((g_piece.numel(),), -1, dtype=torch.int64, device=z.device)
                at_dense[dg] = torch.arange(dg.numel(), device=z.device)
                r = at_dense.index_select(0, snap[0])
                sel = (r >= 0).nonzero().squeeze(1)
                _snap(zd, r.index_select(0, sel), *(a.index_select(0, sel) for a in snap[1:]))
            if pos is not None:
                if dg is None:
                    pos_new = _signs(zd, tie_tol)
                else:
                    pos_new = pos.index_select(0, g_piece).logical_or_(pos.index_select(0, g_next))
                    pos_new.view(-1).index_put_((g_rep * pos.shape[1] + k,), zk > tie_tol)
                    if dg.numel():
                        pos_new.index_copy_(0, dg, _signs(zd, tie_tol))
                pos = torch.cat([pos, pos_new])
            if lin is not None:
                yk, yd = step.module(zk), step.module(zd)
        else:
            znew = _rows_at(z, g_piece, g_next, s_, None)
            _snap(znew, *snap)
            if pos is not None:
                pos = torch.cat([pos, _signs(znew, tie_tol)])
            if lin is not None:
                ynew = step.module(znew)
                yk = _at(ynew, g_rep, k)
                yd = ynew if dg is None else ynew.index_select(0, dg)
        if lin is None:
            out = None
        else:
            assert yk is not None and yd is not None  # computed above whenever there is a Linear
            new = _NewRows(g_piece, g_next, s_, g_rep, k, gp, gq, s_k, dg, all_dense)
            out, y = _linear_at_new_rows(step, lin, z, new, yk, yd)
            if not all_dense:
                _exact_cancellations(lin, out, V, y, new, yk, yd)
            _zero_round_off(lin, out, y, state, (g_piece, g_next))
    if cut.thr is None:
        return None, out
    assert pos is not None  # a layer with bits has signs (Cut.pos)
    return _flips(state, cut, pos, state.n_rows - V, F_), out


def _exact_cancellations(
    lin: nn.Linear, out: Tensor, V: int, y: Tensor, new: _NewRows, yk: Tensor | None, yd: Tensor
) -> None:
    """Outputs of the Linear at the new breakpoints that cancel to round-off, or equal their value at
    an end of the piece up to round-off, computed again as a plain product of the activation there.

    The interpolation-and-correction sums leave ±1e-17 where the value is 0 exactly (bias-free
    layers after inactive ReLUs, a saturated Hardtanh cancelled by the bias, quantised
    weights); the next activation would read bit 1 there on a piece where the pre-activation
    is 0. An output within a few units of round-off of 0, relative to a bound of its terms
    (|y(a)| + |y(b)| + |bias| + the smaller of ‖w‖₁·max|activation| and ‖w‖₂·‖activation‖₂ over
    the piece's ends), is computed again from the activation
    at the new breakpoint (interpolated; exact for the crossing neurons, ``yk`` at the pairs
    (``g_rep``, ``k``), and on the dense rows ``dg``, ``yd``)."""
    g_piece, g_next, s_, g_rep, k, dg = new.g_piece, new.g_next, new.s_, new.g_rep, new.k, new.dg
    out_new = out[V:]
    G = out_new.shape[0]
    if G == 0:
        return
    w = lin.weight.detach()
    b = torch.zeros(lin.out_features, dtype=out.dtype, device=out.device) if lin.bias is None else lin.bias.detach()
    old = out[:V]
    # Σ|w||φ| at a, b and the new breakpoint: |φ| there is at most max(|φ(a)|, |φ(b)|) neuron by neuron,
    # so the sum is at most ‖w‖₁·max|φ| and (Cauchy-Schwarz) ‖w‖₂·‖max(|φ(a)|, |φ(b)|)‖₂
    yabs = y.abs().amax(1)
    ynorm = torch.linalg.vector_norm(y, dim=1)
    ymax = torch.maximum(yabs.index_select(0, g_piece), yabs.index_select(0, g_next))
    ynorm = torch.hypot(ynorm.index_select(0, g_piece), ynorm.index_select(0, g_next))
    terms = torch.minimum(torch.outer(ymax, w.abs().sum(1)), torch.outer(ynorm, torch.linalg.vector_norm(w, dim=1)))
    ya, yb = old.index_select(0, g_piece), old.index_select(0, g_next)
    bound = ya.abs().add_(yb.abs()).add_(b.abs()).add_(terms).mul_(_cancel_rtol(out.dtype))
    # candidates: within the bound of 0 or of an end's value
    near = torch.minimum(torch.minimum(out_new.abs(), (out_new - ya).abs()), (out_new - yb).abs()) <= bound
    rows = near.any(1).nonzero().squeeze(1)
    if rows.numel() == 0:
        return
    # of those: near 0, or at an end's value where the interpolation of the ends would have moved away
    # from it (constant on one side of the breakpoint); not merely close to an end
    v, ya, yb, bound = (t.index_select(0, rows) for t in (out_new, ya, yb, bound))
    d = (yb - ya).abs()
    s = s_.to(out.dtype).index_select(0, rows)
    flagged = (
        (v.abs() <= bound)
        | (((v - ya).abs() <= bound) & (s * d > 4 * bound))
        | (((v - yb).abs() <= bound) & ((1 - s) * d > 4 * bound))
    )
    keep = flagged.any(1).nonzero().squeeze(1)
    if keep.numel() == 0:
        return
    rows, flagged, sub = rows.index_select(0, keep), flagged.index_select(0, keep), v.index_select(0, keep)
    # the activation at those rows: interpolated, with the exact values of the crossing neurons
    act = torch.lerp(
        y.index_select(0, g_piece.index_select(0, rows)),
        y.index_select(0, g_next.index_select(0, rows)),
        s_.index_select(0, rows),
    )
    F_ = y.shape[1]
    at = torch.full((G,), -1, dtype=torch.int64, device=out.device)
    at[rows] = torch.arange(rows.numel(), device=out.device)
    if yk is not None and yk.numel():
        r = at.index_select(0, g_rep)
        sel = (r >= 0).nonzero().squeeze(1)
        act.view(-1).index_put_((r.index_select(0, sel) * F_ + k.index_select(0, sel),), yk.index_select(0, sel))
    if dg is not None and dg.numel():
        r = at.index_select(0, dg)
        sel = (r >= 0).nonzero().squeeze(1)
        act.index_copy_(0, r.index_select(0, sel), yd.index_select(0, sel))
    redo = torch.addmm(b, act, w.t()) if lin.bias is not None else act @ w.t()
    out_new.index_copy_(0, rows, torch.where(flagged, redo, sub))


def _act_linear_compiled(state: _State, step: _Step, z: Tensor, lin: nn.Linear | None, act_form: _ActForm, tol: float):
    """:func:`_act_linear` by the compiled kernels."""
    V = z.shape[0]
    zmag = None if state.err is None else _row_mag(z)
    nxt_old = state.nxt
    split = _compiled_split(state, step, z, act_form, tol, lin is not None)
    g_piece = torch.from_numpy(split.g_piece)
    if zmag is not None and g_piece.numel():  # z holds the activation now (or its input, without lin)
        _err_split(
            state,
            _row_mag(z) if lin is not None else zmag,
            g_piece,
            nxt_old,
            z.dtype,
            float(np.abs(act_form.levels).max(initial=0.0)),
            zmag,
            z.shape[1],
        )
    if lin is None:
        return split.rec, None
    out = torch.empty(state.n_rows, lin.out_features, dtype=z.dtype)
    _linear(lin, z, out[:V])  # z holds the activation now
    ymag = _row_mag(z)
    if state.n_rows > V:
        w, wt, bias, wnorm = _linear_form(step, lin)
        _kernels.new_rows_linear(
            out.numpy(),
            V,
            wt,
            act_form.levels,
            act_form.seg_slope,
            split.plan,
            split.g_s,
            z.numpy(),
            act_form.seg_off,
            bias,
            _cancel_rtol(z.dtype),
            w,
            wnorm,
            ymag.numpy(),
        )
    _zero_round_off(lin, out, z, state, (g_piece, nxt_old.index_select(0, g_piece)), ymag)
    return split.rec, out


def _linear_form(step: _Step, lin: nn.Linear):
    """The Linear after an activation as :func:`spacefold._core.walk._kernels.new_rows_linear` takes it: its
    weight (contiguous), the weight transposed (contiguous), its bias, and the Euclidean norm of the
    weights of every output (float64). Kept on the step while the parameters are unchanged."""
    wgt, b = lin.weight, lin.bias
    key = (wgt.data_ptr(), wgt._version, None if b is None else (b.data_ptr(), b._version))
    form = step.linear_form.get(key)
    if form is None:
        w = wgt.detach()
        bias = np.zeros(lin.out_features) if b is None else b.detach().double().numpy()
        w64 = w.double()
        form = (
            w.contiguous().numpy(),
            w.t().contiguous().numpy(),
            bias,
            torch.linalg.vector_norm(w64, dim=1).numpy(),
        )
        step.linear_form = {key: form}  # one kept (the parameters may change); replaced whole for threads
    return form


def _linear_at_new_rows(
    step: _Step, lin: nn.Linear, z: Tensor, new: _NewRows, yk: Tensor, yd: Tensor
) -> tuple[Tensor, Tensor]:
    """The Linear after an activation at the old rows (a product) and the new ones (interpolated
    and corrected by the crossing neurons' weight columns, or a product on dense rows), and the
    activation at the old rows. ``yk``: the activation at the pairs of ``new``; ``yd``: at its dense rows."""
    g_piece, g_next, s_, g_rep, k, dg = new.g_piece, new.g_next, new.s_, new.g_rep, new.k, new.dg
    gp, gq, s_k, all_dense = new.gp, new.gq, new.s_k, new.all_dense
    V, G = z.shape[0], g_piece.numel()
    assert step.module is not None  # an activation step holds its module
    y = _act_inplace(step.module, z)
    out = torch.empty(V + G, lin.out_features, dtype=z.dtype, device=z.device)
    _linear(lin, y, out[:V])
    out_new = out[V:]
    if all_dense:  # e.g. the first activation, whose pieces are the whole segments
        _linear(lin, yd, out_new)
    else:
        old = out[:V]  # the source rows, disjoint from out_new
        torch.index_select(old, 0, g_piece, out=out_new)
        out_new.lerp_(old.index_select(0, g_next), s_)
        if g_rep.numel():
            delta = (yk - torch.lerp(_at(y, gp, k), _at(y, gq, k), s_k)).unsqueeze(1)
            wt = lin.weight.detach().t().contiguous()
            out_new.index_add_(0, g_rep, wt.index_select(0, k).mul_(delta))
        assert dg is not None  # None only when every piece is dense
        if dg.numel():
            out_new.index_copy_(0, dg, lin(yd))
    return out, y
