"""The folding loss of plain feed-forward chains computed without the pattern hooks: the same
numbers as the hooks' path, bit for bit (losses and gradients), and the hooks wherever the chain
would not be plainly the same computation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import spacefold as sf
from spacefold.models.train import train
from spacefold.training.regularize import FoldingRegularizer, _plain_chain, folding_loss, probe_pairs


class Opaque(nn.Module):
    """The same network behind a forward the chain does not read: the loss goes through the hooks."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)


def mlp_dropout() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Linear(12, 9), nn.LeakyReLU(0.1), nn.Dropout(0.5), nn.Linear(9, 7), nn.ReLU(inplace=True), nn.Linear(7, 3)
    )


def small_cnn() -> nn.Module:
    torch.manual_seed(4)
    return nn.Sequential(
        nn.Unflatten(1, (1, 6, 6)),
        nn.Conv2d(1, 3, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(48, 5),
        nn.Tanh(),
        nn.Linear(5, 2),
    )


MODELS = {
    "mlp": lambda: sf.mlp("3x20", 12, 4, seed=1),
    "mlp-float64": lambda: sf.mlp("2x6", 12, 4, seed=2).double(),
    "dropout-leaky-inplace": mlp_dropout,
    "cnn-tanh": small_cnn,
}


def segments(n_in: int, n: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x1 = torch.randn(n, n_in, generator=g)
    x2 = torch.randn(n, n_in, generator=g)
    x2[0] = x1[0]  # a point segment: loss 1, no gradient, on both paths
    return x1, x2


def loss_and_grads(model: nn.Module, params, x1, x2, **kw):
    for p in params:
        p.grad = None
    loss = folding_loss(model, x1, x2, reduction="none", **kw)
    loss.sum().backward()
    return loss.detach(), [None if p.grad is None else p.grad.clone() for p in params]


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("method", ["grid", "random", "exact"])
def test_chain_matches_hooks_bit_for_bit(name, method):
    model = MODELS[name]()
    n_in = 36 if name == "cnn-tanh" else 12
    if method == "exact" and name == "cnn-tanh":
        pytest.skip("the exact surrogate needs a piecewise-linear model")
    opaque = Opaque(model)
    assert _plain_chain(model, None) is not None  # the chain is taken ...
    assert _plain_chain(opaque, None) is None  # ... and the reference goes through the hooks
    model.train()  # dropout must not act on the loss's points on either path
    params = list(model.parameters())
    x1, x2 = segments(n_in)
    kw = {"method": method, "n_points": 7, "beta": 4.0}
    fast, g_fast = loss_and_grads(model, params, x1, x2, generator=torch.Generator().manual_seed(5), **kw)
    ref, g_ref = loss_and_grads(opaque, params, x1, x2, generator=torch.Generator().manual_seed(5), **kw)
    assert torch.equal(fast, ref)
    assert fast[0] == 1.0  # the point segment
    # the layers after the last activation get no gradient on either path
    assert [g is None for g in g_fast] == [g is None for g in g_ref]
    assert all(a is None or torch.equal(a, b) for a, b in zip(g_fast, g_ref))
    assert any(g is not None and bool(g.abs().sum() > 0) for g in g_fast)  # the loss has a gradient to compare
    assert model.training and all(m.training for m in model.modules())  # modes restored / untouched


def test_training_with_the_regulariser_is_unchanged():
    """Two seeded training runs, the chain's and the hooks', end at the same weights bit for bit."""
    x = torch.rand(96, 12, generator=torch.Generator().manual_seed(0))
    y = torch.arange(96) % 4
    p1, p2 = probe_pairs(x, y, 20, seed=0)
    weights = []
    for wrap in (False, True):
        model = sf.mlp("2x10", 12, 4, seed=0)
        reg = FoldingRegularizer(p1, p2, 0.5, pairs_per_step=5, n_points=6, seed=1)
        res = train(model if not wrap else Opaque(model), x, y, epochs=3, batch_size=32, seed=0, regularizer=reg)
        weights.append([p.detach().clone() for p in model.parameters()])
        assert len(res.reg_loss) == 3 and all(v > 0 for v in res.reg_loss)
    assert all(torch.equal(a, b) for a, b in zip(*weights))


def test_selected_layers_and_hooks_fall_back_to_the_hooks():
    model = sf.mlp("2x6", 12, 4, seed=0)
    assert _plain_chain(model, None) is not None
    assert _plain_chain(model, ["net.1"]) is None  # a selection: the hooks choose the blocks
    calls = []
    handle = model.net[0].register_forward_hook(lambda m, i, o: calls.append(1))
    try:
        assert _plain_chain(model, None) is None  # a user's hook: the model runs as it is
        x1, x2 = segments(12)
        folding_loss(model, x1, x2, n_points=4)
        assert calls  # the model's own forward ran, with its hook
    finally:
        handle.remove()
    bn = nn.Sequential(nn.Linear(12, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2))
    assert _plain_chain(bn, None) is None  # batch norm depends on the mode: the hooks' path switches it
    rrelu = nn.Sequential(nn.Linear(12, 6), nn.RReLU(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2)).train()
    assert _plain_chain(rrelu, None) is None  # random slopes in train mode: the hooks' path runs it in eval mode


def test_a_registered_activation_of_the_users_keeps_the_hooks():
    class Shifted(nn.Module):  # its forward could depend on anything, the mode included
        def forward(self, x):
            return torch.relu(x) if not self.training else torch.relu(x) * 2

    sf.register_activation(Shifted)
    try:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(12, 6), Shifted(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2)).train()
        assert _plain_chain(model, None) is None
    finally:
        from spacefold._core.rules import _REGISTRY

        _REGISTRY.pop(Shifted, None)


def test_chain_stops_at_the_last_activation():
    model = sf.mlp("2x6", 12, 4, seed=0)
    chain = _plain_chain(model, None)
    assert chain[-1][0] is model.net[3] and chain[-1][1]  # the logits layer is not run
    assert sum(is_act for _, is_act in chain) == 2
