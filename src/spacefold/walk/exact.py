"""The exact region walk for piecewise-linear networks (docs/method.md, 'The exact walk').

Along a segment γ(t) = (1 − t)·x1 + t·x2 every pre-activation of a piecewise-linear
network is piecewise affine in t. The walk is computed layer by layer, for all
segments of a batch at once ("layer-wise splitting", docs/method.md, 'The exact walk'):

1. The model is traced with ``torch.fx`` into a graph of modules and functions.
2. Every tensor of the graph is held as its values at the *breakpoints* of all paths
   together: a tensor ``(V, *feature_shape)``, one row per breakpoint. A path starts
   with the two breakpoints t = 0 and t = 1; new breakpoints are appended as rows and
   linked to their neighbours on the path (``nxt``, ``prv``), so no tensor is ever
   reordered. Everything before the first activation is affine in the input and is
   evaluated at the two ends only (for a data set, once per input:
   :meth:`ExactProgram.prefix`).
3. Affine nodes (Linear, Conv, BatchNorm in eval mode, average pooling, Flatten,
   Dropout and Identity in eval mode, additions, reshapes, concatenations, ...) are
   applied to the rows directly. That is exact: between consecutive breakpoints every
   tensor is affine in t, so its values at the breakpoints determine it.
4. At a piecewise-linear activation (ReLU, LeakyReLU, PReLU, RReLU in eval mode,
   Hardtanh, ReLU6) every piece (t_a, t_b) of every path on which some neuron's input
   crosses a kink of the activation (or the bit threshold ``tie_tol``) strictly inside
   is split at the crossing t_a + (t_b − t_a)·z_a/(z_a − z_b). Every tensor still
   needed later (the skip branch of a residual block) is interpolated at the new
   breakpoints. Crossings closer than ``tol`` in t become one breakpoint: several
   neurons switching there at once (a step of Hamming distance > 1, which is what χ
   measures). Then the activation is applied. An activation whose only user is an
   ``nn.Linear`` is fused with it: the product runs on the breakpoints that existed
   before the split, and at a new breakpoint the output is interpolated from its
   piece's ends and corrected by one weight column per neuron crossing in the piece
   (a plain product where many neurons cross). At such a breakpoint only the crossing
   neurons are interpolated: every other neuron stays on one side of the threshold on
   the whole piece, so its bit there is the OR of the bits at the piece's ends.
   Values that no activation of the pattern depends on (the logits after the last
   activation, layers after the last selected one) are not computed.
5. Max pooling is piecewise linear as well: a piece on which the arg-max of a window
   changes is split where the two competing inputs are equal, repeatedly, until the
   arg-max is the same at both ends of every piece (then it is constant on the piece,
   the max of affine functions being convex).

Bits (identical in order and meaning to :func:`spacefold.activation_patterns`): a
neuron's bit on a piece is 1 iff its pre-activation is > ``tie_tol`` inside the
piece. Since no crossing lies strictly inside a piece after the split, that is
``(z_a > tie_tol) or (z_b > tie_tol)``, with the crossing neurons set exactly to the
threshold at a new breakpoint. The walk of a segment is the reference walk Γ*
(docs/method.md, 'Walks: three samplers'): the pattern at t = 0, the pattern of every piece in order, the
pattern at t = 1, consecutive duplicates merged. It is stored as the pattern at t = 0
and the list of bit flips (:class:`ExactWalkBatch`); r1, r2 and χ come from the flips,
and patterns are built only when asked for.

On CPUs the built-in activations (ReLU, LeakyReLU, PReLU, RReLU in eval mode, Hardtanh,
ReLU6) are split by a compiled kernel (:mod:`spacefold.walk._kernels`, Numba): one call for
step 4's split, bits and flips. Fused with the ``nn.Linear`` after it, a second kernel
gives the Linear at the new breakpoints from running sums of weight columns instead of a
product. They compute the same walk as the torch operations (tested against each other);
``SPACEFOLD_NUMBA=0`` turns them off.

Paths are processed in sub-batches sized so that the largest tensor of breakpoint
values stays near 16 MB on CPUs (fresh large tensors are page-faulted on every layer;
2 MB, which stays in the cache, when the compiled kernels run every layer) and 512 MB on
accelerators. On a CPU with several torch threads the sub-batches after
the first run concurrently, one per thread, each single-threaded: only the matrix
products would use the threads otherwise, and the many small operations of the walk
would run on one core. For the duration of the call ``torch.set_num_threads`` is then
1 (it is process-wide) and restored afterwards.

Ties [DESIGN]: a pre-activation that touches the threshold at a breakpoint without
crossing it creates no breakpoint (a zero at an isolated t is not recorded except at
t = 0 and t = 1); one that is identically 0 on a piece gives bit 0 and no crossing;
neurons crossing within ``tol`` of each other switch at one breakpoint.

Only *modules* listed in the pattern give bits (as for the hooks of
``activation_patterns``). A functional activation (``F.relu`` in ``forward``) is
nonlinear but cannot be part of the pattern, so the exact walk refuses it, as it
refuses smooth activations (GELU, tanh, ...): use ``method="bisect"`` for those.
"""

from __future__ import annotations

import copy
import operator
import threading
import warnings
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from ..errors import InputError, InputTypeError
from ..patterns import LayerSelector, PatternRecorder, _entry, eval_mode, find_activations, run_model
from . import WalkBatch, _kernels, resolve_tol, segment_points

__all__ = [
    "ExactProgram",
    "ExactWalkBatch",
    "NotPiecewiseLinearError",
    "VerifyResult",
    "compile_model",
    "exact_walks",
    "verify",
]


class NotPiecewiseLinearError(InputTypeError):
    """The model holds an operation the exact walk cannot follow (an :class:`InputTypeError`,
    so also a ``TypeError``)."""


def _refuse(what: str) -> NotPiecewiseLinearError:
    return NotPiecewiseLinearError(
        f"method='exact' cannot walk this model: {what}. The exact walk handles piecewise-linear networks "
        "(Linear, Conv, BatchNorm in eval mode, average and max pooling, Flatten, Dropout/Identity, residual "
        "additions, and the activation modules ReLU, LeakyReLU, PReLU, RReLU, Hardtanh, ReLU6); "
        "use method='bisect' for any other network"
    )


# --------------------------------------------------------------------------- the op tables

_AFFINE_MODULES: tuple[type, ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.Flatten,
    nn.Unflatten,
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.ZeroPad2d,
    nn.ConstantPad1d,
    nn.ConstantPad2d,
    nn.ConstantPad3d,
)
_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_MAXPOOL = (nn.MaxPool1d, nn.MaxPool2d)

# functions / methods that are linear in each dynamic argument when the others are constant
_LINEAR_FUNCS = {
    operator.getitem, operator.neg, operator.pos, operator.mul, operator.truediv, operator.add, operator.sub,
    operator.iadd, operator.isub, operator.imul, operator.itruediv, operator.matmul,
    torch.flatten, torch.reshape, torch.cat, torch.concat, torch.stack, torch.add, torch.sub, torch.mul,
    torch.div, torch.neg, torch.transpose, torch.permute, torch.squeeze, torch.unsqueeze, torch.matmul,
    torch.index_select, torch.narrow, torch.sum, torch.mean, torch.chunk, torch.split, torch.movedim,
    torch.t, torch.mm, torch.unbind,
    F.linear, F.conv1d, F.conv2d, F.conv3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d, F.adaptive_avg_pool3d, F.pad, getattr,
}
_LINEAR_METHODS = {
    "view", "reshape", "flatten", "permute", "transpose", "squeeze", "unsqueeze", "contiguous", "size", "dim",
    "add", "sub", "mul", "div", "neg", "sum", "mean", "index_select", "narrow", "chunk", "split", "t",
    "expand", "expand_as", "view_as", "reshape_as", "clone", "float", "double", "to", "type_as", "unbind",
    "movedim", "matmul", "__getitem__",
}
# of those, the ones allowed to combine several dynamic (t-dependent) arguments
_SUM_FUNCS = {operator.add, operator.sub, operator.iadd, operator.isub, torch.add, torch.sub, torch.cat,
              torch.concat, torch.stack}
_SUM_METHODS = {"add", "sub", "expand_as", "view_as", "reshape_as", "type_as"}
# Affinity is decided per argument. A product is linear in either factor (one of them
# input-dependent); a quotient only in its numerator (1 / h is not affine); every other
# function of the tables only in its first argument (the tensor it reshapes, sums, pools,
# pads or indexes: an input-dependent index, shape or padding is not affine). ``None``: any
# argument may be input-dependent.
_ANY_ARG_FUNCS = _SUM_FUNCS | {operator.mul, operator.imul, operator.matmul, torch.mul, torch.matmul, torch.mm,
                               F.linear, F.conv1d, F.conv2d, F.conv3d}
_ANY_ARG_METHODS = _SUM_METHODS | {"mul", "matmul"}
_FIRST_ARG = (0, "input", "self")


def _dynamic_positions(node: fx.Node, dyn_args: list[fx.Node]) -> list[int | str]:
    """The positions (argument index or keyword) of ``node``'s arguments that hold one of ``dyn_args``."""
    found: list[int | str] = []
    dyn = set(dyn_args)

    def holds(a) -> bool:
        hit = []
        fx.node.map_arg(a, lambda n: hit.append(n in dyn) or n)
        return any(hit)

    for i, a in enumerate(node.args):
        if holds(a):
            found.append(i)
    for k, a in node.kwargs.items():
        if holds(a):
            found.append(k)
    return found


def _non_affine_argument(node: fx.Node, dyn_args: list[fx.Node]) -> str | None:
    """Why ``node`` (a function or method of the affine tables) is not affine in its input-dependent
    arguments, or None when it is."""
    fn = node.target
    name = fn if isinstance(fn, str) else getattr(fn, "__name__", repr(fn))
    method = node.op == "call_method"
    if fn is torch.div or (method and fn == "div"):
        mode = node.kwargs.get("rounding_mode")
        if mode is not None:
            return f"{name} with rounding_mode={mode!r} (node '{node.name}') rounds, which is not affine"
    # casting to an integer or boolean type rounds
    for a in list(node.args) + list(node.kwargs.values()):
        if isinstance(a, torch.dtype) and not (a.is_floating_point or a.is_complex):
            return f"casting to {a} ({name}, node '{node.name}') rounds, which is not affine"
    if (fn in _ANY_ARG_METHODS) if method else (fn in _ANY_ARG_FUNCS):
        return None
    positions = _dynamic_positions(node, dyn_args)
    bad = [p for p in positions if p not in _FIRST_ARG]
    if not bad:
        return None
    if (method and fn == "div") or (not method and fn in (operator.truediv, operator.itruediv, torch.div)):
        return f"division by an input-dependent tensor (node '{node.name}') is not affine"
    return f"{name} with an input-dependent argument {bad[0]!r} (node '{node.name}') is not affine"


def _kinks(module: nn.Module) -> list[float]:
    """Where a piecewise-linear activation module is not affine (levels of its input)."""
    if isinstance(module, nn.Hardtanh):  # includes ReLU6
        return [float(module.min_val), float(module.max_val)]
    if isinstance(module, (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.RReLU)):
        return [0.0]
    e = _entry(module)
    if e is not None and e.piecewise_linear:
        return [0.0]  # registered with piecewise_linear=True: kinks at 0 by contract
    raise _refuse(f"activation {type(module).__name__} is not piecewise linear")


# a new breakpoint whose piece is crossed by more neurons than this gets a plain product
_SPARSE_MAX = 4
# activations the compiled kernels take (elementwise, of known form)
_KERNEL_ACTS = (nn.ReLU, nn.LeakyReLU, nn.RReLU, nn.PReLU, nn.Hardtanh, nn.ReLU6)


def _arg_nodes(node: fx.Node) -> list[fx.Node]:
    """The graph nodes among ``node``'s arguments, with repetitions."""
    occ: list[fx.Node] = []

    def visit(a: fx.Node) -> fx.Node:
        occ.append(a)
        return a

    fx.node.map_arg((node.args, node.kwargs), visit)
    return occ


class _Tracer(fx.Tracer):
    """Keeps activation modules with a binarisation rule as leaves (like torch.nn modules)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if _entry(m) is not None:
            return True
        return super().is_leaf_module(m, qualname)


@dataclass
class _Step:
    node: fx.Node
    kind: str  # "input", "const", "affine", "act", "maxpool", "output"
    dynamic: bool
    module: nn.Module | None = None
    bit_layer: bool = False
    kinks: list[float] = field(default_factory=list)
    free_after: list[fx.Node] = field(default_factory=list)
    kernel_form: dict = field(default_factory=dict)  # see _compiled_act
    linear_form: dict = field(default_factory=dict)  # see _linear_form


class ExactProgram:
    """A model compiled for the exact walk: its fx graph, checked and annotated.

    ``steps`` are the graph nodes in execution order. ``prefix_end`` is the index of
    the first step that needs the breakpoints (the first activation or max pool):
    everything before it is affine in the input, so for a data set it can be
    evaluated once per input (:meth:`prefix`) instead of once per path.
    """

    def __init__(self, model: nn.Module, layers: LayerSelector = None):
        # a weak reference: programs are cached per model, and must not keep it alive
        self._model = weakref.ref(model)
        self.layers = layers
        selected = find_activations(model, layers)
        selected_ids = {id(m) for _, m in selected}
        try:
            graph = _Tracer().trace(model)
        except Exception as err:
            raise NotPiecewiseLinearError(
                f"method='exact' needs a model that torch.fx can trace, and tracing {type(model).__name__} failed "
                f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); data-dependent control "
                "flow in forward is the usual cause. Use method='bisect', which only runs the model"
            ) from err
        self.graph = graph
        modules = dict(model.named_modules())
        steps: list[_Step] = []
        dynamic: dict[fx.Node, bool] = {}
        n_inputs = 0
        shapeish: set[fx.Node] = set()  # sizes and shapes of input-dependent tensors
        for node in graph.nodes:
            dyn_all = [a for a in node.all_input_nodes if dynamic.get(a, False)]
            dyn = bool(dyn_all)
            dyn_args = [a for a in dyn_all if a not in shapeish]
            if dyn_args:  # count repeated arguments (h * h) as often as they occur
                dyn_args = [a for a in _arg_nodes(node) if a in dyn_args]
            shape_op = (node.op == "call_method" and node.target in ("size", "dim")) or (
                node.op == "call_function" and node.target is getattr)
            if dyn and (not dyn_args or shape_op):
                shapeish.add(node)
            if node.op == "placeholder":
                n_inputs += 1
                if n_inputs > 1 and node.users:  # extra forward arguments are fine when unused
                    raise _refuse(f"forward takes more than one tensor input ('{node.name}')")
                steps.append(_Step(node, "input", n_inputs == 1))
                dynamic[node] = n_inputs == 1
                continue
            if node.op == "output":
                steps.append(_Step(node, "output", dyn))
                dynamic[node] = dyn
                continue
            if node.op == "get_attr" or not dyn:
                steps.append(_Step(node, "const", False))
                dynamic[node] = False
                continue
            dynamic[node] = True
            if node.op == "call_module":
                mod = modules[node.target]
                if _entry(mod) is not None:
                    kinks = _kinks(mod)
                    if isinstance(mod, nn.RReLU) and mod.training:
                        raise _refuse("RReLU in training mode is random")
                    steps.append(_Step(node, "act", True, mod, id(mod) in selected_ids, kinks))
                elif isinstance(mod, _MAXPOOL):
                    if mod.ceil_mode or mod.return_indices:
                        raise _refuse(f"{type(mod).__name__} with ceil_mode or return_indices at '{node.target}'")
                    steps.append(_Step(node, "maxpool", True, mod))
                elif isinstance(mod, _BATCHNORM):
                    if mod.running_mean is None:
                        raise _refuse(f"BatchNorm '{node.target}' has no running statistics (not affine in eval)")
                    steps.append(_Step(node, "affine", True, mod))
                elif isinstance(mod, _AFFINE_MODULES):
                    steps.append(_Step(node, "affine", True, mod))
                else:
                    raise _refuse(f"module '{node.target}' ({type(mod).__name__}) is not a known piecewise-linear "
                                  "layer")
                if len(dyn_args) > 1:
                    raise _refuse(f"module '{node.target}' takes several input-dependent arguments")
                continue
            if not dyn_args:  # computes on the sizes of input-dependent tensors only: constant along a walk
                steps.append(_Step(node, "affine", True))
                continue
            if node.op == "call_function":
                fn = node.target
                name = getattr(fn, "__name__", repr(fn))
                if fn not in _LINEAR_FUNCS:
                    if name in ("relu", "relu_", "leaky_relu", "hardtanh", "relu6", "prelu", "rrelu", "threshold"):
                        raise _refuse(
                            f"the activation {name} is called functionally in forward (node '{node.name}'); "
                            "functional activations are not part of the activation pattern: use activation "
                            "modules such as nn.ReLU"
                        )
                    raise _refuse(f"function {name} (node '{node.name}') is not affine")
                if len(dyn_args) > 1 and fn not in _SUM_FUNCS:
                    raise _refuse(f"{name} of several input-dependent tensors (node '{node.name}') is not affine")
                if fn is F.pad and node.kwargs.get("mode", "constant") != "constant":
                    mode = node.kwargs.get("mode")
                    if mode not in ("reflect", "replicate", "circular"):
                        raise _refuse(f"F.pad mode {mode!r}")
                why = _non_affine_argument(node, dyn_args)
                if why is not None:
                    raise _refuse(why)
                steps.append(_Step(node, "affine", True))
                continue
            if node.op == "call_method":
                if node.target not in _LINEAR_METHODS:
                    raise _refuse(f"method .{node.target}() (node '{node.name}') is not affine")
                if len(dyn_args) > 1 and node.target not in _SUM_METHODS:
                    raise _refuse(f".{node.target}() of several input-dependent tensors (node '{node.name}')")
                why = _non_affine_argument(node, dyn_args)
                if why is not None:
                    raise _refuse(why)
                steps.append(_Step(node, "affine", True))
                continue
            raise _refuse(f"graph node {node.op} '{node.name}'")
        # liveness: free every dynamic value after its last use
        last_use: dict[fx.Node, int] = {}
        index = {s.node: k for k, s in enumerate(steps)}
        for s in steps:
            for a in s.node.all_input_nodes:
                last_use[a] = max(last_use.get(a, -1), index[s.node])
        for node, k in last_use.items():
            steps[k].free_after.append(node)
        self.steps = steps
        self.dynamic = dynamic
        self.selected = selected
        pe = len(steps)
        for k, s in enumerate(steps):
            if s.kind in ("act", "maxpool"):
                pe = k
                break
        self.prefix_end = pe
        # activation -> nn.Linear pairs that can be fused: the activation's input and output
        # each feed only the next node
        self.fusable: dict[fx.Node, tuple[fx.Node, nn.Linear]] = {}
        by_node = {s.node: s for s in steps}
        for s in steps:
            if s.kind != "act" or len(s.node.users) != 1:
                continue
            (user,) = s.node.users
            us = by_node[user]
            if user.op != "call_module" or not isinstance(us.module, nn.Linear) or len(user.all_input_nodes) != 1:
                continue
            (src,) = [a for a in s.node.all_input_nodes if dynamic.get(a, False)]
            if len(src.users) == 1:
                self.fusable[s.node] = (user, us.module)
        # values some activation of the pattern depends on; the others (the logits after the
        # last activation, say) are never computed along the walk
        self.live: set[fx.Node] = set()
        for s in reversed(steps):
            if (s.kind == "act" and s.bit_layer) or any(u in self.live for u in s.node.users):
                self.live.add(s.node)
        # every activation can run on the compiled kernels (CPU): a built-in type, fused with
        # the Linear after it or with nothing after it that is needed
        self.kernel_friendly = all(
            type(s.module) in _KERNEL_ACTS
            and (s.node in self.fusable or not any(u in self.live for u in s.node.users))
            for s in steps if s.kind == "act") and not any(s.kind == "maxpool" for s in steps)
        if not any(s.kind == "act" and s.bit_layer for s in steps):
            raise _refuse("the traced graph calls none of the selected activation modules")

    @property
    def model(self) -> nn.Module | None:
        return self._model()

    # ----------------------------------------------------------------------- execution helpers

    def _eval(self, step: _Step, env: dict) -> object:
        node = step.node
        args = fx.node.map_arg(node.args, lambda n: env[n])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
        if node.op == "get_attr":
            obj = self.model
            if obj is None:
                raise RuntimeError("the model of this ExactProgram no longer exists")
            for part in node.target.split("."):
                obj = getattr(obj, part)
            return obj
        if node.op == "call_module":
            return step.module(*args, **kwargs)
        if node.op == "call_function":
            return node.target(*args, **kwargs)
        if node.op == "call_method":
            self_obj, *rest = args
            return getattr(self_obj, node.target)(*rest, **kwargs)
        raise AssertionError(node.op)

    def _consts(self) -> dict:
        env: dict = {}
        for s in self.steps:
            if s.kind == "const":
                env[s.node] = self._eval(s, env)
        return env

    def prefix(self, x: Tensor) -> list[Tensor]:
        """Values at inputs ``x`` of the tensors alive when the first split happens.

        These are affine functions of the input, so along a segment they are the
        interpolation of their values at the two ends (docs/method.md, 'The exact walk').
        """
        env = self._consts()
        for s in self.steps[: self.prefix_end]:
            if s.kind == "input":
                env[s.node] = x if s.dynamic else None
            elif s.kind != "const":
                env[s.node] = self._eval(s, env)
        return [env[n] for n in self._live_at_prefix()]

    def _live_at_prefix(self) -> list[fx.Node]:
        done = {s.node for s in self.steps[: self.prefix_end]}
        live = []
        for s in self.steps[: self.prefix_end]:
            if not self.dynamic.get(s.node, False):
                continue
            if any(u not in done for u in s.node.users):
                live.append(s.node)
        return live


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def compile_model(model: nn.Module, layers: LayerSelector = None) -> ExactProgram:
    """The :class:`ExactProgram` of ``model`` (cached per model, layer selection and
    module structure: replacing a submodule compiles the model again)."""
    key = (tuple(name for name, _ in find_activations(model, layers)),
           tuple((name, id(m)) for name, m in model.named_modules()))
    per_model = _CACHE.get(model)
    if per_model is None:
        per_model = {}
        _CACHE[model] = per_model
    prog = per_model.get(key)
    if prog is None:
        prog = ExactProgram(model, layers)
        per_model[key] = prog
    return prog


# --------------------------------------------------------------------------- breakpoint state


class _State:
    """Breakpoints of all paths, stored in creation order and linked along each path.

    Row r is a breakpoint at ``t[r]``; ``nxt[r]`` is the next
    breakpoint of the same path (``nxt[r] == r`` at t = 1) and ``prv[r]`` the previous
    one (``prv[r] == r`` at t = 0). Rows 0..B-1 are the starts (t = 0) and rows
    B..2B-1 the ends (t = 1); new breakpoints are appended, so no tensor is ever
    reordered and a row keeps its number to the end.
    """

    def __init__(self, n_paths: int, device: torch.device):
        b = n_paths
        ar = torch.arange(b, device=device)
        self.n_paths = b
        self.t = torch.cat([torch.zeros(b, dtype=torch.float64, device=device),
                            torch.ones(b, dtype=torch.float64, device=device)])
        self.nxt = torch.cat([ar + b, ar + b])
        self.prv = torch.cat([ar, ar])
        self.starts = ar
        self.ends = ar + b
        self.peak_bytes = 0
        self.grown: dict = {}  # tensors of breakpoint values with spare rows (see _interpolate)
        self.n_unresolved = 0  # paths whose max pooling float64 could not resolve (see _split_maxpool)

    @property
    def n_rows(self) -> int:
        return int(self.t.numel())


def _at(x: Tensor, r: Tensor, c: Tensor) -> Tensor:
    """``x[r, c]`` for a contiguous 2-D ``x`` (a flat gather: faster than 2-D indexing)."""
    return x.reshape(-1).index_select(0, r * x.shape[1] + c)


_NUMPY_FLOATS = (torch.float32, torch.float64)
# layers narrower than this are left to torch (NumPy's per-call cost outweighs its speed there)
_NUMPY_MIN_WIDTH = 64
_EPS64 = float(torch.finfo(torch.float64).eps)


def _signs(z: Tensor, tie_tol: float) -> Tensor:
    """``z > tie_tol`` as bool ``(V, F8)``, F rounded up to a multiple of 8 with false columns.

    The padding lets a row of signs be read as 64-bit words (:func:`_sign_changes`).
    """
    V, F_ = z.shape
    F8 = -(-F_ // 8) * 8
    out = torch.empty(V, F8, dtype=torch.bool, device=z.device) if F8 == F_ else \
        torch.zeros(V, F8, dtype=torch.bool, device=z.device)
    if z.device.type == "cpu" and z.dtype in _NUMPY_FLOATS and F_ >= _NUMPY_MIN_WIDTH and not z.requires_grad:
        # NumPy's comparison is vectorised (several times faster than torch's on CPUs) and
        # releases the GIL, so concurrent sub-batches keep both running
        np.greater(z.numpy(), tie_tol, out=out.numpy()[:, :F_])
    else:
        torch.gt(z, tie_tol, out=out[:, :F_])
    return out


def _sign_changes(pos: Tensor, nxt: Tensor) -> tuple[Tensor, Tensor]:
    """(row, neuron) where the sign differs between rows r and ``nxt[r]``, sorted by row.

    Rows are compared as 64-bit words first (one gather of 8 bytes per 64 neurons), and
    only the rows that differ are compared neuron by neuron.
    """
    V, F8 = pos.shape
    if V and pos.device.type == "cpu" and F8 >= _NUMPY_MIN_WIDTH:
        # one bit per neuron (NumPy packs bits fast): a row of 256 neurons is 4 words
        packed = np.packbits(pos.numpy(), axis=1, bitorder="little")
        pad = -packed.shape[1] % 8
        if pad:
            packed = np.pad(packed, ((0, 0), (0, pad)))
        words = torch.from_numpy(packed).view(torch.int64)
    else:
        words = pos.view(torch.int64) if V else pos.new_zeros(0, F8 // 8, dtype=torch.int64)
    if words.shape[1] <= 4:  # word by word: 1-D gathers, much faster than gathering short rows
        diff = None
        for k in range(words.shape[1]):
            w = words[:, k].contiguous()
            d = w != w.index_select(0, nxt)
            diff = d if diff is None else diff.logical_or_(d)
        rows = diff.nonzero().squeeze(1)
    else:
        rows = (words != words.index_select(0, nxt)).any(1).nonzero().squeeze(1)
    if rows.numel() == 0:
        e = rows.new_zeros(0)
        return e, e
    a = pos.index_select(0, rows)
    b = pos.index_select(0, nxt.index_select(0, rows))
    ri, n = (a != b).nonzero().unbind(1)
    return rows.index_select(0, ri), n


def _crossings(z: Tensor, state: _State, levels: list[float], thr: int | None, pos: Tensor | None):
    """Strict crossings of ``levels`` inside the pieces (r, nxt[r]) of ``z`` ``(V, F)``.

    Returns ``(piece, neuron, fraction s, level index, tie_row, tie_neuron)``: the
    crossing of ``levels[lev]`` lies at fraction ``s`` of the piece starting at row
    ``piece``, sorted by piece. ``tie_row``, ``tie_neuron``: rows where a neuron sits
    exactly at the bit threshold (``levels[thr]``, whose signs ``pos`` = z > threshold
    are given) while the other end of the piece is on the other side: possible flips
    without a crossing strictly inside a piece.
    """
    pieces, neurons, fracs, lev = [], [], [], []
    tie_r, tie_n = [], []
    nxt = state.nxt
    for li, k in enumerate(levels):
        if li == thr and pos is not None:
            p, n = _sign_changes(pos, nxt)
        else:
            above = z > k
            cand = above != above.index_select(0, nxt)  # false at t = 1, where nxt[r] == r
            p, n = cand.nonzero().unbind(1)
        if p.numel() == 0:
            continue
        q = nxt.index_select(0, p)
        a = _at(z, p, n) - k
        b = _at(z, q, n) - k
        strict = (a * b) < 0
        if not bool(strict.all()):
            if li == thr:
                at_a = ~strict & (a == 0)
                at_b = ~strict & (b == 0)
                tie_r += [p[at_a], q[at_b]]
                tie_n += [n[at_a], n[at_b]]
            p, n, a, b = p[strict], n[strict], a[strict], b[strict]
        pieces.append(p)
        neurons.append(n)
        fracs.append(a.double() / (a.double() - b.double()))
        lev.append(torch.full_like(p, li))
    e = torch.zeros(0, dtype=torch.int64, device=z.device)
    cat = lambda xs: torch.cat(xs) if xs else e
    return (cat(pieces), cat(neurons), torch.cat(fracs) if fracs else z.new_zeros(0, dtype=torch.float64),
            cat(lev), cat(tie_r), cat(tie_n))


def _split(state: _State, piece: Tensor, tc: Tensor, tol: float):
    """Insert breakpoints at times ``tc`` inside the pieces starting at rows ``piece``.

    Crossings closer than ``tol`` in t share one breakpoint (the first of them), and
    crossings within ``tol`` of an end of their piece use that end. Returns
    ``(plan, row)``: ``plan = (g_piece, g_s)`` (piece start row and fraction of each
    new breakpoint, whose rows are ``V, V+1, ...``), ``None`` when nothing is
    inserted; ``row``: for every crossing, the row of its breakpoint.
    """
    device = piece.device
    q = state.nxt.index_select(0, piece)
    ta = state.t.index_select(0, piece)
    tb = state.t.index_select(0, q)
    near_a = tc - ta <= tol
    near_b = tb - tc <= tol
    keep = ~(near_a | near_b)
    V = state.n_rows
    row = torch.where(near_a, piece, q)
    kidx = keep.nonzero().squeeze(1)
    if kidx.numel() == 0:
        return None, row
    kp, kt = piece[kidx], tc[kidx]
    if tol >= 64 * _EPS64 * (2 * V + 1):
        # one sort on (piece, fraction of the piece): the key resolves fractions down to a few
        # float64 ulps of 2 V, below tol (crossings closer than tol share a breakpoint anyway)
        frac = (kt - ta[kidx]) / (tb[kidx] - ta[kidx])
        o = torch.argsort(kp.double() * 2.0 + frac)
    else:
        o = torch.argsort(kt)
        o = o[torch.argsort(kp[o], stable=True)]
    kp, kt, kidx = kp[o], kt[o], kidx[o]
    new_group = torch.ones_like(kp, dtype=torch.bool)
    if kp.numel() > 1:
        new_group[1:] = (kp[1:] != kp[:-1]) | ((kt[1:] - kt[:-1]) > tol)
        _no_chains(new_group, kt, tol)
    gid = torch.cumsum(new_group.long(), 0) - 1
    first = new_group.nonzero().squeeze(1)
    g_piece = kp.index_select(0, first)
    g_t = kt.index_select(0, first)
    G = g_piece.numel()
    new_rows = torch.arange(V, V + G, device=device)
    row[kidx] = new_rows[gid]
    ga = state.t.index_select(0, g_piece)
    gb = state.t.index_select(0, state.nxt.index_select(0, g_piece))
    g_s = (g_t - ga) / (gb - ga)
    # link: piece start -> first new row -> ... -> last new row -> old next
    same_next = torch.zeros(G, dtype=torch.bool, device=device)
    if G > 1:
        same_next[:-1] = g_piece[1:] == g_piece[:-1]
    old_next = state.nxt.index_select(0, g_piece)
    g_nxt = torch.where(same_next, new_rows + 1, old_next)
    same_prev = torch.zeros(G, dtype=torch.bool, device=device)
    if G > 1:
        same_prev[1:] = same_next[:-1]
    g_prv = torch.where(same_prev, new_rows - 1, g_piece)
    nxt = torch.cat([state.nxt, g_nxt])
    prv = torch.cat([state.prv, g_prv])
    firsts = ~same_prev
    nxt[g_piece[firsts]] = new_rows[firsts]
    lasts = ~same_next
    prv[old_next[lasts]] = new_rows[lasts]
    state.nxt, state.prv = nxt, prv
    state.t = torch.cat([state.t, g_t])
    return (g_piece, g_s), row


def _no_chains(new_group: Tensor, kt: Tensor, tol: float) -> None:
    """Crossings sorted by t (``kt``) and grouped where consecutive ones are more than ``tol`` apart
    (``new_group`` marks each group's first) are regrouped, in place, so that no group spans more
    than ``tol``: a crossing more than ``tol`` after its group's first starts a new group (as the
    kernels group them). Otherwise many crossings each within ``tol`` of the next would chain into
    one breakpoint however far apart the first and last are."""
    gid = torch.cumsum(new_group.long(), 0) - 1
    first = new_group.nonzero().squeeze(1)
    span = kt - kt.index_select(0, first).index_select(0, gid)
    if not bool((span > tol).any()):
        return
    ng = new_group.cpu().numpy().copy()
    t = kt.cpu().numpy()
    chains = np.unique(gid[span > tol].cpu().numpy())
    starts = first.cpu().numpy()
    ends = np.append(starts[1:], len(t))
    for c in chains:  # rare: only groups spread over more than tol
        t0 = t[starts[c]]
        for j in range(starts[c] + 1, ends[c]):
            if t[j] - t0 > tol:
                ng[j] = True
                t0 = t[j]
    new_group.copy_(torch.from_numpy(ng))


def _kernels_take(x: Tensor) -> bool:
    """Whether the compiled kernels can work on ``x`` (a float32/64 CPU tensor, no gradient)."""
    return (x.device.type == "cpu" and x.dtype in _NUMPY_FLOATS and not x.requires_grad
            and _kernels.available(np.float32 if x.dtype == torch.float32 else np.float64))


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
        _kernels.lerp_rows(x.reshape(V, -1).numpy(), g_piece.numpy(), g_next.numpy(),
                           g_s.to(x.dtype).numpy(), buf[V : V + G].reshape(G, -1).numpy())
    else:
        s = g_s.to(x.dtype).view((-1,) + (1,) * (x.dim() - 1))
        torch.lerp(x.index_select(0, g_piece), x.index_select(0, g_next), s, out=buf[V : V + G])
    out = buf[: V + G]
    grown[id(out)] = weakref.ref(out)
    return out


@dataclass
class _BitRecord:
    """Bits of one activation call: the pattern at t = 0 and every flip along the paths."""

    start_bits: Tensor  # bool (B, F): bits at t = 0
    rows: Tensor  # int64 (n_flips,): breakpoint row where the flip happens
    neurons: Tensor  # int64 (n_flips,)
    new_bits: Tensor  # bool (n_flips,): the bit after the flip


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
            raise _refuse(f"the input-dependent value '{n.name}' ({type(v).__name__}) is held across a "
                          "nonlinear layer")


def _levels(step: _Step, tie_tol: float) -> tuple[list[float], int | None]:
    levels = sorted(set(step.kinks + ([tie_tol] if step.bit_layer else [])))
    return levels, (levels.index(tie_tol) if step.bit_layer else None)


def _cut(z: Tensor, state: _State, step: _Step, tie_tol: float, tol: float):
    """Find where the pre-activations ``z`` (one row per breakpoint) cross a kink
    inside a piece and insert those breakpoints. Returns ``(levels, thr, pos, pieces,
    neurons, lev, tie_r, tie_n, plan, rows, nxt_old)``: ``plan`` is ``None`` when no
    breakpoint was inserted, ``nxt_old`` the links before the split."""
    levels, thr = _levels(step, tie_tol)
    pos = _signs(z, tie_tol) if thr is not None else None
    pieces, neurons, fracs, lev, tie_r, tie_n = _crossings(z, state, levels, thr, pos)
    rows, plan, nxt_old = None, None, state.nxt
    if pieces.numel():
        ta = state.t.index_select(0, pieces)
        tc = ta + (state.t.index_select(0, nxt_old.index_select(0, pieces)) - ta) * fracs
        plan, rows = _split(state, pieces, tc, tol)
    return levels, thr, pos, pieces, neurons, lev, tie_r, tie_n, plan, rows, nxt_old


def _split_activation(prog, env, state: _State, node_in: fx.Node, step: _Step, tie_tol: float, tol: float):
    """Split the pieces at the kinks of an activation; return its flips (bit layers)."""
    x = env[node_in]
    z = x.reshape(x.shape[0], -1)
    act_form = _compiled_act(step, z, None, tie_tol, x.shape[1] if x.dim() > 2 else None)
    if act_form is not None:  # the compiled kernel splits; the live tensors are interpolated after it
        nxt_old = state.nxt
        rec, g_piece, g_s, _, snap, _ = _compiled_split(state, step, z.contiguous(), act_form, tol, False)
        if g_piece.size:
            _interpolate_env(prog, env, state, (torch.from_numpy(g_piece), torch.from_numpy(g_s)), nxt_old)
        _snap(env[node_in], *map(torch.from_numpy, snap))
        return rec
    _check_finite(z, step.node)
    levels, thr, pos, pieces, neurons, lev, tie_r, tie_n, plan, rows, nxt_old = _cut(z, state, step, tie_tol, tol)
    if plan is not None:
        _interpolate_env(prog, env, state, plan, nxt_old)
    if rows is not None:
        _snap(env[node_in], *_snap_list(state, nxt_old, z, pieces, rows, neurons, lev, levels))
    if thr is None:
        return None
    if plan is not None:
        V = z.shape[0]
        znew = env[node_in].reshape(-1, z.shape[1])[V:]
        pos = torch.cat([pos, _signs(znew, tie_tol)])
    return _flips(state, pos, rows, neurons, lev, thr, tie_r, tie_n, state.n_rows - z.shape[0], z.shape[1])


def _snap_rtol(dtype: torch.dtype) -> float:
    """Relative round-off below which a crossing neuron's value at its breakpoint is its level."""
    return 16 * torch.finfo(dtype).eps


def _snap_list(state: _State, nxt_old: Tensor, z: Tensor, pieces: Tensor, rows: Tensor, neurons: Tensor,
               lev: Tensor, levels: list[float]):
    """``(row, neuron, level, za, zb)`` of every crossing at an inner breakpoint (not t = 0 or 1), for
    :func:`_snap`: ``z`` ``(V, F)`` holds the values at the rows before the split, whose links were
    ``nxt_old``; ``pieces`` are the crossings' pieces."""
    inner = (rows >= 2 * state.n_paths).nonzero().squeeze(1)
    lv = torch.tensor(levels, dtype=torch.float64, device=rows.device).index_select(0, lev.index_select(0, inner))
    p = pieces.index_select(0, inner)
    n = neurons.index_select(0, inner)
    za = _at(z, p, n).double() - lv
    zb = _at(z, nxt_old.index_select(0, p), n).double() - lv
    return rows.index_select(0, inner), n, lv, za, zb


def _close_to_level(v: Tensor, values: Tensor, za: Tensor, zb: Tensor, dtype: torch.dtype) -> Tensor:
    """Where ``v`` is its level ``values`` up to the round-off of a piece from ``za`` to ``zb`` (distances
    to the level), as the kernels' ``at_level`` decides it."""
    return (v.double() - values).abs() <= _snap_rtol(dtype) * (za.abs() + zb.abs() + values.abs())


def _snap(x: Tensor, rows: Tensor, neurons: Tensor, values: Tensor, za: Tensor | None = None,
          zb: Tensor | None = None) -> None:
    """Set the pre-activations ``x`` (one row per breakpoint) of the crossing neurons to their level at
    their breakpoint, in place, where their value there is the level up to round-off.

    A crossing is where the neuron is exactly at the level; its interpolated value is off by
    round-off (±1e-17 for a level 0), which the layers after it would carry as a nonzero value
    (a ReLU then gives 1e-17 and the next bias-free layer bit 1 on a piece where it is 0).
    ``za``, ``zb``: the neuron's distance to the level at the ends of the piece it crosses in,
    the scale of that round-off (a crossing merged into a breakpoint within ``tol`` keeps its
    value when it is farther from the level)."""
    if rows.numel() == 0:
        return
    idx = (rows, *torch.unravel_index(neurons, x.shape[1:]))
    if za is not None:
        close = _close_to_level(x[idx], values, za, zb, x.dtype)
        if not bool(close.all()):
            keep = close.nonzero().squeeze(1)
            idx = tuple(i.index_select(0, keep) for i in idx)
            values = values.index_select(0, keep)
    x.index_put_(idx, values.to(x.dtype))


def _act_inplace(module: nn.Module, z: Tensor) -> Tensor:
    """Apply an activation module, in place where torch offers it (``z`` is not needed after)."""
    if type(module) is nn.ReLU:
        return torch.relu_(z)
    if type(module) is nn.LeakyReLU:
        return F.leaky_relu_(z, module.negative_slope)
    if type(module) in (nn.Hardtanh, nn.ReLU6):
        return F.hardtanh_(z, module.min_val, module.max_val)
    return module(z)


def _flips(state: _State, pos: Tensor, rows, neurons, lev, thr: int, tie_r: Tensor, tie_n: Tensor,
           n_new: int, n_neurons: int) -> _BitRecord:
    """Where the bits of one layer flip along the walk, from the signs at the breakpoints.

    The bit of a piece (a, b) is ``pos[a] | pos[b]`` once no crossing lies strictly
    inside; a neuron crossing the threshold sits at it (bit 0) at its breakpoint. So
    between the pieces meeting at row p a bit flips iff
    ``~pos[p] & (pos[prv[p]] ^ pos[nxt[p]])``, which needs ``pos[p]`` false with a
    neighbour on the other side: a crossing at p, or a neuron exactly at the threshold
    at p (``tie_r``, ``tie_n``). At the ends the point patterns π(γ(0)), π(γ(1)) are
    compared with the first and last piece.
    """
    starts, ends = state.starts, state.ends
    p0 = pos.index_select(0, starts)
    p1 = pos.index_select(0, ends)
    F_ = pos.shape[1]
    unique = tie_r.numel() == 0
    if rows is not None:
        if not bool((lev == thr).all()):
            at_thr = (lev == thr).nonzero().squeeze(1)
            rows, neurons = rows.index_select(0, at_thr), neurons.index_select(0, at_thr)
        pos.view(-1).index_fill_(0, rows * F_ + neurons, False)
        # a (row, neuron) pair can repeat only through ties or crossings merged into a piece end
        unique = unique and bool((rows >= state.n_rows - n_new).all())
        cr, cn = torch.cat([rows, tie_r]), torch.cat([neurons, tie_n])
    else:
        cr, cn = tie_r, tie_n
    first = (pos.index_select(0, starts) | pos.index_select(0, state.nxt.index_select(0, starts))) != p0
    last = (pos.index_select(0, state.prv.index_select(0, ends)) | pos.index_select(0, ends)) != p1
    fb, fn = first.nonzero().unbind(1)
    lb, ln = last.nonzero().unbind(1)
    out_rows, out_neurons = [starts[fb], ends[lb]], [fn, ln]
    out_bits = [~_at(p0, fb, fn), _at(p1, lb, ln)]
    if cr.numel():
        inner = cr >= 2 * state.n_paths  # starts and ends are rows 0 .. 2B-1
        if not bool(inner.all()):
            inner = inner.nonzero().squeeze(1)
            cr, cn = cr.index_select(0, inner), cn.index_select(0, inner)
        if cr.numel():
            if not unique:
                key = torch.unique(cr * F_ + cn)
                cr, cn = key // F_, key % F_
            after = _at(pos, state.nxt.index_select(0, cr), cn)
            flip = ~_at(pos, cr, cn) & (_at(pos, state.prv.index_select(0, cr), cn) ^ after)
            fi = flip.nonzero().squeeze(1)
            out_rows.append(cr.index_select(0, fi))
            out_neurons.append(cn.index_select(0, fi))
            out_bits.append(after.index_select(0, fi))
    start_bits = p0 if p0.shape[1] == n_neurons else p0[:, :n_neurons].contiguous()
    return _BitRecord(start_bits, torch.cat(out_rows), torch.cat(out_neurons), torch.cat(out_bits))


def _elementwise(module: nn.Module) -> bool:
    """Whether the activation acts on every number alone, the same way (no per-neuron parameter)."""
    if type(module) in (nn.ReLU, nn.LeakyReLU, nn.Hardtanh, nn.ReLU6, nn.RReLU):
        return True
    return type(module) is nn.PReLU and module.weight.numel() == 1


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


def _act_linear(env, state: _State, node_in: fx.Node, step: _Step, lin: nn.Linear | None, tie_tol: float,
                tol: float):
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
    act_form = _compiled_act(step, z, lin, tie_tol)
    if act_form is not None:
        return _act_linear_compiled(state, step, z.contiguous(), lin, act_form, tol)
    _check_finite(z, step.node)
    V, F_ = z.shape
    levels, thr, pos, pieces, neurons, lev, tie_r, tie_n, plan, rows, nxt_old = _cut(z, state, step, tie_tol, tol)
    snap = None
    if rows is not None:  # crossing neurons are at their level at their breakpoints
        snap = _snap_list(state, nxt_old, z, pieces, rows, neurons, lev, levels)
        old_rows = (snap[0] < V).nonzero().squeeze(1)
        new_rows = (snap[0] >= V).nonzero().squeeze(1)
        _snap(z, *(a.index_select(0, old_rows) for a in snap))
        snap = tuple(a.index_select(0, new_rows) for a in snap)
        snap = (snap[0] - V, *snap[1:])  # (new breakpoint, neuron, level, za, zb)
    if plan is None:
        out = None if lin is None else lin(_act_inplace(step.module, z))
    elif lin is None and pos is None:
        out = None
    else:
        g_piece, g_s = plan
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
            g_rep.numel(), device=z.device)
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
            out, y = _linear_at_new_rows(step, lin, z, g_piece, g_next, s_, g_rep, k, gp, gq, s_k, yk, yd, dg,
                                         all_dense)
            if not all_dense:
                _exact_cancellations(lin, out, V, y, g_piece, g_next, s_, g_rep, k, yk, dg, yd)
    if thr is None:
        return None, out
    return _flips(state, pos, rows, neurons, lev, thr, tie_r, tie_n, state.n_rows - V, F_), out


def _snap_pairs(zk: Tensor, g_rep: Tensor, k: Tensor, n_neurons: int, rows: Tensor, neurons: Tensor,
                values: Tensor, za: Tensor, zb: Tensor) -> None:
    """:func:`_snap` for values held as (new breakpoint ``g_rep``, neuron ``k``) pairs."""
    if rows.numel() == 0 or zk.numel() == 0:
        return
    key = rows * n_neurons + neurons
    order = torch.argsort(key)
    key = key.index_select(0, order)
    pair = g_rep * n_neurons + k
    i = torch.searchsorted(key, pair).clamp_(max=key.numel() - 1)
    hit = (key.index_select(0, i) == pair).nonzero().squeeze(1)
    c = order.index_select(0, i.index_select(0, hit))
    values, za, zb = values.index_select(0, c), za.index_select(0, c), zb.index_select(0, c)
    close = _close_to_level(zk.index_select(0, hit), values, za, zb, zk.dtype).nonzero().squeeze(1)
    zk.index_put_((hit.index_select(0, close),), values.index_select(0, close).to(zk.dtype))


def _exact_cancellations(lin: nn.Linear, out: Tensor, V: int, y: Tensor, g_piece: Tensor, g_next: Tensor,
                         s_: Tensor, g_rep: Tensor, k: Tensor, yk: Tensor | None, dg: Tensor | None,
                         yd: Tensor) -> None:
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
    flagged = ((v.abs() <= bound) | (((v - ya).abs() <= bound) & (s * d > 4 * bound))
               | (((v - yb).abs() <= bound) & ((1 - s) * d > 4 * bound)))
    keep = flagged.any(1).nonzero().squeeze(1)
    if keep.numel() == 0:
        return
    rows, flagged, sub = rows.index_select(0, keep), flagged.index_select(0, keep), v.index_select(0, keep)
    # the activation at those rows: interpolated, with the exact values of the crossing neurons
    act = torch.lerp(y.index_select(0, g_piece.index_select(0, rows)), y.index_select(0, g_next.index_select(0, rows)),
                     s_.index_select(0, rows))
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


def _compiled_act(step: _Step, z: Tensor, lin: nn.Linear | None, tie_tol: float, channels: int | None = None):
    """``(levels, thr, seg_slope, seg_off)`` for the compiled kernels when they can run this
    layer (CPU, float32/64, an elementwise activation of known form), else None: the
    activation's kinks and bit threshold (``levels[thr]``, ``thr = -1`` without bits), and
    per neuron its slope and offset on each segment between the levels (``(F, K + 1)``).
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
    w = getattr(mod, "weight", None)
    if kind is nn.PReLU and w.numel() not in (1, F_) and not (w.numel() == channels and F_ % channels == 0):
        return None
    key = (F_, tie_tol, step.bit_layer, channels, None if w is None else (w.data_ptr(), w._version),
           *(getattr(mod, k, None) for k in ("negative_slope", "lower", "upper", "min_val", "max_val")))
    form = step.kernel_form.get(key)
    if form is not None:
        return form
    if kind is nn.ReLU:
        a = 0.0
    elif kind is nn.LeakyReLU:
        a = float(mod.negative_slope)
    elif kind is nn.RReLU:  # eval mode (training mode is refused when compiling)
        a = (float(mod.lower) + float(mod.upper)) / 2
    elif kind is nn.PReLU:  # one slope, one per neuron, or one per channel
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
        lo, hi = float(mod.min_val), float(mod.max_val)
        slope = np.where((upper <= lo) | (lower >= hi), 0.0, 1.0)
        off = np.where(upper <= lo, lo, np.where(lower >= hi, hi, 0.0))
        seg_slope, seg_off = np.tile(slope, (F_, 1)), np.tile(off, (F_, 1))
    form = (np.array(levels, dtype=np.float64), -1 if thr is None else thr, np.ascontiguousarray(seg_slope),
            np.ascontiguousarray(seg_off))
    step.kernel_form = {key: form}  # one form kept (the parameters may change); replaced whole for threads
    return form


def _compiled_split(state: _State, step: _Step, z: Tensor, act_form, tol: float, act: bool):
    """Split, bits and flips of one activation by the compiled kernel (:mod:`spacefold.walk._kernels`);
    with ``act`` it also applies the activation to ``z`` in place. Returns ``(flips or None,
    new rows' piece starts, their fractions, the Linear's plan)``."""
    levels, thr, seg_slope, seg_off = act_form
    try:
        t2, nxt2, prv2, g_piece, g_s, start_bits, f_row, f_n, f_bit, plan, snap, pos = _kernels.split_act(
            z.numpy(), state.t.numpy(), state.nxt.numpy(), state.prv.numpy(), state.n_paths, float(tol), levels, thr,
            seg_slope, seg_off, act, _snap_rtol(z.dtype), _finite_max(z.dtype))
    except FloatingPointError:
        _check_finite(z, step.node)  # raises InputError with the range found
        raise
    state.t, state.nxt, state.prv = torch.from_numpy(t2), torch.from_numpy(nxt2), torch.from_numpy(prv2)
    rec = None
    if thr >= 0:
        rec = _BitRecord(torch.from_numpy(start_bits), torch.from_numpy(f_row), torch.from_numpy(f_n),
                         torch.from_numpy(f_bit))
    return rec, g_piece, g_s, plan, snap, pos


def _act_linear_compiled(state: _State, step: _Step, z: Tensor, lin: nn.Linear | None, act_form, tol: float):
    """:func:`_act_linear` by the compiled kernels."""
    V = z.shape[0]
    rec, _, g_s, plan, _, _ = _compiled_split(state, step, z, act_form, tol, lin is not None)
    if lin is None:
        return rec, None
    out = torch.empty(state.n_rows, lin.out_features, dtype=z.dtype)
    _linear(lin, z, out[:V])  # z holds the activation now
    if state.n_rows > V:
        w, wt, bias, wsum, wnorm = _linear_form(step, lin)
        levels, thr, seg_slope, seg_off = act_form
        _kernels.new_rows_linear(out.numpy(), V, wt, levels, seg_slope, plan, g_s, z.numpy(), seg_off,
                                 bias, wsum, _cancel_rtol(z.dtype), w, wnorm)
    return rec, out


def _linear_form(step: _Step, lin: nn.Linear):
    """The Linear after an activation as :func:`spacefold.walk._kernels.new_rows_linear` takes it: its
    weight (contiguous), the weight transposed (contiguous), its bias, and the sum of the absolute
    weights of every output and their Euclidean norm (float64). Kept on the step while the parameters are unchanged."""
    wgt, b = lin.weight, lin.bias
    key = (wgt.data_ptr(), wgt._version, None if b is None else (b.data_ptr(), b._version))
    form = step.linear_form.get(key)
    if form is None:
        w = wgt.detach()
        bias = np.zeros(lin.out_features) if b is None else b.detach().double().numpy()
        w64 = w.double()
        form = (w.contiguous().numpy(), w.t().contiguous().numpy(), bias, w64.abs().sum(1).numpy(),
                torch.linalg.vector_norm(w64, dim=1).numpy())
        step.linear_form = {key: form}  # one kept (the parameters may change); replaced whole for threads
    return form


def _cancel_rtol(dtype: torch.dtype) -> float:
    """An output of the Linear at a new breakpoint within this times a bound of its terms of 0 is
    computed again as a plain product (see :func:`_exact_cancellations`)."""
    return 16 * torch.finfo(dtype).eps


def _linear_at_new_rows(step: _Step, lin: nn.Linear, z: Tensor, g_piece: Tensor, g_next: Tensor, s_: Tensor,
                        g_rep: Tensor, k: Tensor, gp: Tensor, gq: Tensor, s_k: Tensor, yk: Tensor, yd: Tensor,
                        dg: Tensor | None, all_dense: bool) -> tuple[Tensor, Tensor]:
    """The Linear after an activation at the old rows (a product) and the new ones (interpolated
    and corrected by the crossing neurons' weight columns, or a product on dense rows), and the
    activation at the old rows."""
    V, G = z.shape[0], g_piece.numel()
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
        if dg.numel():
            out_new.index_copy_(0, dg, lin(yd))
    return out, y


class _Unresolved(Exception):
    """Max pooling could not be resolved in the walk's dtype on the paths ``paths`` (of the sub-batch)."""

    def __init__(self, paths: list[int]):
        super().__init__(f"max pooling unresolved on {len(paths)} paths")
        self.paths = paths


# relative round-off under which two inputs of a pooling window count as equal (a tie), and the
# rounds of splitting after which a max pooling counts as unresolved in the walk's dtype
_POOL_RTOL = 64
_POOL_MAX_ROUNDS = 64


def _split_maxpool(prog, env, state: _State, step: _Step, tol: float, accept: bool = False) -> None:
    """Split the pieces where the arg-max of a pooling window changes, until it is constant.

    Every round splits the pieces whose ends pick different inputs of a window where those
    two inputs are equal; only the new rows need their arg-max in the next round. A piece
    whose arg-max at one end is also a maximum at the other end, up to round-off, needs no
    split: the max of affine functions is convex, so that input is the maximum on the whole
    piece (to that round-off). Each round then either resolves a piece or finds an input that
    is larger by more than round-off at the new breakpoint, so the splitting ends after at
    most about as many rounds as a window has inputs. Should it not end within ``_POOL_MAX_ROUNDS``
    (round-off of the dtype larger than the margin) the paths concerned raise
    :class:`_Unresolved`, to be walked again in float64; with ``accept`` (float64 already)
    they are kept as they are and counted in ``state.n_unresolved``."""
    mod = step.module
    (node_in,) = [a for a in step.node.all_input_nodes if prog.dynamic.get(a, False)]
    tol_eff = max(tol, 1e-9)
    margin = _POOL_RTOL * torch.finfo(env[node_in].dtype).eps
    am = None
    max_rounds = _POOL_MAX_ROUNDS
    for _ in range(max_rounds + 1):
        x = env[node_in].contiguous()
        V = x.shape[0]
        am_new, size = _pool_argmax(x if am is None else x[am.shape[0]:], mod)
        am = am_new if am is None else torch.cat([am, am_new])
        planes = x.reshape(-1, size)  # one row per channel (and breakpoint): the H·W or L inputs
        per_plane = am.shape[1] // (planes.shape[0] // V)  # windows per plane
        nxt_old = state.nxt
        cand = am != am.index_select(0, nxt_old)
        p, m = cand.nonzero().unbind(1)
        if p.numel() == 0:
            return
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
            return
        if _ == max_rounds:
            if accept:
                _, path = _ranks(state)
                state.n_unresolved += int(torch.unique(path.index_select(0, p[ok])).numel())
                return
            _, path = _ranks(state)
            raise _Unresolved(torch.unique(path.index_select(0, p[ok])).tolist())
        frac = da / (da - db)
        ta = state.t.index_select(0, p)
        tc = ta + (state.t.index_select(0, q) - ta) * frac
        tc = torch.where(ok, tc, ta)  # ties at an end: nothing to insert
        plan, rows = _split(state, p, tc, tol_eff)
        if plan is None:
            return
        _interpolate_env(prog, env, state, plan, nxt_old)
        # at its crossing the two inputs are equal: exactly, not up to the interpolation's round-off
        # (which a later layer taking their difference would read as a nonzero value)
        new = (ok & (rows >= V)).nonzero().squeeze(1)
        if new.numel():
            planes = env[node_in].reshape(-1, size)
            r = rows.index_select(0, new) * n_planes + m.index_select(0, new) // per_plane
            i_a, i_b = ia.index_select(0, new), ib.index_select(0, new)
            va, vb = _at(planes, r, i_a), _at(planes, r, i_b)
            close = ((va - vb).double().abs() <= eps.index_select(0, new)).nonzero().squeeze(1)
            planes.view(-1).index_put_((r.index_select(0, close) * size + i_b.index_select(0, close),),
                                       va.index_select(0, close))


def _pool_argmax(x: Tensor, mod: nn.Module) -> tuple[Tensor, int]:
    """The arg-max of every pooling window of ``x`` (the first maximum of a window, padding
    excluded, as torch's max pooling picks it): ``(am, size)``, ``am`` ``(V, n_windows)`` flat
    indices into the ``size`` inputs of the window's plane (a channel's H·W or L values)."""
    if isinstance(mod, nn.MaxPool1d):
        _, am = F.max_pool1d(x, mod.kernel_size, mod.stride, mod.padding, mod.dilation, return_indices=True)
        size = x.shape[-1]
    else:
        _, am = F.max_pool2d(x, mod.kernel_size, mod.stride, mod.padding, mod.dilation, return_indices=True)
        size = x.shape[-1] * x.shape[-2]
    return am.reshape(x.shape[0], -1), size


# --------------------------------------------------------------------------- the walk


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


def _assemble(state: _State, records: list[_BitRecord], n_paths: int) -> ExactWalkBatch:
    if state.nxt.device.type == "cpu" and _kernels.available():
        # one walk along every path's links (the pointer jumping of _ranks is for accelerators)
        rank, row_path, order = map(torch.from_numpy, _kernels.list_ranks(state.nxt.numpy(), state.n_paths))
    else:
        rank, row_path = _ranks(state)
        order = torch.empty_like(rank)
        order[rank] = torch.arange(rank.numel(), device=rank.device)
    col, ranks, neurons, signs = 0, [], [], []
    for r in records:
        path = row_path.index_select(0, r.rows)
        # +1: the flip moves the bit away from its value at t = 0; -1: back to it
        signs.append(torch.where(r.new_bits != r.start_bits[path, r.neurons], 1, -1))
        ranks.append(rank.index_select(0, r.rows))
        neurons.append(r.neurons + col)
        col += r.start_bits.shape[1]
    return ExactWalkBatch(
        torch.cat([r.start_bits for r in records], 1), torch.cat(ranks), torch.cat(neurons), torch.cat(signs),
        state.t.index_select(0, order), row_path.index_select(0, order), rank.index_select(0, state.starts),
        rank.index_select(0, state.ends),
    )


class ExactWalkBatch(WalkBatch):
    """Exact walks stored as the pattern at t = 0 and the list of bit flips.

    Behaves as a :class:`WalkBatch` (``patterns``, ``t``, ``offsets`` are built on
    first use); :func:`spacefold.measure.summarize` computes r1, r2, χ, the profile
    maximum and the number of regions from the flips alone, without building the
    patterns and without sorting, so its cost grows with the number of breakpoints
    and flips, not with regions × neurons.

    Breakpoints are numbered path by path in order of t (``t_sorted``,
    ``path_sorted``; path b holds ``first[b]`` (t = 0) to ``last[b]`` (t = 1)). A flip
    at breakpoint k happens on entering the piece that starts at k; flips at
    ``last[b]`` are those of the point t = 1 itself (π(γ(1)) differing from the last
    piece). ``flip_sign`` is +1 when the flip moves the bit away from its value at
    t = 0 and -1 when it moves it back.

    ``n_float64``: walks that were computed again in float64 because max pooling could not
    be resolved in the model's dtype (a near tie of a window's arg-max below its round-off);
    ``n_unresolved``: walks where not even float64 resolved it, kept with the arg-max decided
    up to float64 round-off (a warning says so).
    """

    def __init__(self, start_bits, flip_at, flip_neuron, flip_sign, t_sorted, path_sorted, first, last):
        for name, value in (("start_bits", start_bits), ("flip_at", flip_at), ("flip_neuron", flip_neuron),
                            ("flip_sign", flip_sign), ("t_sorted", t_sorted), ("path_sorted", path_sorted),
                            ("first", first), ("last", last), ("method", "exact"), ("grid_index", None),
                            ("_cache", {}), ("n_float64", 0), ("n_unresolved", 0)):
            object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return (f"ExactWalkBatch(n_walks={self.n_walks}, n_neurons={self.n_neurons}, "
                f"n_flips={self.flip_at.numel()})")

    @property
    def n_walks(self) -> int:
        return int(self.start_bits.shape[0])

    @property
    def n_neurons(self) -> int:
        return int(self.start_bits.shape[1])

    def _per_breakpoint(self, columns: slice | None):
        """Flip count and signed distance change at every breakpoint (restricted to ``columns``)."""
        at, sign = self.flip_at, self.flip_sign
        if columns is not None:
            lo, hi, step = columns.indices(self.n_neurons)
            if step != 1:
                raise ValueError("columns must be a contiguous slice")
            keep = (self.flip_neuron >= lo) & (self.flip_neuron < hi)
            at, sign = at[keep], sign[keep]
        V = self.t_sorted.numel()
        cnt = torch.zeros(V, dtype=torch.int64, device=at.device).index_add_(0, at, torch.ones_like(at))
        dsum = torch.zeros(V, dtype=torch.int64, device=at.device).index_add_(0, at, sign)
        return cnt, dsum

    def _dense(self):
        if "dense" in self._cache:
            return self._cache["dense"]
        cnt, _ = self._per_breakpoint(None)
        device = cnt.device
        b, n = self.n_walks, self.n_neurons
        region = torch.zeros(self.t_sorted.numel(), dtype=torch.bool, device=device)
        region[self.first] = True  # the point t = 0 ...
        has = cnt > 0  # ... and every breakpoint where some bit flips
        # region rows: per path, the point t = 0 first, then the breakpoints with flips
        counts = torch.ones(b, dtype=torch.int64, device=device).index_add_(0, self.path_sorted, has.long())
        offsets = torch.zeros(b + 1, dtype=torch.int64, device=device)
        offsets[1:] = torch.cumsum(counts, 0)
        total = int(offsets[-1])
        k = torch.cumsum(has.long(), 0)
        k = k - (k.index_select(0, self.first.index_select(0, self.path_sorted))
                 - has.long().index_select(0, self.first.index_select(0, self.path_sorted)))
        row_of_bp = offsets[:-1].index_select(0, self.path_sorted) + k  # valid where has
        # a bit is the parity of its flips so far: uint8 sums wrap modulo 256, which keeps parity
        flips = torch.zeros(total, n, dtype=torch.uint8, device=device)
        flips[offsets[:-1]] = self.start_bits.to(torch.uint8)
        flips[row_of_bp[self.flip_at], self.flip_neuron] = 1
        walk_id = torch.repeat_interleave(torch.arange(b, device=device), counts)
        cs = torch.cumsum(flips, 0, dtype=torch.uint8)
        prev = torch.zeros(b, n, dtype=cs.dtype, device=device)
        has_prev = offsets[:-1] > 0
        prev[has_prev] = cs[offsets[:-1][has_prev] - 1]
        patterns = ((cs - prev[walk_id]) & 1).bool()
        t = torch.zeros(total, dtype=torch.float64, device=device)
        t[row_of_bp[has]] = self.t_sorted[has]
        out = (patterns, t, offsets)
        self._cache["dense"] = out
        return out

    @staticmethod
    def concat(batches: list[WalkBatch]) -> WalkBatch:  # type: ignore[override]
        if not all(isinstance(w, ExactWalkBatch) for w in batches):
            return WalkBatch.concat(batches)
        if len(batches) == 1:
            return batches[0]
        v_off, p_off = 0, 0
        at, path, first, last = [], [], [], []
        for w in batches:
            at.append(w.flip_at + v_off)
            path.append(w.path_sorted + p_off)
            first.append(w.first + v_off)
            last.append(w.last + v_off)
            v_off += w.t_sorted.numel()
            p_off += w.n_walks
        cat = torch.cat
        out = ExactWalkBatch(cat([w.start_bits for w in batches]), cat(at), cat([w.flip_neuron for w in batches]),
                             cat([w.flip_sign for w in batches]), cat([w.t_sorted for w in batches]), cat(path),
                             cat(first), cat(last))
        object.__setattr__(out, "n_float64", sum(w.n_float64 for w in batches))
        object.__setattr__(out, "n_unresolved", sum(w.n_unresolved for w in batches))
        return out

    @property
    def patterns(self) -> Tensor:  # type: ignore[override]
        return self._dense()[0]

    @property
    def t(self) -> Tensor:  # type: ignore[override]
        return self._dense()[1]

    @property
    def offsets(self) -> Tensor:  # type: ignore[override]
        return self._dense()[2]

    def __len__(self) -> int:
        return self.n_walks

    @property
    def n_regions(self) -> Tensor:
        cnt, _ = self._per_breakpoint(None)  # a region begins at t = 0 and at every breakpoint with flips
        return torch.ones(self.n_walks, dtype=torch.int64, device=cnt.device).index_add_(
            0, self.path_sorted, (cnt > 0).long())


def exact_walks(
    model: nn.Module,
    x1: Tensor,
    x2: Tensor,
    *,
    layers: LayerSelector = None,
    tie_tol: float = 0.0,
    tol: float | None = None,
    prefix: tuple[list[Tensor], list[Tensor]] | None = None,
) -> WalkBatch:
    """Exact walks of the segments ``x1[i] -> x2[i]`` (inputs ``(batch, *input_shape)``).

    ``model`` must be piecewise linear (see the module docstring) and in eval mode;
    the computation runs on the model's device and dtype, without gradients.
    ``tie_tol``: bit = pre-activation > ``tie_tol``; ``tol``: crossings closer than
    ``tol`` in t are one breakpoint (``None``: 1e-9, or 1e-6 when ``tie_tol > 0``,
    see :func:`spacefold.walk.resolve_tol`; at least one unit of round-off of the
    model's dtype, 1.2e-7 in float32), a breakpoint gathering the crossings within
    ``tol`` after the first of them. ``prefix``: the values of
    :meth:`ExactProgram.prefix` at the two ends, if already computed (then ``x1`` and
    ``x2`` only give the batch size). Returns a :class:`WalkBatch` whose walks are the
    reference walks Γ* of docs/method.md, 'Walks: three samplers'.

    Non-finite values inside the network (inputs or weights that overflow the dtype) raise
    :class:`spacefold.errors.InputError`. Segments whose max pooling cannot be resolved in
    the model's dtype are walked again in float64 (counted in ``n_float64`` of the result).
    """
    if x1.shape[0] == 0:
        raise ValueError("x1 and x2 must hold at least one segment, got batch size 0")
    prog = compile_model(model, layers)
    tol = resolve_tol("exact", tol, tie_tol)
    with torch.no_grad():
        out = _exact(prog, x1, x2, tie_tol, tol, prefix)
    if getattr(out, "n_unresolved", 0):
        warnings.warn(f"max pooling could not be resolved in float64 on {out.n_unresolved} of {len(out)} segments "
                      "(near ties of a window's arg-max); their walks take the arg-max up to float64 round-off",
                      RuntimeWarning, stacklevel=2)
    return out


def _dtype_tol(dtype: torch.dtype) -> float:
    """The smallest merge tolerance in t for walks in ``dtype``: crossings closer than one unit of its
    round-off at t = 1 cannot be told apart (float32: 1.2e-7; float64: 2.2e-16). Four units merged
    distinct crossings of ordinary float32 walks (9 of 400 MNIST segments of a 784-256x6 MLP counted
    other regions than float64; 2 with one unit)."""
    return torch.finfo(dtype).eps


def _finite_max(dtype: torch.dtype) -> float:
    """Values of the walk must stay below this in magnitude (see :func:`_check_finite`)."""
    return torch.finfo(dtype).max / 4


def _check_finite(x: Tensor, node: fx.Node) -> None:
    """Non-finite values (an overflow of the dtype, inf or nan weights) make every sign test meaningless;
    so do values within a factor 4 of the dtype's largest number, whose differences and
    interpolations between breakpoints overflow."""
    if x.numel() == 0:
        return
    lo, hi = torch.aminmax(x)
    big = _finite_max(x.dtype)
    if not (bool(lo > -big) and bool(hi < big)):  # false for nan too
        name = node.target if node.op == "call_module" else node.name
        raise InputError(
            f"the network's values are not finite or overflow {x.dtype} (min {float(lo):.3g}, max {float(hi):.3g}) "
            f"at the input of its layer '{name}' on some of the segments: scale the inputs down, check the weights "
            "for inf/nan, or walk in float64")


# Largest tensor of breakpoint values aimed at per sub-batch. Small tensors are reused by
# the memory allocator and stay in cache; large ones are mapped afresh and page-faulted
# on every layer, which costs more than the products themselves on wide networks (glibc
# serves blocks up to 32 MB from its heap once it has seen them freed; 16 MB measured a few
# percent faster than 8 MB and much faster than 64 MB on the 784-256x6-10 benchmark).
_TARGET_BYTES = 16 << 20
# With the compiled kernels a layer is a few calls, not hundreds of operations: smaller
# sub-batches keep the breakpoint values in the cache between the product and the kernel
# (2 MB measured 6-10% faster than 16 MB on the 784-256x6-10 benchmark, 1 MB no faster).
_TARGET_BYTES_COMPILED = 2 << 20
# On GPUs memory is pooled by the caching allocator and each operation has a launch
# cost, so sub-batches there are as large as memory comfortably allows.
_TARGET_BYTES_ACCELERATOR = 512 << 20


def _exact(prog: ExactProgram, x1: Tensor, x2: Tensor, tie_tol: float, tol: float, prefix=None) -> WalkBatch:
    b = x1.shape[0]
    if prefix is None:
        p1, p2 = prog.prefix(x1), prog.prefix(x2)
    else:
        p1, p2 = prefix
    cpu = x1.device.type == "cpu"
    if not cpu:
        target = _TARGET_BYTES_ACCELERATOR
    elif prog.kernel_friendly and _kernels.available():
        target = _TARGET_BYTES_COMPILED
    else:
        target = _TARGET_BYTES

    dtype = p1[0].dtype if p1 else x1.dtype
    tol = max(tol, _dtype_tol(dtype))
    is64 = dtype == torch.float64  # nothing finer to walk again in
    fine: list[ExactProgram] = []
    lock = threading.Lock()

    def walk(pr: ExactProgram, ends: list[tuple[Tensor, Tensor]], n: int, accept: bool) -> tuple[ExactWalkBatch, float]:
        state = _State(n, x1.device)
        env = pr._consts()
        for node, (a, c) in zip(pr._live_at_prefix(), ends):
            env[node] = torch.cat([a, c])
        with torch.no_grad():  # grad mode is per thread
            records = _run(pr, env, state, pr.prefix_end, tie_tol, tol, accept)
            part = _assemble(state, records, state.n_paths)
        object.__setattr__(part, "n_unresolved", state.n_unresolved)
        return part, max(state.peak_bytes / state.n_paths, 1.0)

    def in_float64(k: int, n: int) -> tuple[ExactWalkBatch, float]:
        """The paths k .. k + n - 1 walked again in float64 (max pooling unresolved in the model's dtype)."""
        with lock:
            if not fine:
                model = prog.model
                if model is None:
                    raise RuntimeError("the model of this ExactProgram no longer exists")
                fine.append(ExactProgram(copy.deepcopy(model).to(torch.float64), prog.layers))
        pr = fine[0]
        if prefix is None:
            ends = list(zip(pr.prefix(x1[k : k + n].to(torch.float64)), pr.prefix(x2[k : k + n].to(torch.float64))))
        else:
            ends = [(a[k : k + n].to(torch.float64), c[k : k + n].to(torch.float64)) for a, c in zip(p1, p2)]
        part, per_path = walk(pr, ends, n, True)
        object.__setattr__(part, "n_float64", n)
        return part, per_path

    def sub_batch(k: int, n: int) -> tuple[ExactWalkBatch, float]:
        try:
            return walk(prog, [(a[k : k + n], c[k : k + n]) for a, c in zip(p1, p2)], n, is64)
        except _Unresolved as err:
            # walk the others again in the model's dtype and these in float64, in order
            bad = set(err.paths)
            parts, i = [], 0
            while i < n:
                j = i
                while j < n and ((j in bad) == (i in bad)):
                    j += 1
                parts.append(in_float64(k + i, j - i) if i in bad else sub_batch(k + i, j - i))
                i = j
            return ExactWalkBatch.concat([p for p, _ in parts]), max(pp for _, pp in parts)

    def next_step(per_path: float) -> int:
        # as many paths as fit the target size of the largest tensor
        return int(min(max(target / per_path, 16), 1 << 20))

    n0 = min(b, 64)  # the first sub-batches measure the size per path
    n_threads = torch.get_num_threads()
    if cpu and n_threads > 1 and b > n0:
        # On CPUs only the matrix products use torch's threads; the rest of the walk is many
        # small operations. Independent sub-batches on one thread each keep every core busy
        # (torch releases the GIL inside its operations).
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(min(n_threads, -(-b // n0))) as pool:
                starts = list(range(0, min(b, n0 * n_threads), n0))
                first = list(pool.map(lambda k0: sub_batch(k0, min(n0, b - k0)), starts))
                parts = [p for p, _ in first]
                step = next_step(max(pp for _, pp in first))
                k = min(b, starts[-1] + n0)
                if k < b:
                    # equal sub-batches, as many as a multiple of the threads: no thread is left
                    # alone with the last one
                    rounds = -(-(b - k) // (step * n_threads))
                    step = -(-(b - k) // (rounds * n_threads))
                parts += [p for p, _ in pool.map(lambda k0: sub_batch(k0, min(step, b - k0)), range(k, b, step))]
        finally:
            torch.set_num_threads(n_threads)
    else:
        part, per_path = sub_batch(0, n0)
        parts, k, step = [part], n0, next_step(per_path)
        while k < b:
            part, per_path = sub_batch(k, min(step, b - k))
            parts.append(part)
            k += part.n_walks
            step = next_step(per_path)
    return parts[0] if len(parts) == 1 else ExactWalkBatch.concat(parts)


# --------------------------------------------------------------------------- verification


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of :func:`verify`.

    ``ok``: every checked region's pattern matched; ``n_checked``: regions checked;
    ``n_mismatched``: regions whose re-evaluated pattern differs; ``max_distance``:
    the largest Hamming distance found; ``mismatches``: ``(walk, region)`` index pairs
    ``(n_mismatched, 2)``.
    """

    ok: bool
    n_checked: int
    n_mismatched: int
    max_distance: int
    mismatches: Tensor


def verify(
    model: nn.Module,
    x1: Tensor,
    x2: Tensor,
    walks: WalkBatch,
    *,
    layers: LayerSelector = None,
    tie_tol: float = 0.0,
    atol: float = 0.0,
    max_points: int = 65536,
    mode: str | None = None,
    tol: float | None = None,
) -> VerifyResult:
    """Check ``walks`` against plain forward passes of ``model``.

    ``mode="certificate"`` (the default for the piecewise-linear models the exact walk
    accepts): every interval of the walk, a region (or, for an exact walk, each piece between
    its breakpoints), is checked at both of its ends. Every pre-activation of every activation
    module (selected or not) must stay on one side of each of its kinks from the left end to
    the right end, and every max pooling window must have an input that is its maximum at
    both ends; then the network is affine on the interval (by induction over the layers: each
    layer's input is affine in t there, so it keeps its side of every kink), so the pattern is
    the same on the whole open interval, and it must be the recorded one: a bit 1 needs the
    pre-activation ≥ ``tie_tol`` at both ends and > at one, a bit 0 ≤ ``tie_tol`` at both.
    So a region missing from the walk, anywhere, makes its interval fail. Values are compared
    up to round-off: ``atol`` plus a few units of round-off of the model's dtype times the
    values, plus the move of a value over ``tol`` in t (crossings within ``tol`` share a
    breakpoint; ``None``: the exact walk's default for ``tie_tol``). A region recorded at a
    single point (t = 0 or t = 1) is compared with the pattern at that point.

    ``mode="midpoint"``: every region is evaluated at its midpoint only (cheaper, and for any
    model; a missing region is found only when a midpoint falls into it). A region recorded
    at a single point is evaluated at that point. Neurons within ``atol`` of ``tie_tol`` are
    not compared. Inspired by SplineCam's ``verify()``.
    """
    if not isinstance(walks, WalkBatch):
        raise InputTypeError(f"walks must be a spacefold.WalkBatch, got {type(walks).__name__}")
    if x1.shape[0] != len(walks) or x2.shape[0] != len(walks):
        raise InputError(f"x1 and x2 must hold one segment per walk ({len(walks)}), got {x1.shape[0]} and "
                         f"{x2.shape[0]}")
    if mode not in (None, "certificate", "midpoint"):
        raise InputError(f"mode must be 'certificate' or 'midpoint', got {mode!r}")
    from ..patterns import to_model

    x1 = to_model(model, x1)
    x2 = to_model(model, x2)
    if mode in (None, "certificate"):
        try:
            prog = compile_model(model, layers)
        except NotPiecewiseLinearError:
            if mode == "certificate":
                raise
            prog = None
        if prog is not None:
            tol = resolve_tol("exact", tol, tie_tol)
            with eval_mode(model), torch.no_grad():
                return _certify(model, prog, x1, x2, walks, layers, tie_tol, atol, max_points, tol)
    return _verify_midpoints(model, x1, x2, walks, layers, tie_tol, atol, max_points)


def _verify_midpoints(model, x1, x2, walks: WalkBatch, layers, tie_tol, atol, max_points) -> VerifyResult:
    device = walks.patterns.device
    offsets = walks.offsets
    counts = offsets[1:] - offsets[:-1]
    walk_id = torch.repeat_interleave(torch.arange(len(walks), device=device), counts)
    t = walks.t
    t_next = torch.ones_like(t)
    if t.numel() > 1:
        t_next[:-1] = t[1:]
    t_next[offsets[1:] - 1] = 1.0
    mid = 0.5 * (t + t_next)
    dist_all = []
    rec = PatternRecorder(model, layers)
    with rec, eval_mode(model), torch.no_grad():
        for j in range(0, mid.numel(), max_points):
            pts = segment_points(x1, x2, walk_id[j : j + max_points], mid[j : j + max_points])
            rec.clear()
            run_model(model, pts, "x1")
            scores = rec.scores()
            bits = scores > tie_tol
            differ = bits != walks.patterns[j : j + max_points].to(bits.device)
            if atol > 0:
                differ &= (scores - tie_tol).abs() > atol
            dist = differ.sum(1)
            dist_all.append(dist)
    dist = torch.cat(dist_all)
    bad = (dist > 0).nonzero().squeeze(1)
    mism = torch.stack([walk_id[bad], bad - offsets[walk_id[bad]]], 1) if bad.numel() else \
        torch.zeros(0, 2, dtype=torch.int64)
    return VerifyResult(
        ok=bad.numel() == 0, n_checked=int(mid.numel()), n_mismatched=int(bad.numel()),
        max_distance=int(dist.max()) if dist.numel() else 0, mismatches=mism,
    )


def _intervals(walks: WalkBatch):
    """The intervals to certify: ``(walk, region, t_a, t_b)`` per interval (``t_a == t_b`` for a region
    recorded at a single point). An exact walk gives its pieces between breakpoints (on which
    the walk found the network affine, kinks that give no bit included); any other walk its regions."""
    offsets = walks.offsets
    device = offsets.device
    if isinstance(walks, ExactWalkBatch):
        cnt, _ = walks._per_breakpoint(None)
        has = (cnt > 0).long()
        path = walks.path_sorted
        first = walks.first.index_select(0, path)
        c = torch.cumsum(has, 0)
        k = c - (c.index_select(0, first) - has.index_select(0, first))  # flipping breakpoints so far
        V = path.numel()
        is_last = torch.zeros(V, dtype=torch.bool, device=device)
        is_last[walks.last] = True
        piece = (~is_last).nonzero().squeeze(1)
        walk = path.index_select(0, piece)
        region = k.index_select(0, piece)  # the pattern after the flips at the piece's start
        ta = walks.t_sorted.index_select(0, piece)
        tb = walks.t_sorted.index_select(0, piece + 1)
        # single-point regions: t = 0 (flips at the first breakpoint) and t = 1 (flips at the last)
        b = torch.arange(walks.n_walks, device=device)
        p0 = (has.index_select(0, walks.first) > 0).nonzero().squeeze(1)
        p1 = (has.index_select(0, walks.last) > 0).nonzero().squeeze(1)
        walk = torch.cat([walk, b[p0], b[p1]])
        region = torch.cat([region, torch.zeros_like(p0), (offsets[1:] - offsets[:-1]).index_select(0, p1) - 1])
        zeros = torch.zeros(p0.numel(), dtype=torch.float64, device=device)
        ones = torch.ones(p1.numel(), dtype=torch.float64, device=device)
        return walk, region, torch.cat([ta, zeros, ones]), torch.cat([tb, zeros, ones])
    counts = offsets[1:] - offsets[:-1]
    walk = torch.repeat_interleave(torch.arange(len(walks), device=device), counts)
    region = torch.arange(walk.numel(), device=device) - offsets.index_select(0, walk)
    ta = walks.t
    tb = torch.ones_like(ta)
    if ta.numel() > 1:
        tb[:-1] = ta[1:]
    tb[offsets[1:] - 1] = 1.0
    return walk, region, ta, tb


def _certify(model, prog: ExactProgram, x1, x2, walks: WalkBatch, layers, tie_tol, atol, max_points,
             tol) -> VerifyResult:
    walk, region, ta, tb = _intervals(walks)
    offsets = walks.offsets.to(walk.device)
    patterns = walks.patterns
    eps = 64 * torch.finfo(x1.dtype).eps
    tol = max(tol, _dtype_tol(x1.dtype))
    # every activation and max pooling call, in order: their inputs at the two ends of each interval
    calls = [st for st in prog.steps if st.kind in ("act", "maxpool")]  # in the order of the forward pass
    kinds: dict[int, tuple[str, nn.Module]] = {id(st.module): (st.kind, st.module) for st in calls}
    seen: list[tuple[str, nn.Module, Tensor]] = []

    def hook(mod, args):
        kind, _ = kinds[id(mod)]
        seen.append((kind, mod, args[0]))

    handles = [m.register_forward_pre_hook(hook) for _, m in kinds.values()]
    rec = PatternRecorder(model, layers)
    n = walk.numel()
    per_interval = torch.zeros(n, dtype=torch.int64, device=walk.device)
    step = max(1, max_points // 2)
    try:
        with rec:
            for j in range(0, n, step):
                w_, r_ = walk[j : j + step], region[j : j + step]
                a_, b_ = ta[j : j + step], tb[j : j + step]
                m = w_.numel()
                pts = segment_points(x1, x2, torch.cat([w_, w_]).to(x1.device), torch.cat([a_, b_]).to(x1.device))
                rec.clear()
                seen.clear()
                run_model(model, pts, "x1")
                dt = (b_ - a_).to(x1.device).clamp_min(1e-300).unsqueeze(1)
                point = (b_ == a_).to(x1.device).unsqueeze(1)

                def slack(za: Tensor, zb: Tensor) -> Tensor:
                    # round-off of both values and the move over tol in t (zero for a single point)
                    scale = za.abs().amax(1, keepdim=True) + zb.abs().amax(1, keepdim=True)
                    move = torch.where(point, torch.zeros_like(za), (zb - za).abs() * (tol / dt))
                    return atol + eps * (scale + za.abs() + zb.abs()) + move

                bad = torch.zeros(m, dtype=torch.int64, device=x1.device)
                # the recorded bits
                sc = rec.scores().double()
                za, zb = sc[:m], sc[m:]
                d = slack(za, zb)
                pat = patterns.index_select(0, (offsets.index_select(0, w_) + r_).to(patterns.device)).to(x1.device)
                lo, hi = torch.minimum(za, zb), torch.maximum(za, zb)
                wrong1 = (lo < tie_tol - d) | (hi <= tie_tol - d)
                wrong0 = hi > tie_tol + d
                single = point.expand_as(za)
                # at a single point: the bit itself (neurons within the slack of the threshold not compared)
                wrong1 = torch.where(single, (za < tie_tol - d) | ((za <= tie_tol) & (d == 0)), wrong1)
                wrong0 = torch.where(single, za > tie_tol + d, wrong0)
                bad += torch.where(pat, wrong1, wrong0).sum(1)
                # every kink of every activation, and every pooling window
                # (layers after the last that gives bits change nothing: not checked)
                live = [st.node in prog.live for st in calls] if len(calls) == len(seen) else [True] * len(seen)
                for (kind, mod, x), needed in zip(seen, live):
                    if not needed:
                        continue
                    v = x.reshape(2 * m, -1).double()
                    va, vb = v[:m], v[m:]
                    if kind == "act":
                        dv = slack(va, vb)
                        for level in _kinks(mod):
                            above = ((va - level) > dv) & ((vb - level) < -dv)
                            below = ((va - level) < -dv) & ((vb - level) > dv)
                            bad += (above | below).sum(1)
                    else:
                        bad += _pool_broken(mod, x, m, slack)
                per_interval[j : j + step] = bad.to(per_interval.device)
    finally:
        for h in handles:
            h.remove()
    # per region: the worst of its intervals
    key = offsets.index_select(0, walk) + region
    total = int(offsets[-1])
    dist = torch.zeros(total, dtype=torch.int64, device=walk.device)
    dist.scatter_reduce_(0, key, per_interval, reduce="amax", include_self=True)
    bad = (dist > 0).nonzero().squeeze(1)
    walk_id = torch.repeat_interleave(torch.arange(len(walks), device=walk.device), offsets[1:] - offsets[:-1])
    mism = torch.stack([walk_id[bad], bad - offsets[walk_id[bad]]], 1) if bad.numel() else \
        torch.zeros(0, 2, dtype=torch.int64)
    return VerifyResult(ok=bad.numel() == 0, n_checked=total, n_mismatched=int(bad.numel()),
                        max_distance=int(dist.max()) if dist.numel() else 0, mismatches=mism)


def _pool_broken(mod: nn.Module, x: Tensor, m: int, slack) -> Tensor:
    """Per interval, the pooling windows with no input that is their maximum at both ends (up to the slack)."""
    am, size = _pool_argmax(x, mod)  # (2m, windows)
    planes = x.reshape(2 * m, -1, size).double()
    per_plane = am.shape[1] // planes.shape[1]
    plane = torch.arange(am.shape[1], device=x.device) // per_plane
    vals = planes[:, plane, :]  # (2m, windows, size): the plane of each window
    mx = vals.gather(2, am.unsqueeze(2)).squeeze(2)  # the window maxima
    ia, ib = am[:m], am[m:]
    a_at_b = vals[m:].gather(2, ia.unsqueeze(2)).squeeze(2)  # the arg-max at a, evaluated at b
    b_at_a = vals[:m].gather(2, ib.unsqueeze(2)).squeeze(2)
    d = slack(mx[:m], mx[m:])
    return ((a_at_b < mx[m:] - d) & (b_at_a < mx[:m] - d)).sum(1)
