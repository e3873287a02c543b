"""Shared helpers: files written atomically with the user's umask, strict JSON."""

from __future__ import annotations

import json
import math
import os
import stat

import pytest

from spacefold._util import atomic_path, atomic_write, current_umask, json_dumps, json_safe


@pytest.fixture
def umask():
    """Set the process umask for one test and restore it after."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda m: os.umask(m)
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002, 0o000, 0o027])
def test_files_get_the_umask_mode(tmp_path, umask, mask):
    umask(mask)
    assert current_umask() == mask
    with atomic_write(tmp_path / "a.txt") as fh:
        fh.write("x")
    with atomic_path(tmp_path / "sub" / "b.bin") as tmp:
        with open(tmp, "wb") as fh:
            fh.write(b"y")
    plain = tmp_path / "plain"
    plain.write_text("z")  # what any other file the user writes gets
    for p in (tmp_path / "a.txt", tmp_path / "sub" / "b.bin"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~mask == stat.S_IMODE(plain.stat().st_mode)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_write(tmp_path / "r.json") as fh:
            fh.write("half")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_json_is_strict():
    obj = {"a": float("nan"), "b": [1.0, float("inf"), (float("-inf"), 2)], "c": {"d": 0.5, "e": "s", "f": None}}
    text = json_dumps(obj)
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": None, "b": [1.0, None, [None, 2]], "c": {"d": 0.5, "e": "s", "f": None}}
    assert json_safe(math.pi) == math.pi and json_safe(3) == 3


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_checkpoints_and_idx_files_get_the_umask_mode(tmp_path, umask, mask):
    import numpy as np

    from spacefold.data import write_idx
    from spacefold.models import mlp, save_checkpoint

    umask(mask)
    save_checkpoint(mlp("1x3", 2, 2), tmp_path / "m.pt")
    write_idx(tmp_path / "a.idx.gz", np.zeros((2, 2), np.uint8))
    for name in ("m.pt", "m.pt.json", "a.idx.gz"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~mask, name
