"""Exact regions of a plane: patterns at the centroids, tiling, raster counts, CantorNet's known boundaries."""

from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import spacefold as sf
from spacefold._core.plane import input_plane, plane_regions, plane_through, raster_patterns, supports_exact_plane
from spacefold._core.walk.exact import NotPiecewiseLinearError
from spacefold.errors import InputError


def _net(widths, seed, act=nn.ReLU):
    torch.manual_seed(seed)
    mods = []
    for a, b in zip(widths[:-1], widths[1:]):
        mods += [nn.Linear(a, b), act()]
    return nn.Sequential(*mods[:-1]).double()


def _check_regions(net, reg, tie_tol=0.0):
    c = reg.centroids()
    pats = sf.activation_patterns(net, reg.plane.inputs(c), tie_tol=tie_tol)
    assert torch.equal(pats, reg.patterns), "a polygon's pattern differs from the pattern at its centroid"
    a = reg.areas()
    assert (a > 0).all(), "polygons are counter-clockwise with positive area"
    assert a.sum() == pytest.approx(reg.plane.area, rel=1e-9)
    # a pattern class of a ReLU net is convex: one polygon per distinct pattern
    assert torch.unique(reg.patterns, dim=0).shape[0] == reg.n_regions


def test_one_neuron_by_hand():
    # z = x - y on [-1, 1]^2: two triangles, each of area 2, bits 1 below the diagonal
    net = nn.Sequential(nn.Linear(2, 1), nn.ReLU()).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, -1.0]]))
        net[0].bias.zero_()
    reg = plane_regions(net, input_plane((-1, 1, -1, 1)))
    assert reg.n_regions == 2
    assert sorted(reg.areas().tolist()) == pytest.approx([2.0, 2.0])
    on = reg.patterns[:, 0].numpy()
    assert reg.centroids()[on][0] == pytest.approx([1 / 3, -1 / 3])
    assert reg.centroids()[~on][0] == pytest.approx([-1 / 3, 1 / 3])


def test_tiny_polygons_far_from_the_origin():
    # the line x = ox + h/2 halves a square of side h = 1e-6 at (ox, oy) ~ (1e4, 1e4): areas and
    # centroids to a small fraction of h (no cancellation between coordinates of size 1e4)
    h, ox, oy = 1e-6, 1e4 + 0.123456, 1e4 + 0.654321
    net = nn.Sequential(nn.Linear(2, 1), nn.ReLU()).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0.0]]))
        net[0].bias.fill_(-(ox + h / 2))
    reg = plane_regions(net, input_plane((ox, ox + h, oy, oy + h)))
    assert reg.areas() == pytest.approx([h * h / 2] * 2, rel=1e-6)
    on = reg.patterns[:, 0].numpy()
    assert np.abs(reg.centroids()[on][0] - (ox + 0.75 * h, oy + 0.5 * h)).max() < 1e-3 * h
    assert np.abs(reg.centroids()[~on][0] - (ox + 0.25 * h, oy + 0.5 * h)).max() < 1e-3 * h


def test_two_lines_four_quadrants():
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU()).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(2))
        net[0].bias.copy_(torch.tensor([-0.5, -0.25]))
    reg = plane_regions(net, input_plane((0, 1, 0, 1)))
    areas = {tuple(p.tolist()): a for p, a in zip(reg.patterns, reg.areas())}
    assert areas == pytest.approx(
        {(False, False): 0.5 * 0.25, (True, False): 0.5 * 0.25, (False, True): 0.5 * 0.75, (True, True): 0.5 * 0.75}
    )


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), width=st.integers(1, 6), depth=st.integers(1, 3), leaky=st.booleans())
def test_random_nets_tile_and_match_centroids(seed, width, depth, leaky):
    net = _net([2] + [width] * depth + [1], seed, act=nn.LeakyReLU if leaky else nn.ReLU)
    reg = plane_regions(net, input_plane((-3, 3, -2, 2)))
    _check_regions(net, reg)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_region_count_matches_raster(seed):
    """A fine raster sees exactly the regions of the polygons (these nets' smallest regions
    span several pixels; every pattern class is convex, so distinct patterns count regions)."""
    net = _net([2, 6, 5, 1], seed)
    plane = input_plane((-2, 2, -2, 2))
    reg = plane_regions(net, plane)
    ids, pats, _, _ = raster_patterns(net, plane, 600)
    assert len(pats) == reg.n_regions
    assert {bytes(np.packbits(p)) for p in pats.numpy()} == {bytes(np.packbits(p)) for p in reg.patterns.numpy()}
    # the raster's pixels of each pattern cover about the polygon's area
    counts = np.bincount(ids.ravel(), minlength=len(pats)) * (4 / 600) ** 2
    order = {bytes(np.packbits(p)): i for i, p in enumerate(pats.numpy())}
    for p, a in zip(reg.patterns.numpy(), reg.areas()):
        assert counts[order[bytes(np.packbits(p))]] == pytest.approx(a, abs=0.02 + 0.05 * a)


def test_mlp_slice_through_three_inputs():
    net = _net([20, 16, 16, 16, 3], 0)
    x = torch.rand(3, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    plane = plane_through(x[0], x[1], x[2])
    assert np.allclose(plane.points[0], 0) and plane.points[1][1] == 0
    assert torch.allclose(plane.inputs(plane.points), x)
    reg = plane_regions(net, plane)
    assert reg.n_regions > 20
    _check_regions(net, reg)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_cantornet_A_known_boundaries(depth):
    from spacefold.models.cantornet import exact_pattern

    net = sf.cantornet(depth, "A")
    # A needs no tie tolerance (bit = z > 0, as in the exact rational patterns); with one,
    # strips 1e-9 wide along the zero lines become regions of their own
    reg = plane_regions(net, input_plane())
    _check_regions(net, reg)
    # the exact pattern (rational arithmetic, from the formulas) at every centroid
    for c, p in zip(reg.centroids(), reg.patterns):
        assert exact_pattern((Fraction(c[0]), Fraction(c[1])), depth, "A") == tuple(p.tolist())
    # the decision boundary (the output neuron's zero line) has its kinks at the Cantor
    # interval ends: each is a vertex of the mesh
    from spacefold.models.cantornet import decision_boundary_vertices

    for vx, vy in decision_boundary_vertices(depth):
        d = np.abs(reg.vertices - [float(vx), float(vy)]).max(1).min()
        assert d < 1e-9, f"boundary vertex ({vx}, {vy}) is no mesh vertex"


def test_not_piecewise_linear_is_refused_and_rastered():
    net = nn.Sequential(nn.Linear(2, 4), nn.GELU(), nn.Linear(4, 1))
    assert "GELU" in supports_exact_plane(net)
    with pytest.raises(NotPiecewiseLinearError, match="raster"):
        plane_regions(net, input_plane())
    ids, pats, u, v = raster_patterns(net, input_plane(), 50)
    assert ids.shape == (50, 50) and ids.max() == len(pats) - 1
    assert "max pooling" in supports_exact_plane(sf.cantornet(1, "B"))


def test_bad_planes():
    x = torch.zeros(5)
    with pytest.raises(InputError, match="x0 and x1 must differ"):
        plane_through(x, x, x + 1)
    with pytest.raises(InputError, match="collinear"):
        plane_through(x, x + 1, x + 2)
    with pytest.raises(InputError, match="one shape"):
        plane_through(x, x + 1, torch.zeros(4))
    with pytest.raises(InputError, match="bounds"):
        input_plane((1, 0, 0, 1))


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), width=st.integers(1, 8), depth=st.integers(1, 3))
def test_kernel_and_numpy_cut_the_same_polygons(seed, width, depth):
    """The compiled cut and the NumPy cut: the same polygons (same order, same corners up to
    vertex numbering) and the same patterns."""
    pytest.importorskip("numba")
    from spacefold._core.plane import _cut_layer_kernel

    if _cut_layer_kernel() is None:
        pytest.skip("the Numba kernel is turned off (SPACEFOLD_NUMBA=0)")
    net = _net([2] + [width] * depth + [1], seed)
    plane = input_plane((-3, 3, -2, 2))
    a = plane_regions(net, plane, kernel=True)
    b = plane_regions(net, plane, kernel=False)
    assert torch.equal(a.patterns, b.patterns)
    assert np.array_equal(a.offsets, b.offsets)
    for i in range(a.n_regions):
        assert np.allclose(a.polygon(i), b.polygon(i), atol=1e-12)


def test_folded_first_layer_changes_nothing():
    """A Sequential starting with Linear is cut on (u, v) directly (the plane folded into the
    first layer); the same network wrapped in another module is evaluated on full inputs."""

    class Wrapped(nn.Module):
        def __init__(self, body):
            super().__init__()
            self.body = body

        def forward(self, x):
            return self.body(x)

    net = _net([12, 10, 10, 2], 3)
    x = torch.rand(3, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    plane = plane_through(x[0], x[1], x[2])
    a = plane_regions(net, plane)
    b = plane_regions(Wrapped(net), plane)
    assert a.n_regions == b.n_regions > 10
    assert a.layout.names == ["1", "3"] and b.layout.names == ["body.1", "body.3"]
    assert torch.equal(a.patterns, b.patterns)
    assert np.allclose(a.vertices, b.vertices, atol=1e-9)
    flat = nn.Sequential(nn.Flatten(), *net)
    c = plane_regions(flat, plane_through(*(v.reshape(3, 4) for v in x)))
    assert torch.equal(c.patterns, a.patterns)
