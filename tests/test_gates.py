"""Gated units (spacefold.nn, nn.GLU, user gates) and bisection of networks whose classes are not convex.

Oracles: the gated units computed by hand from their two projections, the sign table of the
papers' rule [f(z) > 0] for a product of two factors, dense grids.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import spacefold as sf
from spacefold._core import patterns
from spacefold._core.folding import walk_batch
from spacefold._core.walk.bisect import NONCONVEX_N0, default_n0
from spacefold.errors import InputError, InputTypeError
from spacefold.nn import GEGLU, ReGLU, SwiGLU

f64 = torch.float64


@pytest.mark.parametrize("unit, act", [(SwiGLU, F.silu), (GEGLU, F.gelu), (ReGLU, F.relu)])
@pytest.mark.parametrize("bias", [False, True])
def test_gated_units_give_one_bit_per_unit(unit, act, bias):
    torch.manual_seed(0)
    net = nn.Sequential(unit(5, 7, bias=bias), nn.Linear(7, 3))
    x = torch.randn(300, 5)
    got, layout = sf.activation_patterns(net, x, return_layout=True)
    g = net[0]
    with torch.no_grad():  # the two projections by hand
        a = x @ g.gate.weight.T + (g.gate.bias if bias else 0)
        b = x @ g.up.weight.T + (g.up.bias if bias else 0)
    assert torch.equal(got, act(a) * b > 0)
    # the sign table of the product: both factors positive, or (SiLU, GELU: negative below 0) both negative
    table = (a > 0) & (b > 0) if unit is ReGLU else ((a > 0) & (b > 0)) | ((a < 0) & (b < 0))
    assert torch.equal(got, table)
    assert got.any() and not got.all()
    # one block, the module's; the activation function inside the unit gives no bits of its own
    assert layout.names == ["0"] and layout.layers[0].shape == (7,) and layout.layers[0].kind == unit.__name__
    assert [(n, type(m)) for n, m in patterns.find_activations(net)] == [("0", unit)]


def test_a_llama_style_mlp_and_the_exact_walk_refusal():
    torch.manual_seed(1)
    net = nn.Sequential(SwiGLU(4, 16), nn.Linear(16, 4), SwiGLU(4, 16), nn.Linear(16, 2))
    assert default_n0(net) == NONCONVEX_N0
    assert sf.activation_patterns(net, torch.randn(3, 4)).shape == (3, 32)
    with pytest.raises(sf.NotPiecewiseLinearError, match="SwiGLU is not piecewise linear"):
        sf.folding(net, torch.zeros(4), torch.ones(4), method="exact")


def test_torch_glu_module_and_function():
    torch.manual_seed(2)
    lin = nn.Linear(3, 8)
    x = torch.randn(100, 3)
    with torch.no_grad():
        z = lin(x)
    want = z[:, :4] > 0  # a * sigmoid(b) > 0 iff a > 0
    assert torch.equal(sf.activation_patterns(nn.Sequential(lin, nn.GLU()), x), want)

    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = lin

        def forward(self, x):
            return F.glu(self.lin(x))

    got, layout = sf.activation_patterns(Functional(), x, return_layout=True)
    assert torch.equal(got, want) and layout.names == [":glu"]


def test_a_gate_with_mismatched_halves_names_the_module():
    net = nn.Sequential(nn.Linear(3, 5), nn.GLU())
    with pytest.raises(InputError, match=r"nn.GLU at '1' splits dimension -1 .* even size, got 5"):
        sf.activation_patterns(net, torch.randn(2, 3))
    with pytest.raises(InputError, match=r"nn.GLU at '1'"):
        sf.folding(net, torch.zeros(3), torch.ones(3), method="bisect")

    class Functional(nn.Module):
        def forward(self, x):
            return F.glu(x, dim=1)

    with pytest.raises(InputError, match=r"F.glu at call site ':glu' splits dimension 1 .* got 3"):
        sf.activation_patterns(Functional(), torch.randn(2, 3))
    with pytest.raises(InputError, match=r"SwiGLU\(d_in=4\) takes inputs whose last dimension is 4, got shape"):
        sf.activation_patterns(SwiGLU(4, 2), torch.randn(2, 3))
    with pytest.raises(InputError, match="d_hidden must be an int >= 1, got 0"):
        SwiGLU(4, 0)
    with pytest.raises(InputTypeError, match="d_in must be an int"):
        SwiGLU(4.0, 2)


class TwoInputGate(nn.Module):
    """A user's gate of two inputs: sigmoid(a) * b."""

    def forward(self, a, b):
        return torch.sigmoid(a) * b


class UsesGate(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(2, 4), nn.Linear(2, 4)
        self.gate = TwoInputGate()

    def forward(self, x):
        return self.gate(self.a(x), self.b(x))


def test_rules_see_every_input_and_the_output(registry_guard):
    torch.manual_seed(3)
    net = UsesGate()
    x = torch.randn(200, 2)
    got_args = []

    def rule(module, inputs, output):
        got_args.append((module, len(inputs), output.shape))
        return torch.minimum(inputs[0], inputs[1])  # [a > 0 and b > 0]

    sf.register_activation(TwoInputGate, rule=rule)
    got = sf.activation_patterns(net, x)
    with torch.no_grad():
        a, b = net.a(x), net.b(x)
    assert torch.equal(got, (a > 0) & (b > 0))
    assert got_args == [(net.gate, 2, (200, 4))]
    # the papers' rule for a gate: its output, [sigmoid(a) * b > 0] = [b > 0]; a rule may return the bits
    sf.register_activation(TwoInputGate, rule=lambda module, inputs, output: output)
    assert torch.equal(sf.activation_patterns(net, x), b > 0)
    sf.register_activation(TwoInputGate, rule=lambda module, inputs, output: output > 0)  # as API.md writes it
    assert torch.equal(sf.activation_patterns(net, x), b > 0)
    assert sf.folding(net, x[0], x[1], method="bisect").n_regions >= 1


def test_the_earlier_rule_form_still_works_with_a_deprecation_warning(registry_guard):
    torch.manual_seed(4)
    net = UsesGate()
    x = torch.randn(50, 2)
    with pytest.warns(DeprecationWarning, match="name it 'inputs'"):
        sf.register_activation(TwoInputGate, lambda m, inp, out: inp)  # gets the first input alone
    with torch.no_grad():
        assert torch.equal(sf.activation_patterns(net, x), net.a(x) > 0)


def test_a_gated_class_can_be_disconnected():
    """One SwiGLU unit with a = x, b = x - 1 on the segment x from -1 to 2: silu(a) * b > 0 for x < 0
    (both negative) and for x > 1 (both positive): the walk leaves the class {1} and comes back."""
    g = SwiGLU(1, 1, bias=True).double()
    with torch.no_grad():
        g.gate.weight.fill_(1.0)
        g.gate.bias.fill_(0.0)
        g.up.weight.fill_(1.0)
        g.up.bias.fill_(-1.0)
    net = nn.Sequential(g, nn.Linear(1, 1)).double()
    x1, x2 = torch.tensor([-1.0], dtype=f64), torch.tensor([2.0], dtype=f64)
    w = sf.walk(net, x1, x2, method="bisect")
    assert w.patterns.int().flatten().tolist() == [1, 0, 1]
    assert torch.allclose(w.t[1:], torch.tensor([1 / 3, 2 / 3], dtype=f64), atol=1e-5)
    u = sf.walk(net, x1, x2, method="uniform", steps=3000)
    assert torch.equal(u.patterns, w.patterns)


def _subsequence(short: torch.Tensor, long: torch.Tensor) -> bool:
    """Whether the rows of ``short`` occur in ``long`` in order."""
    j = 0
    for row in long:
        if j < len(short) and torch.equal(row, short[j]):
            j += 1
    return j == len(short)


def _swiglu_mlp(d: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(SwiGLU(d, 20), SwiGLU(20, 20), SwiGLU(20, 20), nn.Linear(20, 10)).double()


def test_bisect_of_a_gated_network_misses_nothing_its_grid_sees():
    """The same-ends rule is applied only below the grid step: every change of pattern on the grid of
    n0 = 1025 points is in the walk; the start grid of 64 points that was the default missed some."""
    net = _swiglu_mlp(16, 0)
    g = torch.Generator().manual_seed(0)
    x1, x2 = torch.randn(12, 16, generator=g, dtype=f64), torch.randn(12, 16, generator=g, dtype=f64)
    b = walk_batch(net, x1, x2, method="bisect")
    grid = walk_batch(net, x1, x2, method="uniform", steps=NONCONVEX_N0 - 1)
    old = walk_batch(net, x1, x2, method="bisect", n0=64)
    assert all(_subsequence(u.patterns, w.patterns) for u, w in zip(grid.walks(), b.walks()))
    missed = sum(not _subsequence(u.patterns, w.patterns) for u, w in zip(grid.walks(), old.walks()))
    assert missed >= 2


@pytest.mark.slow
def test_bisect_of_a_3x20_swiglu_mlp_against_a_dense_grid():
    """50 segments of a 3x20 SwiGLU MLP on 784 inputs in [0, 1]: with the start grid of 64 points,
    bisection missed regions of a 20,000-step grid on 3 to 6 segments (chi off by up to 0.064); with
    the default grid it misses none on this network."""
    net = _swiglu_mlp(784, 1)
    g = torch.Generator().manual_seed(1)
    x1, x2 = torch.rand(50, 784, generator=g, dtype=f64), torch.rand(50, 784, generator=g, dtype=f64)
    dense = walk_batch(net, x1, x2, method="uniform", steps=20000)
    b = walk_batch(net, x1, x2, method="bisect")
    old = walk_batch(net, x1, x2, method="bisect", n0=64)
    assert all(_subsequence(u.patterns, w.patterns) for u, w in zip(dense.walks(), b.walks()))
    assert sum(not _subsequence(u.patterns, w.patterns) for u, w in zip(dense.walks(), old.walks())) >= 2


def test_results_say_whether_each_walk_is_complete():
    torch.manual_seed(6)
    relu = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
    gated = nn.Sequential(SwiGLU(2, 4), nn.Linear(4, 1))
    x1, x2 = torch.randn(3, 2), torch.randn(3, 2)
    assert sf.folding_batch(relu, x1, x2, method="exact").complete.tolist() == [True] * 3
    for method in ("bisect", "uniform"):
        assert sf.folding_batch(relu, x1, x2, method=method).complete.tolist() == [False] * 3
        assert sf.folding_batch(gated, x1, x2, method=method).complete.tolist() == [False] * 3
        assert sf.folding(gated, x1[0], x2[0], method=method).complete is False
    assert sf.folding(relu, x1[0], x2[0], method="exact").complete is True


def test_a_users_gate_that_fails_is_named(registry_guard):
    class Halves(nn.Module):  # splits 7 features into 3 and 4: a gate of mismatched halves
        def forward(self, z):
            return z[..., :3] * torch.sigmoid(z[..., 3:])

    sf.register_activation(Halves, rule=lambda module, inputs, output: output)
    net = nn.Sequential(nn.Linear(3, 7), Halves(), nn.Linear(3, 2))
    with pytest.raises(InputError, match=r"it failed in the forward of '1' \(Halves\): The size of tensor a \(3\)"):
        sf.activation_patterns(net, torch.randn(4, 3))
