"""Types: the public functions are fully annotated, ``py.typed`` ships, and mypy accepts the package
and a user's script of the README's calls (tests/typing/readme_calls.py, whose ``assert_type`` lines
fail the check where a result's type is wrong or ``Any``)."""

from __future__ import annotations

import importlib.util
import inspect
import os
import pathlib
import subprocess
import sys
import typing

import pytest

import spacefold as sf

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _public_callables():
    for name in sf.__all__:
        obj = getattr(sf, name)
        if inspect.isfunction(obj):
            yield name, obj
        elif inspect.isclass(obj) and not issubclass(obj, BaseException):
            for attr, member in vars(obj).items():
                if inspect.isfunction(member) and (not attr.startswith("_") or attr == "__init__"):
                    yield f"{name}.{attr}", member


@pytest.mark.parametrize("name, fn", list(_public_callables()))
def test_public_functions_are_fully_annotated(name, fn):
    sig = inspect.signature(fn)
    for p in sig.parameters.values():
        if p.name in ("self", "cls"):
            continue
        assert p.annotation is not inspect.Parameter.empty, f"{name}: parameter {p.name} has no annotation"
    if fn.__name__ != "__init__":
        assert sig.return_annotation is not inspect.Signature.empty, f"{name}: no return annotation"
        assert sig.return_annotation not in ("Any", typing.Any), f"{name} returns Any"


def test_py_typed_ships_with_the_package():
    assert (pathlib.Path(sf.__file__).parent / "py.typed").is_file()
    text = (ROOT / "pyproject.toml").read_text()
    assert '"py.typed"' in text and "package-data" in text


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed (the dev extra has it)")
def test_mypy_accepts_the_package_and_the_readme_calls():
    env = {**os.environ, "MYPY_CACHE_DIR": os.environ.get("MYPY_CACHE_DIR", str(ROOT / ".mypy_cache"))}
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=1200,
    )
    assert out.returncode == 0, out.stdout + out.stderr
