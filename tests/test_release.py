"""What the package claims about itself matches what CI tests (.ci/run builds and installs the release itself)."""

import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _lower(spec: SpecifierSet) -> str:
    (low,) = [s.version for s in spec if s.operator == ">="]
    assert all(s.operator in (">=", "!=") for s in spec), f"{spec}: an upper bound keeps users off newer releases"
    return low


def test_declared_torch_is_the_tested_torch():
    """The oldest torch the package declares is the one CI installs (constraints-ci.txt)."""
    (torch_req,) = [Requirement(r) for r in PROJECT["dependencies"] if Requirement(r).name == "torch"]
    pins = re.findall(r"^torch==([\w.]+)$", (ROOT / "constraints-ci.txt").read_text(encoding="utf-8"), re.M)
    assert len(pins) == 1
    assert Version(_lower(torch_req.specifier)) == Version(pins[0])


def test_declared_python_is_listed_and_runs_here():
    low = _lower(SpecifierSet(PROJECT["requires-python"]))
    listed = sorted(
        c.rsplit(" ", 1)[1]
        for c in PROJECT["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    )
    assert listed and listed[0] == low  # the classifiers name the tested versions, the oldest first
    assert sys.version_info[:2] >= tuple(int(p) for p in low.split("."))


def test_readme_states_the_declared_versions():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"Python >= {_lower(SpecifierSet(PROJECT['requires-python']))}" in readme
    (torch_req,) = [Requirement(r) for r in PROJECT["dependencies"] if Requirement(r).name == "torch"]
    assert f"`torch>={_lower(torch_req.specifier)}`" in readme


def test_dev_extra_has_the_ci_tools():
    dev = {Requirement(r).name for r in PROJECT["optional-dependencies"]["dev"]}
    assert {"ruff", "build", "twine", "pytest"} <= dev


def test_sdist_manifest_carries_docs_tests_notebooks():
    manifest = (ROOT / "MANIFEST.in").read_text(encoding="utf-8").split("\n")
    assert {"graft docs", "graft tests", "graft notebooks"} <= set(manifest)
