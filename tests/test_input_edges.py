"""Inputs at their edges: zero-length and round-off-length segments of the folding loss, duplicate
list options, sizes checked before anything is allocated, and one clear line for each bad input."""

from __future__ import annotations

import math

import pytest
import torch

import spacefold as sf
from spacefold.regularize import folding_loss, point_segments, soft_chi


def _segments(dtype, n=64):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 2, generator=g, dtype=dtype)
    d = torch.randn(n, 2, generator=g, dtype=dtype)
    return x, d / d.abs().amax(1, keepdim=True)  # directions with max-norm 1


# --------------------------------------------------------------------------- zero-length segments


def test_point_segments_rule_by_hand():
    eps = torch.finfo(torch.float32).eps
    x1 = torch.tensor([[2.0, -1.0], [2.0, -1.0], [0.0, 0.0], [0.0, 0.0]])
    x2 = torch.tensor([[2.0, -1.0 + 1.9 * math.sqrt(eps)], [2.0, -1.0 + 2.1 * math.sqrt(eps)], [0.0, 0.0],
                       [0.0, 1e-30]])
    # scale = 2 (the largest coordinate): a step of 1.9 √ε is within 2 √ε, 2.1 √ε is not;
    # the zero vector to itself is a point, the zero vector to 1e-30 is not (nothing to round)
    assert point_segments(x1, x2).tolist() == [True, False, True, False]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method", ["grid", "random", "exact"])
def test_zero_and_round_off_length_segments_have_loss_one_under_every_method(dtype, method):
    model = sf.mlp("3x20", 2, 3, seed=0).to(dtype)
    x, d = _segments(dtype)
    scale = x.abs().amax(1, keepdim=True)
    gen = torch.Generator().manual_seed(0)
    for x2 in (x.clone(), x + 0.5 * math.sqrt(torch.finfo(dtype).eps) * scale * d, x + 1e-3 * torch.finfo(dtype).eps):
        loss = folding_loss(model, x, x2, method=method, reduction="none", generator=gen)
        assert torch.equal(loss.detach(), torch.ones_like(loss)), (method, dtype, loss)
    # the docstring's promise, the same for the mean and for soft χ
    assert float(folding_loss(model, x, x, method=method, generator=gen)) == 1.0
    assert torch.equal(soft_chi(model, x, x, method=method, generator=gen).detach(), torch.zeros(len(x), dtype=dtype))


@pytest.mark.parametrize("method", ["grid", "random"])
def test_segments_just_longer_than_the_rule_are_not_noise(method):
    """Above the rule, a segment in one region (exact walk: one region, so χ = 0) has loss 1 up to
    round-off in float32; without the rule the noise was up to 0.3 at relative length 1e-6."""
    from spacefold.folding import walk_batch

    model = sf.mlp("3x20", 2, 3, seed=0)
    x, d = _segments(torch.float32, 200)
    x2 = x + 4 * math.sqrt(torch.finfo(torch.float32).eps) * x.abs().amax(1, keepdim=True) * d
    assert not point_segments(x, x2).any()
    wb = walk_batch(model, x, x2, method="exact")
    one = (wb.offsets[1:] - wb.offsets[:-1]) == 1
    assert one.sum() > 150
    loss = folding_loss(model, x, x2, method=method, reduction="none", generator=torch.Generator().manual_seed(0))
    assert float((loss.detach()[one] - 1).abs().max()) < 1e-3


# --------------------------------------------------------------------------- duplicate list options


def _exit_2(capsys, argv, needle: str) -> str:
    from spacefold.cli import main

    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err and needle in lines[0], err
    return lines[0]


@pytest.mark.parametrize("argv, option", [
    (["sweep", "--seeds", "0", "0"], "--seeds"),
    (["sweep", "--seeds", "0", "1", "0"], "--seeds"),
    (["sweep", "--archs", "3x20", "20-20-20"], "--archs"),  # one architecture in two spellings
    (["plot", "path", "--cantornet", "1", "--index", "1", "1", "-o", "x.png"], "--index"),
    (["plot", "path", "--cantornet", "1", "--format", "png", "PNG", "-o", "x.png"], "--format"),
    (["adversarial", "--model", "m.pt", "--data", "blobs", "--classes", "1", "1"], "--classes"),
    (["adversarial", "--model", "m.pt", "--data", "blobs", "--attacks", "fgsm", "FGSM"], "--attacks"),
])
def test_repeated_list_values_are_refused(capsys, monkeypatch, tmp_path, argv, option):
    monkeypatch.chdir(tmp_path)
    line = _exit_2(capsys, argv, option)
    assert "must be distinct" in line and "more than once" in line
    assert list(tmp_path.iterdir()) == []  # nothing trained, nothing written


def test_repeated_values_refused_by_the_api(tmp_path):
    from spacefold.data import make_synthetic
    from spacefold.errors import InputError
    from spacefold.study import run_study

    data = make_synthetic("blobs", seed=0)
    with pytest.raises(InputError, match="seeds must be distinct, got 0 more than once"):
        run_study(data, ["3x20"], [0, 0], tmp_path)
    with pytest.raises(InputError, match="archs must be distinct, got '3x20' more than once"):
        run_study(data, ["3x20", "20,20,20"], [0], tmp_path)
    assert list(tmp_path.iterdir()) == []
