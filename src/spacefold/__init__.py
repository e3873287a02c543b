"""spacefold: how neural networks fold their input space.

A straight segment between two inputs crosses a sequence of activation regions;
its walk of activation patterns on the Hamming cube tells how much the network
folds the segment: χ = 1 − r1/r2 (arXiv 2502.09954, arXiv 2503.08502).
"""

from .cantornet import cantornet
from .folding import Folding, FoldingBatch, folding, folding_batch, folding_pairs, walk, walk_batch
from .measure import (
    chi,
    chi_bounds,
    chi_profile,
    interaction,
    interactions,
    max_profile,
    ranges,
    refine,
    symmetric_chi,
)
from .patterns import PatternLayout, activation_patterns, find_activations, pattern_layout, register_activation
from .walk import Walk, WalkBatch
from .walk.exact import NotPiecewiseLinearError, VerifyResult, verify
from .global_folding import GlobalFolding, global_folding
from .models import MLP, load_checkpoint, mlp, save_checkpoint
from .data import Dataset, load_dataset
from .metric import FoldingMetric, folding_statistics
from .regularize import FoldingRegularizer, FoldingSchedule, FoldingTracker, folding_loss, probe_pairs, soft_chi

__version__ = "0.1.0"

__all__ = [
    "verify",
    "VerifyResult",
    "NotPiecewiseLinearError",
    "chi",
    "ranges",
    "chi_profile",
    "max_profile",
    "interaction",
    "interactions",
    "symmetric_chi",
    "chi_bounds",
    "refine",
    "activation_patterns",
    "pattern_layout",
    "find_activations",
    "register_activation",
    "PatternLayout",
    "walk",
    "walk_batch",
    "folding",
    "folding_batch",
    "folding_pairs",
    "Folding",
    "FoldingBatch",
    "Walk",
    "WalkBatch",
    "cantornet",
    "global_folding",
    "GlobalFolding",
    "mlp",
    "MLP",
    "save_checkpoint",
    "load_checkpoint",
    "Dataset",
    "load_dataset",
    "FoldingMetric",
    "folding_statistics",
    "folding_loss",
    "soft_chi",
    "FoldingSchedule",
    "FoldingRegularizer",
    "FoldingTracker",
    "probe_pairs",
]
