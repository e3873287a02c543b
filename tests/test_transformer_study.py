"""experiments/transformer_folding_study.py: the certifiable twin of the SwiGLU network, the pair order, and
(slow) the --quick smoke run checked against walks made again from its checkpoints."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import spacefold as sf

ROOT = Path(__file__).resolve().parent.parent


def _study():
    sys.path.insert(0, str(ROOT / "experiments"))
    spec = importlib.util.spec_from_file_location(
        "transformer_folding_study", ROOT / "experiments" / "transformer_folding_study.py"
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules["transformer_folding_study"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_twin_has_the_swiglu_networks_outputs_and_bits():
    st = _study()
    model = st.build("swiglu", 3, seed=4).eval()
    twin = st.CertifiableGatedMLP(model).eval()
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 784, generator=g)
    t = torch.linspace(0, 1, 301).unsqueeze(1)
    x = (1 - t) * a + t * b
    with torch.no_grad():
        assert torch.equal(model(x), twin(x))
    p1, p2 = sf.activation_patterns(model, x), sf.activation_patterns(twin, x, layers=twin.bits)
    assert p1.shape == (301, 96) and torch.equal(p1, p2)
    # the bits change along the segment (the check above is not between two constant patterns)
    assert bool((p1[1:] != p1[:-1]).any())


def test_certified_walk_of_the_twin_holds_every_change_a_dense_grid_sees():
    st = _study()
    model = st.build("swiglu", 2, seed=1).eval()
    g = torch.Generator().manual_seed(3)
    x1, x2 = torch.rand(3, 784, generator=g), torch.rand(3, 784, generator=g)
    w = st.walk_chunk(model, x1, x2, "certified")
    assert w["complete"].all() and set(w["per_layer"]) == {"layers.0", "layers.1"}
    grid = sf.folding_batch(model, x1, x2, method="uniform", steps=4000)
    # every region the grid visits is one the certified walk found (it may find more, between grid points)
    assert (w["n_regions"] >= grid.n_regions.numpy()).all()


def test_pairs_are_inter_class_and_a_longer_plan_keeps_the_order_of_its_prefix():
    st = _study()
    y = torch.arange(10).repeat(30)
    i, j, fp, _ = st.test_pairs(y, 200)
    assert len(i) == 200 and fp["n_pairs"] == 200 and fp["mode"] == "inter-class"
    assert bool((y[i] != y[j]).all())
    i2, j2, _, _ = st.test_pairs(y, 200)
    assert torch.equal(i, i2) and torch.equal(j, j2)
    # the shuffled order spreads a prefix over the class pairs
    assert len({(int(y[a]), int(y[b])) for a, b in zip(i[:50], j[:50])}) > 30


@pytest.mark.slow
def test_quick_run(tmp_path):
    data = os.environ.get("SPACEFOLD_DATA")
    if not data:
        pytest.skip("SPACEFOLD_DATA (the MNIST IDX files) not set")
    st = _study()
    torch.backends.mha.set_fastpath_enabled(False)
    out = tmp_path / "quick"
    assert st.main(["--data-dir", data, "--quick", "--out", str(out)]) == 0
    runs = st.read_runs(out)
    assert sorted(r["name"] for r in runs) == sorted(f"{f}_d{d}_s0" for f in st.FAMILIES for d in (1, 2))
    mnist = sf.data.load_mnist(data)
    for r in runs:
        p = st.read_per_path(r)
        assert r["n_paths"] == 6 and len(p["chi"]) == 6
        assert r["provenance"]["pair_plan_version"] >= 1 and r["provenance"]["protocol"] == st.PROTOCOL
        assert len(r["layers"]) == r["settings"]["depth"]
        nz = p["chi"][p["chi"] > 0]
        assert r["phi"] == pytest.approx(float(np.median(nz)) if nz.size else 0.0, abs=1e-6)
        complete = r["settings"]["method"] != "bisect"
        assert r["share_complete"] == (1.0 if complete else 0.0)
        if r["settings"]["family"] == "swiglu":  # bisection, audited by the certified walk on the first pairs
            assert r["audit"]["n_paths"] == 3 and 0.0 <= r["audit"]["share_more_regions"] <= 1.0
        else:
            assert r["audit"] is None
        if r["settings"]["family"] == "relu":  # the exact walk again, from the checkpoint, on the same pairs
            model = st.build("relu", r["settings"]["depth"], 0)
            blob = torch.load(out / "models" / f"{r['name']}.pt", weights_only=True)
            model.load_state_dict(blob["state"])
            i, j, _, _ = st.test_pairs(mnist.y_test, 6)
            fb = sf.folding_batch(model.eval(), mnist.x_test[i], mnist.x_test[j], method="exact")
            np.testing.assert_allclose(p["chi"], fb.chi.numpy(), atol=1e-6)
    # a second run finds every run done and changes nothing
    before = {q: q.read_bytes() for q in (out / "runs").glob("*.json")}
    assert st.main(["--data-dir", data, "--quick", "--out", str(out)]) == 0
    assert {q: q.read_bytes() for q in (out / "runs").glob("*.json")} == before
    assert json.loads(next(iter(before.values())))["settings"]["epochs"] == 1


def test_report_compares_depths_on_the_pairs_every_network_walked(tmp_path):
    """A network whose walk was extended (1,000 pairs where the others have 200, a prefix of the same order) gives
    its depth's row the pairs all that depth's seeds walked; the depths are compared on the common prefix."""
    st = _study()
    spec = importlib.util.spec_from_file_location(
        "transformer_folding_report", ROOT / "experiments" / "transformer_folding_report.py"
    )
    rep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rep)
    rng = np.random.default_rng(0)

    def run(depth: int, seed: int, n: int) -> dict:
        r1 = rng.integers(1, 5, n)
        chi = np.where(rng.random(n) < 0.5, 1 - r1 / (r1 + rng.integers(1, 5, n)), 0.0).astype(np.float32)
        per_layer = {f"layer{k}": chi for k in range(depth)}
        return {
            "name": f"vit_d{depth}_s{seed}",
            "settings": {"family": "vit", "depth": depth, "seed": seed, "method": "bisect"},
            "test_accuracy": 0.9,
            "share_complete": 0.0,
            "mean_regions": 10.0,
            "cpu_seconds_per_path": 1.0,
            "n_paths": n,
            "phi": rep.median_nonzero(chi.astype(float)),
            "audit": None,
            "per_path": {
                "chi": st.pack(chi),
                "max_profile": st.pack(chi),
                "n_regions": st.pack(np.full(n, 10, np.int32)),
                "complete": st.pack(np.packbits(np.zeros(n, bool))),
                "per_layer": {k: st.pack(v) for k, v in per_layer.items()},
            },
        }

    runs = [run(1, 0, 1000), run(1, 1, 1000), run(2, 0, 1000), run(2, 1, 200)]
    summary = rep.report(tmp_path, runs, figures=tmp_path / "figures")
    fam = summary["families"]["vit"]
    assert fam["n_paths_compared"] == 200
    assert fam["depths"][1]["n_paths"] == 1000 and fam["depths"][2]["n_paths"] == 200
    want = np.mean([rep.median_nonzero(st.read_per_path(r)["chi"]) for r in runs[:2]])
    assert fam["depths"][1]["phi"][0] == pytest.approx(want)
    assert fam["depths"][1]["phi"][1] <= want <= fam["depths"][1]["phi"][2]
    first = [rep.median_nonzero(st.read_per_path(r)["chi"][:200]) for r in runs]
    assert fam["delta_deepest_minus_1"]["phi"][0] == pytest.approx(np.mean(first[2:]) - np.mean(first[:2]))
