"""The two modes a :class:`~spacefold._core.patterns.PatternRecorder` runs a forward pass under: one that
sees every torch function called from Python (activation functions give bits; every other operation
is followed, so that values computed from parameters and buffers alone are known as constants), and
one that catches activation operators run below Python, where no bit can be taken."""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from ..errors import InputTypeError
from .rules import _ATEN_ACTIVATIONS, functional_activation


class _Intercept(TorchFunctionMode):
    """Sees every activation function called while the model runs (see the module notes)."""

    def __init__(self, recorder):
        super().__init__()
        self.rec = recorder

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        rec = self.rec
        if rec._depth:
            return func(*args, **kwargs)
        spec = functional_activation(func)
        if spec is not None:
            return rec._functional_call(spec, func, args, kwargs)
        if isinstance(func, (torch._ops.OpOverload, torch._ops.OpOverloadPacket)):
            name = (func.overloadpacket if isinstance(func, torch._ops.OpOverload) else func).__name__
            if name in _ATEN_ACTIVATIONS:  # an activation operator in a form no rule reads (aten.gelu.out)
                where = rec._stack[-1] if rec._stack else "<model>"
                raise InputTypeError(
                    f"the model calls the activation operator {func} in the forward of '{where}', a form spacefold "
                    "takes no bits from: call the activation as a module or a function (nn.GELU, F.gelu, ...)"
                )
        # any other torch function: the operators it runs are its own (the ReLU inside F.lp_pool2d)
        return rec._run_followed(func, args, kwargs)


class _Watch(TorchDispatchMode):
    """Catches activation operators that run while no hook or intercepted call is active:
    they ran below Python (a TorchScript submodule, a fused kernel), where no bit is taken.
    Operators run by another torch function called from Python belong to that operation (the
    ReLU inside ``F.lp_pool2d``, the gates inside the fused kernel of ``nn.LSTM``)."""

    def __init__(self, recorder):
        super().__init__()
        self.rec = recorder

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if self.rec._depth == 0 and self.rec._inside == 0:
            name = func.overloadpacket.__name__ if hasattr(func, "overloadpacket") else str(func)
            if name in _ATEN_ACTIVATIONS:
                self.rec._unseen(name)
        return func(*args, **(kwargs or {}))
