"""The certified walk (``method="certified"``): every change of every bit along a segment,
proved, for networks whose bit quantities are smooth or piecewise smooth in t.

The bit of an activation call is the sign of its input z (docs/method.md, 'Activation
patterns'); along the segment x(t) = (1 - t) x1 + t x2, z is a function of t. The walk covers
[0, 1] with t-intervals on each of which every z is *proved* sign-definite or strictly monotone
(then it crosses 0 at most once), and locates the crossings within ``tol`` (:mod:`.walker`).
The proofs are enclosures of z and dz/dt on the interval by interval arithmetic over the traced
network, forward-mode derivatives, the mean-value form, and outward rounding (:mod:`.interval`,
:mod:`.graph`, :mod:`.functions`). References: the folding measure and its generalisation to
monotone activations through the bit rule f(z) > 0 (arXiv 2502.09954, 2503.08502).

Design choices:

- Centre-radius intervals, with the value on the interval, the value at its midpoint and the
  derivative stacked in one tensor, so that an affine layer costs two matrix products for all
  three. The mean-value form is applied after every nonlinear operation, which keeps
  enclosures tight through depth (its width shrinks with the square of the interval).
- The patterns themselves come from the model's own forward pass in float64 under the
  activation hooks, as in ``spacefold.activation_patterns``; the traced graph only proves where
  they may change. The two are checked against each other on the first intervals (same number
  of bits, same signs wherever the enclosure decides them).
- Activations called as functions (``F.gelu``, ``torch.tanh``, the string activations of
  PyTorch's transformer layers) are interpreted as their modules, at the call sites the hooks
  name. Gated units (``spacefold.nn``'s, ``nn.GLU``, ``F.glu``) are interpreted through their
  halves; their bit quantity is the unit output, a product of the gate and the value.
- Operations are refused by name when they have no enclosure (max pooling, masks in attention,
  custom binarisation rules, whose score is a user's function).
- A budget of intervals per path (:data:`.walker.MAX_INTERVALS`, or the environment variable
  ``SPACEFOLD_CERTIFIED_BUDGET``): a path that needs more is finished like ``bisect`` and
  reported with ``complete=False`` and a :class:`CertifiedBudgetWarning`.
"""

from __future__ import annotations

from torch import Tensor, nn

from .. import WalkBatch, points_per_pass
from .graph import CertifiedProgram, CertifiedUnsupportedError
from .walker import CertifiedBudgetWarning, CertifiedWalker, certified_walks, interval_chunk

__all__ = [
    "CertifiedBudgetWarning",
    "CertifiedProgram",
    "CertifiedUnsupportedError",
    "CertifiedWalker",
    "FoldingWalker",
    "certified_walks",
]


class FoldingWalker:
    """The certified walker as :mod:`spacefold.folding` drives it (``start``, then chunks)."""

    def __init__(
        self,
        model: nn.Module,
        opts,
        segments,
        device,
        dtype,
        *,
        n_inputs: int | None = None,
        n_neurons: int | None = None,
    ):
        self.segments = segments
        kw = {}
        if n_inputs is not None and n_neurons is not None:  # passes sized by the memory budget
            kw = {"chunk": interval_chunk(n_inputs, n_neurons), "points": points_per_pass(n_inputs, n_neurons, 8)}
        self.walker = CertifiedWalker(model, opts.layers, tol=opts.tol, tie_tol=opts.tie_tol, **kw)

    def start(self, sample: Tensor) -> None:
        pass

    def __call__(self, a: Tensor, c: Tensor) -> WalkBatch:
        a, c = self.segments.inputs(a, c)
        return self.walker(a, c)
