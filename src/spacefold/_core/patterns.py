"""Activation patterns of any ``nn.Module``: hooks, binarisation rules, layer selection.

A neuron's bit follows docs/method.md, 'Activation patterns': for an activation f the bit is 1 iff
f(z) > 0, and for strictly positive f iff f(z) > f(0). For every activation
registered here (all monotone with f(0) on the boundary) that is the same as the
sign of the pre-activation, so the rule is applied to the activation's *input* z:

    bit = z > tie_tol    (tie rule: z == 0 gives bit 0; ``tie_tol`` defaults to 0)

Forward hooks are placed on the activation *modules* of the model, so nested
modules, residual blocks and conv nets are covered. For in-place activations
(``inplace=True``) the input is copied before the module overwrites it, so the
rule still sees z. Activations called functionally (``F.relu`` inside
``forward``) cannot be hooked; a model without any hookable activation gets a
clear error. A module that is called several times in
one forward pass (one ``nn.ReLU`` reused in a residual block) contributes one
block of bits per call, named ``"name"``, ``"name#1"``, ``"name#2"``, ...

New activation types are added with :func:`register_activation`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal, overload

import torch
from torch import Tensor, nn

from .._util import check_int
from ..errors import InputError, InputTypeError

__all__ = [
    "activation_patterns",
    "pattern_layout",
    "register_activation",
    "find_activations",
    "is_piecewise_linear",
    "LayerSpec",
    "PatternLayout",
    "PatternRecorder",
    "eval_mode",
]

# A rule maps (module, input, output) to a *score* tensor of the output's shape;
# the bit is score > tol.
Rule = Callable[[nn.Module, Tensor, Tensor], Tensor]


def _pre_activation(module: nn.Module, inp: Tensor, out: Tensor) -> Tensor:
    return inp


@dataclass(frozen=True)
class _Entry:
    rule: Rule
    piecewise_linear: bool


_REGISTRY: dict[type, _Entry] = {}

# Piecewise linear with the only kink at z = 0: a pattern class is a linear region.
_PIECEWISE_LINEAR = (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.RReLU)
# Monotone, but with kinks or curvature away from z = 0 (Hardtanh and ReLU6 bend at
# ±1 and 6, which no bit records), so a pattern class need not be a linear region.
_SMOOTH_MONOTONE = (
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


def register_activation(module_type: type, rule: Rule | None = None, *, piecewise_linear: bool = False) -> None:
    """Register how to binarise the outputs of ``module_type``.

    ``rule(module, input, output)`` returns a score tensor of the output's shape;
    a neuron's bit is ``score > tie_tol``. The default rule is the pre-activation
    itself (bit = z > 0). Set ``piecewise_linear=True`` only for activations that
    are piecewise linear with their kinks at z = 0 (the exact walker relies on it).
    """
    if not (isinstance(module_type, type) and issubclass(module_type, nn.Module)):
        raise InputTypeError(f"module_type must be an nn.Module subclass, got {module_type!r}")
    if rule is not None and not callable(rule):
        raise InputTypeError(f"rule must be callable (module, input, output) -> score tensor, got {rule!r}")
    _REGISTRY[module_type] = _Entry(rule or _pre_activation, bool(piecewise_linear))


for _t in _PIECEWISE_LINEAR:
    register_activation(_t, piecewise_linear=True)
for _t in _SMOOTH_MONOTONE:
    register_activation(_t)


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


LayerSelector = str | type | Iterable[str | type] | None


def _normalise_selector(layers: LayerSelector) -> list[str | type] | None:
    if layers is None:
        return None
    if isinstance(layers, (str, type)):
        return [layers]
    try:
        items = list(layers)
    except TypeError:
        raise InputTypeError(f"layers must be a module name, a module type or a list of them, got {layers!r}") from None
    for item in items:
        if not isinstance(item, (str, type)):
            raise InputTypeError(f"layers entries must be module names (str) or types, got {item!r}")
    if not items:
        raise InputError("layers must name at least one module, got an empty list")
    return items


def find_activations(model: nn.Module, layers: LayerSelector = None) -> list[tuple[str, nn.Module]]:
    """The activation modules whose bits enter the pattern, in registration order.

    ``layers`` selects by module name (as in ``model.named_modules()``) or by type;
    the default is every registered activation module. Raises ``TypeError`` for an
    activation module that has no binarisation rule, and ``ValueError`` for a model
    with no hookable activation or a name that matches nothing.
    """
    if not isinstance(model, nn.Module):
        raise InputTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    selector = _normalise_selector(layers)
    named = [(n, m) for n, m in model.named_modules()]
    chosen: list[tuple[str, nn.Module]] = []
    if selector is None:
        for name, module in named:
            if _entry(module) is not None:
                chosen.append((name, module))
            elif _looks_like_activation(module):
                raise InputTypeError(
                    f"cannot binarise activation {type(module).__name__} at '{name or '<model>'}': it has no "
                    "binarisation rule; register one with spacefold.register_activation("
                    f"nn.{type(module).__name__}, rule) or leave it out with layers=[...]"
                )
        if not chosen:
            raise InputError(
                f"model {type(model).__name__} has no hookable activation module (nn.ReLU, nn.GELU, ...); "
                "activations called functionally (F.relu, torch.tanh in forward) cannot be hooked: "
                "use activation modules, or register your own module type with spacefold.register_activation"
            )
        return chosen
    names = {n for n, _ in named}
    for item in selector:
        if isinstance(item, str) and item not in names:
            acts = [n for n, m in named if _entry(m) is not None]
            raise InputError(f"layers names '{item}', which is not a module of the model; activation modules: {acts}")
    for name, module in named:
        hit = any((isinstance(s, str) and s == name) or (isinstance(s, type) and isinstance(module, s)) for s in selector)
        if not hit:
            continue
        if _entry(module) is None:
            raise InputTypeError(
                f"layers selects '{name}' ({type(module).__name__}), which has no binarisation rule; "
                "select activation modules or register a rule with spacefold.register_activation"
            )
        chosen.append((name, module))
    if not chosen:
        raise InputError(f"layers={layers!r} selects no activation module of the model")
    return chosen


@dataclass(frozen=True)
class LayerSpec:
    """One block of bits: the output of one activation call."""

    name: str  # module name, with "#i" for the i-th repeated call (i >= 1)
    module_name: str
    call: int
    shape: tuple[int, ...]  # per-sample output shape
    start: int
    stop: int

    @property
    def slice(self) -> slice:
        return slice(self.start, self.stop)

    @property
    def size(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class PatternLayout:
    """Where each layer's bits sit in the concatenated pattern (forward order)."""

    layers: tuple[LayerSpec, ...]

    @property
    def n_neurons(self) -> int:
        return self.layers[-1].stop if self.layers else 0

    @property
    def names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    def __getitem__(self, name: str) -> slice:
        for layer in self.layers:
            if layer.name == name:
                return layer.slice
        raise KeyError(f"no layer named '{name}'; layers: {self.names}")


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode for the block, then restore each flag."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


class PatternRecorder:
    """Context manager that hooks the selected activations and records their scores.

    >>> with PatternRecorder(model) as rec:
    ...     model(x)
    >>> bits = rec.bits(tie_tol=0.0)   # (batch, n_neurons)
    """

    def __init__(self, model: nn.Module, layers: LayerSelector = None):
        self.model = model
        self.modules = find_activations(model, layers)
        self._handles: list = []
        self._scores: list[tuple[str, Tensor]] = []
        self._saved: dict[str, Tensor] = {}

    def _pre_hook(self, name: str) -> Callable:
        # An in-place activation overwrites its input: keep a copy of z for the rule.
        def pre_hook(mod: nn.Module, args: tuple) -> None:
            if args and isinstance(args[0], Tensor):
                self._saved[name] = args[0].detach().clone()

        return pre_hook

    def _hook(self, name: str, module: nn.Module) -> Callable:
        rule = _entry(module).rule  # type: ignore[union-attr]

        def hook(mod: nn.Module, args: tuple, out: Tensor) -> None:
            if not args or not isinstance(args[0], Tensor) or not isinstance(out, Tensor):
                raise TypeError(f"activation '{name}' must take and return one tensor")
            inp = self._saved.pop(name, args[0])
            self._scores.append((name, rule(mod, inp, out)))

        return hook

    def __enter__(self) -> PatternRecorder:
        self._scores = []
        self._saved = {}
        for name, module in self.modules:
            if getattr(module, "inplace", False):
                self._handles.append(module.register_forward_pre_hook(self._pre_hook(name)))
            self._handles.append(module.register_forward_hook(self._hook(name, module)))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        self._saved = {}

    def clear(self) -> None:
        self._scores = []

    def layout(self) -> PatternLayout:
        specs = []
        calls: dict[str, int] = {}
        start = 0
        for name, score in self._scores:
            i = calls.get(name, 0)
            calls[name] = i + 1
            size = int(score[0].numel()) if score.shape[0] else int(torch.Size(score.shape[1:]).numel())
            specs.append(LayerSpec(name if i == 0 else f"{name}#{i}", name, i, tuple(score.shape[1:]), start, start + size))
            start += size
        return PatternLayout(tuple(specs))

    def scores(self) -> Tensor:
        """Concatenated scores ``(batch, n_neurons)`` of the last forward pass(es)."""
        if not self._scores:
            raise RuntimeError(
                "no activation was called during the forward pass; activations called functionally "
                "(F.relu in forward) cannot be hooked"
            )
        return torch.cat([s.reshape(s.shape[0], -1) for _, s in self._scores], dim=1)

    def bits(self, tie_tol: float = 0.0) -> Tensor:
        return self.scores() > tie_tol


def check_nonnegative(value: float, name: str) -> float:
    """Validate a finite number >= 0 (a tolerance) and return it as float."""
    if isinstance(value, bool):
        raise InputTypeError(f"{name} must be a number >= 0, got {value!r}")
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise InputTypeError(f"{name} must be a number >= 0, got {value!r}") from None
    if not (value >= 0.0) or value == float("inf"):
        raise InputError(f"{name} must be a finite number >= 0, got {value}")
    return value


def check_inputs(x: Tensor, name: str = "x") -> None:
    """Validate inputs ``(batch, *input_shape)``: a real tensor of finite values."""
    if not isinstance(x, Tensor):
        raise InputTypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 1:
        raise InputError(f"{name} must have a batch dimension (batch, *input_shape), got a scalar")
    if x.is_complex():
        raise InputTypeError(f"{name} must hold real values, got dtype {x.dtype}; pass x.real or x.abs() explicitly")
    # A finite sum proves every value finite (NaN and inf propagate through a sum); only when
    # it is not (NaN, inf, or an overflow of large finite values) are the values counted.
    if x.is_floating_point() and not bool(torch.isfinite(x.sum())):
        bad = int((~torch.isfinite(x)).sum())
        if bad:
            raise InputError(f"{name} holds {bad} NaN or inf value(s); expected finite inputs")


def check_model(model) -> None:
    """Validate a model to run: an ``nn.Module`` whose parameters hold values on a
    device this build of torch can use."""
    if not isinstance(model, nn.Module):
        raise InputTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    device, _ = model_device_dtype(model)
    if device.type == "meta":
        raise InputError(
            "model must hold its weights, got a model on the meta device (parameters without values); "
            "create it on a real device or load its weights, e.g. model.to_empty(device='cpu') then load_state_dict"
        )
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"model is on {device}, but this build of torch has no CUDA device; move it with model.cpu()")


def run_model(model: nn.Module, x: Tensor, name: str = "x") -> Tensor:
    """Forward pass with a clear error when the input does not fit the model."""
    try:
        return model(x)
    except (RuntimeError, ValueError, IndexError) as err:
        raise InputError(
            f"{name} of shape {tuple(x.shape)} does not fit the model {type(model).__name__} "
            f"(expected (batch, *input_shape) for its first layer): {str(err).splitlines()[0]}"
        ) from err


@overload
def activation_patterns(model: nn.Module, x: Tensor, layers: LayerSelector = None, *, tie_tol: float = 0.0,
                        batch_size: int | None = None, return_layout: Literal[False] = False) -> Tensor: ...


@overload
def activation_patterns(model: nn.Module, x: Tensor, layers: LayerSelector = None, *, tie_tol: float = 0.0,
                        batch_size: int | None = None, return_layout: Literal[True]) -> tuple[Tensor, PatternLayout]:
    ...


def activation_patterns(
    model: nn.Module,
    x: Tensor,
    layers: LayerSelector = None,
    *,
    tie_tol: float = 0.0,
    batch_size: int | None = None,
    return_layout: bool = False,
) -> Tensor | tuple[Tensor, PatternLayout]:
    """Activation patterns of ``x`` under ``model``: bool ``(batch, n_neurons)``.

    Bits of the selected activation modules (default: all, in forward order) are
    concatenated; bit = pre-activation > ``tie_tol``. The model runs in eval mode
    under ``torch.no_grad()`` (its train/eval flags are restored afterwards).
    ``x`` is moved to the model's device and dtype. With ``return_layout=True``
    returns ``(patterns, layout)`` where ``layout`` gives each layer's slice.
    """
    if not isinstance(model, nn.Module):
        raise InputTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_inputs(x)
    tie_tol = check_nonnegative(tie_tol, "tie_tol")
    if batch_size is not None:
        check_int(batch_size, "batch_size", 1)
    x = to_model(model, x)
    rec = PatternRecorder(model, layers)
    chunks = []
    layout = None
    step = batch_size or max(1, x.shape[0])
    with rec, eval_mode(model), torch.no_grad():
        for i in range(0, max(1, x.shape[0]), step):
            rec.clear()
            run_model(model, x[i : i + step])
            chunks.append(rec.bits(tie_tol))
            if layout is None:
                layout = rec.layout()
    out = torch.cat(chunks, dim=0) if chunks else torch.zeros(0, 0, dtype=torch.bool)
    return (out, layout) if return_layout else out


def pattern_layout(model: nn.Module, x: Tensor, layers: LayerSelector = None) -> PatternLayout:
    """The layout of the pattern of ``model`` for inputs like ``x`` (batch of >= 1)."""
    return activation_patterns(model, x[:1], layers, return_layout=True)[1]


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for p in model.parameters():
        return p.device, p.dtype
    for b in model.buffers():
        if b.is_floating_point():
            return b.device, b.dtype
    return torch.device("cpu"), torch.get_default_dtype()


def to_model(model: nn.Module, x: Tensor) -> Tensor:
    device, dtype = model_device_dtype(model)
    return x.to(device=device, dtype=dtype)
