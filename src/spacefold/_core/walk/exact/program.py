"""Compiling a model for the exact walk (docs/method.md, 'The exact walk'; step 1 there: the affine prefix).

The model is traced with ``torch.fx``; every graph node becomes a :class:`_Step` of one kind
(``STEP_KINDS``), checked against the op tables (affine modules, functions and methods, and the
piecewise-linear activations with their kinks). :class:`ExactProgram` also records liveness,
the affine prefix, activation -> Linear pairs to fuse and whether the compiled kernels can run it.
"""

from __future__ import annotations

import operator
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from ...patterns import LayerSelector, _entry, find_activations, functional_activation, selector_key, selects_call
from . import conv64
from .errors import NotPiecewiseLinearError, _refuse

# the kinds of step a program holds; the walk has a handler for each (see .handlers)
STEP_KINDS = ("input", "const", "affine", "act", "maxpool", "output")


_AFFINE_MODULES: tuple[type[nn.Module], ...] = (
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


_MAXPOOL: tuple[type[nn.Module], ...] = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)


# functions / methods that are linear in each dynamic argument when the others are constant
_LINEAR_FUNCS = {
    operator.getitem,
    operator.neg,
    operator.pos,
    operator.mul,
    operator.truediv,
    operator.add,
    operator.sub,
    operator.iadd,
    operator.isub,
    operator.imul,
    operator.itruediv,
    operator.matmul,
    torch.flatten,
    torch.reshape,
    torch.cat,
    torch.concat,
    torch.stack,
    torch.add,
    torch.sub,
    torch.mul,
    torch.div,
    torch.neg,
    torch.transpose,
    torch.permute,
    torch.squeeze,
    torch.unsqueeze,
    torch.matmul,
    torch.index_select,
    torch.narrow,
    torch.sum,
    torch.mean,
    torch.chunk,
    torch.split,
    torch.movedim,
    torch.t,
    torch.mm,
    torch.unbind,
    F.linear,
    F.conv1d,
    F.conv2d,
    F.conv3d,
    F.avg_pool1d,
    F.avg_pool2d,
    F.avg_pool3d,
    F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d,
    F.adaptive_avg_pool3d,
    F.pad,
    getattr,
    torch.unflatten,
    # the reshapes of a converted TorchScript or torch.export program (their dims exclude the batch)
    torch.ops.aten.flatten.using_ints,
    torch.ops.aten.unflatten.int,
}


_LINEAR_METHODS = {
    "view",
    "reshape",
    "flatten",
    "permute",
    "transpose",
    "squeeze",
    "unsqueeze",
    "contiguous",
    "size",
    "dim",
    "add",
    "sub",
    "mul",
    "div",
    "neg",
    "sum",
    "mean",
    "index_select",
    "narrow",
    "chunk",
    "split",
    "t",
    "expand",
    "expand_as",
    "view_as",
    "reshape_as",
    "clone",
    "float",
    "double",
    "to",
    "type_as",
    "unbind",
    "movedim",
    "matmul",
    "__getitem__",
    "unflatten",
}


# of those, the ones allowed to combine several dynamic (t-dependent) arguments
_SUM_FUNCS = {
    operator.add,
    operator.sub,
    operator.iadd,
    operator.isub,
    torch.add,
    torch.sub,
    torch.cat,
    torch.concat,
    torch.stack,
}


_SUM_METHODS = {"add", "sub", "expand_as", "view_as", "reshape_as", "type_as"}


# Affinity is decided per argument. A product is linear in either factor (one of them
# input-dependent); a quotient only in its numerator (1 / h is not affine); every other
# function of the tables only in its first argument (the tensor it reshapes, sums, pools,
# pads or indexes: an input-dependent index, shape or padding is not affine). ``None``: any
# argument may be input-dependent.
_ANY_ARG_FUNCS = _SUM_FUNCS | {
    operator.mul,
    operator.imul,
    operator.matmul,
    torch.mul,
    torch.matmul,
    torch.mm,
    F.linear,
    F.conv1d,
    F.conv2d,
    F.conv3d,
}


_ANY_ARG_METHODS = _SUM_METHODS | {"mul", "matmul"}


_FIRST_ARG = (0, "input", "self")


def _dynamic_positions(node: fx.Node, dyn_args: list[fx.Node]) -> list[int | str]:
    """The positions (argument index or keyword) of ``node``'s arguments that hold one of ``dyn_args``."""
    found: list[int | str] = []
    dyn = set(dyn_args)

    def holds(a) -> bool:
        hit = []

        def note(n: fx.Node) -> fx.Node:
            hit.append(n in dyn)
            return n

        fx.node.map_arg(a, note)
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


def _functional_step(node: fx.Node, dyn_args: list[fx.Node], layers: LayerSelector) -> _Step:
    """An activation called as a function (``F.relu``, ``x.relu()``): an activation step with the
    module it computes, a bit layer when ``layers`` selects its call site (named as
    :class:`spacefold._core.patterns.PatternRecorder` names it, ``"<module>:<function>"``)."""
    spec = functional_activation(node.target)
    assert spec is not None  # called only for the nodes functional_activation knows
    name = spec.name
    if len(dyn_args) != 1 or not node.args or node.args[0] is not dyn_args[0]:
        raise _refuse(
            f"the activation {name} (node '{node.name}') must take one input-dependent tensor, its first argument"
        )
    rest = list(node.args[1:]) + list(node.kwargs.values())
    if any(isinstance(a, fx.Node) for a in rest):
        raise _refuse(
            f"the activation {name} (node '{node.name}') takes a tensor parameter (F.prelu's weight); "
            "use the module (nn.PReLU)"
        )
    module = spec.make(tuple(node.args), dict(node.kwargs))
    if (
        isinstance(module, nn.RReLU)
        and node.op == "call_function"
        and bool(node.kwargs.get("training", node.args[3] if len(node.args) > 3 else False))
    ):
        raise _refuse("rrelu with training=True is random")
    stack = node.meta.get("nn_module_stack") or {}
    owner = next(reversed(stack.values()))[0] if stack else ""
    site = f"{owner}:{name}"
    if _entry(module) is None or not isinstance(module, (nn.Hardtanh, *_PWL_AT_ZERO)):
        raise _refuse(f"activation {name} (call site '{site}', node '{node.name}') is not piecewise linear")
    return _Step(node, "act", True, module, selects_call(layers, site, module), _kinks(module))


_PWL_AT_ZERO = (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.RReLU)


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

    _float64: tuple[tuple[tuple[int, int], ...], ExactProgram]  # see driver._float64_program

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
                node.op == "call_function" and node.target is getattr
            )
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
                    if mod.return_indices:
                        raise _refuse(
                            f"{type(mod).__name__} with return_indices at '{node.target}' (the indices are "
                            "not piecewise linear in the input; pool without them)"
                        )
                    steps.append(_Step(node, "maxpool", True, mod))
                elif isinstance(mod, _BATCHNORM):
                    if mod.running_mean is None:
                        raise _refuse(f"BatchNorm '{node.target}' has no running statistics (not affine in eval)")
                    steps.append(_Step(node, "affine", True, mod))
                elif isinstance(mod, _AFFINE_MODULES):
                    steps.append(_Step(node, "affine", True, mod))
                else:
                    raise _refuse(
                        f"module '{node.target}' ({type(mod).__name__}) is not a known piecewise-linear layer"
                    )
                if len(dyn_args) > 1:
                    raise _refuse(f"module '{node.target}' takes several input-dependent arguments")
                continue
            if not dyn_args:  # computes on the sizes of input-dependent tensors only: constant along a walk
                steps.append(_Step(node, "affine", True))
                continue
            if node.op in ("call_function", "call_method") and functional_activation(node.target) is not None:
                steps.append(_functional_step(node, dyn_args, layers))
                continue
            if node.op == "call_function":
                fn = node.target
                name = getattr(fn, "__name__", repr(fn))
                if fn not in _LINEAR_FUNCS:
                    if "max_pool" in name:
                        raise _refuse(
                            f"max pooling is called functionally in forward ({name}, node '{node.name}'); "
                            "the walk follows the modules nn.MaxPool1d/2d/3d and nn.AdaptiveMaxPool1d/2d/3d: "
                            "use those"
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
            type(s.module) in _KERNEL_ACTS and (s.node in self.fusable or not any(u in self.live for u in s.node.users))
            for s in steps
            if s.kind == "act"
        ) and not any(s.kind == "maxpool" for s in steps)
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
            assert isinstance(node.target, str)  # fx names the attribute of a get_attr node by its path
            for part in node.target.split("."):
                obj = getattr(obj, part)
            return obj
        if node.op == "call_module":
            assert step.module is not None  # the program's steps of call_module nodes hold their module
            m = step.module
            x = args[0] if len(args) == 1 and not kwargs else None
            if type(m) is nn.Conv2d and m.padding_mode == "zeros" and isinstance(x, Tensor) and _no_hooks(m):
                # float64 on the CPU faster than torch's own path; anything else is F.conv2d (see .conv64)
                return conv64.conv2d(x, m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups)
            return m(*args, **kwargs)
        if node.op == "call_function":
            assert callable(node.target)  # fx's call_function targets are the functions called
            if node.target is F.conv2d:
                conv: Callable[..., Tensor] = conv64.conv2d  # F.conv2d's arguments, whatever fx holds them as
                return conv(*args, **kwargs)
            return node.target(*args, **kwargs)
        if node.op == "call_method":
            assert isinstance(node.target, str)  # fx's call_method targets are method names
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


def _no_hooks(m: nn.Module) -> bool:
    """Whether calling ``m`` runs nothing but its ``forward`` (no forward hooks on it or on every module)."""
    g = nn.modules.module
    return not (m._forward_hooks or m._forward_pre_hooks or g._global_forward_hooks or g._global_forward_pre_hooks)


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def compile_model(model: nn.Module, layers: LayerSelector = None) -> ExactProgram:
    """The :class:`ExactProgram` of ``model`` (cached per model, layer selection and
    module structure: replacing a submodule compiles the model again)."""
    key = (
        selector_key(layers),
        tuple(name for name, _ in find_activations(model, layers)),
        tuple((name, id(m)) for name, m in model.named_modules()),
    )
    per_model = _CACHE.get(model)
    if per_model is None:
        per_model = {}
        _CACHE[model] = per_model
    prog = per_model.get(key)
    if prog is None:
        prog = ExactProgram(model, layers)
        per_model[key] = prog
    return prog
