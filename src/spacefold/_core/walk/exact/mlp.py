"""Folding measures of small MLPs from one compiled kernel per batch of paths (docs/method.md, 'The exact walk').

For a model that is a chain ``Linear → act → Linear → act → ... → act`` (ReLU, LeakyReLU, PReLU or RReLU in
eval mode, bits ``z > 0``, layers at most :data:`MAX_WIDTH` wide, the logits after it not needed), the measures
of a path need no tensors of breakpoints: :func:`spacefold._core.walk._jit_mlp.mlp_summaries` walks each path
through every layer in float64 and counts r1, r2, the regions and the profile's maximum as it goes. Every path
it calls clean is one on which the walk is decided beyond round-off: each value the walk compares with 0 is
farther from it than the bound of the error of the layer-by-layer walk in the model's dtype (tracked neuron by
neuron from the first layer, whose terms ``|W||x| + |b|`` are computed once per input), and the breakpoints are
farther apart than that error moves them and than the walk's merge tolerance. On such a path the walk of the
model's dtype and the float64 walk find the same regions, each breakpoint flipping one bit. The others (values
at or within round-off of 0, crossings that meet, overflow) are walked by the layer-by-layer walk, with all its
rules (:mod:`.driver`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .. import _kernels
from .activation import _compiled_act
from .program import ExactProgram, _no_hooks

# the widest hidden layer measured this way (at most 64: one word of signs); benchmarks/bench_mlp_kernels.py times the
# kernels against the layer walk by width (benchmarks/RESULTS.md, section 19)
MAX_WIDTH = 64
# how far apart breakpoints must be in t, beyond their uncertainty (the layer walk refines closer ones)
_GAP = 1e-6
_RESHAPES = ("flatten", "view", "reshape")
# inputs converted to float64 at a time for the first layer
_PREFIX_ROWS = 1024


@dataclass(frozen=True, eq=False)
class MLPSummarizer:
    """The chain of an MLP in float64: the first ``nn.Linear``, then per later layer its weight, bias, the 1-norms
    of its rows of weights and the bound of its bias's round-off; per hidden layer its neurons' slopes below 0."""

    first: nn.Linear
    weights: list[Tensor]
    biases: list[Tensor]
    w1: list[np.ndarray]
    ub: list[np.ndarray]  # per later layer: |bias|·u (u of __call__) and what underflow can add, by neuron
    slopes: list[np.ndarray]
    widths: list[int]
    gap: float
    first_err: tuple[np.ndarray, np.ndarray]  # (in_features + 4)·unit·(‖w_n‖, |b_n|), the latter + underflow's
    rows_per_path: list[float] = field(default_factory=lambda: [16.0])  # as the last call needed, with a margin
    scratch: dict[str, Any] = field(default_factory=dict)  # working arrays kept between calls (see _buffers)

    unit: float = float(torch.finfo(torch.float64).eps) / 2

    def _buffers(self, cap: int, keep: int, width: int, cur: int = 0) -> dict[str, Any]:
        """Working arrays for ``cap`` breakpoints, kept for the next call; growing them keeps the first ``keep`` rows
        (and of the values, ``width`` wide, those in buffer ``cur``)."""
        old = self.scratch
        if old.get("cap", 0) >= cap:
            return old
        nmax = max(self.widths)
        new: dict[str, Any] = {
            "cap": cap,
            **{k: np.empty(cap, np.int64) for k in ("FB", "NX", "PATH")},
            **{k: np.empty(cap) for k in ("T", "D", "em")},
            "Z": [torch.empty(cap * nmax, dtype=torch.float64) for _ in range(2)],
            "E": [torch.empty(cap * nmax, dtype=torch.float64) for _ in range(2)],
            "views": {},  # (name, buffer, width) -> (tensor, array), see _view
        }
        if keep:
            for k in ("FB", "NX", "PATH", "T", "D", "em"):
                new[k][:keep] = old[k][:keep]
            for k in ("Z", "E"):
                new[k][cur][: keep * width] = old[k][cur][: keep * width]
        self.scratch.clear()
        self.scratch.update(new)
        return self.scratch

    def prefix(self, x: Tensor, block: int | None = None, *, shared: bool = False) -> tuple[Tensor, Tensor]:
        """The first layer's pre-activations at the inputs ``x`` in float64, and the inputs' Euclidean norms (the
        error of the first, ``(in_features + 4)·unit·(|W||x| + |b|)`` by neuron, is at most
        ``(in_features + 4)·unit·(‖w‖·‖x‖ + |b|)``); ``block`` inputs at a time (reshaped, or copied where they are
        not contiguous, a block at a time). Float32 inputs of a float32 model are read by a compiled kernel, in
        parts on torch's threads. ``shared``: both in shared memory, where there is room (for worker processes)."""
        from ...parallel import shared_empty

        lin = self.first
        n = x.shape[0]
        block = max(1, n if block is None else block)
        w = lin.weight.detach().to(torch.float64)
        b = None if lin.bias is None else lin.bias.detach().to(torch.float64)
        z = norm = None
        if shared:
            z, norm = shared_empty((n, lin.out_features), torch.float64), shared_empty((n,), torch.float64)
        if z is None or norm is None:
            z, norm = torch.empty(n, lin.out_features, dtype=torch.float64), torch.empty(n, dtype=torch.float64)
        compiled = x.dtype == lin.weight.dtype == torch.float32 and x.device.type == "cpu" and lin.in_features > 0
        threads = max(1, min(torch.get_num_threads(), n // _PREFIX_ROWS)) if compiled else 1
        pool = None
        if threads > 1:
            from concurrent.futures import ThreadPoolExecutor

            pool = ThreadPoolExecutor(threads)
        try:
            for k in range(0, n, block):
                xk = x[k : k + block].reshape(min(block, n - k), -1)
                if compiled:
                    _first_compiled(xk, w, b, z[k : k + block], norm[k : k + block], pool, threads)
                else:
                    _first_torch(xk, w, b, z[k : k + block], norm[k : k + block], lin.weight.dtype)
        finally:
            if pool is not None:
                pool.shutdown()
        return z, norm

    def __call__(self, za: Tensor, zb: Tensor, na: Tensor, nb: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """The measures of the paths from ``za[p]`` to ``zb[p]`` (first-layer values and the inputs' norms, from
        :meth:`prefix`): ``({"r1", "r2", "n_regions", "chi", "max_profile"}, clean)``; only clean paths have
        their measures filled in."""
        n = za.shape[0]
        u = (max(self.widths) + 4) * self.unit  # a product's round-off, relative to its terms
        buf = self._buffers(int(self.rows_per_path[0] * n) + 2 * n, 0, 0)
        T, D, FB, NX, PATH, em = (buf[k] for k in ("T", "D", "FB", "NX", "PATH", "em"))
        cur = 0  # Z and E live in buffers cur, the next layer's in 1 - cur
        Z, E = _view(buf, "Z", cur, za.shape[1]), _view(buf, "E", cur, za.shape[1])
        Z[0][:n], Z[0][n : 2 * n] = za, zb
        T[:n] = 0.0
        T[n : 2 * n] = 1.0
        D[: 2 * n] = 0.0
        FB[: 2 * n] = -1
        NX[:n] = np.arange(n, 2 * n)
        NX[n : 2 * n] = -1
        PATH[:n] = PATH[n : 2 * n] = np.arange(n)
        ok = np.ones(n, np.bool_)
        em[:n], em[n : 2 * n] = na.numpy(), nb.numpy()  # the first layer's error from the inputs' norms
        w1, ub = self.first_err
        R, boff, L = 2 * n, 0, len(self.widths)
        for k in range(L):
            act = k + 1 < L
            while True:
                R2 = _kernels.mlp_split(
                    Z[1], E[1], T, D, FB, NX, PATH, R, ok, self.slopes[k], boff, u, self.gap, act, em, w1, ub
                )
                if R2 >= 0:
                    break
                # more rows than the arrays hold: larger ones (the rows so far kept), and again
                buf = self._buffers(2 * buf["cap"], R, Z[1].shape[1], cur)
                T, D, FB, NX, PATH, em = (buf[k] for k in ("T", "D", "FB", "NX", "PATH", "em"))
                Z, E = _view(buf, "Z", cur, Z[1].shape[1]), _view(buf, "E", cur, Z[1].shape[1])
            R = R2
            boff += self.widths[k]
            if not act:
                break
            cur = 1 - cur
            F = self.widths[k + 1]
            Zn, E = _view(buf, "Z", cur, F), _view(buf, "E", cur, F)
            torch.addmm(self.biases[k], Z[0][:R], self.weights[k].t(), out=Zn[0][:R])
            Z = Zn
            w1, ub = self.w1[k], self.ub[k]
        self.rows_per_path[0] = max(4.0, 1.25 * R / n)  # the next call's arrays: as many rows and a margin
        out_i = np.zeros((n, 3), np.int64)
        out_f = np.zeros((n, 2), np.float64)
        _kernels.mlp_measure(FB, NX, n, boff, ok, out_i, out_f)
        oi, of = torch.from_numpy(out_i), torch.from_numpy(out_f)
        measures = {"r1": oi[:, 0], "r2": oi[:, 1], "n_regions": oi[:, 2], "chi": of[:, 0], "max_profile": of[:, 1]}
        return measures, torch.from_numpy(ok)


def _first_torch(x: Tensor, w: Tensor, b: Tensor | None, z: Tensor, norm: Tensor, dtype: torch.dtype) -> None:
    for k in range(0, x.shape[0], _PREFIX_ROWS):  # (blocks that stay in the cache)
        # (in the model's dtype first, as the model reads them: float64 inputs of a float32 model are rounded)
        xk = x[k : k + _PREFIX_ROWS].to(dtype).to(torch.float64)
        z[k : k + _PREFIX_ROWS] = torch.nn.functional.linear(xk, w, b)
        norm[k : k + _PREFIX_ROWS] = _norm(xk, narrow=dtype == torch.float32)


def _first_compiled(x: Tensor, w: Tensor, b: Tensor | None, z: Tensor, norm: Tensor, pool: Any, threads: int) -> None:
    """The first layer of float32 inputs ``x`` by the compiled kernel, in ``threads`` contiguous parts (on
    ``pool``): the same bounds hold (the squares of float32 values are exact in float64, and the bound of a sum's
    round-off does not depend on the order of its terms)."""
    n, k = x.shape
    xa, wa, za, sq = x.contiguous().numpy(), w.contiguous().numpy(), z.numpy(), norm.numpy()
    ba = np.zeros(w.shape[0]) if b is None else b.contiguous().numpy()
    cuts = [(n * i // threads) // 4 * 4 for i in range(threads)] + [n]
    if pool is None or n < 2 * _PREFIX_ROWS:
        _kernels.mlp_first(xa, wa, ba, za, sq)
    else:
        parts = [pool.submit(_kernels.mlp_first, xa[a:c], wa, ba, za[a:c], sq[a:c]) for a, c in zip(cuts, cuts[1:])]
        for f in parts:
            f.result()
    np.sqrt(sq, out=sq)
    norm.mul_(1 + (k + 4) * 2 * _UNIT)


def _view(buf: dict[str, Any], name: str, cur: int, width: int) -> tuple[Tensor, np.ndarray]:
    """Buffer ``cur`` of ``buf[name]`` as rows ``width`` wide, a tensor and an array of the same memory (made once
    per buffer and width: a call walks a few hundred paths, layer after layer)."""
    key = (name, cur, width)
    got = buf["views"].get(key)
    if got is None:
        t = buf[name][cur][: buf["cap"] * width].view(-1, width)
        got = buf["views"][key] = (t, t.numpy())
    return got


_UNIT = float(torch.finfo(torch.float64).eps) / 2
# the smallest positive float64 (a subnormal): what one product or sum that underflows can lose
_TINY = float(torch.finfo(torch.float64).smallest_normal) * float(torch.finfo(torch.float64).eps)


def _norm(x: Tensor, narrow: bool = False) -> Tensor:
    """The Euclidean norms of the rows of ``x`` (float64), widened by the round-off. With ``narrow`` (every value
    of ``x`` is a float32) the squares are taken as they are: a float32's square neither underflows nor overflows
    in float64. Otherwise the rows are scaled by their largest magnitude first, so that the squares neither
    underflow (a norm of 0 at inputs of about 1e-160) nor overflow."""
    if x.shape[1] == 0:
        return x.new_zeros(x.shape[0])
    if narrow:
        return torch.linalg.vector_norm(x, dim=1).mul_(1 + (x.shape[1] + 4) * 2 * _UNIT)
    m = x.abs().amax(1)
    m = torch.where(m > 0, m, torch.ones_like(m))
    return torch.linalg.vector_norm(x / m[:, None], dim=1).mul_(m).mul_(1 + (x.shape[1] + 4) * 2 * _UNIT)


def mlp_summarizer(prog: ExactProgram, tie_tol: float, tol: float) -> MLPSummarizer | None:
    """The :class:`MLPSummarizer` of the model of ``prog`` when it is such a chain and the kernels run here, else
    None (the layer walk then measures every path)."""
    model = prog.model
    if model is None or tie_tol != 0.0 or not prog.kernel_friendly:
        return None
    # a forward hook or pre-hook can change what a module computes; the kernels read the weights alone
    if not all(_no_hooks(m) for m in model.modules()):
        return None
    params = list(model.parameters())
    if not params or any(p.device.type != "cpu" or p.dtype not in (torch.float32, torch.float64) for p in params):
        return None
    dtype = params[0].dtype
    if any(p.dtype != dtype for p in params):
        return None
    if not _kernels.available(np.float32 if dtype == torch.float32 else np.float64):
        return None
    pre = [s for s in prog.steps[: prog.prefix_end] if s.kind not in ("input", "const", "output")]
    post = [s for s in prog.steps[prog.prefix_end :] if s.node in prog.live]
    # the prefix: reshapes, then one Linear
    if not pre or not isinstance(pre[-1].module, nn.Linear) or pre[-1].node.op != "call_module":
        return None
    for s in pre[:-1]:
        node = s.node
        if not (
            (node.op == "call_method" and node.target in _RESHAPES + ("size",))
            or (node.op == "call_function" and node.target is torch.flatten)
            or (node.op == "call_module" and isinstance(s.module, (nn.Flatten, nn.Identity, nn.Dropout)))
        ):
            return None
    if prog._live_at_prefix() != [pre[-1].node]:
        return None
    # then act, Linear, act, Linear, ..., act: each act fused with the Linear after it
    linears: list[nn.Linear] = [pre[-1].module]
    slopes: list[np.ndarray] = []
    prev = pre[-1].node
    for k, s in enumerate(post):
        want_act = k % 2 == 0
        if want_act:
            if s.kind != "act" or not s.bit_layer or s.module is None or list(s.node.all_input_nodes) != [prev]:
                return None
            width = linears[-1].out_features
            if not 0 < width <= MAX_WIDTH:  # (a layer of no units: the layer walk)
                return None
            form = _compiled_act(s, torch.empty(1, width, dtype=dtype), None, 0.0)
            if (
                form is None
                or form.levels.tolist() != [0.0]
                or form.thr != 0
                or np.any(form.seg_off != 0.0)
                or np.any(form.seg_slope[:, 1] != 1.0)
                or np.any(np.abs(form.seg_slope[:, 0]) > 1.0)
            ):
                return None
            slopes.append(form.seg_slope[:, 0].copy())
            if k + 1 < len(post):
                if s.node not in prog.fusable:
                    return None
                node, lin = prog.fusable[s.node]
                if post[k + 1].node is not node:
                    return None
        else:
            if s.kind != "affine" or not isinstance(s.module, nn.Linear) or list(s.node.all_input_nodes) != [prev]:
                return None
            linears.append(s.module)
        prev = s.node
    if len(post) % 2 != 1:
        return None
    ws = [lin.weight.detach().to(torch.float64).contiguous() for lin in linears]
    bs = [
        torch.zeros(lin.out_features, dtype=torch.float64) if lin.bias is None else lin.bias.detach().to(torch.float64)
        for lin in linears
    ]
    first = linears[0]
    widths = [lin.out_features for lin in linears]
    unit = float(torch.finfo(torch.float64).eps) / 2
    c = (first.in_features + 4) * unit
    w0 = first.weight.detach().to(torch.float64)
    b0 = torch.zeros(first.out_features, dtype=torch.float64) if first.bias is None else first.bias.detach().double()
    return MLPSummarizer(
        first=first,
        weights=ws[1:],
        biases=bs[1:],
        w1=[w.abs().sum(1).numpy() for w in ws[1:]],
        ub=[  # (u: a product's round-off relative to its terms, as in MLPSummarizer.__call__)
            b.abs().numpy() * ((max(widths) + 4) * unit) + (w + 4) * _TINY for b, w in zip(bs[1:], widths)
        ],
        slopes=[np.ascontiguousarray(x) for x in slopes],
        widths=widths,
        gap=max(_GAP, 4 * float(tol)),
        first_err=(
            (_norm(w0) * c).numpy(),
            (b0.abs() * c + (first.in_features + 4) * _TINY).numpy(),  # (+ what underflow can add)
        ),
        unit=unit,
    )
