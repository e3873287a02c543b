"""Adversarial examples and the interaction coefficient on adversarial paths.

The attacks come from torchattacks (the optional extra ``attacks``:
``pip install spacefold[attacks]``); this module only adapts them to any model, input
shape, data range and device:

- ``"fgsm"``: one signed-gradient step of size ε under L∞ (Goodfellow et al., arXiv 1412.6572);
- ``"pgd"``: projected gradient descent under L∞, ``steps`` steps of size ``step_size``
  from a random start in the ε-ball (Madry et al., arXiv 1706.06083);
- ``"pgd-l2"``: the same under L2.

Every adversarial point is clipped to the data range ``[lo, hi]`` (for MNIST pixels
[0, 1]); the attacks run on ``(x − lo) / (hi − lo)`` with the budget and step scaled
by the same factor, which is exact for both norms.

The interaction coefficient of a walk Γ = (π_1, ..., π_n) split at k (arXiv 2503.08502;
docs/method.md, 'The folding measure')::

    I(k) = | χ(Γ_1 ⊕ Γ_2) − χ(Γ_1) − χ(Γ_2) |,   Γ_1 = (π_1..π_k), Γ_2 = (π_k..π_n)

and the per-path statistic of the algorithm "I and adversarial attacks" of the AAAI 2026
paper (Lewandowski et al., "Exploiting Space Folding by Neural Networks"): with
k_0 = min{k : I(k) ≠ 0} (1-based),

    Ī_nz = 1/(n − k_0) · Σ_{k=k_0+1}^{n} I(k)

A path with no non-zero I(k) has no Ī_nz and is left out; a data set reports the mean of
Ī_nz over the paths that have one. Endpoints whose prediction the attack does not change
are discarded (the algorithm's step 2).

Sampling (a choice of this library). The set of values I(k) depends only on the regions a
path crosses, but how often each value enters the mean depends on how the path is sampled:
on a uniform grid of n points a region is counted once per grid point that falls in it,
so wide regions weigh more and regions narrower than the grid step are missed. The default
here is the exact walk (``method="exact"``), where every region the segment crosses counts
exactly once and n is the number of regions; the papers' uniform grid of ``n_points``
points (``method="uniform"``) is available for comparison. n is reported either way.
The magnitudes plotted in the paper do not fit a per-path mean of values I ∈ [0, 2] under
either sampling; only the ranking of the four endpoint combinations is a reproduction target.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from .._util import check_distinct, check_size
from ..errors import InputError, InputTypeError

__all__ = [
    "ATTACKS",
    "COMBINATIONS",
    "attack",
    "attack_success",
    "mean_nonzero_interaction",
    "adversarial_interaction",
    "AdversarialInteraction",
]

ATTACKS = ("fgsm", "pgd", "pgd-l2")
COMBINATIONS = ("a-b", "a-b*", "a*-b", "a*-b*")
DEFAULT_STEPS = 40
# I(k) is a sum of three χ = 1 − r1/r2 computed in float64; a difference that is zero in exact
# arithmetic can come out as ~1e-16. Non-zero values are at least ~1/r2² (>> 1e-12).
ZERO_TOL = 1e-12


def _torchattacks():
    try:
        import torchattacks
    except ImportError as err:
        raise ImportError(
            "the attacks need torchattacks, an optional dependency: pip install 'spacefold[attacks]' "
            f"(or pip install torchattacks) ({err})"
        ) from None
    return torchattacks


def _check_number(value, name: str, *, minimum: float = 0.0, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputTypeError(f"{name} must be a number, got {type(value).__name__}")
    v = float(value)
    ok = math.isfinite(v) and (v > minimum if strict else v >= minimum)
    if not ok:
        raise InputError(f"{name} must be a finite number {'>' if strict else '>='} {minimum:g}, got {value!r}")
    return v


def _check_model(model) -> tuple[torch.device, torch.dtype]:
    if not isinstance(model, nn.Module):
        raise InputTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    p = next(iter(model.parameters()), None)
    if p is None:
        raise InputTypeError("model must have parameters (the attack library finds the device from them), got none")
    if not p.is_floating_point():
        raise InputTypeError(f"model must have floating-point parameters, got dtype {p.dtype}")
    return p.device, p.dtype


def _check_data(x, y) -> tuple[Tensor, Tensor]:
    if not isinstance(x, Tensor):
        raise InputTypeError(f"x must be a torch.Tensor (n_samples, *input_shape), got {type(x).__name__}")
    if x.dim() < 2 or x.shape[0] == 0:
        raise InputError(f"x must have shape (n_samples, *input_shape) with n_samples >= 1, got {tuple(x.shape)}")
    if not x.is_floating_point() or not bool(torch.isfinite(x).all()):
        raise InputError(
            "x must hold finite floating-point inputs, got "
            + (f"dtype {x.dtype}" if not x.is_floating_point() else "NaN or inf")
        )
    if not isinstance(y, Tensor):
        try:
            y = torch.as_tensor(y)
        except (TypeError, ValueError, RuntimeError):
            raise InputTypeError(f"y must be a tensor of integer labels, got {type(y).__name__}") from None
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise InputTypeError(f"y must hold integer class labels, got dtype {y.dtype}")
    if y.shape != (x.shape[0],):
        raise InputError(f"y must have shape ({x.shape[0]},) to match x, got {tuple(y.shape)}")
    return x, y.to(torch.int64)


def _check_range(data_range, x: Tensor) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in data_range)
    except (TypeError, ValueError):
        raise InputTypeError(f"data_range must be two numbers (lo, hi), got {data_range!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise InputError(f"data_range must be two finite numbers lo < hi, got ({lo:g}, {hi:g})")
    xmin, xmax = float(x.min()), float(x.max())
    tol = 1e-6 * (hi - lo)
    if xmin < lo - tol or xmax > hi + tol:
        raise InputError(
            f"x must lie in data_range [{lo:g}, {hi:g}], got values in [{xmin:g}, {xmax:g}]; "
            "pass the range the inputs live in"
        )
    return lo, hi


def _logits(model: nn.Module, x: Tensor) -> Tensor:
    try:
        out = model(x)
    except (RuntimeError, ValueError, IndexError, TypeError) as err:
        raise InputError(
            f"x holds inputs of shape {tuple(x.shape[1:])}, which do not fit the model "
            f"{type(model).__name__}: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
        ) from err
    if not isinstance(out, Tensor) or out.dim() != 2 or not out.is_floating_point():
        got = f"shape {tuple(out.shape)}, dtype {out.dtype}" if isinstance(out, Tensor) else type(out).__name__
        raise InputTypeError(f"model must return float logits of shape (batch, n_classes), got {got}")
    return out


def _check_differentiable(model: nn.Module, x: Tensor) -> int:
    """One forward and backward pass on one input; returns the number of classes."""
    probe = x[:1].detach().clone().requires_grad_(True)
    with torch.enable_grad():
        out = _logits(model, probe)
        grad = None
        if out.requires_grad:
            grad = torch.autograd.grad(out.sum(), probe, allow_unused=True)[0]
    if grad is None:
        raise InputTypeError(
            f"model must be differentiable with respect to its input (gradient attacks need it), but the output "
            f"of {type(model).__name__} carries no gradient to x; remove torch.no_grad, .detach() or "
            "non-differentiable steps (argmax, rounding) from its forward"
        )
    return int(out.shape[1])


class _Unit(nn.Module):
    """The model on the unit box: input u (batch, 1, 1, n_features) in [0, 1] is mapped to
    lo + (hi − lo) u in the input shape of ``model``. torchattacks wants images in [0, 1]
    with four dimensions."""

    def __init__(self, model: nn.Module, shape: tuple[int, ...], lo: float, hi: float):
        super().__init__()
        self.model = model
        self.shape = shape
        self.lo = lo
        self.scale = hi - lo

    def forward(self, u: Tensor) -> Tensor:
        return self.model((self.lo + self.scale * u).reshape((u.shape[0], *self.shape)))


def attack(
    model: nn.Module,
    x: Tensor,
    y,
    method: str = "pgd",
    eps: float = 0.1,
    *,
    steps: int = DEFAULT_STEPS,
    step_size: float | None = None,
    data_range: Sequence[float] = (0.0, 1.0),
    random_start: bool = True,
    seed: int = 0,
    batch_size: int = 1024,
) -> Tensor:
    """Adversarial versions of ``x`` (labels ``y``) under ``method`` with budget ``eps``.

    method : ``"fgsm"`` (L∞, one step of size ``eps``), ``"pgd"`` (L∞) or ``"pgd-l2"`` (L2).
    eps : the budget in units of the input (L∞: per feature; L2: of the whole input);
        ``eps = 0`` returns ``x`` unchanged.
    steps, step_size : PGD's iterations and step (default ``eps / 10``); FGSM ignores them.
    data_range : ``(lo, hi)``; every adversarial input is clipped to it (MNIST: (0, 1)).
    random_start, seed : PGD starts from a random point of the ε-ball drawn with ``seed``
        (the global random state is left as it was).

    The model is attacked in eval mode on its own device and dtype; the result has the
    shape, device and dtype of ``x``. Untargeted: the loss is cross-entropy at ``y``.
    """
    device, dtype = _check_model(model)
    x, y = _check_data(x, y)
    if method not in ATTACKS:
        raise InputError(f"method must be one of {', '.join(ATTACKS)}, got {method!r}")
    eps = _check_number(eps, "eps")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError(f"steps must be an int >= 1 (PGD iterations), got {steps!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"seed must be an int >= 0, got {seed!r}")
    step = eps / 10 if step_size is None else _check_number(step_size, "step_size", strict=True)
    lo, hi = _check_range(data_range, x)
    xd = x.to(device=device, dtype=dtype)
    n_classes = _check_differentiable(model, xd)
    if int(y.min()) < 0 or int(y.max()) >= n_classes:
        raise InputError(
            f"y must hold labels in [0, {n_classes - 1}] (the model has {n_classes} outputs), "
            f"got labels in [{int(y.min())}, {int(y.max())}]"
        )
    if eps == 0:
        return x.clone()
    ta = _torchattacks()
    shape = tuple(x.shape[1:])
    scale = hi - lo
    out = []
    devices = [device] if device.type == "cuda" else []
    was_training = model.training
    try:
        unit = _Unit(model, shape, lo, hi).eval()  # torchattacks restores this mode after every call
        if method == "fgsm":
            atk = ta.FGSM(unit, eps=eps / scale)
        elif method == "pgd":
            atk = ta.PGD(unit, eps=eps / scale, alpha=step / scale, steps=steps, random_start=random_start)
        else:
            atk = ta.PGDL2(unit, eps=eps / scale, alpha=step / scale, steps=steps, random_start=random_start)
        with torch.random.fork_rng(devices=devices), torch.enable_grad():
            torch.manual_seed(seed)
            for k in range(0, x.shape[0], batch_size):
                u = ((xd[k : k + batch_size] - lo) / scale).clamp(0, 1).reshape(-1, 1, 1, math.prod(shape))
                adv = atk(u, y[k : k + batch_size].to(device))
                out.append((lo + scale * adv.detach()).reshape((-1, *shape)))
    finally:
        model.train(was_training)
    return torch.cat(out).clamp(lo, hi).to(device=x.device, dtype=x.dtype)


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, batch_size: int = 4096) -> Tensor:
    """Predicted classes (argmax of the logits) of ``x``, on the CPU."""
    device, dtype = _check_model(model)
    was_training = model.training
    model.eval()
    try:
        out = [
            _logits(model, x[k : k + batch_size].to(device=device, dtype=dtype)).argmax(1).cpu()
            for k in range(0, x.shape[0], batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(out)


def attack_success(model: nn.Module, x: Tensor, x_adv: Tensor) -> float:
    """Share of inputs whose predicted class the attack changed (argmax of x vs x_adv)."""
    if not isinstance(x_adv, Tensor) or x_adv.shape != getattr(x, "shape", None):
        raise InputError(f"x_adv must be a tensor of the shape of x, got {getattr(x_adv, 'shape', x_adv)!r}")
    return float((predict(model, x) != predict(model, x_adv)).double().mean())


# --------------------------------------------------------------------------- interaction on paths


def mean_nonzero_interaction(walk: Tensor) -> float | None:
    """Ī_nz of one walk ``(n_points, n_neurons)``: with k_0 the first split (1-based) whose
    I(k) ≠ 0, the mean of I(k) over k = k_0+1 .. n; ``None`` when every I(k) is 0.

    I(k) comes from :func:`spacefold._core.measure.interactions` (all splits). I(n) = 0 always,
    so the mean includes at least one zero.
    """
    from .._core.measure import interactions

    i = interactions(walk)
    nz = torch.nonzero(i > ZERO_TOL).flatten()
    if nz.numel() == 0:
        return None
    k0 = int(nz[0])  # 0-based
    return float(i[k0 + 1 :].mean())


def _nonzero_mean(i: np.ndarray) -> float:
    """Ī_nz from the values I(k) of one walk (NaN when every I(k) is 0)."""
    nz = np.flatnonzero(i > ZERO_TOL)
    return float(i[nz[0] + 1 :].mean()) if nz.size else float("nan")


def _interaction_rows(walks: list[Tensor], chunk: int = 64) -> list[np.ndarray]:
    """I(k) of every split of many walks, batched by padding with the last pattern.

    Splits inside the padding are dropped (there Γ_2 is one repeated pattern and I = 0).
    """
    from .._core.measure import interactions, pad_walks

    rows: list[np.ndarray] = [np.zeros(0)] * len(walks)
    order = np.argsort([w.shape[0] for w in walks], kind="stable")  # similar lengths pad little
    for s in range(0, len(walks), chunk):
        idx = order[s : s + chunk]
        vals = interactions(pad_walks([walks[k] for k in idx])).numpy()
        for r, k in enumerate(idx):
            rows[k] = vals[r, : walks[k].shape[0]]
    return rows


def _batch_nonzero_interaction(
    walks: list[Tensor], grid_index: list[Tensor] | None = None, chunk: int = 64
) -> np.ndarray:
    """Ī_nz of many walks (NaN where undefined).

    With ``grid_index`` (uniform grids), walk ``k`` holds the distinct consecutive patterns
    and grid point ``g`` lies in region ``grid_index[k][g]``. A split at a grid point inside
    a run of equal patterns cuts the walk at that region, so I(g) = I(region of g)
    (Stability): the values are computed once per region and repeated per grid point.
    """
    rows = _interaction_rows(walks, chunk)
    if grid_index is not None:
        rows = [r[np.asarray(g)] for r, g in zip(rows, grid_index)]
    return np.array([_nonzero_mean(r) for r in rows])


def _walk_list(
    model, x1: Tensor, x2: Tensor, method: str, n_points: int, batch_size: int
) -> tuple[list[Tensor], list[Tensor] | None]:
    """Region walks (consecutive patterns distinct) and, for ``"uniform"``, each grid point's region."""
    from .._core.folding import walk_batch

    if x1.shape[0] == 0:
        return [], None
    wb = walk_batch(model, x1, x2, method=method, steps=max(n_points - 1, 1), batch_size=batch_size)
    walks = [wb[k] for k in range(len(wb))]
    # every walk of a uniform grid has its grid index
    grid = [w.grid_index for w in walks if w.grid_index is not None] if method == "uniform" else None
    return [w.patterns for w in walks], grid


def _bootstrap_mean(v: np.ndarray, n_boot: int, seed: int, level: float = 0.95) -> list[float] | None:
    if v.size == 0:
        return None
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, (n_boot, v.size))].mean(1)
    return [float(np.quantile(means, (1 - level) / 2)), float(np.quantile(means, 1 - (1 - level) / 2))]


@dataclass(frozen=True)
class AdversarialInteraction:
    """Interaction on the paths between two classes with adversarial endpoints.

    ``results[attack][combination]`` holds ``mean_nonzero_interaction`` (``None`` when no
    path is left), ``ci`` (95% percentile bootstrap over paths, ``None`` likewise),
    ``n_paths`` (paths with a non-zero I), ``n_pairs`` (pairs walked after discarding
    endpoints the attack did not flip) and ``mean_points`` (mean n per walk).
    ``attack_success[attack]``: share of the class samples whose prediction changed.
    """

    classes: tuple[int, int]
    eps: float
    method: str
    n_points: int | None
    n_pairs: int
    attacks: tuple[str, ...]
    results: dict
    attack_success: dict
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Strict-JSON-ready dict (no NaN: missing values are ``None``)."""
        return {
            "classes": list(self.classes),
            "eps": self.eps,
            "method": self.method,
            "n_points": self.n_points,
            "n_pairs": self.n_pairs,
            **self.settings,
            "attacks": {
                a: {"attack_success": self.attack_success[a], "combinations": self.results[a]} for a in self.attacks
            },
        }

    def table(self) -> str:
        a, b = self.classes
        lines = [
            f"classes {a} -> {b}, eps {self.eps:g}, walks {self.method}"
            + (f" ({self.n_points} points)" if self.method == "uniform" else "")
            + f", {self.n_pairs} pairs; a = class {a}, b = class {b}, * = adversarial endpoint",
            f"{'attack':<8} {'success':>8} {'pair':<6} {'mean Ī_nz':>10} {'95% CI':>18} {'paths':>6}",
        ]
        for atk in self.attacks:
            for c in COMBINATIONS:
                r = self.results[atk][c]
                m = "-" if r["mean_nonzero_interaction"] is None else f"{r['mean_nonzero_interaction']:.4f}"
                ci = "-" if r["ci"] is None else f"[{r['ci'][0]:.4f}, {r['ci'][1]:.4f}]"
                lines.append(f"{atk:<8} {self.attack_success[atk]:>8.3f} {c:<6} {m:>10} {ci:>18} {r['n_paths']:>6}")
        return "\n".join(lines)


def adversarial_interaction(
    model: nn.Module,
    x: Tensor,
    y,
    classes: Sequence[int] = (5, 7),
    attacks: Sequence[str] = ("fgsm", "pgd"),
    eps: float = 0.1,
    *,
    max_pairs: int = 500,
    method: str = "exact",
    n_points: int = 100,
    steps: int = DEFAULT_STEPS,
    step_size: float | None = None,
    data_range: Sequence[float] = (0.0, 1.0),
    seed: int = 0,
    n_boot: int = 1000,
    batch_size: int = 256,
) -> AdversarialInteraction:
    """The interaction coefficient on paths from class ``a`` to class ``b`` with none, one
    or both endpoints replaced by adversarial versions (combinations ``"a-b"``,
    ``"a-b*"``, ``"a*-b"``, ``"a*-b*"``), for every attack in ``attacks``.

    Pairs: ``max_pairs`` random (seeded) pairs of a sample of class ``a`` and one of
    class ``b`` from ``(x, y)`` (all of them when there are fewer). Each sample of the two
    classes is attacked once at its label; an endpoint whose predicted class the attack
    does not change is discarded with its pair, so each combination has its own number
    of pairs. Per path Ī_nz (:func:`mean_nonzero_interaction`); per combination its mean,
    a bootstrap interval and the number of paths.

    method : ``"exact"`` (default; every region once, see the module docstring) or
        ``"uniform"`` (the papers' grid of ``n_points`` points, counted with multiplicity).
    An attack that changes no prediction leaves its perturbed combinations with zero
    paths (``mean_nonzero_interaction`` and ``ci`` are ``None``), not NaN.
    """
    _check_model(model)
    x, y = _check_data(x, y)
    try:
        a, b = (int(c) for c in classes)
    except (TypeError, ValueError):
        raise InputTypeError(f"classes must be two class labels (a, b), got {classes!r}") from None
    present = sorted(int(c) for c in y.unique())
    for c in (a, b):
        if c not in present:
            raise InputError(
                f"classes must name classes present in y, got {c}, which has no sample (classes present: {present})"
            )
    if a == b:
        raise InputError(f"classes must be two different classes, got {a} twice")
    if isinstance(attacks, str):
        attacks = [attacks]
    attacks = tuple(attacks)
    if not attacks:
        raise InputError("attacks must name at least one attack, got none")
    check_distinct(attacks, "attacks")
    for atk in attacks:
        if atk not in ATTACKS:
            raise InputError(f"attacks must be among {', '.join(ATTACKS)}, got {atk!r}")
    if method not in ("exact", "uniform"):
        raise InputError(f"method must be 'exact' or 'uniform', got {method!r}")
    for name, v, lo in (
        ("max_pairs", max_pairs, 1),
        ("n_points", n_points, 2),
        ("n_boot", n_boot, 1),
        ("seed", seed, 0),
        ("batch_size", batch_size, 1),
    ):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise InputError(f"{name} must be an int >= {lo}, got {v!r}")
    eps = _check_number(eps, "eps")

    ia = torch.nonzero(y == a).flatten()
    ib = torch.nonzero(y == b).flatten()
    g = torch.Generator().manual_seed(seed)
    total = ia.numel() * ib.numel()
    n_paths = min(total, max_pairs)
    if method == "uniform":  # each point an input, its activations and its pattern: three inputs' worth at least
        check_size(
            "n_points", n_points, 3 * n_points * x[0].numel() * x.element_size(), f"{n_points} points of one path"
        )
    check_size("n_boot", n_boot, 16 * n_boot * n_paths, f"{n_boot} bootstrap resamples of {n_paths} paths")
    flat = torch.randperm(total, generator=g)[:max_pairs] if total > max_pairs else torch.arange(total)
    pa, pb = flat // ib.numel(), flat % ib.numel()  # positions in ia, ib
    sub = torch.cat([ia, ib])
    xs, ys = x[sub], y[sub]
    pred = predict(model, xs)
    pa_s, pb_s = pa, ia.numel() + pb  # positions in xs

    results, success = {}, {}
    clean: tuple[np.ndarray, float | None] | None = None
    for atk in attacks:
        xadv = attack(model, xs, ys, atk, eps, steps=steps, step_size=step_size, data_range=data_range, seed=seed)
        flipped = predict(model, xadv) != pred
        success[atk] = float(flipped.double().mean())
        res = {}
        for comb in COMBINATIONS:
            start_adv, end_adv = comb.startswith("a*"), comb.endswith("b*")
            keep = torch.ones(pa_s.numel(), dtype=torch.bool)
            if start_adv:
                keep &= flipped[pa_s]
            if end_adv:
                keep &= flipped[pb_s]
            i, j = pa_s[keep], pb_s[keep]
            if comb == "a-b" and clean is not None:
                values, n_pts = clean
            else:
                x1 = (xadv if start_adv else xs)[i]
                x2 = (xadv if end_adv else xs)[j]
                walks, grid = _walk_list(model, x1, x2, method, n_points, batch_size)
                values = _batch_nonzero_interaction(walks, grid) if walks else np.zeros(0)
                n_pts = None
                if walks:
                    n_pts = float(n_points) if grid is not None else float(np.mean([w.shape[0] for w in walks]))
                if comb == "a-b":
                    clean = (values, n_pts)
            v = values[~np.isnan(values)]
            res[comb] = {
                "mean_nonzero_interaction": float(v.mean()) if v.size else None,
                "ci": _bootstrap_mean(v, n_boot, seed),
                "n_paths": int(v.size),
                "n_pairs": int(keep.sum()),
                "mean_points": n_pts,
            }
        results[atk] = res
    settings = {
        "steps": steps,
        "step_size": eps / 10 if step_size is None else float(step_size),
        "data_range": [float(v) for v in data_range],
        "seed": seed,
        "n_boot": n_boot,
        "norms": {atk: ("l2" if atk == "pgd-l2" else "linf") for atk in attacks},
    }
    return AdversarialInteraction(
        classes=(a, b),
        eps=eps,
        method=method,
        n_points=n_points if method == "uniform" else None,
        n_pairs=int(pa.numel()),
        attacks=attacks,
        results=results,
        attack_success=success,
        settings=settings,
    )


def bubble_chart(result: AdversarialInteraction, path) -> object:
    """The four endpoint combinations x the attacks: bubble area ∝ mean Ī_nz, with the value
    and the number of paths written beside each bubble. Needs matplotlib."""
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .._util import atomic_path

    a, b = result.classes
    labels = [c.replace("a", str(a)).replace("b", str(b)) for c in COMBINATIONS]
    vals = [[result.results[atk][c]["mean_nonzero_interaction"] for c in COMBINATIONS] for atk in result.attacks]
    top = max([v for row in vals for v in row if v is not None] or [1.0]) or 1.0
    fig, ax = plt.subplots(figsize=(7, 1.6 + 1.1 * len(result.attacks)))
    for r, atk in enumerate(result.attacks):
        for c, comb in enumerate(COMBINATIONS):
            v = vals[r][c]
            n = result.results[atk][comb]["n_paths"]
            if v is not None:
                ax.scatter([c], [r], s=2000 * v / top, alpha=0.6, color=f"C{r}")
            ax.annotate(
                f"{v:.3f}\n(n={n})" if v is not None else f"none\n(n={n})",
                (c, r),
                xytext=(0, -30),
                textcoords="offset points",
                ha="center",
                va="top",
                fontsize=8,
            )
    ax.set_xticks(range(len(COMBINATIONS)), labels)
    ax.set_yticks(
        range(len(result.attacks)), [f"{atk}\n(success {result.attack_success[atk]:.2f})" for atk in result.attacks]
    )
    ax.set_xlim(-0.6, len(COMBINATIONS) - 0.4)
    ax.set_ylim(-0.8, len(result.attacks) - 0.4)
    ax.set_title(f"mean non-zero interaction, {a} -> {b}, eps {result.eps:g} (* = adversarial endpoint)", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path
