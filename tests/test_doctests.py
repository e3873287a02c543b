"""The examples in the docstrings of the public names run, and print what they say.

Every public name (``spacefold.__all__`` and the ``__all__`` of ``spacefold.nn``, ``spacefold.testing``
and ``spacefold.lightning``) carries an ``Examples:`` section of doctests; the API reference of the
documentation site shows them (docs/reference/). Each name's examples run here, with ``ELLIPSIS`` and
``NORMALIZE_WHITESPACE`` (floats are printed rounded or with ``...``).
"""

from __future__ import annotations

import doctest
import importlib

import pytest

PUBLIC_MODULES = ("spacefold", "spacefold.nn", "spacefold.testing", "spacefold.lightning")
# the extra a module's names need, where the dev install may lack it
NEEDS = {"spacefold.lightning": "lightning", "spacefold.plot_path": "matplotlib", "spacefold.plot_plane": "matplotlib"}


def public_names() -> list[str]:
    """``module.name`` of every public name (the lightning module's only where lightning imports)."""
    out = []
    for module in PUBLIC_MODULES:
        if module == "spacefold.lightning":
            names = ["FoldingCallback"]  # read without importing lightning
        else:
            names = importlib.import_module(module).__all__
        out += [f"{module}.{name}" for name in names]
    return out


def resolve(qualname: str) -> object:
    module, _, name = qualname.rpartition(".")
    needs = NEEDS.get(module) or NEEDS.get(qualname)
    if needs:
        pytest.importorskip(needs, reason=f"{qualname} needs {needs}")
    return getattr(importlib.import_module(module), name)


def test_the_lightning_names_are_listed() -> None:
    pytest.importorskip("lightning", reason="spacefold.lightning needs lightning")
    import spacefold.lightning

    assert [n for n in public_names() if n.startswith("spacefold.lightning.")] == [
        f"spacefold.lightning.{name}" for name in spacefold.lightning.__all__
    ]


def run_examples(tests: list[doctest.DocTest], qualname: str) -> None:
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {qualname} failed (output above)"


@pytest.mark.parametrize("qualname", public_names())
def test_docstring_examples_run(qualname: str) -> None:
    obj = resolve(qualname)
    tests = [t for t in doctest.DocTestFinder().find(obj, qualname, globs={}) if t.examples]
    assert tests, f"{qualname} has no doctest example in its docstring"
    run_examples(tests, qualname)


def test_module_docstring_examples_run() -> None:
    """The examples in the docstring of the module spacefold.testing (the one public module with some) run too."""
    import spacefold.testing

    tests = [
        t
        for t in doctest.DocTestFinder(recurse=False).find(spacefold.testing, "spacefold.testing", globs={})
        if t.examples
    ]
    assert tests, "spacefold.testing's docstring lost its example"
    run_examples(tests, "spacefold.testing")
