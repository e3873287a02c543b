"""Activation patterns of any ``nn.Module``: hooks, binarisation rules, layer selection.

A neuron's bit follows docs/method.md, 'Activation patterns': for an activation f the bit is 1 iff
f(z) > 0, and for strictly positive f iff f(z) > f(0). For every elementwise activation
registered here (all monotone with f(0) on the boundary) that is the same as the
sign of the pre-activation, so the rule is applied to the activation's *input* z:

    bit = z > tie_tol    (tie rule: z == 0 gives bit 0; ``tie_tol`` defaults to 0)

Gated units (``nn.GLU`` and :mod:`spacefold.nn`'s ``SwiGLU``, ``GEGLU``, ``ReGLU``) give one
bit per unit from the unit's output, [output > tie_tol].

Where the bits come from (one block of bits per *application* of an activation, in the
order of the forward pass):

- **Modules**: forward hooks on the activation modules of the model, so nested modules,
  residual blocks and conv nets are covered. For in-place activations (``inplace=True``)
  the input is copied before the module overwrites it, so the rule still sees z. A module
  called several times in one forward pass (one ``nn.ReLU`` reused in a residual block)
  contributes one block per call, named ``"name"``, ``"name#1"``, ``"name#2"``, ...
- **Functions**: activations called as functions anywhere in ``forward`` (``F.relu``,
  ``torch.relu``, ``x.relu()``, ``F.gelu``, ``F.silu``, ``torch.tanh``, ``torch.sigmoid``,
  ``F.glu``, ...: every function of :data:`FUNCTIONAL_ACTIVATIONS`) are intercepted while
  the model runs (a ``torch.overrides.TorchFunctionMode``) and binarised by the rule of
  their module type (``F.leaky_relu(z, 0.2)`` exactly as ``nn.LeakyReLU(0.2)``). A call
  site is named ``"<module>:<function>"``: the module whose own ``forward`` made the
  call (``""`` for the model itself) and the function's name, e.g.
  ``"layers.0:gelu"`` for the GELU of ``nn.TransformerEncoderLayer(activation="gelu")`` at
  ``layers.0``, or ``":relu"`` for ``F.relu`` in the model's own ``forward``; repeated calls
  get ``"#1"``, ``"#2"``, ... as modules do. Calls made inside an activation module (the
  ``F.relu`` inside ``nn.ReLU``) belong to that module and give no bits of their own.
- PyTorch's fused fast path of ``nn.TransformerEncoderLayer`` in eval mode (which runs its
  activation in C++) is switched off while the model runs (and restored after): :func:`no_fastpath`.
- Inside a transformer layer built with ``batch_first=False`` (a model that transposes to
  (seq, batch, d) before it) the activations see (seq, batch, ...): their scores are moved to
  batch first, so the pattern is that of the same layer with ``batch_first=True``. Such a layer
  given an input whose second dimension is not the model's batch (the model is the encoder
  itself, fed batch first) is an error: the points of a walk would attend to each other.
- **What cannot be seen is an error, never an omission**: an activation op that runs
  below Python (a TorchScript submodule, code compiled by ``torch.compile``) is caught at
  the operator level (a ``TorchDispatchMode``, active where the model holds a TorchScript
  submodule or ``torch.compile`` has been used in the process) and raises an error naming
  the op and the module it ran in; so does an activation function whose module type has no
  binarisation rule (``F.softshrink``). Operators that run inside another torch function
  or custom operator belong to it (the ReLU inside ``F.lp_pool2d``, the gates of
  ``nn.LSTM``'s fused kernel) and give no bits.
  Elementwise maps that are not activations (``torch.abs``, ``torch.clamp``, ``torch.exp``,
  softmax) and activations of values computed from parameters and buffers alone
  (``torch.sigmoid(self.alpha * 2)``, a parametrization) give no bits; scores
  whose first dimension is not the batch (tokens folded into it) are an error naming the call site.
- A model whose activations are called differently at different inputs (data-dependent
  control flow in ``forward``) would give patterns of different meaning: the layout of
  every forward pass is compared with the first one, and a difference is an error.

Layer selection (``layers=``): a module name (as in ``model.named_modules()``), a call
site name ``"<module>:<function>"`` (every call of that function from that module's
forward), an activation module type (``nn.GELU``: its modules and the functional calls of
the same kind, ``F.gelu``), or a list of them.

New activation types are added with :func:`register_activation`.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, overload

import torch
from torch import Tensor, nn

from .._util import check_int
from ..errors import InputError, InputTypeError
from .checks import (  # noqa: F401 - also importable from here
    check_inputs,
    check_model,
    check_nonnegative,
    eval_mode,
    model_device_dtype,
    no_fastpath,
    run_model,
    to_model,
)
from .intercept import _Intercept, _Watch
from .rules import (  # noqa: F401 - also importable from here
    _ATEN_ACTIVATIONS,
    _METHODS,
    _NOT_ELEMENTWISE,
    _PIECEWISE_LINEAR,
    _REGISTRY,
    _SMOOTH_MONOTONE,
    FUNCTIONAL_ACTIVATIONS,
    Rule,
    _always,
    _arg,
    _build_functional_table,
    _Entry,
    _entry,
    _flag,
    _Functional,
    _looks_like_activation,
    _never,
    _num,
    _pre_activation,
    _prelu,
    _rule_form,
    _unit_output,
    functional_activation,
    is_piecewise_linear,
    register_activation,
)

__all__ = [
    "activation_patterns",
    "pattern_layout",
    "register_activation",
    "find_activations",
    "is_piecewise_linear",
    "functional_activation",
    "FUNCTIONAL_ACTIVATIONS",
    "LayerSpec",
    "PatternLayout",
    "PatternRecorder",
    "eval_mode",
    "no_fastpath",
]


# --------------------------------------------------------------------------- functional activations


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


def selector_key(layers: LayerSelector) -> tuple | None:
    """A hashable form of a layer selection (for caches)."""
    sel = _normalise_selector(layers)
    return None if sel is None else tuple(sel)


def selects_call(layers: LayerSelector, site: str, module: nn.Module) -> bool:
    """Whether ``layers`` selects the functional call site ``site`` (``"<module>:<function>"``),
    which computes ``module``: by the site's name or by the module's type."""
    sel = _normalise_selector(layers)
    if sel is None:
        return True
    return any((isinstance(s, str) and s == site) or (isinstance(s, type) and isinstance(module, s)) for s in sel)


def _inside_activation(name: str, activation_names: list[str]) -> bool:
    return any(a and name.startswith(a + ".") for a in activation_names)


def find_activations(model: nn.Module, layers: LayerSelector = None) -> list[tuple[str, nn.Module]]:
    """The activation *modules* whose bits enter the pattern, in registration order.

    ``layers`` selects by module name (as in ``model.named_modules()``), by call site
    name (``"<module>:<function>"``, checked when the model runs) or by type; the default
    is every registered activation module (modules inside another registered module
    excepted: they belong to it). Activations called as functions are found only when the
    model runs (:class:`PatternRecorder`), so the list may be empty. Raises ``TypeError``
    for an activation module that has no binarisation rule, and ``ValueError`` for a name
    that matches no module.
    """
    if not isinstance(model, nn.Module):
        raise InputTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    selector = _normalise_selector(layers)
    named = [(n, m) for n, m in model.named_modules()]
    act_names: list[str] = []
    chosen: list[tuple[str, nn.Module]] = []
    for name, module in named:
        if _inside_activation(name, act_names):
            continue
        if _entry(module) is not None:
            act_names.append(name)
    if selector is None:
        for name, module in named:
            if _inside_activation(name, act_names):
                continue
            if _entry(module) is not None:
                chosen.append((name, module))
            elif _looks_like_activation(module):
                raise InputTypeError(
                    f"cannot binarise activation {type(module).__name__} at '{name or '<model>'}': it has no "
                    "binarisation rule; register one with spacefold.register_activation("
                    f"nn.{type(module).__name__}, rule) or leave it out with layers=[...]"
                )
        return chosen
    names = {n for n, _ in named}
    for item in selector:
        if isinstance(item, str) and ":" not in item and item not in names:
            raise InputError(
                f"layers names '{item}', which is not a module of the model; activation modules: "
                f"{act_names} (functional calls are named '<module>:<function>', e.g. ':relu')"
            )
    for name, module in named:
        hit = any(
            (isinstance(s, str) and s == name) or (isinstance(s, type) and isinstance(module, s)) for s in selector
        )
        if not hit or _inside_activation(name, act_names):
            continue
        if _entry(module) is None:
            if any(isinstance(s, str) and s == name for s in selector):
                raise InputTypeError(
                    f"layers selects '{name}' ({type(module).__name__}), which has no binarisation rule; "
                    "select activation modules or register a rule with spacefold.register_activation"
                )
            continue
        chosen.append((name, module))
    return chosen


@dataclass(frozen=True)
class LayerSpec:
    """One block of bits: the output of one activation call (a module's or a function's).

    ``module_name`` is the module's name, or ``"<module>:<function>"`` for a function
    called in that module's ``forward`` (``functional`` is then True); ``kind`` the
    activation's module type name (``"GELU"`` for ``nn.GELU`` and ``F.gelu``)."""

    name: str  # module name, with "#i" for the i-th repeated call (i >= 1)
    module_name: str
    call: int
    shape: tuple[int, ...]  # per-sample output shape
    start: int
    stop: int
    kind: str = ""
    functional: bool = False

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


# Transformer layers that take (seq, batch, d) when built with batch_first=False: the activations
# inside them see (seq, batch, ...), which the recorder moves to batch first
_SEQ_FIRST_LAYERS = (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)


def _seq_first(module: nn.Module) -> bool:
    return isinstance(module, _SEQ_FIRST_LAYERS) and not getattr(module.self_attn, "batch_first", True)


def _tensors(args: tuple, kwargs: dict):
    """The tensors among the arguments of a call (and in their lists and tuples)."""
    for a in (*args, *kwargs.values()):
        if isinstance(a, Tensor):
            yield a
        elif isinstance(a, (list, tuple)):
            yield from (b for b in a if isinstance(b, Tensor))


def _script_module(m: nn.Module) -> bool:
    return isinstance(m, torch.jit.ScriptModule)


class PatternRecorder:
    """Context manager that records the scores of the selected activations while the model runs.

    >>> with PatternRecorder(model) as rec:
    ...     model(x)
    >>> bits = rec.bits(tie_tol=0.0)   # (batch, n_neurons)

    Inside the block every call of ``model`` runs with hooks on its modules and with its
    activation functions intercepted (see the module notes); the layout of every forward
    pass must be that of the first one.
    """

    def __init__(self, model: nn.Module, layers: LayerSelector = None):
        self.model = model
        self.layers = layers
        self.selector = _normalise_selector(layers)
        self.modules = find_activations(model, layers)
        self._selected = {id(m) for _, m in self.modules}
        named = list(model.named_modules())
        self._names = {id(m): n for n, m in named}
        self._acts = {id(m) for n, m in named if _entry(m) is not None}
        self._has_script = any(_script_module(m) for _, m in named)
        self._handles: list = []
        self._scores: list[tuple[str, Tensor, str, bool]] = []
        self._saved: dict[int, Tensor] = {}
        self._stack: list[str] = []
        self._depth = 0  # > 0 inside an activation (module or function): its operators are its own
        self._inside = 0  # > 0 inside another torch function called from Python
        self._modes: list = []
        # tensors computed from parameters and buffers alone in this forward pass (ids, and the tensors, so that
        # no id is reused while it runs): an activation of one gives no bits (see _follow)
        self._const: set[int] = set()
        self._const_refs: list[Tensor] = []
        self._fastpath: contextlib.AbstractContextManager | None = None
        self._batch: int | None = None  # the batch size of the model's input in this forward pass
        self._seq = 0  # > 0 inside a transformer layer with batch_first=False
        self._reference: list[tuple[str, int]] | None = None
        self._sites_seen: set[str] = set()  # call sites selected and called
        self._sites: set[str] = set()  # every call site called
        self._pending: InputError | None = None
        # called with (module, input) at every activation call, selected or not, module or function (the
        # module a function computes), in the order of the forward pass, before the call
        self.on_call: Callable[[nn.Module, Tensor], None] | None = None

    # ------------------------------------------------------------------ hooks
    def _copy(self, x: Tensor) -> Tensor:
        """The copy of an input that an in-place activation will overwrite."""
        return x.detach().clone()

    def _constant(self, x) -> bool:
        return isinstance(x, Tensor) and id(x) in self._const

    def _run_followed(self, func, args: tuple, kwargs: dict):
        """``func(*args, **kwargs)``, whose operators are its own (no activation operator it runs is unseen),
        its outputs followed (:meth:`_follow`)."""
        self._inside += 1
        try:
            out = func(*args, **kwargs)
        finally:
            self._inside -= 1
        self._follow(args, kwargs, out)
        return out

    def _follow(self, args: tuple, kwargs: dict, out) -> None:
        """The outputs of an operation whose tensor inputs are all constant (parameters, buffers, or
        computed from them alone) are constant; an operation with any other input makes its outputs not."""
        ins = list(_tensors(args, kwargs))
        const = bool(ins) and all(id(t) in self._const for t in ins)
        for t in _tensors((out,), {}):
            if const:
                self._const.add(id(t))
                self._const_refs.append(t)
            else:
                self._const.discard(id(t))

    @staticmethod
    def _rule(entry, site: str, mod: nn.Module, inputs: tuple, out):
        """The scores the binarisation rule of ``mod`` gives; an error in a rule is named as one."""
        try:
            return entry.rule(mod, inputs, out)
        except (RuntimeError, ValueError, IndexError, TypeError, KeyError, AttributeError) as err:
            raise InputTypeError(
                f"the binarisation rule of {type(mod).__name__} (activation '{site}') raised "
                f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            ) from err

    def _rows(self, site: str, mod: nn.Module, score) -> Tensor:
        """The scores of the activation at ``site``, batch first (moved there from (seq, batch, ...) inside a
        transformer layer with batch_first=False), checked to hold one row per input."""
        if not isinstance(score, Tensor):
            raise InputTypeError(
                f"the binarisation rule of {type(mod).__name__} (activation '{site}') returned "
                f"{type(score).__name__}, not a tensor of scores (batch, ...): a rule returns the quantity whose "
                "sign gives the bits, one row per input"
            )
        score = score.movedim(1, 0) if self._seq and score.dim() > 1 else score
        if self._batch is not None and (score.dim() == 0 or score.shape[0] != self._batch):
            raise InputError(
                f"the activation '{site}' ({type(mod).__name__}) gave scores of shape {tuple(score.shape)}, whose "
                f"first dimension is not the batch size {self._batch} of the model's input: spacefold reads the bits "
                "of input i from row i of every activation; keep the batch first there (e.g. (batch, tokens, d) "
                "rather than (batch * tokens, d)), make a custom rule keep it, or leave the activation out with "
                "layers=[...]"
            )
        return score

    def _enter_seq_first(self, mod: nn.Module, args: tuple) -> None:
        x = args[0] if args else None
        name = self._names.get(id(mod), "?") or "<model>"
        if isinstance(x, Tensor) and self._batch is not None and (x.dim() != 3 or x.shape[1] != self._batch):
            raise InputError(
                f"{type(mod).__name__} at '{name}' has batch_first=False and takes (seq, batch, d), but its input has "
                f"shape {tuple(x.shape)}, whose second dimension is not the batch size {self._batch} of the model's "
                "input: spacefold passes inputs batch first, (batch, *input_shape), and the points of a walk must not "
                "attend to each other; build the layer with batch_first=True, or transpose to (seq, batch, d) inside "
                "the model's forward"
            )
        self._seq += 1

    def _pre(self, mod: nn.Module, args: tuple) -> None:
        self._stack.append(self._names.get(id(mod), "?"))
        if _seq_first(mod):
            self._enter_seq_first(mod, args)
        if id(mod) in self._acts:
            outer = self._depth == 0  # not inside another activation, whose modules are its own
            self._depth += 1
            if args and self._constant(args[0]):  # of parameters alone (a parametrization): no bits
                return
            if outer and self.on_call is not None and args and isinstance(args[0], Tensor):
                self.on_call(mod, args[0])
            if id(mod) in self._selected:
                if isinstance(mod, nn.GLU) and args and isinstance(args[0], Tensor):
                    _check_halves(args[0], mod.dim, f"nn.GLU at '{self._stack[-1] or '<model>'}'")
                if getattr(mod, "inplace", False) and args and isinstance(args[0], Tensor):
                    self._saved[id(mod)] = self._copy(args[0])

    def _post(self, mod: nn.Module, args: tuple, out) -> None:
        name = self._stack.pop() if self._stack else "?"
        if _seq_first(mod):
            self._seq = max(0, self._seq - 1)
        if id(mod) not in self._acts:
            return
        try:
            if args and self._constant(args[0]):
                self._follow(args[:1], {}, out)
            elif id(mod) in self._selected and out is not None:
                saved = self._saved.pop(id(mod), None)
                if not args or not isinstance(args[0], Tensor) or not isinstance(out, Tensor):
                    raise TypeError(f"activation '{name}' must take tensors and return one tensor")
                inputs = args if saved is None else (saved,) + tuple(args[1:])
                score = self._rule(_entry(mod), name, mod, inputs, out)
                self._scores.append((name, self._rows(name, mod, score), type(mod).__name__, False))
        finally:
            self._depth -= 1

    def _root_pre(self, mod: nn.Module, args: tuple) -> None:
        self._stack = []
        self._depth = 0
        self._inside = 0
        self._pending = None
        self._seq = 0
        self._batch = int(args[0].shape[0]) if args and isinstance(args[0], Tensor) and args[0].dim() else None
        self._const_refs = [*mod.parameters(), *mod.buffers()]
        self._const = {id(t) for t in self._const_refs}
        if self._fastpath is None:
            self._fastpath = no_fastpath()
            self._fastpath.__enter__()
        # the operator-level watch, where something can run below Python: a TorchScript submodule, or code
        # compiled by torch.compile (which imports torch._dynamo; the watch imports it too, so it is not
        # started where neither can be, which saves that import)
        watch = self._has_script or "torch._dynamo" in sys.modules
        self._modes = ([_Watch(self)] if watch else []) + [_Intercept(self)]
        for m in self._modes:
            m.__enter__()

    def _root_post(self, mod: nn.Module, args: tuple, out) -> None:
        for m in reversed(self._modes):
            m.__exit__(None, None, None)
        self._modes = []
        self._const, self._const_refs = set(), []
        if self._fastpath is not None:
            self._fastpath.__exit__(None, None, None)
            self._fastpath = None
        if self._pending is not None and out is not None:
            err, self._pending = self._pending, None
            raise err

    def _functional_call(self, spec: _Functional, func, args: tuple, kwargs: dict):
        x = args[0] if args else kwargs.get("input")
        owner = self._stack[-1] if self._stack else ""
        if self._constant(x):  # of parameters alone (a learned gate's sigmoid): no input's bits, a constant
            return self._run_followed(func, args, kwargs)
        site = f"{owner}:{spec.name}"
        module = spec.make(args, kwargs)
        if isinstance(module, nn.RReLU) and module.training:
            raise InputError(
                f"{spec.name} is called with training=True in the forward of '{owner or '<model>'}' (call site "
                f"'{site}'): its slopes are random, so its output changes from call to call; call it with "
                "training=False (or self.training, which spacefold sets to False while it measures)"
            )
        selected = selects_call(self.selector, site, module)
        entry = _entry(module)
        if selected and entry is None:
            raise InputTypeError(
                f"cannot binarise {spec.name} called in the forward of '{owner or '<model>'}' (call site "
                f"'{site}'): nn.{type(module).__name__} has no binarisation rule; register one with "
                f"spacefold.register_activation(nn.{type(module).__name__}, rule) or leave it out with layers=[...]"
            )
        if selected and isinstance(module, nn.GLU) and isinstance(x, Tensor):
            _check_halves(x, module.dim, f"F.glu at call site '{site}'")
        saved = self._copy(x) if selected and isinstance(x, Tensor) and spec.inplace(args, kwargs) else None
        if self.on_call is not None and isinstance(x, Tensor):
            self.on_call(module, x if saved is None else saved)
        self._depth += 1
        try:
            out = func(*args, **kwargs)
            self._sites.add(site)
            if selected:
                self._sites_seen.add(site)
                inputs = tuple(args) if args else (x,)
                if saved is not None:
                    inputs = (saved,) + inputs[1:]
                assert entry is not None  # a selected call without a rule was refused above
                self._scores.append(
                    (
                        site,
                        self._rows(site, module, self._rule(entry, site, module, inputs, out)),
                        type(module).__name__,
                        True,
                    )
                )
        finally:
            self._depth -= 1
        return out

    def _unseen(self, op: str) -> None:
        """Note an activation operator that ran unseen; the forward pass raises when it ends (an error
        raised here, inside a TorchScript interpreter, would come out as its RuntimeError)."""
        if self._pending is None:
            self._pending = self._unseen_error(op)

    def _unseen_error(self, op: str) -> InputError:
        where = self._stack[-1] if self._stack else ""
        named = dict(self.model.named_modules())
        mod = named.get(where)
        kind = f" ({type(mod).__name__})" if mod is not None else ""
        prefix = f"{where}." if where else ""
        scripts = [
            n
            for n, m in named.items()
            if _script_module(m)
            and n.startswith(prefix)
            and not _inside_activation(n, [k for k, v in named.items() if _script_module(v) and k != n])
        ]
        if scripts:
            why = (
                f"it runs in the TorchScript module {', '.join(repr(n) for n in scripts)}, which runs without "
                "Python: use the eager module, or save the whole model with torch.jit.save and load it with "
                "spacefold.data.load_model"
            )
        else:
            why = "it is computed by a fused or compiled operator that bypasses Python: use the eager module"
        return InputError(
            f"the model computes the activation {op} inside '{where or '<model>'}'{kind} where spacefold cannot "
            f"take its bits: {why}"
        )

    def __enter__(self) -> PatternRecorder:
        self._scores = []
        self._saved = {}
        root = self.model
        if not _script_module(root):
            self._handles.append(root.register_forward_pre_hook(self._root_pre))
        script_names = [n for n, m in root.named_modules() if _script_module(m) and n]
        for name, module in root.named_modules():
            if _script_module(module) or _inside_activation(name, script_names):
                continue
            self._handles.append(module.register_forward_pre_hook(self._pre))
            self._handles.append(module.register_forward_hook(self._post, always_call=True))
        if not _script_module(root):
            self._handles.append(root.register_forward_hook(self._root_post, always_call=True))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        self._saved = {}
        if self._modes:  # a forward pass interrupted before its last hook
            self._root_post(self.model, (), None)

    def clear(self) -> None:
        self._scores = []

    def layout(self) -> PatternLayout:
        self._check()
        specs = []
        calls: dict[str, int] = {}
        start = 0
        for name, score, kind, functional in self._scores:
            i = calls.get(name, 0)
            calls[name] = i + 1
            size = int(score[0].numel()) if score.shape[0] else int(torch.Size(score.shape[1:]).numel())
            specs.append(
                LayerSpec(
                    name if i == 0 else f"{name}#{i}",
                    name,
                    i,
                    tuple(score.shape[1:]),
                    start,
                    start + size,
                    kind,
                    functional,
                )
            )
            start += size
        return PatternLayout(tuple(specs))

    def _check(self) -> None:
        """The recorded calls give bits, and the same blocks as the first forward pass."""
        for s in self.selector or ():
            if isinstance(s, str) and ":" in s and s not in self._sites_seen:
                raise InputError(
                    f"layers names the call site '{s}', which no forward pass called; call sites "
                    f"seen: {sorted(self._sites)} (every functional call is '<module>:<function>')"
                )
        if not self._scores and _script_module(self.model):
            raise InputError(
                f"model {type(self.model).__name__} is a TorchScript module, which runs without Python, so spacefold "
                "sees none of its activations: load its file with spacefold.data.load_model(path), which rebuilds "
                "it from Python modules, or pass the eager model"
            )
        if not self._scores:
            raise InputError(
                f"model {type(self.model).__name__} has no hookable activation: no activation module and no "
                "activation function (F.relu, F.gelu, torch.tanh, ...) was called in its forward pass"
                if self.selector is None
                else f"layers={self.layers!r} selects no activation of model {type(self.model).__name__} that its "
                "forward pass called"
            )
        sig = [(name, int(score[0].numel()) if score.shape[0] else -1) for name, score, _, _ in self._scores]
        if self._reference is None:
            self._reference = sig
        elif [n for n, _ in sig] != [n for n, _ in self._reference] or any(
            a != b and -1 not in (a, b) for (_, a), (_, b) in zip(sig, self._reference)
        ):
            raise InputError(
                f"model {type(self.model).__name__} calls its activations differently at different inputs (first "
                f"forward pass: {_describe(self._reference)}; now: {_describe(sig)}); patterns of such a model have "
                "no fixed meaning (data-dependent control flow in forward): make every input take the same "
                "activations"
            )

    def scores(self) -> Tensor:
        """Concatenated scores ``(batch, n_neurons)`` of the last forward pass(es)."""
        self._check()
        return torch.cat([s.reshape(s.shape[0], -1) for _, s, _, _ in self._scores], dim=1)

    def bits(self, tie_tol: float = 0.0) -> Tensor:
        return self.scores() > tie_tol


def _describe(sig: list[tuple[str, int]]) -> str:
    calls: dict[str, int] = {}
    named = []
    for n, k in sig:
        i = calls.get(n, 0)
        calls[n] = i + 1
        named.append((n if i == 0 else f"{n}#{i}", k))
    text = ", ".join(f"{n} ({k} bits)" for n, k in named[:8])
    return text + (f", ... ({len(sig)} calls)" if len(sig) > 8 else "")


def _check_halves(x: Tensor, dim: int, what: str) -> None:
    """A gate that splits its input in two halves along ``dim`` needs an even size there."""
    if x.dim() == 0 or not -x.dim() <= dim < x.dim():
        return
    size = x.shape[dim]
    if size % 2:
        raise InputError(
            f"{what} splits dimension {dim} of its input into a gate half and a value half, which needs an even "
            f"size, got {size}: give the layer before it an even number of outputs"
        )


@overload
def activation_patterns(
    model: nn.Module,
    x: Tensor,
    layers: LayerSelector = None,
    *,
    tie_tol: float = 0.0,
    batch_size: int | None = None,
    return_layout: Literal[False] = False,
) -> Tensor: ...


@overload
def activation_patterns(
    model: nn.Module,
    x: Tensor,
    layers: LayerSelector = None,
    *,
    tie_tol: float = 0.0,
    batch_size: int | None = None,
    return_layout: Literal[True],
) -> tuple[Tensor, PatternLayout]: ...


def activation_patterns(
    model: nn.Module,
    x: Tensor,
    layers: LayerSelector = None,
    *,
    tie_tol: float = 0.0,
    batch_size: int | None = None,
    return_layout: bool = False,
) -> Tensor | tuple[Tensor, PatternLayout]:
    """The activation patterns of inputs under a model: one bit per neuron, in forward order
    (docs/method.md, "Activation patterns").

    The bits of the selected activations (modules, and activation functions called in ``forward``;
    by default all of them) are concatenated. A neuron's bit is pre-activation > ``tie_tol`` (for a
    gated unit, its output > ``tie_tol``). The model runs in eval mode under ``torch.no_grad()``, and
    its train/eval flags are restored afterwards. ``x`` is moved to the model's device and dtype.

    Args:
        model (nn.Module): any PyTorch model.
        x (Tensor): the inputs, ``(batch, *input_shape)``, real and finite.
        layers (str | type | list | None): which activations give bits: a module name (as in
            ``model.named_modules()``), a call site ``"<module>:<function>"``, an activation module
            type (``nn.GELU``: its modules and the ``F.gelu`` calls), or a list of them; ``None``: all.
        tie_tol (float): a neuron is on where its score exceeds ``tie_tol`` (>= 0); scores in
            ``[-tie_tol, tie_tol]`` count as off.
        batch_size (int | None): run the model on chunks of this many inputs (None: all at once).
        return_layout (bool): also return the layout, where each layer's bits sit in a pattern.

    Returns:
        Tensor | tuple[Tensor, PatternLayout]: the patterns, a bool tensor ``(batch, n_neurons)``; with
        ``return_layout=True`` the pair ``(patterns, layout)``, whose ``layout.layers`` give each block's
        name, kind and slice.

    Raises:
        InputTypeError: ``model`` is not an ``nn.Module``, ``x`` is not a real tensor, or ``layers``
            is not a name, a type or a list of them.
        InputError: ``x`` is a scalar or holds NaN or inf, ``tie_tol`` is negative, ``batch_size`` is
            below 1, ``layers`` names no activation of the model, or an activation runs where its bits
            cannot be seen (TorchScript, ``torch.compile``) or has no binarisation rule.

    Examples:
        >>> import torch, spacefold as sf
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2), torch.nn.ReLU())
        >>> with torch.no_grad():
        ...     _ = net[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])), net[0].bias.zero_()
        ...     _ = net[2].weight.copy_(torch.tensor([[1.0, -1.0, 0.0], [0.0, 0.0, 1.0]])), net[2].bias.fill_(-0.5)
        >>> x = torch.tensor([[1.0, -1.0], [-1.0, 2.0]])
        >>> sf.activation_patterns(net, x).int()
        tensor([[1, 0, 0, 1, 0],
                [0, 1, 1, 0, 1]], dtype=torch.int32)
        >>> patterns, layout = sf.activation_patterns(net, x, layers="1", return_layout=True)
        >>> patterns.shape, layout.names
        (torch.Size([2, 3]), ['1'])
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
    if not return_layout:
        return out
    assert layout is not None  # the loop above runs at least once
    return out, layout


def pattern_layout(model: nn.Module, x: Tensor, layers: LayerSelector = None) -> PatternLayout:
    """The layout of the pattern of ``model`` for inputs like ``x`` (batch of >= 1)."""
    return activation_patterns(model, x[:1], layers, return_layout=True)[1]
