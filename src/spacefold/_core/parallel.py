"""Everything about processes: worker processes on one machine, ranks under ``torchrun``.

The walks of different segments are independent, so a list of ``n`` paths is cut into
contiguous ranges of positions, the ranges are walked separately and their per-path
results are concatenated in order. A path's numbers do not depend on which range holds
it, so the result is the same, bit for bit, for any number of workers or ranks.

- Worker processes (:func:`map_ranges`): ``workers=None`` uses every core this process
  may run on (``os.sched_getaffinity``), shared between the ranks of this machine under
  ``torchrun``; ``workers=1`` walks in this process. Workers start from a fork server (a
  clean process that has imported spacefold once), are kept for later calls, and run one
  torch thread each. Like every process started this way they import the program's main
  script again, and they can only rebuild what the program pickles to them from modules
  they can import. So ``workers=None`` starts workers only where that is safe: in a script
  with an ``if __name__ == "__main__":`` guard at its top level, or in a notebook or an
  interactive session when the model and everything else the walk needs come from
  importable modules (not from the notebook itself). Elsewhere it walks in this process,
  quietly. An explicit ``workers=N`` (N > 1) where it is not safe is an error that says
  why; a worker never starts workers of its own.
- Ranks (:func:`world`, :func:`shard`, :func:`all_gather`): under ``torchrun``
  (``WORLD_SIZE > 1``) the default process group is started from torchrun's environment
  (gloo on CPUs, NCCL when the model is on a CUDA device) unless the program started one
  already; rank ``r`` of ``w`` walks the ``r``-th of ``w`` contiguous shards of the paths
  (the first ``n % w`` shards hold one path more) and every rank receives every shard's
  results (``torch.distributed.all_gather_object``). Rendezvous, collectives and failure
  handling are torch.distributed's. Inside :func:`alone` a rank works by itself (``world()``
  is ``(0, 1)``): the ranks of a sweep (:func:`spacefold.studies.depth.run_study`) each measure
  their own models.
"""

from __future__ import annotations

import ast
import atexit
import contextlib
import math
import multiprocessing as mp
import os
import pickle
import sys
import threading
from collections.abc import Callable
from multiprocessing.reduction import ForkingPickler
from typing import Any

import numpy as np
import torch

from .._util import check_size, format_bytes
from ..errors import InputError, InputTypeError

__all__ = [
    "cpu_count",
    "resolve_workers",
    "world",
    "shard",
    "all_gather",
    "broadcast",
    "is_main",
    "alone",
    "failed",
    "RankFailedError",
    "map_ranges",
    "Progress",
    "progress_into",
    "close",
]


def cpu_count() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _local_world_size() -> int:
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


#: The least memory of one worker process (torch, the model, its share of the walks; measured: about 190 MiB).
WORKER_BYTES = 128 << 20
AUTO_MIN_PATHS = 20_000  # with workers=None, at least this many paths per worker process (starting one costs)


def _is_main_test(test: ast.expr) -> bool:
    """``__name__ == "__main__"`` (either way round)."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    names = [x for x in sides if isinstance(x, ast.Name) and x.id == "__name__"]
    consts = [x for x in sides if isinstance(x, ast.Constant) and x.value == "__main__"]
    return len(names) == 1 and len(consts) == 1


_GUARDED: dict = {}  # main script -> whether it has a top-level `if __name__ == "__main__":` block


def _main_script() -> str | None:
    """The file of the program's main script, or None where there is none (an interactive
    session, a notebook, ``python -c``)."""
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    return path if isinstance(path, str) else None


def _main_guarded(path: str) -> bool:
    if path not in _GUARDED:  # read the script once, not at every call
        try:
            with open(path, encoding="utf-8") as fh:
                tree = ast.parse(fh.read())
            _GUARDED[path] = any(isinstance(node, ast.If) and _is_main_test(node.test) for node in tree.body)
        except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
            _GUARDED[path] = False
    return _GUARDED[path]


def main_allows_workers() -> bool:
    """Whether worker processes may be started for this program.

    A worker imports the program's main script again (as every process that is not forked
    does), so a script whose walks run at its top level would run them again in every
    worker. Allowed: no main script (an interactive session, a notebook, ``python -c``;
    :func:`map_ranges` then checks that the walk needs nothing defined there), or one with
    an ``if __name__ == "__main__":`` block at its top level. Never inside a worker process.
    """
    if mp.parent_process() is not None:
        return False
    path = _main_script()
    return path is None or _main_guarded(path)


def _unguarded_reason() -> str:
    path = _main_script()
    if path is None or not os.path.isfile(path):  # e.g. a script piped to `python -`
        return (
            f"worker processes import the main script again, and {path} is not a file they can read (a script "
            "from standard input): save it to a file with an 'if __name__ == \"__main__\":' block, or pass "
            "workers=1"
        )
    return (
        f"worker processes import the main script {path} again, and it has no "
        "'if __name__ == \"__main__\":' block: put the script's work under that guard, or pass workers=1"
    )


def resolve_workers(workers, n_paths: int | None = None, name: str = "workers") -> int:
    """``None`` -> every core of this machine (divided between the ranks that share it
    under ``torchrun``), but no more than one per :data:`AUTO_MIN_PATHS` of ``n_paths``
    (a worker process takes a moment to start), and one (this process), quietly, where
    :func:`main_allows_workers` says no; otherwise a positive int, checked (more than one
    in a main script without the ``__main__`` guard is an error: its workers would run the
    script again)."""
    if workers is None:
        auto = max(1, cpu_count() // _local_world_size())
        auto = auto if n_paths is None else max(1, min(auto, n_paths // AUTO_MIN_PATHS))
        return auto if auto > 1 and main_allows_workers() else 1
    if isinstance(workers, bool) or not isinstance(workers, int):
        raise InputTypeError(f"{name} must be a positive int or None (every core), got {type(workers).__name__}")
    if workers < 1:
        raise InputError(f"{name} must be a positive int (1 walks in this process) or None (every core), got {workers}")
    path = _main_script()
    if workers > 1 and path is not None and not _main_guarded(path):
        raise InputError(f"{name}={workers} cannot be used here: {_unguarded_reason()}")
    return workers


class _MainRefs(pickle.Pickler):
    """Pickles into nothing and notes every class or function it meets that lives in ``__main__``
    (tensors are skipped: their data says nothing about where classes live)."""

    def __init__(self) -> None:
        super().__init__(_Discard(), protocol=pickle.HIGHEST_PROTOCOL)
        self.found: list[str] = []

    def persistent_id(self, obj):
        return 0 if isinstance(obj, torch.Tensor) else None

    def reducer_override(self, obj):
        if isinstance(obj, type) or callable(obj) and hasattr(obj, "__qualname__"):
            if getattr(obj, "__module__", None) == "__main__":
                self.found.append(getattr(obj, "__qualname__", repr(obj)))
                return object, ()  # noted; what it is does not matter here
        return NotImplemented


class _Discard:
    def write(self, data) -> int:
        return len(data)


def main_names_needed(task: Any) -> list[str]:
    """The classes and functions defined in an interactive session or notebook (module
    ``__main__`` without a script file) that pickling ``task`` needs: a worker process cannot
    import them. Empty where the main module is a script (workers import it again)."""
    if _main_script() is not None:
        return []
    refs = _MainRefs()
    try:
        refs.dump(task)
    except Exception as err:  # not picklable at all: the pool would fail the same way
        return [f"an object that cannot be pickled ({type(err).__name__}: {err})"]
    return sorted(set(refs.found))


# --------------------------------------------------------------------------- ranks


_ALONE = [0]  # > 0 inside `alone()`


@contextlib.contextmanager
def alone():
    """Inside this block this rank works by itself: :func:`world` is ``(0, 1)`` and
    :func:`all_gather` returns ``[obj]``, so that the entry points walk every path here
    (the ranks of a sweep measure different models). :func:`is_main` still tells rank 0."""
    _ALONE[0] += 1
    try:
        yield
    finally:
        _ALONE[0] -= 1


def world(device: torch.device | None = None) -> tuple[int, int]:
    """``(rank, world_size)`` of this process: ``(0, 1)`` outside ``torchrun`` (and inside
    :func:`alone`).

    Under ``torchrun`` (``WORLD_SIZE > 1``) the default process group is initialised
    when the program has not done it: NCCL when ``device`` is a CUDA device, gloo
    otherwise.
    """
    import torch.distributed as dist

    if _ALONE[0]:
        return 0, 1

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        size = 1
    if size <= 1 or not dist.is_available():
        return 0, 1
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")
    atexit.register(close)
    _watch_uncaught()
    return dist.get_rank(), dist.get_world_size()


_FAILED = [False]


def failed() -> None:
    """Say that this rank failed: at exit it leaves the process group at once, without
    waiting for the other ranks (which may be waiting for it in a collective; torchrun
    stops them and reports the failure). Called for an exception that ends the program
    (``sys.excepthook``) and by the command line for any error."""
    _FAILED[0] = True


def _watch_uncaught() -> None:
    previous = sys.excepthook

    def hook(*exc):
        failed()
        previous(*exc)

    sys.excepthook = hook


def close() -> None:
    """End the default process group (when one is running): every rank waits for the
    others, so that none exits while another still needs it; a rank that failed
    (:func:`failed`) does not wait."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if not _FAILED[0]:
            dist.barrier()
        dist.destroy_process_group()


def is_main() -> bool:
    """True outside ``torchrun`` and on rank 0 (the rank that prints and writes)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return os.environ.get("RANK", "0") == "0"


def shard(n: int, rank: int, size: int) -> tuple[int, int]:
    """The positions ``[start, stop)`` of rank ``rank``'s contiguous shard of ``n`` paths:
    shards of ``n // size`` paths, the first ``n % size`` of them one longer."""
    q, r = divmod(n, size)
    start = rank * q + min(rank, r)
    return start, start + q + (1 if rank < r else 0)


def all_gather(obj: Any) -> list:
    """Every rank's ``obj``, in rank order, on every rank (``[obj]`` outside ``torchrun``)."""
    import torch.distributed as dist

    if _ALONE[0] or not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out: list = [None] * dist.get_world_size()
    with _peers_lost():
        dist.all_gather_object(out, _to_numpy(obj))
    return [_to_torch(o) for o in out]


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (``obj`` itself outside ``torchrun``)."""
    import torch.distributed as dist

    if _ALONE[0] or not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return obj
    box = [_to_numpy(obj)]
    with _peers_lost():
        dist.broadcast_object_list(box, src=0)
    return _to_torch(box[0])


class RankFailedError(RuntimeError):
    """A collective of the ranks broke off: another rank failed or was stopped (its own
    error says why; torchrun reports every rank's exit)."""


@contextlib.contextmanager
def _peers_lost():
    import torch.distributed as dist

    try:
        yield
    except RuntimeError as err:  # torch.distributed.DistBackendError and the like: a peer went away
        raise RankFailedError(
            f"rank {dist.get_rank()} of {dist.get_world_size()} stopped: another rank failed or "
            "was stopped while this one waited for its results (that rank's error says why)"
        ) from err


# --------------------------------------------------------------------------- progress


_SINK: list = [None]  # inside `progress_into(bar)`: the bar every enabled Progress adds to


@contextlib.contextmanager
def progress_into(bar):
    """Inside this block an enabled :class:`Progress` draws no bar of its own and adds its
    paths to ``bar`` (anything with ``update(n)``; ``None`` changes nothing): a study that
    measures many models shows one bar for all of them."""
    previous = _SINK[0]
    _SINK[0] = bar if bar is not None else previous
    try:
        yield
    finally:
        _SINK[0] = previous


class Progress:
    """A progress bar over paths (tqdm: paths/s and the time left) on the main rank; nothing
    when disabled or when tqdm is not installed; inside :func:`progress_into`, that bar."""

    def __init__(self, total: int, desc: str, enabled: bool):
        self.bar = None
        self.shared = False
        if enabled and _SINK[0] is not None:
            self.bar, self.shared = _SINK[0], True
            return
        if enabled and is_main():
            try:
                from tqdm.auto import tqdm
            except ImportError:  # tqdm is an optional dependency
                return
            self.bar = tqdm(total=total, desc=desc, unit="path", unit_scale=True, leave=False)

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None and not self.shared:
            self.bar.close()


def say(message: str) -> None:
    """One line on stderr for whoever waits (the main rank only), as the progress bars are shown."""
    if is_main():
        print(f"spacefold: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- worker processes

_TASK: tuple[int, Any] | None = None  # in a worker: the task of the current call, with its number


def _worker_init() -> None:
    torch.set_num_threads(1)


def _run(job: tuple[int, bytes, int, int, bytes | None]) -> tuple[int, int, Any]:
    """In a worker: unpickle the call's task once (``blob`` comes with every range), hand it the range's own
    values where they travel apart (``part``, see :func:`map_ranges`), run the range, let go of those values; ->
    ``(a, paths, results)``."""
    global _TASK
    token, blob, a, b, part = job
    if _TASK is None or _TASK[0] != token:
        _TASK = None  # the previous call's task is dropped before the next one is built
        _TASK = (token, pickle.loads(blob))
    task = _TASK[1]
    if part is None:
        return a, b - a, _to_numpy(task(a, b, None), shared=True)
    task.take(pickle.loads(part))
    try:
        return a, b - a, _to_numpy(task(a, b, None), shared=True)
    finally:
        task.take(None)  # the range's values let go (views of shared memory would keep all of it alive)


class _Narrow:
    """An int64 array sent as int32 (its values fit): half the bytes through the pipe."""

    def __init__(self, values):
        self.values = values


_SHARED_RESULT_BYTES = 1 << 22  # a worker's results larger than this go back through shared memory (see _to_numpy)


def _to_numpy(obj, shared: bool = False):
    """Tensors as numpy arrays (pickled as plain bytes, not through shared-memory handles); int64 ones whose
    values fit in int32 travel as int32 (:class:`_Narrow`), and come back as int64. ``shared`` (a worker's results,
    through the pool's pipe): tensors of at least ``_SHARED_RESULT_BYTES`` are copied into shared memory where it has
    room, and only a handle travels (a pipe carries some hundreds of MB/s; the results of 10^8 paths are 3 GB)."""
    if isinstance(obj, torch.Tensor):
        if obj.dtype == torch.int64 and obj.numel() > 1024:
            lo, hi = torch.aminmax(obj)
            if -(1 << 31) <= int(lo) and int(hi) < 1 << 31:
                return _Narrow(_outgoing(obj.to(torch.int32), shared))
        return _outgoing(obj, shared)
    if isinstance(obj, dict):
        return {k: _to_numpy(v, shared) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_numpy(v, shared) for v in obj)
    return obj


def _outgoing(t: torch.Tensor, shared: bool):
    if shared and t.device.type == "cpu" and t.numel() * t.element_size() >= _SHARED_RESULT_BYTES:
        out = shared_empty(tuple(t.shape), t.dtype)
        if out is not None:
            return out.copy_(t)
    return t.numpy()


def _to_torch(obj, private: bool = False):
    """What :func:`_to_numpy` made, as tensors again; ``private``: tensors received in shared memory are copied out
    of it (by numpy, beside busy workers: see _Segments.range_pairs), which closes their file descriptors at once."""
    if isinstance(obj, _Narrow):
        values = obj.values.numpy() if isinstance(obj.values, torch.Tensor) else obj.values
        return torch.from_numpy(values.astype(np.int64))
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(obj)
    if isinstance(obj, torch.Tensor) and private and obj.is_shared() and obj.device.type == "cpu":
        return torch.from_numpy(obj.numpy().copy())
    if isinstance(obj, dict):
        return {k: _to_torch(v, private) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_torch(v, private) for v in obj)
    return obj


def shared_empty(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor | None:
    """An uninitialised CPU tensor in shared memory, whose views worker processes receive as handles (no copy
    through the pipe; see :func:`map_ranges`), or ``None`` where the shared-memory file system lacks room for
    twice its size (a full one would end the process at the first write) or the platform has none."""
    nbytes = dtype.itemsize * math.prod(shape)
    try:
        st = os.statvfs("/dev/shm")
    except (OSError, AttributeError):  # (no /dev/shm, or no statvfs: Windows)
        return None
    if nbytes == 0 or st.f_bavail * st.f_frsize < 2 * nbytes:
        return None
    new = getattr(torch.UntypedStorage, "_new_shared", None)
    try:
        if new is None:
            return torch.empty(shape, dtype=dtype).share_memory_()
        return torch.empty(0, dtype=dtype).set_(new(nbytes)).view(shape)
    except RuntimeError:
        return None


def _context():
    """Workers start from a fork server (a clean process that has imported spacefold once:
    forking this process, whose threads may hold locks of torch's thread pools, is not
    safe) or, where there is none, are spawned."""
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["spacefold._core.folding", "spacefold._core.walk.exact"])
        return ctx
    return mp.get_context("spawn")


_POOL: dict = {}  # the worker processes, kept for the next call: {"size": n, "pool": Pool}
_CALLS = iter(range(1, 1 << 62))


def _pool_starting(workers: int):
    """A future of the pool of ``workers`` processes: done at once when that pool is running,
    else started in a thread (starting takes seconds; this process walks meanwhile)."""
    from concurrent.futures import Future

    ready: Future = Future()
    if _POOL.get("size") == workers:
        ready.set_result(_POOL["pool"])
        return ready
    _close_pool()

    def start() -> None:
        try:
            pool = _context().Pool(workers, initializer=_worker_init)
        except BaseException as err:  # reported by ready.result()
            ready.set_exception(err)
            return
        _POOL.update(size=workers, pool=pool)
        ready.set_result(pool)

    thread = threading.Thread(target=start, name="spacefold-workers", daemon=True)
    _STARTING[:] = [t for t in _STARTING if t.is_alive()]
    _STARTING.append(thread)
    thread.start()
    return ready


def _close_pool() -> None:
    pool = _POOL.pop("pool", None)
    _POOL.clear()
    if pool is not None:
        pool.terminate()
        pool.join()


def _close_pool_at_exit() -> None:
    """The pool closed at exit, after a start still under way has finished (a call that ended before its workers
    were up): workers starting after this process has gone cannot reach it, and say so on stderr."""
    while _STARTING:
        _STARTING.pop().join(timeout=60)
    _close_pool()


_STARTING: list[threading.Thread] = []  # pools being started
atexit.register(_close_pool_at_exit)


_TAIL_RANGE = 1 << 20  # the smallest range of a long call (see _guided)


def _guided(start: int, stop: int, workers: int, min_size: int) -> list[tuple[int, int]]:
    """The ranges of ``[start, stop)`` for ``workers`` workers: each half of a worker's share of what is left, down
    to the smaller of half a worker's share of the whole and ``_TAIL_RANGE`` paths (at least ``min_size``): a few
    ranges for a short call, ranges that shrink towards the end of a long one, so that the workers finish together
    (the last ranges of 10^8 paths take seconds, not minutes)."""
    floor = max(min_size, min(_TAIL_RANGE, -(-(stop - start) // (2 * workers))))
    ranges, a = [], start
    while a < stop:
        b = min(stop, a + max(floor, -(-(stop - a) // (2 * workers))))
        if stop - b < floor // 2:  # (no short range left over)
            b = stop
        ranges.append((a, b))
        a = b
    return ranges


def map_ranges(
    task: Callable[[int, int, Callable[[int], None] | None], Any],
    start: int,
    stop: int,
    workers: int,
    *,
    min_size: int = 1,
    first: int = 0,
    progress: Progress | None = None,
    device: torch.device | None = None,
    auto: bool = False,
) -> list:
    """``task(a, b, tick)`` over contiguous ranges covering ``[start, stop)``, results in order.

    ``tick(k)`` (or ``None`` in a worker) reports ``k`` more paths done. With one worker
    ``task`` runs once on the whole range, in this process. With ``workers > 1`` the
    first ``first`` paths run in this process, and so do the next ones, in growing ranges
    (from ``min_size``), until the worker processes have started (seconds, the first
    time: they are kept for later calls); the rest runs in the workers (``task`` is
    pickled once and unpickled once in each; where ``task.part(a, b)`` gives the values of one
    range, those travel with the range and ``task.base()`` in place of the task, and a worker
    hands them to its copy with ``take``), in ranges of half a worker's share of what is left
    (:func:`_guided`) so that the progress bar moves and the workers finish together; results of
    more than a few MB come back through shared memory where it has room (:func:`_to_numpy`). A
    walk on an accelerator (``device`` not a CPU) stays in this process: one process per
    device (under ``torchrun``, one rank each). In a notebook or an interactive session a
    task that needs a class or function defined there (:func:`main_names_needed`) stays in
    this process when ``auto`` (``workers`` was chosen by :func:`resolve_workers`) and is an
    error otherwise: a worker could not rebuild it.
    """
    n = stop - start
    tick = progress.update if progress is not None else None
    # no more workers than ranges of min_size, nor than cores (more would only wait for one)
    workers = min(workers, max(1, (n - first) // max(min_size, 1)), max(1, cpu_count()))
    if device is not None and torch.device(device).type != "cpu":
        workers = 1
    if workers > 1:
        needed = main_names_needed(task)
        if needed and not auto:
            raise InputError(
                f"workers={workers} cannot be used here: worker processes cannot import "
                f"{', '.join(needed[:3])}, defined in this notebook or session (module __main__); "
                "define it in a module, or pass workers=1"
            )
        if needed:
            workers = 1
    if workers <= 1:
        return [task(start, stop, tick)]
    check_size(
        "workers",
        workers,
        workers * WORKER_BYTES,
        f"{workers} worker processes of at least {format_bytes(WORKER_BYTES)} each",
    )
    starting = _pool_starting(workers)
    results: list = []
    pos, step, cap = start, max(first, min_size, 1), max(min_size, n // (16 * workers))
    ranges: list[tuple[int, int]] = []
    # ranges sent ahead of the results: each holds the file descriptors of the shared memory it sends until a worker
    # takes it (and handles of a call that stops are let go of, see _let_go_of_sent)
    ahead, stopped = threading.Semaphore(workers + 2), threading.Event()
    try:
        while pos < stop and (pos - start < first or not starting.done()):  # walk here while the workers start
            b = min(pos + step, stop)
            results.append(task(pos, b, tick))
            pos, step = b, min(2 * step, cap)
        if pos == stop:
            return results
        ranges = _guided(pos, stop, workers, min_size)

        def jobs():  # made as the pool sends them, in its thread: the workers walk the first ones meanwhile
            whole = base = None
            for a, b in ranges:  # a task that can send a range's values alone (task.part) sends its base and those
                ahead.acquire()
                if stopped.is_set():
                    return
                part = task.part(a, b) if hasattr(task, "part") else None
                if part is None:
                    whole = whole or (next(_CALLS), pickle.dumps(task, protocol=pickle.HIGHEST_PROTOCOL))
                    yield (*whole, a, b, None)
                else:
                    base = base or (next(_CALLS), pickle.dumps(task.base(), protocol=pickle.HIGHEST_PROTOCOL))
                    # values in shared memory travel as handles to it (torch's reductions), others as their bytes
                    dumps = ForkingPickler.dumps if getattr(part, "shared", False) else pickle.dumps
                    yield (*base, a, b, bytes(dumps(part, protocol=pickle.HIGHEST_PROTOCOL)))

        got: dict[int, Any] = {}
        for a, done, res in starting.result().imap_unordered(_run, jobs()):  # (in the order they finish)
            ahead.release()
            got[a] = _to_torch(res, private=True)
            if progress is not None:
                progress.update(done)
        results.extend(got[a] for a, _ in ranges)
    except BaseException:
        stopped.set()
        for _ in ranges:  # (the pool's thread may wait to send the next range)
            ahead.release()
        with contextlib.suppress(BaseException):
            starting.result()  # a pool still starting is closed too
        _close_pool()  # a worker may be stuck in the interrupted call: the next call starts new ones
        _let_go_of_sent()
        raise
    return results


def _let_go_of_sent() -> None:
    """Close the file descriptors of shared memory sent to workers that will never take them (a call stopped by an
    error or an interrupt): they are kept, with the memory, until a process asks for them."""
    from multiprocessing import resource_sharer

    with contextlib.suppress(Exception):
        resource_sharer.stop()
