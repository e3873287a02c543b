"""The package's layout: the public surface, the old module paths, and one direction of imports.

- ``spacefold``'s API entry points are plain functions, ``dir(spacefold)`` is the API, no module
  is callable and importing an old module path never binds a module over a function;
- every old module path of spacefold 0.1 still resolves, to the very objects of its new home,
  with a DeprecationWarning that names the new home; ``spacefold.lightning`` is public and
  silent;
- the imports of the package's files, read from their source, go one way: patterns → walk →
  measure → aggregate → outputs, at file and at package level, and form no cycle.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import pathlib
import subprocess
import sys
import types
import warnings

import pytest

import spacefold as sf
from spacefold import _compat

SRC = pathlib.Path(sf.__file__).parent
ENTRY_POINTS = ("walk", "folding", "folding_batch", "folding_pairs", "global_folding", "cantornet")


# --------------------------------------------------------------------------- the public surface


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_entry_points_are_plain_functions(name):
    fn = getattr(sf, name)
    assert isinstance(fn, types.FunctionType), type(fn)
    assert fn.__module__.startswith("spacefold.")
    assert inspect.signature(fn).return_annotation not in (inspect.Signature.empty, "Any")


def test_dir_is_the_api_and_every_name_resolves_silently():
    assert dir(sf) == sorted([*sf.__all__, "__version__"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in sf.__all__:
            assert getattr(sf, name) is not None, name
    for name in ("annotations", "importlib", "inspect", "types", "warnings", "Callable", "TYPE_CHECKING"):
        assert name not in dir(sf)


def test_no_module_of_the_package_is_callable():
    for module in list(sys.modules.values()):
        if isinstance(module, types.ModuleType) and module.__name__.startswith("spacefold"):
            assert not callable(module), module.__name__
            assert type(module) is types.ModuleType, module.__name__


def test_importing_old_paths_never_shadows_a_function():
    """In a fresh interpreter: the old modules that share a function's name, imported every way."""
    code = """
import warnings
warnings.simplefilter("ignore")
import spacefold as sf
import spacefold.walk, spacefold.folding, spacefold.global_folding, spacefold.cantornet
import spacefold.walk.exact, spacefold.walk.exact.driver, spacefold.patterns
from spacefold.walk import exact
from spacefold.folding import walk_batch
from spacefold.cantornet import CantorNet
import importlib
for old in ("spacefold.walk", "spacefold.folding", "spacefold.global_folding", "spacefold.cantornet"):
    importlib.import_module(old)
import types
for name in ("walk", "folding", "global_folding", "cantornet", "folding_batch"):
    assert isinstance(getattr(sf, name), types.FunctionType), name
    assert isinstance(getattr(spacefold, name), types.FunctionType), name
print("ok")
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=None, cwd=str(SRC.parent), timeout=300
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_the_command_line_entry_points():
    import re

    script = re.search(r'^spacefold = "([\w.:]+)"', (SRC.parents[1] / "pyproject.toml").read_text(), re.M)
    assert script is not None
    module, _, name = script.group(1).partition(":")
    assert callable(getattr(importlib.import_module(module), name))
    out = subprocess.run([sys.executable, "-m", "spacefold", "--version"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.startswith("spacefold ") and not out.stderr


def test_subpackages_are_not_shadowed():
    for name in ("_core", "training", "models", "data", "studies", "viz", "cli", "testing"):
        module = importlib.import_module(f"spacefold.{name}")
        assert isinstance(module, types.ModuleType) and hasattr(module, "__path__"), name
        assert name not in sf.__all__


# --------------------------------------------------------------------------- the old module paths


def _a_name_of(home: str) -> str:
    module = importlib.import_module(home)
    names = getattr(module, "__all__", None) or [n for n in vars(module) if not n.startswith("_")]
    return names[0]


@pytest.mark.parametrize("old, homes", sorted(_compat.OLD_PATHS.items()))
def test_old_paths_resolve_to_the_new_objects_with_a_warning(old, homes):
    name = _a_name_of(homes[0])
    new = getattr(importlib.import_module(homes[0]), name)
    stand_in = importlib.import_module(old)
    with pytest.warns(DeprecationWarning, match=rf"^{old} is deprecated .*(spacefold\.{name}|{homes[0]})"):
        got = getattr(stand_in, name)
    assert got is new
    with pytest.warns(DeprecationWarning, match=old):
        namespace: dict = {}
        exec(f"from {old} import {name}", namespace)
    assert namespace[name] is new


def test_old_sub_paths_resolve_by_prefix():
    from spacefold._core.walk.exact.driver import exact_walks
    from spacefold._core.walk.exact.verification import VerifyResult

    with pytest.warns(DeprecationWarning, match="spacefold._core.walk.exact.driver"):
        namespace: dict = {}
        exec("from spacefold.walk.exact.driver import exact_walks", namespace)
    assert namespace["exact_walks"] is exact_walks
    with pytest.warns(DeprecationWarning, match="spacefold._core.walk.exact"):
        exec("from spacefold.walk.exact import VerifyResult", namespace)
    assert namespace["VerifyResult"] is VerifyResult
    with pytest.warns(DeprecationWarning, match="use spacefold.verify"):
        exec("from spacefold.walk.exact import verify", namespace)
    assert namespace["verify"] is sf.verify
    assert _compat.new_home("spacefold.walk.exact.driver") == ("spacefold._core.walk.exact.driver",)
    assert _compat.new_home("spacefold.errors") is None and _compat.new_home("spacefold.walker") is None


def test_an_old_path_names_a_missing_name_as_missing():
    stand_in = importlib.import_module("spacefold.pairs")
    with pytest.raises(AttributeError, match="no_such_name"):
        stand_in.no_such_name  # noqa: B018
    with pytest.raises(ImportError):
        exec("from spacefold.pairs import no_such_name", {})


def test_old_paths_that_stayed_public_are_silent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from spacefold.data import load_dataset
        from spacefold.models import MLP, mlp

        assert load_dataset is importlib.import_module("spacefold.data.datasets").load_dataset
        assert MLP is importlib.import_module("spacefold.models.mlp").MLP and mlp is not sf.cantornet
        if importlib.util.find_spec("lightning") or importlib.util.find_spec("pytorch_lightning"):
            from spacefold.lightning import FoldingCallback
            from spacefold.training.lightning import FoldingCallback as home

            assert FoldingCallback is home


def test_no_source_module_is_over_800_lines():
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > 800}
    assert long == {}, long


# --------------------------------------------------------------------------- one direction of imports

# the rank of each home: a module may import modules of its own rank or lower, never higher
RANKS = {
    "spacefold.errors": 0,
    "spacefold._util": 0,
    "spacefold._version": 0,
    "spacefold._core.parallel": 1,  # worker processes and ranks: needs nothing of the measure
    "spacefold._core.rules": 2,  # the bit rule of every activation: what patterns records
    "spacefold._core.patterns": 2,
    "spacefold._core.intercept": 2,  # the modes a forward pass that records patterns runs under
    "spacefold._core.checks": 2,  # checks of models and inputs, where a model lives
    "spacefold._core.walk": 3,
    "spacefold._core.measure": 4,
    "spacefold._core.pairs": 4,
    "spacefold._core.segments": 4,  # the segments to walk, in chunks of positions
    "spacefold._core.exact_walker": 5,  # the exact method's walker of the pipeline
    "spacefold._core.pipeline": 5,
    "spacefold._core.folding": 5,
    "spacefold._core.plane": 5,
    "spacefold._core._plane_jit": 5,
    "spacefold._core.global_folding": 6,
    "spacefold._core": 6,
    "spacefold.nn": 7,
    "spacefold.models": 7,
    "spacefold.data": 8,
    "spacefold.training": 8,
    "spacefold.studies": 9,
    "spacefold.testing": 9,
    "spacefold.viz": 10,
    "spacefold": 12,
    "spacefold.lightning": 12,
    "spacefold._compat": 12,
    "spacefold.cli": 13,
    "spacefold.__main__": 13,  # the command line calls the public API, like a user
}


def _rank(module: str) -> int:
    parts = module.split(".")
    for k in range(len(parts), 0, -1):
        if ".".join(parts[:k]) in RANKS:
            return RANKS[".".join(parts[:k])]
    raise AssertionError(f"{module} has no rank in RANKS: give its home one")


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Every module of the package -> the package's modules it imports (at any depth of its code)."""
    files = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                candidates = [f"{source}.{alias.name}" for alias in node.names] + [source]
            elif isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            else:
                continue
            for c in candidates:
                if c.split(".")[0] == "spacefold" and c in files:
                    targets.add(c)
                    break
        graph[name] = targets - {name}
    return graph


def test_imports_go_one_way_at_file_level():
    graph = _imports()
    assert "spacefold._core.folding" in graph and len(graph) > 40
    upward = [(a, b) for a, targets in graph.items() for b in targets if _rank(b) > _rank(a)]
    assert upward == [], upward


def test_imports_form_no_cycle_at_file_or_package_level():
    graph = _imports()

    def cycle(g: dict[str, set[str]]) -> list[str] | None:
        state: dict[str, int] = {}
        stack: list[str] = []

        def visit(n: str) -> list[str] | None:
            state[n] = 1
            stack.append(n)
            for m in sorted(g.get(n, ())):
                if state.get(m) == 1:
                    return stack[stack.index(m) :] + [m]
                if m not in state and (found := visit(m)):
                    return found
            stack.pop()
            state[n] = 2
            return None

        for n in sorted(g):
            if n not in state and (found := visit(n)):
                return found
        return None

    # a package's __init__ re-exports its modules: the file-level cycle check skips the edges into it
    files = {a: {b for b in t if not (b != "spacefold" and a.startswith(b + "."))} for a, t in graph.items()}
    assert cycle(files) is None, cycle(files)

    def home(module: str) -> str:  # the package a module belongs to, one level below spacefold (or _core)
        parts = module.split(".")
        depth = 3 if parts[1:2] == ["_core"] else 2
        return ".".join(parts[:depth])

    packages: dict[str, set[str]] = {}
    for a, targets in graph.items():
        if a == "spacefold" or a.count(".") == 0:
            continue
        packages.setdefault(home(a), set()).update(home(b) for b in targets if home(b) != home(a) and b != "spacefold")
    assert cycle(packages) is None, cycle(packages)
