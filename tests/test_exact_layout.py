"""The layout of the exact walk's package: its modules import on their own, the package exposes
the names code outside it uses, and the walk has a handler for every kind of step a compiled
program holds.

Oracle for the dispatch: programs compiled from models that together hold every kind of
node (an input, a constant read with get_attr, affine modules and functions, activations, max
pooling, the output) produce exactly ``STEP_KINDS``, and ``HANDLERS`` covers all of them but
the output, where the walk stops.
"""

from __future__ import annotations

import importlib
import pkgutil

import torch
from torch import nn

from spacefold._core.walk import exact
from spacefold._core.walk.exact.handlers import HANDLERS
from spacefold._core.walk.exact.program import STEP_KINDS

# what code outside the package imports from spacefold.walk.exact
USED_OUTSIDE = (
    "ExactProgram",
    "ExactWalkBatch",
    "NotPiecewiseLinearError",
    "VerifyResult",
    "compile_model",
    "exact_walks",
    "verify",
    "_interpolate",
    "_assemble",
    "_ranks",
)


def test_every_module_of_the_package_imports_and_says_what_it_does():
    names = [m.name for m in pkgutil.iter_modules(exact.__path__)]
    assert {"program", "state", "crossings", "handlers", "assemble", "driver", "verification"} <= set(names)
    for name in names:
        module = importlib.import_module(f"spacefold._core.walk.exact.{name}")
        assert module.__doc__ and module.__doc__.strip(), name


def test_the_package_exposes_the_names_used_outside_it():
    for name in USED_OUTSIDE:
        assert hasattr(exact, name), name
    assert set(exact.__all__) <= set(USED_OUTSIDE)
    # the public functions are the functions, not the modules of the same purpose
    assert callable(exact.verify) and callable(exact.exact_walks)
    assert exact.verify.__module__ == "spacefold._core.walk.exact.verification"


class _EveryKind(nn.Module):
    """A residual block between a max pooling and a bias held as a plain tensor attribute (get_attr)."""

    def __init__(self):
        super().__init__()
        self.pool = nn.MaxPool2d(2)
        self.flat = nn.Flatten()
        self.fc1 = nn.Linear(16, 8)
        self.act1 = nn.ReLU()
        self.fc2 = nn.Linear(8, 8)
        self.act2 = nn.LeakyReLU(0.1)
        self.register_buffer("shift", torch.linspace(-1, 1, 8))

    def forward(self, x):
        h = self.act1(self.fc1(self.flat(self.pool(x))))
        return self.act2(self.fc2(h) + h + self.shift)


def test_the_handlers_cover_every_kind_of_step_a_program_holds():
    seen: set[str] = set()
    torch.manual_seed(0)
    models = [_EveryKind().eval(), nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))]
    for model in models:
        prog = exact.compile_model(model)
        seen |= {s.kind for s in prog.steps}
    assert seen == set(STEP_KINDS)
    assert set(HANDLERS) == set(STEP_KINDS) - {"output"}
    # and the walk runs through all of them
    x1, x2 = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8)
    walks = exact.exact_walks(models[0], x1, x2)
    assert len(walks) == 4 and exact.verify(models[0], x1, x2, walks).ok
