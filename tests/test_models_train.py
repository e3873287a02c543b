"""The MLP family, checkpoints (weights_only, atomic) and seeded training."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import spacefold as sf
from spacefold.data import make_synthetic
from spacefold.errors import InputError
from spacefold.models import (
    DEPTH_SERIES,
    MLP,
    CheckpointError,
    arch_name,
    budget_family,
    load_checkpoint,
    mlp,
    parse_arch,
    save_checkpoint,
)
from spacefold.models.train import accuracy, train, train_mlp


@pytest.mark.parametrize(
    "arch, widths",
    [
        ("3x20", (20, 20, 20)),
        ("1x60", (60,)),
        (" 5 x 12 ", (12,) * 5),
        ("30-20", (30, 20)),
        ("30,20,10", (30, 20, 10)),
        ("0", ()),
        ([4, 5], (4, 5)),
    ],
)
def test_parse_arch(arch, widths):
    assert parse_arch(arch) == widths


@pytest.mark.parametrize("bad", ["3x", "x20", "abc", "3x20x2", "20-0"])
def test_parse_arch_errors(bad):
    with pytest.raises(ValueError, match="arch"):
        parse_arch(bad)


@given(st.lists(st.integers(1, 50), min_size=0, max_size=6))
def test_arch_name_roundtrip(widths):
    assert parse_arch(arch_name(widths)) == tuple(widths)


def test_budget_family_is_the_depth_series():
    assert tuple(budget_family(60)) == DEPTH_SERIES
    for a in DEPTH_SERIES:
        assert sum(parse_arch(a)) == 60


def test_mlp_structure_and_patterns():
    net = mlp("3x20", 784, 10, seed=0)
    assert isinstance(net, MLP) and net.arch == "3x20"
    x = torch.rand(5, 1, 28, 28)
    assert net(x).shape == (5, 10)
    bits = sf.activation_patterns(net, x)
    assert bits.shape == (5, 60)  # m = total number of hidden neurons


def test_mlp_seeded_and_leaves_global_rng():
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = mlp("2x8", 4, 3, seed=7)
    after = torch.rand(3)
    assert torch.equal(before, after)  # the global generator was not advanced
    b = mlp("2x8", 4, 3, seed=7)
    c = mlp("2x8", 4, 3, seed=8)
    for (ka, va), (_, vb), (_, _vc) in zip(a.state_dict().items(), b.state_dict().items(), c.state_dict().items()):
        assert torch.equal(va, vb), ka
    assert any(not torch.equal(va, vc) for va, vc in zip(a.state_dict().values(), c.state_dict().values()))


def test_checkpoint_roundtrip(tmp_path):
    net = mlp("2x6", 5, 3, seed=1)
    p = save_checkpoint(net, tmp_path / "m.pt", metadata={"note": "x", "acc": 0.5})
    assert p.is_file() and (tmp_path / "m.pt.json").is_file()
    raw = torch.load(p, weights_only=True)  # only tensors and strings inside
    assert raw["format"] == "spacefold-mlp"
    back, meta = load_checkpoint(p, with_metadata=True)
    assert meta == {"note": "x", "acc": 0.5} and back.arch == "2x6" and not back.training
    x = torch.randn(10, 5)
    assert torch.equal(back(x), net(x))


def test_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.pt"):
        load_checkpoint(tmp_path / "nothere.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_checkpoint(bad)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="not a spacefold"):
        load_checkpoint(other)

    class Evil:
        def __reduce__(self):
            return (print, ("executed",))

    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as fh:
        pickle.dump({"format": "spacefold-mlp", "x": Evil()}, fh, protocol=2)
    with pytest.raises(CheckpointError, match="evil.pt.*weights_only=True") as err:
        load_checkpoint(evil)  # weights_only refuses arbitrary objects
    assert "weights_only=False" not in str(err.value)  # never advise unpickling a user's file
    good = save_checkpoint(mlp("1x4", 2, 2), tmp_path / "g.pt")
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(good.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="trunc.pt"):
        load_checkpoint(trunc)


def test_interrupted_save_leaves_no_file(tmp_path, monkeypatch):
    net = mlp("1x4", 2, 2)
    old = save_checkpoint(net, tmp_path / "m.pt")
    before = old.read_bytes()

    def boom(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(mlp("1x4", 2, 2, seed=5), tmp_path / "m.pt")
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(net, tmp_path / "new.pt")
    assert old.read_bytes() == before  # the old checkpoint is untouched
    assert not (tmp_path / "new.pt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt", "m.pt.json"]


def test_accuracy_matches_hand_count():
    net = mlp("1x4", 3, 3, seed=0)
    x = torch.randn(50, 3)
    y = torch.randint(0, 3, (50,))
    pred = net(x).argmax(1)
    assert accuracy(net, x, y, batch_size=7) == pytest.approx(float((pred == y).float().mean()))


def test_training_is_seeded_and_learns():
    d = make_synthetic("blobs", n_samples=300, n_features=2, n_classes=3, seed=0)
    m1, r1 = train_mlp("2x8", d, epochs=8, batch_size=32, lr=1e-2, seed=3)
    m2, r2 = train_mlp("2x8", d, epochs=8, batch_size=32, lr=1e-2, seed=3)
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)
    assert r1.loss == r2.loss and len(r1.test_accuracy) == 8
    assert r1.loss[-1] < r1.loss[0]
    assert r1.final_test_accuracy > 0.8  # blobs 3 apart are close to separable


def test_train_checkpoint_carries_the_record(tmp_path):
    d = make_synthetic("blobs", n_samples=60, n_features=2, n_classes=2, seed=0)
    _, res = train_mlp("1x4", d, epochs=1, seed=0, checkpoint=tmp_path / "c.pt")
    _, meta = load_checkpoint(tmp_path / "c.pt", with_metadata=True)
    assert meta["training"]["final_test_accuracy"] == res.final_test_accuracy
    assert meta["data"]["name"] == "blobs"


def test_train_bad_input():
    net = mlp("1x4", 2, 2)
    x = torch.randn(10, 2)
    with pytest.raises(ValueError, match="labels"):
        train(net, x, torch.zeros(9, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        train(net, x, torch.zeros(10))
    with pytest.raises(ValueError, match="epochs"):
        train(net, x, torch.zeros(10, dtype=torch.long), epochs=0)
    with pytest.raises(ValueError, match="lr"):
        train(net, x, torch.zeros(10, dtype=torch.long), lr=-1.0)


# --------------------------------------------------------------------------- faults (issue: bad input never passes)


def _payload(path):
    return torch.load(path, weights_only=True)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_checkpoint_with_non_finite_weights_is_refused(tmp_path, value):
    p = save_checkpoint(mlp("2x4", 3, 2), tmp_path / "m.pt")
    raw = _payload(p)
    raw["state_dict"]["net.2.weight"][1, 3] = value
    torch.save(raw, p)
    with pytest.raises(CheckpointError, match=r"m\.pt.*not finite.*net\.2\.weight"):
        load_checkpoint(p)


def test_saving_non_finite_weights_is_refused(tmp_path):
    net = mlp("1x4", 2, 2)
    with torch.no_grad():
        net.net[0].bias[0] = float("nan")
    with pytest.raises(InputError, match=r"finite.*net\.0\.bias"):
        save_checkpoint(net, tmp_path / "n.pt")
    assert list(tmp_path.iterdir()) == []


def test_huge_config_is_refused_before_any_layer_is_built(tmp_path, monkeypatch):
    p = save_checkpoint(mlp("1x4", 2, 2), tmp_path / "m.pt")
    raw = _payload(p)
    raw["config"] = json.dumps({"in_features": 2, "hidden": [10**6, 10**6], "n_classes": 2, "activation": "relu"})
    torch.save(raw, p)
    built = []
    monkeypatch.setattr(torch.nn.Linear, "__init__", lambda *a, **k: built.append(a) or None)
    with pytest.raises(CheckpointError, match=r"m\.pt.*does not match its config.*missing net\.4\.weight"):
        load_checkpoint(p)
    raw["config"] = json.dumps({"in_features": 2, "hidden": [10**9], "n_classes": 2, "activation": "relu"})
    torch.save(raw, p)
    with pytest.raises(CheckpointError, match=r"net\.0\.weight the shape \(1000000000, 2\).*holds \(4, 2\)"):
        load_checkpoint(p)
    assert built == []  # nothing allocated for the claimed layers


def test_shape_mismatch_reason_is_given_in_full(tmp_path):
    p = save_checkpoint(mlp("1x4", 2, 2), tmp_path / "m.pt")
    raw = _payload(p)
    raw["config"] = json.dumps({"in_features": 3, "hidden": [4], "n_classes": 2, "activation": "relu"})
    torch.save(raw, p)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(p)
    msg = str(err.value)
    assert "\n" not in msg and "net.0.weight" in msg and "(4, 3)" in msg and "(4, 2)" in msg


@pytest.mark.parametrize(
    "cfg,needle",
    [
        ({"in_features": 2, "hidden": [4], "n_classes": 2, "activation": "swish"}, "activation"),
        ({"in_features": "2", "hidden": [4], "n_classes": 2}, "in_features"),
        ({"in_features": 2, "hidden": 4, "n_classes": 2}, "hidden"),
        ({"in_features": 2, "hidden": [True], "n_classes": 2}, "hidden"),
        ({"in_features": 2, "hidden": [4]}, "n_classes"),
        ([2, 4, 2], "JSON object"),
    ],
)
def test_malformed_configs(tmp_path, cfg, needle):
    p = save_checkpoint(mlp("1x4", 2, 2), tmp_path / "m.pt")
    raw = _payload(p)
    raw["config"] = json.dumps(cfg)
    torch.save(raw, p)
    with pytest.raises(CheckpointError, match=needle):
        load_checkpoint(p)


def test_checkpoint_path_that_is_a_directory(tmp_path):
    with pytest.raises(CheckpointError, match="directory") as err:
        load_checkpoint(tmp_path)
    assert "not found" not in str(err.value)


def test_checkpoint_errors_are_input_errors():
    assert issubclass(CheckpointError, InputError)
    with pytest.raises(InputError, match="arch"):
        parse_arch("3y4")


@pytest.mark.parametrize("lr", [float("inf"), float("nan"), 0.0, -1.0])
def test_train_lr_must_be_finite_and_positive(lr):
    with pytest.raises(InputError, match="lr"):
        train(mlp("1x4", 2, 2), torch.randn(10, 2), torch.zeros(10, dtype=torch.long), lr=lr)


def test_training_that_diverges_is_reported():
    x = torch.randn(40, 2, generator=torch.Generator().manual_seed(0)) * 1e3
    y = (x[:, 0] > 0).long()
    with pytest.raises(InputError, match="lr.*loss became"):
        train(mlp("2x8", 2, 2), x, y, lr=1e30, epochs=3)


def test_train_refuses_non_finite_inputs():
    x = torch.randn(10, 2)
    x[3, 1] = float("nan")
    with pytest.raises(ValueError, match="finite"):  # so the divergence check below only ever blames lr
        train(mlp("1x4", 2, 2), x, torch.zeros(10, dtype=torch.long))


def test_weight_decay_is_decoupled_adamw_step():
    """One step with weight decay w: p <- p (1 - lr w) - lr g / (|g| + eps) (AdamW's first step, by hand)."""
    x = torch.randn(16, 3, generator=torch.Generator().manual_seed(1))
    y = (x[:, 0] > 0).long()
    net = mlp("1x4", 3, 2, seed=0)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    probe = mlp("1x4", 3, 2, seed=0)
    torch.nn.functional.cross_entropy(probe(x), y).backward()
    grads = {k: p.grad.clone() for k, p in probe.named_parameters()}
    lr, wd = 1e-2, 0.5
    res = train(net, x, y, epochs=1, batch_size=16, lr=lr, weight_decay=wd)
    for k, p in net.named_parameters():
        expected = before[k] * (1 - lr * wd) - lr * grads[k] / (grads[k].abs() + 1e-8)
        assert torch.allclose(p.detach(), expected, atol=1e-6), k
    assert res.as_dict()["optimizer"] == "adamw" and res.as_dict()["weight_decay"] == wd


def test_no_weight_decay_is_plain_adam():
    d = make_synthetic("blobs", n_samples=60, n_features=2, n_classes=2, seed=0)
    a, b = mlp("2x8", 2, 2, seed=0), mlp("2x8", 2, 2, seed=0)
    train(a, d.x_train, d.y_train, epochs=2, seed=1, weight_decay=0.0)
    opt = torch.optim.Adam(b.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(1)
    for _ in range(2):
        perm = torch.randperm(d.x_train.shape[0], generator=g)
        for k in range(0, perm.numel(), 128):
            idx = perm[k : k + 128]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(b(d.x_train[idx]), d.y_train[idx]).backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("wd", [-0.1, float("nan"), float("inf")])
def test_weight_decay_must_be_finite_and_nonnegative(wd):
    with pytest.raises(InputError, match="weight_decay"):
        train(mlp("1x4", 2, 2), torch.randn(10, 2), torch.zeros(10, dtype=torch.long), weight_decay=wd)
