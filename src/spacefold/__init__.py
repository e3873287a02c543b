"""spacefold: how neural networks fold their input space.

A straight segment between two inputs crosses a sequence of activation regions;
its walk of activation patterns on the Hamming cube tells how much the network
folds the segment: χ = 1 − r1/r2 (arXiv 2502.09954, arXiv 2503.08502).

The top level holds the public API (``__all__``), plain typed functions and classes.
Everything behind it lives in a subpackage by concern (docs/contributing.md): the
measurement core in ``spacefold._core`` (private), ``spacefold.training``,
``spacefold.models``, ``spacefold.data``, ``spacefold.studies``, ``spacefold.viz``,
``spacefold.testing`` (oracles to check activation rules against) and ``spacefold.cli``.
"""

from __future__ import annotations

import importlib as _importlib
import sys as _sys
import warnings as _warnings
from typing import TYPE_CHECKING

from . import (
    _compat,
    nn,  # noqa: F401  (the gated units register their rule on import)
)
from ._core.folding import Folding, FoldingBatch, folding, folding_batch, folding_pairs, walk
from ._core.global_folding import GlobalFolding, global_folding
from ._core.measure import chi, chi_bounds, chi_profile, interaction, ranges, symmetric_chi
from ._core.patterns import activation_patterns, register_activation
from ._core.walk import Walk
from ._core.walk.exact import NotPiecewiseLinearError, verify
from ._version import __version__  # noqa: F401 - in dir(spacefold) with the API
from .errors import InputError, InputTypeError
from .models.cantornet import cantornet
from .models.mlp import load_checkpoint, mlp, save_checkpoint
from .training.regularize import FoldingRegularizer, FoldingSchedule, FoldingTracker, folding_loss, probe_pairs

if TYPE_CHECKING:  # imported on first use (matplotlib, torchmetrics): see __getattr__
    from .training.metric import FoldingMetric, folding_statistics
    from .viz.plot import plot_path, plot_plane


__all__ = [
    # measures on walks
    "chi",
    "ranges",
    "chi_profile",
    "interaction",
    "symmetric_chi",
    "chi_bounds",
    # patterns
    "activation_patterns",
    "register_activation",
    # walks and folding
    "walk",
    "folding",
    "folding_batch",
    "folding_pairs",
    "verify",
    "global_folding",
    "Walk",
    "Folding",
    "FoldingBatch",
    "GlobalFolding",
    # pictures (matplotlib, imported on first use)
    "plot_path",
    "plot_plane",
    # models
    "cantornet",
    "mlp",
    "save_checkpoint",
    "load_checkpoint",
    # folding during training (FoldingMetric, folding_statistics: torchmetrics, imported on first use)
    "FoldingMetric",
    "folding_statistics",
    "folding_loss",
    "FoldingSchedule",
    "FoldingRegularizer",
    "FoldingTracker",
    "probe_pairs",
    # errors
    "InputError",
    "InputTypeError",
    "NotPiecewiseLinearError",
]

# Names the top level exported before it held only the public API: still importable
# from here (with a DeprecationWarning), and from their modules without one.
_MOVED = {
    "max_profile": "spacefold._core.measure",
    "interactions": "spacefold._core.measure",
    "refine": "spacefold._core.measure",
    "pattern_layout": "spacefold._core.patterns",
    "find_activations": "spacefold._core.patterns",
    "PatternLayout": "spacefold._core.patterns",
    "walk_batch": "spacefold._core.folding",
    "WalkBatch": "spacefold._core.walk",
    "VerifyResult": "spacefold._core.walk.exact",
    "MLP": "spacefold.models",
    "Dataset": "spacefold.data",
    "load_dataset": "spacefold.data",
}
_LAZY = {
    # figures need matplotlib, which ``import spacefold`` does not import
    "plot_path": "spacefold.viz.plot",
    "plot_plane": "spacefold.viz.plot",
    # torchmetrics (and the scipy it imports) takes longer to import than torch: not at ``import spacefold``,
    # which every worker process does
    "FoldingMetric": "spacefold.training.metric",
    "folding_statistics": "spacefold.training.metric",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(_importlib.import_module(_LAZY[name]), name)
    if name in _MOVED:
        module = _MOVED[name]
        _warnings.warn(
            f"spacefold.{name} is no longer part of the public API (docs/reference lists what is) and will be "
            f"removed from the top level; it lives on as {module}.{name}, internal, which may change without notice",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(_importlib.import_module(module), name)
    old = f"{__name__}.{name}"
    if old in _compat.OLD_PATHS:  # a module of spacefold 0.1 (``spacefold.patterns.find_activations``)
        return _sys.modules.get(old) or _importlib.import_module(old)
    raise AttributeError(f"module 'spacefold' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*__all__, "__version__"])


_compat.install()
