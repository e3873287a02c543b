"""The certified walk: sound enclosures, agreement with the exact walk and with dense grids,
a fold between bisection's samples, budgets and refusals."""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import spacefold as sf
from spacefold._core.folding import walk_batch
from spacefold._core.patterns import PatternRecorder
from spacefold._core.walk.certified import CertifiedBudgetWarning, CertifiedUnsupportedError, CertifiedWalker
from spacefold._core.walk.certified.functions import module_function
from spacefold.errors import InputError

ACTS = [
    nn.ReLU,
    lambda: nn.LeakyReLU(0.1),
    nn.Hardtanh,
    nn.ReLU6,
    nn.ELU,
    nn.SELU,
    nn.GELU,
    lambda: nn.GELU(approximate="tanh"),
    nn.SiLU,
    nn.Mish,
    nn.Tanh,
    nn.Sigmoid,
    nn.Softplus,
    nn.Hardswish,
    nn.Softsign,
    nn.CELU,
]


class Gated(nn.Module):
    """A SwiGLU-style unit followed by Tanh, whose bit is [silu(a) * b > 0], the gate's bit."""

    def __init__(self, d_in: int, d_h: int):
        super().__init__()
        self.g, self.u, self.act, self.out = nn.Linear(d_in, d_h), nn.Linear(d_in, d_h), nn.SiLU(), nn.Tanh()
        self.down = nn.Linear(d_h, 3)

    def forward(self, x):
        return self.down(self.out(self.act(self.g(x)) * self.u(x)))


class Norm(nn.Module):
    def __init__(self, d: int, act):
        super().__init__()
        self.l1, self.n, self.a1 = nn.Linear(d, 12), nn.LayerNorm(12), act()
        self.l2, self.a2 = nn.Linear(12, 8), act()

    def forward(self, x):
        return self.a2(self.l2(self.a1(self.n(self.l1(x)))))


class Attn(nn.Module):
    """Tokens from a linear embedding, one attention block with a GELU MLP, mean pooling."""

    def __init__(self, d_in: int = 12, tokens: int = 3, d: int = 8, encoder: bool = False):
        super().__init__()
        self.tokens, self.d = tokens, d
        self.embed = nn.Linear(d_in // tokens, d)
        self.pos = nn.Parameter(torch.randn(1, tokens, d) * 0.5)
        if encoder:
            self.block = nn.TransformerEncoderLayer(d, 2, 16, dropout=0.0, activation=nn.GELU(), batch_first=True)
        else:
            self.block = None
            self.attn = nn.MultiheadAttention(d, 2, batch_first=True)
            self.ln = nn.LayerNorm(d)
            self.act = nn.GELU()
            self.ff = nn.Linear(d, d)
        self.head = nn.Linear(d, 3)

    def forward(self, x):
        h = self.embed(x.reshape(x.shape[0], self.tokens, -1)) + self.pos
        if self.block is not None:
            h = self.block(h)
        else:
            h = h + self.attn(h, h, h, need_weights=False)[0]
            h = h + self.ff(self.act(self.ln(h)))
        return self.head(h.mean(1))


class HandNorm(nn.Module):
    """A LayerNorm written out: mean, var, a division by sqrt(var + eps)."""

    def __init__(self, d: int = 4):
        super().__init__()
        self.l1, self.a1, self.l2, self.a2 = nn.Linear(d, 10), nn.SiLU(), nn.Linear(10, 6), nn.Tanh()

    def forward(self, x):
        h = self.l1(x)
        mu = h.mean(-1, keepdim=True)
        var = h.var(-1, keepdim=True, unbiased=False)
        h = (h - mu) / torch.sqrt(var + 1e-5)
        return self.a2(self.l2(self.a1(h)) / (1.0 + torch.var(h, 1)).unsqueeze(1))


def _mlp(act, d_in=4, width=10, depth=2, seed=0):
    torch.manual_seed(seed)
    layers, d = [], d_in
    for _ in range(depth):
        layers += [nn.Linear(d, width), act()]
        d = width
    return nn.Sequential(*layers, nn.Linear(d, 3)).eval()


def _models():
    torch.manual_seed(1)
    out = [(f"mlp{i}", _mlp(a, seed=i), 4) for i, a in enumerate(ACTS)]
    out.append(("gated", Gated(4, 6).eval(), 4))
    out.append(("layernorm-gelu", Norm(4, nn.GELU).eval(), 4))
    out.append(("layernorm-tanh", Norm(4, nn.Tanh).eval(), 4))
    out.append(("hand-norm", HandNorm().eval(), 4))
    out.append(("attention", Attn().eval(), 12))
    out.append(("encoder-layer", Attn(encoder=True).eval(), 12))
    conv = nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.SiLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(12, 5), nn.Tanh()
    )
    conv[1].running_mean.uniform_(-0.5, 0.5)
    conv[1].running_var.uniform_(0.5, 2.0)
    out.append(("conv-bn", conv.eval(), (1, 6, 6)))
    return out


MODELS = _models()


def _shape(d):
    return (d,) if isinstance(d, int) else d


def _quantities(model64, x):
    rec = PatternRecorder(model64)
    with rec, torch.no_grad():
        model64(x)
    return rec.scores()


@pytest.fixture(autouse=True)
def _no_fastpath():
    old = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    yield
    torch.backends.mha.set_fastpath_enabled(old)


# ------------------------------------------------------------------ enclosures


def _check_enclosures(name, model, d, seed, width_exp, near_zero):
    g = torch.Generator().manual_seed(seed)
    shape = _shape(d)
    x1 = torch.randn((1,) + shape, generator=g, dtype=torch.float64)
    x2 = torch.randn((1,) + shape, generator=g, dtype=torch.float64)
    w = CertifiedWalker(model)
    m64 = w.model64
    if near_zero:  # an interval around a point where some activation input is nearly 0
        ts = torch.linspace(0, 1, 201, dtype=torch.float64)
        q = _quantities(m64, x1 + ts.view(-1, *([1] * len(shape))) * (x2 - x1))
        k = int(torch.argmin(q.abs().min(1).values))
        c = float(ts[k])
    else:
        c = float(torch.rand((), generator=g))
    h = 10.0 ** (-width_exp)
    a, b = max(0.0, c - h), min(1.0, c + h)
    path = torch.zeros(1, dtype=torch.int64)
    lo, hi, dlo, dhi, plo, phi = (
        v[0]
        for v in w.enclosures(
            x1, x2, path, torch.tensor([a], dtype=torch.float64), torch.tensor([b], dtype=torch.float64)
        )
    )
    ts = torch.linspace(a, b, 33, dtype=torch.float64)
    v = x1 + ts.view(-1, *([1] * len(shape))) * (x2 - x1)
    q = _quantities(m64, v)
    assert q.shape[1] == lo.numel(), name
    assert bool(((q >= lo) & (q <= hi)).all()), f"{name}: a sampled value escapes its enclosure"
    qm = _quantities(m64, x1 + 0.5 * (a + b) * (x2 - x1))[0]
    assert bool(((qm >= plo) & (qm <= phi)).all()), f"{name}: the midpoint value escapes its enclosure"
    # central differences, inside the interval, against the derivative enclosure (slack: the
    # difference's truncation and round-off error)
    delta = min(1e-5, (b - a) / 8)
    tc = torch.linspace(a + delta, b - delta, 9, dtype=torch.float64)
    qp = _quantities(m64, x1 + (tc + delta).view(-1, *([1] * len(shape))) * (x2 - x1))
    qn = _quantities(m64, x1 + (tc - delta).view(-1, *([1] * len(shape))) * (x2 - x1))
    fd = (qp - qn) / (2 * delta)
    scale_ = 1 + q.abs().max()
    slack = 1e-4 * (1 + fd.abs()) + 1e-12 * scale_ / delta
    kinked = torch.zeros_like(fd, dtype=torch.bool)
    if not all(
        isinstance(
            mm, (nn.GELU, nn.SiLU, nn.Mish, nn.Tanh, nn.Sigmoid, nn.Softplus, nn.ELU, nn.SELU, nn.CELU, nn.Softsign)
        )
        for mm in m64.modules()
        if module_function(mm) is not None
    ):
        # piecewise-linear units: a difference across a kink is not a derivative; skip those entries
        kinked = torch.sign(qp) != torch.sign(qn)
    ok = (fd >= dlo - slack) & (fd <= dhi + slack) | kinked
    assert bool(ok.all()), f"{name}: a finite difference escapes the derivative enclosure"


@pytest.mark.parametrize("name,model,d", MODELS, ids=[m[0] for m in MODELS])
def test_enclosures_hold_sampled_values_and_differences(name, model, d):
    _check_enclosures(name, model, d, 0, width_exp=1, near_zero=False)
    _check_enclosures(name, model, d, 7, width_exp=4, near_zero=True)


def _reweighted(model, seed):
    """A copy of ``model`` with random weights drawn from ``seed`` (a random net of the same ops)."""
    model = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            fan_in = p[0].numel() if p.dim() > 1 else 1
            p.copy_(torch.randn(p.shape, generator=g) * (1.5 / math.sqrt(fan_in)))
    return model


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(MODELS) - 1), st.integers(0, 10**6), st.integers(0, 6), st.booleans())
def test_enclosures_property(k, seed, width_exp, near_zero):
    name, model, d = MODELS[k]
    _check_enclosures(name, _reweighted(model, seed), d, seed, width_exp, near_zero)


def test_encoder_layouts():
    """Pre-norm blocks, two of them, a final norm and SiLU: enclosures hold and the walk agrees
    with a dense grid."""
    torch.manual_seed(8)

    class PreNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(4, 8)
            layer = nn.TransformerEncoderLayer(
                8, 2, 12, dropout=0.0, activation=nn.SiLU(), norm_first=True, batch_first=True
            )
            self.enc = nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(8), enable_nested_tensor=False)
            self.head = nn.Linear(8, 2)

        def forward(self, x):
            return self.head(self.enc(self.embed(x.reshape(x.shape[0], 3, 4))).mean(1))

    model = PreNorm().eval()
    for seed in range(2):
        _check_enclosures("pre-norm", model, 12, seed, width_exp=2, near_zero=bool(seed))
    x1, x2 = torch.randn(2, 12), torch.randn(2, 12)
    wb = walk_batch(model, x1, x2, method="certified")
    assert bool(wb.completeness().all())
    for i in range(2):
        assert _dense_agrees(wb[i], x1[i], x2[i], model) == 0


def test_critical_points_match_closed_forms():
    gelu = module_function(nn.GELU())
    assert any(abs(c - math.sqrt(2)) < 1e-9 for c in gelu.crit_df)
    assert any(abs(c + math.sqrt(2)) < 1e-9 for c in gelu.crit_df)
    (zmin,) = gelu.crit_f
    assert abs(zmin + 0.7517915) < 1e-6  # GELU's minimum
    (smin,) = module_function(nn.SiLU()).crit_f
    assert abs(smin + 1.2784645) < 1e-6  # 1 + z (1 - sigmoid(z)) = 0
    assert module_function(nn.Tanh()).crit_df == pytest.approx((0.0,), abs=1e-9)


def test_bit_order_equals_activation_patterns():
    """The traced quantities are the hooked bits, in the same order, on every supported model."""
    for name, model, d in MODELS:
        x = torch.randn((5,) + _shape(d), dtype=torch.float64)
        w = CertifiedWalker(model)
        t = torch.zeros(5, dtype=torch.float64)
        _, _, _, _, plo, phi = w.enclosures(x, x, torch.arange(5), t, t)
        ref = sf.activation_patterns(model, x.float())
        assert ref.shape == plo.shape, name
        decided = (plo > 0) | (phi <= 0)
        assert bool(decided.float().mean() > 0.95), name
        assert torch.equal((plo > 0)[decided], ref[decided]), name


# ------------------------------------------------------------------ walks


def _dense_agrees(wc, x1, x2, model, steps=2000, tol=1e-6, layers=None):
    """The certified walk, as a step function of t, equals the grid's pattern at every grid
    point that is not within ``tol`` of one of its breakpoints."""
    t = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
    pts = x1.double() + t.view(-1, *([1] * x1.dim())) * (x2 - x1).double()
    grid = sf.activation_patterns(copy.deepcopy(model).double(), pts, layers)
    idx = torch.searchsorted(wc.t, t, right=True) - 1
    near = ((t.unsqueeze(1) - wc.t.unsqueeze(0)).abs() <= 2 * tol).any(1)
    mism = (wc.patterns[idx] != grid).any(1) & ~near
    return int(mism.sum())


@pytest.mark.parametrize("act", [nn.ReLU, lambda: nn.LeakyReLU(0.2)])
def test_certified_equals_exact_on_piecewise_linear(act):
    for seed in range(3):
        model = _mlp(act, d_in=5, width=12, depth=3, seed=seed)
        x1, x2 = torch.randn(4, 5), torch.randn(4, 5)
        we = walk_batch(model, x1, x2, method="exact")
        wc = walk_batch(model, x1, x2, method="certified")
        assert bool(wc.completeness().all())
        for i in range(4):
            e, c = we[i], wc[i]
            assert torch.equal(e.patterns, c.patterns)
            assert float((e.t - c.t).abs().max()) <= 1e-6 + 1e-9


def test_certified_equals_exact_on_conv_and_hardtanh():
    """Kinks away from 0 (Hardtanh at -1 and 1 bend the map without a bit) and a conv net with
    average pooling: the same walks as the exact walk."""
    torch.manual_seed(5)
    nets = [
        (_mlp(nn.Hardtanh, d_in=5, width=12, depth=3, seed=5), (5,)),
        (
            nn.Sequential(
                nn.Conv2d(1, 3, 3),
                nn.ReLU(),
                nn.AvgPool2d(2),
                nn.Flatten(),
                nn.Linear(12, 6),
                nn.ReLU(),
                nn.Linear(6, 2),
            ).eval(),
            (1, 6, 6),
        ),
    ]
    for model, shape in nets:
        x1, x2 = torch.randn((3,) + shape) * 2, torch.randn((3,) + shape) * 2
        we = walk_batch(model, x1, x2, method="exact")
        wc = walk_batch(model, x1, x2, method="certified")
        assert bool(wc.completeness().all())
        for i in range(3):
            assert torch.equal(we[i].patterns, wc[i].patterns)
            assert float((we[i].t - wc[i].t).abs().max()) <= 1e-6 + 1e-9


@pytest.mark.parametrize("name,model,d", MODELS[6:], ids=[m[0] for m in MODELS[6:]])
def test_certified_finds_every_region_of_a_dense_grid(name, model, d):
    g = torch.Generator().manual_seed(3)
    x1 = torch.randn((2,) + _shape(d), generator=g)
    x2 = torch.randn((2,) + _shape(d), generator=g)
    wb = walk_batch(model, x1, x2, method="certified")
    assert bool(wb.completeness().all())
    for i in range(2):
        assert _dense_agrees(wb[i], x1[i], x2[i], model) == 0, name


def _hidden_fold(eps: float = 2e-6, c: float = 0.5):
    """1-D input t -> SiLU(t - c + z*) -> Tanh(-(h - silu(z*)) + eps): the second bit is 1 only
    where silu is within eps of its minimum, a window around t = c of width about 0.009 for the
    default eps (it shrinks as sqrt(eps))."""
    silu = module_function(nn.SiLU())
    (zstar,) = silu.crit_f
    fmin = float(F.silu(torch.tensor(zstar, dtype=torch.float64)))
    model = nn.Sequential(nn.Linear(1, 1), nn.SiLU(), nn.Linear(1, 1), nn.Tanh()).double()
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[0].bias.fill_(zstar - c)
        model[2].weight.fill_(-1.0)
        model[2].bias.fill_(fmin + eps)

    # the window's ends: silu(z) = fmin + eps near z*, located by bisection on each side
    def root(lo, hi, rising):
        for _ in range(100):
            m = 0.5 * (lo + hi)
            above = float(F.silu(torch.tensor(m, dtype=torch.float64))) > fmin + eps
            if above == rising:
                hi = m
            else:
                lo = m
        return 0.5 * (lo + hi)

    left = root(zstar - 1, zstar, rising=False) - zstar + c
    right = root(zstar, zstar + 1, rising=True) - zstar + c
    return model.eval(), left, right


def test_fold_between_bisection_samples():
    # bisection of a smooth network starts from 1025 samples k / 1024: a window of width about 0.0009
    # centred between two of them
    model, left, right = _hidden_fold(eps=2e-8, c=512.5 / 1024)
    assert 512 / 1024 < left < right < 513 / 1024  # the whole excursion lies between two start samples
    x1, x2 = torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64)
    fb = sf.folding(model, x1, x2, method="bisect")
    fc = sf.folding(model, x1, x2, method="certified")
    assert fb.n_regions == 1  # bisection sees one class: the excursion is missed
    assert fc.complete and not fb.complete
    assert fc.n_regions == 3
    assert fc.patterns.tolist() == [[False, False], [False, True], [False, False]]
    assert abs(float(fc.walk.t[1]) - left) <= 1e-6
    assert abs(float(fc.walk.t[2]) - right) <= 1e-6


def test_ends_follow_exact_conventions():
    """A segment that starts and ends on a boundary (a bias-free ReLU net through 0 and x):
    the same regions as the exact walk, zero-length ones included."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 6, bias=False), nn.ReLU(), nn.Linear(6, 2)).eval()
    x = torch.randn(3)
    for x1, x2 in ((torch.zeros(3), x), (x, torch.zeros(3))):
        we = sf.walk(model, x1, x2, method="exact")
        wc = sf.walk(model, x1, x2, method="certified")
        assert torch.equal(we.patterns, wc.patterns)
        assert float((we.t - wc.t).abs().max()) <= 1e-6 + 1e-9


def test_budget_exhaustion_is_reported(monkeypatch):
    monkeypatch.setenv("SPACEFOLD_CERTIFIED_BUDGET", "3")
    model = _mlp(nn.GELU, d_in=4, width=16, depth=3, seed=0)
    torch.manual_seed(0)
    x1, x2 = torch.randn(3, 4) * 3, torch.randn(3, 4) * 3
    with pytest.warns(CertifiedBudgetWarning, match="SPACEFOLD_CERTIFIED_BUDGET"):
        fb = sf.folding_batch(model, x1, x2, method="certified")
    assert fb.complete is not None and not bool(fb.complete.all())
    monkeypatch.setenv("SPACEFOLD_CERTIFIED_BUDGET", "100000")
    with warnings.catch_warnings():
        warnings.simplefilter("error", CertifiedBudgetWarning)
        fb = sf.folding_batch(model, x1, x2, method="certified")
    assert bool(fb.complete.all())
    monkeypatch.setenv("SPACEFOLD_CERTIFIED_BUDGET", "many")
    with pytest.raises(InputError, match="SPACEFOLD_CERTIFIED_BUDGET"):
        sf.folding_batch(model, x1, x2, method="certified")


def test_completeness_per_method():
    model = _mlp(nn.ReLU, seed=0)
    x1, x2 = torch.randn(3, 4), torch.randn(3, 4)
    expect = {"exact": True, "certified": True, "bisect": False, "uniform": False}
    for method, want in expect.items():
        fb = sf.folding_batch(model, x1, x2, method=method)
        assert fb.complete.tolist() == [want] * 3, method
        assert sf.folding(model, x1[0], x2[0], method=method).complete is want
        g = sf.global_folding(model, torch.cat([x1, x2]), [0, 1, 0, 1, 0, 1], method=method, workers=1)
        assert g.info["n_complete"] == (g.n_paths if want else 0), method
        assert g.to_dict()["n_complete"] == g.info["n_complete"]


class _Pool(nn.Module):
    def __init__(self):
        super().__init__()
        self.c, self.p, self.a = nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.GELU()

    def forward(self, x):
        return self.a(self.p(self.c(x)))


class _Upsample(nn.Module):
    """Nearest-neighbour upsampling: no enclosure."""

    def __init__(self):
        super().__init__()
        self.l, self.a = nn.Linear(4, 4), nn.ReLU()

    def forward(self, x):
        return self.a(F.interpolate(self.l(x).view(-1, 1, 2, 2), scale_factor=2).flatten(1))


class _Abs(nn.Module):
    def __init__(self):
        super().__init__()
        self.l, self.a = nn.Linear(3, 3), nn.Tanh()

    def forward(self, x):
        return self.a(torch.abs(self.l(x)))


@pytest.mark.parametrize(
    "model,x,word",
    [
        (_Pool(), torch.randn(2, 1, 6, 6), "MaxPool2d"),
        (_Upsample(), torch.randn(2, 4), "interpolate"),
        (_Abs(), torch.randn(2, 3), "abs"),
    ],
)
def test_unsupported_operation_refused_by_name(model, x, word):
    with pytest.raises(CertifiedUnsupportedError, match=word):
        sf.folding_batch(model, x, x.flip(0), method="certified")
    assert issubclass(CertifiedUnsupportedError, TypeError)


def test_custom_rule_refused():
    class Odd(nn.Module):
        def forward(self, x):
            return x * 2

    sf.register_activation(Odd, rule=lambda m, inputs, o: inputs[0] - 1.0)
    try:
        model = nn.Sequential(nn.Linear(2, 2), Odd())
        with pytest.raises(CertifiedUnsupportedError, match="custom"):
            sf.folding_batch(model, torch.randn(2, 2), torch.randn(2, 2), method="certified")
    finally:
        from spacefold._core.patterns import _REGISTRY

        _REGISTRY.pop(Odd, None)


def test_layers_and_tie_tol():
    model = _mlp(nn.GELU, d_in=4, width=10, depth=2, seed=4)
    torch.manual_seed(2)
    x1, x2 = torch.randn(2, 4), torch.randn(2, 4)
    full = walk_batch(model, x1, x2, method="certified")
    sub = walk_batch(model, x1, x2, method="certified", layers=["3"])
    assert sub.patterns.shape[1] == 10
    for i in range(2):
        assert _dense_agrees(sub[i], x1[i], x2[i], model, layers=["3"]) == 0
        assert len(sub[i]) <= len(full[i])
    tied = walk_batch(model, x1, x2, method="certified", tie_tol=0.05)
    for i in range(2):
        t = torch.linspace(0, 1, 2001, dtype=torch.float64)
        pts = x1[i].double() + t.view(-1, 1) * (x2[i] - x1[i]).double()
        grid = sf.activation_patterns(copy.deepcopy(model).double(), pts, tie_tol=0.05)
        idx = torch.searchsorted(tied[i].t, t, right=True) - 1
        near = ((t.unsqueeze(1) - tied[i].t.unsqueeze(0)).abs() <= 2e-6).any(1)
        assert int(((tied[i].patterns[idx] != grid).any(1) & ~near).sum()) == 0


@pytest.mark.slow
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(MODELS) - 1), st.integers(0, 10**6), st.integers(0, 12), st.booleans())
def test_enclosures_property_thorough(k, seed, width_exp, near_zero):
    name, model, d = MODELS[k]
    _check_enclosures(name, model, d, seed, width_exp, near_zero)


@pytest.mark.slow
@pytest.mark.parametrize("name,model,d", MODELS, ids=[m[0] for m in MODELS])
def test_dense_grid_thorough(name, model, d):
    g = torch.Generator().manual_seed(11)
    x1 = torch.randn((6,) + _shape(d), generator=g) * 2
    x2 = torch.randn((6,) + _shape(d), generator=g) * 2
    wb = walk_batch(model, x1, x2, method="certified")
    for i in range(6):
        if bool(wb.completeness()[i]):
            assert _dense_agrees(wb[i], x1[i], x2[i], model, steps=20000) == 0, name


def test_global_folding_reports_incomplete_paths(monkeypatch):
    model = _mlp(nn.GELU, d_in=4, width=8, depth=2, seed=3)
    torch.manual_seed(3)
    x, y = torch.randn(12, 4) * 2, torch.arange(12) % 3
    g = sf.global_folding(model, x, y, method="certified", max_pairs=10)
    assert g.info["n_incomplete"] == 0 and g.to_dict()["n_incomplete"] == 0
    monkeypatch.setenv("SPACEFOLD_CERTIFIED_BUDGET", "1")
    with pytest.warns(CertifiedBudgetWarning):
        g = sf.global_folding(model, x, y, method="certified", max_pairs=10)
    assert g.info["n_incomplete"] > 0


@settings(max_examples=60, deadline=None)
@given(st.integers(0, len(ACTS) - 1), st.floats(-15, 15), st.integers(0, 14), st.sampled_from(["random", "crit"]))
def test_function_ranges_hold_dense_samples(k, centre, width_exp, where):
    """The ranges of f, f' and f'' on [lo, hi] hold f, f' and f'' at 257 points of it, also on
    tiny intervals at the extrema and kinks (the adversarial places for a range)."""
    fn = module_function(ACTS[k]())
    if where == "crit":
        special = list(fn.crit_f + fn.crit_df + fn.crit_d2f) + [p for p, _, _ in fn.kinks]
        if special:
            centre = special[int(abs(centre) * 1000) % len(special)]
    h = 10.0 ** (-width_exp)
    lo, hi = torch.tensor([centre - h], dtype=torch.float64), torch.tensor([centre + h], dtype=torch.float64)
    z = torch.linspace(centre - h, centre + h, 257, dtype=torch.float64)
    for rng, g in ((fn.value_range, fn.f), (fn.deriv_range, fn.df), (fn.deriv2_range, fn.d2f)):
        a, b = rng(lo, hi)
        v = g(z)
        if g is fn.d2f:  # the second derivative is bounded only away from kinks
            off = torch.ones_like(z, dtype=torch.bool)
            for p, _, _ in fn.kinks:
                off &= (z - p).abs() > 1e-9
            v = v[off]
        assert bool(((v >= a) & (v <= b)).all()), (fn.name, rng.__name__, centre, h)


def test_budget_is_exact_per_path():
    """No path evaluates more intervals than the budget, however many of its intervals share a round."""
    model = _mlp(nn.GELU, d_in=4, width=16, depth=3, seed=0)
    torch.manual_seed(0)
    x1, x2 = torch.randn(3, 4) * 6, torch.randn(3, 4) * 6
    for budget in (5, 17, 40):
        w = CertifiedWalker(model, budget=budget, chunk=64)
        counts = torch.zeros(3, dtype=torch.int64)
        orig = w.enclose

        def enclose(x1, x2, path, a, b, orig=orig, counts=counts):
            counts.index_add_(0, path, torch.ones_like(path))
            return orig(x1, x2, path, a, b)

        w.enclose = enclose
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CertifiedBudgetWarning)
            wb = w(x1, x2)
        assert int(counts.max()) <= budget
        assert not bool(wb.completeness().all()) or budget == 40
