"""The walk over a compiled program's steps (docs/method.md, 'The exact walk', steps 3-5).

:func:`_run` applies the steps after the affine prefix to the breakpoint values of one
sub-batch; each kind of step has its handler.
"""

from __future__ import annotations

from torch import Tensor

from .activation import _split_activation
from .assemble import _BitRecord
from .fused import _act_linear
from .limits import _check_finite
from .maxpool import _split_maxpool
from .program import ExactProgram
from .state import _State


def _run(prog: ExactProgram, env: dict, state: _State, start: int, tie_tol: float, tol: float,
         accept: bool = False) -> list[_BitRecord]:
    records: list[_BitRecord] = []
    skip = None
    for s in prog.steps[start:]:
        if s.node is skip or s.kind in ("input", "const"):
            pass
        elif s.kind == "output":
            break
        elif s.node not in prog.live:
            pass
        elif s.kind == "affine":
            env[s.node] = prog._eval(s, env)
        elif s.kind == "act":
            (node_in,) = [a for a in s.node.all_input_nodes if prog.dynamic.get(a, False)]
            # the values are checked (_check_finite) by the split: in the compiled kernel, in the
            # pass that reads them anyway, or before the torch operations
            used = any(u in prog.live for u in s.node.users)
            lin = prog.fusable.get(s.node) if used else None
            others = [n for n in env if n is not node_in and prog.dynamic.get(n, False)]
            if not others and not used:  # only the bits of this activation are needed
                rec, _ = _act_linear(env, state, node_in, s, None, tie_tol, tol)
            elif lin is not None and not others and env[node_in].dim() == 2:
                rec, out = _act_linear(env, state, node_in, s, lin[1], tie_tol, tol)
                env[lin[0]] = out
                skip = lin[0]
            else:
                rec = _split_activation(prog, env, state, node_in, s, tie_tol, tol)
                env[s.node] = prog._eval(s, env)
            if rec is not None:
                records.append(rec)
        elif s.kind == "maxpool":
            (node_in,) = [a for a in s.node.all_input_nodes if prog.dynamic.get(a, False)]
            _check_finite(env[node_in], s.node)
            _split_maxpool(prog, env, state, s, tol, accept=accept)
            env[s.node] = prog._eval(s, env)
        for n in s.free_after:
            if prog.dynamic.get(n, False):
                env.pop(n, None)
        for v in env.values():
            if isinstance(v, Tensor) and v.dim() and v.shape[0] == state.n_rows:
                state.peak_bytes = max(state.peak_bytes, v.numel() * v.element_size())
    return records
