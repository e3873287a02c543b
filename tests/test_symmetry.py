"""spacefold.studies.symmetry: mirrors, invariance, segments x -> T(x), the symmetry check, the closed-walk bound.

The oracle is a hand-built mirror-invariant ReLU net f(x) = g(|x_1|, x_2) with
|x_1| = relu(x_1) + relu(-x_1):

    layer "1": (relu(x1), relu(-x1), relu(x2))                       bits (x1 > 0, x1 < 0, x2 > 0)
    layer "3": (relu(u - 1), relu(u - 2), relu(x2)),  u = |x1|        bits (|x1| > 1, |x1| > 2, x2 > 0)

On the segment (a, b) -> (-a, b) (a > 0), u runs a -> 0 -> a. Layer "1" goes 10c -> 01c in one
step of two bits at x1 = 0 (the two neurons cross together): r1 = r2 = 2, χ = 0. Layer "3" runs
its patterns forward and back, a closed walk: for a > 2, 11c -> 10c -> 00c -> 10c -> 11c, r1 = 2,
r2 = 4, χ = 1/2; for 1 < a < 2, 10c -> 00c -> 10c, χ = 1/2; for a < 1 it never changes (χ = 0).
All layers (distance to the start of 101|111 for a > 2, b > 0): 0, 1, 2, 4, 3, 2 with steps
1, 1, 2, 1, 1: r1 = 4, r2 = 6, χ = 1/3; for 1 < a < 2: 0, 1, 3, 2 with steps 1, 2, 1: χ = 1/4;
for a < 1: one step of 2, χ = 0.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import spacefold as sf
from spacefold.errors import InputError, InputTypeError
from spacefold.studies.symmetry import (
    Mirror,
    check_symmetry,
    closed_walk_bound,
    invariance,
    invariant_mlp,
    matched_random_segments,
    mirror,
    same_class_pairs,
    transform_segments,
    transplanted_segments,
)

FAST = settings(max_examples=40, deadline=None)


def abs_net() -> nn.Sequential:
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]]))
        net[0].bias.zero_()
        net[2].weight.copy_(torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
        net[2].bias.copy_(torch.tensor([-1.0, -2.0, 0.0]))
        net[4].weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [-1.0, 1.0, 0.0]]))
        net[4].bias.copy_(torch.tensor([0.0, 0.3]))
    return net


def expected_chi(a: float) -> tuple[float, float, float]:
    """(all layers, layer "1", layer "3") for the segment (a, b) -> (-a, b), by hand (module docstring)."""
    a = abs(a)
    if a > 2:
        return 1 / 3, 0.0, 0.5
    if a > 1:
        return 1 / 4, 0.0, 0.5
    return 0.0, 0.0, 0.0


# --------------------------------------------------------------------------- the oracle net


def test_abs_net_walk_by_hand():
    net = abs_net()
    x1, x2 = transform_segments(torch.tensor([[2.5, 0.5]], dtype=torch.float64), Mirror(axis=0))
    assert x2.tolist() == [[-2.5, 0.5]]
    fb = sf.folding_batch(net, x1, x2, per_layer=True, return_walks=True)
    walk = fb.walks[0].patterns.int().tolist()
    assert walk == [
        [1, 0, 1, 1, 1, 1],
        [1, 0, 1, 1, 0, 1],
        [1, 0, 1, 0, 0, 1],
        [0, 1, 1, 0, 0, 1],
        [0, 1, 1, 1, 0, 1],
        [0, 1, 1, 1, 1, 1],
    ]
    assert (int(fb.r1[0]), int(fb.r2[0])) == (4, 6)
    assert float(fb.chi[0]) == pytest.approx(1 / 3)
    assert float(fb.per_layer["1"][0]) == 0.0
    assert float(fb.per_layer["3"][0]) == pytest.approx(0.5)
    # layer "3" is invariant: its walk is closed, so the bound is 1/2 and χ meets it
    assert closed_walk_bound(fb.walks[0].patterns[:, 3:]) == 0.5


@FAST
@given(
    a=st.floats(0.05, 4.0).filter(lambda v: min(abs(v - 1), abs(v - 2)) > 1e-3),
    b=st.floats(-3.0, 3.0).filter(lambda v: abs(v) > 1e-3),
    sign=st.sampled_from([1.0, -1.0]),
)
def test_abs_net_mirror_segments_property(a, b, sign):
    net = abs_net()
    x = torch.tensor([[sign * a, b]], dtype=torch.float64)
    fb = sf.folding_batch(net, *transform_segments(x, Mirror(axis=0)), per_layer=True, return_walks=True)
    full, first, second = expected_chi(a)
    assert float(fb.chi[0]) == pytest.approx(full)
    assert float(fb.per_layer["1"][0]) == 0.0
    assert float(fb.per_layer["3"][0]) == pytest.approx(second)
    pats = fb.walks[0].patterns
    assert torch.equal(pats[0, 3:], pats[-1, 3:])  # the invariant layer: same pattern at x and Mx
    assert int((pats[0, :3] ^ pats[-1, :3]).sum()) == 2  # the first layer swaps relu(x1) and relu(-x1)


def test_abs_net_invariance_by_hand():
    net = abs_net()
    x = torch.tensor([[2.5, 0.5], [-0.3, -1.0], [1.5, 2.0], [0.7, 0.0]], dtype=torch.float64)
    inv = invariance(net, x, Mirror(axis=0))
    assert inv.agreement == 1.0
    assert inv.per_layer == {"1": 2.0, "3": 0.0}
    assert inv.per_layer_fraction == {"1": pytest.approx(2 / 3), "3": 0.0}
    assert inv.hamming == 2.0
    assert inv.distance.tolist() == [2, 2, 2, 2]
    assert inv.same_prediction.all()


def test_invariance_detects_a_transform_that_is_no_symmetry():
    net = abs_net()
    x = torch.tensor([[2.5, 0.5], [0.5, 0.5]], dtype=torch.float64)

    def shift(v):
        return v + torch.tensor([1.0, 0.0], dtype=v.dtype)

    inv = invariance(net, x, shift)
    # (2.5, .5) -> (3.5, .5): layer "1" keeps 101, layer "3" keeps 111; (0.5, .5) -> (1.5, .5): layer "3" 001 -> 101
    assert inv.per_layer == {"1": 0.0, "3": 0.5}
    # logits: (2.5,.5): h=(1.5,.5,.5) -> (0.75, -0.7); (3.5,.5): h=(2.5,1.5,.5) -> (-0.25, -0.7); both class 0
    # (0.5,.5): h=(0,0,.5) -> (0.25, 0.3) class 1; (1.5,.5): h=(.5,0,.5) -> (0.75, -0.2) class 0
    assert inv.same_prediction.tolist() == [True, False]
    assert inv.agreement == 0.5


# --------------------------------------------------------------------------- mirror


def test_mirror_vector_and_center():
    x = torch.tensor([[1.0, 2.0, 3.0]])
    assert mirror(x, 0).tolist() == [[-1.0, 2.0, 3.0]]
    assert mirror(x, -1).tolist() == [[1.0, 2.0, -3.0]]
    assert mirror(x, 1, center=0.5).tolist() == [[1.0, -1.0, 3.0]]
    assert x.tolist() == [[1.0, 2.0, 3.0]]  # not changed in place


def test_mirror_images_flat_and_shaped():
    img = torch.arange(6.0).reshape(1, 2, 3)  # [[0, 1, 2], [3, 4, 5]]
    assert mirror(img).tolist() == [[[2.0, 1.0, 0.0], [5.0, 4.0, 3.0]]]
    assert mirror(img, 0).tolist() == [[[3.0, 4.0, 5.0], [0.0, 1.0, 2.0]]]
    flat = img.reshape(1, 6)
    assert mirror(flat, -1, image_shape=(2, 3)).tolist() == [[2.0, 1.0, 0.0, 5.0, 4.0, 3.0]]
    assert Mirror(-1, image_shape=(2, 3))(flat).tolist() == [[2.0, 1.0, 0.0, 5.0, 4.0, 3.0]]


@FAST
@given(
    n=st.integers(1, 4),
    h=st.integers(1, 5),
    w=st.integers(1, 5),
    axis=st.sampled_from([0, 1, -1]),
    seed=st.integers(0, 1000),
)
def test_mirror_is_an_isometric_involution(n, h, w, axis, seed):
    x = torch.randn(n, h * w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    m = Mirror(axis, image_shape=(h, w))
    assert torch.equal(m(m(x)), x)
    assert torch.allclose(m(x).norm(dim=1), x.norm(dim=1))
    v = x[:, : min(3, h * w)].contiguous()
    ax = axis % v.shape[1]
    assert torch.equal(mirror(mirror(v, ax), ax), v)
    # a reflection keeps distances between inputs
    assert torch.allclose(torch.cdist(mirror(v, ax), mirror(v, ax)), torch.cdist(v, v))


def test_mirror_bad_input():
    with pytest.raises(InputTypeError, match="x must be a torch.Tensor"):
        mirror([[1.0, 2.0]], 0)
    with pytest.raises(InputError, match="at least 2 dimensions"):
        mirror(torch.tensor([1.0, 2.0]), 0)
    with pytest.raises(InputError, match="axis must index a coordinate"):
        mirror(torch.zeros(3, 2), 2)
    with pytest.raises(InputError, match=r"x must hold images of shape \(28, 28\)"):
        mirror(torch.zeros(3, 100), image_shape=(28, 28))
    with pytest.raises(InputError, match="axis must index an image axis"):
        mirror(torch.zeros(3, 4, 4), 2)
    with pytest.raises(InputTypeError, match="axis must be an int"):
        mirror(torch.zeros(3, 2), 0.0)
    with pytest.raises(InputError, match="image_shape must be a non-empty"):
        Mirror(image_shape=(0, 3))
    with pytest.raises(InputTypeError, match="floating"):
        mirror(torch.zeros(3, 2, dtype=torch.long), 0)


# --------------------------------------------------------------------------- segments


@FAST
@given(n=st.integers(1, 6), d=st.integers(1, 8), seed=st.integers(0, 10_000))
def test_matched_random_segments_keep_length(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    x1 = torch.randn(n, d, generator=g, dtype=torch.float64)
    x2 = torch.randn(n, d, generator=g, dtype=torch.float64)
    a, b = matched_random_segments(x1, x2, seed=seed)
    assert a is x1
    assert torch.allclose((b - a).norm(dim=1), (x2 - x1).norm(dim=1))
    again = matched_random_segments(x1, x2, seed=seed)[1]
    assert torch.equal(b, again)


def test_matched_random_segments_directions_are_spread():
    # uniform directions in the plane: the mean of cos(angle) and sin(angle) is near 0
    x1 = torch.zeros(4000, 2, dtype=torch.float64)
    x2 = torch.tensor([[1.0, 0.0]], dtype=torch.float64).expand(4000, 2)
    _, b = matched_random_segments(x1, x2, seed=3)
    assert torch.allclose(b.norm(dim=1), torch.ones(4000, dtype=torch.float64))
    assert abs(float(b[:, 0].mean())) < 0.05 and abs(float(b[:, 1].mean())) < 0.05
    assert abs(float((b[:, 0] > 0).double().mean()) - 0.5) < 0.05


def test_transplanted_segments():
    x1 = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    x2 = mirror(x1, 0)
    starts = torch.tensor([[0.5, 0.0], [3.0, 1.0]])
    a, b = transplanted_segments(x1, x2, starts)
    assert a is starts
    assert b.tolist() == [[-1.5, 0.0], [3.0, 1.0]]
    with pytest.raises(InputError, match="x1, x2 and starts must have the same shape"):
        transplanted_segments(x1, x2, starts[:1])


def test_segments_bad_input():
    with pytest.raises(InputError, match="same shape"):
        matched_random_segments(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(InputError, match="must return a tensor of the input's shape"):
        transform_segments(torch.zeros(2, 3), lambda v: v[:, :2])
    with pytest.raises(InputTypeError, match="transform must be a callable"):
        transform_segments(torch.zeros(2, 3), "mirror")
    with pytest.raises(InputError, match="NaN or inf"):
        transform_segments(torch.zeros(2, 3), lambda v: v / 0.0)
    with pytest.raises(InputError, match="y must hold the labels"):
        transform_segments(torch.zeros(2, 3), Mirror(0), check=True)


@FAST
@given(seed=st.integers(0, 1000), n_pairs=st.integers(1, 30))
def test_same_class_pairs(seed, n_pairs):
    y = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3])
    i, j = same_class_pairs(y, n_pairs, seed=seed)
    assert i.shape == j.shape == (n_pairs,)
    assert torch.equal(y[i], y[j])
    assert (i != j).all()
    assert not (y[i] == 2).any()  # a class with one member has no pair


def test_same_class_pairs_bad_input():
    with pytest.raises(InputError, match="at least two members"):
        same_class_pairs(torch.tensor([0, 1, 2]), 3)
    with pytest.raises(InputTypeError, match="1-D integer tensor"):
        same_class_pairs(torch.tensor([0.0, 0.0]), 3)


# --------------------------------------------------------------------------- is T a symmetry of the data?


def plane(n: int, seed: int, right_only: bool = False) -> torch.Tensor:
    x = torch.rand(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 4 - 2
    if right_only:
        x[:, 0] = x[:, 0].abs()
    return x


def even_label(x):
    return (x[:, 1] > torch.cos(2 * x[:, 0])).long()


def test_check_symmetry_with_a_known_labelling():
    x = plane(500, 0)
    c = check_symmetry(x, even_label(x), Mirror(0), label_fn=even_label, tol=0.0)
    assert c.label_change == 0.0 and c.method == "label_fn" and math.isnan(c.distance_ratio)
    y = (x[:, 0] > 0).long()  # the side of the axis: every label flips

    def side(v):
        return (v[:, 0] > 0).long()

    assert check_symmetry(x, y, Mirror(0), label_fn=side).label_change == 1.0
    with pytest.raises(InputError, match="not a symmetry of the data set: it changes the label of 100.0%"):
        check_symmetry(x, y, Mirror(0), label_fn=side, tol=0.1)
    with pytest.raises(InputError, match="not a symmetry"):
        transform_segments(x, Mirror(0), y=y, check=True, tol=0.1, label_fn=side)


def test_check_symmetry_nearest_neighbour():
    pytest.importorskip("sklearn")
    x = plane(800, 1)
    good = check_symmetry(x, even_label(x), Mirror(0), tol=0.05)
    assert good.label_change <= 0.05 and good.method == "1-nn"
    assert 0.5 < good.distance_ratio < 2.0  # the set covers its mirror image
    bad = (x[:, 0] > 0).long()
    assert check_symmetry(x, bad, Mirror(0)).label_change > 0.95
    with pytest.raises(InputError, match="not a symmetry"):
        check_symmetry(x, bad, Mirror(0), tol=0.05)
    # a set on one side of the axis: the mirror maps it where there is no data
    half = plane(800, 2, right_only=True)
    far = check_symmetry(half, even_label(half), Mirror(0))
    assert far.distance_ratio > 10


def test_check_symmetry_bad_input():
    x = plane(10, 0)
    y = even_label(x)
    with pytest.raises(InputError, match=r"y must have shape \(10,\)"):
        check_symmetry(x, y[:5], Mirror(0), label_fn=even_label)
    with pytest.raises(InputTypeError, match="integer tensor of labels"):
        check_symmetry(x, y.double(), Mirror(0), label_fn=even_label)
    with pytest.raises(InputError, match="tol must be a share"):
        check_symmetry(x, y, Mirror(0), label_fn=even_label, tol=2)
    with pytest.raises(InputError, match="one label per input"):
        check_symmetry(x, y, Mirror(0), label_fn=lambda v: torch.zeros(3, dtype=torch.long))
    with pytest.raises(InputError, match="axis must index a coordinate"):
        check_symmetry(x, y, Mirror(5), label_fn=even_label)
    with pytest.raises(InputError, match=r"x must hold images of shape \(28, 28\)"):
        check_symmetry(x, y, Mirror(-1, image_shape=(28, 28)), label_fn=even_label)


# --------------------------------------------------------------------------- the bound


def test_closed_walk_bound_by_hand():
    w = torch.tensor([[0, 0, 0], [1, 0, 0], [1, 1, 0], [1, 0, 0], [0, 0, 0]])
    assert closed_walk_bound(w) == 0.5
    assert sf.chi(w) == 0.5
    straight = torch.tensor([[0, 0], [1, 0], [1, 1]])  # h = r2 = 2: bound 0
    assert closed_walk_bound(straight) == 0.0
    assert closed_walk_bound(torch.zeros(3, 4)) == 0.0  # r2 = 0
    padded = torch.tensor([[0, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 0], [1, 1, 0]])  # straight, padded
    assert closed_walk_bound(torch.stack([w, padded])).tolist() == [0.5, 0.0]


@FAST
@given(st.data())
def test_chi_is_at_least_the_closed_walk_bound(data):
    n = data.draw(st.integers(1, 12))
    k = data.draw(st.integers(1, 6))
    bits = data.draw(st.lists(st.lists(st.booleans(), min_size=k, max_size=k), min_size=n, max_size=n))
    w = torch.tensor(bits)
    if data.draw(st.booleans()):
        w = torch.cat([w, w[:1]])  # close the walk
    r1, r2 = sf.ranges(w)
    bound = closed_walk_bound(w)
    assert sf.chi(w) >= bound - 1e-12
    if torch.equal(w[0], w[-1]) and r2 > 0:
        assert bound == 0.5


# --------------------------------------------------------------------------- the tied, exactly invariant MLP


@FAST
@given(seed=st.integers(0, 10_000))
def test_invariant_mlp_is_invariant_from_layer_two_and_folds_the_mirror_segment(seed):
    g = torch.Generator().manual_seed(seed)
    model = invariant_mlp("3x6", 2, 3, Mirror(0), seed=seed % 50).double()
    x = torch.randn(20, 2, generator=g, dtype=torch.float64)
    inv = invariance(model, x, Mirror(0))
    assert inv.agreement == 1.0
    assert inv.per_layer["net.3"] == 0.0 and inv.per_layer["net.5"] == 0.0
    fb = sf.folding_batch(model, *transform_segments(x, Mirror(0)), per_layer=True, return_walks=True)
    for i, w in enumerate(fb.walks.walks()):
        tail = w.patterns[:, 6:]  # layers "net.3" and "net.5": a closed walk
        assert torch.equal(tail[0], tail[-1])
        r1, r2 = sf.ranges(tail)
        if r2 > 0:
            assert sf.chi(tail) >= 0.5
        assert float(fb.per_layer["net.1"][i]) == 0.0  # the first layer never folds a segment


def test_invariant_mlp_images_and_gradient_steps():
    m = Mirror(-1, image_shape=(3, 4))
    model = invariant_mlp("4-5", 12, 2, m, seed=0)
    x = torch.rand(30, 12, generator=torch.Generator().manual_seed(0))
    y = (x[:, 0] + x[:, 3] > 1).long()  # invariant under the flip of the rows' pixel order
    for _ in range(5):  # a few plain gradient steps on the untied parameters keep the ties
        model.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.5 * p.grad
    inv = invariance(model, x, m)
    assert inv.agreement == 1.0 and inv.per_layer["net.3"] == 0.0
    w = model.net[0].weight.detach()
    assert torch.equal(w[2:], m(w[:2]))  # the second pair member sees the mirror image


def test_invariant_mlp_bad_input():
    with pytest.raises(InputError, match="at least two hidden layers and an even first width"):
        invariant_mlp("5-4", 2, 2, Mirror(0))
    with pytest.raises(InputError, match="at least two hidden layers"):
        invariant_mlp("1x4", 2, 2, Mirror(0))
    with pytest.raises(InputError, match="orthogonal involution"):
        invariant_mlp("2x4", 2, 2, lambda v: 2 * v)
    with pytest.raises(InputError, match="map 0 to 0"):
        invariant_mlp("2x4", 2, 2, Mirror(0, center=1.0))
    with pytest.raises(InputError, match=r"x must hold images of shape \(28, 28\)"):
        invariant_mlp("2x4", 2, 2, Mirror(-1, image_shape=(28, 28)))


@pytest.mark.slow
def test_symmetry_study_plane_phase_runs_and_resumes(tmp_path):
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "experiments" / "symmetry_study.py"
    spec = importlib.util.spec_from_file_location("symmetry_study", script)
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    args = [
        "--phase",
        "plane",
        "--out",
        str(tmp_path),
        "--seeds",
        "0",
        "--plane-epochs",
        "2",
        "--plane-train",
        "200",
        "--plane-test",
        "100",
        "--plane-segments",
        "20",
    ]
    assert study.main(args) == 0
    runs = sorted(p.name for p in (tmp_path / "runs").glob("*.json"))
    assert runs == [f"plane-{c}-s0.json" for c in sorted(study.PLANE_CONDITIONS)]
    tied = study.json.loads((tmp_path / "runs" / "plane-tied-half-s0.json").read_text())
    assert tied["agreement"] == 1.0 and tied["hamming_net.3"] == 0.0 and tied["hamming_net.5"] == 0.0
    for cond in study.PLANE_CONDITIONS:
        row = study.json.loads((tmp_path / "runs" / f"plane-{cond}-s0.json").read_text())
        assert row["mirror_chi_net.1"] == 0.0  # the first layer never folds
        assert row["bound_gap_min_all"] >= -1e-12
    before = (tmp_path / "runs" / "plane-half-s0.json").stat().st_mtime_ns
    assert study.main(args) == 0  # resumes: finished runs are read back, not recomputed
    assert (tmp_path / "runs" / "plane-half-s0.json").stat().st_mtime_ns == before
