"""Activation patterns: the bit rule per activation (docs/method.md, 'Activation patterns'), layer selection,
layouts, nested/residual/conv models, ties and train/eval handling.

Expected bits are computed by hand from the pre-activations (the layers' affine maps
applied explicitly), never through the library's hooks.
"""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import spacefold as sf
from spacefold._core import patterns

ACTIVATIONS = [
    lambda: nn.ReLU(),
    lambda: nn.ReLU(inplace=True),
    lambda: nn.LeakyReLU(0.1),
    lambda: nn.LeakyReLU(0.2, inplace=True),
    lambda: nn.PReLU(),
    lambda: nn.RReLU(),
    lambda: nn.ELU(),
    lambda: nn.CELU(),
    lambda: nn.SELU(),
    lambda: nn.GELU(),
    lambda: nn.GELU(approximate="tanh"),
    lambda: nn.SiLU(),
    lambda: nn.SiLU(inplace=True),
    lambda: nn.Mish(),
    lambda: nn.Hardswish(),
    lambda: nn.Tanh(),
    lambda: nn.Hardtanh(),
    lambda: nn.ReLU6(),
    lambda: nn.Sigmoid(),
    lambda: nn.Hardsigmoid(),
    lambda: nn.Hardsigmoid(inplace=True),
    lambda: nn.Softplus(),
    lambda: nn.Softsign(),
    lambda: nn.LogSigmoid(),
    lambda: nn.Tanhshrink(),
]
ACT_IDS = [repr(f()) for f in ACTIVATIONS]


def mlp(act, sizes=(3, 6, 5, 2), seed=0):
    torch.manual_seed(seed)
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


def manual_pre_activations(net: nn.Sequential, x: torch.Tensor) -> list[torch.Tensor]:
    """z of every hidden layer of an MLP Sequential(Linear, act, Linear, act, ..., Linear)."""
    zs = []
    h = x
    with torch.no_grad():
        for _i, layer in enumerate(net):
            if isinstance(layer, nn.Linear):
                h = h @ layer.weight.T + layer.bias
            else:
                zs.append(h.clone())
                h = layer(h.clone())
    return zs


@pytest.mark.parametrize("make", ACTIVATIONS, ids=ACT_IDS)
def test_bit_is_pre_activation_positive(make):
    net = mlp(make)
    net.eval()
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(1))
    got = sf.activation_patterns(net, x)
    zs = manual_pre_activations(net, x)
    expected = torch.cat([z > 0 for z in zs], dim=1)
    assert got.dtype == torch.bool and got.shape == (40, 11)
    assert torch.equal(got, expected)
    # the papers' rule: f(z) > 0, thresholded at f(0) for strictly positive f (docs/method.md, 'Activation patterns')
    act = make()
    act.eval()
    with torch.no_grad():
        f0 = act(torch.zeros(1)).item()
        paper = torch.cat([act(z.clone()) > f0 for z in zs], dim=1)
    assert torch.equal(got, paper)
    # both bit values occur, so the check is not vacuous
    assert got.any() and not got.all()


@pytest.mark.parametrize(
    "act, name",
    [
        (lambda: nn.Threshold(0.1, 0.0), "Threshold"),
        (lambda: nn.Softshrink(), "Softshrink"),
        (lambda: nn.Hardshrink(), "Hardshrink"),
    ],
)
def test_activation_without_rule_is_a_type_error(act, name):
    net = nn.Sequential(nn.Linear(3, 4), act(), nn.Linear(4, 2))
    with pytest.raises(TypeError, match=rf"{name}.*register_activation"):
        sf.activation_patterns(net, torch.randn(2, 3))


def test_register_activation_fixes_threshold(registry_guard):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Threshold(0.1, 0.0), nn.Linear(4, 2))
    # the paper's rule for Threshold: f(z) > 0 iff z > threshold
    sf.register_activation(nn.Threshold, lambda m, inputs, out: inputs[0] - m.threshold)
    x = torch.randn(50, 3)
    got = sf.activation_patterns(net, x)
    with torch.no_grad():
        z = x @ net[0].weight.T + net[0].bias
    assert torch.equal(got, z > 0.1)
    assert torch.equal(got, net[1](z) > 0)


def test_register_activation_fixes_glu(registry_guard):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 6), nn.GLU(), nn.Linear(3, 2))
    sf.register_activation(nn.GLU, lambda m, inputs, out: out)  # bit = f(z) > 0, one bit per unit
    x = torch.randn(30, 3)
    got, layout = sf.activation_patterns(net, x, return_layout=True)
    with torch.no_grad():
        z = x @ net[0].weight.T + net[0].bias
        a, b = z[:, :3], z[:, 3:]
    assert got.shape == (30, 3)
    assert torch.equal(got, a * torch.sigmoid(b) > 0)
    assert layout.layers[0].shape == (3,)


def test_register_activation_checks_arguments():
    with pytest.raises(TypeError, match="module_type"):
        sf.register_activation(len)
    with pytest.raises(TypeError, match="rule"):
        sf.register_activation(nn.Threshold, rule=3)


def test_softmax_is_not_an_activation_layer():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 3), nn.Softmax(dim=1))
    x = torch.randn(10, 3)
    got, layout = sf.activation_patterns(net, x, return_layout=True)
    assert layout.names == ["1"]
    with torch.no_grad():
        assert torch.equal(got, x @ net[0].weight.T + net[0].bias > 0)


def test_a_model_without_any_activation_is_a_value_error():
    class NoActivation(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(3, 4)
            self.fc2 = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc2(torch.abs(self.fc1(x)))  # |z| is no activation: no bits

    with pytest.raises(ValueError, match="no hookable activation.*F.relu"):
        sf.activation_patterns(NoActivation(), torch.randn(2, 3))


def named_net():
    torch.manual_seed(0)
    return nn.Sequential(
        OrderedDict(fc1=nn.Linear(3, 5), act1=nn.ReLU(), fc2=nn.Linear(5, 4), act2=nn.Tanh(), fc3=nn.Linear(4, 2))
    )


def test_layer_selection_by_name_and_type():
    net = named_net()
    x = torch.randn(20, 3)
    full, layout = sf.activation_patterns(net, x, return_layout=True)
    assert layout.names == ["act1", "act2"]
    assert layout["act1"] == slice(0, 5) and layout["act2"] == slice(5, 9)
    assert layout.n_neurons == 9
    z1, z2 = manual_pre_activations(net, x)
    assert torch.equal(full[:, layout["act1"]], z1 > 0)
    assert torch.equal(full[:, layout["act2"]], z2 > 0)
    assert torch.equal(sf.activation_patterns(net, x, layers="act2"), full[:, 5:])
    assert torch.equal(sf.activation_patterns(net, x, layers=nn.Tanh), full[:, 5:])
    assert torch.equal(sf.activation_patterns(net, x, layers=nn.ReLU), full[:, :5])
    assert torch.equal(sf.activation_patterns(net, x, layers=["act1", nn.Tanh]), full)
    # selection keeps forward order, whatever the order of the list
    assert torch.equal(sf.activation_patterns(net, x, layers=["act2", "act1"]), full)
    assert [n for n, _ in patterns.find_activations(net)] == ["act1", "act2"]


def test_layer_selection_errors():
    net = named_net()
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match=r"layers names 'nope'.*\['act1', 'act2'\]"):
        sf.activation_patterns(net, x, layers="nope")
    with pytest.raises(TypeError, match="layers selects 'fc1'.*no binarisation rule"):
        sf.activation_patterns(net, x, layers="fc1")
    with pytest.raises(ValueError, match="layers must name at least one"):
        sf.activation_patterns(net, x, layers=[])
    with pytest.raises(TypeError, match="layers"):
        sf.activation_patterns(net, x, layers=3)
    with pytest.raises(ValueError, match="selects no activation"):
        sf.activation_patterns(net, x, layers=nn.GELU)


def test_pattern_layout_and_keyerror():
    net = named_net()
    layout = patterns.pattern_layout(net, torch.randn(7, 3))
    assert isinstance(layout, patterns.PatternLayout)
    assert [(s.name, s.start, s.stop, s.shape) for s in layout.layers] == [("act1", 0, 5, (5,)), ("act2", 5, 9, (4,))]
    with pytest.raises(KeyError, match="nope"):
        layout["nope"]


class Block(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.inner = nn.Sequential(nn.Linear(width, width), nn.ReLU())
        self.out = nn.Linear(width, width)
        self.act = nn.ELU()

    def forward(self, x):
        return self.act(self.out(self.inner(x)))


def test_nested_modules():
    torch.manual_seed(0)
    net = nn.Sequential(OrderedDict(stem=nn.Linear(3, 4), b1=Block(4), b2=Block(4), head=nn.Linear(4, 2)))
    x = torch.randn(25, 3)
    got, layout = sf.activation_patterns(net, x, return_layout=True)
    assert layout.names == ["b1.inner.1", "b1.act", "b2.inner.1", "b2.act"]
    expected = []
    with torch.no_grad():
        h = net.stem(x)
        for block in (net.b1, net.b2):
            z = h @ block.inner[0].weight.T + block.inner[0].bias
            expected.append(z > 0)
            z = torch.relu(z) @ block.out.weight.T + block.out.bias
            expected.append(z > 0)
            h = F.elu(z)
    assert torch.equal(got, torch.cat(expected, dim=1))
    assert torch.equal(sf.activation_patterns(net, x, layers=["b2.inner.1", "b2.act"]), got[:, 8:])
    # selecting a container module by name is an error: it has no rule
    with pytest.raises(TypeError, match="'b2'"):
        sf.activation_patterns(net, x, layers="b2")


class Residual(nn.Module):
    """One nn.ReLU used twice: relu(fc2(relu(fc1(x))) + x)."""

    def __init__(self, width=4):
        super().__init__()
        self.fc1 = nn.Linear(width, width)
        self.fc2 = nn.Linear(width, width)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.fc2(self.relu(self.fc1(x))) + x)


def test_residual_block_reusing_one_relu():
    torch.manual_seed(0)
    net = Residual()
    x = torch.randn(30, 4)
    got, layout = sf.activation_patterns(net, x, return_layout=True)
    assert layout.names == ["relu", "relu#1"]
    assert [(s.module_name, s.call) for s in layout.layers] == [("relu", 0), ("relu", 1)]
    with torch.no_grad():
        z1 = x @ net.fc1.weight.T + net.fc1.bias
        z2 = torch.relu(z1) @ net.fc2.weight.T + net.fc2.bias + x
    assert torch.equal(got[:, layout["relu"]], z1 > 0)
    assert torch.equal(got[:, layout["relu#1"]], z2 > 0)


def test_small_conv_net():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(2, 3, 2), nn.GELU(), nn.Flatten(), nn.Linear(12, 2)
    )
    x = torch.randn(6, 1, 9, 9)
    got, layout = sf.activation_patterns(net, x, return_layout=True)
    with torch.no_grad():
        z1 = F.conv2d(x, net[0].weight, net[0].bias)
        z2 = F.conv2d(F.max_pool2d(torch.relu(z1), 2), net[3].weight, net[3].bias)
    assert [s.shape for s in layout.layers] == [(2, 7, 7), (3, 2, 2)]
    assert got.shape == (6, 98 + 12)
    assert torch.equal(got, torch.cat([(z1 > 0).flatten(1), (z2 > 0).flatten(1)], dim=1))


def test_tie_rule_and_tie_tol():
    net = nn.Sequential(nn.Linear(1, 1), nn.ReLU())
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[0].bias.fill_(0.0)
    x = torch.tensor([[-1.0], [0.0], [1e-3], [1.0]])
    # z == 0 gives bit 0 (strict rule z > 0)
    assert sf.activation_patterns(net, x).flatten().tolist() == [False, False, True, True]
    assert sf.activation_patterns(net, x, tie_tol=1e-2).flatten().tolist() == [False, False, False, True]
    assert sf.activation_patterns(net, x, tie_tol=1e-4).flatten().tolist() == [False, False, True, True]


def test_tie_tol_on_inplace_activation_uses_the_pre_activation():
    net = nn.Sequential(nn.Linear(1, 1), nn.SiLU(inplace=True))
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[0].bias.fill_(0.0)
    x = torch.tensor([[0.3], [0.1]])
    # silu(0.3) = 0.17 < 0.2 < 0.3: the bit must follow z, not the overwritten input
    assert sf.activation_patterns(net, x, tie_tol=0.2).flatten().tolist() == [True, False]


def test_train_mode_is_restored_and_patterns_use_eval_mode():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 4), nn.ReLU())
    net.train()
    # give BatchNorm non-trivial running statistics
    with torch.no_grad():
        for _ in range(5):
            net(torch.randn(64, 3) * 2 + 1)
    stats = (net[1].running_mean.clone(), net[1].running_var.clone(), int(net[1].num_batches_tracked))
    x = torch.randn(32, 3)
    got = sf.activation_patterns(net, x)
    assert all(m.training for m in net.modules())
    assert torch.equal(net[1].running_mean, stats[0]) and torch.equal(net[1].running_var, stats[1])
    assert int(net[1].num_batches_tracked) == stats[2]
    # manual eval-mode pre-activations
    bn = net[1]
    with torch.no_grad():
        z1 = (x @ net[0].weight.T + net[0].bias - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps)
        z1 = z1 * bn.weight + bn.bias
        z2 = torch.relu(z1) @ net[4].weight.T + net[4].bias
    assert torch.equal(got, torch.cat([z1 > 0, z2 > 0], dim=1))
    assert torch.equal(sf.activation_patterns(net, x), got)  # no dropout noise


def test_mixed_modes_are_restored_per_module():
    net = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.3), nn.ReLU(), nn.Linear(4, 2))
    net.train()
    net[1].eval()
    sf.activation_patterns(net, torch.randn(2, 3))
    assert [m.training for m in net] == [True, False, True, True] and net.training


def test_batch_size_chunking_equals_one_pass():
    net = mlp(lambda: nn.ReLU(), sizes=(3, 7, 7, 2))
    x = torch.randn(53, 3)
    one = sf.activation_patterns(net, x)
    for bs in (1, 5, 52, 53, 1000):
        assert torch.equal(sf.activation_patterns(net, x, batch_size=bs), one)


def test_inputs_follow_model_dtype():
    net = mlp(lambda: nn.ReLU()).double()
    x = torch.randn(10, 3)
    assert torch.equal(sf.activation_patterns(net, x), sf.activation_patterns(net, x.double()))


def test_is_piecewise_linear_only_for_kinks_at_zero():
    assert patterns.is_piecewise_linear(nn.ReLU())
    assert patterns.is_piecewise_linear(nn.LeakyReLU())
    assert patterns.is_piecewise_linear(nn.PReLU())
    # Hardtanh and ReLU6 bend away from z = 0, where no bit records the kink
    assert not patterns.is_piecewise_linear(nn.Hardtanh())
    assert not patterns.is_piecewise_linear(nn.ReLU6())
    assert not patterns.is_piecewise_linear(nn.Tanh())
