"""The folding loss's fast path for plain feed-forward chains: the scores the pattern hooks would record,
computed by running the chain's modules in order (same operations, same order, same tensors), without
the hooks, the activation-function interception and the mode switching."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .._core.patterns import LayerSelector

# Modules of a plain feed-forward chain: no bits of their own, the same output in train and eval mode.
_CHAIN_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Flatten, nn.Unflatten, nn.Identity)
# Identity maps in eval mode (the mode of the folding loss's points), left out of the chain.
_CHAIN_EVAL_IDENTITY = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)
_FLATTEN = nn.Flatten()  # x.flatten(1)


def _plain_chain(model: nn.Module, layers: LayerSelector) -> list[tuple[nn.Module, bool]] | None:
    """The pattern hooks' work without the hooks, where that is plainly the same computation.

    For an ``nn.Sequential`` (or :class:`spacefold.models.MLP`, whose forward is its ``net`` on the
    flattened input) of linear/convolution/reshaping modules, dropout and torch's activation modules
    whose bit is read from their pre-activation (RReLU excepted: random in train mode), with every activation
    selected (``layers=None``) and no forward hooks: the modules in order up to the last activation, each
    with a flag for "its input is a block of scores" (dropout left out: it is the identity in eval mode). The
    scores are then the very tensors the hooks would record (same operations, same order), at a fraction of the
    per-call cost of the hooks, the activation-function interception and the mode switching.
    ``None`` for every other model: the hooks handle those.
    """
    from torch.nn.modules import module as _module

    from .._core.rules import _entry, _pre_activation
    from ..models.mlp import MLP

    if layers is not None or _module._global_forward_hooks or _module._global_forward_pre_hooks:
        return None
    if type(model) is MLP:
        outer: tuple[nn.Module, ...] = (model, model.net)
        chain: list[tuple[nn.Module, bool]] = [(_FLATTEN, False)]  # MLP.forward: net(x.flatten(1))
    elif type(model) is nn.Sequential:
        outer, chain = (model,), []
    else:
        return None
    seq = outer[-1]
    if type(seq) is not nn.Sequential or any(m._forward_hooks or m._forward_pre_hooks for m in outer):
        return None
    for m in seq:
        if m._forward_hooks or m._forward_pre_hooks:
            return None
        kind = type(m)
        if kind in _CHAIN_EVAL_IDENTITY:
            continue
        if kind in _CHAIN_LAYERS:
            chain.append((m, False))
            continue
        entry = _entry(m)
        # torch's own elementwise activations only (a registered type of the user's may depend on the mode),
        # and not RReLU, whose slopes are random in train mode
        if (
            entry is None
            or entry.rule is not _pre_activation
            or kind.__module__ != "torch.nn.modules.activation"
            or kind is nn.RReLU
            or next(m.children(), None) is not None
        ):
            return None
        chain.append((m, True))
    while chain and not chain[-1][1]:  # nothing after the last activation enters the scores
        chain.pop()
    return chain or None


def _chain_scores(chain: list[tuple[nn.Module, bool]], pts: Tensor) -> Tensor | None:
    """Scores ``(n_points, n_neurons)`` of :func:`_plain_chain`'s modules, in the hooks' order and
    layout; ``None`` where a module rejects the input (the hooks' path then raises the clear error)."""
    blocks = []
    h = pts
    try:
        for m, is_act in chain:
            if is_act:
                blocks.append(h.clone() if getattr(m, "inplace", False) else h)
            h = m(h)
    except (RuntimeError, ValueError, IndexError):
        return None
    return torch.cat([b.reshape(b.shape[0], -1) for b in blocks], dim=1)
