"""The model as a program over interval-dual values (:class:`.interval.IDual`).

The model is traced with ``torch.fx``; activation modules, ``nn.MultiheadAttention`` and
PyTorch's transformer layers are kept as leaves and interpreted by handlers written here (the
transformer layers by their own forward, attention without its fused fast path, a layer with
``batch_first=False`` in batch-first order so that its bits are ordered as the hooks order
them). Activations called as functions are interpreted as the module they compute, gated units
through their two halves. Every node
is checked once, when the program is built: an operation without an enclosure is refused by
name (:class:`CertifiedUnsupportedError`), never skipped. While running, the input of every
selected activation call is recorded: its sign is the bit (docs/method.md, 'Activation
patterns'), in the order of the calls, which is the order of ``spacefold.activation_patterns``.
"""

from __future__ import annotations

import copy
import math
import operator
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from ...patterns import LayerSelector, _entry, _pre_activation, _unit_output, find_activations, selects_call
from ...rules import functional_activation, gate_parts
from . import interval as iv
from .functions import _leaky, exp_function, module_function, rsqrt_function, sqrt_function
from .interval import IDual
from .layers import (
    _BATCHNORM,
    _IDENTITY_MODULES,
    _MODULES,
    _PADS,
    CertifiedUnsupportedError,
    _adaptive_avgpool,
    _avgpool,
    _batchnorm,
    _conv,
    _layer_norm,
    _pad,
)


def _refuse(what: str, model: nn.Module) -> CertifiedUnsupportedError:
    return CertifiedUnsupportedError(
        f"method='certified' has no enclosure for {what} in {type(model).__name__}; it handles Linear, Conv1d/2d, "
        "BatchNorm in eval mode, LayerNorm, average and adaptive average pooling, padding, Flatten, Dropout/Identity, "
        "additions, products and "
        "quotients, mean, var, exp, sqrt, softmax, nn.MultiheadAttention, "
        "nn.TransformerEncoderLayer/TransformerEncoder, activation modules and functions (ReLU, LeakyReLU, "
        "PReLU, Hardtanh, ReLU6, ELU, SELU, CELU, GELU, SiLU, Mish, Tanh, Sigmoid, Softplus, ...; F.relu, F.gelu, "
        "torch.tanh, ...) and gated units (spacefold.nn.SwiGLU, GEGLU, ReGLU, "
        "nn.GLU, F.glu). "
        "Use method='bisect' for this model"
    )


_TRANSFORMER = (nn.TransformerEncoderLayer, nn.TransformerEncoder, nn.MultiheadAttention)

_STRUCTURAL_METHODS = {
    "view",
    "reshape",
    "flatten",
    "permute",
    "transpose",
    "squeeze",
    "unsqueeze",
    "contiguous",
    "expand",
    "expand_as",
    "view_as",
    "reshape_as",
    "clone",
    "unbind",
    "chunk",
    "split",
    "movedim",
    "__getitem__",
    "t",
}
_STRUCTURAL_FUNCS = {
    torch.flatten: "flatten",
    torch.reshape: "reshape",
    torch.transpose: "transpose",
    torch.permute: "permute",
    torch.squeeze: "squeeze",
    torch.unsqueeze: "unsqueeze",
    torch.chunk: "chunk",
    torch.split: "split",
    torch.movedim: "movedim",
    torch.unbind: "unbind",
    torch.t: "t",
}


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if _entry(m) is not None or isinstance(m, _TRANSFORMER):
            return True
        return super().is_leaf_module(m, qualname)


def _is_dual(a) -> bool:
    return isinstance(a, IDual)


def _any_dual(args) -> bool:
    found = False

    def visit(a):
        nonlocal found
        if isinstance(a, IDual):
            found = True
        elif isinstance(a, (list, tuple)):
            for b in a:
                visit(b)
        elif isinstance(a, dict):
            for b in a.values():
                visit(b)

    visit(args)
    return found


def _shift_dim(d: int) -> int:
    return d + 1 if d >= 0 else d


def _structural(x: IDual, name: str, args: tuple, kwargs: dict):
    """A reshaping of a per-row tensor (B, ...) applied to the stacked (NR, B, ...)."""
    if name in ("view", "reshape"):
        shape = args[0] if len(args) == 1 and isinstance(args[0], (tuple, list, torch.Size)) else args
        new = (iv.NR,) + tuple(int(s) for s in shape)
        return x.apply(lambda t: t.reshape(new))
    if name == "flatten":
        start = kwargs.get("start_dim", args[0] if args else 0)
        end = kwargs.get("end_dim", args[1] if len(args) > 1 else -1)
        return x.apply(lambda t: t.flatten(_shift_dim(start), _shift_dim(end)))
    if name == "permute":
        dims = args[0] if len(args) == 1 and isinstance(args[0], (tuple, list)) else args
        nd = x.dim()
        dims = [0] + [(d % nd) + 1 for d in dims]
        return x.apply(lambda t: t.permute(dims))
    if name == "transpose":
        return x.apply(lambda t: t.transpose(_shift_dim(args[0]), _shift_dim(args[1])))
    if name == "t":
        return x.apply(lambda t: t.transpose(1, 2))
    if name == "movedim":
        return x.apply(lambda t: t.movedim(_shift_dim(args[0]), _shift_dim(args[1])))
    if name == "squeeze":
        if args or "dim" in kwargs:
            d = int(kwargs["dim"] if "dim" in kwargs else args[0])
            return x.apply(lambda t: t.squeeze(_shift_dim(d)))
        return x.apply(lambda t: t.squeeze().reshape((iv.NR,) + tuple(s for s in x.shape if s != 1)))
    if name == "unsqueeze":
        d = int(kwargs["dim"] if "dim" in kwargs else args[0])
        nd = x.dim() + 1
        return x.apply(lambda t: t.unsqueeze((d % nd) + 1))
    if name in ("contiguous", "clone"):
        return x
    if name in ("expand",):
        shape = args[0] if len(args) == 1 and isinstance(args[0], (tuple, list, torch.Size)) else args
        return x.apply(lambda t: t.expand((iv.NR,) + tuple(shape)))
    if name in ("expand_as", "view_as", "reshape_as"):
        other = args[0]
        shape = other.shape
        fn = "expand" if name == "expand_as" else "reshape"
        return x.apply(lambda t: getattr(t, fn)((iv.NR,) + tuple(shape)))
    if name in ("chunk", "split", "unbind"):
        dim = (
            kwargs.get("dim", args[1] if len(args) > 1 else 0)
            if name != "unbind"
            else kwargs.get("dim", args[0] if args else 0)
        )
        d = _shift_dim(dim)
        if name == "unbind":
            cs, rs = x.C.unbind(d), x.R.unbind(d)
        else:
            cs = getattr(x.C, name)(args[0], d)
            rs = getattr(x.R, name)(args[0], d)
        return tuple(IDual(c, r, x.h) for c, r in zip(cs, rs))
    if name == "__getitem__":
        idx = args[0] if isinstance(args[0], tuple) else (args[0],)
        idx = (slice(None),) + idx
        return x.apply(lambda t: t[idx])
    raise NotImplementedError(name)


def _owner(node: fx.Node) -> str:
    """The module whose own forward made the call of ``node`` (``""`` for the model's)."""
    stack = node.meta.get("nn_module_stack")
    return next(reversed(stack)) if stack else ""


def _gate_function(m: nn.Module):
    """The :class:`.interval.Unary` of the gate of a gated unit (``nn.GLU``: sigmoid; a registered
    gated unit: its activation function), or None when the walk cannot follow it."""
    if isinstance(m, nn.GLU):
        return module_function(nn.Sigmoid())
    parts = gate_parts(m)
    if parts is None:
        return None
    gate, act, up = parts
    if not (isinstance(gate, nn.Linear) and isinstance(up, nn.Linear)):
        return None
    spec = functional_activation(act)
    return None if spec is None else module_function(spec.make((), {}))


def _linear_fn(weight: Tensor, bias: Tensor | None):
    wa = weight.abs()
    return (lambda t: t @ weight.T), (lambda t: t @ wa.T), weight.shape[1], bias


class CertifiedProgram:
    """A traced model with a handler for every node. :meth:`run` evaluates it on IDual inputs
    and returns the enclosures of the bit quantities (activation inputs), in forward order."""

    def __init__(self, model: nn.Module, layers: LayerSelector = None):
        model = copy.deepcopy(model).double().eval()
        self.model = model
        self.layers = layers
        self.selected = {id(m) for _, m in find_activations(model, layers)}
        self.names = {id(m): n for n, m in model.named_modules()}
        for name, m in model.named_modules():
            e = _entry(m)
            if e is None:
                continue
            if e.rule is _unit_output and _gate_function(m) is not None:
                continue
            if e.rule is not _pre_activation:
                raise CertifiedUnsupportedError(
                    f"method='certified' cannot certify the activation '{name}' ({type(m).__name__}): it has a custom "
                    "binarisation rule, whose score has no enclosure (the walk follows the built-in rules: the "
                    "pre-activation of elementwise activations, the unit output of spacefold.nn's gated units and "
                    "nn.GLU); use method='bisect' for this model, or build the gate from spacefold.nn.SwiGLU, GEGLU "
                    "or ReGLU"
                )
            if not _enclosed(m):
                raise _refuse(f"the activation module '{name}' ({type(m).__name__})", model)
        # a model that is itself an activation (a gated unit) is traced as the one leaf of a container
        self.root = nn.Sequential(model) if _entry(model) is not None else model
        try:
            self.graph = _Tracer().trace(self.root)
        except Exception as err:
            raise CertifiedUnsupportedError(
                f"method='certified' needs a model that torch.fx can trace, and tracing {type(model).__name__} failed "
                f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); use method='bisect'"
            ) from err
        self.modules = dict(self.root.named_modules())
        self._check()

    # ---------------------------------------------------------------- checking
    def _check(self) -> None:
        model = self.model
        for node in self.graph.nodes:
            if node.op == "call_module":
                m = self.modules[node.target]
                if not self._module_supported(m):
                    raise _refuse(f"the module '{node.target}' ({type(m).__name__})", model)
            elif node.op == "call_function":
                t = node.target
                spec = functional_activation(t)
                if spec is not None:
                    self._check_functional(spec, node, f"the function {getattr(t, '__name__', t)}")
                elif t not in _FUNCS and t not in _STRUCTURAL_FUNCS:
                    raise _refuse(f"the function {getattr(t, '__name__', t)} (node '{node.name}')", model)
            elif node.op == "call_method":
                spec = functional_activation(node.target)
                if spec is not None:
                    self._check_functional(spec, node, f"the method .{node.target}()")
                elif node.target not in _STRUCTURAL_METHODS and node.target not in _METHODS:
                    raise _refuse(f"the method .{node.target}() (node '{node.name}')", model)

    def _check_functional(self, spec, node, what: str) -> None:
        """An activation called as a function: its module form needs a bit rule the walk follows
        (the pre-activation, or the unit output of F.glu) and an enclosure."""
        args = tuple(a for a in node.args)
        try:
            module = spec.make(args, dict(node.kwargs))
        except (TypeError, ValueError, RuntimeError):
            raise _refuse(f"{what} with input-dependent parameters (node '{node.name}')", self.model) from None
        e = _entry(module)
        if (
            e is None
            or (e.rule is not _pre_activation and not isinstance(module, nn.GLU))
            or (not isinstance(module, nn.GLU) and not _enclosed(module))
        ):
            raise _refuse(f"{what} (node '{node.name}', computing {type(module).__name__})", self.model)

    def _module_supported(self, m: nn.Module) -> bool:
        if _entry(m) is not None:
            return _enclosed(m) or _gate_function(m) is not None
        if isinstance(m, nn.TransformerEncoderLayer):
            act = m.activation
            if isinstance(act, nn.Module):
                return _entry(act) is not None and module_function(act) is not None
            spec = functional_activation(act)
            return spec is not None and module_function(spec.make((), {})) is not None
        if isinstance(m, nn.TransformerEncoder):
            return all(self._module_supported(layer) for layer in m.layers)
        if isinstance(m, nn.MultiheadAttention):
            return m.bias_k is None and not m.add_zero_attn
        return isinstance(m, _MODULES)

    # ---------------------------------------------------------------- running
    def run(self, x: IDual) -> list[tuple[int, IDual, Tensor | None]]:
        """Interpret the graph; returns ``(id(module), enclosure, zero)`` of every selected
        activation call, in forward order: the enclosure of its bit quantity (the input of an
        elementwise activation, the output of a gated unit), and where known a bool mask of the
        entries that are exactly 0 on the whole interval (a ReLU gate closed), else None."""
        env: dict[fx.Node, object] = {}
        self._quantities: list[tuple[int, IDual, Tensor | None]] = []
        self._zeros: dict[int, Tensor] = {}

        def load(a):
            return fx.node.map_arg(a, lambda n: env[n])

        for node in self.graph.nodes:
            if node.op == "placeholder":
                env[node] = x
            elif node.op == "get_attr":
                obj = self.root
                for part in node.target.split("."):
                    obj = getattr(obj, part)
                env[node] = obj.detach() if isinstance(obj, Tensor) else obj
            elif node.op == "call_module":
                env[node] = self._call_module(self.modules[node.target], node, load(node.args), load(node.kwargs))
            elif node.op in ("call_function", "call_method"):
                args, kwargs = load(node.args), load(node.kwargs)
                spec = functional_activation(node.target)
                if spec is not None and (_any_dual(args[:1]) or _is_dual(kwargs.get("input"))):
                    env[node] = self._functional(spec, args, kwargs, _owner(node))
                elif node.op == "call_function":
                    env[node] = self._call_function(node.target, args, kwargs)
                else:
                    env[node] = self._call_method(node.target, args, kwargs)
            elif node.op == "output":
                break
        return self._quantities

    def _act(self, m: nn.Module, x: IDual, selected: bool | None = None) -> IDual:
        """An activation call (a module, or the module a function computes): its bit quantity is
        recorded when selected, and its output returned."""
        if selected is None:
            selected = id(m) in self.selected
        entry = _entry(m)
        gate = _gate_function(m) if entry is not None and entry.rule is _unit_output else None
        if gate is not None:
            out = self._gate(m, x, gate)
            if selected:  # gated units: the bit is [unit output > tie_tol]
                self._quantities.append((id(m), out, self._zeros.pop(id(out), None)))
            return out
        if selected:
            self._quantities.append((id(m), x, None))
        fn = module_function(m)
        if fn is None and isinstance(m, nn.PReLU):  # a slope per channel (dim 1): (1 - a) relu(x) + a x
            a = m.weight.detach().double().reshape((-1,) + (1,) * (x.dim() - 2))
            return iv.add(iv.scale(iv.unary(x, _leaky(0.0)), 1 - a), iv.scale(x, a))
        if fn is None:
            raise _refuse(f"the activation {type(m).__name__}", self.model)
        return iv.unary(x, fn)

    def _gate(self, m: nn.Module, x: IDual, fn) -> IDual:
        """``act(a) * b``: for ``nn.GLU`` the halves of the input along ``m.dim`` (act = sigmoid
        of the second), for registered gated units the two projections of the input."""
        if isinstance(m, nn.GLU):
            size = x.shape[m.dim]
            if size % 2:
                raise CertifiedUnsupportedError(
                    f"nn.GLU at '{self.names.get(id(m), '?')}' splits dimension {m.dim} of its input into two halves, "
                    f"which needs an even size, got {size}"
                )
            a, b = _structural(x, "chunk", (2, m.dim), {})
            return iv.mul(a, iv.unary(b, fn))
        gate, _, up = gate_parts(m)  # type: ignore[misc]
        a = self._call_module(gate, None, (x,), {})
        b = self._call_module(up, None, (x,), {})
        out = iv.mul(iv.unary(a, fn), b)
        if fn.name == "leaky_relu(0.0)":  # relu(a) * b is exactly 0 (in reals and in floats) where a <= 0
            _, ahi = iv.lohi(a.C[0], a.R[0])
            self._zeros[id(out)] = ahi <= 0
        return out

    def _functional(self, spec, args, kwargs, owner: str):
        """An activation called as a function from the forward of the module ``owner``: as its
        module form, its call site ``"<owner>:<name>"`` selected like the pattern recorder's."""
        module = spec.make(tuple(args), dict(kwargs))
        x = args[0] if args else kwargs.get("input")
        return self._act(module, x, selects_call(self.layers, f"{owner}:{spec.name}", module))

    def _call_module(self, m: nn.Module, node, args, kwargs):
        x = args[0] if args else next(iter(kwargs.values()))
        if not _is_dual(x):
            return m(*args, **kwargs)
        if _entry(m) is not None:
            return self._act(m, x)
        if isinstance(m, nn.Linear):
            lin, alin, n, b = _linear_fn(m.weight.detach(), None if m.bias is None else m.bias.detach())
            return iv.affine(x, lin, n, b, alin)
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            return _conv(x, m)
        if isinstance(m, _IDENTITY_MODULES):
            return x
        if isinstance(m, nn.Flatten):
            return _structural(x, "flatten", (m.start_dim, m.end_dim), {})
        if isinstance(m, nn.Unflatten):
            d = m.dim % x.dim()
            shape = x.shape[:d] + tuple(m.unflattened_size) + x.shape[d + 1 :]
            return _structural(x, "reshape", (tuple(shape),), {})
        if isinstance(m, _BATCHNORM):
            return _batchnorm(x, m)
        if isinstance(m, nn.LayerNorm):
            return _layer_norm(x, tuple(m.normalized_shape), m.weight, m.bias, m.eps)
        if isinstance(m, (nn.AvgPool1d, nn.AvgPool2d)):
            return _avgpool(x, m)
        if isinstance(m, tuple(_PADS)):
            return _pad(x, m)
        if isinstance(m, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)):
            return _adaptive_avgpool(x, m)
        if isinstance(m, nn.MultiheadAttention):
            q = x
            k = args[1] if len(args) > 1 else kwargs.get("key", q)
            v = args[2] if len(args) > 2 else kwargs.get("value", k)
            for key in ("attn_mask", "key_padding_mask"):
                if kwargs.get(key) is not None:
                    raise _refuse(f"nn.MultiheadAttention with {key} (node '{node.name}')", self.model)
            return self._mha(m, q, k, v), None
        if isinstance(m, nn.TransformerEncoderLayer):
            return self._encoder_layer(m, x, node, args, kwargs)
        if isinstance(m, nn.TransformerEncoder):
            for key in ("mask", "src_key_padding_mask"):
                if kwargs.get(key) is not None or (key == "mask" and len(args) > 1 and args[1] is not None):
                    raise _refuse(f"nn.TransformerEncoder with {key} (node '{node.name}')", self.model)
            for layer in m.layers:
                x = self._encoder_layer(layer, x, node, (x,), {})
            if m.norm is not None:
                x = self._call_module(m.norm, node, (x,), {})
            return x
        raise _refuse(f"the module {type(m).__name__} (node '{node.name}')", self.model)

    def _encoder_layer(self, m: nn.TransformerEncoderLayer, x: IDual, node, args, kwargs) -> IDual:
        for key in ("src_mask", "src_key_padding_mask"):
            if kwargs.get(key) is not None or (key == "src_mask" and len(args) > 1 and args[1] is not None):
                raise _refuse(f"nn.TransformerEncoderLayer with {key} (node '{node.name}')", self.model)
        seq_first = not m.self_attn.batch_first
        if seq_first:  # (seq, batch, d) -> (batch, seq, d): the bits are recorded batch first, as the hooks do
            x = _structural(x, "transpose", (0, 1), {})

        def sa(h):
            return self._mha(m.self_attn, h, h, h, batch_first=True)

        def ff(h):
            h = self._call_module(m.linear1, node, (h,), {})
            if isinstance(m.activation, nn.Module):
                h = self._act(m.activation, h)
            else:
                h = self._functional(functional_activation(m.activation), (h,), {}, self.names.get(id(m), "?"))
            return self._call_module(m.linear2, node, (h,), {})

        if m.norm_first:
            x = iv.add(x, sa(self._call_module(m.norm1, node, (x,), {})))
            x = iv.add(x, ff(self._call_module(m.norm2, node, (x,), {})))
        else:
            x = self._call_module(m.norm1, node, (iv.add(x, sa(x)),), {})
            x = self._call_module(m.norm2, node, (iv.add(x, ff(x)),), {})
        return _structural(x, "transpose", (0, 1), {}) if seq_first else x

    def _mha(self, m: nn.MultiheadAttention, q: IDual, k: IDual, v: IDual, batch_first: bool | None = None) -> IDual:
        batch_first = m.batch_first if batch_first is None else batch_first
        if not batch_first:  # (L, B, E) per row -> (B, L, E)
            q, k, v = (_structural(t, "transpose", (0, 1), {}) for t in (q, k, v))
        e, nh = m.embed_dim, m.num_heads
        hd = e // nh
        if m._qkv_same_embed_dim:
            wq, wk, wv = m.in_proj_weight.detach().chunk(3)
        else:
            wq, wk, wv = m.q_proj_weight.detach(), m.k_proj_weight.detach(), m.v_proj_weight.detach()
        bq = bk = bv = None
        if m.in_proj_bias is not None:
            bq, bk, bv = m.in_proj_bias.detach().chunk(3)
        qs, ks, vs = (_linear(t, w, b) for t, w, b in ((q, wq, bq), (k, wk, bk), (v, wv, bv)))

        def heads(t: IDual) -> IDual:  # (B, L, E) -> (B, nh, L, hd)
            b, L = t.shape[0], t.shape[1]
            return t.apply(lambda z: z.reshape(iv.NR, b, L, nh, hd).transpose(2, 3))

        qh, kh, vh = heads(qs), heads(ks), heads(vs)
        scores = iv.scale(iv.matmul(qh, kh.apply(lambda z: z.transpose(-1, -2))), 1.0 / math.sqrt(hd))
        attn = iv.softmax(scores, -1)
        out = iv.matmul(attn, vh)  # (B, nh, L, hd)
        b, L = out.shape[0], out.shape[2]
        out = out.apply(lambda z: z.transpose(2, 3).reshape(iv.NR, b, L, e))
        w, bo = m.out_proj.weight.detach(), None if m.out_proj.bias is None else m.out_proj.bias.detach()
        lin, alin, n, _ = _linear_fn(w, bo)
        out = iv.affine(out, lin, n, bo, alin)
        if not batch_first:
            out = _structural(out, "transpose", (0, 1), {})
        return out

    def _call_function(self, t, args, kwargs):
        if not _any_dual(args) and not _any_dual(kwargs):
            return t(*args, **kwargs)
        if t in _STRUCTURAL_FUNCS:
            return _structural(args[0], _STRUCTURAL_FUNCS[t], tuple(args[1:]), kwargs)
        return _FUNCS[t](*args, **kwargs)

    def _call_method(self, name, args, kwargs):
        obj = args[0]
        if not _is_dual(obj):
            if _any_dual(args[1:]) and name in _METHODS:
                return _METHODS[name](*args, **kwargs)
            return getattr(obj, name)(*args[1:], **kwargs)
        if name in _STRUCTURAL_METHODS:
            return _structural(obj, name, tuple(args[1:]), kwargs)
        return _METHODS[name](*args, **kwargs)


# ------------------------------------------------------------------ module handlers


def _enclosed(m: nn.Module) -> bool:
    """Whether the activation module ``m`` has an enclosure (a :class:`Unary`, or PReLU's slope per channel)."""
    return module_function(m) is not None or isinstance(m, nn.PReLU)


# ------------------------------------------------------------------ functions and methods


def _binary(op: str):
    def fn(a, b=None, *, alpha=None, other=None):
        if b is None:
            b = other
        if alpha is not None:
            b = b * alpha if not _is_dual(b) else iv.scale(b, alpha)
        if op in ("add", "sub"):
            sign = 1.0 if op == "add" else -1.0
            if _is_dual(a) and _is_dual(b):
                return iv.add(a, b, sign)
            if _is_dual(a):
                return iv.shift(a, sign * torch.as_tensor(b, dtype=torch.float64))
            return iv.shift(iv.scale(b, sign), torch.as_tensor(a, dtype=torch.float64))
        if op == "mul":
            if _is_dual(a) and _is_dual(b):
                return iv.mul(a, b)
            return iv.scale(a, b) if _is_dual(a) else iv.scale(b, a)
        if op == "div":
            if _is_dual(b):
                inv = iv.reciprocal(b)
                return iv.mul(a, inv) if _is_dual(a) else iv.scale(inv, torch.as_tensor(a, dtype=torch.float64))
            k = torch.as_tensor(b, dtype=torch.float64)
            C = a.C / k
            return a.like(C, iv._widen(a.R / k.abs() + iv.U * C.abs()))
        raise NotImplementedError(op)

    return fn


def _neg(a):
    return iv.scale(a, -1.0)


def _matmul(a, b):
    if _is_dual(a) and _is_dual(b):
        return iv.matmul(a, b)
    if _is_dual(a):
        w = torch.as_tensor(b, dtype=torch.float64)
        wa = w.abs()
        return iv.affine(a, lambda t: t @ w, w.shape[0], None, lambda t: t @ wa)
    w = torch.as_tensor(a, dtype=torch.float64)
    wa = w.abs()
    return iv.affine(b, lambda t: w @ t, w.shape[-1], None, lambda t: wa @ t)


def _linear(x, weight, bias=None):
    lin, alin, n, b = _linear_fn(weight, bias)
    return iv.affine(x, lin, n, b, alin)


def _sum(x, dim=None, keepdim=False, **kw):
    return iv.reduce_sum(x, dim, keepdim=keepdim)


def _mean(x, dim=None, keepdim=False, **kw):
    return iv.reduce_sum(x, dim, keepdim=keepdim, mean=True)


def _softmax(x, dim=None, **kw):
    return iv.softmax(x, dim if dim is not None else kw.get("dim"))


def _cat(tensors, dim=0):
    h = next(t.h for t in tensors if _is_dual(t))
    parts = []
    for t in tensors:
        if _is_dual(t):
            parts.append(t)
        else:  # a constant: value rows, zero derivative
            t = t.double()
            z = torch.zeros_like(t)
            parts.append(IDual(torch.stack([t, t, z, z, z]), torch.zeros((iv.NR,) + t.shape, dtype=torch.float64), h))
    d = _shift_dim(dim)
    return IDual(torch.cat([p.C for p in parts], d), torch.cat([p.R for p in parts], d), h)


def _pow(x, p):
    if p == 2:
        return iv.square(x)
    if p == 0.5:
        return iv.unary(x, sqrt_function())
    if p == -0.5:
        return iv.unary(x, rsqrt_function())
    raise CertifiedUnsupportedError(
        f"method='certified' has no enclosure for a power {p!r} of an input-dependent value"
    )


def _var(x, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """Variance over ``dim``: the mean of the squared centred values, times n / (n - correction)."""
    nd = x.dim()
    dims = (
        tuple(range(-nd + 1, 0))
        if dim is None
        else tuple((d if d < 0 else d - nd) for d in ((dim,) if isinstance(dim, int) else dim))
    )
    n = math.prod(x.shape[d] for d in dims)
    corr = correction if correction is not None else (0 if unbiased is False else 1)
    v = iv.reduce_sum(iv.square(iv.centre(x, dims)), dims, keepdim=True, mean=True)
    if corr:
        v = iv.scale(v, n / (n - corr))
    return v if keepdim else v.apply(lambda t: t.squeeze(dims))


def _layer_norm_fn(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    return _layer_norm(x, tuple(normalized_shape), weight, bias, eps)


def _sdpa(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kw):
    if attn_mask is not None or is_causal:
        raise CertifiedUnsupportedError("method='certified' has no enclosure for masked attention")
    s = scale if scale is not None else 1.0 / math.sqrt(q.shape[-1])
    scores = iv.scale(iv.matmul(q, k.apply(lambda z: z.transpose(-1, -2))), s)
    return iv.matmul(iv.softmax(scores, -1), v)


_FUNCS: dict[object, Callable] = {
    operator.add: _binary("add"),
    operator.iadd: _binary("add"),
    torch.add: _binary("add"),
    operator.sub: _binary("sub"),
    operator.isub: _binary("sub"),
    torch.sub: _binary("sub"),
    operator.mul: _binary("mul"),
    operator.imul: _binary("mul"),
    torch.mul: _binary("mul"),
    operator.truediv: _binary("div"),
    operator.itruediv: _binary("div"),
    torch.div: _binary("div"),
    operator.neg: _neg,
    torch.neg: _neg,
    operator.pos: lambda a: a,
    operator.matmul: _matmul,
    torch.matmul: _matmul,
    torch.mm: _matmul,
    torch.bmm: _matmul,
    F.linear: _linear,
    torch.sum: _sum,
    torch.mean: _mean,
    torch.softmax: _softmax,
    F.softmax: _softmax,
    torch.cat: _cat,
    torch.concat: _cat,
    torch.exp: lambda x: iv.unary(x, exp_function()),
    torch.sqrt: lambda x: iv.unary(x, sqrt_function()),
    torch.rsqrt: lambda x: iv.unary(x, rsqrt_function()),
    operator.pow: _pow,
    torch.pow: _pow,
    torch.var: _var,
    torch.reciprocal: lambda x: iv.reciprocal(x),
    F.layer_norm: _layer_norm_fn,
    F.scaled_dot_product_attention: _sdpa,
    F.dropout: lambda x, *a, **k: x,
    operator.getitem: lambda a, i: _structural(a, "__getitem__", (i,), {}) if _is_dual(a) else a[i],
    getattr: lambda a, name: a.shape if (_is_dual(a) and name == "shape") else getattr(a, name),
}

_METHODS: dict[str, Callable] = {
    "add": _binary("add"),
    "sub": _binary("sub"),
    "mul": _binary("mul"),
    "div": _binary("div"),
    "__add__": _binary("add"),
    "__mul__": _binary("mul"),
    "neg": _neg,
    "matmul": _matmul,
    "sum": _sum,
    "mean": _mean,
    "softmax": _softmax,
    "exp": lambda x: iv.unary(x, exp_function()),
    "sqrt": lambda x: iv.unary(x, sqrt_function()),
    "rsqrt": lambda x: iv.unary(x, rsqrt_function()),
    "pow": _pow,
    "var": _var,
    "reciprocal": lambda x: iv.reciprocal(x),
    "size": lambda x, d=None: x.shape if d is None else x.shape[d],
    "dim": lambda x: x.dim(),
    "float": lambda x: x,
    "double": lambda x: x,
    "to": lambda x, *a, **k: x,
    "type_as": lambda x, o: x,
}
