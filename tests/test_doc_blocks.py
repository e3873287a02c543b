"""Every ```python block of README.md and docs/*.md runs as written.

The blocks of one page are joined in order into one plain script (as a reader would paste them into a file)
and run in a fresh Python process in an empty directory. A block is left out, or run only with the slow tests,
when the line just before it (blank lines aside) says so; the reason is required:

    <!-- skip: needs the MNIST files -->
    <!-- slow: trains ten networks -->

docs/contributing.md describes the convention. Shell blocks (```bash, ```) are not run. The script must exit
with 0, and no warning may come from spacefold (its own files or the page's code that calls it).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARK = re.compile(r"^<!--\s*(skip|slow)\s*:\s*(.*?)\s*-->$")
TIMEOUT = 300  # seconds per page: a hung block fails, it does not stall the suite
# a warning as Python prints it: "<file>:<line>: <Category>Warning: <message>"
WARNING = re.compile(r"^(?P<file>.+?):\d+: (?P<category>\w*Warning): ", re.M)


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    code: str
    mark: str | None  # None, "skip" or "slow"
    reason: str


def blocks(page: Path) -> list[Block]:
    """The ```python blocks of a page, each with the mark on the line before it."""
    lines = page.read_text(encoding="utf-8").splitlines()
    out, i = [], 0
    while i < len(lines):
        fence = lines[i].strip()
        if not fence.startswith("```"):
            i += 1
            continue
        end = next((k for k in range(i + 1, len(lines)) if lines[k].strip().startswith("```")), None)
        if end is None:
            raise AssertionError(f"{page.name}:{i + 1}: a code fence that is never closed")
        if fence[3:].strip().lower() in ("python", "py"):
            prev = next((lines[k].strip() for k in range(i - 1, -1, -1) if lines[k].strip()), "")
            m = MARK.match(prev)
            if m is None and prev.startswith("<!--") and re.search(r"\b(skip|slow)\b", prev):
                raise AssertionError(f"{page.name}:{i}: a malformed mark {prev!r}; write <!-- skip: REASON -->")
            if m is not None and not m.group(2):
                raise AssertionError(f"{page.name}:{i}: {prev!r} gives no reason")
            out.append(
                Block(page, i + 1, "\n".join(lines[i + 1 : end]) + "\n", m and m.group(1), m and m.group(2) or "")
            )
        i = end + 1
    return out


def script(bl: list[Block]) -> str:
    parts = [f"# ---- {b.page.name}, line {b.line}\n{b.code}" for b in bl]
    return "\n".join(parts)


CASES = []
for _page in PAGES:
    _blocks = blocks(_page)
    if not _blocks:
        continue
    _name = _page.relative_to(ROOT).as_posix()
    _slow = [b for b in _blocks if b.mark == "slow"]
    CASES.append(pytest.param(_page, ("slow", "skip"), id=_name))
    if _slow:
        CASES.append(pytest.param(_page, ("skip",), id=_name + "+slow", marks=pytest.mark.slow))


def test_marks_are_read():
    """The collector sees the blocks, and a mark before a block with its reason."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "page.md"
        page.write_text(
            "text\n\n```python\na = 1\n```\n\n<!-- skip: needs the MNIST files -->\n\n```python\n"
            "b = 2\n```\n<!-- slow: trains ten networks -->\n```python\nc = 3\n```\n```bash\nls\n```\n"
        )
        got = [(b.line, b.code, b.mark, b.reason) for b in blocks(page)]
    assert got == [
        (3, "a = 1\n", None, ""),
        (9, "b = 2\n", "skip", "needs the MNIST files"),
        (13, "c = 3\n", "slow", "trains ten networks"),
    ]


def test_readme_has_blocks():
    assert len(blocks(ROOT / "README.md")) >= 3


@pytest.mark.parametrize(("page", "leave_out"), CASES)
def test_page_runs(page: Path, leave_out: tuple[str, ...], tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")
    run = [b for b in blocks(page) if b.mark not in leave_out]
    if not run:
        pytest.skip("; ".join(f"line {b.line}: {b.reason}" for b in blocks(page)))
    code = script(run)
    path = tmp_path / (page.stem + ".py")
    path.write_text(code, encoding="utf-8")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
    }
    env.pop("PYTHONWARNINGS", None)
    out = subprocess.run(
        [sys.executable, str(path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT
    )
    numbered = "\n".join(f"{k + 1:4d}  {line}" for k, line in enumerate(code.splitlines()))
    assert out.returncode == 0, f"{page.name} failed:\n{out.stderr[-4000:]}\nthe script it ran:\n{numbered}"
    ours = [
        m.group(0)
        for m in WARNING.finditer(out.stderr)
        if "spacefold" in m.group("file") or Path(m.group("file")).name == path.name
    ]
    assert not ours, f"{page.name} printed warnings from spacefold:\n{out.stderr[-4000:]}"
