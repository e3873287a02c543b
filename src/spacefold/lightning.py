"""Φ_N during Lightning training: ``from spacefold.lightning import FoldingCallback``
(needs the ``lightning`` extra; it lives in ``spacefold.training.lightning``)."""

from .training.lightning import FoldingCallback

__all__ = ["FoldingCallback"]
