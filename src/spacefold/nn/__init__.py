"""Gated units (the GLU family) with the papers' bit per unit (arXiv 2502.09954).

``SwiGLU(d_in, d_hidden, bias=False)`` computes ``silu(x W_g) * (x W_u)``: ``d_hidden`` gated
units from two projections of the same input, the "gate" and the "up" projection of a
Llama-style MLP. ``GEGLU`` uses GELU, ``ReGLU`` ReLU as the gate's activation. The modules
hold the two input projections and stop at the units: the down projection of a Llama-style
MLP (``nn.Linear(d_hidden, d_out)``) is a layer of its own after it, as in

    nn.Sequential(SwiGLU(d, 4 * d), nn.Linear(4 * d, d))

so that the pattern holds one bit per unit, never bits of a projection.

The bit of a unit is the papers' rule for an activation f, [f(z) > 0], applied to the unit's
output: [silu(a) * b > 0], which is [a > 0 and b > 0] or [a < 0 and b < 0] (for GELU and
SiLU gates; ReGLU's gate is 0 for a <= 0, so its bit is [a > 0 and b > 0]). torch's
``nn.GLU`` (``a * sigmoid(b)`` of the two halves of its input) gets the same rule: [a > 0].

A gated unit is not monotone in its input, so the set of inputs with one pattern (a class)
need not be connected, let alone convex: a segment can leave a class and come back to the
*same* pattern. Walks that only sample (``method="bisect"``, ``"uniform"``) see nothing that
happens between two samples; docs/method.md says what each walk method guarantees.

Other gates are registered with :func:`spacefold.register_activation`, whose rules get the
module, all its inputs and its output: ``rule=lambda module, inputs, output: output``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor, nn

from .._core.patterns import _unit_output, register_activation
from .._core.rules import _register_gate
from ..errors import InputError, InputTypeError

__all__ = ["GEGLU", "GatedUnit", "ReGLU", "SwiGLU"]


class GatedUnit(nn.Module):
    """``act(x W_g + b_g) * (x W_u + b_u)``: ``d_hidden`` gated units of an input of ``d_in`` features
    (the last dimension), with one bit per unit in the activation pattern.

    ``gate`` and ``up`` are the two ``nn.Linear`` projections; ``activation`` is the gate's activation
    (SiLU here; ``SwiGLU``, ``GEGLU`` and ``ReGLU`` set it). The module stops at the
    units: the down projection of a Llama-style MLP is a layer of its own after it. A unit's bit is
    [output > 0] (``register_activation(GatedUnit, rule)`` registered for it and its subclasses).
    Input ``(*, d_in)``, output ``(*, d_hidden)``.

    Args:
        d_in (int): the input features (the last dimension of the input), >= 1.
        d_hidden (int): the gated units, >= 1.
        bias (bool): whether the two projections have a bias.
        device (torch.device | None): where to put the weights.
        dtype (torch.dtype | None): the dtype of the weights.

    Raises:
        InputTypeError: ``d_in`` or ``d_hidden`` is not an int.
        InputError: ``d_in`` or ``d_hidden`` is below 1; when called, an input whose last dimension is
            not ``d_in``.

    Examples:
        >>> import torch, spacefold as sf
        >>> from spacefold.nn import GatedUnit
        >>> unit = GatedUnit(2, 3)
        >>> unit(torch.randn(5, 2)).shape, sf.activation_patterns(unit, torch.randn(5, 2)).shape
        (torch.Size([5, 3]), torch.Size([5, 3]))
    """

    activation: Callable[[Tensor], Tensor] = staticmethod(F.silu)

    def __init__(self, d_in: int, d_hidden: int, bias: bool = False, *, device=None, dtype=None):
        super().__init__()
        for name, v in (("d_in", d_in), ("d_hidden", d_hidden)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise InputTypeError(f"{name} must be an int >= 1, got {v!r}")
            if v < 1:
                raise InputError(f"{name} must be an int >= 1, got {v}")
        self.d_in, self.d_hidden = d_in, d_hidden
        self.gate = nn.Linear(d_in, d_hidden, bias=bias, device=device, dtype=dtype)
        self.up = nn.Linear(d_in, d_hidden, bias=bias, device=device, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 0 or x.shape[-1] != self.d_in:
            raise InputError(
                f"{type(self).__name__}(d_in={self.d_in}) takes inputs whose last dimension is {self.d_in}, "
                f"got shape {tuple(x.shape)}"
            )
        return type(self).activation(self.gate(x)) * self.up(x)

    def extra_repr(self) -> str:
        return f"d_in={self.d_in}, d_hidden={self.d_hidden}, bias={self.gate.bias is not None}"


class SwiGLU(GatedUnit):
    """``silu(x W_g) * (x W_u)`` (Shazeer 2020; the MLP of Llama without its down projection), one bit per
    unit: [a > 0 and b > 0] or [a < 0 and b < 0] for gate a and up b.

    Input ``(*, d_in)``, output ``(*, d_hidden)``.

    Args:
        d_in (int): the input features (the last dimension of the input), >= 1.
        d_hidden (int): the gated units, >= 1.
        bias (bool): whether the two projections have a bias.
        device (torch.device | None): where to put the weights.
        dtype (torch.dtype | None): the dtype of the weights.

    Raises:
        InputTypeError: ``d_in`` or ``d_hidden`` is not an int.
        InputError: ``d_in`` or ``d_hidden`` is below 1; when called, an input whose last dimension is
            not ``d_in``.

    Examples:
        >>> import torch, spacefold as sf
        >>> from spacefold.nn import SwiGLU
        >>> _ = torch.manual_seed(0)
        >>> net = torch.nn.Sequential(SwiGLU(2, 8), torch.nn.Linear(8, 2))  # a Llama-style MLP
        >>> sf.activation_patterns(net, torch.randn(3, 2)).shape  # one bit per unit
        torch.Size([3, 8])
        >>> w = sf.walk(net, torch.zeros(2), torch.ones(2), method="bisect")  # a gated unit is not piecewise linear
        >>> w.patterns.shape[1]
        8
    """

    activation = staticmethod(F.silu)


class GEGLU(GatedUnit):
    """``gelu(x W_g) * (x W_u)``, one bit per unit: [a > 0 and b > 0] or [a < 0 and b < 0] for gate a and
    up b.

    Input ``(*, d_in)``, output ``(*, d_hidden)``.

    Args:
        d_in (int): the input features (the last dimension of the input), >= 1.
        d_hidden (int): the gated units, >= 1.
        bias (bool): whether the two projections have a bias.
        device (torch.device | None): where to put the weights.
        dtype (torch.dtype | None): the dtype of the weights.

    Raises:
        InputTypeError: ``d_in`` or ``d_hidden`` is not an int.
        InputError: ``d_in`` or ``d_hidden`` is below 1; when called, an input whose last dimension is
            not ``d_in``.

    Examples:
        >>> import torch
        >>> from spacefold.nn import GEGLU
        >>> unit = GEGLU(4, 6, bias=True)
        >>> unit
        GEGLU(
          d_in=4, d_hidden=6, bias=True
          (gate): Linear(in_features=4, out_features=6, bias=True)
          (up): Linear(in_features=4, out_features=6, bias=True)
        )
        >>> unit(torch.randn(2, 3, 4)).shape
        torch.Size([2, 3, 6])
    """

    activation = staticmethod(F.gelu)


class ReGLU(GatedUnit):
    """``relu(x W_g) * (x W_u)``, one bit per unit: [a > 0 and b > 0] for gate a and up b (the gate is 0
    for a <= 0).

    Input ``(*, d_in)``, output ``(*, d_hidden)``.

    Args:
        d_in (int): the input features (the last dimension of the input), >= 1.
        d_hidden (int): the gated units, >= 1.
        bias (bool): whether the two projections have a bias.
        device (torch.device | None): where to put the weights.
        dtype (torch.dtype | None): the dtype of the weights.

    Raises:
        InputTypeError: ``d_in`` or ``d_hidden`` is not an int.
        InputError: ``d_in`` or ``d_hidden`` is below 1; when called, an input whose last dimension is
            not ``d_in``.

    Examples:
        >>> import torch, spacefold as sf
        >>> from spacefold.nn import ReGLU
        >>> unit = ReGLU(2, 3)
        >>> with torch.no_grad():
        ...     _ = unit.gate.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        ...     _ = unit.up.weight.copy_(torch.tensor([[1.0, 1.0], [-1.0, 0.0], [0.0, 1.0]]))
        >>> x = torch.tensor([[1.0, 2.0]])  # gate (1, 2, 3), up (3, -1, 2)
        >>> unit(x).tolist(), sf.activation_patterns(unit, x).int().tolist()
        ([[3.0, -2.0, 6.0]], [[1, 0, 1]])
    """

    activation = staticmethod(F.relu)


register_activation(GatedUnit, _unit_output)


def _gated_unit_parts(module: nn.Module) -> tuple[nn.Module, Callable[..., Tensor], nn.Module]:
    assert isinstance(module, GatedUnit)  # registered for GatedUnit and its subclasses only
    return module.gate, type(module).activation, module.up


_register_gate(GatedUnit, _gated_unit_parts)
