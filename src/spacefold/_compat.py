"""The module paths of spacefold 0.1, served for one more release with a DeprecationWarning.

spacefold 0.1 kept every module flat beside ``walk/``; they now live in subpackages by
concern (docs/contributing.md). :data:`OLD_PATHS` maps each old path to its new home.
``import spacefold.folding`` and ``from spacefold.walk.exact import verify`` still work:
the old name is a stand-in module that holds nothing itself; reading a name from it
warns once per place, naming what to import instead, and hands over the object of the
new home (the same object, so ``isinstance`` checks and identity hold).

Four old modules share their name with a function of the API (``spacefold.walk``,
``spacefold.folding``, ``spacefold.global_folding``, ``spacefold.cantornet``). Their
stand-ins are placed in ``sys.modules`` when ``spacefold`` is imported, so that importing
the old path finds them there and never binds a module over the function
(``spacefold.walk`` stays the function whatever was imported). ``from spacefold.folding
import walk_batch`` works; ``import spacefold.folding as m`` gives the function, as
``spacefold.folding`` does.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
import warnings
from collections.abc import Sequence

__all__ = ["OLD_PATHS", "new_home", "install"]

# old module path -> its new home(s), first match wins; a sub-path of an old package maps by prefix
# (spacefold.walk.exact.driver -> spacefold._core.walk.exact.driver)
OLD_PATHS: dict[str, tuple[str, ...]] = {
    "spacefold.patterns": ("spacefold._core.patterns",),
    "spacefold.walk": ("spacefold._core.walk",),
    "spacefold.measure": ("spacefold._core.measure",),
    "spacefold.pairs": ("spacefold._core.pairs",),
    "spacefold.parallel": ("spacefold._core.parallel",),
    "spacefold.folding": ("spacefold._core.folding",),
    "spacefold.global_folding": ("spacefold._core.global_folding",),
    "spacefold.plane": ("spacefold._core.plane",),
    "spacefold._plane_jit": ("spacefold._core._plane_jit",),
    "spacefold.metric": ("spacefold.training.metric",),
    "spacefold.regularize": ("spacefold.training.regularize",),
    "spacefold.resnet": ("spacefold.models.resnet",),
    "spacefold.cantornet": ("spacefold.models.cantornet",),
    "spacefold.train": ("spacefold.models.train",),
    "spacefold.load": ("spacefold.data.load",),
    "spacefold.adversarial": ("spacefold.studies.adversarial",),
    "spacefold.symmetry": ("spacefold.studies.symmetry",),
    "spacefold.study": ("spacefold.studies.depth",),
    "spacefold.plot": ("spacefold.viz.plot", "spacefold.viz.study_plots"),
    "spacefold.report": ("spacefold.viz.report",),
}

# old paths that are also names of API functions: in sys.modules from the start (see above)
SHADOWED = ("spacefold.walk", "spacefold.folding", "spacefold.global_folding", "spacefold.cantornet")


def new_home(old: str) -> tuple[str, ...] | None:
    """The new module paths of the old module path ``old``, or ``None`` when it is not an old path."""
    if old in OLD_PATHS:
        return OLD_PATHS[old]
    head, _, tail = old.rpartition(".")
    while head:
        if head in OLD_PATHS:
            return tuple(f"{new}.{old[len(head) + 1 :]}" for new in OLD_PATHS[head][:1])
        head, _, _ = head.rpartition(".")
    return None


def _advice(old: str, name: str, value: object, homes: Sequence[str]) -> str:
    spacefold = sys.modules["spacefold"]  # imported: it installed this module's finder
    if name in spacefold.__all__ and getattr(spacefold, name, None) is value:
        what = f"use spacefold.{name}"
    elif isinstance(value, types.ModuleType):
        what = f"import {value.__name__}"
    else:
        home = next((h for h in homes if getattr(sys.modules.get(h), name, None) is value), homes[0])
        what = f"import {name} from {home}"
    return f"{old} is deprecated and will be removed in the next release; {what}"


def _stand_in(old: str, homes: tuple[str, ...]) -> types.ModuleType:
    spec = importlib.util.find_spec(homes[0])
    is_package = spec is not None and spec.submodule_search_locations is not None
    module = types.ModuleType(old, f"Deprecated: {old} moved to {homes[0]}.")

    def __getattr__(name: str) -> object:
        if name.startswith("__") and name != "__all__":
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        for home in homes:
            target = importlib.import_module(home)
            if hasattr(target, name):
                value = getattr(target, name)
                if isinstance(value, types.ModuleType) and value.__name__.startswith(home + "."):
                    new = value.__name__
                    value = importlib.import_module(old + new[len(home) :])  # its stand-in
                    warnings.warn(
                        f"{old} is deprecated and will be removed in the next release; import {new}",
                        DeprecationWarning,
                        stacklevel=2,
                    )
                    return value
                warnings.warn(_advice(old, name, value, homes), DeprecationWarning, stacklevel=2)
                return value
        if is_package and importlib.util.find_spec(f"{homes[0]}.{name}") is not None:
            return importlib.import_module(f"{old}.{name}")
        raise AttributeError(f"module {old!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set().union(*(dir(importlib.import_module(h)) for h in homes)))

    module.__getattr__ = __getattr__  # type: ignore[method-assign]
    module.__dir__ = __dir__  # type: ignore[method-assign]
    module.__spec__ = importlib.machinery.ModuleSpec(old, _Loader(), is_package=is_package)
    module.__loader__ = module.__spec__.loader
    module.__package__ = old if is_package else old.rpartition(".")[0]
    if is_package:
        module.__path__ = []
    return module


class _Loader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        homes = new_home(spec.name)
        assert homes is not None
        return _stand_in(spec.name, homes)

    def exec_module(self, module: types.ModuleType) -> None:
        pass


class _Finder(importlib.abc.MetaPathFinder):
    """Finds the old module paths (and only those)."""

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        homes = new_home(fullname) if fullname.startswith("spacefold.") else None
        if homes is None:
            return None
        spec = importlib.util.find_spec(homes[0])
        is_package = spec is not None and spec.submodule_search_locations is not None
        return importlib.machinery.ModuleSpec(fullname, _Loader(), is_package=is_package)


def install() -> None:
    """Serve the old module paths (called once, by ``import spacefold``)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())
    for old in SHADOWED:
        if old not in sys.modules:
            sys.modules[old] = _stand_in(old, OLD_PATHS[old])
