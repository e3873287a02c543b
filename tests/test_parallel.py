"""Worker processes and torchrun ranks (spacefold.parallel): the same numbers as one process, bit for bit."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import spacefold as sf
from spacefold._core import parallel
from spacefold._core.folding import MAX_CHUNK, WalkOptions, chunk_size, memory_budget
from spacefold._core.patterns import PatternRecorder
from spacefold.cli import main as cli_main
from spacefold.errors import InputError, InputTypeError
from spacefold.models import mlp, save_checkpoint

FIELDS = ("chi", "r1", "r2", "n_regions", "max_profile")
TIMING = ("wall_seconds", "paths_per_second", "workers", "world_size")


@pytest.fixture(scope="module")
def setup():
    net = mlp("3x8", 16, 4, seed=1).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(120, 16, generator=g)
    y = torch.randint(4, (120,), generator=g)
    i = torch.randint(120, (1500,), generator=g)
    j = torch.randint(120, (1500,), generator=g)
    return net, x, y, i, j


def _same(a, b) -> bool:
    return all(torch.equal(getattr(a, k), getattr(b, k)) for k in FIELDS)


@pytest.mark.parametrize("method", ["exact", "uniform"])
def test_folding_pairs_workers_bit_for_bit(setup, method):
    net, x, _, i, j = setup
    one = sf.folding_pairs(net, x, i, j, method=method, steps=20, workers=1, per_layer=True)
    two = sf.folding_pairs(net, x, i, j, method=method, steps=20, workers=2, per_layer=True, batch_size=100)
    assert _same(one, two)
    assert one.per_layer.keys() == two.per_layer.keys()
    assert all(torch.equal(one.per_layer[k], two.per_layer[k]) for k in one.per_layer)
    # and the paths are the ones folding_batch walks on the gathered inputs
    assert torch.equal(one.chi, sf.folding_batch(net, x[i], x[j], method=method, steps=20).chi)


def test_global_folding_workers_bit_for_bit(setup):
    net, x, y, _, _ = setup
    one = sf.global_folding(net, x, y, max_pairs=2000, workers=1, per_layer=True)
    three = sf.global_folding(net, x, y, max_pairs=2000, workers=3, per_layer=True)
    for k in FIELDS + ("label_a", "label_b"):
        assert torch.equal(getattr(one, k), getattr(three, k)), k
    assert all(torch.equal(one.per_layer[k], three.per_layer[k]) for k in one.per_layer)
    d1, d3 = one.to_dict(), three.to_dict()
    assert (d1["workers"], d3["workers"], d1["world_size"]) == (1, 3, 1)
    assert d1["wall_seconds"] > 0 and d1["paths_per_second"] == pytest.approx(2000 / d1["wall_seconds"])
    assert {k: v for k, v in d1.items() if k not in TIMING} == {k: v for k, v in d3.items() if k not in TIMING}


def test_more_workers_than_pairs(setup):
    net, x, _, i, j = setup
    one = sf.folding_pairs(net, x, i[:5], j[:5], workers=1)
    many = sf.folding_pairs(net, x, i[:5], j[:5], workers=64)
    assert _same(one, many)


@pytest.mark.parametrize("bad", [0, -1, -8])
def test_workers_not_positive(setup, bad):
    net, x, y, i, j = setup
    with pytest.raises(InputError, match="workers must be a positive int"):
        sf.folding_pairs(net, x, i, j, workers=bad)
    with pytest.raises(InputError, match="workers must be a positive int"):
        sf.global_folding(net, x, y, max_pairs=10, workers=bad)


@pytest.mark.parametrize("bad", [2.0, "2", True])
def test_workers_not_an_int(setup, bad):
    net, x, _, i, j = setup
    with pytest.raises(InputTypeError, match="workers must be a positive int or None"):
        sf.folding_pairs(net, x, i, j, workers=bad)


def test_default_workers_every_core_but_not_for_few_paths(monkeypatch):
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    cores = len(os.sched_getaffinity(0))
    assert parallel.resolve_workers(None) == cores
    assert parallel.resolve_workers(None, 10) == 1  # a pool would cost more than it saves
    assert parallel.resolve_workers(None, cores * parallel.AUTO_MIN_PATHS) == cores
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(2 * cores))  # ranks sharing this machine
    assert parallel.resolve_workers(None) == 1


@given(n=st.integers(0, 10_000), size=st.integers(1, 64))
@settings(max_examples=200, deadline=None)
def test_shards_cover_the_paths_in_order(n, size):
    shards = [parallel.shard(n, r, size) for r in range(size)]
    assert shards[0][0] == 0 and shards[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(shards, shards[1:]))  # contiguous, in rank order
    lengths = [b - a for a, b in shards]
    assert max(lengths) - min(lengths) <= 1 and sum(lengths) == n


def test_chunk_size_from_the_memory_budget(setup, monkeypatch):
    net, x, _, i, j = setup
    rec = PatternRecorder(net)
    with rec:
        net(x[:1])
    layout = rec.layout()
    opts = WalkOptions.check(
        method="uniform",
        steps=100,
        tol=None,
        tie_tol=0.0,
        layers=None,
        n0=None,
        stop="strict",
        batch_size=None,
        dtype=None,
    )
    # a uniform walk holds 101 points of 16 inputs and 2 x 24 activations, 4 bytes each: 25856 bytes
    assert chunk_size(opts, layout, x[:1], memory=25856 * 1000) == 1000
    # a sampled walk's chunk is all in memory at once: a budget smaller than one segment walks one at a time
    assert chunk_size(opts, layout, x[:1], memory=1) == 1
    exact = dataclasses.replace(opts, method="exact")
    assert chunk_size(exact, layout, x[:1], memory=1) == 256  # the exact walk holds itself to the budget
    assert chunk_size(opts, layout, x[:1], memory=1 << 50) == MAX_CHUNK
    monkeypatch.setenv("SPACEFOLD_MEMORY", str(25856 * 3000))
    assert memory_budget() == 25856 * 3000 and chunk_size(opts, layout, x[:1]) == 3000
    monkeypatch.setenv("SPACEFOLD_MEMORY", "lots")
    with pytest.raises(InputError, match="SPACEFOLD_MEMORY must be a positive number of bytes"):
        sf.folding_pairs(net, x, i, j)
    monkeypatch.delenv("SPACEFOLD_MEMORY")
    # the chunk size changes nothing but memory and speed
    assert _same(sf.folding_pairs(net, x, i, j, workers=1), sf.folding_pairs(net, x, i, j, batch_size=7, workers=1))


def test_cli_workers_refused(tmp_path, capsys):
    p = save_checkpoint(mlp("1x4", 64, 10), tmp_path / "m.pt")
    assert cli_main(["measure", "--model", str(p), "--data", "digits", "--workers", "0", "--json"]) == 2
    assert "--workers" in capsys.readouterr().err


def _env() -> dict:
    src = str(Path(sf.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}


def test_python_dash_m_spacefold():
    r = subprocess.run(
        [sys.executable, "-m", "spacefold", "measure", "--help"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert r.returncode == 0 and "--workers" in r.stdout


def test_torchrun_two_ranks_match_one_process(tmp_path):
    """Two gloo ranks started by torchrun's launcher give the JSON of one process; only rank 0 prints and writes."""
    p = save_checkpoint(mlp("2x8", 64, 10, seed=3), tmp_path / "m.pt")
    args = [
        "measure",
        "--model",
        str(p),
        "--data",
        "digits",
        "--max-pairs",
        "2001",
        "--per-layer",
        "--json",
        "--no-progress",
        "--workers",
        "1",
    ]
    one = subprocess.run(
        [sys.executable, "-m", "spacefold", *args],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
        cwd=tmp_path,
    )
    assert one.returncode == 0, one.stderr
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "spacefold",
            *args,
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
        cwd=tmp_path,
    )
    assert two.returncode == 0, two.stderr
    lines = two.stdout.strip().splitlines()
    assert len(lines) == 1  # rank 1 printed nothing
    a, b = json.loads(one.stdout), json.loads(lines[0])
    assert (a["world_size"], b["world_size"]) == (1, 2)
    assert a["n_paths"] == 2001  # not a multiple of the world size
    assert {k: v for k, v in a.items() if k not in TIMING} == {k: v for k, v in b.items() if k not in TIMING}
    written = json.loads((tmp_path / "out" / "measure.json").read_text())
    assert {k: v for k, v in written.items() if k not in TIMING} == {k: v for k, v in b.items() if k not in TIMING}


def test_walk_on_an_accelerator_stays_in_process():
    calls = []

    def task(a, b, tick):
        calls.append((a, b))
        return {"chi": torch.zeros(b - a)}

    out = parallel.map_ranges(task, 0, 10_000, 4, device=torch.device("meta"))
    assert calls == [(0, 10_000)] and len(out) == 1


# --------------------------------------------------------------------------- the main-script guard


def test_main_allows_workers_reads_the_guard(tmp_path, monkeypatch):
    import types

    from spacefold._core import parallel

    guarded = tmp_path / "guarded.py"
    guarded.write_text("import spacefold\n\ndef run():\n    pass\n\nif __name__ == '__main__':\n    run()\n")
    reversed_ = tmp_path / "reversed.py"
    reversed_.write_text("if '__main__' == __name__:\n    pass\n")
    nested = tmp_path / "nested.py"
    nested.write_text("def f():\n    if __name__ == '__main__':\n        pass\n")
    bare = tmp_path / "bare.py"
    bare.write_text("import spacefold\nx = 1\n")
    broken = tmp_path / "broken.py"
    broken.write_text("def (:\n")
    monkeypatch.setattr(parallel, "_GUARDED", {})
    cases = {guarded: True, reversed_: True, nested: False, bare: False, broken: False, tmp_path / "missing.py": False}
    for path, expected in cases.items():
        fake = types.ModuleType("__main__")
        fake.__file__ = str(path)
        monkeypatch.setitem(sys.modules, "__main__", fake)
        assert parallel.main_allows_workers() is expected, path.name
    fake = types.ModuleType("__main__")  # an interactive session or a notebook: no file
    monkeypatch.setitem(sys.modules, "__main__", fake)
    assert parallel.main_allows_workers() is True


def _run_python(args, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(sf.__file__).parent.parent), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)


def test_unguarded_script_walks_in_one_process_quietly(tmp_path):
    """A plain script (the README's examples pasted into a file) walks in this process, with no warning;
    asking it for workers is one clear error instead of workers that would run the script again."""
    if parallel.cpu_count() < 2:
        pytest.skip("one core: workers=None is one process anyway")
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import json, sys, torch, spacefold as sf\n"
        "from spacefold._core import parallel as P\n"
        "P.AUTO_MIN_PATHS = 10\n"
        "print('top level', file=sys.stderr)\n"
        "net = sf.mlp('2x4', 3, 2, seed=0)\n"
        "x = torch.randn(40, 3); y = torch.arange(40) % 2\n"
        "g = sf.global_folding(net, x, y)\n"
        "print(json.dumps({'workers': g.summary()['workers'], 'n': g.n_paths}))\n"
        "try:\n"
        "    sf.global_folding(net, x, y, workers=2)\n"
        "except sf.InputError as err:\n"
        "    print(err)\n"
    )
    out = _run_python([str(script)], tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert json.loads(lines[0]) == {"workers": 1, "n": 800}
    assert lines[1].startswith("workers=2 cannot be used here: worker processes import the main script")
    assert "pass workers=1" in lines[1] and len(lines) == 2
    assert out.stderr.strip() == "top level"  # no warning, and the script ran once


def test_script_from_standard_input_walks_in_one_process_and_says_why_not_workers(tmp_path):
    """A script piped to `python -` cannot be imported again by a worker, guard or not: workers=None walks
    here, quietly, and workers=2 is refused with advice that can be followed (not "add the guard")."""
    script = (
        "import sys, torch, spacefold as sf\n"
        "if __name__ == '__main__':\n"
        "    net = sf.mlp('2x4', 3, 2, seed=0)\n"
        "    x = torch.randn(40, 3); y = torch.arange(40) % 2\n"
        "    print(sf.global_folding(net, x, y).summary()['workers'])\n"
        "    try:\n"
        "        sf.global_folding(net, x, y, workers=2)\n"
        "    except sf.InputError as err:\n"
        "        print(err)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(sf.__file__).parent.parent), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-"], input=script, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "1" and len(lines) == 2
    assert "<stdin> is not a file they can read" in lines[1] and "pass workers=1" in lines[1]
    assert "Warning" not in out.stderr


def test_guarded_script_gets_workers(tmp_path):
    if parallel.cpu_count() < 2:
        pytest.skip("one core: workers=None is one process anyway")
    script = tmp_path / "guarded.py"
    script.write_text(
        "import json, torch, spacefold as sf\n"
        "from spacefold._core import parallel as P\n"
        "P.AUTO_MIN_PATHS = 10\n"
        "if __name__ == '__main__':\n"
        "    net = sf.mlp('2x4', 3, 2, seed=0)\n"
        "    x = torch.randn(40, 3); y = torch.arange(40) % 2\n"
        "    g, one = sf.global_folding(net, x, y), sf.global_folding(net, x, y, workers=1)\n"
        "    print(json.dumps({'workers': g.summary()['workers'], 'same': bool(torch.equal(g.chi, one.chi))}))\n"
    )
    out = _run_python([str(script)], tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"workers": 2, "same": True}
    assert "Warning" not in out.stderr


NOTEBOOK_MODEL = """
import json, torch, spacefold as sf
from spacefold._core import parallel as P
P.AUTO_MIN_PATHS = 10
class Net(torch.nn.Module):  # defined in the session itself, as in a notebook: a worker cannot import it
    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Linear(3, 8), torch.nn.Linear(8, 2)
    def forward(self, x):
        return self.b(torch.relu(self.a(x)))
torch.manual_seed(0)
net = Net()
x = torch.randn(60, 3); y = torch.arange(60) % 2
g, one = sf.global_folding(net, x, y, max_pairs=3000, seed=0), sf.global_folding(net, x, y, workers=1,
                                                                                   max_pairs=3000, seed=0)
res = {"n": g.n_paths, "same": bool(torch.equal(g.chi, one.chi))}
try:
    sf.global_folding(net, x, y, workers=2, max_pairs=3000, seed=0)
except sf.InputError as err:
    res["error"] = str(err)
print(json.dumps(res))
"""


def test_session_model_stays_in_process(tmp_path):
    """In a notebook or `python -c` (no main script), a model whose class lives there cannot be rebuilt by a
    worker: the default walks in this process quietly, an explicit workers=2 says why it cannot."""
    if parallel.cpu_count() < 2:
        pytest.skip("one core: workers=None is one process anyway")
    out = _run_python(["-c", NOTEBOOK_MODEL], tmp_path)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["n"] == 1800 and res["same"]
    assert res["error"] == (
        "workers=2 cannot be used here: worker processes cannot import Net, defined in this "
        "notebook or session (module __main__); define it in a module, or pass workers=1"
    )
    assert out.stderr == ""


def test_main_names_needed(monkeypatch):
    import types

    class Local(torch.nn.Module):
        def forward(self, x):
            return x

    Local.__module__ = "__main__"
    session = types.ModuleType("__main__")  # a notebook: no file
    monkeypatch.setitem(sys.modules, "__main__", session)
    assert parallel.main_names_needed({"m": Local(), "x": torch.ones(3)}) == ["test_main_names_needed.<locals>.Local"]
    assert parallel.main_names_needed(mlp("2x4", 3, 2, seed=0)) == []
    script = types.ModuleType("__main__")
    script.__file__ = "run.py"  # a script: workers import it again, its classes come with it
    monkeypatch.setitem(sys.modules, "__main__", script)
    assert parallel.main_names_needed(Local()) == []


@pytest.mark.parametrize("method", ["exact", "uniform"])
def test_folding_batch_workers_bit_for_bit(setup, method):
    net, x, _, i, j = setup
    one = sf.folding_batch(net, x[i], x[j], method=method, steps=20, workers=1, per_layer=True)
    two = sf.folding_batch(net, x[i], x[j], method=method, steps=20, workers=2, per_layer=True, batch_size=100)
    assert _same(one, two)
    assert all(torch.equal(one.per_layer[k], two.per_layer[k]) for k in one.per_layer)
    with pytest.raises(InputError, match="workers must be a positive int"):
        sf.folding_batch(net, x[i], x[j], workers=0)


@pytest.mark.parametrize("room", [True, False])
def test_workers_receive_the_first_layer_values_not_the_inputs(monkeypatch, room):
    """With the exact walk a worker gets the values before the first activation (12 numbers per
    input here, in the model's dtype and in float64 with the input's norm for the MLP kernels), never the
    inputs (784 numbers each): the task it receives is a fraction of their size. The MLP kernels' values of
    paired segments lie in shared memory where it has room, and each range sends handles to its rows (a few
    hundred bytes); without room they are copied into the range's pickle."""
    import os
    import pickle
    from types import SimpleNamespace

    net = mlp("2x12", 784, 10, seed=0).eval()
    x = torch.rand(2000, 784, generator=torch.Generator().manual_seed(0))
    i, j = torch.arange(2000).repeat(2), torch.arange(2000).flip(0).repeat(2)
    sizes: dict[str, list[int]] = {"pairs": [], "batch": [], "handles": []}
    call = ["pairs"]

    class Spy:  # the pickles sent to the workers: the base task, and each range's values or pairs
        HIGHEST_PROTOCOL = pickle.HIGHEST_PROTOCOL
        loads = staticmethod(pickle.loads)

        @staticmethod
        def dumps(obj, protocol=None):
            blob = pickle.dumps(obj, protocol=protocol)
            sizes[call[0]].append(len(blob))
            return blob

    real_dumps = parallel.ForkingPickler.dumps

    class HandleSpy:  # the ranges whose values are in shared memory
        @staticmethod
        def dumps(obj, protocol=None):
            blob = real_dumps(obj, protocol=protocol)
            sizes["handles"].append(len(blob))
            return blob

    if parallel.cpu_count() < 2:
        pytest.skip("one core: the walks stay in this process")
    if room and parallel.shared_empty((1,), torch.float64) is None:
        pytest.skip("no shared memory with room here")
    if not room:  # a shared-memory file system that is full
        real = os.statvfs
        monkeypatch.setattr(
            os, "statvfs", lambda path: SimpleNamespace(f_bavail=0, f_frsize=4096) if path == "/dev/shm" else real(path)
        )
    parallel._pool_starting(2).result()  # the pool running: the workers take the ranges after the first paths
    monkeypatch.setattr(parallel, "pickle", Spy)
    monkeypatch.setattr(parallel, "ForkingPickler", HandleSpy)
    pairs = sf.folding_pairs(net, x, i, j, workers=2, batch_size=500)
    call[0] = "batch"
    batch = sf.folding_batch(net, x[i], x[j], workers=2, batch_size=500)
    # x alone is 6.3 MB; x[i] and x[j] 25 MB
    # index pairs: the values of every sample once (the base task), then each range's pairs alone
    assert len(sizes["pairs"]) >= 2 and sizes["pairs"][0] < x.numel() * 4 / 10
    assert sum(sizes["pairs"][1:]) < 16 * i.numel() + 2000 * len(sizes["pairs"])
    if room:  # the base task, then handles: no values travel through the pipe
        assert len(sizes["batch"]) == 1 and sizes["batch"][0] < x.numel() * 4 / 10
        assert len(sizes["handles"]) >= 1 and max(sizes["handles"]) < 4000
    else:
        assert sizes["handles"] == []
        assert len(sizes["batch"]) >= 2 and sum(sizes["batch"]) < 2 * x[i].numel() * 4 / 10
        assert sum(sizes["batch"][1:]) > 8 * 14 * (i.numel() - 1000)  # every range's values, copied
    assert torch.equal(pairs.chi, batch.chi)
    assert torch.equal(pairs.chi, sf.folding_pairs(net, x, i, j, workers=1).chi)
    for k in ("r1", "r2", "n_regions", "max_profile"):
        assert torch.equal(getattr(pairs, k), getattr(batch, k)), k
    # after the call the workers hold no range's values (views of shared memory would keep all of it alive)
    held = "(__import__('time').sleep(0.3), __import__('spacefold._core.parallel', fromlist=['_']).{})[1]"
    task_of = held.format("_TASK[1]")
    assert parallel._POOL["pool"].map(eval, [task_of + ".fast_cache is None"] * 2, chunksize=1) == [True, True]
    assert parallel._POOL["pool"].map(eval, [task_of + ".walker.fast_cache is None"] * 2, chunksize=1) == [True] * 2


def test_kernels_prepared_once_before_the_walk_with_a_line_when_compiling_is_slow(monkeypatch):
    """The pipeline compiles (or loads) the kernels for the model's dtype and float64 before any worker
    starts; where that takes longer than _ANNOUNCE_AFTER the progress line says so, and the time it took."""
    import time

    import numpy as np

    from spacefold._core.walk import _kernels

    if not _kernels.available(np.float32):
        pytest.skip("the compiled kernels are off here")
    real = _kernels.available
    asked: list = []

    def slow(dtype=None):  # as compiling: slower than the announcement's delay
        asked.append(None if dtype is None else np.dtype(dtype))
        time.sleep(0.3)
        return real(dtype)

    said: list[str] = []
    monkeypatch.setattr(_kernels, "_ANNOUNCE_AFTER", 0.05)
    monkeypatch.setattr(_kernels, "available", slow)
    monkeypatch.setitem(_kernels._STATE, "prepared", set())
    monkeypatch.setattr(parallel, "say", said.append)
    net = mlp("2x8", 16, 4, seed=0).eval()
    x = torch.randn(40, 16, generator=torch.Generator().manual_seed(0))
    one = sf.folding_batch(net, x[:20], x[20:], workers=1, progress=True)
    assert np.dtype(np.float32) in asked and np.dtype(np.float64) in asked
    assert (
        len(said) == 2
        and said[0].startswith("compiling the exact walk's kernels")
        and said[1].startswith("compiled in")
    )
    assert _kernels._STATE["prepared"] == {np.dtype(np.float32), np.dtype(np.float64)}
    two = sf.folding_batch(net, x[:20], x[20:], workers=1, progress=True)  # prepared: nothing compiled, said
    assert len(said) == 2
    assert torch.equal(one.chi, two.chi)
    sf.folding_batch(net.double(), x[:20].double(), x[20:].double(), workers=1)  # no progress: nothing said
    assert len(said) == 2


@pytest.mark.parametrize("arch", ["3x8", "2x80"])  # the MLP kernels, and the layer walk (wider than they take)
def test_a_worker_builds_its_walker_once_per_call_and_takes_each_range_values(monkeypatch, arch):
    """Paired segments travel to a worker as the call's base task (no inputs, no values) with each range's values
    apart: the worker unpickles the base once per call, builds its walker once, and takes each range's values;
    the numbers are those of one process. Run here through a pool that calls ``_run`` in this process."""
    import pickle
    from concurrent.futures import Future

    from spacefold._core import pipeline

    net = mlp(arch, 64, 4, seed=1).eval()  # (inputs larger than the values before the first activation)
    g = torch.Generator().manual_seed(3)
    x1, x2 = torch.randn(3000, 64, generator=g), torch.randn(3000, 64, generator=g)
    one = sf.folding_batch(net, x1, x2, workers=1)
    built: list[bool] = []
    make = pipeline._RangeTask.make_walker

    def counted(self, *args, **kwargs):
        built.append(kwargs.get("defer", False))
        return make(self, *args, **kwargs)

    jobs: list[tuple] = []

    class InProcess:  # one worker: the jobs in order, through the worker's own entry point
        def imap_unordered(self, fn, it):
            for job in it:
                jobs.append(job)
                yield fn(job)

    def started(workers):
        ready: Future = Future()
        ready.set_result(InProcess())
        return ready

    monkeypatch.setattr(pipeline._RangeTask, "make_walker", counted)
    monkeypatch.setattr(parallel, "_pool_starting", started)
    monkeypatch.setattr(parallel, "cpu_count", lambda: 2)
    monkeypatch.setattr(parallel, "_TASK", None)
    two = sf.folding_batch(net, x1, x2, workers=2, batch_size=256)
    assert _same(one, two)
    assert len(jobs) >= 2 and all(job[4] is not None for job in jobs)  # every range with its values
    assert len({(job[0], job[1]) for job in jobs}) == 1  # one base task for the whole call
    assert built == [True, False]  # the caller's walker, then the worker's, once
    base = pickle.loads(jobs[0][1])
    assert base.segments.pair is None and base.cache is None and base.fast_cache is None
    assert len(jobs[0][1]) < x1.numel() * 4 / 4  # far smaller than the inputs


def test_results_travel_with_int64_narrowed_where_their_values_fit():
    """A worker's int64 results whose values fit in int32 travel as int32 and come back as the same int64 values;
    others, and every other dtype, travel as they are."""
    import pickle

    fits = torch.arange(-5000, 5000, dtype=torch.int64)
    wide = fits.clone()
    wide[7] = 1 << 40
    out = {"r1": fits, "big": wide, "chi": fits.double() / 7, "few": torch.tensor([1 << 40, 2])}
    sent = parallel._to_numpy(out)
    assert isinstance(sent["r1"], parallel._Narrow) and sent["r1"].values.dtype.itemsize == 4
    assert not isinstance(sent["big"], parallel._Narrow)
    back = parallel._to_torch(pickle.loads(pickle.dumps(sent)))
    for k, v in out.items():
        assert back[k].dtype == v.dtype and torch.equal(back[k], v), k
    assert len(pickle.dumps(sent["r1"])) < 0.6 * len(pickle.dumps(fits.numpy()))


@pytest.mark.parametrize("room", [True, False])
def test_large_results_travel_through_shared_memory(monkeypatch, room):
    """A worker's results of at least _SHARED_RESULT_BYTES go back as handles to shared memory where it has room (the
    same values, int64 narrowed as before); smaller ones, and all of them without room, as their bytes."""
    import os
    import pickle
    from multiprocessing.reduction import ForkingPickler
    from types import SimpleNamespace

    if room and parallel.shared_empty((1,), torch.float64) is None:
        pytest.skip("no shared memory with room here")
    if not room:
        real = os.statvfs
        monkeypatch.setattr(
            os, "statvfs", lambda path: SimpleNamespace(f_bavail=0, f_frsize=4096) if path == "/dev/shm" else real(path)
        )
    n = parallel._SHARED_RESULT_BYTES // 4 + 1  # int32 values: just over the threshold
    out = {"chi": torch.rand(n, dtype=torch.float64), "r1": torch.arange(n), "few": torch.arange(10.0)}
    sent = parallel._to_numpy(out, shared=True)
    assert isinstance(sent["few"], np.ndarray)
    if room:
        assert isinstance(sent["chi"], torch.Tensor) and sent["chi"].is_shared()
        assert isinstance(sent["r1"], parallel._Narrow) and sent["r1"].values.dtype == torch.int32
        assert len(ForkingPickler.dumps(sent)) < 10_000  # handles, not values
    else:
        assert isinstance(sent["chi"], np.ndarray) and isinstance(sent["r1"].values, np.ndarray)
    back = parallel._to_torch(pickle.loads(ForkingPickler.dumps(sent)))
    for k, v in out.items():
        assert back[k].dtype == v.dtype and torch.equal(back[k], v), k
    assert isinstance(parallel._to_numpy(out)["chi"], np.ndarray)  # (not shared unless asked: torch.distributed)
    if room and parallel.cpu_count() >= 2:  # from a worker process, through the pool's pipe
        pool = parallel._pool_starting(2).result()
        expr = "__import__('spacefold._core.parallel', fromlist=['_'])._to_numpy(__import__('torch').ones({}), True)"
        got = pool.apply(eval, (expr.format(n),))
        assert isinstance(got, torch.Tensor) and got.is_shared() and torch.equal(got, torch.ones(n))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**9), st.integers(0, 3 * 10**8), st.integers(1, 16), st.integers(1, 5000))
def test_guided_ranges_cover_the_call_and_shrink_to_the_tail(start, n, workers, min_size):
    """The workers' ranges: contiguous, covering [start, start + n), none above half a worker's share of what is
    left (or the floor), none below the floor but the whole or the last, at most a few dozen."""
    ranges = parallel._guided(start, start + n, workers, min_size)
    if n == 0:
        assert ranges == []
        return
    assert ranges[0][0] == start and ranges[-1][1] == start + n
    assert all(a < b for a, b in ranges) and all(ranges[k][1] == ranges[k + 1][0] for k in range(len(ranges) - 1))
    floor = max(min_size, min(parallel._TAIL_RANGE, -(-n // (2 * workers))))
    for a, b in ranges[:-1]:
        assert floor <= b - a <= max(floor, -(-(start + n - a) // (2 * workers)))
    assert len(ranges) <= 8 * workers * (1 + math.ceil(math.log2(max(n / floor, 2)))) + 1


def test_an_interrupted_call_leaves_no_shared_memory_behind(monkeypatch):
    """A call stopped while ranges of shared first-layer values wait for a worker (an interrupt as the first result
    arrives) closes what it had sent: no handle left with the process's resource sharer, no file descriptor more
    than before; the next call starts new workers and gives the same numbers."""
    import gc
    from multiprocessing import resource_sharer

    if parallel.cpu_count() < 2 or parallel.shared_empty((1,), torch.float64) is None:
        pytest.skip("needs two cores and shared memory with room")
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("no /proc here to count file descriptors")
    net = mlp("2x12", 784, 10, seed=0).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4000, 784, generator=g)
    i, j = torch.randint(4000, (40_000,), generator=g), torch.randint(4000, (40_000,), generator=g)
    x1, x2 = x[i], x[j]
    one = sf.folding_batch(net, x1, x2, workers=1)
    parallel._pool_starting(2).result()  # the pool running: the workers take the ranges after the first paths
    sf.folding_batch(net, x1, x2, workers=2)
    fds = len(os.listdir("/proc/self/fd"))

    def interrupt(obj, private=False):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(parallel, "_to_torch", interrupt)
        with pytest.raises(KeyboardInterrupt) as caught:
            sf.folding_batch(net, x1, x2, workers=2)
    del caught  # (its traceback holds the call's values)
    gc.collect()
    assert not getattr(getattr(resource_sharer, "_resource_sharer", None), "_cache", {})
    assert len(os.listdir("/proc/self/fd")) <= fds
    again = sf.folding_batch(net, x1, x2, workers=2)
    assert _same(one, again)


def test_ranges_sent_ahead_of_their_results_are_bounded(monkeypatch):
    """At most workers + 2 ranges are sent before a result comes back (each holds file descriptors of shared memory
    until a worker takes it); results come in any order and are put back in the order of the ranges."""
    import threading
    import time
    from concurrent.futures import Future

    workers = 2
    pulled: list = []

    class Slow:  # a pool whose feeding thread takes jobs as fast as the call gives them; results in reverse order
        def imap_unordered(self, fn, it):
            feeder = threading.Thread(target=lambda: pulled.extend(it), daemon=True)
            feeder.start()
            deadline = time.monotonic() + 10
            while len(pulled) < workers + 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.2)
            assert len(pulled) == workers + 2  # the call waits for a result before sending more
            k = 0
            while feeder.is_alive():  # in order while the call sends more, then the rest from the last
                if k < len(pulled):
                    k += 1
                    yield fn(pulled[k - 1])
                else:
                    time.sleep(0.01)
            for job in reversed(pulled[k:]):
                yield fn(job)

    def started(n):
        ready: Future = Future()
        ready.set_result(Slow())
        return ready

    monkeypatch.setattr(parallel, "_pool_starting", started)
    monkeypatch.setattr(parallel, "cpu_count", lambda: workers)
    monkeypatch.setattr(parallel, "_TASK", None)
    net = mlp("2x12", 784, 10, seed=0).eval()
    g = torch.Generator().manual_seed(1)
    x1, x2 = torch.rand(3000, 784, generator=g), torch.rand(3000, 784, generator=g)
    monkeypatch.setattr(parallel, "_TAIL_RANGE", 256)  # many ranges: more than are sent ahead
    two = sf.folding_batch(net, x1, x2, workers=workers, batch_size=256)
    assert len(pulled) > workers + 2
    assert _same(sf.folding_batch(net, x1, x2, workers=1), two)
