"""The current tree against any commit on the standard cases, in one run: speed ratios and equal results.

    python benchmarks/bench_regression.py BASE [--rounds 5] [--cases mlp,regioncam,cnn,cnn64,resnet64]

``BASE`` is any commit (``6bb428a``, ``HEAD~3``, a branch); its ``src`` is unpacked with
``git archive`` into a temporary folder. The current tree is this checkout's ``src`` as it is on
disk (uncommitted changes included). Each tree runs in its own worker process (``PYTHONPATH`` set
to its ``src``, one torch thread), started and warmed up (tracing; the Numba kernels loaded from
the cache that a first process of the same tree filled) before anything is timed. The rounds then
time each case in one tree and then the other, alternating which goes first (A B, B A, A B, ...),
so that the load of a shared machine falls on both alike. The ratio of a round is the base's
seconds over the current tree's (above 1: the current tree is faster); the table gives the median
over rounds with the lowest and highest.

The cases (the same inputs and weights for both trees, made once by the current tree and handed
to both workers as tensors, so only the walk differs):

- ``mlp``: the protocol sample of ``bench_protocol.py``: a 784-12x5-10 ReLU MLP (random weights,
  ``spacefold.models.mlp`` seed 0) on the MNIST test images, ``folding_pairs(x, i, j)`` over
  every pair of the first ``--anchors`` test images with the first ``--images`` (one process,
  one thread, ``batch_size=1 << 17``);
- ``regioncam``: ``bench_regioncam.py``'s case: the 784-256x6-10 random MLP (seed 0) on
  ``--rc-paths`` random pairs of MNIST test images (seed 0), ``folding_batch`` in one call; the
  regioncam package is timed in the same round (in this process) and its region counts are
  compared too; skipped, with the reason, where regioncam is not installed;
- ``cnn``: ``bench_cnn.py``'s VGG-style CIFAR-size CNN (seed 0) on ``--cnn-paths`` segments
  between its seeded Gaussian inputs, ``walk_batch`` in one call;
- ``cnn64``: the same in float64 (net and inputs);
- ``resnet64``: ``bench_resnet.py``'s ResNet-18 at 32x32 (``spacefold.models.resnet.ResNet``, the tree's own,
  seed 0) in float64 on its first ``--resnet-paths`` segments, one ``walk_batch`` call per segment as there;
- ``bisect``, ``certified``: a 784-20x3-10 GELU MLP (the Linear layers of ``spacefold.models.mlp`` seed 0) on
  ``--gelu-paths`` random pairs of MNIST test images (seed 0), ``folding_batch`` in one call by that method;
  not in the default cases (a segment takes minutes).

Results: each tree's χ (where the case has one) and regions per path are compared path by path;
the table says ``same`` or how many paths differ. Needs MNIST (``$SPACEFOLD_MNIST`` or
``$SPACEFOLD_DATA``) for the two MLP cases. Only the public API is called in the workers
(``folding_pairs``, ``folding_batch``, ``walk_batch``), so any commit that has it can be the base.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


# --------------------------------------------------------------------------- the worker (one per tree)


def _worker(data_file: str) -> None:
    """Answer one JSON line per case name read from stdin: ``{"seconds": ..., "result": path}``."""
    import torch
    from _nets import vgg_layers  # torch only: the same layers whatever tree is timed
    from torch import nn

    import spacefold as sf

    out = os.fdopen(os.dup(1), "w", buffering=1)  # the answers; anything the library prints goes to stderr
    os.dup2(2, 1)
    torch.set_num_threads(1)
    data = torch.load(data_file, weights_only=True)
    tag = os.environ["BENCH_REGRESSION_TAG"]

    def mlp(layers, act=nn.ReLU):
        mods: list[nn.Module] = []
        for k, (w, b) in enumerate(layers):
            lin = nn.Linear(w.shape[1], w.shape[0])
            with torch.no_grad():
                lin.weight.copy_(w)
                lin.bias.copy_(b)
            mods += [lin] if k == len(layers) - 1 else [lin, act()]
        return nn.Sequential(*mods).eval()

    def one_process(fn, **kw):  # workers=1 where the tree's entry point has the option
        return {"workers": 1, **kw} if "workers" in inspect.signature(fn).parameters else kw

    def run_mlp(warm: bool):
        d = data["mlp"]
        i, j = (d["i"][:1000], d["j"][:1000]) if warm else (d["i"], d["j"])
        f = sf.folding_pairs(
            nets["mlp"], d["x"], i, j, method="exact", **one_process(sf.folding_pairs, batch_size=1 << 17)
        )
        return {"chi": f.chi, "n_regions": f.n_regions}

    def run_rc(warm: bool):
        d = data["regioncam"]
        x1, x2 = (d["x1"][:20], d["x2"][:20]) if warm else (d["x1"], d["x2"])
        f = sf.folding_batch(
            nets["regioncam"], x1, x2, method="exact", **one_process(sf.folding_batch, batch_size=x1.shape[0])
        )
        return {"chi": f.chi, "n_regions": f.n_regions}

    def run_cnn(warm: bool, case: str = "cnn", one_by_one: bool = False):
        d = data[case]
        x1, x2 = d["x1"], d["x2"]
        if warm:  # a short segment: compiles the kernels, traces the net
            x1, x2 = x1[:1], x1[:1] + 1e-3 * (x2[:1] - x1[:1])
        with warnings.catch_warnings():  # the top-level name, deprecated in later trees but kept working
            warnings.simplefilter("ignore", DeprecationWarning)
            if one_by_one:
                counts = [sf.walk_batch(nets[case], x1[k : k + 1], x2[k : k + 1]).n_regions for k in range(len(x1))]
                return {"n_regions": torch.cat(counts)}
            w = sf.walk_batch(nets[case], x1, x2)
        return {"n_regions": w.n_regions}

    def run_sampled(warm: bool, method: str):  # the GELU MLP's walk by bisection or the certified walk
        d = data[method]
        x1, x2 = (d["x1"][:2], d["x2"][:2]) if warm else (d["x1"], d["x2"])
        f = sf.folding_batch(nets[method], x1, x2, method=method, **one_process(sf.folding_batch))
        return {"chi": f.chi, "n_regions": f.n_regions}

    nets = {}
    for case in ("bisect", "certified"):
        if case in data:
            nets[case] = mlp(data[case]["layers"], nn.GELU)
    if "mlp" in data:
        nets["mlp"] = mlp(data["mlp"]["layers"])
    if "regioncam" in data:
        nets["regioncam"] = mlp(data["regioncam"]["layers"])
    for case in ("cnn", "cnn64"):
        if case in data:
            nets[case] = vgg_layers().to(data[case]["x1"].dtype)
            nets[case].load_state_dict(data[case]["state"])
            nets[case].eval()
    if "resnet64" in data:
        from spacefold.models.resnet import ResNet

        nets["resnet64"] = ResNet(num_classes=10).double()
        nets["resnet64"].load_state_dict(data["resnet64"]["state"])
        nets["resnet64"].eval()
    runs = {
        "mlp": run_mlp,
        "regioncam": run_rc,
        "cnn": run_cnn,
        "cnn64": lambda warm: run_cnn(warm, "cnn64"),
        "resnet64": lambda warm: run_cnn(warm, "resnet64", one_by_one=True),
        "bisect": lambda warm: run_sampled(warm, "bisect"),
        "certified": lambda warm: run_sampled(warm, "certified"),
    }
    for line in sys.stdin:
        case = line.strip()
        if not case:
            continue
        try:
            if case == "warm":
                for name in nets:
                    runs[name](True)
                out.write(json.dumps({"ok": True, "spacefold": sf.__file__}) + "\n")
                continue
            t0 = time.perf_counter()
            res = runs[case](False)
            dt = time.perf_counter() - t0
            path = f"{data_file}.{tag}.{case}.pt"
            torch.save({k: v.detach().cpu() for k, v in res.items()}, path)
            out.write(json.dumps({"seconds": dt, "result": path}) + "\n")
        except Exception as err:  # noqa: BLE001 - reported in the table, the other cases go on
            out.write(json.dumps({"error": f"{type(err).__name__}: {err}"}) + "\n")


# --------------------------------------------------------------------------- the driver


class Tree:
    """A worker process running one tree's ``src``."""

    def __init__(self, name: str, src: Path, data_file: str):
        env = dict(os.environ, PYTHONPATH=str(src), OMP_NUM_THREADS="1", BENCH_REGRESSION_TAG=name)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", data_file]
        # a first process fills the tree's Numba cache (a process that compiled the kernels walked
        # up to 1.5x slower for a while afterwards than one that loaded them); the timed one loads it
        subprocess.run(
            cmd, input="warm\n", stdout=subprocess.DEVNULL, text=True, env=env, cwd=tempfile.gettempdir(), check=True
        )
        self.name = name
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=tempfile.gettempdir()
        )

    def ask(self, case: str) -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(case + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"the worker of the {self.name} tree ended (its error is above)")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _cases(args, skipped: dict) -> dict:
    """The inputs and weights of every case, made by the current tree."""
    sys.path[:0] = [str(ROOT / "src"), str(HERE)]
    import torch

    data: dict = {}
    names = args.cases.split(",")
    if {"mlp", "regioncam", "bisect", "certified"} & set(names):
        from _common import load_mnist, random_mlp

        x, _ = load_mnist("test")

        def layers(net):
            return [
                (m.weight.detach().clone(), m.bias.detach().clone())
                for m in net.modules()
                if isinstance(m, torch.nn.Linear)
            ]

        if "mlp" in names:
            n, k = min(args.images, x.shape[0]), args.anchors
            data["mlp"] = {
                "layers": layers(random_mlp([12] * 5, seed=0)),
                "x": x[:n].clone(),
                "i": torch.arange(k).repeat_interleave(n),
                "j": torch.arange(n).repeat(k),
            }
        if "bisect" in names or "certified" in names:
            g = torch.Generator().manual_seed(0)
            i = torch.randint(0, x.shape[0], (args.gelu_paths,), generator=g)
            j = torch.randint(0, x.shape[0], (args.gelu_paths,), generator=g)
            net = random_mlp([20] * 3, seed=0)  # its Linear layers; the workers put GELU between them
            gelu = {"layers": layers(net), "x1": x[i].clone(), "x2": x[j].clone()}
            for case in ("bisect", "certified"):
                if case in names:
                    data[case] = gelu
        if "regioncam" in names:
            try:
                import regioncam  # noqa: F401
            except ImportError:
                skipped["regioncam"] = "regioncam is not installed (pip install regioncam)"
            else:
                g = torch.Generator().manual_seed(0)
                i = torch.randint(0, x.shape[0], (args.rc_paths,), generator=g)
                j = torch.randint(0, x.shape[0], (args.rc_paths,), generator=g)
                net = random_mlp([256] * 6, seed=0)
                data["regioncam"] = {"layers": layers(net), "x1": x[i].clone(), "x2": x[j].clone()}
    for case, dtype in (("cnn", torch.float32), ("cnn64", torch.float64)):
        if case in names:
            from bench_cnn import vgg_cnn

            net = vgg_cnn(0).to(dtype)
            g = torch.Generator().manual_seed(2)
            x = torch.randn(2 * args.cnn_paths, 3, 32, 32, generator=g).to(dtype)
            data[case] = {"state": net.state_dict(), "x1": x[0::2].clone(), "x2": x[1::2].clone()}
    if "resnet64" in names:
        from spacefold.models.resnet import ResNet, randomize_batchnorm

        torch.manual_seed(0)  # as bench_resnet.py builds it (seed 0), its inputs (seed 2)
        net = randomize_batchnorm(ResNet(num_classes=10), 1).double()
        g = torch.Generator().manual_seed(2)
        x = torch.randn(2 * args.resnet_paths, 3, 32, 32, generator=g).double()
        data["resnet64"] = {"state": net.state_dict(), "x1": x[0::2].clone(), "x2": x[1::2].clone()}
    return data


def _compare(a: dict, b: dict) -> str:
    import torch

    r = (a["n_regions"] != b["n_regions"]).sum().item()
    msg = "same" if r == 0 else f"regions differ on {r}/{a['n_regions'].numel()} paths"
    if "chi" in a:
        c = (a["chi"] != b["chi"]) & ~(torch.isnan(a["chi"]) & torch.isnan(b["chi"]))
        if int(c.sum()):
            d = (a["chi"].double() - b["chi"].double()).abs().max().item()
            msg += f"; chi differs on {int(c.sum())} (max {d:.2e})"
        elif r == 0:
            msg = "same regions and chi"
    return msg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base", help="the commit to compare against (anything git rev-parse takes)")
    ap.add_argument(
        "--cases", default="mlp,regioncam,cnn", help="comma separated: mlp, regioncam, cnn, cnn64, resnet64"
    )
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--anchors", type=int, default=10, help="mlp: starts among the first ANCHORS test images")
    ap.add_argument("--images", type=int, default=10_000, help="mlp: ends among the first IMAGES test images")
    ap.add_argument("--rc-paths", type=int, default=200, help="regioncam: segments")
    ap.add_argument("--cnn-paths", type=int, default=2, help="cnn, cnn64: segments")
    ap.add_argument("--resnet-paths", type=int, default=1, help="resnet64: segments")
    ap.add_argument("--gelu-paths", type=int, default=50, help="bisect, certified: segments")
    args = ap.parse_args()
    known = ("mlp", "regioncam", "cnn", "cnn64", "resnet64", "bisect", "certified")
    unknown = set(args.cases.split(",")) - set(known)
    if unknown:
        ap.error(f"--cases: expected names among {', '.join(known)}, got {', '.join(sorted(unknown))}")
    base = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", args.base + "^{commit}"], capture_output=True, text=True
    )
    if base.returncode != 0:
        ap.error(f"BASE: expected a commit of this repository, got {args.base!r}")
    sha = base.stdout.strip()
    skipped: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-regression-") as tmp:
        subprocess.run(f"git -C {ROOT} archive {sha} src | tar -x -C {tmp}", shell=True, check=True)
        import torch

        data = _cases(args, skipped)
        data_file = str(Path(tmp) / "cases.pt")
        torch.save(data, data_file)
        from _common import load_condition

        print(f"# current tree ({ROOT}, as on disk) against {sha}; {args.rounds} rounds, one thread each")
        print(f"# {load_condition()} at the start")
        trees = [Tree(sha, Path(tmp) / "src", data_file), Tree("current", ROOT / "src", data_file)]
        try:
            for t in trees:
                t0 = time.perf_counter()
                ans = t.ask("warm")
                print(f"# {t.name}: {ans.get('spacefold', ans)} (warm-up {time.perf_counter() - t0:.1f} s)")
            times = {c: {t.name: [] for t in trees} for c in data}
            errors: dict = {}
            results: dict = {}
            rc_times: list[float] = []
            rc_counts = None
            for r in range(args.rounds):
                for case in data:
                    for t in trees if r % 2 == 0 else trees[::-1]:
                        ans = t.ask(case)
                        if "error" in ans:
                            errors[(case, t.name)] = ans["error"]
                            continue
                        times[case][t.name].append(ans["seconds"])
                        if r == 0:
                            results[(case, t.name)] = torch.load(ans["result"], weights_only=True)
                    if case == "regioncam":
                        from bench_regioncam import regioncam_counts

                        torch.set_num_threads(1)
                        net = torch.nn.Sequential()
                        for k, (w, b) in enumerate(data[case]["layers"]):
                            lin = torch.nn.Linear(w.shape[1], w.shape[0])
                            lin.weight.data.copy_(w)
                            lin.bias.data.copy_(b)
                            net.append(lin)
                            if k < len(data[case]["layers"]) - 1:
                                net.append(torch.nn.ReLU())
                        t0 = time.perf_counter()
                        rc_counts = torch.tensor(regioncam_counts(net.eval(), data[case]["x1"], data[case]["x2"]))
                        rc_times.append(time.perf_counter() - t0)
        finally:
            for t in trees:
                t.close()
    n_paths = {
        "mlp": lambda d: d["i"].numel(),
        "regioncam": lambda d: d["x1"].shape[0],
        "cnn": lambda d: d["x1"].shape[0],
        "cnn64": lambda d: d["x1"].shape[0],
        "resnet64": lambda d: d["x1"].shape[0],
        "bisect": lambda d: d["x1"].shape[0],
        "certified": lambda d: d["x1"].shape[0],
    }
    rows = []
    for case in data:
        tb, tc = times[case][sha], times[case]["current"]
        if not tb or not tc:
            rows.append(
                {
                    "case": case,
                    "paths": n_paths[case](data[case]),
                    "base s (median)": "-",
                    "current s (median)": "-",
                    "speed-up, median of rounds [lowest, highest]": "-",
                    "results": "; ".join(f"{t}: {e}" for (c, t), e in errors.items() if c == case),
                }
            )
            continue
        per_round = [b / c for b, c in zip(tb, tc)]
        same = _compare(results[(case, sha)], results[(case, "current")])
        if case == "regioncam" and rc_counts is not None:
            k = int((results[(case, "current")]["n_regions"] == rc_counts).sum())
            t_rc = statistics.median(rc_times)
            same += (
                f"; regioncam: same count on {k}/{rc_counts.numel()}, speed-up over it "
                f"{t_rc / statistics.median(tc):.2f} (base {t_rc / statistics.median(tb):.2f})"
            )
        rows.append(
            {
                "case": case,
                "paths": n_paths[case](data[case]),
                "base s (median)": statistics.median(tb),
                "current s (median)": statistics.median(tc),
                "speed-up, median of rounds [lowest, highest]": (
                    f"{statistics.median(per_round):.3f} [{min(per_round):.3f}, {max(per_round):.3f}]"
                ),
                "results": same,
            }
        )
    for case, why in skipped.items():
        rows.append(
            {
                "case": case,
                "paths": "-",
                "base s (median)": "-",
                "current s (median)": "-",
                "speed-up, median of rounds [lowest, highest]": "-",
                "results": f"skipped: {why}",
            }
        )
    from _common import table

    print(
        table(rows, f"speed-up = {sha}'s seconds / the current tree's, per round (above 1: the current tree is faster)")
    )
    print(f"# {load_condition()} at the end")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        _worker(sys.argv[2])
    else:
        main()
