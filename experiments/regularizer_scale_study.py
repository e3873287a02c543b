"""Does rewarding folding improve generalisation? The folding regulariser at the papers' scale
(30 epochs) and where regularisers matter (small training sets), with λ and the epoch chosen
on held-out validation data and the test set untouched (docs/folding-during-training.md).

    python experiments/regularizer_scale_study.py --data-dir DIR                      # every stage, in order
    python experiments/regularizer_scale_study.py --data-dir DIR --stage grid         # one stage
    python experiments/regularizer_scale_study.py --data-dir DIR --sizes 1000        # the 1,000-image runs first
    python experiments/regularizer_scale_study.py --data-dir DIR --stage report       # tables and figures only

Stages, in the order they run (each resumes: a finished run is one JSON file under --out/runs,
read back, never rerun):

- ``grid``: MLPs 3x20, 5x12, 3x40, 6x40 on 1,000 and 5,000 training images, λ in
  {0, 0.01, 0.03, 0.1, 0.3, 1}, schedule ``always``, the ``random`` surrogate, 5 seeds.
- ``baselines``: 3x40 on 1,000 and 5,000 images without the folding term, weight decay
  (AdamW) in {1e-4, 1e-3, 1e-2} and dropout in {0.1, 0.3, 0.5}, 5 seeds.
- ``combined``: the validation-chosen weight decay and dropout, each with the validation-chosen
  λ (needs ``grid`` and ``baselines`` of that training-set size).
- ``knobs``: 3x40 on 1,000 images: schedules ``early:0.3``, ``every:5`` and ``every:2``, the
  ``exact`` surrogate, β in {3, 30}, and the term at every 2nd or 5th step only, at the λ chosen
  on validation (and at 2 and 5 times that λ: the same weight per epoch as at every step).
- ``cnn``: the small CNN of docs/cnn-folding.md on 1,000 and 5,000 images, λ in {0, 0.03, 0.1, 0.3}.
- ``full``: 3x20 and 6x40 on all 55,000 training images that are not validation images, the λ grid.

Epochs: 300 on 1,000 images, 100 on 5,000, 30 on 55,000 (the papers' 30 epochs on the full set; the
smaller sets get more epochs so that every run trains long enough to overfit, 2,400-12,900 steps,
and the epoch chosen on validation is not simply the last one).

Data: a stratified validation set of 5,000 images of the MNIST training file (fixed), training
subsets drawn stratified from the other 55,000 (seed 100 + run seed: each seed sees its own
subset, the same for every arm of that seed, so arms are paired). Training: Adam (AdamW with
weight decay), lr 1e-3, batch 128; the folding term on 512 inter-class pairs of the
training subset, 8 drawn per step, 8 points per segment, β = 10. The epoch is chosen on
validation accuracy (the earliest best). At the chosen epoch and at the last one: test accuracy,
test loss, and exact walks of 1,000 fixed inter-class test pairs (Φ_N, median of maxima, share
folded); every image's correctness and loss and every pair's χ are stored, so the report's
intervals resample seeds and, within each seed, test images or test pairs (paired: both arms
see the same resample).
"""

from __future__ import annotations

import argparse
import base64
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import spacefold as sf
from spacefold._util import atomic_write
from spacefold.data.datasets import load_mnist, stratified_indices
from spacefold.models.train import train
from spacefold.studies.depth import run_provenance
from spacefold.training.regularize import FoldingRegularizer, probe_pairs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from regularizer_study import build  # the same MLP/CNN builder as the reduced-scale study

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("grid", "baselines", "combined", "knobs", "cnn", "full")
LAMS = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0)
GRID_ARCHS = ("3x20", "5x12", "3x40", "6x40")
SMALL = (1000, 5000)
EPOCHS = {1000: 300, 5000: 100, 55000: 30}
N_VAL = 5000
VAL_SEED = 12345
TEST_PAIR_SEED = 7
# version of this script's protocol (data splits, pair sets, selection rule): bump on any change
PROTOCOL = 1


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


# --------------------------------------------------------------------------- configurations


# the cost knobs of the folding term: the term at every k-th step, segments drawn per step, points per segment
COST_DEFAULTS = {"every_steps": 1, "pairs_per_step": 8, "n_points": 8}


def config(
    arch: str,
    n_train: int,
    lam: float,
    seed: int,
    *,
    schedule: str = "always",
    surrogate: str = "random",
    beta: float = 10.0,
    wd: float = 0.0,
    dropout: float = 0.0,
    every_steps: int = 1,
    pairs_per_step: int = 8,
    n_points: int = 8,
) -> dict:
    # the cost knobs enter the name only where they differ from the defaults (the names of the runs before them)
    cost = "".join(
        f"_{tag}{v}"
        for tag, v in (("k", every_steps), ("pp", pairs_per_step), ("np", n_points))
        if v != COST_DEFAULTS[{"k": "every_steps", "pp": "pairs_per_step", "np": "n_points"}[tag]]
    )
    name = (
        f"{arch}_n{n_train}_lam{lam:g}_{schedule.replace(':', '')}_{surrogate}_b{beta:g}_wd{wd:g}_p{dropout:g}"
        f"{cost}_s{seed}"
    )
    return {
        "name": name,
        "arch": arch,
        "n_train": n_train,
        "lam": lam,
        "seed": seed,
        "schedule": schedule,
        "surrogate": surrogate,
        "beta": beta,
        "wd": wd,
        "dropout": dropout,
        "every_steps": every_steps,
        "pairs_per_step": pairs_per_step,
        "n_points": n_points,
    }


def knob(r: dict, key: str):
    """A field of a run record; the cost knobs take their defaults in the records written before them."""
    return r.get(key, COST_DEFAULTS.get(key))


def is_plain(r: dict) -> bool:
    """A run of the λ grid: schedule always, random surrogate, β 10, no weight decay, no dropout, the term at
    every step on 8 segments of 8 points."""
    return (
        r["schedule"] == "always"
        and r["surrogate"] == "random"
        and r["beta"] == 10
        and r["wd"] == 0
        and r["dropout"] == 0
        and all(knob(r, k) == v for k, v in COST_DEFAULTS.items())
    )


def chosen_lambda(runs: list[dict], arch: str, n_train: int, seeds) -> float | None:
    """λ > 0 of the grid with the best mean validation accuracy (chosen epoch) over ``seeds``; None until complete."""
    best = None
    for lam in LAMS[1:]:
        rs = [r for r in runs if r["arch"] == arch and r["n_train"] == n_train and r["lam"] == lam and is_plain(r)]
        if {r["seed"] for r in rs} < set(seeds):
            return None
        v = float(np.mean([r["chosen"]["val_accuracy"] for r in rs if r["seed"] in seeds]))
        if best is None or v > best[0]:
            best = (v, lam)
    return best[1]


def chosen_baseline(runs: list[dict], n_train: int, key: str, values, seeds) -> float | None:
    """The weight decay or dropout (``key``) with the best mean validation accuracy, λ = 0; None until complete."""
    best = None
    for v in values:
        rs = [
            r
            for r in runs
            if r["arch"] == "3x40"
            and r["n_train"] == n_train
            and r["lam"] == 0
            and r[key] == v
            and r["wd" if key == "dropout" else "dropout"] == 0
        ]
        if {r["seed"] for r in rs} < set(seeds):
            return None
        m = float(np.mean([r["chosen"]["val_accuracy"] for r in rs if r["seed"] in seeds]))
        if best is None or m > best[0]:
            best = (m, v)
    return best[1]


WDS = (1e-4, 1e-3, 1e-2)
DROPOUTS = (0.1, 0.3, 0.5)


def configs(stage: str, seeds, runs: list[dict]) -> list[dict]:
    out: list[dict] = []
    if stage == "grid":
        for n in SMALL:
            for s in seeds:
                for arch in GRID_ARCHS:
                    out += [config(arch, n, lam, s) for lam in LAMS]
    elif stage == "baselines":
        for n in SMALL:
            for s in seeds:
                out += [config("3x40", n, 0.0, s, wd=wd) for wd in WDS]
                out += [config("3x40", n, 0.0, s, dropout=p) for p in DROPOUTS]
    elif stage == "combined":
        for n in SMALL:
            lam = chosen_lambda(runs, "3x40", n, seeds)
            wd = chosen_baseline(runs, n, "wd", (0.0,) + WDS, seeds)
            p = chosen_baseline(runs, n, "dropout", (0.0,) + DROPOUTS, seeds)
            if lam is None or wd is None or p is None:
                log(f"combined, n={n}: waiting for the grid and the baselines of 3x40 at n={n}")
                continue
            for s in seeds:
                if wd > 0:
                    out.append(config("3x40", n, lam, s, wd=wd))
                if p > 0:
                    out.append(config("3x40", n, lam, s, dropout=p))
    elif stage == "knobs":
        lam = chosen_lambda(runs, "3x40", 1000, seeds)
        if lam is None:
            log("knobs: waiting for the grid of 3x40 at n=1000")
        else:
            # one setting after the other, each over every seed: a setting's comparison is complete early
            settings = [
                {"schedule": "early:0.3"},
                {"schedule": "every:5"},
                {"surrogate": "exact"},
                {"beta": 3.0},
                {"beta": 30.0},
                # the cheaper settings of the efficiency question: the term at every k-th step at λ and at
                # k·λ (the same weight per epoch as at every step), and in every 2nd epoch
                {"every_steps": 2},
                {"every_steps": 2, "lam": 2 * lam},
                {"every_steps": 5, "lam": 5 * lam},
                {"every_steps": 5},
                {"schedule": "every:2"},
            ]
            out += [
                config("3x40", 1000, kw.get("lam", lam), s, **{k: v for k, v in kw.items() if k != "lam"})
                for kw in settings
                for s in seeds
            ]
    elif stage == "cnn":
        for n in SMALL:
            for s in seeds:
                out += [config("cnn", n, lam, s) for lam in (0.0, 0.03, 0.1, 0.3)]
    elif stage == "full":
        for s in seeds:
            for arch in ("3x20", "6x40"):
                out += [config(arch, 55000, lam, s) for lam in LAMS]
    return out


# --------------------------------------------------------------------------- one run


def pack(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")


def unpack(s: str, dtype) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype=dtype)


class Splits:
    """MNIST with the fixed validation set and the per-seed training subsets."""

    def __init__(self, data_dir: str):
        d = load_mnist(data_dir)
        self.x_all, self.y_all = d.x_train, d.y_train
        self.x_test, self.y_test = d.x_test, d.y_test
        val = stratified_indices(self.y_all, N_VAL, VAL_SEED)
        mask = torch.ones(self.y_all.numel(), dtype=torch.bool)
        mask[val] = False
        self.val = val
        self.pool = torch.nonzero(mask).flatten()
        self.t1, self.t2 = probe_pairs(self.x_test, self.y_test, 1000, seed=TEST_PAIR_SEED)

    def train_idx(self, n: int, seed: int) -> torch.Tensor:
        if n >= self.pool.numel():
            return self.pool
        return self.pool[stratified_indices(self.y_all[self.pool], n, 100 + seed)]


@torch.no_grad()
def evaluate(model: nn.Module, x, y) -> tuple[np.ndarray, np.ndarray]:
    """Every image's correctness and cross-entropy loss."""
    model.eval()
    out = torch.cat([model(x[k : k + 4096]) for k in range(0, x.shape[0], 4096)])
    loss = nn.functional.cross_entropy(out, y, reduction="none")
    return (out.argmax(1) == y).numpy(), loss.numpy()


def snapshot(model: nn.Module, sp: Splits, per_item: bool) -> dict:
    """Test accuracy, test loss, Φ_N, median of maxima, share folded; with ``per_item`` every image's
    correctness and loss and every test pair's χ and profile maximum too (for the paired bootstrap)."""
    correct, loss = evaluate(model, sp.x_test, sp.y_test)
    b = sf.folding_batch(model, sp.t1, sp.t2, method="exact", workers=1)
    stats = sf.folding_statistics(b)
    rec = {
        "test_accuracy": float(correct.mean()),
        "test_loss": float(loss.mean()),
        "phi": float(stats["phi"]),
        "phi_max": float(stats["phi_max"]),
        "fraction_folded": float(stats["fraction_folded"]),
    }
    if per_item:
        rec.update(
            correct=pack(np.packbits(correct)),
            loss=pack(loss.astype(np.float16)),
            chi=pack(b.chi.numpy().astype(np.float32)),
            max_profile=pack(b.max_profile.numpy().astype(np.float32)),
        )
    return rec


def run_one(sp: Splits, cfg: dict, out: Path, epochs: int) -> dict:
    path = out / "runs" / f"{cfg['name']}.json"
    if path.exists():
        rec = json.loads(path.read_text())
        if rec["epochs"] != epochs:
            raise SystemExit(f"{path} was trained for {rec['epochs']} epochs, not {epochs}: use another --out")
        return rec
    t0 = time.perf_counter()
    idx = sp.train_idx(cfg["n_train"], cfg["seed"])
    x, y = sp.x_all[idx], sp.y_all[idx]
    xv, yv = sp.x_all[sp.val], sp.y_all[sp.val]
    torch.manual_seed(cfg["seed"])  # dropout masks
    model = build(cfg["arch"], dropout=cfg["dropout"], seed=cfg["seed"])
    reg = None
    if cfg["lam"] > 0:
        p1, p2 = probe_pairs(x, y, 512, seed=1000 + cfg["seed"])
        reg = FoldingRegularizer(
            p1,
            p2,
            cfg["lam"],
            schedule=cfg["schedule"],
            pairs_per_step=cfg["pairs_per_step"],
            method=cfg["surrogate"],
            n_points=cfg["n_points"],
            beta=cfg["beta"],
            seed=cfg["seed"],
            every_steps=cfg["every_steps"],
        )
    curve: list[dict] = []
    best: dict = {}

    def on_epoch_end(m, epoch, n_epochs):
        correct, loss = evaluate(m, xv, yv)
        row = {"epoch": epoch, "val_accuracy": float(correct.mean()), "val_loss": float(loss.mean())}
        curve.append(row)
        if not best or row["val_accuracy"] > best["row"]["val_accuracy"]:
            best.update(row=row, state=copy.deepcopy(m.state_dict()))

    res = train(
        model, x, y, epochs=epochs, seed=cfg["seed"], regularizer=reg, on_epoch_end=on_epoch_end, weight_decay=cfg["wd"]
    )
    final = snapshot(model, sp, per_item=False)
    model.load_state_dict(best["state"])
    chosen = {
        "epoch": best["row"]["epoch"],
        "val_accuracy": best["row"]["val_accuracy"],
        "val_loss": best["row"]["val_loss"],
        **snapshot(model, sp, per_item=True),
    }
    rec = {
        **cfg,
        "epochs": epochs,
        "provenance": {**run_provenance(), "protocol": PROTOCOL},
        "seconds": time.perf_counter() - t0,
        "train": {
            "loss": res.loss,
            "train_accuracy": res.train_accuracy,
            "reg_loss": res.reg_loss,
            "optimizer": res.as_dict()["optimizer"],
        },
        "validation": curve,
        "chosen": chosen,
        "final": final,
        "regularizer": reg.describe() if reg else None,
        "splits": {
            "n_val": N_VAL,
            "val_seed": VAL_SEED,
            "train_subset_seed": 100 + cfg["seed"],
            "test_pairs": 1000,
            "test_pair_seed": TEST_PAIR_SEED,
        },
    }
    with atomic_write(path) as fh:
        json.dump(rec, fh)
    log(
        f"{cfg['name']}: epoch {chosen['epoch']} val {chosen['val_accuracy']:.4f} test {chosen['test_accuracy']:.4f}"
        f" loss {chosen['test_loss']:.4f} phi {chosen['phi']:.4f} ({rec['seconds']:.0f}s)"
    )
    return rec


def read_runs(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))]


def main(argv=None) -> int:
    argv = sys.argv if argv is None else ["experiments/regularizer_scale_study.py", *argv]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True, help="directory with the four MNIST IDX files")
    p.add_argument("--out", default=str(ROOT / "experiments" / "results" / "regularizer-scale"))
    p.add_argument("--stage", nargs="+", default=list(STAGES), choices=[*STAGES, "report"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[*SMALL, 55000],
        help="run only the configurations with these training-set sizes",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs of every run (default: 300 on 1,000 images, 100 on 5,000, 30 on 55,000)",
    )
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv[1:])
    if len(set(args.seeds)) != len(args.seeds):
        p.error(f"--seeds must not repeat a seed, got {args.seeds}")
    torch.set_num_threads(args.threads)
    run_provenance()  # taken before any run: the runs record the code this process started with
    out = Path(args.out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    stages = [s for s in args.stage if s != "report"]
    if stages:
        sp = Splits(args.data_dir)
        for stage in stages:
            todo = [c for c in configs(stage, args.seeds, read_runs(out)) if c["n_train"] in args.sizes]
            left = [c for c in todo if not (out / "runs" / f"{c['name']}.json").exists()]
            log(f"stage {stage}: {len(todo)} runs, {len(left)} to do")
            for cfg in todo:
                run_one(sp, cfg, out, args.epochs or EPOCHS[cfg["n_train"]])
    if "report" in args.stage:
        from regularizer_scale_report import report

        report(out, read_runs(out), args.seeds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
