"""The bit rule of every activation: which modules and functional calls count, and how each is binarised.

A rule maps ``(module, inputs, output)`` to a score tensor of the output's shape; the bit is
``score > tie_tol``. :func:`register_activation` adds a module type; the functional table maps
``F.relu``-style calls to the module they stand for. :mod:`spacefold._core.patterns` records the
bits with hooks and holds the layer selection, the layouts and the checks of inputs.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputTypeError

# A rule maps (module, inputs, output) to a *score* tensor of the output's shape;
# ``inputs`` is the tuple of the call's positional arguments; the bit is score > tol.
Rule = Callable[[nn.Module, tuple, Tensor], Tensor]


def _pre_activation(module: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
    return inputs[0]


def _unit_output(module: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
    """Gated units: one bit per unit, [output > 0] (arXiv 2502.09954)."""
    return output


@dataclass(frozen=True)
class _Entry:
    rule: Rule
    piecewise_linear: bool


_REGISTRY: dict[type, _Entry] = {}

# Piecewise linear with the only kink at z = 0: a pattern class is a linear region.
_PIECEWISE_LINEAR: tuple[type[nn.Module], ...] = (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.RReLU)

# Monotone, but with kinks or curvature away from z = 0 (Hardtanh and ReLU6 bend at
# ±1 and 6, which no bit records), so a pattern class need not be a linear region.
_SMOOTH_MONOTONE: tuple[type[nn.Module], ...] = (
    nn.Hardtanh,
    nn.ReLU6,
    nn.ELU,
    nn.CELU,
    nn.SELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Tanh,
    nn.Sigmoid,
    nn.Hardsigmoid,
    nn.Softplus,
    nn.Softsign,
    nn.LogSigmoid,
    nn.Tanhshrink,
)

# Normalisations over a dimension, not elementwise activations: never hooked.
_NOT_ELEMENTWISE = (nn.Softmax, nn.Softmin, nn.LogSoftmax, nn.Softmax2d, nn.MultiheadAttention)


def _rule_form(rule: Callable) -> Rule:
    """``rule`` as a function of ``(module, inputs, output)``.

    The form is read from the rule's signature: a second parameter named ``inputs`` (or
    ``*args``) receives the tuple of every input of the call; any other name receives the
    first input alone, the form of earlier versions (kept, with a DeprecationWarning).
    A rule whose signature cannot be read gets the tuple.
    """
    try:
        params = list(inspect.signature(rule).parameters.values())
    except (TypeError, ValueError):
        return rule
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) < 2 or positional[1].name == "inputs":
        return rule
    warnings.warn(
        f"a binarisation rule whose second parameter is {positional[1].name!r} receives the first input only; "
        "name it 'inputs' to receive every input of the call as a tuple: rule(module, inputs, output)",
        DeprecationWarning,
        stacklevel=3,
    )

    def first_input(module: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
        return rule(module, inputs[0], output)

    return first_input


def register_activation(module_type: type, rule: Rule | None = None, *, piecewise_linear: bool = False) -> None:
    """Register how to binarise the outputs of an activation module type (docs/method.md, "Activation
    patterns").

    ``rule(module, inputs, output)`` gets the module, the tuple of its call's positional inputs and
    its output, and returns a score tensor of the output's shape; a neuron's bit is
    ``score > tie_tol``. The default rule is the pre-activation ``inputs[0]`` itself (bit = z > 0). A
    gate of two inputs registers e.g. ``rule=lambda module, inputs, output: output`` (one bit per
    unit, [output > 0]). A rule whose second parameter is not named ``inputs`` gets the first input
    alone (the form of earlier versions; deprecated). Modules and functions called inside a
    registered module give no bits of their own. The functional forms of a registered type
    (``F.gelu`` for ``nn.GELU``) follow its rule. Registering a type again replaces its rule.

    Args:
        module_type (type): an ``nn.Module`` subclass; its subclasses follow the same rule.
        rule (Callable | None): ``(module, inputs, output) -> score``; None: the pre-activation.
        piecewise_linear (bool): the activation is elementwise and piecewise linear with its kinks at
            z = 0, so the exact walk may cross it (set it only then: the exact walker relies on it).

    Returns:
        None: the rule holds for every later pattern, walk and measure in the process.

    Raises:
        InputTypeError: ``module_type`` is not an ``nn.Module`` subclass, or ``rule`` is not callable.

    Examples:
        >>> import torch, spacefold as sf
        >>> class Shifted(torch.nn.Module):  # relu(z - 1): on where z > 1
        ...     def forward(self, z):
        ...         return torch.relu(z - 1)
        >>> sf.register_activation(Shifted, lambda module, inputs, output: inputs[0] - 1)
        >>> net = torch.nn.Sequential(torch.nn.Linear(1, 1), Shifted())
        >>> with torch.no_grad():
        ...     _ = net[0].weight.fill_(1.0), net[0].bias.zero_()
        >>> sf.activation_patterns(net, torch.tensor([[0.5], [2.0]])).flatten().tolist()
        [False, True]
    """
    if not (isinstance(module_type, type) and issubclass(module_type, nn.Module)):
        raise InputTypeError(f"module_type must be an nn.Module subclass, got {module_type!r}")
    if rule is not None and not callable(rule):
        raise InputTypeError(f"rule must be callable (module, inputs, output) -> score tensor, got {rule!r}")
    _REGISTRY[module_type] = _Entry(_pre_activation if rule is None else _rule_form(rule), bool(piecewise_linear))


for _t in _PIECEWISE_LINEAR:
    register_activation(_t, piecewise_linear=True)


for _t in _SMOOTH_MONOTONE:
    register_activation(_t)


register_activation(nn.GLU, _unit_output)


# Gated units whose structure the certified walk follows: type -> parts(module) = (gate projection,
# the gate's activation function, value projection), for the unit act(gate(x)) * up(x). Only for
# modules whose forward is that of the registered type (a subclass that overrides forward is not).
_GATE_PARTS: dict[type, Callable[[nn.Module], tuple[nn.Module, Callable, nn.Module]]] = {}


def _register_gate(module_type: type, parts: Callable[[nn.Module], tuple[nn.Module, Callable, nn.Module]]) -> None:
    _GATE_PARTS[module_type] = parts


def gate_parts(module: nn.Module) -> tuple[nn.Module, Callable, nn.Module] | None:
    """``(gate projection, activation function, value projection)`` of a gated unit
    ``act(gate(x)) * up(x)`` registered by its type, or None."""
    kind: type[nn.Module] = type(module)
    for klass in kind.__mro__:
        if klass in _GATE_PARTS:
            if kind.forward is not getattr(klass, "forward", None):
                return None
            return _GATE_PARTS[klass](module)
    return None


def _entry(module: nn.Module) -> _Entry | None:
    for klass in type(module).__mro__:
        if klass in _REGISTRY:
            return _REGISTRY[klass]
    return None


def _looks_like_activation(module: nn.Module) -> bool:
    return type(module).__module__ == "torch.nn.modules.activation" and not isinstance(module, _NOT_ELEMENTWISE)


def is_piecewise_linear(module: nn.Module) -> bool:
    """True for registered activations that are piecewise linear with kinks at 0."""
    e = _entry(module)
    return bool(e and e.piecewise_linear)


def _arg(args: tuple, kwargs: dict, i: int, key: str, default):
    if len(args) > i:
        return args[i]
    return kwargs.get(key, default)


@dataclass(frozen=True)
class _Functional:
    """An activation function: its name in call-site names, the module it computes for the
    call's arguments, and whether the call overwrites its input."""

    name: str
    make: Callable[[tuple, dict], nn.Module]
    inplace: Callable[[tuple, dict], bool]


def _never(args: tuple, kwargs: dict) -> bool:
    return False


def _always(args: tuple, kwargs: dict) -> bool:
    return True


def _flag(i: int) -> Callable[[tuple, dict], bool]:
    return lambda args, kwargs: bool(_arg(args, kwargs, i, "inplace", False))


def _num(x) -> float:
    return float(x) if not isinstance(x, Tensor) else float(x.item())


def _prelu(args: tuple, kwargs: dict) -> nn.Module:
    w = _arg(args, kwargs, 1, "weight", None)
    m = nn.PReLU(num_parameters=int(w.numel()) if isinstance(w, Tensor) else 1)
    if isinstance(w, Tensor):
        m.weight = nn.Parameter(w.detach().reshape(-1), requires_grad=False)
    return m


def _rrelu(args: tuple, kwargs: dict) -> nn.Module:
    """``nn.RReLU`` for a call of ``F.rrelu``/``torch.rrelu``: in eval mode (the mean slope), as the call
    computes with ``training=False`` (its default); in training mode where the call draws random slopes."""
    m = nn.RReLU(_num(_arg(args, kwargs, 1, "lower", 1 / 8)), _num(_arg(args, kwargs, 2, "upper", 1 / 3)))
    return m.train(bool(_arg(args, kwargs, 3, "training", False)))


def _build_functional_table() -> dict:
    aten = torch.ops.aten
    T = torch.Tensor
    table: dict = {}

    def add(name, make, funcs, inplace_funcs=(), flag_at=None):
        for f in funcs:
            if f is not None:
                table[f] = _Functional(name, make, _flag(flag_at) if flag_at is not None else _never)
        for f in inplace_funcs:
            if f is not None:
                table[f] = _Functional(name, make, _always)

    def op(name: str):
        packet = getattr(aten, name, None)
        return getattr(packet, "default", None) if packet is not None else None

    add("relu", lambda a, k: nn.ReLU(), [torch.relu, T.relu, op("relu")], [torch.relu_, T.relu_, op("relu_")])
    add("relu", lambda a, k: nn.ReLU(), [F.relu], flag_at=1)
    add("leaky_relu", lambda a, k: nn.LeakyReLU(_num(_arg(a, k, 1, "negative_slope", 0.01))), [F.leaky_relu], flag_at=2)
    add(
        "leaky_relu",
        lambda a, k: nn.LeakyReLU(_num(_arg(a, k, 1, "negative_slope", 0.01))),
        [op("leaky_relu")],
        [F.leaky_relu_, op("leaky_relu_")],
    )
    hardtanh = lambda a, k: nn.Hardtanh(_num(_arg(a, k, 1, "min_val", -1.0)), _num(_arg(a, k, 2, "max_val", 1.0)))
    add("hardtanh", hardtanh, [F.hardtanh], flag_at=3)
    add("hardtanh", hardtanh, [op("hardtanh")], [F.hardtanh_, op("hardtanh_")])
    add("relu6", lambda a, k: nn.ReLU6(), [F.relu6], flag_at=1)
    add("relu6", lambda a, k: nn.ReLU6(), [op("relu6")], [op("relu6_")])
    add("prelu", _prelu, [F.prelu, torch.prelu, T.prelu, op("prelu"), op("_prelu_kernel")])
    rrelu = _rrelu
    add("rrelu", rrelu, [F.rrelu], flag_at=4)
    add("rrelu", rrelu, [torch.rrelu, op("rrelu")], [F.rrelu_, torch.rrelu_, op("rrelu_")])
    elu = lambda a, k: nn.ELU(_num(_arg(a, k, 1, "alpha", 1.0)))
    add("elu", elu, [F.elu], flag_at=2)
    add("elu", elu, [op("elu")], [F.elu_, op("elu_")])
    celu = lambda a, k: nn.CELU(_num(_arg(a, k, 1, "alpha", 1.0)))
    add("celu", celu, [F.celu], flag_at=2)
    add("celu", celu, [torch.celu, op("celu")], [torch.celu_, F.celu_])
    add("selu", lambda a, k: nn.SELU(), [F.selu], flag_at=1)
    add("selu", lambda a, k: nn.SELU(), [torch.selu, op("selu")], [torch.selu_, F.selu_])
    add(
        "gelu",
        lambda a, k: nn.GELU(approximate=str(_arg(a, k, 1, "approximate", "none"))),
        [F.gelu, op("gelu")],
        [op("gelu_")],
    )
    for name, mod, f in (
        ("silu", nn.SiLU, F.silu),
        ("mish", nn.Mish, F.mish),
        ("hardswish", nn.Hardswish, F.hardswish),
        ("hardsigmoid", nn.Hardsigmoid, F.hardsigmoid),
    ):
        add(name, lambda a, k, mod=mod: mod(), [f], flag_at=1)
        add(name, lambda a, k, mod=mod: mod(), [op(name)], [op(name + "_")])
    add("tanh", lambda a, k: nn.Tanh(), [torch.tanh, T.tanh, F.tanh, op("tanh")], [torch.tanh_, T.tanh_, op("tanh_")])
    add(
        "sigmoid",
        lambda a, k: nn.Sigmoid(),
        [torch.sigmoid, T.sigmoid, F.sigmoid, torch.special.expit, op("sigmoid")],
        [torch.sigmoid_, T.sigmoid_, op("sigmoid_")],
    )
    add(
        "softplus",
        lambda a, k: nn.Softplus(_num(_arg(a, k, 1, "beta", 1.0)), _num(_arg(a, k, 2, "threshold", 20.0))),
        [F.softplus, op("softplus")],
    )
    add("softsign", lambda a, k: nn.Softsign(), [F.softsign])
    add("logsigmoid", lambda a, k: nn.LogSigmoid(), [F.logsigmoid, op("log_sigmoid")])
    add("tanhshrink", lambda a, k: nn.Tanhshrink(), [F.tanhshrink])
    add("glu", lambda a, k: nn.GLU(int(_arg(a, k, 1, "dim", -1))), [F.glu, op("glu")])
    threshold = lambda a, k: nn.Threshold(_num(_arg(a, k, 1, "threshold", 0.0)), _num(_arg(a, k, 2, "value", 0.0)))
    add("threshold", threshold, [F.threshold], flag_at=3)
    add("threshold", threshold, [op("threshold")], [op("threshold_")])
    add("threshold", threshold, [], [F.threshold_])  # type: ignore[attr-defined]  # exists, missing from torch's stubs
    add("softshrink", lambda a, k: nn.Softshrink(_num(_arg(a, k, 1, "lambd", 0.5))), [F.softshrink])
    add("hardshrink", lambda a, k: nn.Hardshrink(_num(_arg(a, k, 1, "lambd", 0.5))), [F.hardshrink, T.hardshrink])
    # an operator called without its overload (torch.ops.aten.gelu(x)) reaches the function mode as its packet
    for f, spec in list(table.items()):
        packet = getattr(f, "overloadpacket", None) if isinstance(f, torch._ops.OpOverload) else None
        if packet is not None and packet not in table:
            table[packet] = spec
    return table


# function (torch function, Tensor method or aten operator) -> how it is binarised
FUNCTIONAL_ACTIVATIONS: dict = _build_functional_table()

# Tensor methods by name, for graphs that call them by name (torch.fx ``call_method``)
_METHODS = {
    f.__name__: spec
    for f, spec in FUNCTIONAL_ACTIVATIONS.items()
    if getattr(f, "__objclass__", None) is torch.Tensor or getattr(torch.Tensor, getattr(f, "__name__", ""), None) is f
}


def functional_activation(target) -> _Functional | None:
    """How the function (or Tensor method name, as torch.fx records it) ``target`` is
    binarised, or None when it is not an activation function."""
    if isinstance(target, str):
        return _METHODS.get(target)
    if not callable(target):
        return None
    try:
        return FUNCTIONAL_ACTIVATIONS.get(target)
    except TypeError:  # unhashable
        return None


# Activation operators at the level of ATen: one of them running while no module hook or
# intercepted call is active ran where Python could not see it.
_ATEN_ACTIVATIONS = frozenset(
    {
        "relu",
        "relu_",
        "gelu",
        "gelu_",
        "silu",
        "silu_",
        "tanh",
        "tanh_",
        "sigmoid",
        "sigmoid_",
        "elu",
        "elu_",
        "celu",
        "celu_",
        "selu",
        "selu_",
        "leaky_relu",
        "leaky_relu_",
        "hardtanh",
        "hardtanh_",
        "mish",
        "mish_",
        "hardswish",
        "hardswish_",
        "hardsigmoid",
        "hardsigmoid_",
        "softplus",
        "log_sigmoid_forward",
        "glu",
        "threshold",
        "threshold_",
        "prelu",
        "_prelu_kernel",
        "rrelu_with_noise",
        "rrelu_with_noise_",
        "softshrink",
        "hardshrink",
        "_transformer_encoder_layer_fwd",
    }
)
