"""Make the README's figures (docs/pictures.md explains them):

    PYTHONPATH=src python docs/figures/make_figures.py

- cantornet-path-depths-1-5.png: CantorNet A along y = 3/4 for depths 1-5 (plot_paths);
- digits-mlp-plane.png: a 3x20 MLP trained on scikit-learn's digits (the demo's settings, seed 0),
  the plane through the most folded of 300 inter-class test segments and a third test image.

PNG at 110 dpi to keep the files small (the library writes 200 dpi by default).
"""

from pathlib import Path

import torch

import spacefold as sf
import spacefold.plot as P
from spacefold.data import load_digits
from spacefold.train import train_mlp

OUT = Path(__file__).resolve().parent
P.PNG_DPI = 110

nets = [sf.cantornet(d, "A") for d in range(1, 6)]
x1 = torch.tensor([0.0, 0.75], dtype=torch.float64)
x2 = torch.tensor([1.0, 0.75], dtype=torch.float64)
fig = P.plot_paths(
    nets,
    x1,
    x2,
    names=[f"depth {d}" for d in range(1, 6)],
    title="CantorNet A, one path (0, 3/4) → (1, 3/4), depths 1-5",
)
fig.set_size_inches(15, 6.2)
P.save_figure(fig, OUT / "cantornet-path-depths-1-5.png")

data = load_digits(seed=0)
model, res = train_mlp("3x20", data, epochs=40, lr=3e-3, batch_size=32, seed=0)
x, y = data.x_test, data.y_test
g = torch.Generator().manual_seed(0)
i, j = torch.randint(0, len(y), (2, 300), generator=g)
keep = y[i] != y[j]
i, j = i[keep], j[keep]
b = sf.folding_batch(model, x[i], x[j], method="exact")
k = int(b.chi.argmax())
a, c = int(i[k]), int(j[k])
o = next(n for n in range(len(y)) if int(y[n]) not in (int(y[a]), int(y[c])))
fig = P.plot_plane(
    model,
    x[o],
    x[a],
    x[c],
    name=f"MLP 3x20 (digits, test accuracy {res.final_test_accuracy:.3f})",
    data=f"digits test images {o}, {a}, {c} (classes {int(y[o])}, {int(y[a])}, {int(y[c])}); "
    f"segment χ = {float(b.chi[k]):.3f}",
)
P.save_figure(fig, OUT / "digits-mlp-plane.png")
