"""Edge cases of the certified walk: the range of ``tol``, termination below float64's
resolution in t, and segments that start or end on a boundary."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import spacefold as sf
from spacefold._core.folding import walk_batch
from spacefold._core.walk.certified import CertifiedBudgetWarning, CertifiedWalker, certified_walks
from spacefold.errors import InputError


def _gelu_mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 64), nn.GELU(), nn.Linear(64, 64), nn.GELU(), nn.Linear(64, 2))


A, B = torch.tensor([-2.0, 0.5, 1.0]), torch.tensor([2.0, -1.0, 0.3])


@pytest.mark.parametrize("tol", [0.0, 1.0, 1.5])
def test_tol_outside_open_unit_interval_refused(tol):
    """tol = 0 asks bisection for exact positions (it never got there); tol >= 1 asks for nothing."""
    model = _gelu_mlp()
    for call in (
        lambda: sf.folding(model, A, B, method="certified", dtype=torch.float64, tol=tol),
        lambda: sf.walk(model, A, B, method="certified", tol=tol),
        lambda: sf.folding_batch(model, A[None], B[None], method="certified", tol=tol),
        lambda: certified_walks(model, A[None], B[None], tol=tol),
    ):
        with pytest.raises(InputError, match=r"^tol must be a number in \(0, 1\) for method='certified'.*got "):
            call()


def test_bisect_keeps_accepting_tol_zero():
    """The range is the certified walk's own: bisection stops after its rounds whatever tol is."""
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    w = sf.walk(model, A, B, method="bisect", tol=0.0)
    assert w.n_regions >= 1


def test_locating_stops_at_float_resolution():
    """A tol finer than float64 can resolve in t: every crossing is bracketed between two
    neighbouring doubles and the walk returns, with the patterns of the default tol."""
    model = _gelu_mlp()
    fine = sf.walk(model, A, B, method="certified", dtype=torch.float64, tol=1e-300)
    ref = sf.walk(model, A, B, method="certified", dtype=torch.float64)
    assert fine.complete and ref.complete
    assert torch.equal(fine.patterns, ref.patterns)
    assert float((fine.t - ref.t).abs().max()) <= 1e-6
    # every crossing is located far finer than the default tol: 1e-12 before each region's entry
    # the segment is still in the previous region (float64 patterns at the entry itself can
    # depend on the batch they are evaluated in, by round-off)
    w = CertifiedWalker(model, tol=1e-300)
    below = fine.t[1:] - 1e-12
    assert bool((below > fine.t[:-1]).all())
    x1, x2 = A[None].double(), B[None].double()
    path = torch.zeros(below.numel(), dtype=torch.int64)
    assert torch.equal(w.patterns(x1, x2, path, below), fine.patterns[:-1])


def _through_zero(act: nn.Module, bias: float = 0.0) -> nn.Sequential:
    """x -> Linear(1, 1) (weight 1) -> act -> Linear(1, 1): one bit, z = x + bias."""
    model = nn.Sequential(nn.Linear(1, 1), act, nn.Linear(1, 1)).double()
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[0].bias.fill_(bias)
        model[2].weight.fill_(1.0)
        model[2].bias.zero_()
    return model


def _seg(x1: float, x2: float):
    return torch.tensor([x1], dtype=torch.float64), torch.tensor([x2], dtype=torch.float64)


@pytest.mark.parametrize("act", [nn.ReLU, nn.GELU])
def test_segment_starting_or_ending_on_a_boundary(act):
    """z = x is 0 at x = 0, bit 0 there and 1 for x > 0: from 0 to 1 the walk enters the region
    x > 0 at t = 0 (a zero-length region at t = 0, one piece), from 1 to 0 it leaves it at t = 1;
    the exact walk gives the same for ReLU; from -1 to 0 and 0 to -1 the bit never changes."""
    model = _through_zero(act())
    cases = {
        (0.0, 1.0): ([[0], [1]], [0.0, 0.0]),
        (1.0, 0.0): ([[1], [0]], [0.0, 1.0]),
        (-1.0, 0.0): ([[0]], [0.0]),
        (0.0, -1.0): ([[0]], [0.0]),
    }
    for (x1, x2), (pats, ts) in cases.items():
        w = sf.walk(model, *_seg(x1, x2), method="certified")
        assert w.complete
        assert w.patterns.int().tolist() == pats and w.t.tolist() == ts, (x1, x2)
        assert w.n_pieces == 1 and w.n_regions == len(pats)
        assert sf.folding(model, *_seg(x1, x2), method="certified").n_pieces == 1
        fb = sf.folding_batch(model, *(v[None] for v in _seg(x1, x2)), method="certified", return_walks=True)
        assert fb.walks.n_pieces.tolist() == [1]
        if act is nn.ReLU:
            we = sf.walk(model, *_seg(x1, x2), method="exact")
            assert torch.equal(we.patterns, w.patterns) and torch.equal(we.t, w.t)


@pytest.mark.parametrize("act", [nn.ReLU, nn.GELU])
def test_changes_within_tol_of_an_end_are_at_the_end(act):
    """A crossing at t = 4e-7 or 1 - 4e-7 (within the default tol 1e-6 of an end) is placed at
    the end; one at t = 3e-6 or 1 - 3e-6 keeps a region of positive length, located within tol."""
    for c, x2, inner in ((4e-7, 1.0, False), (3e-6, 1.0, True), (4e-7, -1.0, False), (3e-6, -1.0, True)):
        # z = x - c on 0 -> 1 crosses at t = c; z = x + 1 - c on 0 -> -1 crosses at t = 1 - c
        bias = -c if x2 > 0 else 1.0 - c
        model = _through_zero(act(), bias)
        w = sf.walk(model, *_seg(0.0, x2), method="certified")
        at = c if x2 > 0 else 1.0 - c
        assert w.n_regions == 2
        if not inner:
            assert w.t.tolist() == [0.0, 0.0 if x2 > 0 else 1.0] and w.n_pieces == 1
        else:
            assert at <= float(w.t[1]) <= at + 1e-6 and w.n_pieces == 2


def _same_walks(exact_model, certified_model, x1, x2):
    """The certified walks of ``certified_model`` are complete and equal the exact walks of ``exact_model``."""
    we = walk_batch(exact_model, x1, x2, method="exact")
    wc = walk_batch(certified_model, x1, x2, method="certified")
    assert bool(wc.completeness().all())
    for i in range(x1.shape[0]):
        assert torch.equal(we[i].patterns, wc[i].patterns)
        assert float((we[i].t - wc[i].t).abs().max()) <= 1e-6 + 1e-9


def _walks_equal(model, shape, n=4, seed=0):
    torch.manual_seed(seed)
    dtype = next(model.parameters()).dtype
    _same_walks(model, model, 2 * torch.randn((n,) + shape, dtype=dtype), 2 * torch.randn((n,) + shape, dtype=dtype))


def _img(*layers):
    return nn.Sequential(nn.Unflatten(1, (1, 3, 3)), *layers).eval()


_LAYERS = {
    "prelu": lambda: nn.Sequential(nn.Linear(4, 6), nn.PReLU(6), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2)),
    "prelu-conv": lambda: _img(
        nn.Conv2d(1, 3, 2), nn.PReLU(3), nn.Conv2d(3, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2)
    ),
    "zeropad": lambda: _img(nn.ZeroPad2d(1), nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(18, 2)),
    "constantpad": lambda: _img(
        nn.ConstantPad2d((1, 0, 0, 2), 0.7), nn.Conv2d(1, 2, 2), nn.ReLU(), nn.Flatten(), nn.Linear(24, 2)
    ),
    "adaptive2d": lambda: _img(
        nn.Conv2d(1, 3, 2), nn.ReLU(), nn.AdaptiveAvgPool2d((1, 2)), nn.Flatten(), nn.Linear(6, 2)
    ),
    "adaptive1d": lambda: nn.Sequential(
        nn.Unflatten(1, (1, 9)), nn.Conv1d(1, 3, 2), nn.ReLU(), nn.AdaptiveAvgPool1d(3), nn.Flatten(), nn.Linear(9, 2)
    ),
}


@pytest.mark.parametrize("name", list(_LAYERS))
@pytest.mark.parametrize("seed", [0, 1])
def test_certified_equals_exact_with_prelu_padding_and_adaptive_pooling(name, seed):
    torch.manual_seed(seed)
    model = _LAYERS[name]().double().eval()  # float64: the exact walk's breakpoints exact, the certified within tol
    for m in model.modules():  # PReLU slopes apart from each other, some negative
        if isinstance(m, nn.PReLU):
            m.weight.data.uniform_(-0.5, 0.8)
    _walks_equal(model, (4,) if isinstance(model[0], nn.Linear) else (9,), seed=seed)


@pytest.mark.parametrize("pad", [nn.ReflectionPad2d(1), nn.ReplicationPad2d((1, 0, 1, 1))])
def test_certified_through_reflection_and_replication_padding_matches_a_dense_grid(pad):
    torch.manual_seed(2)
    model = _img(pad, nn.Conv2d(1, 2, 2), nn.GELU(), nn.Flatten(), nn.LazyLinear(2))
    model(torch.zeros(1, 9))  # materialise the lazy layer
    model = model.eval()
    x1, x2 = 2 * torch.randn(3, 9), 2 * torch.randn(3, 9)
    wc = walk_batch(model, x1, x2, method="certified")
    assert bool(wc.completeness().all())
    t = torch.linspace(0, 1, 20001, dtype=torch.float64)
    for i in range(3):
        w = wc[i]
        pts = x1[i].double() + t.unsqueeze(1) * (x2[i] - x1[i]).double()
        grid = sf.activation_patterns(model.double(), pts)
        model.float()
        idx = torch.searchsorted(w.t, t, right=True) - 1
        near = ((t.unsqueeze(1) - w.t.unsqueeze(0)).abs() <= 2e-6).any(1)
        assert int(((w.patterns[idx] != grid).any(1) & ~near).sum()) == 0


def test_an_exhausted_budget_names_the_activations_left_unproved(monkeypatch):
    monkeypatch.setenv("SPACEFOLD_CERTIFIED_BUDGET", "3")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.GELU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 2)).eval()
    x1, x2 = 3 * torch.randn(3, 4), 3 * torch.randn(3, 4)
    unproved = r"the bits left unproved are those of '[13]' \(\d+ interval-bits\)"
    with pytest.warns(CertifiedBudgetWarning, match=unproved):
        fb = sf.folding_batch(model, x1, x2, method="certified", workers=1)
    assert not bool(fb.complete.all())


def test_functional_prelu_with_a_slope_per_channel_is_the_module():
    class Functional(nn.Module):
        def __init__(self, lin, w, out):
            super().__init__()
            self.lin, self.w, self.out = lin, w, out

        def forward(self, x):
            return self.out(F.prelu(self.lin(x), self.w))

    torch.manual_seed(4)
    module_net = nn.Sequential(nn.Linear(4, 6), nn.PReLU(6), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2)).eval()
    module_net[1].weight.data.uniform_(-0.5, 0.8)
    fn_net = Functional(module_net[0], module_net[1].weight, module_net[2:]).eval()
    _same_walks(module_net, fn_net, 2 * torch.randn(4, 4), 2 * torch.randn(4, 4))


def test_padded_zeros_are_proved_constant():
    """An activation of zero padding sees exactly 0 on every interval: a point enclosure, its bit proved 0."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 2), nn.ZeroPad2d(1), nn.ReLU(), nn.Flatten(), nn.Linear(50, 1)).double()
    _same_walks(model, model, torch.randn(3, 1, 4, 4).double(), torch.randn(3, 1, 4, 4).double())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_prelu_per_token_on_token_rows(dtype):
    """PReLU(T) on (batch, T, d) takes its slope per token (dim 1): the exact walk (float64 too, where its round-off
    bound applies the activation to flattened rows) and the certified walk agree, and the walks verify."""

    class Tokens(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.p, self.b = nn.Linear(3, 5), nn.PReLU(4), nn.Linear(5, 2)

        def forward(self, x):
            return self.b(self.p(self.a(x))).flatten(1)

    torch.manual_seed(3)
    model = Tokens().to(dtype).eval()
    model.p.weight.data.uniform_(-0.5, 0.8)
    x1, x2 = 2 * torch.randn(3, 4, 3, dtype=dtype), 2 * torch.randn(3, 4, 3, dtype=dtype)
    _same_walks(model, model, x1, x2)
    fb = sf.folding_batch(model, x1, x2, method="exact", workers=1, return_walks=True)
    assert sf.verify(model, x1, x2, fb.walks).ok


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_convolutions_padded_by_mode(mode):
    torch.manual_seed(6)
    model = _img(nn.Conv2d(1, 3, 3, padding=1, padding_mode=mode), nn.ReLU(), nn.Flatten(), nn.Linear(27, 2))
    model = model.double().eval()
    _walks_equal(model, (9,), seed=6)
    conv1d = nn.Sequential(
        nn.Unflatten(1, (1, 9)),
        nn.Conv1d(1, 2, 3, padding=2, padding_mode=mode),
        nn.ReLU(),
        nn.Flatten(),
        nn.LazyLinear(2),
    )
    conv1d(torch.zeros(1, 9))  # materialise the lazy layer
    _walks_equal(conv1d.double().eval(), (9,), seed=7)
