"""Folding during training: the differentiable folding loss, its schedules and the
tracker (``spacefold.training.regularize``), the torchmetrics metric
(``spacefold.training.metric``) and the Lightning callback (``spacefold.lightning``).

The public names are also at the top level (``spacefold.folding_loss``,
``spacefold.FoldingMetric``, ...).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .regularize import (
    LOSS_METHODS,
    FoldingRegularizer,
    FoldingSchedule,
    FoldingTracker,
    folding_loss,
    probe_pairs,
    soft_chi,
)

if TYPE_CHECKING:
    from .metric import FoldingMetric, folding_statistics

__all__ = [
    "folding_loss",
    "soft_chi",
    "FoldingSchedule",
    "FoldingRegularizer",
    "FoldingTracker",
    "probe_pairs",
    "LOSS_METHODS",
    "FoldingMetric",
    "folding_statistics",
]


def __getattr__(name: str) -> object:
    # torchmetrics is imported on first use, not by ``import spacefold``
    if name in ("FoldingMetric", "folding_statistics"):
        return getattr(importlib.import_module(".metric", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
