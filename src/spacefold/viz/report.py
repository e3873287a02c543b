"""``spacefold report``: one self-contained HTML file from a results directory.

Reads what ``spacefold demo``, ``sweep`` and ``measure --out`` write (``results.json``,
``measure.json``, ``class_pairs.csv``, figures under the directory, ``provenance.json``
where present) and writes one HTML file: figures embedded as base64 PNG (or SVG where
there is no PNG), tables, and for every result the settings, seeds, command and versions
that produced it, as far as the directory records them. The file names no external URL:
it opens in any browser without a server or network.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

from .._util import atomic_write
from ..errors import InputError

__all__ = ["build_report", "write_report", "provenance", "write_provenance"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{font-size:1.6em}h2{font-size:1.25em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
h3{font-size:1.05em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0 1em}th,td{border:1px solid #ccc;padding:.25em .5em;
text-align:right}th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85em;color:#444}code,pre{background:#f6f6f6;font-size:.85em}pre{padding:.6em;overflow-x:auto}
.meta{font-size:.85em;color:#444}.scroll{overflow-x:auto}summary{cursor:pointer;font-size:.9em}
"""

_CHECK = """<script>
window.addEventListener("load", function () {
  var imgs = document.querySelectorAll("img"), ok = 0;
  for (var i = 0; i < imgs.length; i++) { if (imgs[i].complete && imgs[i].naturalWidth > 0) ok++; }
  var s = document.getElementById("figure-check");
  s.textContent = ok + " of " + imgs.length + " figures shown";
  s.setAttribute("data-shown", ok); s.setAttribute("data-total", imgs.length);
});
</script>"""


def provenance(argv=None) -> dict:
    """The command, versions and time of this run, for a results directory's ``provenance.json``.

    ``argv``: the command's arguments (default: this process's command line)."""
    import shlex

    import numpy
    import torch

    from .._version import __version__

    if argv is None:
        prog = Path(sys.argv[0]).name if sys.argv else ""
        argv = sys.argv[1:] if prog in ("spacefold", "__main__.py", "cli.py") else None
    cmd = shlex.join(["spacefold", *argv]) if argv is not None else shlex.join(sys.argv)
    return {
        "command": cmd,
        "versions": {
            "spacefold": __version__,
            "torch": torch.__version__,
            "numpy": numpy.__version__,
            "python": platform.python_version(),
        },
        "time": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def write_provenance(out: str | os.PathLike, argv=None, **extra) -> Path:
    """Write ``provenance.json`` (command, versions, time, and ``extra``) into the directory ``out``."""
    path = Path(out) / "provenance.json"
    with atomic_write(path) as fh:
        json.dump({**provenance(argv), **extra}, fh, indent=1)
    return path


def _e(v) -> str:
    return html.escape(str(v))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(u, (int, float)) for u in v):
        return f"[{_fmt(v[0])}, {_fmt(v[1])}]"
    return str(v)


def _table(rows: list[dict], cols: list[str] | None = None, max_rows: int = 500) -> str:
    if not rows:
        return "<p>(empty)</p>"
    cols = cols or list(rows[0])
    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{_e(_fmt(r.get(c, '')))}</td>" for c in cols) + "</tr>" for r in rows[:max_rows]
    )
    more = f"<p class=meta>{len(rows) - max_rows} more rows in the data files.</p>" if len(rows) > max_rows else ""
    table = f"<div class=scroll><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>{more}"
    if len(rows) > 20:
        return f"<details><summary>{len(rows)} rows (show)</summary>{table}</details>"
    return table


def _kv(d: dict) -> str:
    return _table([{"setting": k, "value": json.dumps(v) if isinstance(v, (dict, list)) else v} for k, v in d.items()])


def _figure(path: Path, root: Path) -> str:
    data = path.read_bytes()
    mime = "image/png" if path.suffix.lower() == ".png" else "image/svg+xml"
    b64 = base64.b64encode(data).decode("ascii")
    return (
        f'<figure><img alt="{_e(path.stem)}" src="data:{mime};base64,{b64}">'
        f"<figcaption>{_e(path.relative_to(root))}</figcaption></figure>"
    )


def _figures(root: Path) -> list[Path]:
    found = [
        p
        for p in sorted(root.rglob("*"))
        if p.suffix.lower() in (".png", ".svg")
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    ]
    pngs = {p.with_suffix("") for p in found if p.suffix.lower() == ".png"}
    return [p for p in found if p.suffix.lower() == ".png" or p.with_suffix("") not in pngs]


def _load_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise InputError(f"results file {path} is not readable JSON: {err}") from None


def _study_section(res: dict) -> str:
    runs = res.get("runs") or []
    out = ["<h2>Depth study (results.json)</h2>"]
    if not runs:
        return out[0] + "<p>no runs recorded</p>"
    s = runs[0].get("settings") or {}
    data = s.get("data") or {}
    seeds = sorted({r.get("seed") for r in runs})
    out.append(
        f"<p>Data set <b>{_e(data.get('name', '?'))}</b> ({_e(data.get('n_train', '?'))} train / "
        f"{_e(data.get('n_test', '?'))} test samples), {len(runs)} runs: architectures "
        f"{_e(', '.join(dict.fromkeys(r['arch'] for r in runs)))}, training seeds {_e(seeds)}, "
        f"pair seed {_e(s.get('pair_seed', '?'))}, method {_e(runs[0].get('method', '?'))}.</p>"
    )
    if res.get("by_arch"):
        out.append("<h3>Per architecture (mean ± sd over seeds)</h3>" + _table(res["by_arch"]))
    cols = [
        "arch",
        "seed",
        "test_accuracy",
        "phi",
        "phi_ci",
        "fraction_folded",
        "fraction_ci",
        "phi_max_p2",
        "phi_max_p2_ci",
        "mean_regions",
        "n_paths",
        "n_inter_class_paths",
        "method",
    ]
    out.append(
        "<h3>Per run</h3><p class=meta>Intervals: 95% percentile bootstrap over the run's paths "
        f"({_e(s.get('n_boot', '?'))} resamples).</p>" + _table(runs, [c for c in cols if c in runs[0]])
    )
    out.append("<h3>Settings</h3>" + _kv(s))
    return "\n".join(out)


def _measure_section(path: Path, res: dict) -> str:
    keys = [
        k
        for k in (
            "model",
            "data",
            "split",
            "pairs",
            "method",
            "seed",
            "n_paths",
            "n_folded",
            "phi",
            "phi_max",
            "phi_max_p2",
            "fraction_folded",
            "mean_chi",
            "mean_regions",
        )
        if k in res
    ]
    out = [f"<h2>Global folding ({_e(path.name)})</h2>", _kv({k: res[k] for k in keys})]
    if res.get("ci95"):
        out.append("<p class=meta>95% bootstrap intervals over paths:</p>" + _kv(res["ci95"]))
    if res.get("class_pairs"):
        out.append("<h3>Per class pair</h3>" + _table(res["class_pairs"]))
    if res.get("per_layer"):
        out.append("<h3>Per layer</h3>" + _table(res["per_layer"]))
    return "\n".join(out)


def _csv_section(path: Path) -> str:
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, csv.Error) as err:
        raise InputError(f"results file {path} is not readable CSV: {err}") from None
    return f"<h3>{_e(path.name)}</h3>" + _table(rows)


def build_report(results_dir: str | os.PathLike, *, argv=None) -> str:
    """The HTML text of the report on ``results_dir``."""
    root = Path(results_dir)
    if not root.is_dir():
        raise InputError(
            f"RESULTS_DIR must be a directory written by spacefold demo, sweep, measure --out or plot, "
            f"got {str(root)!r} ({'a file' if root.exists() else 'no such directory'})"
        )
    prov_path = root / "provenance.json"
    prov = _load_json(prov_path) if prov_path.is_file() else None
    sections = []
    if (root / "results.json").is_file():
        sections.append(_study_section(_load_json(root / "results.json")))
    for p in sorted(root.rglob("measure*.json")):
        sections.append(_measure_section(p, _load_json(p)))
    # CSV tables that repeat a JSON file's content are left out
    dup = ({"results.csv"} if (root / "results.json").is_file() else set()) | (
        {"class_pairs.csv"} if (root / "measure.json").is_file() else set()
    )
    sections += [_csv_section(p) for p in sorted(root.glob("*.csv")) if p.name not in dup]
    figs = _figures(root)
    if figs:
        sections.append("<h2>Figures</h2>" + "\n".join(_figure(p, root) for p in figs))
    if not sections:
        raise InputError(
            f"RESULTS_DIR {root} holds nothing to report: no results.json, measure.json, CSV table or "
            "figure (write one with spacefold demo, sweep, measure --out or plot)"
        )
    me = provenance(argv)
    prov_html = (
        "<h2>Provenance</h2>"
        + (
            "<p>Recorded with the results (provenance.json):</p>" + _kv(prov)
            if prov
            else "<p>The results directory records no command or versions (no provenance.json); the settings and "
            "seeds above are those stored with each result.</p>"
        )
        + "<p>This report:</p>"
        + _kv(me)
    )
    title = f"spacefold report: {root.resolve().name}"
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        f"<meta name=viewport content='width=device-width,initial-scale=1'><title>{_e(title)}</title>"
        f"<style>{_CSS}</style></head><body>\n<h1>{_e(title)}</h1>\n"
        f"<p class=meta>Results from <code>{_e(root.resolve())}</code>, report made {_e(me['time'])} "
        f"with spacefold {_e(me['versions']['spacefold'])}. <span id=figure-check></span></p>\n"
        + "\n".join(sections)
        + "\n"
        + prov_html
        + "\n"
        + _CHECK
        + "\n</body></html>\n"
    )


def write_report(results_dir: str | os.PathLike, out: str | os.PathLike, *, argv=None) -> Path:
    """Write the report on ``results_dir`` to ``out`` (atomically); returns ``out``."""
    text = build_report(results_dir, argv=argv)
    out = Path(out)
    with atomic_write(out, "wb") as fh:  # a file name that is not UTF-8 shows "?" for its bad bytes
        fh.write(text.encode("utf-8", "replace"))
    return out
