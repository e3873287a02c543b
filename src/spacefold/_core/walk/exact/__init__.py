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
ReLU6) are split by a compiled kernel (:mod:`spacefold._core.walk._kernels`, Numba): one call for
step 4's split, bits and flips. Fused with the ``nn.Linear`` after it, a second kernel
gives the Linear at the new breakpoints from running sums of weight columns instead of a
product. They compute the same walk as the torch operations (tested against each other);
``SPACEFOLD_NUMBA=0`` turns them off.

Paths are processed in sub-batches sized so that the largest tensor of breakpoint
values stays near 16 MB on CPUs (fresh large tensors are page-faulted on every layer;
2 MB, which stays in the cache, when the compiled kernels run every layer; 4 MB for
feature maps of 16 KB or more at one breakpoint) and 512 MB on accelerators.

Memory is bounded by the budget of :func:`spacefold._core.walk.memory_budget` (1 GiB, or
``SPACEFOLD_MEMORY`` bytes; shared by the sub-batches walked at once), whatever the number of
regions: a sub-batch may hold at most budget / (4 x the bytes of its largest tensor at one
breakpoint) breakpoints. A segment that needs more (a convolutional net crossing thousands of
regions) is walked in sub-segments [t_a, t_b], as many paths of their own, whose walks are
joined at the junctions: the junction's step goes from the last piece before it to the first
piece after it (none when their patterns agree), which is the walk of the whole segment (a
breakpoint at the junction only splits one of its pieces into two of the same pattern;
crossings within ``tol`` of a junction are merged into it, as into any breakpoint). A
sub-batch whose breakpoints outgrow the cap stops at the split that makes them (before their
values are computed) and is walked again in shorter pieces. On a CPU with several torch threads the sub-batches after
the first run concurrently, one per thread, each single-threaded: only the matrix
products would use the threads otherwise, and the many small operations of the walk
would run on one core. For the duration of the call ``torch.set_num_threads`` is then
1 (it is process-wide) and restored afterwards.

Ties [DESIGN]: a pre-activation that touches the threshold at a breakpoint without
crossing it creates no breakpoint (a zero at an isolated t is not recorded except at
t = 0 and t = 1); one that is identically 0 on a piece gives bit 0 and no crossing;
neurons crossing within ``tol`` of each other switch at one breakpoint.

The activations selected for the pattern give bits, as in ``activation_patterns``:
modules, and piecewise-linear activations called as functions (``F.relu``, ``x.relu()``,
``F.leaky_relu``, ``F.hardtanh``, ...), which become activation steps named by their call
site. Smooth activations (GELU, tanh, ...) and gated units are refused: use
``method="bisect"`` for those.

Layout of the package (one job per module, in the order of a walk):

- :mod:`.program`: tracing and checking a model into an :class:`ExactProgram` (steps 1-3);
- :mod:`.state`: the breakpoints of a sub-batch and the interpolation of values at new ones;
- :mod:`.crossings`: crossings of the kinks, the split of the pieces, snapping (step 4);
- :mod:`.activation`, :mod:`.fused`, :mod:`.maxpool`: the handlers of the nonlinear steps
  (an activation, an activation fused with the ``nn.Linear`` after it, max pooling);
- :mod:`.handlers`: the walk over a program's steps, one handler per kind of step;
- :mod:`.assemble`: bits, flips and :class:`ExactWalkBatch`;
- :mod:`.settings`: the walk's settings (``WalkSettings``), tolerances derived from the dtype,
  the finiteness check;
- :mod:`.driver`: :func:`exact_walks`, sub-batches, the memory budget and sub-segments, threads, the float64
  fallback;
- :mod:`.verification`: :func:`verify`, for walks of every method;
- :mod:`.errors`: :class:`NotPiecewiseLinearError`.
"""

from __future__ import annotations

from . import (  # noqa: F401
    activation,
    assemble,
    crossings,
    driver,
    fused,
    handlers,
    maxpool,
    program,
    settings,
    state,
    verification,
)
from .assemble import ExactWalkBatch, _assemble  # noqa: F401
from .driver import exact_walks  # noqa: F401
from .errors import NotPiecewiseLinearError  # noqa: F401
from .program import ExactProgram, compile_model  # noqa: F401
from .state import _interpolate, _ranks  # noqa: F401
from .verification import VerifyResult, verify  # noqa: F401

# The names above are those code outside the package uses. Everything else is reached through its
# module (``exact.driver._TARGET_BYTES``): a tunable is read, and so must be patched, where it is defined.
__all__ = [
    "ExactProgram",
    "ExactWalkBatch",
    "NotPiecewiseLinearError",
    "VerifyResult",
    "compile_model",
    "exact_walks",
    "verify",
]
