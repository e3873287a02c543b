"""The documentation site: its API reference covers every public name, each docstring is in the one
style (Google: ``Args:``, ``Returns:``, ``Raises:``, ``Examples:``) and names every parameter, and
``mkdocs build --strict`` (``make docs``) passes: no warning, no broken link.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_doctests import public_names, resolve

ROOT = Path(__file__).resolve().parent.parent
SECTION = re.compile(r"^(Args|Returns|Yields|Raises|Example|Examples|Attributes|Note|Notes|Warning):\s*$")


def reference_entries() -> list[str]:
    """The names of the ``::: name`` blocks of docs/reference/*.md, in order."""
    out = []
    for page in sorted((ROOT / "docs" / "reference").glob("*.md")):
        out += re.findall(r"^::: ([\w.]+)\s*$", page.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return out


def sections(doc: str) -> dict[str, list[str]]:
    """The Google-style sections of a docstring (``inspect.cleandoc``-ed) and their lines."""
    out: dict[str, list[str]] = {}
    current = None
    for line in doc.splitlines():
        m = SECTION.match(line)
        if m:
            current = m.group(1)
            out[current] = []
        elif current is not None:
            if line and not line.startswith(" "):
                current = None  # prose after a section
            else:
                out[current].append(line)
    return out


def documented_args(lines: list[str]) -> set[str]:
    """``name`` of each ``name (type): text`` / ``name: text`` entry of an ``Args:`` section."""
    indent = min((len(x) - len(x.lstrip()) for x in lines if x.strip()), default=0)
    names = set()
    for line in lines:
        m = re.match(rf"^ {{{indent}}}(\*{{0,2}}\w+)(?: \([^)]*\))?:", line)
        if m:
            names.add(m.group(1).lstrip("*"))
    return names


def test_the_reference_shows_every_public_name_once() -> None:
    entries = reference_entries()
    assert len(entries) == len(set(entries)), "a name has two entries in docs/reference/"
    missing = sorted(set(public_names()) - set(entries))
    assert not missing, f"public names missing from docs/reference/*.md: {missing}"
    extra = sorted(set(entries) - set(public_names()))
    assert not extra, f"docs/reference/*.md documents names that are not public: {extra}"


@pytest.mark.parametrize("qualname", public_names())
def test_docstring_has_the_sections_of_the_one_style(qualname: str) -> None:
    obj = resolve(qualname)
    doc = inspect.getdoc(obj) or ""
    found = sections(doc)
    assert doc.splitlines() and not SECTION.match(doc.splitlines()[0]), f"{qualname}: no summary line"
    assert "Examples" in found and any(">>>" in x for x in found["Examples"]), f"{qualname}: no Examples: section"
    # one style: griffe reads "Examples:" as the Google examples section (its doctests shown as code);
    # a singular "Example:" would be an admonition of Markdown text
    assert "Example" not in found, f"{qualname}: 'Example:' is an admonition in the Google style; use 'Examples:'"
    target = obj.__init__ if inspect.isclass(obj) else obj
    if inspect.isclass(obj) and target is object.__init__:
        return
    if inspect.isclass(obj) and issubclass(obj, BaseException):
        assert "Raises" not in found  # an exception is raised, it does not raise
        return
    params = [
        p
        for name, p in inspect.signature(target).parameters.items()
        if name not in ("self", "cls") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if params:
        # a result class (a dataclass the library fills in) lists its fields as Attributes:
        kind = "Attributes" if dataclasses.is_dataclass(obj) else "Args"
        assert kind in found, f"{qualname}: no {kind}: section"
        missing = sorted({p.name for p in params} - documented_args(found[kind]))
        assert not missing, f"{qualname}: parameters missing from {kind}: {missing}"
    if not inspect.isclass(obj):
        assert "Returns" in found or "Yields" in found, f"{qualname}: no Returns: section"


def test_strict_build(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="the site needs mkdocs (the dev extra: pip install -e '.[dev]')")
    pytest.importorskip("mkdocstrings", reason="the API reference needs mkdocstrings[python] (the dev extra)")
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert (tmp_path / "site" / "reference" / "folding" / "index.html").is_file()
    html = (tmp_path / "site" / "reference" / "folding" / "index.html").read_text(encoding="utf-8")
    assert 'id="spacefold.folding_batch"' in html  # the reference was generated, not left empty


def load_hooks():
    pytest.importorskip("mkdocs", reason="the site's hook needs mkdocs (the dev extra)")
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Page:
    def __init__(self, src_uri: str) -> None:
        self.file = type("F", (), {"src_uri": src_uri})()


def test_hook_rewrites_repository_paths_to_site_paths() -> None:
    hooks = load_hooks()
    readme = (
        "See [the method](docs/method.md#the-exact-walk), ![a figure](docs/figures/a.png), "
        "[a notebook](notebooks/01.ipynb), [results](benchmarks/RESULTS.md) and [x](https://example.org/a.md).\n"
        "```\n[kept](docs/method.md)\n```\n[top](#set-up)"
    )
    out = hooks.on_page_markdown(readme, _Page("index.md"), None, None)
    assert out == (
        "See [the method](method.md#the-exact-walk), ![a figure](figures/a.png), "
        "[a notebook](repository/notebooks/01.ipynb), [results](repository/benchmarks/RESULTS.md) and "
        "[x](https://example.org/a.md).\n```\n[kept](docs/method.md)\n```\n[top](#set-up)"
    )
    page = "[tables](../experiments/results/t.md) [home](../README.md) [log](../CHANGELOG.md) [m](method.md)"
    assert hooks.on_page_markdown(page, _Page("adversarial.md"), None, None) == (
        "[tables](repository/experiments/results/t.md) [home](index.md) [log](changelog.md) [m](method.md)"
    )
    # a page of the repository outside docs/ links back into docs/ by its own relative paths
    results = "[the method](../docs/method.md) [a script](bench_cli.py)"
    assert hooks.on_page_markdown(results, _Page("repository/benchmarks/RESULTS.md"), None, None) == (
        "[the method](../../method.md) [a script](bench_cli.py)"
    )
