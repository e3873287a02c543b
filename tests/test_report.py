"""spacefold report: a self-contained HTML file that loads in headless Chromium with every figure shown."""

import json
import re
import shutil
import subprocess

import pytest

from spacefold.cli import main
from spacefold.errors import InputError
from spacefold.viz.report import build_report, write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _results_dir(tmp_path):
    """A results directory as measure --out and plot write it (small, fast)."""
    d = tmp_path / "res"
    assert main(["plot", "path", "--cantornet", "2", "-o", str(d / "path.png")]) == 0
    assert main(["plot", "plane", "--cantornet", "2", "-o", str(d / "plots" / "plane.svg")]) == 0
    (d / "measure.json").write_text(
        json.dumps(
            {
                "model": "m.pt",
                "data": "digits",
                "split": "test",
                "pairs": "inter-class",
                "method": "exact",
                "seed": 3,
                "n_paths": 10,
                "n_folded": 4,
                "phi": 0.25,
                "phi_max": 0.5,
                "phi_max_p2": 0.4,
                "fraction_folded": 0.4,
                "mean_chi": 0.1,
                "mean_regions": 12.0,
                "class_pairs": [{"a": 0, "b": 1, "n_paths": 10, "phi": 0.25, "fraction_folded": 0.4, "phi_max": 0.5}],
            }
        )
    )
    (d / "class_pairs.csv").write_text("a,b,n_paths\n0,1,10\n")
    (d / "provenance.json").write_text(
        json.dumps({"command": "spacefold measure --model m.pt --data digits", "versions": {"spacefold": "0.1.0"}})
    )
    return d


def test_report_is_self_contained(tmp_path):
    d = _results_dir(tmp_path)
    out = tmp_path / "report.html"
    assert main(["report", str(d), "-o", str(out)]) == 0
    text = out.read_text()
    # nothing fetched from anywhere: no URL, no src/href other than inline data
    assert not re.search(r"https?://", text)
    assert all(s.startswith("data:image/") for s in re.findall(r'src="([^"]*)"', text))
    assert text.count("<img") == 2  # path.png and plane.svg (no PNG beside it)
    for needle in ("spacefold measure --model m.pt --data digits", "seed", "phi_max_p2", "Per class pair", "torch"):
        assert needle in text


def test_nothing_to_report(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="nothing to report"):
        build_report(tmp_path / "empty")
    assert main(["report", str(tmp_path / "empty"), "-o", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nothing to report" in err[0]
    assert not (tmp_path / "r.html").exists()
    assert main(["report", str(tmp_path / "missing"), "-o", str(tmp_path / "r.html")]) == 2


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(tmp_path):
    d = _results_dir(tmp_path)
    out = write_report(d, tmp_path / "report.html")
    profile = tmp_path / "profile"
    profile.mkdir()
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=5000",
        "--dump-dom",
        out.resolve().as_uri(),
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    m = re.search(r'id="figure-check"[^>]*data-shown="(\d+)"[^>]*data-total="(\d+)"', run.stdout)
    if m is None:
        m = re.search(r'id="figure-check"[^>]*data-total="(\d+)"[^>]*data-shown="(\d+)"', run.stdout)
        shown, total = (m.group(2), m.group(1)) if m else (None, None)
    else:
        shown, total = m.groups()
    assert m is not None, "the page's load handler did not run:\n" + run.stdout[-1500:]
    assert int(total) == 2 and int(shown) == 2
    console = [ln for ln in run.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    assert not console, console


def test_report_of_a_measure_run(tmp_path):
    """measure --out writes provenance.json beside its tables; the report shows both."""
    import spacefold as sf

    ck = tmp_path / "m.pt"
    sf.save_checkpoint(sf.mlp("2x6", 64, 10), ck)
    out = tmp_path / "run"
    assert (
        main(
            [
                "measure",
                "--model",
                str(ck),
                "--data",
                "digits",
                "--max-pairs",
                "40",
                "--seed",
                "7",
                "--no-progress",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    prov = json.loads((out / "provenance.json").read_text())
    assert set(prov["versions"]) >= {"spacefold", "torch", "numpy", "python"}
    text = build_report(out)
    res = json.loads((out / "measure.json").read_text())
    assert f"{res['phi']:.4g}" in text and prov["versions"]["torch"] in text
    assert "Per class pair" in text and "<img" not in text
