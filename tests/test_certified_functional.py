"""The certified walk through activations called as functions and through gated units, PyTorch's
transformer layers with string activations and with batch_first=False, and the attention fast
path switched off wherever patterns are recorded: against the exact walk (piecewise-linear
networks) and dense grids."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import spacefold as sf
from spacefold._core.folding import walk_batch
from spacefold._core.walk.certified import CertifiedUnsupportedError
from spacefold.errors import InputError
from spacefold.nn import GEGLU, ReGLU, SwiGLU


def _dense_mismatches(wc, x1, x2, model, steps=2000, tol=1e-6):
    """Grid points (not within 2 tol of a breakpoint of the walk) whose pattern differs from the
    walk's, read as a step function of t."""
    t = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
    pts = x1.double() + t.view(-1, *([1] * x1.dim())) * (x2 - x1).double()
    grid = sf.activation_patterns(copy.deepcopy(model).double(), pts)
    idx = torch.searchsorted(wc.t, t, right=True) - 1
    near = ((t.unsqueeze(1) - wc.t.unsqueeze(0)).abs() <= 2 * tol).any(1)
    return int(((wc.patterns[idx] != grid).any(1) & ~near).sum())


class FunctionalPL(nn.Module):
    """Piecewise-linear activations called as functions and as a Tensor method."""

    def __init__(self, d=5, w=10):
        super().__init__()
        self.l1, self.l2, self.l3, self.l4 = nn.Linear(d, w), nn.Linear(w, w), nn.Linear(w, w), nn.Linear(w, 3)

    def forward(self, x):
        h = F.relu(self.l1(x))
        h = F.leaky_relu(self.l2(h), 0.2)
        return self.l4(self.l3(h).relu())


class FunctionalSmooth(nn.Module):
    def __init__(self, d=4, w=8):
        super().__init__()
        self.l1, self.l2, self.l3, self.l4 = nn.Linear(d, w), nn.Linear(w, w), nn.Linear(w, 6), nn.Linear(6, 2)

    def forward(self, x):
        h = F.gelu(self.l1(x))
        h = torch.tanh(self.l2(h))
        return self.l4(F.silu(self.l3(h)) + torch.sigmoid(h[..., :6]))


class TinyViT(nn.Module):
    """4 tokens of 3 features, an encoder of PyTorch's layers with a string activation."""

    def __init__(self, activation="gelu", batch_first=True, blocks=1, d=8, norm_first=False):
        super().__init__()
        self.batch_first = batch_first
        self.emb = nn.Linear(3, d)
        layer = nn.TransformerEncoderLayer(
            d, 2, 16, dropout=0.0, activation=activation, batch_first=batch_first, norm_first=norm_first
        )
        self.enc = nn.TransformerEncoder(layer, blocks, enable_nested_tensor=False)
        self.head = nn.Linear(d, 2)

    def forward(self, x):
        h = self.emb(x.view(-1, 4, 3))
        if not self.batch_first:
            h = h.transpose(0, 1)
        h = self.enc(h)
        if not self.batch_first:
            h = h.transpose(0, 1)
        return self.head(h.mean(1))


def _pairs(d, n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, d, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("seed", [0, 1])
def test_functional_piecewise_linear_equals_exact(seed):
    torch.manual_seed(seed)
    model = FunctionalPL().double().eval()
    x1, x2 = _pairs(5, 4, seed)
    we = walk_batch(model, x1, x2, method="exact")
    wc = walk_batch(model, x1, x2, method="certified")
    assert bool(wc.completeness().all())
    assert wc.patterns.shape[1] == 30
    for i in range(4):
        assert torch.equal(we[i].patterns, wc[i].patterns)
        assert float((we[i].t - wc[i].t).abs().max()) <= 1e-6 + 1e-9


def _gated_models():
    torch.manual_seed(3)
    return [
        ("functional", FunctionalSmooth(), 4),
        ("swiglu-mlp", nn.Sequential(SwiGLU(4, 8), nn.Linear(8, 6), SwiGLU(6, 6), nn.Linear(6, 3)), 4),
        ("geglu", nn.Sequential(GEGLU(4, 8, bias=True), nn.Linear(8, 3)), 4),
        ("reglu", nn.Sequential(ReGLU(4, 8, bias=True), nn.Linear(8, 6), ReGLU(6, 5)), 4),
        ("nn.GLU", nn.Sequential(nn.Linear(4, 8), nn.GLU(), nn.Linear(4, 6), nn.Tanh()), 4),
        ("F.glu", _FGlu(), 4),
        ("vit-gelu", TinyViT("gelu"), 12),
        ("vit-relu-prenorm", TinyViT("relu", norm_first=True), 12),
        ("vit-gelu-seq-first", TinyViT("gelu", batch_first=False), 12),
    ]


class _FGlu(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1, self.l2 = nn.Linear(4, 10), nn.Linear(5, 2)

    def forward(self, x):
        return self.l2(F.glu(self.l1(x), dim=-1))


@pytest.mark.parametrize("name,model,d", _gated_models(), ids=[m[0] for m in _gated_models()])
def test_certified_agrees_with_dense_grid(name, model, d):
    model = model.double().eval()
    x1, x2 = _pairs(d, 3, 7)
    wc = walk_batch(model, x1, x2, method="certified")
    assert bool(wc.completeness().all()), name
    assert wc.patterns.shape[1] == sf.activation_patterns(model, x1[:1]).shape[1]
    for i in range(3):
        assert _dense_mismatches(wc[i], x1[i], x2[i], model) == 0, (name, i)
    assert int(wc.n_regions.sum()) > 3  # the segments cross boundaries: the comparison is not empty


def test_gate_bits_are_unit_outputs():
    """The certified walk's quantity of a gate is its unit output: where the gate of a ReGLU is
    closed (a <= 0) the bit is 0 whatever the value half does."""
    torch.manual_seed(0)
    unit = ReGLU(1, 2, bias=True).double()
    with torch.no_grad():
        unit.gate.weight.copy_(torch.tensor([[0.0], [1.0]]))
        unit.gate.bias.copy_(torch.tensor([-1.0, 0.0]))  # unit 0: gate always closed; unit 1: opens at x = 0
        unit.up.weight.copy_(torch.tensor([[1.0], [1.0]]))
        unit.up.bias.copy_(torch.tensor([0.0, 0.5]))  # unit 1: value > 0 for x > -0.5
    x1, x2 = torch.tensor([[-1.0]], dtype=torch.float64), torch.tensor([[1.0]], dtype=torch.float64)
    w = sf.walk(unit, x1[0], x2[0], method="certified")
    assert w.patterns.tolist() == [[False, False], [False, True]]
    assert abs(float(w.t[1]) - 0.5) <= 1e-6  # x = 0 at t = 0.5
    assert w.complete


def test_custom_gate_rule_refused_by_name():
    class MyGate(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 4), nn.Linear(3, 4)

        def forward(self, x):
            return torch.tanh(self.a(x)) * self.b(x)

    sf.register_activation(MyGate, rule=lambda module, inputs, output: output)
    try:
        model = nn.Sequential(nn.Linear(2, 3), MyGate(), nn.Linear(4, 1))
        with pytest.raises(CertifiedUnsupportedError, match=r"'1' \(MyGate\).*custom.*method='bisect'"):
            sf.folding_batch(model, torch.randn(2, 2), torch.randn(2, 2), method="certified")
        # bisection walks it
        assert len(sf.folding_batch(model, torch.randn(2, 2), torch.randn(2, 2), method="bisect")) == 2
    finally:
        from spacefold._core.patterns import _REGISTRY

        _REGISTRY.pop(MyGate, None)


def test_gate_subclass_with_own_forward_refused():
    class Scaled(SwiGLU):
        def forward(self, x):
            return 2 * super().forward(x)

    model = nn.Sequential(Scaled(3, 4), nn.Linear(4, 1))
    with pytest.raises(CertifiedUnsupportedError, match="Scaled"):
        sf.folding_batch(model, torch.randn(2, 3), torch.randn(2, 3), method="certified")


def test_layers_select_functional_call_sites():
    torch.manual_seed(1)
    model = FunctionalSmooth().double().eval()
    x1, x2 = _pairs(4, 2, 3)
    _, layout = sf.activation_patterns(model, x1, return_layout=True)
    assert layout.names == [":gelu", ":tanh", ":silu", ":sigmoid"]
    sub = walk_batch(model, x1, x2, method="certified", layers=[":tanh", nn.SiLU])
    full = walk_batch(model, x1, x2, method="certified")
    cols = torch.cat(
        [
            torch.arange(layout[":tanh"].start, layout[":tanh"].stop),
            torch.arange(layout[":silu"].start, layout[":silu"].stop),
        ]
    )
    for i in range(2):
        # the subset's walk is the full walk restricted to its columns, repeated patterns merged
        restricted = full[i].patterns[:, cols]
        keep = torch.ones(restricted.shape[0], dtype=torch.bool)
        keep[1:] = (restricted[1:] != restricted[:-1]).any(1)
        assert torch.equal(sub[i].patterns, restricted[keep])


# ------------------------------------------------------------------ batch_first=False


def test_seq_first_encoder_gives_the_bits_of_its_batch_first_twin():
    torch.manual_seed(2)
    bf = TinyViT("gelu", blocks=2).double().eval()
    sf_ = TinyViT("gelu", batch_first=False, blocks=2).double().eval()
    sf_.load_state_dict(bf.state_dict())
    x = torch.randn(6, 12, dtype=torch.float64)
    pb, lb = sf.activation_patterns(bf, x, return_layout=True)
    ps, ls = sf.activation_patterns(sf_, x, return_layout=True)
    assert lb.names == ls.names == ["enc.layers.0:gelu", "enc.layers.1:gelu"]
    assert torch.equal(pb, ps)
    # per input, the same bits as that input alone (the points of a batch do not attend to each other)
    assert torch.equal(ps[2:3], sf.activation_patterns(sf_, x[2:3]))
    for method in ("bisect", "certified"):
        a = sf.folding_batch(bf, x[:3], x[3:], method=method)
        b = sf.folding_batch(sf_, x[:3], x[3:], method=method)
        assert torch.equal(a.chi, b.chi) and torch.equal(a.n_regions, b.n_regions), method


def test_seq_first_layer_given_batch_first_input_refused():
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0), 1, enable_nested_tensor=False)
    x = torch.randn(3, 4, 8)
    with pytest.raises(InputError, match="batch_first=False.*batch size 1"):
        sf.folding_batch(enc, x, x.flip(0), method="bisect")
    with pytest.raises(InputError, match="batch_first=False"):
        sf.activation_patterns(enc, x)


# ------------------------------------------------------------------ the attention fast path


def test_fast_path_off_while_recording():
    """An encoder in eval mode under no_grad would take PyTorch's fused fast path (its
    activations in C++); the recorded bits are those of the plain forward (read from the
    first feed-forward layer's output in training mode, dropout 0, which never takes the fast
    path), and the fast-path flag is restored afterwards."""
    torch.manual_seed(4)
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, activation="gelu", batch_first=True)
    model = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
    x = torch.randn(5, 4, 8)
    z = []
    hooks = [
        lay.linear1.register_forward_hook(lambda m, a, o: z.append(o.reshape(o.shape[0], -1))) for lay in model.layers
    ]
    model.train()
    with torch.no_grad():
        model(x)
    model.eval()
    for h in hooks:
        h.remove()
    want = torch.cat(z, 1) > 0
    old = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(True)
    try:
        got = sf.activation_patterns(model, x)
        assert torch.backends.mha.get_fastpath_enabled() is True
        wb = sf.folding_batch(model, x[:2], x[2:4], method="bisect", return_walks=True)
        assert torch.backends.mha.get_fastpath_enabled() is True
    finally:
        torch.backends.mha.set_fastpath_enabled(old)
    assert torch.equal(got, want)
    assert torch.equal(wb.walks[0].patterns[0], want[0])


def test_no_fastpath_restores_the_flag_after_an_error():
    from spacefold._core.patterns import no_fastpath

    old = torch.backends.mha.get_fastpath_enabled()
    try:
        torch.backends.mha.set_fastpath_enabled(True)
        with pytest.raises(RuntimeError), no_fastpath():
            assert torch.backends.mha.get_fastpath_enabled() is False
            raise RuntimeError("inside")
        assert torch.backends.mha.get_fastpath_enabled() is True
    finally:
        torch.backends.mha.set_fastpath_enabled(old)


def test_no_fastpath_sends_the_encoder_through_python():
    """Without it an encoder in eval mode under no_grad runs its layers in the fused kernel
    (its activation function is never called from Python); under it every call is seen."""
    from spacefold._core.patterns import no_fastpath

    torch.manual_seed(4)
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, activation="gelu", batch_first=True)
    model = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
    calls = []

    def counted(z):
        calls.append(1)
        return F.gelu(z)

    for lay in model.layers:
        lay.activation = counted  # the layer still takes its fast path (activation_relu_or_gelu was set at init)
    x = torch.randn(5, 4, 8)
    old = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(True)
    try:
        with torch.no_grad():
            fast = model(x)
        assert calls == []
        with torch.no_grad(), no_fastpath():
            slow = model(x)
        assert len(calls) == 2
        assert torch.backends.mha.get_fastpath_enabled() is True
    finally:
        torch.backends.mha.set_fastpath_enabled(old)
    assert torch.allclose(fast, slow, atol=1e-5)


def test_layers_select_a_gated_unit():
    torch.manual_seed(6)
    model = nn.Sequential(SwiGLU(4, 6), nn.Linear(6, 5), GEGLU(5, 5), nn.Linear(5, 2)).double().eval()
    x1, x2 = _pairs(4, 3, 8)
    full = walk_batch(model, x1, x2, method="certified")
    sub = walk_batch(model, x1, x2, method="certified", layers=["2"])
    for i in range(3):
        restricted = full[i].patterns[:, 6:]
        keep = torch.ones(restricted.shape[0], dtype=torch.bool)
        keep[1:] = (restricted[1:] != restricted[:-1]).any(1)
        assert torch.equal(sub[i].patterns, restricted[keep])
    assert int(full.n_regions.sum()) > 3
