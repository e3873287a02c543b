"""spacefold: how neural networks fold their input space.

A straight segment between two inputs crosses a sequence of activation regions;
its walk of activation patterns on the Hamming cube tells how much the network
folds the segment: χ = 1 − r1/r2 (arXiv 2502.09954, arXiv 2503.08502).

The top level holds the public API; everything else lives in its module
(``spacefold.measure``, ``spacefold.patterns``, ``spacefold.walk``, ``spacefold.folding``,
``spacefold.global_folding``, ``spacefold.pairs``, ``spacefold.models``, ``spacefold.data``, ...).
"""

from __future__ import annotations

import importlib
import inspect
import types
import warnings
from collections.abc import Callable

from . import folding as _folding_module
from . import global_folding as _global_folding_module
from . import walk as _walk_module
from .cantornet import cantornet
from .errors import InputError, InputTypeError
from .folding import Folding, FoldingBatch, folding_batch, folding_pairs
from .global_folding import GlobalFolding
from .measure import chi, chi_bounds, chi_profile, interaction, ranges, symmetric_chi
from .models import load_checkpoint, mlp, save_checkpoint
from . import nn  # noqa: F401  (the gated units register their rule on import)
from .patterns import activation_patterns, register_activation
from .walk import Walk
from .walk.exact import NotPiecewiseLinearError, verify
from .regularize import FoldingRegularizer, FoldingSchedule, FoldingTracker, folding_loss, probe_pairs

__version__ = "0.1.0"


class _CallableModule(types.ModuleType):
    """A module that is also the function of the public API it is named after.

    ``sf.walk(model, x1, x2)``, ``sf.folding(model, x1, x2)`` and ``sf.global_folding(model,
    x, y)`` are the API; ``spacefold.walk``, ``spacefold.folding`` and
    ``spacefold.global_folding`` are also the modules that hold them (the walk methods, the
    pipeline, the global measure). Binding the functions at the top level would shadow the
    modules (``import spacefold.walk`` would give a function); making each module callable
    as its function keeps both, without renaming modules that every import names.
    """

    _api_function: Callable

    def __call__(self, *args, **kwargs):
        return self._api_function(*args, **kwargs)

    @property
    def __signature__(self) -> inspect.Signature:
        return inspect.signature(self._api_function)

    def __reduce__(self):  # pickled by name, as a function is
        return importlib.import_module, (self.__name__,)


def _callable(module: types.ModuleType, function: Callable) -> types.ModuleType:
    module.__class__ = _CallableModule
    module._api_function = function
    return module


walk = _callable(_walk_module, _folding_module.walk)
folding = _callable(_folding_module, _folding_module.folding)
global_folding = _callable(_global_folding_module, _global_folding_module.global_folding)

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
    "max_profile": "spacefold.measure",
    "interactions": "spacefold.measure",
    "refine": "spacefold.measure",
    "pattern_layout": "spacefold.patterns",
    "find_activations": "spacefold.patterns",
    "PatternLayout": "spacefold.patterns",
    "walk_batch": "spacefold.folding",
    "WalkBatch": "spacefold.walk",
    "VerifyResult": "spacefold.walk.exact",
    "MLP": "spacefold.models",
    "Dataset": "spacefold.data",
    "load_dataset": "spacefold.data",
}


def __getattr__(name: str):
    # figures need matplotlib, which ``import spacefold`` does not import
    if name in ("plot_path", "plot_plane"):
        from . import plot

        return getattr(plot, name)
    # torchmetrics (and the scipy it imports) takes longer to import than torch: not at ``import spacefold``,
    # which every worker process does
    if name in ("FoldingMetric", "folding_statistics"):
        from . import metric

        return getattr(metric, name)
    if name in _MOVED:
        module = _MOVED[name]
        warnings.warn(f"spacefold.{name} is deprecated at the top level; use {module}.{name}", DeprecationWarning,
                      stacklevel=2)
        return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module 'spacefold' has no attribute {name!r}")
