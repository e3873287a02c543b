"""The certified walk: split [0, 1] into t-intervals on each of which every bit's quantity is
proved sign-definite or strictly monotone, then locate the crossings by bisection.

Phase 1 (certify). Intervals of all paths are evaluated together through
:class:`.graph.CertifiedProgram`. An interval is accepted when, for every bit, the enclosure
of its quantity z - tie_tol excludes 0 (the bit is constant), or the enclosure of dz/dt
excludes 0 (z is strictly monotone: it crosses tie_tol at most once, so the bit changes at most
once). Otherwise it is halved. An interval narrower than ``tol`` is accepted unproved: whatever
happens inside it lies within ``tol`` in t, which every method merges (the exact walk gathers
crossings closer than ``tol`` into one breakpoint). A path that needs more than
``max_intervals`` intervals stops being split; its remaining intervals are walked like
``bisect`` would and the path is reported incomplete (``complete=False``, with a warning).

Phase 2 (locate). On an accepted interval every bit is monotone or constant, so equal patterns
at two points of it prove the pattern constant between them: the patterns at the endpoints of
the accepted intervals are computed (the model itself, in float64, under the activation hooks,
so that the bits are those of ``spacefold.activation_patterns``), and where two consecutive
ones differ the midpoint is inserted until every transition is located within ``tol``. The
conventions for isolated boundary points are those of ``bisect`` (a region is entered at the
first sample in it; a sample that differs from both neighbours, each within ``tol``, lies on a
boundary and is dropped), so the walks compare with ``exact``'s within ``tol``; at the ends they
are ``exact``'s: a change located within ``tol`` of t = 0 or t = 1 is a change there.
"""

from __future__ import annotations

import dataclasses
import os
import warnings

import torch
from torch import Tensor, nn

from ....errors import InputError
from ...patterns import LayerSelector, PatternRecorder, no_fastpath, run_model
from .. import WalkBatch, check_certified_tol, memory_budget, segment_points
from ..bisect import walks_from_samples
from . import interval as iv
from .graph import CertifiedProgram, CertifiedUnsupportedError

MAX_INTERVALS = 4096  # per path; SPACEFOLD_CERTIFIED_BUDGET overrides
CHUNK = 256  # intervals evaluated together (at least; more where the memory budget allows: interval_chunk)
MAX_CHUNK = 16384
POINTS = 4096  # points of one forward pass for the patterns, unless given (points_per_pass)


class CertifiedBudgetWarning(UserWarning):
    """Some paths could not be certified within the interval budget."""


def max_intervals() -> int:
    text = os.environ.get("SPACEFOLD_CERTIFIED_BUDGET")
    if text is None:
        return MAX_INTERVALS
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise InputError(f"SPACEFOLD_CERTIFIED_BUDGET must be a positive number of intervals per path, got {text!r}")
    return value


def interval_chunk(n_inputs: int, n_neurons: int, memory: int | None = None) -> int:
    """Intervals of all paths enclosed together: half the memory budget over an estimate of
    one interval's memory (centres and radii of the five rows of every value, float64, about
    eight values per activation bit), between :data:`CHUNK` and :data:`MAX_CHUNK`."""
    per = 2 * iv.NR * 8 * (n_inputs + 8 * max(n_neurons, 1))
    return int(min(MAX_CHUNK, max(CHUNK, (memory or memory_budget()) // 2 // per)))


class CertifiedWalker:
    """Certified walks of many segments of one model (the float64 copy is made once)."""

    def __init__(
        self,
        model: nn.Module,
        layers: LayerSelector = None,
        *,
        tol: float = 1e-6,
        tie_tol: float = 0.0,
        budget: int | None = None,
        chunk: int = CHUNK,
        points: int = POINTS,
    ):
        check_certified_tol(tol)
        self.program = CertifiedProgram(model, layers)
        self.model64 = self.program.model
        self.recorder = PatternRecorder(self.model64, layers)
        self.tol, self.tie_tol = float(tol), float(tie_tol)
        self.budget = budget or max_intervals()
        self.chunk = chunk  # intervals of all paths enclosed together
        self.points = points  # points of all paths in one forward pass
        self.checked = False
        self.stats = {"intervals": 0, "unproved_narrow": 0}

    # ------------------------------------------------------------------ enclosures
    def enclosures(self, x1: Tensor, x2: Tensor, path: Tensor, a: Tensor, b: Tensor):
        """Enclosures of every bit quantity (activation input) on the intervals [a, b] of the
        segments ``path``: ``(lo, hi, dlo, dhi, plo, phi)``, each ``(n, n_bits)``: the value
        on the interval, its derivative d/dt there, and the value at the midpoint."""
        x = iv.dual_input(x1[path].double(), x2[path].double(), a, b)
        qs = self.program.run(x)
        if not qs:
            raise CertifiedUnsupportedError("method='certified' found no selected activation call in the traced graph")
        C = torch.cat([q.C.reshape(iv.NR, q.C.shape[1], -1) for _, q, _ in qs], -1)
        R = torch.cat([q.R.reshape(iv.NR, q.R.shape[1], -1) for _, q, _ in qs], -1)
        # a quantity that is exactly 0 with radius 0 in every row (an activation of zero padding): its bit is 0
        exact = ((C == 0) & (R == 0)).all(0)
        t = iv.tighten(iv.IDual(C, R, x.h))
        lo, hi = iv.lohi(t.C[0], t.R[0])
        dlo, dhi = iv.lohi(t.C[2], t.R[2])
        plo, phi = iv.lohi(t.C[1], t.R[1])
        if any(z is not None for _, _, z in qs) or bool(exact.any()):  # exactly 0 on the interval: [0, 0], no slope
            zero = exact | torch.cat(
                [
                    (z if z is not None else torch.zeros(q.C.shape[1:], dtype=torch.bool, device=q.C.device)).reshape(
                        q.C.shape[1], -1
                    )
                    for _, q, z in qs
                ],
                -1,
            )
            lo, hi, dlo, dhi, plo, phi = (
                torch.where(zero, torch.zeros_like(v), v) for v in (lo, hi, dlo, dhi, plo, phi)
            )
        return lo, hi, dlo, dhi, plo, phi

    def enclose(self, x1: Tensor, x2: Tensor, path: Tensor, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        """For the intervals [a, b] of the segments ``path``: bool ``(n, n_bits)`` masks of the
        bits proved constant and of those proved monotone."""
        lo, hi, dlo, dhi, plo, phi = self.enclosures(x1, x2, path, a, b)
        if not self.checked:
            self._check(x1, x2, path, a, b, plo, phi)
        const = (lo > self.tie_tol) | (hi <= self.tie_tol)
        mono = (dlo > 0) | (dhi < 0)
        return const, mono

    def _check(self, x1, x2, path, a, b, plo: Tensor, phi: Tensor) -> None:
        """The bits of the traced graph are those the hooks record: same count, and the same
        signs at the midpoints wherever the enclosure decides the sign."""
        mid = 0.5 * (a + b)
        bits = self.patterns(x1, x2, path, mid)
        if bits.shape[1] != plo.shape[-1]:
            raise CertifiedUnsupportedError(
                f"method='certified' traced {plo.shape[-1]} bit quantities but the activation hooks record "
                f"{bits.shape[1]} bits for {type(self.model64).__name__}; its forward calls activations the "
                "trace does not see (data-dependent control flow?); use method='bisect'"
            )
        sure1, sure0 = plo > self.tie_tol, phi <= self.tie_tol
        bad = (sure1 & ~bits) | (sure0 & bits)
        if bool(bad.any()):
            raise CertifiedUnsupportedError(
                f"method='certified': the traced graph of {type(self.model64).__name__} disagrees with its forward "
                f"on {int(bad.sum())} bit(s); use method='bisect'"
            )
        self.checked = True

    def patterns(self, x1: Tensor, x2: Tensor, path: Tensor, t: Tensor) -> Tensor:
        out = []
        with self.recorder, no_fastpath():
            for j in range(0, path.numel(), self.points):
                pts = segment_points(x1, x2, path[j : j + self.points], t[j : j + self.points])
                self.recorder.clear()
                run_model(self.model64, pts, "x1")
                out.append(self.recorder.bits(self.tie_tol))
        return torch.cat(out) if out else torch.zeros(0, 0, dtype=torch.bool)

    # ------------------------------------------------------------------ the walk
    def __call__(self, x1: Tensor, x2: Tensor) -> WalkBatch:
        with torch.no_grad():
            return self._walk(x1.double(), x2.double())

    def _walk(self, x1: Tensor, x2: Tensor) -> WalkBatch:
        device = x1.device
        n = x1.shape[0]
        q_path = torch.arange(n, device=device)
        q_a = torch.zeros(n, dtype=torch.float64, device=device)
        q_b = torch.ones(n, dtype=torch.float64, device=device)
        used = torch.ones(n, dtype=torch.int64, device=device)
        complete = torch.ones(n, dtype=torch.bool, device=device)
        acc_path, acc_a = [], []
        unproved: Tensor | None = None
        while q_path.numel():
            k = min(self.chunk, q_path.numel())
            path, a, b = q_path[:k], q_a[:k], q_b[:k]
            q_path, q_a, q_b = q_path[k:], q_a[k:], q_b[k:]
            const, mono = self.enclose(x1, x2, path, a, b)
            self.stats["intervals"] += k
            ok = (const | mono).all(-1)
            narrow = (b - a) <= self.tol
            over = self._over_budget(used, path, ~ok & ~narrow)
            self.stats["unproved_narrow"] += int((~ok & narrow).sum())
            failed = ~ok & ~narrow & over
            complete[path[failed]] = False
            if bool(failed.any()):  # which bits were left unproved, by how many intervals
                left = (~(const | mono))[failed].sum(0)
                unproved = left if unproved is None else unproved + left
            done = ok | narrow | over
            acc_path.append(path[done])
            acc_a.append(a[done])
            split = ~done
            if bool(split.any()):
                sp, sa, sb = path[split], a[split], b[split]
                sm = 0.5 * (sa + sb)
                used.index_add_(0, sp, torch.full_like(sp, 2))
                # breadth first: all paths' open intervals are evaluated together, a round per level
                q_path = torch.cat([q_path, sp, sp])
                q_a = torch.cat([q_a, sa, sm])
                q_b = torch.cat([q_b, sm, sb])
        if not bool(complete.all()):
            warnings.warn(
                f"method='certified' could not certify {int((~complete).sum())} of {n} path(s) within the budget of "
                f"{self.budget} intervals per path{self._unproved_where(unproved)} (their folding.complete is "
                "False; they were finished like method='bisect'); raise the budget with the environment variable "
                "SPACEFOLD_CERTIFIED_BUDGET, or walk such a model with method='bisect'",
                CertifiedBudgetWarning,
                stacklevel=3,
            )
        # every accepted interval's start, plus t = 1 of every path: the initial samples
        path = torch.cat(acc_path + [torch.arange(n, device=device)])
        t = torch.cat(acc_a + [torch.ones(n, dtype=torch.float64, device=device)])
        return dataclasses.replace(self._locate(x1, x2, path, t, n), complete=complete)

    def _unproved_where(self, unproved: Tensor | None) -> str:
        """The activations whose bits were left unproved (``unproved``: per bit, the intervals that left it
        so), most first: ``"; unproved: bits of 'name' (12 intervals), ..."``, or "" where not known."""
        if unproved is None:
            return ""
        try:
            layers = self.recorder.layout().layers
        except Exception:  # no forward pass recorded yet
            return ""
        counts = [(int(unproved[lay.start : lay.stop].sum()), lay.name) for lay in layers]
        counts = sorted((c for c in counts if c[0] > 0), key=lambda c: -c[0])
        if not counts:
            return ""
        shown = ", ".join(f"'{name}' ({c} interval-bits)" for c, name in counts[:3])
        more = f" and {len(counts) - 3} more" if len(counts) > 3 else ""
        return f"; the bits left unproved are those of {shown}{more}"

    def _over_budget(self, used: Tensor, path: Tensor, cand: Tensor) -> Tensor:
        """Which of the intervals ``cand`` cannot be split within the budget: the k-th of a
        path's splits in this round would bring it to ``used + 2 k`` intervals."""
        over = torch.zeros_like(cand)
        cp = path[cand]
        if cp.numel() == 0:
            return over
        order = torch.argsort(cp, stable=True)
        sorted_p = cp[order]
        first = torch.searchsorted(sorted_p, sorted_p)  # where each path's run starts
        rank = torch.empty_like(order)
        rank[order] = torch.arange(cp.numel(), device=cp.device) - first
        over[cand] = used[cp] + 2 * (rank + 1) > self.budget
        return over

    def _locate(self, x1: Tensor, x2: Tensor, path: Tensor, t: Tensor, n: int) -> WalkBatch:
        device = x1.device
        order = torch.argsort(t, stable=True)
        order = order[torch.argsort(path[order], stable=True)]
        path, t = path[order], t[order]
        pat = self.patterns(x1, x2, path, t)
        same = path[1:] == path[:-1]
        ia = torch.nonzero(same).flatten()
        ib = ia + 1
        all_path, all_t, all_pat = path, t, pat
        n_samples = path.numel()
        tol = self.tol
        while ia.numel():
            mid = 0.5 * (all_t[ia] + all_t[ib])
            # a bracket whose midpoint rounds onto one of its ends cannot be narrowed further
            # (it is as narrow as float64 allows): it is located, whatever tol asks
            need = (all_pat[ia] != all_pat[ib]).any(-1) & ((all_t[ib] - all_t[ia]) > tol)
            need &= (mid > all_t[ia]) & (mid < all_t[ib])
            ia, ib, mid = ia[need], ib[need], mid[need]
            if ia.numel() == 0:
                break
            p = all_path[ia]
            new_pat = self.patterns(x1, x2, p, mid)
            new_idx = torch.arange(n_samples, n_samples + ia.numel(), device=device)
            n_samples += ia.numel()
            all_path = torch.cat([all_path, p])
            all_t = torch.cat([all_t, mid])
            all_pat = torch.cat([all_pat, new_pat])
            ia, ib = torch.cat([ia, new_idx]), torch.cat([new_idx, ib])
        return _snap_ends(walks_from_samples(all_path, all_t, all_pat, n, tol, "certified"), tol)


def _snap_ends(wb: WalkBatch, tol: float) -> WalkBatch:
    """The end-point convention of the exact walk: a change of pattern located within ``tol`` of
    t = 0 (or t = 1) is a change at t = 0 (or t = 1), which enters a region of zero length there
    (a segment that starts or ends on a boundary). Bisection enters the region at the right end
    of its bracket, up to ``tol`` after t = 0; that region is entered at t = 0 instead."""
    t = wb.t.clone()
    later = torch.ones_like(t, dtype=torch.bool)
    later[wb.offsets[:-1][wb.offsets[:-1] < t.numel()]] = False  # every walk's first region stays at t = 0
    t[later & (t <= tol) & (t <= 0.5)] = 0.0
    t[later & (t >= 1.0 - tol) & (t > 0.5)] = 1.0
    return dataclasses.replace(wb, t=t)


def certified_walks(
    model: nn.Module,
    x1: Tensor,
    x2: Tensor,
    *,
    layers: LayerSelector = None,
    tol: float = 1e-6,
    tie_tol: float = 0.0,
    budget: int | None = None,
) -> WalkBatch:
    """Certified walks of the segments ``x1[i] -> x2[i]`` (``(batch, *input_shape)``)."""
    return CertifiedWalker(model, layers, tol=tol, tie_tol=tie_tol, budget=budget)(x1, x2)
