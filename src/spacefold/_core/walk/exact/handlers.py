"""The walk over a compiled program's steps (docs/method.md, 'The exact walk', steps 2-4).

:func:`_run` applies the steps after the affine prefix to the breakpoint values of one sub-batch.
Each kind of step (``program.STEP_KINDS``) has one handler in ``HANDLERS``, which reads and
updates the walk in progress (:class:`_Walk`); the nonlinear ones call :mod:`.activation`,
:mod:`.fused` and :mod:`.maxpool`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import Tensor, fx, nn

from .activation import _act_inplace, _split_activation
from .assemble import _BitRecord
from .fused import _act_linear, _zero_pooled_round_off, _zero_round_off
from .maxpool import _split_maxpool
from .program import ExactProgram, _Step
from .roundoff import _AVGPOOLS, _err_affine, _err_pool, _err_start
from .settings import WalkSettings
from .state import _State


@dataclass(slots=True)
class _Walk:
    """One sub-batch's walk in progress: the program, the values of its live nodes at every
    breakpoint (``env``), the breakpoints, the settings, the bits recorded so far, and the node
    whose value a fused activation has computed already (``skip``)."""

    prog: ExactProgram
    env: dict
    state: _State
    settings: WalkSettings
    records: list[_BitRecord] = field(default_factory=list)
    skip: fx.Node | None = None


def _dynamic_input(walk: _Walk, step: _Step) -> fx.Node:
    """The one input-dependent argument of an activation or pooling step."""
    (node_in,) = [a for a in step.node.all_input_nodes if walk.prog.dynamic.get(a, False)]
    return node_in


def _keep(walk: _Walk, step: _Step) -> None:
    """Inputs and constants: their values are in the environment already."""


def _affine(walk: _Walk, step: _Step) -> None:
    """An affine node, applied to the rows directly (exact: affine between breakpoints); the outputs of
    an ``nn.Linear`` within round-off of 0 are 0 (see :func:`.fused._zero_round_off`)."""
    out = walk.prog._eval(step, walk.env)
    dyn = [walk.env[a] for a in step.node.all_input_nodes if walk.prog.dynamic.get(a, False)]
    x = dyn[0] if len(dyn) == 1 and isinstance(dyn[0], Tensor) else None
    if (
        type(step.module) is nn.Linear
        and isinstance(out, Tensor)
        and out.dim() == 2
        and x is not None
        and x.dim() == 2
        and x.shape[0] == out.shape[0] == walk.state.n_rows
    ):
        _zero_round_off(step.module, out, x, walk.state)
    else:
        if (
            isinstance(step.module, _AVGPOOLS)
            and x is not None
            and isinstance(out, Tensor)
            and out.dim() >= 2
            and x.shape[0] == out.shape[0] == walk.state.n_rows
        ):
            _zero_pooled_round_off(step.module, out, x, walk.state)
        _err_affine(walk.state, step.module, step.node.target, x, len(dyn))
    walk.env[step.node] = out


def _activation(walk: _Walk, step: _Step) -> None:
    """A piecewise-linear activation: split at its kinks, record its flips (bit layers), and apply it,
    fused with the ``nn.Linear`` after it where that is its only user, or not at all where only its
    bits are needed."""
    prog, env, state = walk.prog, walk.env, walk.state
    node_in = _dynamic_input(walk, step)
    # the values are checked (_check_finite) by the split: in the compiled kernel, in the
    # pass that reads them anyway, or before the torch operations
    used = any(u in prog.live for u in step.node.users)
    lin = prog.fusable.get(step.node) if used else None
    others = [n for n in env if n is not node_in and prog.dynamic.get(n, False)]
    if others:
        state.err = None  # the bound follows one tensor (see .roundoff)
    if not others and not used:  # only the bits of this activation are needed
        rec, _ = _act_linear(env, state, node_in, step, None, walk.settings)
    elif lin is not None and not others and env[node_in].dim() == 2:
        rec, out = _act_linear(env, state, node_in, step, lin[1], walk.settings)
        env[lin[0]] = out
        walk.skip = lin[0]
    else:
        rec = _split_activation(prog, env, state, node_in, step, walk.settings)
        x = env[node_in]
        if node_in in step.free_after and not _shared(x, env, node_in):
            assert step.module is not None  # an activation step holds its module
            env[step.node] = _act_inplace(step.module, x)  # its input is not needed after: no new tensor
        else:
            env[step.node] = prog._eval(step, env)
    if rec is not None:
        walk.records.append(rec)


def _shared(x: Tensor, env: dict, node: fx.Node) -> bool:
    """Whether another value of ``env`` than ``env[node]`` holds the memory of ``x``."""
    ptr = x.untyped_storage().data_ptr()
    return any(
        n is not node and isinstance(v, Tensor) and v.untyped_storage().data_ptr() == ptr for n, v in env.items()
    )


def _maxpool(walk: _Walk, step: _Step) -> None:
    """Max pooling: split until every window's arg-max is constant on every piece, then pool (the
    split gives the output, from the arg-max it found)."""
    walk.env[step.node] = _split_maxpool(walk.prog, walk.env, walk.state, step, walk.settings)
    _err_pool(walk.state, step.module)


# kind of step -> its handler; "output" ends the walk
HANDLERS: dict[str, Callable[[_Walk, _Step], None]] = {
    "input": _keep,
    "const": _keep,
    "affine": _affine,
    "act": _activation,
    "maxpool": _maxpool,
}


def _run(prog: ExactProgram, env: dict, state: _State, start: int, settings: WalkSettings) -> list[_BitRecord]:
    """Apply the steps from ``start`` on to the values ``env`` at the breakpoints ``state``; returns
    the bits of every activation of the pattern, in the order of the forward pass. Values are
    freed after their last use; nodes no activation of the pattern depends on are not computed."""
    walk = _Walk(prog, env, state, settings)
    live, dynamic = prog.live, prog.dynamic
    _err_start(state, [v for n, v in env.items() if dynamic.get(n, False)])
    for s in prog.steps[start:]:
        if s.kind == "output":
            break
        if s.node is not walk.skip and s.node in live:
            HANDLERS[s.kind](walk, s)
        for n in s.free_after:
            if dynamic.get(n, False):
                env.pop(n, None)
        for v in env.values():
            if isinstance(v, Tensor) and v.dim() and v.shape[0] == state.n_rows:
                state.peak_bytes = max(state.peak_bytes, v.numel() * v.element_size())
    return walk.records
