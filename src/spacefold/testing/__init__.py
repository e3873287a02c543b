"""Oracles to check a walk against, for users who add their own activation rules or networks.

- :func:`reference_walk` (``spacefold.testing.reference``): the walk Γ* of a segment through a
  small ``nn.Sequential`` of ``Linear``, ``ReLU``, ``LeakyReLU``, ``Hardtanh`` and ``MaxPool1d``
  layers, in exact rational arithmetic, sharing no code with the walkers (nor with torch's
  arithmetic); :func:`cantornet_walk`, the same for CantorNet from its exact weights.
- :func:`dense_walks` and :func:`agrees_with_dense_grid` (``spacefold.testing.grid``): the walk
  on a dense uniform grid, which sees a subsequence of the regions an exact walk crosses (all of
  them when the grid hits every region).

>>> import torch, spacefold as sf
>>> from spacefold.testing import reference_walk
>>> net = torch.nn.Sequential(torch.nn.Linear(1, 2), torch.nn.ReLU()).double()
>>> with torch.no_grad():
...     _ = net[0].weight.copy_(torch.tensor([[1.0], [-1.0]])), net[0].bias.zero_()
>>> ref = reference_walk(net, [-1.0], [1.0])
>>> [str(t) for t in ref.t], ref.patterns
(['0', '1/2'], [(False, True), (True, False)])
>>> w = sf.walk(net, torch.tensor([-1.0], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64))
>>> [tuple(p) for p in w.patterns.tolist()] == ref.patterns
True
"""

from .grid import agrees_with_dense_grid, collapse, dense_walks, is_subsequence
from .reference import ReferenceWalk, cantornet_walk, reference_pattern, reference_walk

__all__ = [
    "reference_walk",
    "reference_pattern",
    "ReferenceWalk",
    "cantornet_walk",
    "dense_walks",
    "agrees_with_dense_grid",
    "is_subsequence",
    "collapse",
]
