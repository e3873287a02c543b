"""MkDocs hook: the README as the site's front page, and links into the repository that resolve.

The pages in docs/ and the README link to each other and to files elsewhere in the repository
(notebooks, benchmark results, study tables and figures) by their paths in the repository, which is
what a reader of the repository on disk or on a forge follows. The site mirrors that: README.md
becomes ``index.md`` and CHANGELOG.md ``changelog.md``, the repository files that a page links to
outside docs/ are added to the site under ``repository/`` and their own paths (Markdown files as
pages, the rest as downloads), and every relative link is rewritten from "path in the repository"
to "path in the site". A link to a file that does not exist is left as written, so the strict build
reports it.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
DOCS = "docs/"
# repository files that are pages of their own at the top of the site
PAGES = {"README.md": "index.md", "CHANGELOG.md": "changelog.md"}
# [text](target) and ![alt](target), outside code spans; the target ends at whitespace or ')'
_LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s]+)(\s*(?:\"[^\"]*\")?\))")
_FENCE = re.compile(r"^(```|~~~)")


def _repo_path(site_uri: str) -> str:
    """The repository path of a site file (``index.md`` is the README)."""
    for repo, site in PAGES.items():
        if site_uri == site:
            return repo
    if site_uri.startswith("repository/"):
        return site_uri[len("repository/") :]
    return DOCS + site_uri


def _site_uri(repo_path: str) -> str:
    if repo_path in PAGES:
        return PAGES[repo_path]
    if repo_path.startswith(DOCS):
        return repo_path[len(DOCS) :]
    return "repository/" + repo_path


def _is_relative(target: str) -> bool:
    return not (re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith(("#", "/")))


def _targets(text: str, page_repo_path: str) -> list[str]:
    """Repository paths of the relative link targets in ``text`` (outside fenced code)."""
    out = []
    for line in _outside_fences(text):
        for m in _LINK.finditer(line):
            target = m.group(2).split("#", 1)[0]
            if target and _is_relative(target):
                out.append(posixpath.normpath(posixpath.join(posixpath.dirname(page_repo_path), target)))
    return out


def _outside_fences(text: str) -> list[str]:
    lines, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def on_files(files: Files, config) -> Files:
    for repo, site in PAGES.items():
        files.append(File.generated(config, site, abs_src_path=str(ROOT / repo)))
    # the repository files outside docs/ that pages link to, and the Markdown files those link to in turn
    todo = [
        (_repo_path(f.src_uri), (ROOT / _repo_path(f.src_uri)).read_text(encoding="utf-8"))
        for f in files
        if f.src_uri.endswith(".md")
    ]
    seen: set[str] = set()
    while todo:
        page, text = todo.pop()
        for target in _targets(text, page):
            if target.startswith(DOCS) or target in PAGES or target in seen or target.startswith(".."):
                continue
            seen.add(target)
            path = ROOT / target
            if not path.is_file():
                continue  # left to the strict build to report
            files.append(File.generated(config, _site_uri(target), abs_src_path=str(path)))
            if target.endswith(".md"):
                todo.append((target, path.read_text(encoding="utf-8")))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    page_repo = _repo_path(page.file.src_uri)
    page_dir = posixpath.dirname(page.file.src_uri)

    def rewrite(m: re.Match) -> str:
        target = m.group(2)
        path, _, anchor = target.partition("#")
        if not path or not _is_relative(path):
            return m.group(0)
        repo = posixpath.normpath(posixpath.join(posixpath.dirname(page_repo), path))
        if repo.startswith(".."):
            return m.group(0)
        new = posixpath.relpath(_site_uri(repo), page_dir or ".")
        return m.group(1) + new + ("#" + anchor if anchor else "") + m.group(3)

    out, fenced = [], False
    for line in markdown.split("\n"):
        if _FENCE.match(line.lstrip()):
            fenced = not fenced
        out.append(line if fenced else _LINK.sub(rewrite, line))
    return "\n".join(out)
