"""Which segments to walk: class pairs, ordered class pairs, random pairs, class centroids.

Pairs are index pairs ``(i, j)`` into one sample tensor ``x``: the segment runs
from ``x[i]`` to ``x[j]``. They are described lazily by :class:`PairBlock` (all
pairs of two index sets, or a fixed list) and enumerated in chunks, so a million
pairs never sit in memory as inputs, and the full MNIST protocol (10 x 10 ordered
digit pairs of about a million segments each) never sits in memory even as
indices.

- ``"inter-class"``: for every ordered pair of distinct classes (a, b), every
  sample of a paired with every sample of b (Φ_N, docs/method.md, 'The global measure').
- ``"all"``: the ordered class pairs of the P2 MNIST protocol, 10 x 10 with the
  same class included (docs/method.md, 'The global measure'); a sample is never paired with itself.
- :func:`random_pairs`: a seeded random sample of distinct pairs of the whole set.
- :func:`class_centroids`: k-means centroids per class (scikit-learn), the
  speed-up of arXiv 2502.09954.

The drawing of pairs is frozen for a given :data:`PLAN_VERSION`: :func:`pair_plan`,
:func:`share_out`, :meth:`PairBlock.sample`, :func:`random_pairs` and the helpers they call
give the same pairs for the same labels, arguments and seed as long as the version holds.
A change to any of them that changes a drawn pair must bump :data:`PLAN_VERSION` (the test
suite pins drawn indices for version 1). Recorded studies store the version and a hash of
their pairs (:func:`plan_fingerprint`), so a result can be tied to the exact pairs it walked.
Version 1 is the drawing since commit 69489aa; results recorded before it drew other pairs.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .._util import check_choice, check_int
from ..errors import InputError, InputTypeError, MissingExtraError

__all__ = [
    "PairBlock",
    "PairPlan",
    "PAIR_MODES",
    "PLAN_VERSION",
    "plan_fingerprint",
    "class_pair_block",
    "pair_plan",
    "random_pairs",
    "class_centroids",
    "iter_chunks",
]

PAIR_MODES = ("inter-class", "all", "random")

#: Version of the pair-drawing code; bump it with any change that draws other pairs.
PLAN_VERSION = 1


@dataclass(frozen=True)
class PairBlock:
    """Pairs whose starts have label ``a`` and ends label ``b``.

    ``product=True``: every ``starts[r]`` with every ``ends[c]`` (row-major), without
    the pairs of a sample with itself when ``exclude_self`` (same index sets).
    ``product=False``: the pairs ``(starts[k], ends[k])``.
    """

    a: int
    b: int
    starts: Tensor
    ends: Tensor
    product: bool = True
    exclude_self: bool = False

    def __len__(self) -> int:
        if not self.product:
            return int(self.starts.numel())
        n, m = int(self.starts.numel()), int(self.ends.numel())
        return n * (m - 1) if self.exclude_self else n * m

    def pairs_at(self, k: Tensor) -> tuple[Tensor, Tensor]:
        """Index pairs at flat positions ``k`` (int64) of this block."""
        if not self.product:
            return self.starts[k], self.ends[k]
        m = int(self.ends.numel()) - (1 if self.exclude_self else 0)
        kn = k.numpy()  # (numpy: several times faster than torch on the sizes of a plan's blocks)
        r = kn // m
        c = kn - r * m
        if self.exclude_self:
            c += c >= r  # skip the diagonal (sample with itself)
        return torch.as_tensor(self.starts.numpy()[r]), torch.as_tensor(self.ends.numpy()[c])  # (k may be 0-d)

    def chunks(self, size: int) -> Iterator[tuple[Tensor, Tensor]]:
        """Index pairs ``(i, j)`` in chunks of at most ``size``."""
        n = len(self)
        for k in range(0, n, size):
            yield self.pairs_at(torch.arange(k, min(k + size, n)))

    def sample(self, n: int, generator: torch.Generator) -> PairBlock:
        """``n`` pairs of this block drawn at random (without replacement when the block
        is not huge), as a list block; the whole block when ``n >= len(self)``."""
        total = len(self)
        if n >= total:
            return self
        if total <= 4 * n:
            k = torch.randperm(total, generator=generator)[:n]
        else:
            k = _distinct_sample(total, n, generator)
        k = torch.from_numpy(np.sort(k.numpy()))  # (numpy's sort is several times faster on these sizes)
        i, j = self.pairs_at(k)
        return PairBlock(self.a, self.b, i, j, product=False)


def _distinct_sample(total: int, n: int, generator: torch.Generator) -> Tensor:
    """``n`` distinct integers of ``[0, total)`` drawn at random (``total > 4 n``), without
    building a permutation of ``total``: draw with replacement until ``n`` distinct."""
    got = np.zeros(0, dtype=np.int64)
    while got.size < n:
        extra = torch.randint(total, (n + n // 4 + 16,), generator=generator)
        got = _sorted_distinct(np.concatenate([got, extra.numpy()]))
    # a random subset of n of the distinct values (unique() sorted them)
    return torch.from_numpy(got[torch.randperm(got.size, generator=generator)[:n].numpy()])


def _sorted_distinct(values: np.ndarray) -> np.ndarray:
    """The distinct values of an int64 array, sorted (``torch.unique``'s result, by numpy's faster sort)."""
    v = np.sort(values)
    return v[np.r_[True, v[1:] != v[:-1]]] if v.size else v


@dataclass(frozen=True)
class PairPlan:
    """An ordered list of :class:`PairBlock`; paths are numbered block after block."""

    blocks: tuple[PairBlock, ...]
    mode: str

    def __len__(self) -> int:
        return sum(len(b) for b in self.blocks)

    def chunks(self, size: int) -> Iterator[tuple[Tensor, Tensor]]:
        """Index pairs of all blocks in chunks of at most ``size`` (a chunk may span blocks)."""
        check_int(size, "size", 1)
        return iter_chunks((c for blk in self.blocks for c in blk.chunks(size)), size)

    def labels(self) -> tuple[Tensor, Tensor]:
        """Start and end class of every path, int64 ``(len(self),)`` each."""
        a = torch.cat([torch.full((len(b),), b.a, dtype=torch.int64) for b in self.blocks])
        b_ = torch.cat([torch.full((len(b),), b.b, dtype=torch.int64) for b in self.blocks])
        return a, b_

    def indices(self) -> tuple[Tensor, Tensor]:
        """All index pairs at once (for small plans and tests)."""
        parts = list(self.chunks(1 << 20))
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def plan_fingerprint(plan: PairPlan) -> dict:
    """What identifies a plan's pairs: the drawing version, the mode, the number of pairs and the
    SHA-256 of the start and end indices (int64, little-endian, all starts then all ends)."""
    if not isinstance(plan, PairPlan):
        raise InputTypeError(f"plan must be a PairPlan, got {type(plan).__name__}")
    i, j = plan.indices() if len(plan) else (torch.zeros(0, dtype=torch.int64),) * 2
    h = hashlib.sha256()
    for t in (i, j):
        h.update(t.to(torch.int64).contiguous().numpy().astype("<i8").tobytes())
    return {"plan_version": PLAN_VERSION, "mode": plan.mode, "n_pairs": len(plan), "sha256": h.hexdigest()}


def iter_chunks(chunks, size: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Regroup a stream of ``(i, j)`` index chunks into chunks of exactly ``size`` (last may be short)."""
    buf_i: list[Tensor] = []
    buf_j: list[Tensor] = []
    held = 0
    for i, j in chunks:
        while i.numel():
            take = min(size - held, i.numel())
            buf_i.append(i[:take])
            buf_j.append(j[:take])
            held += take
            i, j = i[take:], j[take:]
            if held == size:
                yield _cat(buf_i), _cat(buf_j)
                buf_i, buf_j, held = [], [], 0
    if held:
        yield _cat(buf_i), _cat(buf_j)


def _cat(parts: list[Tensor]) -> Tensor:
    """``torch.cat(parts)``, by numpy for CPU tensors: this also runs beside busy worker processes, where an
    operation of torch's on more than one thread waits for a thread the cores are not free to run."""
    if len(parts) == 1:
        return parts[0]
    if all(p.device.type == "cpu" for p in parts):
        return torch.from_numpy(np.concatenate([p.numpy() for p in parts]))
    return torch.cat(parts)


def _check_labels(y) -> Tensor:
    if not isinstance(y, Tensor):
        try:
            y = torch.as_tensor(y)
        except Exception:
            raise InputTypeError(f"y must be a tensor of integer labels, got {type(y).__name__}") from None
    if y.dim() != 1:
        raise InputError(f"y must be a 1-D tensor of labels, got shape {tuple(y.shape)}")
    if y.dtype.is_floating_point or y.dtype == torch.bool or y.dtype.is_complex:
        raise InputTypeError(f"y must hold integer labels, got dtype {y.dtype}")
    return y.long().cpu()


def class_pair_block(y, a: int, b: int) -> PairBlock:
    """Every pair (sample of class ``a``, sample of class ``b``): |C_a| x |C_b| pairs
    (|C_a| x (|C_a| - 1) when ``a == b``: a sample is not paired with itself)."""
    y = _check_labels(y)
    ia = torch.nonzero(y == a).flatten()
    ib = torch.nonzero(y == b).flatten()
    if ia.numel() == 0 or ib.numel() == 0:
        missing = a if ia.numel() == 0 else b
        raise InputError(f"class {missing} has no sample in y (classes present: {sorted(y.unique().tolist())})")
    return PairBlock(int(a), int(b), ia, ib, product=True, exclude_self=(a == b))


def pair_plan(
    y,
    pairs: str = "inter-class",
    *,
    max_pairs: int | None = None,
    seed: int = 0,
    classes: Sequence[int] | None = None,
) -> PairPlan:
    """The pairs of a data set with labels ``y``.

    pairs : ``"inter-class"`` (ordered pairs of distinct classes), ``"all"`` (ordered
        class pairs with the same class included, the P2 protocol) or ``"random"``
        (pairs of distinct samples of the whole set, drawn at random; needs
        ``max_pairs``).
    max_pairs : at most this many pairs in all, spread evenly over the class pairs
        and drawn at random with ``seed``: each class pair gets ``max_pairs //
        n_class_pairs`` pairs, one more for ``max_pairs % n_class_pairs`` class pairs
        chosen at random, and a class pair with fewer pairs than its share gives all
        of them and leaves the rest to the others (see :func:`share_out`). The plan
        holds exactly ``min(max_pairs, number of pairs)`` pairs; with fewer than one
        pair per class pair some class pairs get none. ``None`` keeps every pair.
    classes : restrict to these classes (default: every class present in ``y``).
    """
    y = _check_labels(y)
    check_choice(pairs, "pairs", PAIR_MODES)
    if max_pairs is not None:
        check_int(max_pairs, "max_pairs", 1)
    check_int(seed, "seed", 0)
    if pairs == "random":
        if max_pairs is None:
            raise InputError(
                "max_pairs must be an int >= 1 with pairs='random' (the number of pairs to draw), got None"
            )
        i, j = random_pairs(y.numel(), max_pairs, seed=seed)
        return PairPlan((PairBlock(-1, -1, i, j, product=False),), "random")
    present = sorted(y.unique().tolist())
    if classes is None:
        classes = present
    else:
        classes = [int(c) for c in classes]
        absent = [c for c in classes if c not in present]
        if absent:
            raise InputError(f"classes {absent} have no sample in y (classes present: {present})")
    ordered = [(a, b) for a in classes for b in classes if pairs == "all" or a != b]
    if pairs == "all":
        ordered = [(a, b) for a, b in ordered if a != b or int((y == a).sum()) >= 2]
    if not ordered:
        raise InputError(f"y must hold at least two classes for pairs={pairs!r}, got {present}")
    # the blocks of class_pair_block, each class's samples found once
    members = {c: torch.nonzero(y == c).flatten() for c in {c for pair in ordered for c in pair}}
    blocks = [PairBlock(a, b, members[a], members[b], product=True, exclude_self=a == b) for a, b in ordered]
    if max_pairs is not None and sum(len(b) for b in blocks) > max_pairs:
        g = torch.Generator().manual_seed(seed)
        shares = share_out(max_pairs, [len(b) for b in blocks], g)
        blocks = [b.sample(n, g) for b, n in zip(blocks, shares)]
    return PairPlan(tuple(blocks), pairs)


_PLANS: dict[tuple, PairPlan] = {}  # the last plans drawn by kept_plan, by their labels' digest and arguments
_PLANS_KEPT = 4
_PLANS_LOCK = threading.Lock()
_PLAN_BYTES_KEPT = 64 << 20  # plans of larger index tensors are drawn again


def kept_plan(
    y, pairs: str, *, max_pairs: int | None = None, seed: int = 0, classes: Sequence[int] | None = None
) -> PairPlan:
    """:func:`pair_plan`, kept for the next call with the same labels (by the digest of their values) and arguments:
    repeated measures of one data set (every epoch of a callback) walk the same pairs without drawing them again.
    For callers that do not hand the plan on (its tensors are shared between calls)."""
    y = _check_labels(y)
    key = (
        hashlib.blake2b(y.contiguous().numpy().tobytes(), digest_size=16).digest(),
        y.numel(),
        pairs,
        max_pairs,
        seed,
        None if classes is None else tuple(int(c) for c in classes),
        PLAN_VERSION,
    )
    with _PLANS_LOCK:
        plan = _PLANS.pop(key, None)
    if plan is None:
        plan = pair_plan(y, pairs, max_pairs=max_pairs, seed=seed, classes=classes)
    if sum(t.numel() * t.element_size() for b in plan.blocks for t in (b.starts, b.ends)) <= _PLAN_BYTES_KEPT:
        with _PLANS_LOCK:
            _PLANS[key] = plan  # (the latest last)
            while len(_PLANS) > _PLANS_KEPT:
                del _PLANS[next(iter(_PLANS))]
    return plan


def share_out(total: int, sizes: Sequence[int], generator: torch.Generator) -> list[int]:
    """Split ``total`` over blocks of ``sizes`` as evenly as the sizes allow.

    Share ``k`` is at most ``sizes[k]``, the shares sum to ``min(total, sum(sizes))``,
    and shares of blocks not taken whole differ by at most one; the blocks that get
    the one more are drawn at random from ``generator`` (nothing is drawn when
    ``total`` divides evenly and no block is short, so such plans do not depend on
    this step).
    """
    n = len(sizes)
    shares = [0] * n
    left = min(total, sum(sizes))
    open_ = sorted(range(n), key=lambda k: sizes[k])
    # Blocks smaller than an even share of what is left are taken whole, smallest first.
    while open_ and sizes[open_[0]] * len(open_) <= left:
        k = open_.pop(0)
        shares[k] = sizes[k]
        left -= sizes[k]
    if open_:
        base, extra = divmod(left, len(open_))
        for k in open_:
            shares[k] = base
        if extra:
            order = sorted(open_)
            for r in torch.randperm(len(order), generator=generator)[:extra].tolist():
                shares[order[r]] += 1
    return shares


def random_pairs(n: int, n_pairs: int, *, seed: int = 0) -> tuple[Tensor, Tensor]:
    """``n_pairs`` seeded random pairs ``(i, j)`` of distinct samples among ``n``.

    Without replacement among the n (n - 1) ordered pairs when that is not huge.
    """
    check_int(n, "n", 2)
    check_int(n_pairs, "n_pairs", 1)
    idx = torch.arange(n)
    block = PairBlock(-1, -1, idx, idx, product=True, exclude_self=True)
    s = block.sample(n_pairs, torch.Generator().manual_seed(seed))
    if s is block:
        return block.pairs_at(torch.arange(len(block)))
    return s.starts, s.ends


def class_centroids(
    x: Tensor,
    y,
    n_clusters: int,
    *,
    seed: int = 0,
    classes: Sequence[int] | None = None,
) -> tuple[Tensor, Tensor]:
    """k-means centroids of each class (scikit-learn ``KMeans``, seeded).

    Returns ``(centroids, labels)``: ``(n_classes * k, *x.shape[1:])`` in ``x``'s dtype
    and their class labels. A class with fewer than ``n_clusters`` samples keeps its
    samples as they are.
    """
    try:
        from sklearn.cluster import KMeans
    except ImportError:
        raise MissingExtraError("class_centroids needs scikit-learn: pip install 'spacefold[data]'") from None
    if not isinstance(x, Tensor):
        raise InputTypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    y = _check_labels(y)
    if x.shape[0] != y.numel():
        raise InputError(f"x and y must have the same number of samples, got {x.shape[0]} and {y.numel()}")
    check_int(n_clusters, "n_clusters", 1)
    check_int(seed, "seed", 0)
    classes = sorted(y.unique().tolist()) if classes is None else [int(c) for c in classes]
    flat = x.detach().reshape(x.shape[0], -1).cpu()
    cents, labels = [], []
    for c in classes:
        xc = flat[y == c]
        if xc.shape[0] == 0:
            raise InputError(f"classes must each have a sample in y, got class {c} with none")
        if xc.shape[0] <= n_clusters:
            cc = xc.double()
        else:
            km = KMeans(n_clusters=n_clusters, n_init=3, random_state=seed).fit(xc.double().numpy())
            cc = torch.from_numpy(km.cluster_centers_)
        cents.append(cc)
        labels.append(torch.full((cc.shape[0],), c, dtype=torch.int64))
    out = torch.cat(cents).to(x.dtype).reshape(-1, *x.shape[1:])
    return out, torch.cat(labels)
