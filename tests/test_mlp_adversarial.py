"""Edge cases of the measures of small MLPs without walks (walk.exact.mlp): extreme scales, degenerate paths, the
models the plan takes or leaves, and the plumbing around it (workers, chunks, the cache, the CLI).

A path the kernels call clean must have the exact rational reference's measures; every path through the entry
points must have the float64 layer walk's.
"""

from __future__ import annotations

import copy
import os
import random

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_mlp_measures import FIELDS, _assert_equal, _fast, _layer_walk_measures, _plan, _reference_measures
from torch import nn

import spacefold as sf
from spacefold._core import measure
from spacefold._core.folding import walk_batch
from spacefold._core.walk import _kernels

pytestmark = pytest.mark.skipif(not _kernels.available(), reason="the compiled kernels (Numba) are off here")

f64 = torch.float64
EXAMPLES = int(os.environ.get("SPACEFOLD_EXAMPLES", 25))


def _batch(net, x1, x2, **kw) -> dict[str, torch.Tensor]:
    b = sf.folding_batch(net, x1, x2, **kw)
    return {k: getattr(b, k) for k in FIELDS}


def _one_neuron_cancellation(scale: float):
    """A bias-free neuron whose float64 value at ``x1`` has the wrong sign (the product of the first two terms
    rounds, the sum cancels): exactly 2^-105·scale > 0, computed -2^-105·scale; at ``x2`` it is 5.9e-213 > 0."""
    lin = nn.Linear(3, 1, bias=False).double()
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1 + 2**-52, -(2.0**-53), -1.0]], dtype=f64))
    net = nn.Sequential(lin, nn.ReLU(), nn.Linear(1, 1).double()).eval()
    x1 = torch.tensor([[1 + 2**-52, 2.0**-52, 1 + 2**-51]], dtype=f64) * scale
    x2 = torch.tensor([[0.0, 0.0, -5.9e-213]], dtype=f64)
    return net, x1, x2


def test_inputs_whose_squares_underflow_are_not_clean_on_a_wrong_sign():
    # at 2^-600 the squares of the inputs underflow: a norm of 0 bounded the first layer's error by 0, and the
    # wrong sign at x1 (a crossing that exact arithmetic does not have) was called clean
    net, x1, x2 = _one_neuron_cancellation(2.0**-600)
    z = torch.nn.functional.linear(x1, net[0].weight)
    assert z.item() < 0  # the computed sign (exactly, the value is +2^-705)
    got, clean = _fast(net, x1, x2)
    want = _reference_measures(net, x1, x2)
    assert want["r2"].tolist() == [0]
    if clean.item():
        _assert_equal(got, want)
    _assert_equal(_batch(net, x1, x2, workers=1), _layer_walk_measures(net, x1, x2))


def _chain_1d(hook_at: int | None = None, pre: bool = False) -> nn.Sequential:
    """x -> relu(x) -> relu(relu(x) - 1) -> out, with a hook adding 10 to the output (or the input, ``pre``) of
    module ``hook_at``."""
    l1, l2, l3 = nn.Linear(1, 1).double(), nn.Linear(1, 1).double(), nn.Linear(1, 1).double()
    with torch.no_grad():
        for lin, b in ((l1, 0.0), (l2, -1.0), (l3, 0.0)):
            lin.weight.fill_(1.0)
            lin.bias.fill_(b)
    net = nn.Sequential(l1, nn.ReLU(), l2, nn.ReLU(), l3).eval()
    if hook_at is not None:
        if pre:
            net[hook_at].register_forward_pre_hook(lambda m, args: (args[0] + 10,))
        else:
            net[hook_at].register_forward_hook(lambda m, args, out: out + 10)
    return net


X1, X2 = torch.tensor([[-2.0]], dtype=f64), torch.tensor([[3.0]], dtype=f64)


def test_the_plain_chain_by_hand():
    # bits (x > 0, relu(x) > 1): (0, 0) -> (1, 0) at x = 0 -> (1, 1) at x = 1
    b = _batch(_chain_1d(), X1, X2, workers=1)
    assert b["n_regions"].tolist() == [3] and b["r1"].tolist() == [2] and b["r2"].tolist() == [2]


@pytest.mark.parametrize("pre", [False, True])
def test_hooks_on_a_linear_are_not_skipped(pre):
    # 10 added at the first Linear: both neurons are on along the whole path, one region
    net = _chain_1d(hook_at=0, pre=pre)
    assert _plan(net) is None
    b = _batch(net, X1, X2, workers=1)
    assert b["n_regions"].tolist() == [1] and b["r2"].tolist() == [0]


@pytest.mark.xfail(
    strict=True,
    reason="the exact walk (the layer walk too) reads an activation module by its type and skips forward hooks on "
    "it: here a hook adding 10 to the first ReLU's output keeps the second neuron on along the whole path",
)
def test_hooks_on_an_activation_are_not_skipped():
    # bits (x > 0, relu(x) + 9 > 0): (0, 1) -> (1, 1) at x = 0
    b = _batch(_chain_1d(hook_at=1), X1, X2, workers=1)
    assert b["n_regions"].tolist() == [2] and b["r2"].tolist() == [1]


@st.composite
def scaled_mlps(draw):
    """Random small MLPs whose layers and inputs are scaled by powers of ten (the products stay below 1e120)."""
    d_in = draw(st.integers(1, 3))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    layers: list[nn.Module] = []
    d = d_in
    for _ in range(draw(st.integers(1, 3))):
        width = draw(st.integers(1, 6))
        lin = nn.Linear(d, width, bias=draw(st.booleans())).double()
        scale = 10.0 ** draw(st.integers(-40, 40))
        with torch.no_grad():
            lin.weight.copy_(torch.randn(width, d, generator=g, dtype=f64) * scale)
            if lin.bias is not None:
                lin.bias.copy_(torch.randn(width, generator=g, dtype=f64) * scale)
        layers += [lin, draw(st.sampled_from([nn.ReLU(), nn.LeakyReLU(-0.5), nn.LeakyReLU(0.1)]))]
        d = width
    layers.append(nn.Linear(d, 1).double())
    x_scale = 10.0 ** draw(st.integers(-150, 0) if draw(st.booleans()) else st.integers(-330, -300))
    x1, x2 = (torch.randn(5, d_in, generator=g, dtype=f64) * x_scale for _ in range(2))
    return nn.Sequential(*layers).eval(), x1, x2


@settings(
    max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 25, suppress_health_check=[HealthCheck.too_slow]
)
@given(case=scaled_mlps())
def test_tiny_and_huge_scales_clean_paths_are_the_references(case):
    """Inputs down to subnormals, weights from 1e-40 to 1e40: what the kernels call clean is exact."""
    net, x1, x2 = case
    got, clean = _fast(net, x1, x2)
    _assert_equal(got, _reference_measures(net, x1, x2), clean.nonzero().squeeze(1))
    _assert_equal(_batch(net, x1, x2, workers=1), _layer_walk_measures(net, x1, x2))


def _scaled_second_layer(scale: float):
    net = sf.mlp("2x8", 4, 2, seed=0).net.double().eval()
    with torch.no_grad():
        net[2].weight.mul_(scale)
    g = torch.Generator().manual_seed(0)
    return net, torch.randn(3, 4, generator=g, dtype=f64), torch.randn(3, 4, generator=g, dtype=f64)


def test_values_near_the_top_of_float64_clean_paths_are_the_references():
    # the second layer's values reach 4e307; nothing overflows, the kernels decide every path
    net, x1, x2 = _scaled_second_layer(1e308)
    got, clean = _fast(net, x1, x2)
    assert bool(clean.all())
    want = _reference_measures(net, x1, x2)
    _assert_equal(got, want)
    _assert_equal(_batch(net, x1, x2, workers=1), want)


@pytest.mark.xfail(
    strict=True,
    reason="the float64 layer walk (walk_batch(..., dtype=torch.float64)) loses the second layer's crossings once "
    "its values pass about 1e155 (right at weights x1e154, wrong from x1e156: squares overflow somewhere in its "
    "round-off bounds), with no error; the kernels' numbers are the reference's",
)
def test_the_float64_layer_walk_near_the_top_of_float64():
    net, x1, x2 = _scaled_second_layer(1e200)
    _assert_equal(_layer_walk_measures(net, x1, x2), _reference_measures(net, x1, x2))


def test_rows_regrown_from_none_give_the_same_measures():
    # thousands of breakpoints per call; arrays sized for none at first, regrown (doubled) as the layers need
    net = sf.mlp("6x32", 2, 2, seed=3).net.double().eval()
    g = torch.Generator().manual_seed(1)
    x1 = torch.randn(40, 2, generator=g, dtype=f64) * 30
    x2 = -x1
    plan = _plan(net)
    ends = (*plan.prefix(x1), *plan.prefix(x2))
    za, ea, zb, eb = ends
    first, clean = plan(za, zb, ea, eb)
    plan.rows_per_path[0] = 0.0
    again, clean2 = plan(za, zb, ea, eb)
    assert torch.equal(clean, clean2) and int(clean.sum()) >= 10
    assert int(first["r2"][clean].sum()) > 1000
    _assert_equal(again, first, clean.nonzero().squeeze(1))
    _assert_equal(first, _layer_walk_measures(net, x1, x2), clean.nonzero().squeeze(1))


class _ViewNet(nn.Module):
    """A Linear on (batch, 2, 3) inputs flattened by ``x.view(x.size(0), -1)``."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(6, 8), nn.Linear(8, 8), nn.Linear(8, 2)

    def forward(self, x):
        return self.c(torch.nn.functional.leaky_relu(self.b(torch.relu(self.a(x.view(x.size(0), -1)))), 0.2))


class _SeqNet(nn.Module):
    """A Linear over the last axis of (batch, 2, 3) inputs."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(3, 8), nn.Linear(8, 2)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def _prelu(width: int, lo: float, hi: float) -> nn.PReLU:
    act = nn.PReLU(width)
    with torch.no_grad():
        act.weight.copy_(torch.linspace(lo, hi, width))
    return act


def _lin(a: int, b: int, bias: bool = True) -> nn.Linear:
    return nn.Linear(a, b, bias=bias)


_SHARED = _lin(8, 8)
# (model, input shape after the batch, whether the kernels take it)
MODELS = {
    "nested": (lambda: nn.Sequential(nn.Sequential(_lin(6, 8), nn.ReLU()), _lin(8, 8), nn.ReLU(), _lin(8, 2)), 6, 1),
    "final act": (lambda: nn.Sequential(_lin(6, 8), nn.ReLU(), _lin(8, 8), nn.ReLU()), 6, 1),
    "prelu one slope": (lambda: nn.Sequential(_lin(6, 8), nn.PReLU(init=-0.3), _lin(8, 2)), 6, 1),
    "prelu per neuron": (lambda: nn.Sequential(_lin(6, 8), _prelu(8, -1, 1), _lin(8, 2)), 6, 1),
    "prelu slopes past 1": (lambda: nn.Sequential(_lin(6, 8), _prelu(8, -2, 2), _lin(8, 2)), 6, 0),
    "rrelu": (lambda: nn.Sequential(_lin(6, 8), nn.RReLU(), _lin(8, 8), nn.ReLU(), _lin(8, 2)), 6, 1),
    "leaky -1": (lambda: nn.Sequential(_lin(6, 8), nn.LeakyReLU(-1.0), _lin(8, 8), nn.ReLU(), _lin(8, 2)), 6, 1),
    "leaky 1.5": (lambda: nn.Sequential(_lin(6, 8), nn.LeakyReLU(1.5), _lin(8, 8), nn.ReLU(), _lin(8, 2)), 6, 0),
    "dropout": (lambda: nn.Sequential(_lin(6, 8), nn.ReLU(), nn.Dropout(0.5), _lin(8, 2)), 6, None),
    "in place": (lambda: nn.Sequential(_lin(6, 8), nn.ReLU(inplace=True), _lin(8, 8), nn.ReLU(True), _lin(8, 2)), 6, 1),
    "width 64": (lambda: nn.Sequential(_lin(6, 64), nn.ReLU(), _lin(64, 64), nn.ReLU(), _lin(64, 2)), 6, 1),
    "width 65": (lambda: nn.Sequential(_lin(6, 65), nn.ReLU(), _lin(65, 2)), 6, 0),
    "depth 10": (lambda: nn.Sequential(_lin(6, 8), *[m for _ in range(9) for m in (nn.ReLU(), _lin(8, 8))]), 6, 1),
    "1-d input": (lambda: nn.Sequential(_lin(1, 8), nn.ReLU(), _lin(8, 8), nn.ReLU(), _lin(8, 2)), 1, 1),
    "shared layer": (lambda: nn.Sequential(_lin(6, 8), nn.ReLU(), _SHARED, nn.ReLU(), _SHARED, nn.ReLU()), 6, 1),
    "bias-free": (lambda: nn.Sequential(_lin(6, 8, False), nn.ReLU(), _lin(8, 8, False), nn.ReLU()), 6, 1),
    "view in forward": (lambda: _ViewNet(), (2, 3), 1),
    "3-d input": (lambda: _SeqNet(), (2, 3), None),
    "training mode": (lambda: sf.mlp("3x8", 6, 2, seed=0).train(), 6, 1),
    "dropout first": (lambda: nn.Sequential(nn.Dropout(0.9), _lin(6, 8), nn.ReLU(), _lin(8, 2)).train(), 6, 1),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_models_give_the_float64_layer_walks_numbers(name):
    """Whether or not the kernels take a model, the entry point gives the float64 layer walk's measures."""
    make, shape, taken = MODELS[name]
    torch.manual_seed(0)
    net = make()
    if taken is not None:
        assert (_plan(net) is not None) == bool(taken)
    shape = (shape,) if isinstance(shape, int) else shape
    g = torch.Generator().manual_seed(1)
    x1 = torch.randn(30, *shape, generator=g) * 2
    x2 = torch.randn(30, *shape, generator=g) * 2
    x2[:10] = -x1[:10]  # through the origin
    x2[10:12] = x1[10:12]  # no segment at all
    want = _layer_walk_measures(net, x1, x2)
    assert want["r2"][10:12].tolist() == [0, 0] and want["n_regions"][10:12].tolist() == [1, 1]
    _assert_equal(_batch(net, x1, x2, workers=1), want)
    _assert_equal(_batch(net, x1, x2, workers=1, dtype=f64), want)


@pytest.mark.parametrize("kw", [{"layers": "net.1"}, {"layers": ["net.3", "net.5"]}, {"tie_tol": 1e-3}])
def test_options_give_the_float64_layer_walks_numbers(kw):
    net = sf.mlp("3x8", 6, 2, seed=0)
    g = torch.Generator().manual_seed(2)
    x1, x2 = torch.randn(40, 6, generator=g), torch.randn(40, 6, generator=g)
    s = measure.summarize(walk_batch(net, x1, x2, dtype=f64, **kw))
    _assert_equal(_batch(net, x1, x2, workers=1, **kw), {k: getattr(s, k) for k in FIELDS})


def _degenerate_net() -> nn.Sequential:
    """Bias-free LeakyReLU layers with weights in halves: on inputs in halves many paths meet 0 exactly and go to
    the layer walk."""
    g = torch.Generator().manual_seed(0)
    layers: list[nn.Module] = []
    d = 5
    for w in (8, 8, 8):
        lin = nn.Linear(d, w, bias=False)
        with torch.no_grad():
            lin.weight.copy_(torch.randint(-2, 3, (w, d), generator=g) / 2)
        layers += [lin, nn.LeakyReLU(0.25)]
        d = w
    return nn.Sequential(*layers, nn.Linear(d, 2)).eval()


@pytest.mark.parametrize("cache", [True, False])
def test_plumbing_gives_the_layer_walks_numbers_with_paths_on_both_ways(cache, monkeypatch):
    """Two worker processes, index pairs and rows, chunks of 1, 7 and all, the cache of first-layer values or
    none: the float64 layer walk's measures, and as many paths walked in float64 every way."""
    if not cache:
        monkeypatch.setattr("spacefold._core.exact_walker._PREFIX_CACHE_BYTES", 0)
    net = _degenerate_net()
    g = torch.Generator().manual_seed(1)
    x = torch.randint(-3, 4, (300, 5), generator=g) / 2
    i, j = torch.randint(0, 300, (2, 700), generator=g)
    want = _layer_walk_measures(net, x[i], x[j])
    runs = [
        sf.folding_pairs(net, x, i, j, workers=1),
        sf.folding_pairs(net, x, i, j, workers=2, batch_size=128),
        sf.folding_batch(net, x[i], x[j], workers=2, batch_size=128),
        sf.folding_batch(net, x[i], x[j], workers=1, batch_size=7, progress=True),
        sf.folding_pairs(net, x[:40], i[:50] % 40, j[:50] % 40, workers=1, batch_size=1),
    ]
    n64 = runs[0].n_float64
    assert 0 < n64 < 700  # both ways
    for b in runs[:4]:
        _assert_equal({k: getattr(b, k) for k in FIELDS}, want)
        assert b.n_float64 == n64 and bool(b.complete.all())
    small = _layer_walk_measures(net, x[:40][i[:50] % 40], x[:40][j[:50] % 40])
    _assert_equal({k: getattr(runs[4], k) for k in FIELDS}, small)


def test_the_cli_gives_the_numbers_of_the_layer_walk(tmp_path, capsys, monkeypatch):
    import json

    from spacefold.cli import main

    path = sf.save_checkpoint(sf.mlp("2x8", 2, 3, seed=0), tmp_path / "m.pt")
    args = ["measure", "--model", str(path), "--data", "blobs", "--max-pairs", "300", "--no-progress", "--json"]
    out = []
    for kernels in (True, False):
        if not kernels:
            monkeypatch.setattr("spacefold._core.walk.exact.mlp.mlp_summarizer", lambda *a, **k: None)
        assert main([*args, "--workers", "1"]) == 0
        got = json.loads(capsys.readouterr().out)
        out.append({k: v for k, v in got.items() if k not in ("wall_seconds", "paths_per_second")})
    assert out[0]["n_paths"] == 300 and out[0]["n_folded"] > 0
    assert out[0] == out[1]


def test_an_overflow_in_the_last_layer_is_the_layer_walks_error():
    # 1e300·x overflows at both ends of the path (the bound of its error, about 5e294, does not): the kernels
    # called the path clean and gave numbers where the float64 layer walk reports the overflow
    l1, l2 = nn.Linear(1, 2).double(), nn.Linear(2, 1).double()
    with torch.no_grad():
        l1.weight.copy_(torch.tensor([[1e300], [1.0]], dtype=f64))
        l1.bias.zero_()
    net = nn.Sequential(l1, nn.ReLU(), l2).eval()
    x1, x2 = torch.tensor([[1e10]], dtype=f64), torch.tensor([[2e10]], dtype=f64)
    assert not bool(_fast(net, x1, x2)[1].any())
    for walk in (lambda: _batch(net, x1, x2, workers=1), lambda: _layer_walk_measures(net, x1, x2)):
        with pytest.raises(sf.InputError, match="not finite or overflow"):
            walk()


def test_float64_inputs_of_a_float32_model_are_read_in_float32(monkeypatch):
    # 3x - 0.3 at x = 0.1000000045: 1.6e-9 in float64, 0 at the float32 input the model reads (0.10000000149)
    l1, l2 = nn.Linear(1, 1), nn.Linear(1, 1)
    with torch.no_grad():
        l1.weight.fill_(3.0)
        l1.bias.fill_(-0.3)
    net = nn.Sequential(l1, nn.ReLU(), l2).eval()
    x = torch.tensor([[0.1000000045], [-1.0], [0.25]], dtype=f64)
    x1, x2 = x[[0, 2]], x[[1, 1]]
    got = [
        sf.folding_batch(net, x1, x2, workers=1),
        sf.folding_pairs(net, x, torch.tensor([0, 2]), torch.tensor([1, 1]), workers=1),
        sf.folding_batch(net, x1.float(), x2.float(), workers=1),
    ]
    monkeypatch.setattr("spacefold._core.walk.exact.mlp.mlp_summarizer", lambda *a, **k: None)
    got.append(sf.folding_batch(net, x1, x2, workers=1))
    for b in got:
        assert b.r2.tolist() == [0, 1]


def test_global_folding_with_the_kernels_and_without(monkeypatch):
    net = _degenerate_net()
    g = torch.Generator().manual_seed(3)
    x = torch.randint(-3, 4, (90, 5), generator=g) / 2
    y = torch.arange(90) % 3
    runs = []
    for kernels in (True, False):
        if not kernels:
            monkeypatch.setattr("spacefold._core.walk.exact.mlp.mlp_summarizer", lambda *a, **k: None)
        runs.append(sf.global_folding(net, x, y, max_pairs=400, seed=0, workers=1))
    a, b = runs
    assert 0 < a.info["n_float64"] < len(a.chi)  # paths both ways
    for k in FIELDS:
        assert torch.equal(getattr(a, k), getattr(b, k)), k
    assert a.phi == b.phi


def _near_degenerate_float32():
    """A float32 net of weights in halves plus 1e-7 noise, and 30 paths between inputs of the same kind."""
    g, rnd = torch.Generator().manual_seed(102), random.Random(102)
    assert rnd.choice([0.0, 1e-7, 1e-6, 1e-4]) == 1e-7
    d = rnd.randint(1, 4)
    layers: list[nn.Module] = []
    dd = d
    for _ in range(rnd.randint(1, 3)):
        w = rnd.randint(2, 8)
        lin = nn.Linear(dd, w)
        with torch.no_grad():
            lin.weight.copy_(torch.randint(-3, 4, (w, dd), generator=g) / 2 + 1e-7 * torch.randn(w, dd, generator=g))
            lin.bias.copy_(torch.randint(-2, 3, (w,), generator=g) / 2 + 1e-7 * torch.randn(w, generator=g))
        layers += [lin, rnd.choice([nn.ReLU(), nn.LeakyReLU(0.25)])]
        dd = w
    net = nn.Sequential(*layers, nn.Linear(dd, 1)).eval()
    x1 = torch.randint(-4, 5, (30, d), generator=g) / 2 + 1e-7 * torch.randn(30, d, generator=g)
    x2 = torch.randint(-4, 5, (30, d), generator=g) / 2 + 1e-7 * torch.randn(30, d, generator=g)
    return net, x1, x2


def test_a_near_degenerate_float32_net_with_the_kernels_is_the_references():
    net, x1, x2 = _near_degenerate_float32()
    want = _reference_measures(copy.deepcopy(net).double(), x1.double(), x2.double())
    _assert_equal(_batch(net, x1, x2, workers=1), want)
    _assert_equal(_batch(net, x1, x2, workers=1, dtype=f64), want)


@pytest.mark.xfail(
    strict=True,
    reason="the exact walk in float32 (refined in float64 where it sees float32 cannot decide) miscounts some paths "
    "of float32 nets whose weights and inputs are halves plus 1e-7 noise (here paths 2 and 23: r2 0 and 1, the "
    "reference's 1 and 2); "
    "the measures of a float32 MLP then depend on return_walks/per_layer, which take that walk",
)
def test_a_near_degenerate_float32_net_walked_in_float32_is_the_references():
    net, x1, x2 = _near_degenerate_float32()
    want = _reference_measures(copy.deepcopy(net).double(), x1.double(), x2.double())
    _assert_equal(_batch(net, x1, x2, workers=1, return_walks=True), want)
