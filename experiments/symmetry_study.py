"""Learned symmetries and space folding: a controlled test of the claim of arXiv 2503.08502.

Two tasks whose labels are invariant under a mirror M, each trained so that the network
sees the symmetry or does not, several seeds each:

* plane: points in [-2, 2]^2, label 1 iff x2 > 0.8 sin(1.5 pi |x1|) (invariant under
  x1 -> -x1). Conditions: ``half`` (training points with x1 > 0 only), ``mirror-aug``
  (half as many points with x1 > 0 plus their mirror images), ``full`` (points drawn over the
  whole square). Test: fresh points over the square; "mirrored held-out" = the half x1 < 0.
* mnist: a stratified training subset; ``plain`` vs ``mirror-aug`` (the subset plus its
  left-right mirror images, same labels), on all ten digits and on the nearly mirror-symmetric
  digits 0, 1, 8 (``plain-018``, ``mirror-aug-018``). Test: the test images and their mirrors.

A positive control on both tasks: ``tied-half`` / ``tied``, an MLP made exactly invariant under
M from its second hidden layer on by tied weights (spacefold.studies.symmetry.invariant_mlp), trained on
the half-plane / the plain training subset.

For each network: prediction agreement and pattern Hamming distance (per layer) between x
and Mx on test inputs; the folding (exact walks, per layer) of three kinds of segments from
test inputs: x -> Mx (``mirror``), x -> x + |Mx - x| u with u uniformly random (``random-dir``,
same length, no symmetry), z -> z + (Mx - x) (``shifted``: the same displacement from another
start z; plane: the segment slid along x1 inside the square; mnist: z another test image), and
x -> x' for a random x' of the same class (``same-class``);
and the closed-walk bound chi >= (1 - d_H(ends)/r2)/2 per layer on the mirror segments.

    python experiments/symmetry_study.py --data-dir DIR                  # everything
    python experiments/symmetry_study.py --data-dir DIR --phase plane    # the 2-D task only
    python experiments/symmetry_study.py --data-dir DIR --phase mnist
    python experiments/symmetry_study.py --data-dir DIR --phase report   # tables, figures, doc tables

Every run is written to ``<out>/runs/<task>-<condition>-s<seed>.json`` and read back, not
recomputed, on the next start. Results: ``<out>/results.csv``, ``<out>/summary.json``,
``<out>/tables.md``; figures in ``<out>/figures/`` (``--figures DIR`` elsewhere; the docs' figures are
``--phase report --figures docs/symmetry-study``).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

import spacefold as sf
from spacefold._core import measure
from spacefold._util import atomic_path, atomic_write
from spacefold.data import Dataset, load_mnist
from spacefold.models.train import accuracy, train_mlp
from spacefold.studies.depth import run_provenance, seed_mean_ci
from spacefold.studies.depth import spearman as _spearman
from spacefold.studies.symmetry import (
    Mirror,
    check_symmetry,
    invariance,
    invariant_mlp,
    matched_random_segments,
    same_class_pairs,
    transform_segments,
    transplanted_segments,
)

ROOT = Path(__file__).resolve().parent.parent
PLANE_CONDITIONS = ("half", "mirror-aug", "full", "tied-half")
MNIST_CONDITIONS = ("plain", "mirror-aug", "plain-018", "mirror-aug-018", "tied")
KINDS = ("mirror", "random-dir", "shifted", "same-class")
PLANE_MIRROR = Mirror(axis=0)
MNIST_MIRROR = Mirror(axis=-1, image_shape=(28, 28))


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


# --------------------------------------------------------------------------- tasks


def plane_label(x: torch.Tensor) -> torch.Tensor:
    """The mirror-invariant labelling of the plane task."""
    return (x[:, 1] > 0.8 * torch.sin(1.5 * math.pi * x[:, 0].abs())).long()


def _uniform(n: int, g: torch.Generator, right_only: bool = False) -> torch.Tensor:
    x = torch.rand(n, 2, generator=g) * 4.0 - 2.0
    if right_only:
        x[:, 0] = x[:, 0].abs()
    return x


def plane_data(condition: str, n_train: int, n_test: int, data_seed: int) -> Dataset:
    g = torch.Generator().manual_seed(10_000 + data_seed)
    x_test = _uniform(n_test, g)
    if condition in ("half", "tied-half"):
        x = _uniform(n_train, g, right_only=True)
    elif condition == "mirror-aug":
        x = _uniform(n_train // 2, g, right_only=True)
        x = torch.cat([x, PLANE_MIRROR(x)])
    elif condition == "full":
        x = _uniform(n_train, g)
    else:
        raise ValueError(condition)
    return Dataset(
        f"plane-{condition}",
        x,
        plane_label(x),
        x_test,
        plane_label(x_test),
        2,
        source=f"symmetry_study plane seed={data_seed}",
    )


def mnist_data(base: Dataset, condition: str, n_train: int, n_test: int) -> Dataset:
    x, y, xt, yt = base.x_train, base.y_train, base.x_test, base.y_test
    if condition.endswith("-018"):
        keep = (y == 0) | (y == 1) | (y == 8)
        x, y = x[keep], y[keep]
        keep = (yt == 0) | (yt == 1) | (yt == 8)
        xt, yt = xt[keep], yt[keep]
        remap = torch.full((10,), -1, dtype=torch.long)
        remap[torch.tensor([0, 1, 8])] = torch.arange(3)
        y, yt = remap[y], remap[yt]
        n_classes = 3
    else:
        n_classes = 10
    d = Dataset(f"mnist-{condition}", x, y, xt, yt, n_classes, source="MNIST IDX files (--data-dir)").subset(
        n_train, n_test, seed=0
    )
    if condition.startswith("mirror-aug"):
        d = Dataset(
            d.name,
            torch.cat([d.x_train, MNIST_MIRROR(d.x_train)]),
            torch.cat([d.y_train, d.y_train]),
            d.x_test,
            d.y_test,
            n_classes,
            source=d.source,
        )
    return d


# --------------------------------------------------------------------------- one network


def layer_stats(fb, kind: str) -> dict:
    out = {
        f"{kind}_chi": float(fb.chi.mean()),
        f"{kind}_folded": float((fb.chi > 0).double().mean()),
        f"{kind}_regions": float(fb.n_regions.double().mean()),
    }
    for name, c in fb.per_layer.items():
        out[f"{kind}_chi_{name}"] = float(c.mean())
        out[f"{kind}_folded_{name}"] = float((c > 0).double().mean())
    return out


def bound_stats(fb) -> dict:
    """Per layer, on the mirror segments: share of closed walks (end patterns equal, r2 > 0),
    their mean chi, and the smallest chi - bound over all segments (>= 0 if the bound holds)."""
    wb = fb.walks
    first = wb.patterns[wb.offsets[:-1]]
    last = wb.patterns[wb.offsets[1:] - 1]
    out = {}
    layers = [("all", slice(0, wb.patterns.shape[1]))] + [(lay.name, lay.slice) for lay in fb.layout.layers]
    for name, sl in layers:
        s = measure.summarize(wb, sl)
        r2 = s["r2"].double()
        ends = (first[:, sl] ^ last[:, sl]).sum(1).double()
        bound = torch.where(r2 > 0, 0.5 * (1 - ends / r2.clamp_min(1)), torch.zeros_like(r2))
        closed = (ends == 0) & (r2 > 0)
        out[f"closed_{name}"] = float(closed.double().mean())
        out[f"closed_chi_{name}"] = float(s["chi"][closed].mean()) if closed.any() else float("nan")
        out[f"bound_gap_min_{name}"] = float((s["chi"] - bound).min())
        out[f"bound_{name}"] = float(bound.mean())
    return out


def plane_slide(x: torch.Tensor, x_test: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Starts of the mirror segments slid along x1, uniformly among the positions that keep
    the segment in the square [-2, 2]^2: same length and direction, ends no longer mirror images."""
    a = x[:, 0].abs()
    s = (torch.rand(x.shape[0], generator=g, dtype=x.dtype) * 2 - 1) * (2 - a)
    out = x.clone()
    out[:, 0] = x[:, 0] + s
    return out


def other_images(x: torch.Tensor, x_test: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Other test images as starts: the displacement Mx - x of one image added to another."""
    return x_test[torch.randint(0, x_test.shape[0], (x.shape[0],), generator=g)]


def measure_network(model, x_test, y_test, mirror, n_segments: int, seed: int, shift_starts) -> dict:
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(x_test.shape[0], generator=g)[:n_segments]
    x, _y = x_test[pick], y_test[pick]
    inv = invariance(model, x_test, mirror)
    row = {
        "agreement": inv.agreement,
        "hamming": inv.hamming,
        **{f"hamming_{k}": v for k, v in inv.per_layer_fraction.items()},
    }
    x1, x2 = transform_segments(x, mirror)
    fb = sf.folding_batch(
        model, x1.double(), x2.double(), method="exact", per_layer=True, return_walks=True, dtype=torch.float64
    )
    row.update(layer_stats(fb, "mirror"))
    row.update(bound_stats(fb))
    same = inv.same_prediction[pick]
    row["mirror_chi_agree"] = float(fb.chi[same].mean()) if same.any() else float("nan")
    row["mirror_chi_disagree"] = float(fb.chi[~same].mean()) if (~same).any() else float("nan")
    row["mirror_chi_per_segment"] = [round(float(c), 5) for c in fb.chi]
    row["mirror_same_per_segment"] = [bool(s) for s in same]
    r1, r2 = matched_random_segments(x1, x2, seed=seed)
    fb = sf.folding_batch(model, r1.double(), r2.double(), method="exact", per_layer=True, dtype=torch.float64)
    row.update(layer_stats(fb, "random-dir"))
    s1, s2 = transplanted_segments(x1, x2, shift_starts(x1, x_test, g))
    fb = sf.folding_batch(model, s1.double(), s2.double(), method="exact", per_layer=True, dtype=torch.float64)
    row.update(layer_stats(fb, "shifted"))
    i, j = same_class_pairs(y_test, n_segments, seed=seed)
    fb = sf.folding_batch(
        model, x_test[i].double(), x_test[j].double(), method="exact", per_layer=True, dtype=torch.float64
    )
    row.update(layer_stats(fb, "same-class"))
    row["mirror_length"] = float((x2 - x1).flatten(1).norm(dim=1).mean())
    row["same-class_length"] = float((x_test[j] - x_test[i]).flatten(1).norm(dim=1).mean())
    return row


def train_tied(arch, data: Dataset, mirror, *, epochs, lr, seed, checkpoint):
    """The positive control: an MLP exactly invariant under the mirror from its second hidden
    layer on (spacefold.studies.symmetry.invariant_mlp), trained like the others, saved untied."""
    from torch.nn.utils import parametrize

    from spacefold.models import save_checkpoint
    from spacefold.models.train import train

    model = invariant_mlp(arch, data.n_features, data.n_classes, mirror, seed=seed)
    res = train(
        model, data.x_train, data.y_train, epochs=epochs, lr=lr, seed=seed, x_test=data.x_test, y_test=data.y_test
    )
    for name in ("weight", "bias"):
        parametrize.remove_parametrizations(model.net[0], name, leave_parametrized=True)
    parametrize.remove_parametrizations(model.net[2], "weight", leave_parametrized=True)
    save_checkpoint(
        model,
        checkpoint,
        metadata={
            "data": data.describe(),
            "training": res.as_dict(),
            "tied": "invariant under the mirror from layer 2 on",
        },
    )
    return model, res


def run_one(out: Path, task: str, condition: str, seed: int, data: Dataset, args, mirror) -> dict:
    path = out / "runs" / f"{task}-{condition}-s{seed}.json"
    if path.is_file():
        return json.loads(path.read_text())
    t0 = time.perf_counter()
    arch = args.plane_arch if task == "plane" else args.mnist_arch
    epochs = args.plane_epochs if task == "plane" else args.mnist_epochs
    lr = args.plane_lr if task == "plane" else 1e-3
    ckpt = out / "models" / f"{task}-{condition}-s{seed}.pt"
    if condition.startswith("tied"):
        model, res = train_tied(arch, data, mirror, epochs=epochs, lr=lr, seed=seed, checkpoint=ckpt)
    else:
        model, res = train_mlp(arch, data, epochs=epochs, lr=lr, seed=seed, checkpoint=ckpt)
    row = {
        "task": task,
        "condition": condition,
        "seed": seed,
        "arch": arch,
        "epochs": epochs,
        "n_train": int(data.y_train.numel()),
        "train_accuracy": res.final_train_accuracy,
        "test_accuracy": res.final_test_accuracy,
        "mirrored_test_accuracy": accuracy(model, mirror(data.x_test), data.y_test),
    }
    if task == "plane":
        left = data.x_test[:, 0] < 0
        row["seen_half_accuracy"] = accuracy(model, data.x_test[~left], data.y_test[~left])
        row["mirrored_half_accuracy"] = accuracy(model, data.x_test[left], data.y_test[left])
    n_seg = args.plane_segments if task == "plane" else args.mnist_segments
    row.update(
        measure_network(
            model, data.x_test, data.y_test, mirror, n_seg, seed, plane_slide if task == "plane" else other_images
        )
    )
    row["w1_antisym"] = weight_antisymmetry(out, row)
    row["seconds"] = time.perf_counter() - t0
    row["provenance"] = run_provenance()
    with atomic_write(path) as fh:
        json.dump(row, fh, indent=1)
    log(
        f"{task} {condition} s{seed}: test {row['test_accuracy']:.3f} mirrored {row['mirrored_test_accuracy']:.3f} "
        f"agreement {row['agreement']:.3f} chi mirror {row['mirror_chi']:.3f} random-dir {row['random-dir_chi']:.3f} "
        f"shifted {row['shifted_chi']:.3f} same-class {row['same-class_chi']:.3f} ({row['seconds']:.0f} s)"
    )
    return row


def phase_plane(args, out: Path) -> None:
    checks = {}
    for condition in PLANE_CONDITIONS:
        for seed in args.seeds:
            data = plane_data(condition, args.plane_train, args.plane_test, seed)
            if seed == args.seeds[0]:
                c = check_symmetry(data.x_train, data.y_train, PLANE_MIRROR)
                checks[condition] = {
                    "label_change_1nn": c.label_change,
                    "distance_ratio": c.distance_ratio,
                    "label_change_true_labels": check_symmetry(
                        data.x_train, data.y_train, PLANE_MIRROR, label_fn=plane_label
                    ).label_change,
                }
            run_one(out, "plane", condition, seed, data, args, PLANE_MIRROR)
    _merge_json(out / "symmetry_checks.json", {"plane": checks})


def phase_mnist(args, out: Path) -> None:
    base = load_mnist(args.data_dir)
    checks = {}
    for condition in MNIST_CONDITIONS:
        data = mnist_data(base, condition, args.mnist_train, args.mnist_test)
        if condition in ("plain", "plain-018"):
            c = check_symmetry(data.x_train, data.y_train, MNIST_MIRROR, max_samples=2000)
            checks[condition] = {"label_change_1nn": c.label_change, "distance_ratio": c.distance_ratio, "n": c.n}
            log(
                f"mnist {condition}: mirror changes the 1-NN label of {c.label_change:.1%}, distance ratio "
                f"{c.distance_ratio:.2f}"
            )
        for seed in args.seeds[: args.mnist_seeds]:
            run_one(out, "mnist", condition, seed, data, args, MNIST_MIRROR)
    _merge_json(out / "symmetry_checks.json", {"mnist": checks})


def _merge_json(path: Path, new: dict) -> None:
    old = json.loads(path.read_text()) if path.is_file() else {}
    old.update(new)
    with atomic_write(path) as fh:
        json.dump(old, fh, indent=1)


# --------------------------------------------------------------------------- report


def seed_interval(values) -> tuple[float, float, float, int]:
    v = np.asarray([a for a in values if a == a], dtype=float)
    if v.size == 0:
        return float("nan"), float("nan"), float("nan"), 0
    return (*seed_mean_ci(v), int(v.size))


def fmt(values, digits: int = 3) -> str:
    m, lo, hi, n = seed_interval(values)
    if n == 0:
        return "–"
    if n == 1:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _rows(out: Path) -> list[dict]:
    rows = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]
    for r in rows:
        if "w1_antisym" not in r:  # runs written before the share was recorded: from the checkpoint
            r["w1_antisym"] = weight_antisymmetry(out, r)
    return rows


def weight_antisymmetry(out: Path, row: dict) -> float:
    """Share of the squared norm of the first layer's weights W in the part that changes sign under
    the mirror, ||(W - WM)/2||^2 / ||W||^2: about 1/2 for random weights, 0 for a layer that sees only
    the mirror-symmetric part of its input (then the segment x -> Mx crosses none of its hyperplanes)."""
    path = out / "models" / f"{row['task']}-{row['condition']}-s{row['seed']}.pt"
    if not path.is_file():
        return float("nan")
    w = sf.load_checkpoint(path).net[0].weight.detach().double()
    wm = (PLANE_MIRROR if row["task"] == "plane" else MNIST_MIRROR)(w)
    return float(((w - wm) / 2).pow(2).sum() / w.pow(2).sum())


def _layers(rows) -> list[str]:
    return sorted({k[len("mirror_chi_") :] for r in rows for k in r if k.startswith("mirror_chi_net.")})


def tables(rows: list[dict], checks: dict) -> str:
    buf = io.StringIO()
    w = buf.write
    for task, conds in (("plane", PLANE_CONDITIONS), ("mnist", MNIST_CONDITIONS)):
        rs = [r for r in rows if r["task"] == task]
        if not rs:
            continue
        layers = _layers(rs)
        n_seeds = {c: len([r for r in rs if r["condition"] == c]) for c in conds}
        w(f"\n### {task}: accuracy and invariance (mean over seeds [95% t-interval])\n\n")
        head = ["condition", "seeds", "test acc.", "mirrored test acc."]
        if task == "plane":
            head += ["acc. x1>0 (seen half)", "acc. x1<0 (mirrored half)"]
        head += ["agreement f(x)=f(Mx)"] + [f"Hamming {lay} (share)" for lay in layers]
        head += ["antisymmetric share of layer-1 weights"]
        w("| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n")
        for c in conds:
            rc = [r for r in rs if r["condition"] == c]
            if not rc:
                continue
            cells = [
                c,
                str(n_seeds[c]),
                fmt([r["test_accuracy"] for r in rc]),
                fmt([r["mirrored_test_accuracy"] for r in rc]),
            ]
            if task == "plane":
                cells += [fmt([r["seen_half_accuracy"] for r in rc]), fmt([r["mirrored_half_accuracy"] for r in rc])]
            cells += [fmt([r["agreement"] for r in rc])] + [fmt([r[f"hamming_{lay}"] for r in rc]) for lay in layers]
            cells += [fmt([r["w1_antisym"] for r in rc])]
            w("| " + " | ".join(cells) + " |\n")
        w(f"\n### {task}: mean χ of the segments, all layers and per layer (mean over seeds [95% t-interval])\n\n")
        head = ["condition", "segments", "regions crossed", "χ (all layers)", "share folded"] + [
            f"χ {lay}" for lay in layers
        ]
        w("| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n")
        for c in conds:
            rc = [r for r in rs if r["condition"] == c]
            for kind in KINDS:
                if not rc:
                    continue
                cells = [
                    c,
                    kind,
                    fmt([r[f"{kind}_regions"] for r in rc], 1),
                    fmt([r[f"{kind}_chi"] for r in rc]),
                    fmt([r[f"{kind}_folded"] for r in rc]),
                ]
                cells += [fmt([r[f"{kind}_chi_{lay}"] for r in rc]) for lay in layers]
                w("| " + " | ".join(cells) + " |\n")
        w(f"\n### {task}: closed walks on the mirror segments x → Mx (per layer)\n\n")
        w(
            "Share of segments whose walk, restricted to the layer, is closed (same pattern at x and Mx, r2 > 0); "
            "the mean χ of those closed walks (≥ 1/2 by the bound); whether χ ≥ (1 − d_H(ends)/r2)/2 held on "
            "every segment of every seed (up to 1e-12), and the smallest χ − bound.\n\n"
        )
        head = ["condition", "layer", "closed share", "χ of closed walks", "bound held", "min χ − bound"]
        w("| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n")
        for c in conds:
            rc = [r for r in rs if r["condition"] == c]
            for lay in ["all"] + layers:
                if not rc:
                    continue
                w(
                    f"| {c} | {lay} | {fmt([r[f'closed_{lay}'] for r in rc])} | "
                    f"{fmt([r[f'closed_chi_{lay}'] for r in rc])} | "
                    f"{'yes' if min(r[f'bound_gap_min_{lay}'] for r in rc) >= -1e-12 else 'NO'} | "
                    f"{min(r[f'bound_gap_min_{lay}'] for r in rc):.2g} |\n"
                )
        w(f"\n### {task}: χ of x → Mx where the prediction is kept vs changed\n\n")
        head = ["condition", "χ, f(x) = f(Mx)", "χ, f(x) ≠ f(Mx)"]
        w("| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n")
        for c in conds:
            rc = [r for r in rs if r["condition"] == c]
            if rc:
                w(
                    f"| {c} | {fmt([r['mirror_chi_agree'] for r in rc])} | "
                    f"{fmt([r['mirror_chi_disagree'] for r in rc])} |\n"
                )
        w(f"\n### {task}: across networks, folding vs generalisation to mirrored data\n\n")
        w(corr_text(rs, conds))
        if checks.get(task):
            w(f"\n### {task}: is the mirror a symmetry of the training set?\n\n")
            w("| condition | " + " | ".join(next(iter(checks[task].values())).keys()) + " |\n")
            w("|---|" + "---|" * len(next(iter(checks[task].values()))) + "\n")
            for c, v in checks[task].items():
                w(f"| {c} | " + " | ".join(f"{x:.3f}" if isinstance(x, float) else str(x) for x in v.values()) + " |\n")
    return buf.getvalue()


def gen_key(task: str) -> str:
    """Generalisation to mirrored data: the plane's test set is uniform over the square, so the
    mirror maps it onto itself; the held-out mirrored data are the test points with x1 < 0."""
    return "mirrored_half_accuracy" if task == "plane" else "mirrored_test_accuracy"


def corr_text(rs, conds) -> str:
    layers = _layers(rs)
    last = layers[-1] if layers else None
    what = "acc. x1<0" if rs[0]["task"] == "plane" else "mirrored test acc."
    lines = [
        f"| networks | n | Spearman(mean χ of x → Mx, {what}) | same, last layer "
        f"{last} | Spearman(agreement, {what}) | Spearman(antisymmetric share of layer-1 weights, "
        "mean χ of x → Mx) |",
        "|---|---|---|---|---|---|",
    ]
    groups = [("all", rs)] + [(c, [r for r in rs if r["condition"] == c]) for c in conds]
    invariant = [r for r in rs if "aug" in r["condition"] or "tied" in r["condition"]]
    groups.append(("augmented and tied", invariant))
    for name, g in groups:
        if not g:
            continue
        acc = [r[gen_key(r["task"])] for r in g]
        lines.append(
            f"| {name} | {len(g)} | {_spearman([r['mirror_chi'] for r in g], acc):.2f} | "
            f"{_spearman([r[f'mirror_chi_{last}'] for r in g], acc):.2f} | "
            f"{_spearman([r['agreement'] for r in g], acc):.2f} | "
            f"{_spearman([r['w1_antisym'] for r in g], [r['mirror_chi'] for r in g]):.2f} |"
        )
    return "\n".join(lines) + "\n"


def write_csv(rows: list[dict], path: Path) -> None:
    keys = sorted({k for r in rows for k in r if not isinstance(r[k], list)})
    with atomic_write(path) as fh:
        wr = csv.DictWriter(fh, fieldnames=keys)
        wr.writeheader()
        for r in rows:
            wr.writerow({k: r.get(k, "") for k in keys})


def summary(rows: list[dict]) -> dict:
    out = {}
    for r in rows:
        key = f"{r['task']}/{r['condition']}"
        out.setdefault(key, [])
        out[key].append(r)
    res = {}
    for key, rc in out.items():
        stats = {}
        for k in rc[0]:
            if isinstance(rc[0][k], (int, float)) and not isinstance(rc[0][k], bool) and k != "seed":
                m, lo, hi, n = seed_interval([r.get(k, float("nan")) for r in rc])
                stats[k] = {"mean": m, "lo95": lo, "hi95": hi, "n_seeds": n}
        res[key] = stats
    return res


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)


def fig_plane(out: Path, args) -> Path | None:
    """The plane coloured by Hamming distance to the pattern of a reference point, per layer,
    one row per condition (the first seed), with the mirror axis and the decision boundary."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seed = args.seeds[0]
    models = {c: out / "models" / f"plane-{c}-s{seed}.pt" for c in PLANE_CONDITIONS}
    if not all(p.is_file() for p in models.values()):
        return None
    n = args.raster
    lin = torch.linspace(-2.5, 2.5, n)
    gx, gy = torch.meshgrid(lin, lin, indexing="xy")
    grid = torch.stack([gx.flatten(), gy.flatten()], 1)
    ref = torch.tensor([[1.2, 0.5]])
    fig, axes = plt.subplots(len(models), 5, figsize=(19, 3.6 * len(models)))
    fig.subplots_adjust(hspace=0.35, wspace=0.4)
    for row, (cond, path) in enumerate(models.items()):
        model = sf.load_checkpoint(path)
        pats, layout = sf.activation_patterns(model, grid, return_layout=True, batch_size=65536)
        pref = sf.activation_patterns(model, ref)
        logits = model(grid).detach()
        pred = logits.argmax(1).reshape(n, n).numpy()
        panels = [("all layers", slice(0, pats.shape[1]))] + [(lay.name, lay.slice) for lay in layout.layers]
        for col, (name, sl) in enumerate(panels):
            ax = axes[row, col]
            d = (pats[:, sl] ^ pref[:, sl]).sum(1).reshape(n, n).numpy()
            im = ax.imshow(d, origin="lower", extent=(-2.5, 2.5, -2.5, 2.5), cmap="viridis", interpolation="nearest")
            ax.axvline(0, color="white", lw=1, ls="--")
            ax.contour(lin.numpy(), lin.numpy(), pred, levels=[0.5], colors="red", linewidths=0.8)
            ax.plot([1.2], [0.5], "w*", ms=9)
            ax.plot([-1.2], [0.5], "wo", ms=6, mfc="none")
            if cond == "half":
                ax.axvspan(-2.5, 0, color="black", alpha=0.12)
            ax.set_title(f"{cond}: {name}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
        ax = axes[row, 4]
        sym = []
        mirrored = PLANE_MIRROR(grid)
        pm = sf.activation_patterns(model, mirrored, batch_size=65536)
        for _name, sl in panels:
            sym.append(float(((pats[:, sl] ^ pm[:, sl]).sum(1) == 0).double().mean()))
        ax.bar(range(len(panels)), sym, color="tab:blue")
        ax.set_xticks(range(len(panels)), [p[0] for p in panels], fontsize=8, rotation=20)
        ax.set_ylim(0, 1)
        ax.set_title(f"{cond}: share of raster with\npattern(x) = pattern(Mx)", fontsize=8)
    fig.suptitle(
        "Hamming distance to the pattern of the reference point (star), mirror axis x1 = 0 (dashed), "
        "decision boundary (red); the open circle is the mirror image of the star",
        fontsize=10,
    )
    path = _figdir(args, out) / "plane-hamming.png"
    _save(fig, path)
    return path


def fig_layers(rows, path: Path, task: str, conds) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rs = [r for r in rows if r["task"] == task]
    if not rs:
        return None
    layers = _layers(rs)
    fig, axes = plt.subplots(1, len(conds), figsize=(4.2 * len(conds), 3.4), sharey=True, squeeze=False)
    for ax, c in zip(axes[0], conds):
        rc = [r for r in rs if r["condition"] == c]
        for kind, col in zip(KINDS, ("tab:red", "tab:gray", "tab:orange", "tab:blue")):
            ms, los, his = [], [], []
            for lay in ["all"] + layers:
                key = f"{kind}_chi" if lay == "all" else f"{kind}_chi_{lay}"
                m, lo, hi, _ = seed_interval([r[key] for r in rc])
                ms.append(m)
                los.append(m - lo if lo == lo else 0)
                his.append(hi - m if hi == hi else 0)
            ax.errorbar(
                np.arange(len(ms)) + 0.1 * KINDS.index(kind),
                ms,
                yerr=[los, his],
                fmt="o-",
                color=col,
                label=kind,
                capsize=3,
            )
        ax.set_xticks(range(len(layers) + 1), ["all"] + layers)
        ax.set_title(f"{task}: {c} ({len(rc)} seeds)", fontsize=9)
        ax.set_xlabel("layer")
    axes[0][0].set_ylabel("mean χ of the segments (95% seed interval)")
    axes[0][0].legend(fontsize=8)
    _save(fig, path)
    return path


def fig_generalisation(rows, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        return None
    tasks = [t for t in ("plane", "mnist") if any(r["task"] == t for r in rows)]
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.8), squeeze=False)
    markers = "osD^v"
    for ax, t in zip(axes[0], tasks):
        rs = [r for r in rows if r["task"] == t]
        conds = PLANE_CONDITIONS if t == "plane" else MNIST_CONDITIONS
        for i, c in enumerate(conds):
            rc = [r for r in rs if r["condition"] == c]
            ax.scatter([r["mirror_chi"] for r in rc], [r[gen_key(t)] for r in rc], marker=markers[i], label=c)
        ax.set_xlabel("mean χ of x → Mx (all layers)")
        ax.set_ylabel("accuracy on test points x1 < 0" if t == "plane" else "accuracy on mirrored test images")
        ax.set_title(t)
        ax.legend(fontsize=8)
    _save(fig, path)
    return path


def fig_antisymmetry(rows, path: Path) -> Path | None:
    """MNIST: the first layer's antisymmetric weight share against the folding of x -> Mx, per network."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rs = [r for r in rows if r["task"] == "mnist"]
    if not rs:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    fig.subplots_adjust(wspace=0.3)
    markers = "osD^v"
    for i, c in enumerate(MNIST_CONDITIONS):
        rc = [r for r in rs if r["condition"] == c]
        for ax, key in zip(axes, ("mirror_chi", "mirror_regions")):
            ax.scatter([r["w1_antisym"] for r in rc], [r[key] for r in rc], marker=markers[i], label=c)
    axes[0].set_ylabel("mean χ of x → Mx (all layers)")
    axes[1].set_ylabel("mean regions crossed by x → Mx")
    for ax in axes:
        ax.set_xlabel("antisymmetric share of layer-1 weights")
        ax.set_xscale("log")
    axes[0].legend(fontsize=8)
    fig.suptitle("MNIST: a first layer that drops the antisymmetric part leaves nothing to fold", fontsize=10)
    _save(fig, path)
    return path


def _figdir(args, out: Path) -> Path:
    """Where the figures go: ``--figures``, else ``<out>/figures``."""
    return Path(args.figures) if getattr(args, "figures", None) else out / "figures"


def phase_report(args, out: Path) -> None:
    rows = _rows(out)
    if not rows:
        raise SystemExit(f"no finished run in {out / 'runs'}; run the plane or mnist phase first")
    checks = json.loads((out / "symmetry_checks.json").read_text()) if (out / "symmetry_checks.json").is_file() else {}
    write_csv(rows, out / "results.csv")
    with atomic_write(out / "summary.json") as fh:
        json.dump(summary(rows), fh, indent=1)
    text = tables(rows, checks)
    with atomic_write(out / "tables.md") as fh:
        fh.write(text)
    try:
        figdir = _figdir(args, out)
        figs = [
            fig_plane(out, args),
            fig_layers(rows, figdir / "plane-chi-per-layer.png", "plane", PLANE_CONDITIONS),
            fig_layers(rows, figdir / "mnist-chi-per-layer.png", "mnist", MNIST_CONDITIONS),
            fig_generalisation(rows, figdir / "chi-vs-mirrored-accuracy.png"),
            fig_antisymmetry(rows, figdir / "mnist-antisymmetry-vs-chi.png"),
        ]
        log("figures: " + ", ".join(str(f) for f in figs if f))
    except ImportError as err:
        log(f"figures skipped: {err}")
    log(f"tables in {out / 'tables.md'}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", help="directory with the four MNIST IDX files (phases all and mnist)")
    p.add_argument("--out", default=str(ROOT / "experiments" / "results" / "symmetry"))
    p.add_argument("--phase", choices=["all", "plane", "mnist", "report"], default="all")
    p.add_argument("--seeds", nargs="+", type=int, default=list(range(10)))
    p.add_argument("--mnist-seeds", type=int, default=10, help="use the first N of --seeds for MNIST")
    p.add_argument("--plane-arch", default="3x20")
    p.add_argument("--plane-epochs", type=int, default=150)
    p.add_argument("--plane-lr", type=float, default=3e-3)
    p.add_argument("--plane-train", type=int, default=2000)
    p.add_argument("--plane-test", type=int, default=2000)
    p.add_argument("--plane-segments", type=int, default=500)
    p.add_argument("--mnist-arch", default="3x20")
    p.add_argument("--mnist-epochs", type=int, default=20)
    p.add_argument("--mnist-train", type=int, default=10000)
    p.add_argument("--mnist-test", type=int, default=2000)
    p.add_argument("--mnist-segments", type=int, default=500)
    p.add_argument("--raster", type=int, default=400, help="raster size of the plane figure")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--figures",
        type=Path,
        default=None,
        help="folder for the figures (default: <out>/figures; the docs' figures: docs/symmetry-study)",
    )
    args = p.parse_args(argv)
    run_provenance()  # taken now: the runs record the code this process started with
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    t0 = time.perf_counter()
    if args.phase in ("all", "plane"):
        phase_plane(args, out)
    if args.phase in ("all", "mnist"):
        if not args.data_dir:
            p.error("--data-dir is required for the mnist phase")
        phase_mnist(args, out)
    if args.phase in ("all", "report"):
        phase_report(args, out)
    log(f"done in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
