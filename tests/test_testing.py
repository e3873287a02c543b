"""spacefold.testing: the oracles users check their own walks against, checked by hand.

A 1-D ReLU net whose regions are known in closed form; a wrong walk must fail the dense-grid
oracle; nets the reference walk cannot read are refused, not walked wrongly.
"""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch
from torch import nn

import spacefold as sf
from spacefold.errors import InputTypeError
from spacefold.testing import (
    agrees_with_dense_grid,
    cantornet_walk,
    collapse,
    dense_walks,
    is_subsequence,
    reference_pattern,
    reference_walk,
)

f64 = torch.float64


def _net() -> nn.Sequential:
    """z = (x - 1/4, x - 3/4, -x): kinks at x = 1/4, 3/4 and 0."""
    net = nn.Sequential(nn.Linear(1, 3), nn.ReLU()).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0], [1.0], [-1.0]]))
        net[0].bias.copy_(torch.tensor([-0.25, -0.75, 0.0]))
    return net


def test_reference_walk_of_a_hand_checked_net():
    ref = reference_walk(_net(), [-1.0], [1.0])  # x = -1 + 2t: kinks at t = 1/2, 5/8, 7/8
    assert ref.t == [0, Fraction(1, 2), Fraction(5, 8), Fraction(7, 8)]
    assert ref.patterns == [(False, False, True), (False, False, False), (True, False, False), (True, True, False)]
    assert reference_pattern(_net(), [Fraction(1, 2)]) == (True, False, False)
    w = sf.walk(_net(), torch.tensor([-1.0], dtype=f64), torch.tensor([1.0], dtype=f64))
    assert [tuple(p) for p in w.patterns.tolist()] == ref.patterns
    assert w.t.tolist() == [float(t) for t in ref.t]


def test_reference_walk_refuses_what_it_cannot_read():
    with pytest.raises(InputTypeError, match="GELU"):
        reference_walk(nn.Sequential(nn.Linear(1, 2), nn.GELU()), [0.0], [1.0])
    with pytest.raises(InputTypeError, match="Sequential"):
        reference_walk(nn.Linear(1, 2), [0.0], [1.0])  # type: ignore[arg-type]


def test_the_dense_grid_oracle_accepts_the_exact_walk_and_rejects_wrong_ones():
    net = _net()
    x1, x2 = torch.tensor([[-1.0]], dtype=f64), torch.tensor([[1.0]], dtype=f64)
    exact = sf.walk(net, x1[0], x2[0]).patterns
    dense = dense_walks(net, x1, x2, steps=400)[0].patterns
    assert agrees_with_dense_grid(exact, dense)
    assert not agrees_with_dense_grid(exact[[0, 2, 3]], dense)  # a region left out
    assert not agrees_with_dense_grid(exact[[0, 2, 1, 3]], dense)  # two regions swapped
    coarse = dense_walks(net, x1, x2, steps=2)[0].patterns  # t = 0, 1/2, 1: misses (1/2, 5/8) and (5/8, 7/8)
    assert coarse.shape[0] == 3 and agrees_with_dense_grid(exact, coarse)


def test_collapse_and_subsequence():
    p = torch.tensor([[0, 1], [0, 1], [1, 1], [1, 1], [0, 1]], dtype=torch.bool)
    assert collapse(p).tolist() == [[False, True], [True, True], [False, True]]
    assert is_subsequence(p[[0, 4]], collapse(p)) and not is_subsequence(p[[2, 2]], collapse(p))


def test_cantornet_walk_is_the_walk_of_cantornet():
    t, pats = cantornet_walk(2, "A")
    net = sf.cantornet(2, "A")
    w = sf.walk(net, torch.tensor([0.0, 0.75], dtype=f64), torch.tensor([1.0, 0.75], dtype=f64), tie_tol=net.tie_tol)
    assert [tuple(p) for p in w.patterns.tolist()] == pats and t[0] == 0
