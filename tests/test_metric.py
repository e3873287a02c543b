"""FoldingMetric and folding_statistics: exact agreement with global_folding, bounded memory, sync."""

from __future__ import annotations

import os
import socket
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import spacefold as sf
from spacefold._core.global_folding import median_nonzero
from spacefold._core.measure import chi_from_ranges
from spacefold.errors import InputError, InputTypeError
from spacefold.training.metric import FoldingMetric, farey_length, folding_statistics, histogram_median


@pytest.fixture(scope="module")
def folded():
    """global_folding of a small ReLU net on 3-class 2-D data: many paths, a share of them folded."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(60, 2, generator=g)
    y = torch.arange(60) % 3
    model = sf.mlp("3x8", 2, 3, seed=1)
    res = sf.global_folding(model, x, y)
    assert 0.0 < res.fraction_folded < 1.0  # the fixture has folded and unfolded paths
    return res


def _as_dict(metric_out: dict) -> dict:
    return {k: (int(v) if k == "n_paths" else float(v)) for k, v in metric_out.items()}


def test_functional_equals_global_folding(folded):
    out = folding_statistics(folded.chi, folded.max_profile)
    assert out["phi"] == folded.phi
    assert out["phi_max"] == folded.phi_max
    assert out["fraction_folded"] == folded.fraction_folded
    assert out["n_paths"] == folded.n_paths
    assert folding_statistics(folded) == out  # a result object alone


@pytest.mark.parametrize("chunk", [3, 97, 10_000])
def test_metric_over_batches_equals_global_folding(folded, chunk):
    metric = FoldingMetric()
    for k in range(0, folded.n_paths, chunk):
        metric.update(folded.chi[k : k + chunk], folded.max_profile[k : k + chunk])
    out = _as_dict(metric.compute())
    assert (out["phi"], out["phi_max"], out["fraction_folded"], out["n_paths"]) == (
        folded.phi,
        folded.phi_max,
        folded.fraction_folded,
        folded.n_paths,
    )


def test_metric_on_folding_batches_equals_global_folding_of_the_same_pairs():
    """Feed FoldingBatch results of the pairs of a plan; compare with global_folding on that plan."""
    from spacefold._core.pairs import pair_plan

    g = torch.Generator().manual_seed(5)
    x = torch.randn(30, 2, generator=g)
    y = torch.arange(30) % 2
    model = sf.mlp("2x10", 2, 2, seed=4)
    plan = pair_plan(y, "inter-class")
    i, j = plan.indices()
    metric = FoldingMetric()
    for k in range(0, i.numel(), 50):
        metric.update(sf.folding_batch(model, x[i[k : k + 50]], x[j[k : k + 50]]))
    ref = sf.global_folding(model, x, y, pairs=plan)
    out = _as_dict(metric.compute())
    assert (out["phi"], out["phi_max"], out["fraction_folded"]) == (ref.phi, ref.phi_max, ref.fraction_folded)


def test_reset_starts_over(folded):
    metric = FoldingMetric()
    metric.update(torch.ones(5) * 0.5, torch.ones(5) * 0.5)
    metric.reset()
    metric.update(folded.chi, folded.max_profile)
    assert float(metric.compute()["phi"]) == folded.phi


def test_hand_oracle():
    # χ = 0, 0, 1/3, 1/2, 1/2, 3/4: non-zero values 1/3, 1/2, 1/2, 3/4 -> median (1/2 + 1/2) / 2 = 1/2
    chi = torch.tensor([0, 0, 1 / 3, 1 / 2, 1 / 2, 3 / 4], dtype=torch.float64)
    mx = torch.tensor([0, 1 / 5, 1 / 3, 1 / 2, 2 / 3, 3 / 4], dtype=torch.float64)
    out = folding_statistics(chi, mx)
    assert out["phi"] == 0.5
    assert out["phi_max"] == 0.5  # 1/5, 1/3, 1/2, 2/3, 3/4 -> the middle one
    assert out["fraction_folded"] == 4 / 6
    none = folding_statistics(torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64))
    assert none == {"phi": 0.0, "phi_max": 0.0, "fraction_folded": 0.0, "n_paths": 3}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 30), st.integers(1, 4)), min_size=1, max_size=60))
def test_histogram_median_is_numpy_median(triples):
    """Values χ = 1 − r1/r2 (r1 ≤ r2), each repeated; the histogram median is numpy's, bit for bit."""
    vals, counts = [], []
    for a, b, c in triples:
        r1, r2 = min(a, b), max(a, b)
        vals.append(float(chi_from_ranges(torch.tensor(r1), torch.tensor(r2))))
        counts.append(c)
    flat = np.repeat(np.array(vals), counts)
    v = torch.tensor(vals, dtype=torch.float64)
    keep = v > 0
    got = histogram_median(v[keep], torch.tensor(counts)[keep])
    assert got == median_nonzero(flat)
    # and the metric fed path by path in random-sized batches agrees
    metric = FoldingMetric()
    t = torch.tensor(flat)
    for k in range(0, t.numel(), 5):
        metric.update(t[k : k + 5], t[k : k + 5])
    assert float(metric.compute()["phi"]) == median_nonzero(flat)


def test_farey_length_oracle():
    # fractions in [0, 1] with denominator <= r: 0/1 1/1 | 1/2 | 1/3 2/3 | 1/4 3/4 | 1/5 2/5 3/5 4/5
    assert [farey_length(r) for r in (1, 2, 3, 4, 5)] == [2, 3, 5, 7, 11]
    assert farey_length(1) == len({Fraction(a, b) for b in range(1, 2) for a in range(b + 1)})
    assert farey_length(12) == len({Fraction(a, b) for b in range(1, 13) for a in range(b + 1)})


def test_memory_is_bounded_by_the_distinct_values():
    """Ten thousand paths with r2 <= R leave at most farey_length(R) entries per quantity."""
    R = 12
    g = torch.Generator().manual_seed(0)
    metric = FoldingMetric()
    for _ in range(20):
        r2 = torch.randint(0, R + 1, (500,), generator=g)
        r1 = (torch.rand(500, generator=g) * (r2 + 1)).long().clamp(max=r2)
        c = chi_from_ranges(r1, r2)
        metric.update(c, c)
    assert int(metric.compute()["n_paths"]) == 10_000
    assert metric.n_distinct <= 2 * (farey_length(R) - 1)  # the zero value is never stored
    assert len(metric.chi_values) == 1  # merged after every update, not a growing list


def test_merge_state_as_in_ddp(folded):
    """Two metrics on two halves merged with the metric's own reductions equal one metric on all."""
    half = folded.n_paths // 2
    a, b = FoldingMetric(), FoldingMetric()
    a.update(folded.chi[:half], folded.max_profile[:half])
    b.update(folded.chi[half:], folded.max_profile[half:])
    a.merge_state(b)
    out = _as_dict(a.compute())
    assert (out["phi"], out["phi_max"], out["fraction_folded"], out["n_paths"]) == (
        folded.phi,
        folded.phi_max,
        folded.fraction_folded,
        folded.n_paths,
    )


def _ddp_worker(rank: int, world: int, port: int, chi: torch.Tensor, mx: torch.Tensor, out: str) -> None:
    import torch.distributed as dist

    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        metric = FoldingMetric()
        # uneven shares
        cut = chi.numel() // 3
        part = slice(0, cut) if rank == 0 else slice(cut, None)
        metric.update(chi[part], mx[part])
        res = {k: float(v) for k, v in metric.compute().items()}
        torch.save(res, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_sync_across_two_gloo_processes(folded, tmp_path):
    """A real 2-process gloo group on CPU: every rank computes the statistics of all paths
    (slow: two fresh interpreters import torch)."""
    import torch.distributed as dist
    import torch.multiprocessing as mp

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    out = str(tmp_path / "res")
    mp.spawn(_ddp_worker, args=(2, _free_port(), folded.chi, folded.max_profile, out), nprocs=2, join=True)
    for rank in (0, 1):
        res = torch.load(f"{out}.{rank}", weights_only=True)
        assert (res["phi"], res["phi_max"], res["fraction_folded"], res["n_paths"]) == (
            folded.phi,
            folded.phi_max,
            folded.fraction_folded,
            float(folded.n_paths),
        )


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "chi, mx, match",
    [
        (torch.tensor([0.5, float("nan")]), torch.tensor([0.5, 0.5]), "NaN"),
        (torch.tensor([0.5, 1.5]), torch.tensor([0.5, 1.5]), r"\[0, 1\]"),
        (torch.tensor([-0.1]), torch.tensor([0.1]), r"\[0, 1\]"),
        (torch.tensor([0.5, 0.5]), torch.tensor([0.5]), "one value per path"),
        (torch.tensor([[0.5]]), torch.tensor([[0.5]]), "1-D"),
        (torch.tensor([0.5]), torch.tensor([0.25]), "max_profile must be >= chi"),
    ],
)
def test_bad_values(chi, mx, match):
    with pytest.raises(InputError, match=match):
        folding_statistics(chi, mx)
    with pytest.raises(InputError, match=match):
        FoldingMetric().update(chi, mx)


def test_bad_kinds_and_empty():
    with pytest.raises(InputError, match="max_profile is missing"):
        folding_statistics(torch.tensor([0.5]))
    with pytest.raises(InputTypeError, match="float tensor"):
        folding_statistics(torch.tensor([True]), torch.tensor([True]))
    with pytest.raises(InputTypeError, match="1-D tensor"):
        folding_statistics(object(), torch.tensor([0.5]))
    with pytest.raises(InputError, match="at least one path"):
        folding_statistics(torch.zeros(0), torch.zeros(0))
    with pytest.raises(InputError, match="call update"), pytest.warns(UserWarning, match="before the ``update``"):
        FoldingMetric().compute()
