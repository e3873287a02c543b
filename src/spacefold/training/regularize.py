"""Folding during training: a differentiable folding loss, its schedules, and Φ_N tracking.

arXiv 2502.09954 outlines a regulariser that rewards folding, and its successor trains
with ``L_total = L_task + λ·L_fold``. χ itself is computed from binary activation
patterns and has no gradient, so :func:`folding_loss` uses a *soft-pattern surrogate*
(a design of this project, not of the papers):

- sample points ``γ(t_1), ..., γ(t_n)`` on each segment ``x1 -> x2``;
- soft pattern ``p_i = sigmoid(β·z_i)`` of the pre-activations ``z_i`` of every hooked
  activation module (the same hooks as :func:`spacefold.activation_patterns`, whose
  hard bit is ``z > 0``);
- soft Hamming distance ``d(p, q) = Σ_k |p_k − q_k|`` (equal to the Hamming distance on
  0/1 patterns, and 0 for equal patterns, so repeated points change nothing);
- ``soft_r1 = max_i d(p_1, p_i)`` (or the smooth max ``τ·log Σ_i exp(d(p_1, p_i)/τ)``
  with ``tau > 0``), ``soft_r2 = Σ_i d(p_i, p_{i+1})``;
- ``L_fold = (soft_r1 + ε) / (soft_r2 + ε) = 1 − χ_soft`` per segment (1 for a
  segment that stays in one region, as χ = 0 there), averaged over the segments.

Minimising ``L_fold`` raises folding. As β → ∞ (and τ = 0, ε → 0) ``1 − L_fold`` tends
to χ of the walk through the sampled points, provided no pre-activation at a sample
point is exactly 0 (docs/method.md, 'The folding measure'). Three ways to place the
points (``method``):

- ``"grid"``: ``n_points`` equispaced points (t = 0, ..., 1), the papers' sampling;
- ``"random"``: t = 0, t = 1 and ``n_points − 2`` sorted uniform draws per segment,
  redrawn at every call (cheap, unbiased in where it looks; needs no stops);
- ``"exact"``: one point in the middle of every linear region the segment crosses,
  found by the exact walk without gradient, so the surrogate tends to the *exact* χ
  (piecewise-linear models only; as many points as regions).

:class:`FoldingSchedule` says in which epochs the loss is on (always, an early window,
every n epochs); :class:`FoldingRegularizer` joins a probe set of pairs, λ and a
schedule into the hook that :func:`spacefold.models.train.train` adds to the task loss;
:class:`FoldingTracker` measures Φ_N on a fixed probe set every n epochs (exact walks,
:class:`spacefold.FoldingMetric` statistics).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .._core.patterns import LayerSelector, PatternRecorder, eval_mode, model_device_dtype, run_model
from ..errors import InputError, InputTypeError
from ._chain import _chain_scores, _plain_chain
from ._checks import (  # noqa: F401 - LOSS_METHODS is also importable from here
    LOSS_METHODS,
    _check_count,
    _check_hookable,
    _check_lambda,
    _check_method,
    _check_model,
    _check_points,
    _check_positive,
    _check_segments,
)

__all__ = [
    "folding_loss",
    "soft_chi",
    "FoldingSchedule",
    "FoldingRegularizer",
    "FoldingTracker",
    "probe_pairs",
    "LOSS_METHODS",
]


# --------------------------------------------------------------------------- soft patterns


class _SoftRecorder(PatternRecorder):
    """The pattern hooks, keeping the graph: the scores stay differentiable.

    ``PatternRecorder`` copies the input of an in-place activation without its graph;
    here the copy keeps it, so gradients flow through the recorded pre-activations.
    """

    def _copy(self, x: Tensor) -> Tensor:
        return x.clone()


def _t_grid(n_seg: int, n_points: int, method: str, generator, device) -> Tensor:
    """Sample positions ``(n_seg, n)`` in [0, 1]: a grid, or the two ends and sorted uniform draws."""
    if method == "grid":
        t = torch.linspace(0.0, 1.0, n_points, dtype=torch.float64).expand(n_seg, n_points)
    else:
        inner = torch.rand(n_seg, n_points - 2, generator=generator, dtype=torch.float64)
        t = torch.cat(
            [
                torch.zeros(n_seg, 1, dtype=torch.float64),
                inner.sort(dim=1).values,
                torch.ones(n_seg, 1, dtype=torch.float64),
            ],
            dim=1,
        )
    return t.to(device)


def _t_exact(model: nn.Module, x1: Tensor, x2: Tensor, layers: LayerSelector, tie_tol: float):
    """The middle of every region each segment crosses (exact walk, no gradient), padded with a mask."""
    from .._core.folding import walk_batch

    wb = walk_batch(model, x1.detach(), x2.detach(), method="exact", layers=layers, tie_tol=tie_tol)
    offs = wb.offsets.cpu()
    t = wb.t.cpu()
    counts = (offs[1:] - offs[:-1]).tolist()
    width = max(counts)
    out = torch.ones(len(counts), width, dtype=torch.float64)
    mask = torch.zeros(len(counts), width, dtype=torch.bool)
    for i, (a, m) in enumerate(zip(offs[:-1].tolist(), counts)):
        starts = t[a : a + m]
        ends = torch.cat([starts[1:], torch.ones(1, dtype=torch.float64)])
        mid = (starts + ends) / 2
        out[i, :m] = mid
        out[i, m:] = mid[-1]
        mask[i, :m] = True
    return out.to(x1.device), mask.to(x1.device)


def soft_chi(
    model: nn.Module,
    x1: Tensor,
    x2: Tensor,
    *,
    method: str = "grid",
    n_points: int = 16,
    beta: float = 10.0,
    tau: float = 0.0,
    eps: float = 1e-6,
    layers: LayerSelector = None,
    tie_tol: float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """χ_soft = 1 − L_fold of every segment ``x1[i] -> x2[i]``: a differentiable ``(n_segments,)``
    tensor. See :func:`folding_loss` for the arguments; with large ``beta``, ``tau=0`` and
    small ``eps`` it is χ of the walk through the sample points."""
    return 1.0 - _fold_terms(
        model,
        x1,
        x2,
        method=method,
        n_points=n_points,
        beta=beta,
        tau=tau,
        eps=eps,
        layers=layers,
        tie_tol=tie_tol,
        generator=generator,
    )


def folding_loss(
    model: nn.Module,
    x1: Tensor,
    x2: Tensor,
    *,
    method: str = "grid",
    n_points: int = 16,
    beta: float = 10.0,
    tau: float = 0.0,
    eps: float = 1e-6,
    layers: LayerSelector = None,
    tie_tol: float = 0.0,
    generator: torch.Generator | None = None,
    reduction: str = "mean",
) -> Tensor:
    """A differentiable folding loss of the segments ``x1[i] -> x2[i]``, lower when the model folds them
    more: ``loss = task_loss + lam * folding_loss(model, x1, x2)`` trains for folding.

    ``L_fold = (soft_r1 + eps) / (soft_r2 + eps) = 1 − χ_soft`` per segment, from the soft patterns
    ``sigmoid(beta · z)`` of the hooked activations at points on the segment (the soft-pattern
    surrogate of this module, a design of this project; docs/folding-during-training.md). The model
    runs in eval mode for these points (dropout off, batch-norm running statistics), as when folding is
    measured; its train/eval flags are restored. A segment too short for the model's dtype (``x1 ==
    x2``, or ``max_k |x2_k − x1_k| <= √ε · max_k max(|x1_k|, |x2_k|)``, ε = ``torch.finfo(dtype).eps``)
    is one point and gets loss 1 (χ = 0) with no gradient: along it the soft patterns differ mostly by
    round-off.

    Args:
        model (nn.Module): the model being trained.
        x1 (Tensor): the starts of the segments, ``(n_segments, *input_shape)``.
        x2 (Tensor): their ends, of the same shape.
        method (str): where the points lie: ``"grid"`` (``n_points`` equispaced), ``"random"`` (the two
            ends and ``n_points − 2`` sorted uniform draws from ``generator``), or ``"exact"`` (the middle
            of every region the exact walk finds; ``n_points`` is unused; piecewise-linear models only).
        n_points (int): points per segment (>= 2 for ``"grid"``, >= 3 for ``"random"``).
        beta (float): the sharpness of the soft patterns, in units of 1 / pre-activation (> 0).
        tau (float): the temperature of the smooth max in ``soft_r1`` (0: the plain max).
        eps (float): keeps the ratio finite (> 0); a segment in one region gets loss 1 (χ = 0).
        layers (str | type | list | None): which activations, as in ``spacefold.activation_patterns``.
        tie_tol (float): the threshold of a bit (bit = z > tie_tol).
        generator (torch.Generator | None): the random draws of ``method="random"``.
        reduction (str): ``"mean"`` (a scalar), ``"sum"`` or ``"none"`` (one value per segment).

    Returns:
        Tensor: the loss, a scalar (or ``(n_segments,)`` with ``reduction="none"``), with a gradient
        with respect to the model's parameters.

    Raises:
        InputTypeError: ``model`` is not an ``nn.Module``, the segments are not tensors, or
            ``generator`` is not a ``torch.Generator``.
        InputError: segments of different shapes, an unknown ``method`` or ``reduction``, a count or
            a ``beta``, ``tau``, ``eps``, ``tie_tol`` out of range, or a model with no activation to hook.

    Examples:
        >>> import torch, spacefold as sf
        >>> net = sf.mlp("2x16", in_features=2, n_classes=2, seed=0)
        >>> g = torch.Generator().manual_seed(0)
        >>> x1, x2 = torch.randn(4, 2, generator=g), torch.randn(4, 2, generator=g)
        >>> loss = sf.folding_loss(net, x1, x2)
        >>> loss.shape, loss.requires_grad
        (torch.Size([]), True)
        >>> loss.backward()  # a gradient for every weight
        >>> net.net[0].weight.grad.shape
        torch.Size([16, 2])
        >>> soft = sf.folding_loss(net, x1, x2, method="exact", beta=1e4, reduction="none")
        >>> torch.allclose(soft.double(), 1 - sf.folding_batch(net, x1, x2, workers=1).chi, atol=1e-3)  # sharp: 1 - χ
        True
    """
    if reduction not in ("mean", "sum", "none"):
        raise InputError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    loss = _fold_terms(
        model,
        x1,
        x2,
        method=method,
        n_points=n_points,
        beta=beta,
        tau=tau,
        eps=eps,
        layers=layers,
        tie_tol=tie_tol,
        generator=generator,
    )
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _fold_terms(model, x1, x2, *, method, n_points, beta, tau, eps, layers, tie_tol, generator) -> Tensor:
    _check_model(model)
    _check_segments(x1, x2)
    _check_method(method)
    _check_count(n_points, "n_points", 2 if method == "grid" else 3 if method == "random" else 1)
    if method != "exact":
        _check_points(n_points, x1.shape[0], x1)
    beta = _check_positive(beta, "beta")
    tau = _check_positive(tau, "tau", allow_zero=True)
    eps = _check_positive(eps, "eps")
    tie_tol = _check_positive(tie_tol, "tie_tol", allow_zero=True)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise InputTypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    _check_hookable(model, layers)
    return _soft_terms(
        model,
        x1,
        x2,
        method=method,
        n_points=n_points,
        beta=beta,
        tau=tau,
        eps=eps,
        layers=layers,
        tie_tol=tie_tol,
        generator=generator,
    )


def _soft_terms(
    model,
    x1,
    x2,
    *,
    method,
    n_points,
    beta,
    tau,
    eps,
    layers,
    tie_tol,
    generator,
    recorder: _SoftRecorder | None = None,
    point: Tensor | None = None,
) -> Tensor:
    """L_fold per segment, arguments already checked (the hot path of the training hook); ``point``:
    :func:`point_segments` of these segments in the model's dtype, where the caller has it."""
    device, dtype = model_device_dtype(model)
    a = x1.to(device=device, dtype=dtype)
    b = x2.to(device=device, dtype=dtype)
    n_seg = a.shape[0]
    if method == "exact":
        t, mask = _t_exact(model, a, b, layers, tie_tol)
    else:
        t, mask = _t_grid(n_seg, n_points, method, generator, device), None
    n = t.shape[1]
    tt = t.to(dtype).reshape(n_seg, n, *([1] * (a.dim() - 1)))
    # lerp: exactly x1 at t = 0, x2 at t = 1, and every point x1 where x1 == x2
    pts = torch.lerp(a.unsqueeze(1), b.unsqueeze(1), tt).reshape(n_seg * n, *a.shape[1:])
    chain = _plain_chain(model, layers)
    z = _chain_scores(chain, pts) if chain is not None else None
    if z is None:
        rec = recorder if recorder is not None else _SoftRecorder(model, layers)
        with rec, eval_mode(model):
            run_model(model, pts, "the points of the segments x1 -> x2")
            z = rec.scores()
    p = torch.sigmoid(beta * (z - tie_tol) if tie_tol else beta * z).reshape(n_seg, n, -1)
    steps = (p[:, 1:] - p[:, :-1]).abs().sum(-1)
    to_start = (p - p[:, :1]).abs().sum(-1)
    if mask is not None:  # padded points repeat the last one: no step, and left out of the max
        steps = steps * (mask[:, 1:] & mask[:, :-1])
        to_start = to_start.masked_fill(~mask, float("-inf") if tau > 0 else 0.0)
    r2 = steps.sum(1)
    r1 = tau * torch.logsumexp(to_start / tau, dim=1) if tau > 0 else to_start.amax(dim=1)
    loss = (r1 + eps) / (r2 + eps)
    if point is None:
        point = point_segments(a, b)
    return torch.where(point, torch.ones_like(loss), loss) if bool(point.any()) else loss


def point_segments(x1: Tensor, x2: Tensor) -> Tensor:
    """``(n_segments,)`` bool: the segments ``x1[i] -> x2[i]`` too short for their dtype to tell apart,
    ``max_k |x2_k − x1_k| <= √ε · max_k max(|x1_k|, |x2_k|)`` with ε = ``torch.finfo(x1.dtype).eps``
    (3.5e-4 in float32, 1.5e-8 in float64), ``x1 == x2`` included.

    The points of such a segment agree with ``x1`` in fewer than half of the dtype's digits
    of their differences, so the soft patterns along it differ mostly by the round-off of the
    forward pass: in float32 that is up to 30% of the loss at relative length 1e-6, 5% at
    1e-4, 0.2% at 3e-4 and 0.03% at 1e-3 for a segment in one region (whose true loss is 1).
    The folding loss counts such a segment as one point: loss 1 (χ = 0), no gradient.
    """
    eps = torch.finfo(x1.dtype).eps
    diff = (x2 - x1).abs().flatten(1).amax(1)
    scale = torch.maximum(x1.abs(), x2.abs()).flatten(1).amax(1)
    return diff <= math.sqrt(eps) * scale


# --------------------------------------------------------------------------- probe sets


def probe_pairs(x: Tensor, y: Tensor | Sequence[int], n_pairs: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """A fixed probe set of inter-class segments, to regularise with or to track Φ_N on during training.

    Pairs of samples of distinct classes (the paths of Φ_N), spread over the ordered class pairs and
    drawn with ``seed``.

    Args:
        x (Tensor): the samples, ``(n_samples, *input_shape)``.
        y (Tensor): their integer class labels, ``(n_samples,)``, at least two classes.
        n_pairs (int): the segments to draw (>= 1).
        seed (int): the seed of the draw (>= 0).

    Returns:
        tuple[Tensor, Tensor]: ``(x1, x2)``, the starts and ends of the segments, each
        ``(n_pairs, *input_shape)``.

    Raises:
        InputTypeError: ``x`` or ``y`` is not a tensor, or ``y`` does not hold integers.
        InputError: ``x`` holds no sample, ``y`` does not match ``x``, ``y`` holds one class only, or
            ``n_pairs`` or ``seed`` is out of range.

    Examples:
        >>> import torch, spacefold as sf
        >>> x, y = torch.randn(30, 2, generator=torch.Generator().manual_seed(0)), torch.arange(30) % 3
        >>> x1, x2 = sf.probe_pairs(x, y, n_pairs=12, seed=0)
        >>> x1.shape, x2.shape
        (torch.Size([12, 2]), torch.Size([12, 2]))
        >>> label = {tuple(row.tolist()): int(c) for row, c in zip(x, y)}
        >>> all(label[tuple(a.tolist())] != label[tuple(b.tolist())] for a, b in zip(x1, x2))  # between classes
        True
    """
    from .._core.pairs import pair_plan

    if not isinstance(x, Tensor):
        raise InputTypeError(f"x must be a torch.Tensor (n_samples, *input_shape), got {type(x).__name__}")
    if x.dim() < 2 or x.shape[0] == 0:
        raise InputError(f"x must hold at least one sample, shape (n_samples, *input_shape), got {tuple(x.shape)}")
    if not isinstance(y, Tensor):
        raise InputTypeError(f"y must be a torch.Tensor of integer labels, got {type(y).__name__}")
    if y.dim() != 1 or y.numel() != x.shape[0]:
        raise InputError(f"y must have shape ({x.shape[0]},) to match x, got {tuple(y.shape)}")
    if y.dtype.is_floating_point or y.dtype == torch.bool:
        raise InputTypeError(f"y must be an integer tensor of labels, got dtype {y.dtype}")
    _check_count(n_pairs, "n_pairs", 1)
    _check_count(seed, "seed", 0)
    classes = torch.unique(y)
    if classes.numel() < 2:
        raise InputError(
            f"the probe set needs samples of at least two classes (folding is measured between classes), "
            f"got only class {classes.tolist()}"
        )
    plan = pair_plan(y.cpu(), "inter-class", max_pairs=n_pairs, seed=seed)
    i, j = plan.indices()
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(i.numel(), generator=g)[:n_pairs]
    return x[i[pick]], x[j[pick]]


# --------------------------------------------------------------------------- schedules


@dataclass(frozen=True)
class FoldingSchedule:
    """In which epochs (0-based) the folding loss is on: ``"always"``; ``"early:F"``, the first
    ``ceil(F · epochs)`` epochs (0 < F <= 1, at least one epoch), the early window of the papers; or
    ``"every:N"``, epochs 0, N, 2N, ... (the papers' "every n epochs").

    Build one with ``parse`` from its text, or from its fields.

    Attributes:
        kind (str): ``"always"``, ``"early"`` or ``"every"``.
        fraction (float): for ``"early"``: the share F of the epochs.
        every (int): for ``"every"``: N.

    Raises:
        InputError: an unknown ``kind``, F outside (0, 1], or N not an int >= 1.

    Examples:
        >>> import spacefold as sf
        >>> early = sf.FoldingSchedule.parse("early:0.3")
        >>> [early.active(epoch, epochs=10) for epoch in range(5)]
        [True, True, True, False, False]
        >>> every = sf.FoldingSchedule("every", every=3)
        >>> str(every), [e for e in range(10) if every.active(e, 10)]
        ('every:3', [0, 3, 6, 9])
    """

    kind: str = "always"
    fraction: float = 1.0
    every: int = 1

    def __post_init__(self):
        if self.kind not in ("always", "early", "every"):
            raise InputError(f"schedule must be 'always', 'early:FRACTION' or 'every:N', got kind {self.kind!r}")
        if self.kind == "early" and not (isinstance(self.fraction, (int, float)) and 0 < self.fraction <= 1):
            raise InputError(f"schedule 'early:F' needs 0 < F <= 1, got {self.fraction!r}")
        if self.kind == "every" and (isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1):
            raise InputError(f"schedule 'every:N' needs an int N >= 1, got {self.every!r}")

    @classmethod
    def parse(cls, text) -> FoldingSchedule:
        """A schedule from its text: ``"always"``, ``"early:0.3"`` or ``"every:2"`` (a FoldingSchedule passes
        through).

        Args:
            text (str | FoldingSchedule): the schedule.

        Returns:
            FoldingSchedule: the schedule.

        Raises:
            InputTypeError: ``text`` is neither a string nor a schedule.
            InputError: text of none of the three forms, or a value out of range.
        """
        if isinstance(text, FoldingSchedule):
            return text
        if not isinstance(text, str):
            raise InputTypeError(f"schedule must be 'always', 'early:FRACTION' or 'every:N', got {text!r}")
        s = text.strip().lower()
        if s == "always":
            return cls("always")
        m = re.fullmatch(r"early:([0-9.eE+-]+)", s)
        if m:
            try:
                f = float(m.group(1))
            except ValueError:
                f = float("nan")
            return cls("early", fraction=f)
        m = re.fullmatch(r"every:(\d+)", s)
        if m:
            return cls("every", every=int(m.group(1)))
        raise InputError(
            f"schedule must be 'always', 'early:FRACTION' (e.g. early:0.3) or 'every:N' (e.g. every:2), got {text!r}"
        )

    def active(self, epoch: int, epochs: int) -> bool:
        """Whether the loss is on in an epoch.

        Args:
            epoch (int): the epoch, 0-based.
            epochs (int): the epochs of the run.

        Returns:
            bool: True where the loss is on.
        """
        if self.kind == "always":
            return True
        if self.kind == "early":
            return epoch < max(1, math.ceil(self.fraction * epochs - 1e-9))
        return epoch % self.every == 0

    def __str__(self) -> str:
        return {"always": "always", "early": f"early:{self.fraction:g}", "every": f"every:{self.every}"}[self.kind]


# --------------------------------------------------------------------------- the training hooks


class FoldingRegularizer:
    """``lam · folding_loss`` on a probe set, as a training hook (``regularizer=`` of
    ``spacefold.models.train.train``, or called from one's own training loop).

    Called once per training step as ``reg(model, epoch, epochs)``, it returns the term to add to the
    task loss, or ``None`` when the schedule is off in this epoch (or ``lam == 0``); ``reg.last`` holds
    the last loss value. Each call draws ``pairs_per_step`` segments of the probe set (seeded by
    ``seed``), so a step costs ``pairs_per_step × n_points`` extra forward points.

    Args:
        x1 (Tensor): the starts of the probe segments, ``(n_probe, *input_shape)`` (see ``probe_pairs``).
        x2 (Tensor): their ends, of the same shape.
        lam (float): the weight λ of the folding loss (>= 0).
        schedule (str | FoldingSchedule): the epochs the loss is on (``"always"``, ``"early:F"``, ``"every:N"``).
        pairs_per_step (int): segments drawn from the probe set per step.
        method (str): where the points lie, as in ``folding_loss``.
        n_points (int): points per segment, as in ``folding_loss``.
        beta (float): the sharpness of the soft patterns.
        tau (float): the temperature of the smooth max (0: the plain max).
        layers (str | type | list | None): which activations, as in ``spacefold.activation_patterns``.
        seed (int): the seed of the draws.
        every_steps (int): add the term at every k-th step only (k times cheaper; λ is the weight at the
            steps where it is on).

    Raises:
        InputTypeError: the segments are not tensors, or ``schedule`` is neither text nor a schedule.
        InputError: segments of different shapes, a negative ``lam``, an unknown ``method`` or
            ``schedule``, or a count out of range.

    Examples:
        >>> import torch, spacefold as sf
        >>> net = sf.mlp("2x16", in_features=2, n_classes=2, seed=0)
        >>> x, y = torch.randn(30, 2, generator=torch.Generator().manual_seed(0)), torch.arange(30) % 3
        >>> reg = sf.FoldingRegularizer(*sf.probe_pairs(x, y, 12), lam=0.1, schedule="early:0.5", pairs_per_step=4)
        >>> term = reg(net, epoch=0, epochs=4)  # add it to the task loss
        >>> term.requires_grad, abs(term.item() - 0.1 * reg.last) < 1e-6
        (True, True)
        >>> reg(net, epoch=3, epochs=4) is None  # outside the early window
        True
    """

    def __init__(
        self,
        x1: Tensor,
        x2: Tensor,
        lam: float,
        *,
        schedule: str | FoldingSchedule = "always",
        pairs_per_step: int = 8,
        method: str = "random",
        n_points: int = 8,
        beta: float = 10.0,
        tau: float = 0.0,
        layers: LayerSelector = None,
        seed: int = 0,
        every_steps: int = 1,
    ) -> None:
        _check_segments(x1, x2)
        self.lam = _check_lambda(lam)
        self.every_steps = _check_count(every_steps, "every_steps", 1)
        self._step = 0
        self.schedule = FoldingSchedule.parse(schedule)
        self.pairs_per_step = _check_count(pairs_per_step, "pairs_per_step", 1)
        self.method = _check_method(method)
        self.n_points = _check_count(n_points, "n_points", 3 if method == "random" else 2)
        if method != "exact":
            _check_points(self.n_points, min(self.pairs_per_step, x1.shape[0]), x1)
        self.beta = _check_positive(beta, "beta")
        self.tau = _check_positive(tau, "tau", allow_zero=True)
        self.layers = layers
        self.x1, self.x2 = x1.detach(), x2.detach()
        self.generator = torch.Generator().manual_seed(_check_count(seed, "seed", 0))
        self.last: float | None = None
        self._recorder: tuple[nn.Module, _SoftRecorder] | None = None
        self._point_mask: tuple[tuple[torch.device, torch.dtype], Tensor] | None = None

    def __call__(self, model: nn.Module, epoch: int, epochs: int) -> Tensor | None:
        self._step += 1
        if self.lam == 0 or not self.schedule.active(epoch, epochs) or (self._step - 1) % self.every_steps:
            self.last = None
            return None
        n = self.x1.shape[0]
        idx = None
        if self.pairs_per_step < n:
            idx = torch.randperm(n, generator=self.generator)[: self.pairs_per_step]
            a, b = self.x1[idx], self.x2[idx]
        else:
            a, b = self.x1, self.x2
        if self._recorder is None or self._recorder[0] is not model:  # checked once per model
            _check_model(model)
            _check_hookable(model, self.layers)
            self._recorder = (model, _SoftRecorder(model, self.layers))
        loss = _soft_terms(
            model,
            a,
            b,
            method=self.method,
            n_points=self.n_points,
            beta=self.beta,
            tau=self.tau,
            eps=1e-6,
            layers=self.layers,
            tie_tol=0.0,
            generator=self.generator,
            recorder=self._recorder[1],
            point=self._points(model, idx),
        ).mean()
        self.last = float(loss.detach())
        return self.lam * loss

    def _points(self, model: nn.Module, idx: Tensor | None) -> Tensor:
        """:func:`point_segments` of the drawn segments in the model's dtype, from a mask of the whole
        probe set computed once per device and dtype (row by row the same numbers)."""
        key = model_device_dtype(model)
        if self._point_mask is None or self._point_mask[0] != key:
            device, dtype = key
            mask = point_segments(self.x1.to(device=device, dtype=dtype), self.x2.to(device=device, dtype=dtype))
            self._point_mask = (key, mask)
        mask = self._point_mask[1]
        return mask if idx is None else mask[idx.to(mask.device)]

    def describe(self) -> dict:
        return {
            "lam": self.lam,
            "schedule": str(self.schedule),
            "pairs_per_step": self.pairs_per_step,
            "method": self.method,
            "n_points": self.n_points,
            "beta": self.beta,
            "tau": self.tau,
            "every_steps": self.every_steps,
            "n_probe": int(self.x1.shape[0]),
        }


class FoldingTracker:
    """Φ_N of a fixed probe set of segments, measured every ``every`` epochs (an ``on_epoch_end=`` hook
    of ``spacefold.models.train.train``, or called from one's own loop).

    ``tracker(model, epoch, epochs=None)`` walks the probe segments and returns ``{"epoch", "phi",
    "phi_max", "fraction_folded", "n_paths"}`` (also appended to ``tracker.history`` and passed to
    ``log``), or ``None`` in the epochs between. The last epoch of a run is always measured when
    ``epochs`` is given. ``measure`` measures now, whatever the epoch.

    Args:
        x1 (Tensor): the starts of the probe segments, ``(n_probe, *input_shape)`` (see ``probe_pairs``).
        x2 (Tensor): their ends, of the same shape.
        every (int): measure in epochs 0, every, 2·every, ...
        method (str): the walk method (exact by default).
        steps (int): for ``method="uniform"``: ``steps + 1`` points per segment.
        layers (str | type | list | None): which activations give bits.
        batch_size (int): segments walked at a time.
        log (Callable[[dict], None] | None): called with every row measured.

    Raises:
        InputTypeError: the segments are not tensors, or ``log`` is not callable.
        InputError: segments of different shapes, an unknown ``method``, or ``every`` below 1.

    Examples:
        >>> import torch, spacefold as sf
        >>> net = sf.mlp("2x16", in_features=2, n_classes=2, seed=0)
        >>> x, y = torch.randn(30, 2, generator=torch.Generator().manual_seed(0)), torch.arange(30) % 3
        >>> tracker = sf.FoldingTracker(*sf.probe_pairs(x, y, 12), every=2)
        >>> sorted(tracker(net, epoch=0))
        ['epoch', 'fraction_folded', 'n_paths', 'phi', 'phi_max']
        >>> tracker(net, epoch=1) is None, tracker(net, epoch=1, epochs=2)["n_paths"], len(tracker.history)
        (True, 12, 2)
    """

    def __init__(
        self,
        x1: Tensor,
        x2: Tensor,
        *,
        every: int = 1,
        method: str = "exact",
        steps: int = 100,
        layers: LayerSelector = None,
        batch_size: int = 256,
        log: Callable[[dict], None] | None = None,
    ):
        from .._core.walk import METHODS

        _check_segments(x1, x2)
        self.every = _check_count(every, "every", 1)
        if method not in METHODS:
            raise InputError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        if log is not None and not callable(log):
            raise InputTypeError(f"log must be a callable taking a dict, got {type(log).__name__}")
        self.method, self.steps, self.layers, self.batch_size, self.log = method, steps, layers, batch_size, log
        self.x1, self.x2 = x1.detach(), x2.detach()
        self.history: list[dict] = []

    def measure(self, model: nn.Module) -> dict:
        """Φ_N, the median of maxima and the share folded of the probe segments under ``model`` now.

        Args:
            model (nn.Module): the model.

        Returns:
            dict: ``{"phi", "phi_max", "fraction_folded", "n_paths"}``.

        Raises:
            InputError: a model with no activation to hook.
        """
        from .._core.folding import folding_batch
        from .metric import FoldingMetric

        _check_model(model)
        _check_hookable(model, self.layers)
        metric = FoldingMetric()
        for k in range(0, self.x1.shape[0], self.batch_size):
            metric.update(
                folding_batch(
                    model,
                    self.x1[k : k + self.batch_size],
                    self.x2[k : k + self.batch_size],
                    method=self.method,
                    steps=self.steps,
                    layers=self.layers,
                )
            )
        return {k: (int(v) if k == "n_paths" else float(v)) for k, v in metric.compute().items()}

    def __call__(self, model: nn.Module, epoch: int, epochs: int | None = None) -> dict | None:
        last = epochs is not None and epoch == epochs - 1
        if epoch % self.every and not last:
            return None
        row = {"epoch": int(epoch), **self.measure(model)}
        self.history.append(row)
        if self.log is not None:
            self.log(row)
        return row
