"""The tutorial notebooks run top to bottom in a fresh kernel, with no error and no warning in their outputs."""

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")
pytest.importorskip("pandas")
pytest.importorskip("sklearn")

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def test_there_are_tutorials():
    assert len(NOTEBOOKS) >= 4


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_clean(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, naming the cell, on any exception
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            assert out.get("name") != "stderr", f"cell {i} of {path.name} wrote to stderr: {out.get('text', '')[:500]}"
    # every figure that is a cell's value is shown as an image, not as "<Figure ...>"
    shown = [
        o
        for c in nb.cells
        for o in c.get("outputs", [])
        if "text/plain" in o.get("data", {}) and o["data"]["text/plain"].startswith("<Figure")
    ]
    assert all("image/png" in o["data"] for o in shown)
