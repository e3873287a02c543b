"""Attacks (checked against hand-computed steps on linear models) and the interaction
coefficient on adversarial paths (hand oracle, batched vs one walk at a time, bad input)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

pytest.importorskip("torchattacks")

import spacefold as sf  # noqa: E402
from spacefold._core.measure import interactions  # noqa: E402
from spacefold.cli import main  # noqa: E402
from spacefold.errors import InputError, InputTypeError  # noqa: E402
from spacefold.studies.adversarial import (  # noqa: E402
    COMBINATIONS,
    _batch_nonzero_interaction,
    adversarial_interaction,
    attack,
    attack_success,
    mean_nonzero_interaction,
)


def linear(w, b) -> nn.Linear:
    w = torch.as_tensor(w, dtype=torch.float64)
    lin = nn.Linear(w.shape[1], w.shape[0]).double()
    with torch.no_grad():
        lin.weight.copy_(w)
        lin.bias.copy_(torch.as_tensor(b, dtype=torch.float64))
    return lin


W = [[1.0, -2.0, 0.5], [-1.0, 1.0, 2.0], [0.0, 0.5, -1.0]]
B = [0.1, -0.2, 0.0]


def hand_gradient(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """d CE / d x for logits W x + b, by hand: W^T (softmax − onehot(y)) per sample."""
    w, b = np.array(W), np.array(B)
    z = x @ w.T + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    return p @ w


def test_fgsm_matches_a_hand_computed_step():
    x = np.array([[0.5, 0.5, 0.5], [0.95, 0.02, 0.4], [0.3, 0.7, 0.99]])
    y = np.array([0, 1, 2])
    eps = 0.1
    want = np.clip(x + eps * np.sign(hand_gradient(x, y)), 0.0, 1.0)
    # three coordinates are clipped: 0.95 + 0.1, 0.02 - 0.1 and 0.99 + 0.1
    assert (want[1, 0], want[1, 1], want[2, 2]) == (1.0, 0.0, 1.0)
    got = attack(linear(W, B), torch.tensor(x), torch.tensor(y), "fgsm", eps)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-12)


def test_fgsm_on_another_data_range_clips_to_it():
    x = np.array([[1.9, -0.95, 0.0], [0.2, 0.3, -0.4]])
    y = np.array([2, 0])
    eps = 0.25
    want = np.clip(x + eps * np.sign(hand_gradient(x, y)), -1.0, 2.0)
    got = attack(linear(W, B), torch.tensor(x), torch.tensor(y), "fgsm", eps, data_range=(-1.0, 2.0))
    np.testing.assert_allclose(got.numpy(), want, atol=1e-12)


def test_pgd_on_a_two_class_linear_model_reaches_the_fgsm_corner():
    # For two classes the sign of the input gradient of a linear model is the same
    # everywhere, so L-inf PGD (steps * step >= eps) ends where one FGSM step does.
    model = linear([[1.0, -2.0, 0.5, 0.0], [-1.0, 1.0, 2.0, 0.3]], [0.0, 0.1])
    x = torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.1, 0.9, 0.2, 0.05]], dtype=torch.float64)
    y = torch.tensor([0, 1])
    fgsm = attack(model, x, y, "fgsm", 0.2)
    pgd = attack(model, x, y, "pgd", 0.2, steps=40, random_start=False)
    torch.testing.assert_close(pgd, fgsm, atol=1e-9, rtol=0)


def test_pgd_l2_on_a_two_class_linear_model_moves_eps_along_the_gradient():
    # Loss of a two-class linear model grows along ±(w_other − w_y); L2 PGD without clipping
    # ends at x + eps * g / |g| with g = w_other − w_y.
    wa, wb = np.array([1.0, -2.0, 0.5]), np.array([-1.0, 1.0, 2.0])
    model = linear(np.stack([wa, wb]), [0.0, 0.0])
    x = torch.full((1, 3), 0.5, dtype=torch.float64)
    g = wb - wa
    want = 0.5 + 0.2 * g / np.linalg.norm(g)
    got = attack(model, x, torch.tensor([0]), "pgd-l2", 0.2, steps=40, random_start=False)
    np.testing.assert_allclose(got.numpy()[0], want, atol=1e-9)


@settings(max_examples=15, deadline=None)
@given(eps=st.floats(0.01, 0.5), method=st.sampled_from(["fgsm", "pgd", "pgd-l2"]), seed=st.integers(0, 100))
def test_attacks_stay_in_the_budget_and_the_range(eps, method, seed):
    model = sf.mlp("8-6", in_features=5, n_classes=3, seed=seed).double()
    x = torch.rand(6, 5, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    y = torch.arange(6) % 3
    adv = attack(model, x, y, method, eps, steps=5, seed=seed)
    assert adv.shape == x.shape and adv.dtype == x.dtype
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
    if method == "pgd-l2":
        assert float((adv - x).norm(dim=1).max()) <= eps * (1 + 1e-6)
    else:
        assert float((adv - x).abs().max()) <= eps + 1e-12


def test_attack_keeps_shape_dtype_and_global_rng():
    model = sf.mlp("6", in_features=4, n_classes=2, seed=0)  # float32 model
    x = torch.rand(5, 1, 2, 2, dtype=torch.float64)  # images; the MLP flattens
    y = torch.tensor([0, 1, 0, 1, 0])
    state = torch.get_rng_state()
    a1 = attack(model, x, y, "pgd", 0.1, steps=3, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    a2 = attack(model, x, y, "pgd", 0.1, steps=3, seed=7)
    assert a1.shape == x.shape and a1.dtype == torch.float64
    assert torch.equal(a1, a2)
    assert torch.equal(attack(model, x, y, "fgsm", 0.0), x)


def test_attack_runs_in_eval_mode_and_restores_the_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 2))
    model.train()
    x = torch.rand(32, 3)
    y = torch.randint(0, 2, (32,))
    runs = [attack(model, x, y, "fgsm", 0.1) for _ in range(3)]  # dropout active would change the gradients
    assert all(torch.equal(runs[0], r) for r in runs[1:])
    assert model.training and model[2].training


class Detached(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x):
        return self.lin(x).detach()


class ArgmaxNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x):
        return nn.functional.one_hot(self.lin(x).argmax(1), 2).float()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"eps": -0.1}, "eps must be a finite number >= 0"),
        ({"eps": float("nan")}, "eps"),
        ({"method": "deepfool"}, "method must be one of"),
        ({"steps": 0}, "steps must be an int >= 1"),
        ({"step_size": 0.0}, "step_size must be a finite number > 0"),
        ({"data_range": (1.0, 0.0)}, "data_range must be two finite numbers lo < hi"),
        ({"data_range": (0.0, 0.5)}, "x must lie in data_range"),
    ],
)
def test_attack_bad_input(kwargs, match):
    model = linear(W, B)
    x = torch.rand(4, 3, dtype=torch.float64)
    args = {"method": "fgsm", "eps": 0.1, **kwargs}
    with pytest.raises(InputError, match=match):
        attack(model, x, torch.tensor([0, 1, 2, 0]), **args)


@pytest.mark.parametrize("net", [Detached, ArgmaxNet])
def test_a_model_that_is_not_differentiable_is_refused(net):
    with pytest.raises(InputTypeError, match="model must be differentiable"):
        attack(net(), torch.rand(3, 3), torch.tensor([0, 1, 0]), "fgsm", 0.1)


def test_labels_outside_the_models_classes_are_refused():
    with pytest.raises(InputError, match=r"y must hold labels in \[0, 2\]"):
        attack(linear(W, B), torch.rand(2, 3, dtype=torch.float64), torch.tensor([0, 5]), "fgsm", 0.1)


def test_attack_success_counts_changed_predictions():
    model = linear([[1.0, 0.0], [0.0, 1.0]], [0.0, 0.0])
    x = torch.tensor([[0.6, 0.4], [0.9, 0.1], [0.2, 0.8]], dtype=torch.float64)
    x_adv = torch.tensor([[0.4, 0.6], [0.8, 0.2], [0.2, 0.8]], dtype=torch.float64)
    assert attack_success(model, x, x_adv) == pytest.approx(1 / 3)


# --------------------------------------------------------------------------- interaction


def walk_of(*rows: str) -> torch.Tensor:
    return torch.tensor([[c == "1" for c in r] for r in rows])


def test_mean_nonzero_interaction_hand_oracle():
    # Γ = (0000, 1000, 0000, 0111): χ(Γ) = 1 − 3/5 = 2/5. Splits k = 1..4 (1-based):
    # I(1) = 0; I(2) = |2/5 − 0 − χ(1000, 0000, 0111) = 0| = 2/5;
    # I(3) = |2/5 − χ(0000, 1000, 0000) = 1/2 − 0| = 1/10; I(4) = 0.
    # k_0 = 2, Ī_nz = (I(3) + I(4)) / (4 − 2) = 1/20.
    w = walk_of("0000", "1000", "0000", "0111")
    torch.testing.assert_close(interactions(w), torch.tensor([0.0, 0.4, 0.1, 0.0], dtype=torch.float64))
    assert mean_nonzero_interaction(w) == pytest.approx(0.05)
    assert mean_nonzero_interaction(walk_of("000", "100", "110", "111")) is None  # geodesic: every I is 0
    assert mean_nonzero_interaction(walk_of("01")) is None


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 12), min_size=1, max_size=8), st.integers(0, 10_000))
def test_batched_interaction_equals_one_walk_at_a_time(lengths, seed):
    g = torch.Generator().manual_seed(seed)
    walks = [torch.rand(n, 4, generator=g) < 0.5 for n in lengths]
    batched = _batch_nonzero_interaction(walks, chunk=3)
    for w, v in zip(walks, batched):
        one = mean_nonzero_interaction(w)
        if one is None:
            assert math.isnan(v)
        else:
            assert v == pytest.approx(one, abs=1e-12)


def test_uniform_grid_values_equal_the_walk_with_its_repeats():
    # I at a grid point inside a run of equal patterns is I of the run's region: computing
    # once per region and repeating per grid point equals computing on the repeated walk.
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        regions = torch.rand(int(torch.randint(1, 9, (1,), generator=g)), 5, generator=g) < 0.5
        regions = regions[torch.cat([torch.tensor([True]), (regions[1:] != regions[:-1]).any(1)])]
        reps = torch.randint(1, 4, (regions.shape[0],), generator=g)
        grid_index = torch.repeat_interleave(torch.arange(regions.shape[0]), reps)
        got = _batch_nonzero_interaction([regions], [grid_index])[0]
        want = mean_nonzero_interaction(regions[grid_index])
        assert (math.isnan(got) and want is None) or got == pytest.approx(want, abs=1e-12)


def labelled_problem():
    """A random deep ReLU net in 6-D with its own predictions as labels: the attacks flip many
    endpoints and about a quarter of the paths fold."""
    model = sf.mlp("24-24-24-24", in_features=6, n_classes=3, seed=0)
    x = torch.rand(90, 6, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(x)
        model.net[-1].bias -= logits.mean(0)  # predictions spread over the three classes
        y = model(x).argmax(1)
    assert torch.bincount(y, minlength=3).min() >= 10
    a, b = (int(c) for c in torch.bincount(y, minlength=3).argsort(descending=True)[:2])
    return model, x, y, a, b


def test_adversarial_interaction_counts_and_agrees_with_single_walks():
    model, x, y, a, b = labelled_problem()
    res = adversarial_interaction(model, x, y, (a, b), ("fgsm", "pgd"), 0.3, max_pairs=40, steps=10, n_boot=50)
    n_a, n_b = int((y == a).sum()), int((y == b).sum())
    assert res.n_pairs == min(40, n_a * n_b)
    for atk in ("fgsm", "pgd"):
        r = res.results[atk]
        assert 0.0 < res.attack_success[atk] <= 1.0
        assert r["a-b"]["n_pairs"] == res.n_pairs
        assert r["a*-b*"]["n_pairs"] <= min(r["a*-b"]["n_pairs"], r["a-b*"]["n_pairs"])
        for c in COMBINATIONS:
            assert r[c]["n_paths"] <= r[c]["n_pairs"]
            if r[c]["n_paths"]:
                lo, hi = r[c]["ci"]
                assert lo <= r[c]["mean_nonzero_interaction"] <= hi
    # the clean combination, recomputed one exact walk at a time
    g = torch.Generator().manual_seed(0)
    ia, ib = torch.nonzero(y == a).flatten(), torch.nonzero(y == b).flatten()
    flat = torch.randperm(n_a * n_b, generator=g)[:40] if n_a * n_b > 40 else torch.arange(n_a * n_b)
    vals = [mean_nonzero_interaction(sf.walk(model, x[ia[k // n_b]], x[ib[k % n_b]]).patterns) for k in flat.tolist()]
    vals = [v for v in vals if v is not None]
    assert res.results["fgsm"]["a-b"]["n_paths"] == len(vals) >= 5
    assert res.results["fgsm"]["a-b"]["mean_nonzero_interaction"] == pytest.approx(float(np.mean(vals)))


def test_an_attack_that_flips_nothing_reports_zero_paths_not_nan():
    model, x, y, a, b = labelled_problem()
    res = adversarial_interaction(model, x, y, (a, b), ("fgsm",), 0.0, max_pairs=10, n_boot=20)
    assert res.attack_success["fgsm"] == 0.0
    for c in ("a-b*", "a*-b", "a*-b*"):
        assert res.results["fgsm"][c] == {
            "mean_nonzero_interaction": None,
            "ci": None,
            "n_paths": 0,
            "n_pairs": 0,
            "mean_points": None,
        }
    json.dumps(res.to_dict(), allow_nan=False)  # strict JSON


def test_uniform_grid_counts_grid_points():
    model, x, y, a, b = labelled_problem()
    res = adversarial_interaction(
        model, x, y, (a, b), ("fgsm",), 0.2, max_pairs=8, method="uniform", n_points=17, n_boot=20
    )
    assert res.n_points == 17
    assert res.results["fgsm"]["a-b"]["mean_points"] == 17.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"classes": (0, 9)}, "classes must name classes present in y, got 9"),
        ({"classes": (1, 1)}, "classes must be two different classes"),
        ({"eps": -1.0}, "eps must be a finite number >= 0"),
        ({"attacks": ("cw",)}, "attacks must be among"),
        ({"method": "bisect"}, "method must be 'exact' or 'uniform'"),
        ({"max_pairs": 0}, "max_pairs must be an int >= 1"),
    ],
)
def test_adversarial_interaction_bad_input(kwargs, match):
    model, x, y, a, b = labelled_problem()
    args = {"classes": (a, b), **kwargs}
    with pytest.raises(InputError, match=match):
        adversarial_interaction(model, x, y, **args)


# --------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    pytest.importorskip("sklearn")
    from spacefold.data import load_digits
    from spacefold.models.train import train_mlp

    path = tmp_path_factory.mktemp("adv") / "m.pt"
    train_mlp("2x16", load_digits(), epochs=4, lr=3e-3, batch_size=32, seed=0, checkpoint=path)
    return path


def test_cli_adversarial_writes_strict_json_table_and_chart(digits_model, tmp_path, capsys):
    out = tmp_path / "adv"
    argv = [
        "adversarial",
        "--model",
        str(digits_model),
        "--data",
        "digits",
        "--classes",
        "3",
        "8",
        "--attacks",
        "fgsm",
        "pgd",
        "--eps",
        "0.2",
        "--steps",
        "5",
        "--max-pairs",
        "30",
        "--n-boot",
        "50",
        "--json",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out

    def no_nan(c):
        raise AssertionError(f"non-strict JSON constant {c}")

    obj = json.loads(text, parse_constant=no_nan)
    assert obj["classes"] == [3, 8] and obj["eps"] == 0.2 and obj["data_range"] == [0.0, 1.0]
    for atk in ("fgsm", "pgd"):
        assert 0.0 <= obj["attacks"][atk]["attack_success"] <= 1.0
        assert set(obj["attacks"][atk]["combinations"]) == {"a-b", "a-b*", "a*-b", "a*-b*"}
        for c in obj["attacks"][atk]["combinations"].values():
            assert {"mean_nonzero_interaction", "ci", "n_paths"} <= set(c)
    assert json.loads((out / "adversarial.json").read_text(), parse_constant=no_nan) == obj
    assert "a*-b*" in (out / "adversarial.txt").read_text()
    pytest.importorskip("matplotlib")
    assert (out / "interaction.png").stat().st_size > 1000


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--eps", "-0.1"], "--eps: must be a finite number >= 0"),
        (["--classes", "3", "42"], "--classes must name classes"),
        (["--attacks", "cw"], "--attacks: invalid choice: 'cw'"),
    ],
)
def test_cli_adversarial_bad_input_is_one_line(digits_model, capsys, extra, match):
    argv = ["adversarial", "--model", str(digits_model), "--data", "digits", "--max-pairs", "5", *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and match in err
