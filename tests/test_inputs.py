"""Bad input at the edge: every public function answers with a ValueError/TypeError
whose message names the argument (and what was expected)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import spacefold as sf
from spacefold._core import folding as folding_mod
from spacefold._core import measure


@pytest.fixture
def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))


A, B = torch.zeros(3), torch.ones(3)
XA, XB = torch.zeros(4, 3), torch.ones(4, 3)
WALK = torch.tensor([[0, 0], [1, 0], [0, 0]], dtype=torch.bool)


# --------------------------------------------------------------------------------------
# Segments and models
# --------------------------------------------------------------------------------------


def test_mismatched_shapes(net):
    with pytest.raises(ValueError, match=r"x1 and x2 must have the same shape, got x1 \(3,\) and x2 \(4,\)"):
        sf.folding(net, A, torch.ones(4), method="uniform")
    with pytest.raises(ValueError, match=r"x1 and x2 must have the same shape.*\(4, 3\).*\(5, 3\)"):
        sf.folding_batch(net, XA, torch.ones(5, 3), method="uniform")
    with pytest.raises(ValueError, match="x1 and x2 must have the same shape"):
        sf.walk(net, A, torch.ones(1, 3), method="bisect")


@pytest.mark.parametrize("method", ["uniform", "bisect"])
def test_input_that_does_not_fit_the_model(net, method):
    with pytest.raises(ValueError, match=r"inputs of shape \(5,\).*do not fit the model Sequential"):
        sf.folding(net, torch.zeros(5), torch.ones(5), method=method)
    with pytest.raises(ValueError, match=r"inputs of shape \(2\,\).*do not fit"):
        sf.folding_batch(net, torch.zeros(4, 2), torch.ones(4, 2), method=method)
    with pytest.raises(ValueError, match=r"inputs of shape \(5,\).*do not fit"):
        sf.folding_pairs(net, torch.zeros(3, 5), [0, 1], [1, 2], method=method)


def test_activation_patterns_input_that_does_not_fit(net):
    with pytest.raises(ValueError, match=r"x of shape \(2, 5\) does not fit the model Sequential"):
        sf.activation_patterns(net, torch.zeros(2, 5))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_and_inf_inputs(net, bad):
    x = torch.zeros(3)
    x[1] = bad
    with pytest.raises(ValueError, match="x1 holds 1 NaN or inf"):
        sf.folding(net, x, B, method="uniform")
    with pytest.raises(ValueError, match="x2 holds 1 NaN or inf"):
        sf.walk(net, A, x, method="bisect")
    xb = XB.clone()
    xb[2, 0] = bad
    with pytest.raises(ValueError, match="x2 holds 1 NaN or inf"):
        sf.folding_batch(net, XA, xb, method="bisect")
    with pytest.raises(ValueError, match="x holds 1 NaN or inf"):
        sf.folding_pairs(net, xb, [0], [1], method="bisect")
    with pytest.raises(ValueError, match="x holds 1 NaN or inf"):
        sf.activation_patterns(net, xb)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("workers", [1, 2])
def test_nan_and_inf_in_paired_segments_of_the_mlp_kernels(bad, workers):
    """folding_batch checks its inputs for NaN and inf from the norms its MLP kernels' first layer computes (and
    every value otherwise): the same error, naming the tensor, for exact walks of a small ReLU MLP in float32 and
    float64 and for bisection; large finite values pass."""
    net = sf.mlp("2x8", in_features=3, n_classes=2, seed=0)
    g = torch.Generator().manual_seed(0)
    x1, x2 = torch.randn(600, 3, generator=g), torch.randn(600, 3, generator=g)
    x2[517, 2] = bad
    for kw in ({}, {"dtype": torch.float64}, {"method": "bisect"}):
        with pytest.raises(ValueError, match="x2 holds 1 NaN or inf"):
            sf.folding_batch(net, x1, x2, workers=workers, **kw)
        with pytest.raises(ValueError, match="x1 holds 1 NaN or inf"):
            sf.folding_batch(net, x2, x1, workers=workers, **kw)
    x2[517, 2] = 3e38  # (finite: its square overflows float32 but not float64)
    assert sf.folding_batch(net, x1, x2, workers=workers).chi.shape == (600,)


def test_steps(net):
    with pytest.raises(ValueError, match="steps must be an int >= 1, got 0"):
        sf.folding(net, A, B, method="uniform", steps=0)
    with pytest.raises(ValueError, match="steps must be an int >= 1, got -3"):
        sf.folding_batch(net, XA, XB, method="uniform", steps=-3)
    with pytest.raises(TypeError, match="steps must be an int"):
        sf.folding(net, A, B, method="uniform", steps=10.0)
    with pytest.raises(TypeError, match="steps must be an int"):
        sf.walk(net, A, B, method="uniform", steps=True)


def test_unknown_method_and_stop_rule(net):
    with pytest.raises(
        ValueError, match=r"method must be one of 'exact', 'bisect', 'uniform', 'certified', got 'grid'"
    ):
        sf.folding(net, A, B, method="grid")
    with pytest.raises(ValueError, match="method must be one of"):
        sf.folding_batch(net, XA, XB, method="Bisect")
    with pytest.raises(ValueError, match=r"stop must be one of 'strict', 'hamming1', got 'loose'"):
        sf.folding(net, A, B, method="bisect", stop="loose")
    with pytest.raises(ValueError, match="stop must be one of"):
        folding_mod.walk_batch(net, XA, XB, method="bisect", stop=None)


def test_batch_size(net):
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        sf.folding_batch(net, XA, XB, method="uniform", batch_size=0)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        sf.folding_pairs(net, XA, [0], [1], method="uniform", batch_size=0)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        sf.activation_patterns(net, XA, batch_size=0)
    with pytest.raises(TypeError, match="batch_size must be an int"):
        sf.folding_batch(net, XA, XB, method="uniform", batch_size=2.5)


def test_tolerances(net):
    with pytest.raises(ValueError, match="tol must be a finite number >= 0, got -1e-06"):
        sf.folding(net, A, B, method="bisect", tol=-1e-6)
    with pytest.raises(ValueError, match="tol must be a finite number >= 0, got nan"):
        sf.folding_batch(net, XA, XB, method="bisect", tol=float("nan"))
    with pytest.raises(TypeError, match="tol must be a number"):
        sf.folding(net, A, B, method="bisect", tol="small")
    with pytest.raises(ValueError, match="tie_tol must be a finite number >= 0"):
        sf.folding(net, A, B, method="uniform", tie_tol=-0.1)
    with pytest.raises(ValueError, match="tie_tol must be a finite number >= 0"):
        sf.activation_patterns(net, XA, tie_tol=-0.1)
    with pytest.raises(ValueError, match="n0 must be an int >= 2, got 1"):
        sf.folding(net, A, B, method="bisect", n0=1)


def test_non_tensor_inputs(net):
    with pytest.raises(TypeError, match="x1 must be a torch.Tensor.*got list"):
        sf.folding(net, [0.0, 0.0, 0.0], B, method="uniform")
    with pytest.raises(TypeError, match="x2 must be a torch.Tensor.*got ndarray"):
        sf.walk(net, A, B.numpy(), method="uniform")
    with pytest.raises(TypeError, match="x1 must be a torch.Tensor"):
        sf.folding_batch(net, XA.tolist(), XB, method="uniform")
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        sf.folding_pairs(net, XA.tolist(), [0], [1], method="uniform")
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        sf.activation_patterns(net, XA.tolist())
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got function"):
        sf.folding(lambda x: x, A, B, method="uniform")
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got str"):
        sf.activation_patterns("net", XA)


def test_segment_shapes(net):
    with pytest.raises(ValueError, match="x1 must be one input.*0-d tensor"):
        sf.folding(net, torch.tensor(0.0), torch.tensor(1.0), method="uniform")
    with pytest.raises(ValueError, match=r"x1 and x2 must have shape \(batch, \*input_shape\), got \(3,\)"):
        sf.folding_batch(net, A, B, method="uniform")
    with pytest.raises(ValueError, match="x1 and x2 must hold at least one segment"):
        sf.folding_batch(net, torch.zeros(0, 3), torch.zeros(0, 3), method="uniform")
    from spacefold._core.walk.exact import exact_walks

    with pytest.raises(ValueError, match="x1 and x2 must hold at least one segment"):
        exact_walks(net, torch.zeros(0, 3), torch.zeros(0, 3))
    with pytest.raises(ValueError, match="dtype must be a floating torch dtype"):
        sf.folding(net, A, B, method="uniform", dtype=torch.int64)


def test_pair_indices(net):
    with pytest.raises(ValueError, match="i and j must have the same length, got 2 and 1"):
        sf.folding_pairs(net, XA, [0, 1], [1], method="uniform")
    with pytest.raises(ValueError, match=r"j must index rows of x in \[0, 3\]"):
        sf.folding_pairs(net, XA, [0, 1], [1, 4], method="uniform")
    with pytest.raises(ValueError, match=r"i must index rows of x in \[0, 3\]"):
        sf.folding_pairs(net, XA, [-1], [1], method="uniform")
    with pytest.raises(TypeError, match="j must be integer indices.*float"):
        sf.folding_pairs(net, XA, [0, 1], [1.0, 2.5], method="uniform")
    with pytest.raises(ValueError, match="i and j must name at least one pair"):
        sf.folding_pairs(net, XA, [], [], method="uniform")
    with pytest.raises(ValueError, match=r"x must have shape \(n_samples, \*input_shape\)"):
        sf.folding_pairs(net, A, [0], [1], method="uniform")


def test_layers_argument(net):
    with pytest.raises(ValueError, match="layers names 'relu'"):
        sf.folding(net, A, B, method="uniform", layers="relu")
    with pytest.raises(TypeError, match="layers entries must be module names"):
        sf.folding_batch(net, XA, XB, method="uniform", layers=[1])


# --------------------------------------------------------------------------------------
# Walks given to the measures
# --------------------------------------------------------------------------------------

MEASURES = [
    ("chi", sf.chi),
    ("ranges", sf.ranges),
    ("chi_profile", sf.chi_profile),
    ("max_profile", measure.max_profile),
    ("symmetric_chi", sf.symmetric_chi),
    ("chi_bounds", sf.chi_bounds),
    ("interactions", measure.interactions),
    ("refine", measure.refine),
    ("interaction", lambda w: sf.interaction(w, 0)),
    ("distance_to_start", measure.distance_to_start),
]


@pytest.mark.parametrize("name, fn", MEASURES, ids=[m[0] for m in MEASURES])
def test_measure_rejects_bad_walks(name, fn):
    with pytest.raises(ValueError, match="walk must hold only 0 and 1, got other values"):
        fn(torch.tensor([[0, 2], [1, 0]]))
    with pytest.raises(ValueError, match="walk must hold only 0 and 1"):
        fn(torch.tensor([[0.0, 0.5], [1.0, 0.0]]))
    with pytest.raises(ValueError, match="walk holds NaN or inf"):
        fn(torch.tensor([[0.0, float("nan")], [1.0, 0.0]]))
    with pytest.raises(ValueError, match=r"walk must have shape \(n_points, n_neurons\).*got shape \(4,\)"):
        fn(torch.zeros(4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"walk must have shape.*got shape \(1, 2, 3, 4\)"):
        fn(torch.zeros(1, 2, 3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="walk must hold at least one pattern"):
        fn(torch.zeros(0, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="walk must be a torch.Tensor of 0/1 patterns, got list"):
        fn([[0, 1], [1, 0]])


def test_refine_takes_one_walk():
    with pytest.raises(ValueError, match="refine takes one walk"):
        measure.refine(WALK.unsqueeze(0))


def test_interaction_k():
    with pytest.raises(ValueError, match=r"k must lie in \[0, 2\].*got \[3\]"):
        sf.interaction(WALK, 3)
    with pytest.raises(ValueError, match=r"k must lie in \[0, 2\].*got \[-1\]"):
        sf.interaction(WALK, -1)
    with pytest.raises(TypeError, match="k must be an integer index"):
        sf.interaction(WALK, 1.0)
    with pytest.raises(TypeError, match="k must be an integer index"):
        sf.interaction(WALK, True)
    with pytest.raises(TypeError, match="k must be an int"):
        sf.interaction(WALK, "1")
    batch = torch.stack([WALK, WALK])
    with pytest.raises(ValueError, match=r"k must be an int or a tensor of shape \(2,\), got shape \(3,\)"):
        sf.interaction(batch, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"k must lie in \[0, 2\]"):
        sf.interaction(batch, torch.tensor([0, 5]))


def test_pad_walks_and_ragged_ranges_inputs():
    with pytest.raises(ValueError, match="walks must hold at least one walk"):
        measure.pad_walks([])
    with pytest.raises(TypeError, match="walks must be a sequence of walks"):
        measure.pad_walks(WALK)
    with pytest.raises(
        ValueError, match=r"walks must all have the same n_neurons, got 2 for walks\[0\] and 3 for walks\[1\]"
    ):
        measure.pad_walks([WALK, torch.zeros(2, 3, dtype=torch.bool)])
    with pytest.raises(ValueError, match=r"walks\[1\] must hold only 0 and 1"):
        measure.pad_walks([WALK, torch.full((2, 2), 3)])
    with pytest.raises(ValueError, match=r"walks\[0\] must have shape \(n_points, n_neurons\)"):
        measure.pad_walks([WALK.unsqueeze(0)])
    with pytest.raises(ValueError, match=r"offsets must run from 0 to the number of rows of patterns \(3\)"):
        measure.ragged_ranges(WALK, torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="every walk must hold at least one pattern"):
        measure.ragged_ranges(WALK, torch.tensor([0, 0, 3]))
    with pytest.raises(TypeError, match="patterns must be a bool tensor"):
        measure.ragged_ranges(WALK.long(), torch.tensor([0, 3]))
    with pytest.raises(TypeError, match="offsets must be a 1-D int tensor"):
        measure.ragged_ranges(WALK, [0, 3])
