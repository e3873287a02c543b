"""The exact walk at its edges: operations it must refuse, exact zeros, simultaneous and
chained crossings, float32 resolution, max pooling near arg-max ties, overflow, the
certificate of :func:`spacefold.verify`, and an unwritable Numba cache."""

from __future__ import annotations

import operator

import pytest
import torch
from torch import nn

from spacefold.errors import InputError, InputTypeError
from spacefold.walk.exact import NotPiecewiseLinearError, exact_walks

f64 = torch.float64


@pytest.fixture(autouse=True, params=["compiled", "torch"])
def backend(request, monkeypatch):
    """Every test runs on the compiled kernels and on the plain torch operations."""
    monkeypatch.setenv("SPACEFOLD_NUMBA", "1" if request.param == "compiled" else "0")
    return request.param


# --------------------------------------------------------------------------- the op table


class _Wrap(nn.Module):
    def __init__(self, f):
        super().__init__()
        self.lin = nn.Linear(2, 3)
        self.relu = nn.ReLU()
        self.f = f
        self.register_buffer("c", torch.tensor([1.0, 2.0, 3.0]))

    def forward(self, x):
        return self.relu(self.f(self, self.lin(x)))


_NOT_AFFINE = {
    "reciprocal": (lambda m, h: 1.0 / (h + 1), "division by an input-dependent"),
    "div by a tensor": (lambda m, h: torch.div(m.c, h), "division by an input-dependent"),
    "method div by a tensor": (lambda m, h: m.c.div(h), "division by an input-dependent"),
    "floor division": (lambda m, h: torch.div(h, m.c, rounding_mode="floor"), "rounding_mode='floor'"),
    "trunc division": (lambda m, h: h.div(2.0, rounding_mode="trunc"), "rounding_mode='trunc'"),
    "floordiv operator": (lambda m, h: h // 2, "floordiv"),
    "remainder": (lambda m, h: h % 2, "mod"),
    "integer cast": (lambda m, h: h.to(torch.int64).to(h.dtype), "casting to torch.int64"),
    "integer sum": (lambda m, h: h + h.sum(1, keepdim=True, dtype=torch.int64), "casting to torch.int64"),
    "floor": (lambda m, h: torch.floor(h), "floor"),
    "round": (lambda m, h: h.round(), "round"),
    "pow": (lambda m, h: h**2, "pow"),
    "abs": (lambda m, h: h.abs(), "abs"),
    "clamp": (lambda m, h: torch.clamp(h, 0, 1), "clamp"),
    "comparison": (lambda m, h: h * (h > 0), "gt"),
    "maximum": (lambda m, h: torch.maximum(h, m.c), "maximum"),
    "sign": (lambda m, h: torch.sign(h) + h, "sign"),
}


@pytest.mark.parametrize("case", sorted(_NOT_AFFINE))
def test_operations_that_are_not_affine_are_refused(case):
    f, match = _NOT_AFFINE[case]
    with pytest.raises(NotPiecewiseLinearError, match=match) as info:
        exact_walks(_Wrap(f), torch.zeros(1, 2), torch.ones(1, 2))
    assert isinstance(info.value, InputTypeError) and isinstance(info.value, TypeError)


_AFFINE = {
    "divide by a constant tensor": lambda m, h: h / m.c,
    "divide by a size": lambda m, h: h / h.size(1),
    "method div by a number": lambda m, h: h.div(2.0),
    "product with a constant": lambda m, h: 2 * h * m.c,
    "centring": lambda m, h: h.view(h.size(0), -1) - h.mean(1, keepdim=True),
    "slice by a computed size": lambda m, h: h[:, : h.size(1) // 2 + 1].sum(1, keepdim=True) + h,
}


@pytest.mark.parametrize("case", sorted(_AFFINE))
def test_affine_operations_are_walked_exactly(case):
    torch.manual_seed(0)
    net = _Wrap(_AFFINE[case]).double()
    x1, x2 = torch.randn(5, 2, dtype=f64) * 3, torch.randn(5, 2, dtype=f64) * 3
    w = exact_walks(net, x1, x2)
    # the walk is the dense one, every region found (the regions are wide: 20001 points see them all)
    from spacefold import activation_patterns

    t = torch.linspace(0, 1, 20001, dtype=f64)
    for i in range(5):
        pts = (1 - t)[:, None] * x1[i] + t[:, None] * x2[i]
        p = activation_patterns(net, pts)
        keep = torch.ones(len(p), dtype=torch.bool)
        keep[1:] = (p[1:] != p[:-1]).any(1)
        assert torch.equal(w[i].patterns, p[keep])


# --------------------------------------------------------------------------- an unwritable Numba cache

_NO_CACHE_SCRIPT = """
import warnings
import numba.core.caching as caching
{patch}
import torch
from spacefold.walk import _kernels
from spacefold.walk.exact import exact_walks
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8), torch.nn.ReLU())
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    w = exact_walks(net, torch.zeros(3, 2), torch.ones(3, 2) * 4)
    w2 = exact_walks(net, -torch.ones(3, 2), torch.ones(3, 2) * 4)
print("kernels", _kernels.available())
print("warnings", sum("cache" in str(c.message) for c in caught))
print("walks", len(w), len(w2))
"""


def test_kernels_are_compiled_without_a_cache_where_numba_has_no_place_for_it(backend, monkeypatch):
    pytest.importorskip("numba")
    if backend != "compiled":
        pytest.skip("concerns the compiled kernels")
    import numba.core.caching as caching

    from spacefold.walk import _jit

    monkeypatch.setattr(caching.CacheImpl, "_locator_classes", [])
    monkeypatch.setattr(_jit, "_UNCACHED", [])

    def twice(x):
        return 2 * x

    kernel = _jit.jit(twice)
    assert kernel(21) == 42
    assert len(_jit._UNCACHED) == 1 and "no locator" in _jit._UNCACHED[0]


@pytest.mark.slow  # compiles every kernel from scratch in a fresh process (a minute or more)
@pytest.mark.parametrize("how", ["no locator", "unwritable NUMBA_CACHE_DIR"])
def test_an_unwritable_numba_cache_compiles_without_caching_with_one_warning(backend, how, tmp_path):
    import os
    import subprocess
    import sys

    pytest.importorskip("numba")
    if backend != "compiled":
        pytest.skip("concerns the compiled kernels")
    env = dict(os.environ, SPACEFOLD_NUMBA="1")
    if how == "no locator":  # what Numba meets with a read-only package directory and an unwritable HOME
        patch = "caching.CacheImpl._locator_classes = []"
    else:
        blocker = tmp_path / "a_file"
        blocker.write_text("")
        env["NUMBA_CACHE_DIR"] = str(blocker / "cache")  # below a regular file: cannot be created
        patch = ""
    src = os.path.join(os.path.dirname(__file__), "..", "src")
    env["PYTHONPATH"] = os.pathsep.join([os.path.abspath(src), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", _NO_CACHE_SCRIPT.format(patch=patch)], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "walks 3 3" in out.stdout
    assert "kernels True" in out.stdout
    if how == "no locator":
        assert "warnings 1" in out.stdout, out.stdout
