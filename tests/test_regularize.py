"""folding_loss (the soft-pattern surrogate), schedules, the training hooks and the Lightning callback."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import spacefold as sf
from spacefold._core.walk.exact import NotPiecewiseLinearError
from spacefold.errors import InputError, InputTypeError
from spacefold.models.train import train
from spacefold.training.regularize import (
    FoldingRegularizer,
    FoldingSchedule,
    FoldingTracker,
    folding_loss,
    probe_pairs,
    soft_chi,
)


def folding_net() -> nn.Module:
    """A 1-D oracle: h = (relu(x), relu(−x)), g = relu(h1 + h2 − 0.5) = relu(|x| − 0.5).

    On the segment −1 -> 1 the patterns are (0,1,1), (0,1,0), (1,0,0), (1,0,1): distances to
    the start 0, 1, 3, 2 (r1 = 3), steps 1, 2, 1 (r2 = 4), χ = 1/4. On 0.1 -> 1 the walk
    is (1,0,0), (1,0,1): χ = 0.
    """
    first = nn.Linear(1, 2)
    second = nn.Linear(2, 1)
    out = nn.Linear(1, 1)
    with torch.no_grad():
        first.weight.copy_(torch.tensor([[1.0], [-1.0]]))
        first.bias.zero_()
        second.weight.copy_(torch.tensor([[1.0, 1.0]]))
        second.bias.fill_(-0.5)
        out.weight.fill_(1.0)
        out.bias.zero_()
    return nn.Sequential(first, nn.ReLU(), second, nn.ReLU(), out).double()


@pytest.fixture(scope="module")
def segments():
    g = torch.Generator().manual_seed(0)
    return torch.randn(16, 2, generator=g) * 2, torch.randn(16, 2, generator=g) * 2


@pytest.mark.parametrize("method", ["grid", "exact"])
def test_hand_oracle(method):
    net = folding_net()
    x1 = torch.tensor([[-1.0], [0.1]], dtype=torch.float64)
    x2 = torch.tensor([[1.0], [1.0]], dtype=torch.float64)
    # grid points t = k/10 avoid the kinks at x = -0.5, 0, 0.5 (x = -1 + 2t, t = 0.25, 0.5, 0.75)
    c = soft_chi(net, x1, x2, method=method, n_points=11, beta=1e6, eps=1e-12)
    assert c.tolist() == pytest.approx([0.25, 0.0], abs=1e-9)
    assert float(folding_loss(net, x1, x2, method=method, n_points=11, beta=1e6, eps=1e-12).detach()) == pytest.approx(
        (0.75 + 1.0) / 2, abs=1e-9
    )
    assert sf.folding_batch(net, x1, x2).chi.tolist() == [0.25, 0.0]  # the exact walk agrees


def test_gradient_reaches_the_hidden_weights(segments):
    model = sf.mlp("2x8", 2, 2, seed=0)
    folding_loss(model, *segments, n_points=16, beta=5.0).backward()
    first, second, logits = model.net[0], model.net[2], model.net[4]
    for lin in (first, second):
        assert lin.weight.grad is not None and torch.isfinite(lin.weight.grad).all()
        assert lin.weight.grad.abs().sum() > 0
    assert logits.weight.grad is None  # the logits carry no bit of the pattern


def test_gradient_through_inplace_activations(segments):
    model = nn.Sequential(
        nn.Linear(2, 8), nn.ReLU(inplace=True), nn.Linear(8, 8), nn.ReLU(inplace=True), nn.Linear(8, 2)
    )
    folding_loss(model, *segments, beta=5.0).backward()
    assert model[0].weight.grad.abs().sum() > 0 and model[2].weight.grad.abs().sum() > 0


def _exact_mean_chi(model, x1, x2) -> float:
    return float(sf.folding_batch(model, x1, x2, method="exact").chi.mean())


@pytest.mark.parametrize("method", ["grid", "random"])
def test_minimising_the_loss_raises_the_exact_chi(segments, method):
    torch.manual_seed(0)
    model = sf.mlp("2x8", 2, 2, seed=0)
    before = _exact_mean_chi(model, *segments)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(1)
    for _ in range(200):
        opt.zero_grad()
        folding_loss(model, *segments, method=method, n_points=32, beta=5.0, generator=gen).backward()
        opt.step()
    after = _exact_mean_chi(model, *segments)
    assert before < 0.1
    assert after > before + 0.2


def test_surrogate_tends_to_the_grid_chi_as_beta_grows(segments):
    model = sf.mlp("3x8", 2, 2, seed=2).double()
    x1, x2 = (s.double() for s in segments)
    grid = sf.folding_batch(model, x1, x2, method="uniform", steps=31).chi
    assert float(grid.max()) > 0  # some segment folds on the grid
    errs = [
        float((soft_chi(model, x1, x2, n_points=32, beta=b, eps=1e-15) - grid).abs().max().detach())
        for b in (1e1, 1e3, 1e5, 1e8)
    ]
    assert errs[-1] < 1e-6
    assert errs[0] > errs[-1]


def test_exact_variant_tends_to_the_exact_chi(segments):
    model = sf.mlp("3x8", 2, 2, seed=2).double()
    x1, x2 = (s.double() for s in segments)
    exact = sf.folding_batch(model, x1, x2, method="exact").chi
    c = soft_chi(model, x1, x2, method="exact", beta=1e9, eps=1e-15)
    assert torch.allclose(c, exact, atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), beta=st.floats(0.1, 1e4), method=st.sampled_from(["grid", "random"]))
def test_soft_chi_lies_in_the_unit_interval(seed, beta, method):
    """With the plain max, soft_r1 <= soft_r2 (triangle inequality of the L1 distance): 0 <= χ_soft < 1."""
    g = torch.Generator().manual_seed(seed)
    model = sf.mlp("2x6", 3, 2, seed=seed % 50)
    x1, x2 = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    c = soft_chi(model, x1, x2, method=method, n_points=12, beta=beta, generator=g)
    assert bool((c >= -1e-6).all()) and bool((c < 1).all())


def test_smooth_max_bounds_the_max(segments):
    model = sf.mlp("2x8", 2, 2, seed=0)
    hard = folding_loss(model, *segments, reduction="none")
    soft = folding_loss(model, *segments, tau=0.1, reduction="none")
    assert (soft >= hard - 1e-6).all()  # τ·logsumexp(d/τ) >= max d
    assert torch.allclose(folding_loss(model, *segments, reduction="sum"), hard.sum())


def test_model_modes_are_restored_and_eval_is_used():
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    model.train()
    x1, x2 = torch.randn(4, 2), torch.randn(4, 2)
    a = folding_loss(model, x1, x2)
    b = folding_loss(model, x1, x2)
    assert float(a.detach()) == float(b.detach())  # dropout is off for the surrogate: deterministic
    assert model.training and model[2].training


# --------------------------------------------------------------------------- schedules


def test_schedules():
    assert [FoldingSchedule.parse("always").active(e, 10) for e in range(10)] == [True] * 10
    early = FoldingSchedule.parse("early:0.3")
    assert [e for e in range(10) if early.active(e, 10)] == [0, 1, 2]
    assert [e for e in range(10) if FoldingSchedule.parse("early:0.01").active(e, 10)] == [0]
    assert [e for e in range(10) if FoldingSchedule.parse("every:3").active(e, 10)] == [0, 3, 6, 9]
    assert str(early) == "early:0.3" and str(FoldingSchedule.parse("every:3")) == "every:3"


@pytest.mark.parametrize("text", ["early:0", "early:1.5", "every:0", "sometimes", "early:", "every:x"])
def test_bad_schedules(text):
    with pytest.raises(InputError, match="schedule"):
        FoldingSchedule.parse(text)
    with pytest.raises(InputTypeError, match="schedule"):
        FoldingSchedule.parse(3)


# --------------------------------------------------------------------------- the training hooks


def _blobs(n=120):
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 3
    x = torch.randn(n, 2, generator=g) + 2.0 * torch.stack([torch.cos(y * 2.1), torch.sin(y * 2.1)], 1)
    return x, y


def test_lambda_zero_is_plain_training():
    x, y = _blobs()
    p1, p2 = probe_pairs(x, y, 20)
    a, b = sf.mlp("2x8", 2, 3, seed=0), sf.mlp("2x8", 2, 3, seed=0)
    ra = train(a, x, y, epochs=2, seed=0)
    rb = train(b, x, y, epochs=2, seed=0, regularizer=FoldingRegularizer(p1, p2, 0.0))
    assert all(torch.equal(pa, pb) for pa, pb in zip(a.parameters(), b.parameters()))
    assert ra.loss == rb.loss and rb.reg_loss == [0.0, 0.0]


def test_regularizer_and_tracker_in_train():
    x, y = _blobs()
    p1, p2 = probe_pairs(x, y, 20)
    model = sf.mlp("2x8", 2, 3, seed=0)
    reg = FoldingRegularizer(p1, p2, 0.5, schedule="every:2", pairs_per_step=4)
    tracker = FoldingTracker(p1, p2, every=2)
    res = train(model, x, y, epochs=3, batch_size=40, seed=0, regularizer=reg, on_epoch_end=tracker)
    assert res.reg_loss[1] == 0.0 and res.reg_loss[0] > 0 and res.reg_loss[2] > 0  # off in epoch 1
    assert [r["epoch"] for r in res.tracked] == [0, 2]
    ref = sf.global_folding(
        model, torch.cat([p1, p2]), torch.cat([torch.zeros(20), torch.ones(20)]).long(), pairs=_plan_of_probe(20)
    )
    assert res.tracked[-1]["phi"] == ref.phi and res.tracked[-1]["fraction_folded"] == ref.fraction_folded
    assert "tracked" in res.as_dict() and "reg_loss" in res.as_dict()


def _plan_of_probe(n):
    """The plan that walks x[i] -> x[n + i] of torch.cat([x1, x2])."""
    from spacefold._core.pairs import PairBlock, PairPlan

    return PairPlan((PairBlock(0, 1, torch.arange(n), torch.arange(n, 2 * n), product=False),), "custom")


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("lam", [-0.1, float("nan"), float("inf")])
def test_bad_lambda(lam, segments):
    with pytest.raises(InputError, match="lam must be a finite number >= 0"):
        FoldingRegularizer(*segments, lam)


def test_bad_inputs(segments):
    x1, x2 = segments
    model = sf.mlp("2x8", 2, 2, seed=0)
    with pytest.raises(InputTypeError, match="lam"):
        FoldingRegularizer(x1, x2, "1")
    with pytest.raises(InputError, match="empty probe set"):
        folding_loss(model, x1[:0], x2[:0])
    with pytest.raises(InputError, match="empty probe set"):
        FoldingRegularizer(x1[:0], x2[:0], 0.1)
    with pytest.raises(InputError, match="same shape"):
        folding_loss(model, x1, x2[:3])
    with pytest.raises(InputError, match="NaN"):
        folding_loss(model, x1 * float("nan"), x2)
    with pytest.raises(InputError, match="beta"):
        folding_loss(model, x1, x2, beta=0)
    with pytest.raises(InputError, match="n_points"):
        folding_loss(model, x1, x2, n_points=1)
    with pytest.raises(InputError, match="method"):
        folding_loss(model, x1, x2, method="bisect")
    with pytest.raises(InputError, match="reduction"):
        folding_loss(model, x1, x2, reduction="max")
    with pytest.raises(InputTypeError, match="model"):
        folding_loss(lambda x: x, x1, x2)


def test_probe_set_with_one_class_or_none():
    x = torch.randn(10, 2)
    with pytest.raises(InputError, match="at least two classes"):
        probe_pairs(x, torch.zeros(10, dtype=torch.int64), 5)
    with pytest.raises(InputError, match="at least one sample"):
        probe_pairs(x[:0], torch.zeros(0, dtype=torch.int64), 5)
    a, b = probe_pairs(x, torch.arange(10) % 2, 7)
    assert a.shape == b.shape == (7, 2)


def test_model_where_nothing_can_be_hooked(segments):
    with pytest.raises(InputError, match="no hookable activation"):
        folding_loss(nn.Sequential(nn.Linear(2, 4), nn.Linear(4, 2)), *segments)

    class Functional(nn.Module):
        def __init__(self, f):
            super().__init__()
            self.lin = nn.Linear(2, 2)
            self.f = f

        def forward(self, x):
            return self.f(self.lin(x))

    with pytest.raises(InputError, match="no hookable activation"):
        FoldingTracker(*segments).measure(Functional(torch.abs))  # |z| is no activation
    # an activation called as a function gives bits like a module
    a, b = Functional(torch.relu), nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    b[0].load_state_dict(a.lin.state_dict())
    assert float(folding_loss(a, *segments).detach()) == float(folding_loss(b, *segments).detach())


def test_exact_variant_refuses_a_smooth_model(segments):
    model = sf.mlp("2x8", 2, 2, activation="gelu", seed=0)
    assert math.isfinite(float(folding_loss(model, *segments).detach()))  # the grid surrogate works for any activation
    with pytest.raises(NotPiecewiseLinearError, match="method='exact' cannot walk"):
        folding_loss(model, *segments, method="exact")


# --------------------------------------------------------------------------- Lightning


def test_lightning_callback_logs_phi():
    pl = pytest.importorskip("lightning.pytorch", reason="Lightning is not installed (extra 'lightning')")
    from spacefold.lightning import FoldingCallback

    x, y = _blobs(60)
    p1, p2 = probe_pairs(x, y, 12)

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = sf.mlp("2x8", 2, 3, seed=0)

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, _):
            xb, yb = batch
            loss = nn.functional.cross_entropy(self(xb), yb) + 0.1 * folding_loss(self, p1, p2)
            self.log("loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-2)

    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=20)
    cb = FoldingCallback(p1, p2, every_n_epochs=2, module="net")
    trainer = pl.Trainer(
        max_epochs=3,
        callbacks=[cb],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
    )
    module = Module()
    trainer.fit(module, loader)
    assert [h["epoch"] for h in cb.history] == [0, 2]  # every 2nd epoch and the last
    ref = FoldingTracker(p1, p2).measure(module.net)
    assert float(trainer.callback_metrics["folding/phi"]) == pytest.approx(ref["phi"])
    assert "folding/fraction_folded" in trainer.callback_metrics
    with pytest.raises(InputError, match="every_n_epochs"):
        FoldingCallback(p1, p2, every_n_epochs=0)


# --------------------------------------------------------------------------- the CLI


def test_cli_train_writes_checkpoint_and_log(tmp_path, capsys):
    import csv
    import json

    from spacefold.cli import main

    out = tmp_path / "run"
    argv = [
        "train",
        "--arch",
        "2x8",
        "--data",
        "blobs",
        "--epochs",
        "3",
        "--regularize",
        "0.5",
        "--schedule",
        "every:2",
        "--probe-pairs",
        "30",
        "--track-pairs",
        "20",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 0
    rows = list(csv.DictReader(open(out / "log.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert float(rows[1]["reg_loss"]) == 0.0 and float(rows[0]["reg_loss"]) > 0  # every:2 -> epochs 1 and 3 on
    assert all(r["phi"] != "" for r in rows)
    model, meta = sf.load_checkpoint(out / "model.pt", with_metadata=True)
    assert meta["regularizer"]["lam"] == 0.5 and meta["regularizer"]["schedule"] == "every:2"
    log = json.loads((out / "log.json").read_text())
    # the logged Φ_N is the tracker's measurement of the saved model on the same probe pairs
    data = sf.data.load_dataset("blobs")
    t1, t2 = probe_pairs(data.x_test, data.y_test, 20, seed=0)
    assert log["epochs"][-1]["phi"] == FoldingTracker(t1, t2).measure(model)["phi"]
    assert "Φ_N" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--regularize", "-1"], "--regularize: must be a finite number >= 0"),
        (["--regularize", "nan"], "--regularize: must be a finite number >= 0"),
        (["--schedule", "early:0"], "--schedule"),
        (["--schedule", "later"], "--schedule"),
        (["--epochs", "0"], "--epochs"),
        (["--loss-method", "bisect", "--regularize", "0.1"], "--loss-method: invalid choice: 'bisect'"),
    ],
)
def test_cli_train_bad_input(tmp_path, capsys, extra, match):
    from spacefold.cli import main

    argv = [
        "train",
        "--arch",
        "2x8",
        "--data",
        "blobs",
        "--epochs",
        "1",
        "--out",
        str(tmp_path / "o"),
        "--no-progress",
        *extra,
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and match in err
    assert not (tmp_path / "o" / "model.pt").exists()


def test_every_steps_skips_steps(segments):
    model = sf.mlp("2x8", 2, 2, seed=0)
    reg = FoldingRegularizer(*segments, 0.5, every_steps=3)
    on = [reg(model, 0, 1) is not None for _ in range(7)]
    assert on == [True, False, False, True, False, False, True]
    with pytest.raises(InputError, match="every_steps"):
        FoldingRegularizer(*segments, 0.5, every_steps=0)
