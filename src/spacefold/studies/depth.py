"""The depth study: train a family of MLPs and measure the global folding of each.

Used by ``spacefold sweep`` and ``spacefold demo`` and by the MNIST study in
``experiments/``. Each (architecture, seed) run leaves a checkpoint
(``models/<arch>_s<seed>.pt``) and a result (``runs/<arch>_s<seed>.json``), both
written atomically; a run whose result exists with the same settings is skipped,
so a sweep that was interrupted continues where it stopped.

With :class:`RegularizerSettings` every run is trained with the folding regulariser
(:class:`spacefold.FoldingRegularizer`: λ times the folding loss on inter-class
pairs of the run's training split, drawn with the run's seed); the regulariser is part of
the settings, so a run trained with another λ or schedule is never reused.

Measurement follows docs/method.md, 'The global measure': pairs of test samples over the
ordered class pairs with the same class included (``pairs="all"``); Φ_N and the
share of folded paths over the inter-class paths; the P2 aggregate
(``phi_max_p2``: per ordered class pair the median of the non-zero profile maxima,
then the median over class pairs) over all of them.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .._util import atomic_write, check_choice, check_distinct, check_int, json_safe
from ..errors import InputError, InputTypeError
from ._progress import StudyBars, trend_note
from .provenance import run_provenance
from .stats import hierarchical_bootstrap, pairs_needed, seed_mean_ci, seed_pair_interval, spearman

__all__ = [
    "StudySettings",
    "RegularizerSettings",
    "demo_settings",
    "run_study",
    "measure_model",
    "depth_trend",
    "write_tables",
    "read_run",
    "run_provenance",
    "seed_mean_ci",
    "spearman",
    "hierarchical_bootstrap",
    "seed_pair_interval",
    "pairs_needed",
    "CSV_FIELDS",
]

HIST_BINS = 20

CSV_FIELDS = [
    "arch",
    "depth",
    "width",
    "seed",
    "train_accuracy",
    "test_accuracy",
    "phi",
    "phi_lo",
    "phi_hi",
    "fraction_folded",
    "fraction_lo",
    "fraction_hi",
    "phi_max",
    "phi_max_p2",
    "phi_max_p2_lo",
    "phi_max_p2_hi",
    "mean_chi",
    "mean_regions",
    "n_paths",
    "n_inter_class_paths",
    "method",
    "epochs",
    "train_seconds",
    "measure_seconds",
]


@dataclass
class RegularizerSettings:
    """The folding regulariser every run of a study is trained with (``spacefold train --regularize``).

    ``lam`` weighs the folding loss (0: plain training); ``schedule`` says in which epochs it is
    on (``"always"``, ``"early:FRACTION"``, ``"every:N"``, :class:`spacefold.FoldingSchedule`);
    ``method``, ``n_points``, ``pairs_per_step``, ``every_steps`` and ``beta`` are those of
    :class:`spacefold.FoldingRegularizer`; ``probe_pairs`` inter-class pairs of the
    training split make its probe set (:func:`spacefold.probe_pairs`, the run's seed).
    """

    lam: float
    schedule: str = "always"
    method: str = "random"
    n_points: int = 8
    pairs_per_step: int = 8
    every_steps: int = 1
    beta: float = 10.0
    probe_pairs: int = 512

    def check(self) -> RegularizerSettings:
        """Validate every field; the schedule is stored in its canonical spelling ("EARLY:0.50" -> "early:0.5")."""
        from ..training.regularize import LOSS_METHODS, FoldingSchedule, _check_lambda, _check_positive

        self.lam = _check_lambda(self.lam)
        self.schedule = str(FoldingSchedule.parse(self.schedule))
        check_choice(self.method, "regularizer.method", LOSS_METHODS)
        check_int(self.n_points, "regularizer.n_points", 2)
        if self.method == "random" and self.n_points < 3:
            raise InputError(
                f"regularizer.n_points must be an int >= 3 with method 'random' (t = 0, t = 1 and at "
                f"least one random point), got {self.n_points}"
            )
        check_int(self.pairs_per_step, "regularizer.pairs_per_step", 1)
        check_int(self.every_steps, "regularizer.every_steps", 1)
        self.beta = _check_positive(self.beta, "regularizer.beta")
        check_int(self.probe_pairs, "regularizer.probe_pairs", 1)
        return self

    def build(self, x, y, seed: int):
        """The :class:`spacefold.FoldingRegularizer` of one run: its probe set is
        ``probe_pairs`` inter-class pairs of ``(x, y)`` drawn with ``seed``, which also seeds its draws."""
        from ..training.regularize import FoldingRegularizer, probe_pairs

        x1, x2 = probe_pairs(x, y, self.probe_pairs, seed=seed)
        return FoldingRegularizer(
            x1,
            x2,
            self.lam,
            schedule=self.schedule,
            pairs_per_step=self.pairs_per_step,
            method=self.method,
            n_points=self.n_points,
            beta=self.beta,
            seed=seed,
            every_steps=self.every_steps,
        )


@dataclass
class StudySettings:
    """Everything that decides a run's result; runs are reused only when these match.

    ``regularizer`` (a :class:`RegularizerSettings`, or ``None`` for plain training) is part of
    the key only when it is on (λ > 0), so the key of plain training is the one it always was.
    """

    epochs: int = 30
    lr: float = 1e-3
    batch_size: int = 128
    method: str = "exact"
    steps: int = 100
    pairs_per_class_pair: int = 1000
    pair_seed: int = 0
    n_boot: int = 500
    per_layer: bool = True
    data: dict = field(default_factory=dict)
    regularizer: RegularizerSettings | None = None

    @property
    def regularizing(self) -> bool:
        """Whether the runs are trained with the folding loss (a regulariser with λ > 0)."""
        return self.regularizer is not None and self.regularizer.lam > 0

    def as_dict(self) -> dict:
        """The settings as recorded with each run and hashed by :meth:`key`: every field, without
        ``regularizer`` when the training is plain."""
        d = asdict(self)
        if not self.regularizing:
            del d["regularizer"]
        return d

    def key(self) -> str:
        text = json.dumps(self.as_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def check(self) -> StudySettings:
        """Validate every field (so that a bad setting fails before anything is trained)."""
        check_int(self.epochs, "epochs", 1)
        check_int(self.batch_size, "batch_size", 1)
        check_int(self.steps, "steps", 1)
        check_int(self.pairs_per_class_pair, "pairs_per_class_pair", 1)
        check_int(self.pair_seed, "pair_seed", 0)
        from .._core.global_folding import check_n_boot

        check_n_boot(self.n_boot)
        check_choice(self.method, "method", ("exact", "bisect", "uniform"))
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)):
            raise InputTypeError(f"lr must be a finite number > 0, got {self.lr!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise InputError(f"lr must be a finite number > 0, got {self.lr!r}")
        if self.regularizer is not None:
            if not isinstance(self.regularizer, RegularizerSettings):
                raise InputTypeError(
                    f"regularizer must be a RegularizerSettings or None, got {type(self.regularizer).__name__}"
                )
            self.regularizer.check()
        return self


def demo_settings(method: str | None = None) -> StudySettings:
    """Settings of ``spacefold demo`` (scikit-learn digits: 1348 training images, so smaller
    batches and a larger learning rate than the MNIST defaults; fewer pairs for the
    slower sampling walkers)."""
    method = method or "exact"
    return StudySettings(
        epochs=40,
        lr=3e-3,
        batch_size=32,
        method=method,
        pairs_per_class_pair=200 if method == "exact" else 60,
        n_boot=300,
    )


def _measure_plan(y, settings: StudySettings):
    """The pairs every model of a study is measured on (all ordered class pairs)."""
    from .._core.pairs import pair_plan

    n_classes = int(y.unique().numel())
    return pair_plan(y, "all", max_pairs=settings.pairs_per_class_pair * n_classes**2, seed=settings.pair_seed)


def measure_model(model, x, y, settings: StudySettings, *, progress: bool = False) -> dict:
    """Global folding of one model on ``(x, y)``: inter-class Φ_N and the P2 aggregate, with CIs."""
    from .._core.global_folding import global_folding
    from .._core.pairs import plan_fingerprint

    t0 = time.perf_counter()
    plan = _measure_plan(y, settings)
    g = global_folding(
        model,
        x,
        y,
        pairs=plan,
        seed=settings.pair_seed,
        method=settings.method,
        steps=settings.steps,
        per_layer=settings.per_layer,
        batch_size=2048,
        progress=progress,
    )
    seconds = time.perf_counter() - t0
    inter = g.inter_class()
    ci_all = g.bootstrap(n_boot=settings.n_boot, seed=settings.pair_seed, stats=("phi_max_p2",))
    ci = inter.bootstrap(
        n_boot=settings.n_boot, seed=settings.pair_seed, stats=("phi", "phi_max", "fraction_folded", "mean")
    )
    nz = inter.chi.numpy()
    hist = np.histogram(nz[nz > 0], bins=HIST_BINS, range=(0.0, 1.0))[0].tolist()
    return {
        "phi": inter.phi,
        "phi_ci": list(ci["phi"]),
        "fraction_folded": inter.fraction_folded,
        "fraction_ci": list(ci["fraction_folded"]),
        "phi_max": inter.phi_max,
        "phi_max_ci": list(ci["phi_max"]),
        "phi_max_p2": g.phi_max_p2,
        "phi_max_p2_ci": list(ci_all["phi_max_p2"]),
        "mean_chi": inter.mean,
        "mean_chi_ci": list(ci["mean"]),
        "quantiles": inter.quantiles(),
        "mean_regions": inter.mean_regions,
        "n_paths": g.n_paths,
        "n_inter_class_paths": inter.n_paths,
        "chi_histogram": {"bins": HIST_BINS, "range": [0.0, 1.0], "counts_nonzero": hist},
        "per_layer": inter.per_layer_summary(),
        "class_pairs": g.class_pairs(),
        "pair_plan": plan_fingerprint(plan),
        "measure_seconds": seconds,
    }


def _run_name(arch: str, seed: int) -> str:
    return f"{arch}_s{seed}"


def check_study(
    data, archs: Sequence[str], seeds: Sequence[int], settings: StudySettings | None = None
) -> StudySettings:
    """The checks :func:`run_study` makes before anything is trained (the settings, the
    architectures and seeds, the size of the walks); returns the checked settings."""
    from ..models.mlp import arch_name, parse_arch

    settings = (settings or StudySettings()).check()
    if not archs:
        raise InputError("archs must name at least one architecture, got none")
    if not seeds:
        raise InputError("seeds must name at least one seed, got none")
    for a in archs:
        if not parse_arch(a):
            raise InputError(
                f"archs must have at least one hidden layer (a network without one does not fold), got {a!r}"
            )
    for s in seeds:
        check_int(s, "seed", 0)
    check_distinct(seeds, "seeds")
    check_distinct([arch_name(parse_arch(a)) for a in archs], "archs")
    from .._core.folding import WalkOptions, check_walk_size

    opts = WalkOptions.check(
        method=settings.method,
        steps=settings.steps,
        tol=None,
        tie_tol=0.0,
        layers=None,
        n0=None,
        stop="strict",
        batch_size=None,
        dtype=None,
    )
    for a in archs:  # before anything is trained
        check_walk_size(opts, 1, data.n_features, sum(parse_arch(a)), 4, batch_given=False)
    return settings


def run_study(
    data,
    archs: Sequence[str],
    seeds: Sequence[int],
    out: str | os.PathLike,
    settings: StudySettings | None = None,
    *,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> list[dict]:
    """Train every ``arch`` x ``seed`` on ``data`` (a :class:`spacefold.data.Dataset`) and
    measure it on the test split; skip runs already finished with the same settings.

    Returns one row per run (a dict with the keys of ``CSV_FIELDS`` and more),
    and writes ``results.csv`` and ``results.json`` in ``out``.

    Under ``torchrun`` (``WORLD_SIZE > 1``; :mod:`spacefold._core.parallel`) the ranks share the
    runs: rank 0 decides which runs are finished (and reads the checkpoints found), the
    others are dealt out in turn, ``world_size`` at a time; each rank trains and measures
    its runs alone (every run is trained on one torch thread, so that its weights come
    from its seed only, whichever process trains it: the numbers are those of one process),
    and after every round rank 0 writes the round's checkpoints and results, so
    that an interrupted sweep resumes from there. Only rank 0 writes and logs; every rank
    returns every row. A run that fails on one rank stops every rank with its error once
    the round's finished runs are written.
    """
    from .._core import parallel

    run_provenance()  # taken before any run: the runs record the code this process started with
    settings = check_study(data, archs, seeds, settings)
    settings.data = data.describe()
    out = Path(out)
    rank, size = parallel.world()
    main = rank == 0
    if main:
        (out / "models").mkdir(parents=True, exist_ok=True)
        (out / "runs").mkdir(parents=True, exist_ok=True)
    log = log if (log is not None and main) else (lambda s: None)
    runs = [(arch, seed) for arch in archs for seed in seeds]
    # rank 0 looks at what is there; the models of checkpoints found travel with the plan
    found_all = [_found(out, arch, seed, settings, data, log) for arch, seed in runs] if main else None
    plan = parallel.broadcast(found_all) if size > 1 else found_all
    assert plan is not None  # made by rank 0, received by the others
    todo = [k for k, f in enumerate(plan) if not isinstance(f, dict)]
    n_paths = len(_measure_plan(data.y_test, settings)) if todo else 0
    bars = StudyBars(progress and main, settings.epochs * plan.count(None), n_paths * len(todo), log)
    try:
        rows = _run_all(runs, plan, todo, settings, data, out, bars if main else None, bars.log, rank, size)
    finally:
        bars.close()
    if main:
        write_tables(rows, out)
    return rows


def _run_all(runs, plan, todo, settings, data, out, bars, log, rank: int, size: int) -> list:
    """The runs of ``todo`` (positions in ``runs``): here, or dealt out to the ranks in rounds."""
    from .._core import parallel

    rows: list = list(plan)
    if size == 1:
        for k in todo:
            arch, seed = runs[k]
            rows[k] = _run(arch, seed, plan[k], settings, data, out, bars=bars, log=log, save=True)[0]
        return rows
    for r0 in range(0, len(todo), size):
        mine = todo[r0 + rank] if r0 + rank < len(todo) else None
        msgs: list[str] = []
        done: tuple | None
        if mine is None:
            done = None
        else:
            arch, seed = runs[mine]
            try:
                with parallel.alone():
                    row, model, meta = _run(
                        arch, seed, plan[mine], settings, data, out, bars=bars, log=msgs.append, save=False
                    )
                done = (mine, row, model, meta, msgs)
            except Exception as err:  # every rank learns of it; the round's finished runs are kept
                done = (mine, None, None, None, msgs + [f"{_run_name(arch, seed)}: failed on rank {rank}"], err)
        gathered = parallel.all_gather(done)
        failed = None
        for r, item in enumerate(gathered):
            if item is None:
                continue
            k, row, model, meta, msgs = item[:5]
            if row is not None:
                if rank == 0:
                    _save_run(out, runs[k], row, model, meta)
                    if r != 0 and bars is not None:  # this rank's bars counted its own runs as they went
                        bars.add(settings.epochs if plan[k] is None else 0, int(row["n_paths"]))
                rows[k] = row
            for m in msgs:
                log(m)
            if len(item) > 5 and failed is None:
                failed = (r, runs[k], item[5])
        if failed is not None:
            r, (arch, seed), cause = failed
            if isinstance(cause, (InputError, OSError)):
                raise cause
            raise RuntimeError(f"run {_run_name(arch, seed)} failed on rank {r}: {type(cause).__name__}: {cause}")
    return rows


def _found(out: Path, arch: str, seed: int, settings: StudySettings, data, log):
    """What a run finds in ``out``: its result row when it is finished with these settings, else
    ``(model, training record)`` of a checkpoint of this run, else ``None`` (to be trained)."""
    from ..models.mlp import load_checkpoint

    name = _run_name(arch, seed)
    reg_record = _regularizer(settings, data, seed)[1]
    res_path = out / "runs" / f"{name}.json"
    ckpt = out / "models" / f"{name}.pt"
    if res_path.is_file():
        try:
            old = read_run(res_path)
        except (OSError, ValueError):
            old = {}
        if old.get("settings_key") == settings.key() and _same_run(old, arch, seed):
            log(f"{name}: done before, skipped")
            return old
    if not ckpt.is_file():
        return None
    train_key = {k: getattr(settings, k) for k in ("epochs", "lr", "batch_size")}
    try:
        model, meta = load_checkpoint(ckpt, with_metadata=True)
    except (ValueError, OSError):
        log(f"{name}: the checkpoint found is not readable, trained again")
        return None
    tr = meta.get("training", {})
    why = _checkpoint_mismatch(model, meta, arch, seed, data)
    if why is None and (any(tr.get(k) != v for k, v in train_key.items()) or meta.get("data") != settings.data):
        why = "other training settings or data"
    if why is None and meta.get("regularizer") != reg_record:
        why = (
            "plain training"
            if meta.get("regularizer") is None
            else "another folding regulariser"
            if reg_record
            else "training with the folding regulariser"
        )
    if why is not None:
        log(f"{name}: the checkpoint found is of {why}, trained again")
        return None
    log(f"{name}: checkpoint found, training skipped")
    return model, tr


def _regularizer(settings: StudySettings, data, seed: int):
    """The folding regulariser of one run (``None`` for plain training) and its record."""
    reg = (
        settings.regularizer.build(data.x_train, data.y_train, seed)
        if (settings.regularizer is not None and settings.regularizing)
        else None
    )
    return reg, (reg.describe() if reg is not None else None)


def _run(
    arch: str,
    seed: int,
    found,
    settings: StudySettings,
    data,
    out: Path,
    *,
    bars: StudyBars | None,
    log: Callable[[str], None],
    save: bool,
) -> tuple[dict, object, dict | None]:
    """Train (unless ``found`` holds the model and its training record) and measure one run,
    counting its epochs and paths on ``bars`` (``None``: no progress shown).

    With ``save`` the checkpoint and the result are written here; returns ``(row, model,
    checkpoint metadata)``, the metadata ``None`` when nothing was trained."""
    from .._core import parallel
    from ..models.mlp import parse_arch
    from ..models.train import train_mlp

    name = _run_name(arch, seed)
    reg, reg_record = _regularizer(settings, data, seed)
    ckpt = out / "models" / f"{name}.pt"
    meta = None
    t0 = time.perf_counter()
    if found is None:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # sums in one order: the weights depend on the seed, not on the process's threads
        try:
            model, res = train_mlp(
                arch,
                data,
                epochs=settings.epochs,
                lr=settings.lr,
                batch_size=settings.batch_size,
                seed=seed,
                checkpoint=ckpt if save else None,
                regularizer=reg,
                on_epoch_end=bars.epoch if bars is not None else None,
            )
        finally:
            torch.set_num_threads(threads)
        tr = res.as_dict()
        if not save:
            from ..models.train import checkpoint_metadata

            meta = checkpoint_metadata(model, data, res, reg)
        how = f" with the folding loss (λ={reg.lam:g}, {reg.schedule})" if reg is not None else ""
        log(
            f"{name}: trained {settings.epochs} epochs{how}, test accuracy {res.final_test_accuracy:.4f} "
            f"({time.perf_counter() - t0:.0f} s)"
        )
    else:
        model, tr = found
    measure_bar = bars.measure if bars is not None else None
    with parallel.progress_into(measure_bar):
        m = measure_model(model, data.x_test, data.y_test, settings, progress=measure_bar is not None)
    hidden = parse_arch(arch)
    row = {
        "arch": arch,
        "depth": len(hidden),
        "width": hidden[0] if hidden else 0,
        "seed": seed,
        "train_accuracy": tr["final_train_accuracy"],
        "test_accuracy": tr["final_test_accuracy"],
        "epochs": settings.epochs,
        "train_seconds": tr.get("seconds", float("nan")),
        "method": settings.method,
        "settings": settings.as_dict(),
        "settings_key": settings.key(),
        "regularizer": reg_record,
        "checkpoint": str(Path("models") / f"{name}.pt"),
        **m,
        "provenance": run_provenance(),
    }
    if save:
        _save_run(out, (arch, seed), row, None, None)
    log(
        f"{name}: phi={m['phi']:.4f} folded={m['fraction_folded']:.4f} phi_max_p2={m['phi_max_p2']:.4f} "
        f"({m['n_paths']} paths, {m['measure_seconds']:.0f} s)"
    )
    return row, model, meta


def _save_run(out: Path, run: tuple[str, int], row: dict, model, meta: dict | None) -> None:
    """Write a run's checkpoint (when ``meta`` says it was trained) and then its result, atomically."""
    from ..models.mlp import save_checkpoint

    name = _run_name(*run)
    if meta is not None:
        save_checkpoint(model, out / "models" / f"{name}.pt", metadata=meta)
    with atomic_write(out / "runs" / f"{name}.json") as fh:
        json.dump(json_safe(row), fh, indent=1, allow_nan=False)


def _checkpoint_mismatch(model, meta: dict, arch: str, seed: int, data) -> str | None:
    """Why a checkpoint found under a run's name is not that run's (``None`` when it is):
    another architecture, seed, input size or number of classes."""
    from ..models.mlp import arch_name, parse_arch

    if model.hidden != parse_arch(arch):
        return f"architecture {model.arch}, not {arch_name(parse_arch(arch))}"
    recorded = meta.get("seed", meta.get("training", {}).get("seed"))
    if recorded != seed:
        return f"seed {recorded}, not {seed}"
    if model.in_features != data.n_features or model.n_classes != data.n_classes:
        return f"{model.in_features} inputs and {model.n_classes} classes, not {data.n_features} and {data.n_classes}"
    return None


def _same_run(row: dict, arch: str, seed: int) -> bool:
    """Whether a result found under a run's name is of that architecture and seed."""
    from ..models.mlp import parse_arch

    found = row.get("arch")
    if found is None:
        return False
    try:
        return parse_arch(found) == parse_arch(arch) and row.get("seed") == seed
    except (InputError, TypeError):
        return False


def read_run(path: str | os.PathLike) -> dict:
    """A result file written by :func:`run_study` (one run) or an experiment; the ``null`` that strict JSON
    stores for a non-finite number (such as a training time not recorded) reads back as NaN."""
    return _revive(json.loads(Path(path).read_text()))


def _revive(obj):
    if obj is None:
        return float("nan")
    if isinstance(obj, dict):
        return {k: _revive(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_revive(v) for v in obj]
    return obj


def flat_row(r: dict) -> dict:
    """The CSV columns of one run."""
    return {
        **{k: r.get(k) for k in CSV_FIELDS},
        "phi_lo": r["phi_ci"][0],
        "phi_hi": r["phi_ci"][1],
        "fraction_lo": r["fraction_ci"][0],
        "fraction_hi": r["fraction_ci"][1],
        "phi_max_p2_lo": r["phi_max_p2_ci"][0],
        "phi_max_p2_hi": r["phi_max_p2_ci"][1],
    }


def depth_trend(rows: Sequence[dict], min_accuracy: float = 0.0, stat: str = "phi") -> dict:
    """How ``stat`` goes with depth among runs with test accuracy >= ``min_accuracy``.

    Returns the Spearman rank correlation of depth and ``stat`` over the kept runs,
    the per-depth medians, and whether the medians increase with depth; ``note`` says in one
    sentence why the medians are empty or the correlation is undefined (NaN), else ``None``.
    """
    kept = [r for r in rows if r["test_accuracy"] >= min_accuracy]
    depths = sorted({r["depth"] for r in kept})
    med = {d: float(np.median([r[stat] for r in kept if r["depth"] == d])) for d in depths}
    rho = float("nan")
    if len(kept) >= 3 and len(depths) >= 2:
        rho = spearman([r["depth"] for r in kept], [r[stat] for r in kept])
    vals = [med[d] for d in depths]
    increasing = len(vals) >= 2 and all(b >= a for a, b in zip(vals, vals[1:]))
    note = trend_note(rows, kept, depths, rho, stat, min_accuracy)
    return {
        "stat": stat,
        "min_accuracy": min_accuracy,
        "n_runs": len(kept),
        "n_runs_total": len(rows),
        "median_by_depth": med,
        "spearman_depth": rho,
        "medians_increase": increasing,
        "note": note,
    }


def summary_by_arch(rows: Sequence[dict]) -> list[dict]:
    """Per architecture: number of seeds, mean ± std of accuracy, Φ_N, share folded, phi_max_p2."""
    out = []
    archs = sorted({r["arch"] for r in rows}, key=lambda a: (min(r["depth"] for r in rows if r["arch"] == a), a))
    for a in archs:
        rs = [r for r in rows if r["arch"] == a]

        def ms(k, rs=rs):
            v = np.array([r[k] for r in rs], dtype=float)
            return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0

        row = {"arch": a, "depth": rs[0]["depth"], "n_seeds": len(rs)}
        for k in ("test_accuracy", "phi", "fraction_folded", "phi_max", "phi_max_p2", "mean_regions"):
            row[k], row[k + "_std"] = ms(k)
        out.append(row)
    return out


def markdown_table(rows: Sequence[dict]) -> str:
    """Per-run table in markdown (accuracy, Φ_N with CI, share folded with CI, P2 aggregate with CI)."""
    lines = [
        "| arch | seed | test acc. | Φ_N [95% CI] | share folded [95% CI] | phi_max_p2 [95% CI] | mean regions |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["depth"], r["arch"], r["seed"])):
        lines.append(
            f"| {r['arch']} | {r['seed']} | {r['test_accuracy']:.4f} | {r['phi']:.4f} "
            f"[{r['phi_ci'][0]:.4f}, {r['phi_ci'][1]:.4f}] | {r['fraction_folded']:.4f} "
            f"[{r['fraction_ci'][0]:.4f}, {r['fraction_ci'][1]:.4f}] | {r['phi_max_p2']:.4f} "
            f"[{r['phi_max_p2_ci'][0]:.4f}, {r['phi_max_p2_ci'][1]:.4f}] | {r['mean_regions']:.1f} |"
        )
    return "\n".join(lines)


def markdown_summary(rows: Sequence[dict]) -> str:
    lines = [
        "| arch | seeds | test acc. (mean ± sd) | Φ_N | share folded | phi_max_p2 |",
        "|---|---|---|---|---|---|",
    ]
    for s in summary_by_arch(rows):
        lines.append(
            f"| {s['arch']} | {s['n_seeds']} | {s['test_accuracy']:.4f} ± {s['test_accuracy_std']:.4f} | "
            f"{s['phi']:.4f} ± {s['phi_std']:.4f} | {s['fraction_folded']:.4f} ± {s['fraction_folded_std']:.4f} | "
            f"{s['phi_max_p2']:.4f} ± {s['phi_max_p2_std']:.4f} |"
        )
    return "\n".join(lines)


def write_tables(rows: Sequence[dict], out: str | os.PathLike) -> None:
    """``results.csv`` (one line per run), ``results.json`` (every run in full) and
    ``summary.md`` (tables) in ``out``, atomically."""
    out = Path(out)
    with atomic_write(out / "results.csv", "w") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow(flat_row(r))
    with atomic_write(out / "results.json") as fh:
        json.dump(json_safe({"runs": list(rows), "by_arch": summary_by_arch(rows)}), fh, indent=1, allow_nan=False)
    with atomic_write(out / "summary.md") as fh:
        fh.write("# Depth study\n\n## Per architecture (mean ± sd over seeds)\n\n")
        fh.write(markdown_summary(rows) + "\n\n## Per run\n\n" + markdown_table(rows) + "\n")


def fmt_ci(v: float, ci: Sequence[float]) -> str:
    return f"{v:.4f} [{ci[0]:.4f}, {ci[1]:.4f}]" if not math.isnan(v) else "n/a"
