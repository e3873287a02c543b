"""Networks: the MLP family and its checkpoints (``spacefold.models.mlp``), CantorNet
(``spacefold.models.cantornet``, arXiv 2411.19713), ResNet-18 (``spacefold.models.resnet``)
and seeded training recipes (``spacefold.models.train``).

The MLP family's names are re-exported here (``from spacefold.models import mlp, MLP``).
"""

from .mlp import (
    DEPTH_SERIES,
    MLP,
    CheckpointError,
    arch_name,
    budget_family,
    load_checkpoint,
    mlp,
    parse_arch,
    save_checkpoint,
)

__all__ = [
    "MLP",
    "mlp",
    "parse_arch",
    "arch_name",
    "budget_family",
    "DEPTH_SERIES",
    "save_checkpoint",
    "load_checkpoint",
    "CheckpointError",
]
