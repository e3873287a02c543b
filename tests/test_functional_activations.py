"""Activations called as functions in forward: bits like the modules', in every walk method.

Oracles: the pre-activations computed by hand (a plain forward pass of the Linear layers), the
module form of the same network, a dense grid, and the exact walk against bisection.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import spacefold as sf
from spacefold._core import patterns
from spacefold._core.folding import walk_batch
from spacefold._core.walk.bisect import default_n0
from spacefold.data import load_model
from spacefold.errors import InputError, InputTypeError

f64 = torch.float64


class OneAct(nn.Module):
    """Linear -> f -> Linear, with f a function called in forward."""

    def __init__(self, f, d_in=3, width=6):
        super().__init__()
        self.fc1 = nn.Linear(d_in, width)
        self.fc2 = nn.Linear(width, 2)
        self.f = f

    def forward(self, x):
        return self.fc2(self.f(self.fc1(x)))


_W = torch.tensor([0.3, -0.2, 0.5, 0.1, -0.4, 0.25])

# (function as called in forward, the module that computes the same, call-site name)
CASES = [
    (F.relu, nn.ReLU(), "relu"),
    (torch.relu, nn.ReLU(), "relu"),
    (lambda h: h.relu(), nn.ReLU(), "relu"),
    (lambda h: F.relu(h, inplace=True), nn.ReLU(), "relu"),
    (lambda h: h.relu_(), nn.ReLU(), "relu"),
    (lambda h: F.leaky_relu(h, 0.2), nn.LeakyReLU(0.2), "leaky_relu"),
    (lambda h: F.prelu(h, _W), nn.PReLU(6), "prelu"),
    (F.rrelu, nn.RReLU(), "rrelu"),
    (F.hardtanh, nn.Hardtanh(), "hardtanh"),
    (lambda h: F.hardtanh(h, -0.5, 0.5, inplace=True), nn.Hardtanh(-0.5, 0.5), "hardtanh"),
    (F.relu6, nn.ReLU6(), "relu6"),
    (F.elu, nn.ELU(), "elu"),
    (F.celu, nn.CELU(), "celu"),
    (F.selu, nn.SELU(), "selu"),
    (F.gelu, nn.GELU(), "gelu"),
    (lambda h: F.gelu(h, approximate="tanh"), nn.GELU("tanh"), "gelu"),
    (F.silu, nn.SiLU(), "silu"),
    (F.mish, nn.Mish(), "mish"),
    (F.hardswish, nn.Hardswish(), "hardswish"),
    (torch.tanh, nn.Tanh(), "tanh"),
    (lambda h: h.tanh(), nn.Tanh(), "tanh"),
    (torch.sigmoid, nn.Sigmoid(), "sigmoid"),
    (lambda h: h.sigmoid_(), nn.Sigmoid(), "sigmoid"),
    (F.hardsigmoid, nn.Hardsigmoid(), "hardsigmoid"),
    (F.softplus, nn.Softplus(), "softplus"),
    (F.softsign, nn.Softsign(), "softsign"),
    (F.logsigmoid, nn.LogSigmoid(), "logsigmoid"),
    (F.tanhshrink, nn.Tanhshrink(), "tanhshrink"),
]


@pytest.mark.parametrize("f, module, site", CASES, ids=[f"{c[2]}-{i}" for i, c in enumerate(CASES)])
def test_a_functional_call_gives_the_bits_of_its_module(f, module, site):
    torch.manual_seed(0)
    fn_net = OneAct(f)
    mod_net = nn.Sequential(fn_net.fc1, module, fn_net.fc2)
    x = torch.randn(200, 3)
    got, layout = sf.activation_patterns(fn_net, x, return_layout=True)
    with torch.no_grad():
        z = fn_net.fc1(x)  # the pre-activations by hand
    assert torch.equal(got, z > 0)  # every registered activation: bit = z > 0
    assert torch.equal(got, sf.activation_patterns(mod_net, x))
    assert got.any() and not got.all()
    assert layout.names == [f":{site}"]
    (spec,) = layout.layers
    assert spec.functional and spec.kind == type(module).__name__ and spec.shape == (6,)


def test_every_registered_module_type_has_a_functional_form():
    made = {
        type(s.make((torch.zeros(2, 2),), {})) for s in patterns.FUNCTIONAL_ACTIVATIONS.values() if s.name != "prelu"
    } | {nn.PReLU}
    for t in patterns._PIECEWISE_LINEAR + patterns._SMOOTH_MONOTONE + (nn.GLU,):
        assert t in made, t


class Mixed(nn.Module):
    """Modules and functions in one forward pass, nested, with a reused module."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(2, 5)
        self.act = nn.ReLU()
        self.block = Block()
        self.fc3 = nn.Linear(4, 3)
        self.fc4 = nn.Linear(3, 1)

    def forward(self, x):
        h = self.act(self.fc1(x))
        h = self.block(h)
        h = torch.tanh(self.fc3(h))
        return self.fc4(self.act(h))  # the module again: "act#1"


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(5, 4)

    def forward(self, h):
        return F.gelu(self.fc(h))


def test_mixed_modules_and_functions_none_left_out():
    torch.manual_seed(1)
    net = Mixed()
    x = torch.randn(100, 2)
    got, layout = sf.activation_patterns(net, x, return_layout=True)
    assert layout.names == ["act", "block:gelu", ":tanh", "act#1"]
    assert [s.functional for s in layout.layers] == [False, True, True, False]
    with torch.no_grad():  # the forward pass by hand
        z1 = net.fc1(x)
        z2 = net.block.fc(torch.relu(z1))
        z3 = net.fc3(F.gelu(z2))
        z4 = torch.tanh(z3)
    assert torch.equal(got, torch.cat([z1 > 0, z2 > 0, z3 > 0, z4 > 0], 1))
    # layers= picks call sites by name, and a type picks its modules and its functions
    assert torch.equal(sf.activation_patterns(net, x, layers="block:gelu"), z2 > 0)
    assert torch.equal(
        sf.activation_patterns(net, x, layers=[":tanh", "act"]), got[:, [*range(5), *range(9, 12), *range(12, 15)]]
    )
    assert torch.equal(sf.activation_patterns(net, x, layers=nn.Tanh), z3 > 0)
    assert torch.equal(sf.activation_patterns(net, x, layers=nn.GELU), z2 > 0)
    with pytest.raises(InputError, match=r"call site 'block:relu'.*'block:gelu'"):
        sf.activation_patterns(net, x, layers="block:relu")


def test_transformer_encoder_layers_relu_and_gelu_in_eval_mode():
    torch.manual_seed(0)
    for act in ("relu", "gelu"):
        layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, activation=act, batch_first=True)
        model = nn.Sequential(
            nn.Unflatten(1, (3, 8)),
            nn.TransformerEncoder(layer, 2, enable_nested_tensor=False),
            nn.Flatten(),
            nn.Linear(24, 2),
        ).eval()
        x = torch.randn(20, 24)
        # the pre-activations read independently: the output of every linear1, fast path off
        seen = []
        hooks = [
            model[1].layers[i].linear1.register_forward_hook(lambda m, a, o, seen=seen: seen.append(o.detach()))
            for i in range(2)
        ]
        torch.backends.mha.set_fastpath_enabled(False)
        try:
            with torch.no_grad():
                model(x)
        finally:
            torch.backends.mha.set_fastpath_enabled(True)
            for h in hooks:
                h.remove()
        z = torch.cat([s.reshape(20, -1) for s in seen], 1)
        got, layout = sf.activation_patterns(model, x, return_layout=True)
        assert layout.names == [f"1.layers.0:{act}", f"1.layers.1:{act}"]
        assert torch.equal(got, z > 0) and got.any() and not got.all()
        assert torch.backends.mha.get_fastpath_enabled()  # restored
        assert not model.training
        # every walk method measures it; the dense grid sees what bisection sees
        x1, x2 = x[:2], x[2:4]
        b = walk_batch(model, x1, x2, method="bisect")
        u = walk_batch(model, x1, x2, method="uniform", steps=4000)
        assert b.patterns.shape[1] == 96
        for wb, wu in zip(b.walks(), u.walks()):
            assert wb.n_regions >= wu.n_regions > 1


def test_a_call_that_cannot_be_seen_is_an_error():
    torch.manual_seed(0)
    scripted = torch.jit.script(nn.Sequential(nn.Linear(3, 4), nn.ReLU()))
    net = nn.Sequential(nn.Linear(3, 3), nn.Tanh(), scripted, nn.Linear(4, 1))
    with pytest.raises(InputError, match=r"activation relu inside '<model>' \(Sequential\).*TorchScript module '2'"):
        sf.activation_patterns(net, torch.randn(4, 3))
    # an activation function with no binarisation rule is named with its call site
    with pytest.raises(InputTypeError, match=r"softshrink.*call site ':softshrink'.*register_activation"):
        sf.activation_patterns(OneAct(F.softshrink), torch.randn(4, 3))
    # ...unless layers= leaves it out
    net2 = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), OneAct(F.softshrink, 4))
    assert sf.activation_patterns(net2, torch.randn(4, 3), layers="1").shape == (4, 4)


def test_a_submodule_compiled_with_torch_compile_gives_its_bits():
    torch.manual_seed(0)
    sub = OneAct(F.relu, 3, 4)
    net = nn.Sequential(nn.Linear(3, 3), nn.Tanh(), torch.compile(sub, backend="eager"))
    x = torch.randn(20, 3)
    got, layout = sf.activation_patterns(net, x, return_layout=True)
    assert layout.names == ["1", "2._orig_mod:relu"]
    with torch.no_grad():
        z1 = net[0](x)
        z2 = sub.fc1(torch.tanh(z1))
    assert torch.equal(got, torch.cat([z1 > 0, z2 > 0], 1))


def test_a_call_site_count_that_differs_between_inputs_is_an_error():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 3)

        def forward(self, x):
            h = F.relu(self.fc(x))
            if float(x.sum()) > 0:  # data-dependent control flow
                h = F.relu(h - 0.5)
            return h

    x = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])
    with pytest.raises(InputError, match=r"differently at different inputs.*:relu#1"):
        sf.activation_patterns(Branchy(), x, batch_size=1)


def test_functional_piecewise_linear_walks_exact_bisect_uniform_agree():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(3)
            self.a, self.b, self.c, self.d = nn.Linear(2, 8), nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 1)
            self.act = nn.ReLU()

        def forward(self, x):
            h = F.relu(self.a(x))
            h = self.act(self.b(h))
            h = F.leaky_relu(self.c(h), 0.1)
            return self.d(h.relu())

    net = Net().double()
    assert default_n0(net) == 2  # every kink gives a bit: classes are convex
    g = torch.Generator().manual_seed(0)
    x1, x2 = torch.randn(6, 2, generator=g, dtype=f64) * 2, torch.randn(6, 2, generator=g, dtype=f64) * 2
    e = walk_batch(net, x1, x2, method="exact")
    b = walk_batch(net, x1, x2, method="bisect")
    u = walk_batch(net, x1, x2, method="uniform", steps=20000)
    assert e.patterns.shape[1] == 32
    assert torch.equal(e.offsets, b.offsets) and torch.equal(e.patterns, b.patterns)
    assert torch.equal(e.offsets, u.offsets) and torch.equal(e.patterns, u.patterns)
    assert int(e.n_regions.sum()) > 20
    for layers in (":leaky_relu", [":relu", "act"], nn.LeakyReLU):
        fe = sf.folding_batch(net, x1, x2, method="exact", layers=layers)
        fb = sf.folding_batch(net, x1, x2, method="bisect", layers=layers)
        assert torch.equal(fe.n_regions, fb.n_regions) and torch.equal(fe.chi, fb.chi)
    # the exact walk's certificate checks the functional kinks too: a coarse walk that misses regions fails it
    assert sf.verify(net, x1, x2, e, mode="certificate").ok
    coarse = walk_batch(net, x1, x2, method="uniform", steps=3)
    assert not sf.verify(net, x1, x2, coarse, mode="certificate").ok
    # ...and only functional kinks: the hardtanh's kinks at ±1 give no bits, yet bend the map
    h_net = nn.Sequential(OneAct(F.hardtanh, 2, 8), nn.ReLU()).double()
    e2 = walk_batch(h_net, x1, x2, method="exact", layers="1")
    u2 = walk_batch(h_net, x1, x2, method="uniform", steps=20000, layers="1")
    assert torch.equal(e2.patterns, u2.patterns) and torch.equal(e2.offsets, u2.offsets)
    assert sf.verify(h_net, x1, x2, e2, mode="certificate", layers="1").ok


def test_functional_gelu_bisect_against_a_dense_grid():
    torch.manual_seed(5)
    net = nn.Sequential(OneAct(torch.tanh, 2, 6), OneAct(F.gelu, 2, 6)).double()
    assert default_n0(net) == 1025
    g = torch.Generator().manual_seed(1)
    x1, x2 = torch.randn(5, 2, generator=g, dtype=f64) * 3, torch.randn(5, 2, generator=g, dtype=f64) * 3
    b = walk_batch(net, x1, x2, method="bisect")
    u = walk_batch(net, x1, x2, method="uniform", steps=50000)
    assert b.patterns.shape[1] == 12
    assert torch.equal(b.offsets, u.offsets) and torch.equal(b.patterns, u.patterns)
    with pytest.raises(sf.NotPiecewiseLinearError, match="tanh .call site '0:tanh'.*not piecewise linear"):
        walk_batch(net, x1, x2, method="exact")


def test_exported_and_torchscript_files_with_functional_activations(tmp_path):

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(2)
            self.a, self.b, self.c = nn.Linear(4, 6), nn.Linear(6, 6), nn.Linear(6, 2)

        def forward(self, x):
            return self.c(F.mish(self.b(F.gelu(self.a(x)))) + torch.tanh(self.b(F.silu(self.a(x)))))

    net = Net().eval()
    x = torch.randn(30, 4)
    want = sf.activation_patterns(net, x)
    assert want.shape == (30, 24)
    ep = torch.export.export(net, (x[:2],), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(ep, tmp_path / "m.pt2")
    loaded = load_model(tmp_path / "m.pt2")
    assert torch.equal(sf.activation_patterns(loaded, x), want)

    class ReluNet(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(4)
            self.a, self.b = nn.Linear(4, 6), nn.Linear(6, 2)

        def forward(self, x):
            return self.b(torch.relu(self.a(x)))

    rn = ReluNet().eval()
    torch.jit.save(torch.jit.script(rn), tmp_path / "m.ts")
    ts = load_model(tmp_path / "m.ts")
    assert torch.equal(sf.activation_patterns(ts, x), sf.activation_patterns(rn, x))
    x1, x2 = x[:3].double(), x[3:6].double()
    e = walk_batch(ts.double(), x1, x2, method="exact")
    assert torch.equal(e.patterns, walk_batch(rn.double(), x1, x2, method="exact").patterns)


def test_the_exact_plane_follows_functional_relus_and_refuses_functional_gelu():
    from spacefold._core.plane import plane_regions, plane_through, supports_exact_plane

    torch.manual_seed(7)
    relu_net = nn.Sequential(OneAct(F.relu, 2, 6), nn.ReLU()).double()
    gelu_net = nn.Sequential(OneAct(F.gelu, 2, 6), nn.ReLU()).double()
    assert supports_exact_plane(relu_net) is None
    assert "F.gelu" in supports_exact_plane(gelu_net)
    x = torch.randn(3, 2, dtype=f64)
    pr = plane_regions(relu_net, plane_through(x[0], x[1], x[2]))
    assert pr.patterns.shape[1] == 8  # the functional block and the module's
    # every polygon's pattern is the pattern at its centroid
    pts = pr.plane.inputs(pr.centroids())
    assert torch.equal(sf.activation_patterns(relu_net, pts), pr.patterns)
    assert pr.patterns.shape[0] > 5


class TwoActs(nn.Module):
    """Linear -> f -> Linear -> ReLU -> Linear: the output of f reaches a later activation."""

    def __init__(self, f, seed=11):
        super().__init__()
        torch.manual_seed(seed)
        self.a, self.b, self.c = nn.Linear(3, 6), nn.Linear(6, 5), nn.Linear(5, 2)
        self.f = f

    def forward(self, x):
        return self.c(torch.relu(self.b(self.f(self.a(x)))))


def test_functional_rrelu_in_eval_is_the_module_in_eval_and_random_slopes_are_refused():
    fn_net = TwoActs(lambda h: F.rrelu(h, 0.1, 0.3, training=False)).double()
    mod_net = TwoActs(nn.RReLU(0.1, 0.3).eval()).double()
    torch.manual_seed(0)
    x1, x2 = 3 * torch.randn(6, 3, dtype=f64), 3 * torch.randn(6, 3, dtype=f64)
    want = walk_batch(mod_net, x1, x2, method="exact")
    for seed in (1, 2):  # the walk does not depend on the random state
        torch.manual_seed(seed)
        got = walk_batch(fn_net, x1, x2, method="exact")
        assert torch.equal(got.patterns, want.patterns) and torch.equal(got.t, want.t)
    assert torch.equal(sf.activation_patterns(fn_net, x1), sf.activation_patterns(mod_net, x1)[:, :11])
    random_net = TwoActs(lambda h: F.rrelu(h, 0.1, 0.3, training=True))
    for method in ("exact", "bisect"):
        with pytest.raises(InputError, match=r"rrelu is called with training=True .*\(call site ':rrelu'\)"):
            sf.folding_batch(random_net, x1.float(), x2.float(), method=method, workers=1)


@pytest.mark.parametrize("name", ["gelu", "relu", "silu", "tanh"])
def test_an_operator_called_without_its_overload_gives_bits(name):
    torch.manual_seed(0)
    net = OneAct(getattr(torch.ops.aten, name))  # the packet, torch.ops.aten.gelu(x), not .default
    x = torch.randn(20, 3)
    got, layout = sf.activation_patterns(net, x, return_layout=True)
    assert layout.names == [f":{name}"]
    with torch.no_grad():
        assert torch.equal(got, net.fc1(x) > 0)


class ParamGate(nn.Module):
    """A learned gate of the hidden units, independent of the input: h * sigmoid(alpha)."""

    def __init__(self, shape, scale=1.0):
        super().__init__()
        torch.manual_seed(5)
        self.a, self.b = nn.Linear(3, 5), nn.Linear(5, 2)
        self.alpha = nn.Parameter(torch.randn(shape))
        self.scale = scale

    def forward(self, x):
        alpha = self.alpha if self.scale == 1.0 else self.alpha * self.scale
        return self.b(F.relu(self.a(x)) * torch.sigmoid(alpha))


@pytest.mark.parametrize("shape", [(5,), (1,), (4, 5)])
@pytest.mark.parametrize("scale", [1.0, 2.0])  # the parameter itself, or an expression of it
def test_an_activation_of_parameters_alone_gives_no_bits(shape, scale):
    net = ParamGate(shape, scale)
    x = torch.randn(4, 3)  # a batch as long as the parameter's first dimension, (4, 5)
    got, layout = sf.activation_patterns(net, x, return_layout=True)
    assert layout.names == [":relu"]
    with torch.no_grad():
        assert torch.equal(got, net.a(x) > 0)
    if shape != (4, 5):  # the model itself takes any batch
        for method in ("exact", "bisect", "certified"):
            fb = sf.folding_batch(net, x[:2], x[2:], method=method, workers=1)
            assert fb.n_regions.min() >= 1


def test_a_parametrization_with_an_activation_gives_no_bits():
    from torch.nn.utils import parametrize

    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    parametrize.register_parametrization(net[2], "weight", nn.Softplus())  # positive weights
    x = torch.randn(4, 3)  # as many inputs as the parametrized layer's outputs... and more
    for xs in (x, torch.randn(7, 3)):
        got, layout = sf.activation_patterns(net, xs, return_layout=True)
        assert layout.names == ["1"]
        with torch.no_grad():
            assert torch.equal(got, net[0](xs) > 0)


class TokensInBatch(nn.Module):
    """Tokens folded into the batch dimension around an activation: (B, 3, 4) -> (3B, 4)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(12, 2)

    def forward(self, x):
        h = F.gelu(self.a(x.reshape(-1, 4)))
        return self.b(h.reshape(x.shape[0], 12))


def test_rows_that_are_not_the_batch_are_refused_by_call_site():
    x = torch.randn(5, 12)
    with pytest.raises(InputError, match=r"activation ':gelu' \(GELU\) gave scores of shape \(15, 4\).* batch size 5"):
        sf.activation_patterns(TokensInBatch(), x)
    with pytest.raises(InputError, match=r"activation ':gelu'"):
        sf.folding_batch(TokensInBatch(), x[:2], x[2:4], method="bisect", workers=1)

    class Outer(nn.Module):  # leaves the inner activation out with layers=
        def __init__(self):
            super().__init__()
            self.inner = TokensInBatch()

        def forward(self, x):
            return self.inner(torch.relu(x))

    for method in ("bisect", "uniform"):
        fb = sf.folding_batch(Outer(), x[:2], x[2:4], method=method, layers=[":relu"], workers=1)
        assert fb.n_regions.min() >= 1


def test_rules_must_return_one_row_of_scores_per_input(registry_guard):
    class NoScore(nn.Module):
        def forward(self, z):
            return z

    class Pooled(nn.Module):
        def forward(self, z):
            return torch.relu(z)

    sf.register_activation(NoScore, rule=lambda module, inputs, output: None)
    with pytest.raises(InputTypeError, match=r"rule of NoScore \(activation '1'\) returned NoneType"):
        sf.activation_patterns(nn.Sequential(nn.Linear(3, 4), NoScore()), torch.randn(6, 3))
    sf.register_activation(NoScore, rule=lambda module, inputs, output: inputs[3])
    with pytest.raises(InputTypeError, match=r"rule of NoScore \(activation '1'\) raised IndexError"):
        sf.activation_patterns(nn.Sequential(nn.Linear(3, 4), NoScore()), torch.randn(6, 3))
    sf.register_activation(Pooled, rule=lambda module, inputs, output: output.sum(0))
    with pytest.raises(InputError, match=r"activation '1' \(Pooled\) gave scores of shape \(4,\).* batch size 6"):
        sf.activation_patterns(nn.Sequential(nn.Linear(3, 4), Pooled()), torch.randn(6, 3))


def test_a_module_of_torch_export_is_pointed_to_load_model_which_reads_every_activation(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 6), nn.PReLU(6), nn.Linear(6, 5), nn.LogSigmoid(), nn.Linear(5, 4), nn.ReLU6())
    net = nn.Sequential(*net, nn.Dropout(0.5), nn.Linear(4, 2)).eval()
    x = torch.randn(8, 3)
    program = torch.export.export(net, (x[:2],), dynamic_shapes=({0: torch.export.Dim("batch")},))
    for model in (program.module(), nn.Sequential(program.module(), nn.ReLU())):  # its mode cannot be switched
        with pytest.raises(InputError, match=r"module of torch.export .* spacefold.data.load_model\(path\)"):
            sf.activation_patterns(model, x)
        with pytest.raises(InputError, match=r"module of torch.export"):
            sf.folding_batch(model, x[:4], x[4:], method="bisect", workers=1)
    torch.export.save(program, tmp_path / "m.pt2")
    loaded = load_model(tmp_path / "m.pt2")  # PReLU, LogSigmoid and ReLU6 as ATen operators
    assert torch.equal(sf.activation_patterns(loaded, x), sf.activation_patterns(net, x))
    got = sf.folding_batch(loaded, x[:4], x[4:], method="bisect", workers=1)
    assert torch.equal(got.chi, sf.folding_batch(net, x[:4], x[4:], method="bisect", workers=1).chi)

    class Operator(nn.Module):  # an activation operator no rule reads in this form
        def forward(self, z):
            return torch.ops.aten.log_sigmoid_forward(z)[0]

    with pytest.raises(InputTypeError, match=r"activation operator aten.log_sigmoid_forward"):
        sf.activation_patterns(nn.Sequential(nn.Linear(3, 4), Operator()), x)


def test_a_torchscript_module_passed_directly_points_to_load_model():
    net = torch.jit.script(nn.Sequential(nn.Linear(3, 4), nn.ReLU()))
    with pytest.raises(InputError, match=r"is a TorchScript module.* spacefold.data.load_model\(path\)"):
        sf.activation_patterns(net, torch.randn(2, 3))
