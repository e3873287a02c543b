"""The README's and API.md's calls as a user writes them: checked by mypy (tests/test_typing.py), not run.

Every result has its type (``Walk``, ``Folding``, ``FoldingBatch``, ``GlobalFolding``), never ``Any``:
``assert_type`` fails the check otherwise.
"""

from __future__ import annotations

from typing import assert_type

import torch
from torch import Tensor

import spacefold as sf
from spacefold.data import load_digits
from spacefold.models.train import train_mlp
from spacefold.testing import ReferenceWalk, reference_walk

net = torch.nn.Sequential(
    torch.nn.Linear(2, 32), torch.nn.ReLU(), torch.nn.Linear(32, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2)
)
x1, x2 = torch.tensor([-2.0, -2.0]), torch.tensor([2.0, 2.0])

# measures on a walk
walk = torch.zeros(5, 8, dtype=torch.bool)
sf.chi(walk)
r1, r2 = sf.ranges(walk)
assert_type(sf.chi_profile(walk), Tensor)
sf.interaction(walk, 2)

# patterns
assert_type(sf.activation_patterns(net, torch.randn(4, 2), layers=None), Tensor)

# one segment
w = sf.walk(net, x1, x2, method="exact")
assert_type(w, sf.Walk)
assert_type(w.patterns, Tensor)
assert_type(w.t, Tensor)
f = sf.folding(net, x1, x2, method="exact")
assert_type(f, sf.Folding)
print(f.chi, f.r1, f.r2, f.n_regions, f.profile, f.walk.t)

# many segments
b = sf.folding_batch(net, torch.randn(1000, 2), torch.randn(1000, 2), method="exact", batch_size=256)
assert_type(b, sf.FoldingBatch)
assert_type(b.chi, Tensor)
p = sf.folding_pairs(net, torch.randn(10, 2), torch.arange(5), torch.arange(5, 10))
assert_type(p, sf.FoldingBatch)

# over a data set
data = load_digits()
model, run = train_mlp("3x20", data, epochs=40, batch_size=32, lr=3e-3, seed=0)
g = sf.global_folding(model, data.x_test, data.y_test, pairs="inter-class", max_pairs=20000, seed=0, workers=1)
assert_type(g, sf.GlobalFolding)
print(g.phi, g.phi_max, g.fraction_folded, g.chi, g.max_profile)
g.class_pairs()
g.bootstrap(n_boot=1000, seed=0)

# the sandbox
cn = sf.cantornet(depth=3, representation="A")
assert_type(sf.folding(cn, torch.tensor([0.0, 0.75]), torch.tensor([1.0, 0.75])), sf.Folding)

# training
q1, q2 = sf.probe_pairs(data.x_test, data.y_test, n_pairs=300, seed=0)
metric = sf.FoldingMetric()
metric.update(sf.folding_batch(model, q1, q2))
metric.compute()
loss = torch.tensor(0.0) + 0.1 * sf.folding_loss(model, q1, q2)
assert_type(loss, Tensor)

# pictures
fig = sf.plot_path(model, q1[0], q2[0])
fig2 = sf.plot_plane(cn, torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]))

# checks
walks = sf.folding_batch(net, x1[None], x2[None], return_walks=True).walks
assert walks is not None
res = sf.verify(net, x1[None], x2[None], walks)
assert res.ok
ref = reference_walk(net, [-2.0, -2.0], [2.0, 2.0])
assert_type(ref, ReferenceWalk)
sf.register_activation(torch.nn.Softsign, rule=lambda module, inputs, output: output > 0)
