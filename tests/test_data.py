"""Data loaders: IDX files (gzipped or not, torchvision layout), digits, synthetic sets, .npz, errors."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from spacefold.data.datasets import (
    MNIST_FILES,
    DataError,
    load_dataset,
    load_digits,
    load_mnist,
    make_synthetic,
    read_idx,
    stratified_indices,
    write_idx,
)

# The real MNIST files, where the machine has them: SPACEFOLD_DATA names their directory.
MNIST_DIR = Path(os.environ.get("SPACEFOLD_DATA", "")) if os.environ.get("SPACEFOLD_DATA") else None


def _fake_mnist(root: Path, n_train=30, n_test=12, gz=True, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": (np.arange(n_train) % 10).astype(np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": (np.arange(n_test) % 10).astype(np.uint8),
    }
    root.mkdir(parents=True, exist_ok=True)
    for k, a in arrays.items():
        write_idx(root / (MNIST_FILES[k] + (".gz" if gz else "")), a)
    return arrays


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("gz", [True, False])
def test_idx_roundtrip(tmp_path, dtype, gz):
    a = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    if dtype == np.uint8:
        a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    p = tmp_path / ("a.idx" + (".gz" if gz else ""))
    write_idx(p, a)
    with open(p, "rb") as fh:
        assert (fh.read(2) == b"\x1f\x8b") == gz
    b = read_idx(p)
    assert b.shape == a.shape and b.dtype == a.dtype
    np.testing.assert_array_equal(a, b)


def test_idx_header_bytes(tmp_path):
    # The IDX header of a (2, 3) uint8 array is 0 0 8 2, then the sizes big-endian.
    p = tmp_path / "x.idx"
    write_idx(p, np.zeros((2, 3), np.uint8))
    assert p.read_bytes()[:12] == bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3])


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("layout", ["", "MNIST/raw"])
def test_load_mnist_layouts(tmp_path, gz, layout):
    arrays = _fake_mnist(tmp_path / layout, gz=gz)
    d = load_mnist(tmp_path)
    assert d.x_train.shape == (30, 784) and d.x_test.shape == (12, 784)
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    np.testing.assert_allclose(d.x_train.numpy(), arrays["train_images"].reshape(30, -1) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(d.y_test.numpy(), arrays["test_labels"])
    assert float(d.x_train.min()) >= 0.0 and float(d.x_train.max()) <= 1.0
    assert d.n_classes == 10
    # a directory path given as the data set name loads the same files
    assert torch.equal(load_dataset(str(tmp_path)).x_test, d.x_test)


def test_missing_mnist_names_where_it_looked(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_mnist(tmp_path)
    msg = str(err.value)
    assert str(tmp_path) in msg and "train-images-idx3-ubyte" in msg and "MNIST/raw" in msg


def test_missing_one_file(tmp_path):
    _fake_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        load_mnist(tmp_path)


def test_truncated_file_is_a_clear_error(tmp_path):
    _fake_mnist(tmp_path, gz=False)
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(DataError, match="corrupt or truncated") as err:
        load_mnist(tmp_path)
    assert str(p) in str(err.value)


def test_bad_gzip_and_bad_magic(tmp_path):
    _fake_mnist(tmp_path, gz=True)
    p = tmp_path / "train-labels-idx1-ubyte.gz"
    p.write_bytes(p.read_bytes()[:20])  # cut inside the gzip stream
    with pytest.raises(DataError, match="train-labels"):
        load_mnist(tmp_path)
    q = tmp_path / "junk.idx"
    q.write_bytes(b"hello world, not idx")
    with pytest.raises(DataError, match="magic"):
        read_idx(q)
    with gzip.open(tmp_path / "junk2.gz", "wb") as fh:
        fh.write(bytes([0, 0, 8, 1, 0, 0, 0, 5, 1, 2]))  # announces 5 bytes, holds 2
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "junk2.gz")


def test_mismatched_counts(tmp_path):
    _fake_mnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(7, np.uint8))
    with pytest.raises(DataError, match="do not match"):
        load_mnist(tmp_path)


def test_mnist_needs_a_directory(monkeypatch):
    monkeypatch.delenv("SPACEFOLD_DATA", raising=False)
    with pytest.raises(ValueError, match="data_dir"):
        load_mnist(None)


@pytest.mark.skipif(
    MNIST_DIR is None or not MNIST_DIR.is_dir(),
    reason="MNIST IDX files not present (set SPACEFOLD_DATA to their directory)",
)
def test_real_mnist():
    d = load_mnist(MNIST_DIR)
    assert d.x_train.shape == (60000, 784) and d.x_test.shape == (10000, 784)
    assert sorted(d.y_test.unique().tolist()) == list(range(10))
    assert 0.0 <= float(d.x_test.min()) and float(d.x_test.max()) <= 1.0


def test_digits():
    d = load_digits(seed=0)
    assert d.n_features == 64 and d.n_classes == 10
    assert len(d.y_train) + len(d.y_test) == 1797
    assert abs(len(d.y_test) - 0.25 * 1797) <= 1
    assert 0.0 <= float(d.x_train.min()) and float(d.x_train.max()) <= 1.0
    # stratified: every class in the test split in proportion
    counts = torch.bincount(d.y_test, minlength=10)
    assert counts.min() >= 40 and counts.max() <= 50
    assert torch.equal(load_digits(seed=0).y_test, d.y_test)
    assert not torch.equal(load_digits(seed=1).x_test, d.x_test)


@pytest.mark.parametrize("name", ["blobs", "spirals"])
def test_synthetic_seeded(name):
    a = make_synthetic(name, n_samples=200, n_features=3, n_classes=4, seed=3)
    b = make_synthetic(name, n_samples=200, n_features=3, n_classes=4, seed=3)
    c = make_synthetic(name, n_samples=200, n_features=3, n_classes=4, seed=4)
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.x_train, c.x_train)
    assert a.n_features == 3 and a.n_classes == 4
    assert len(a.y_train) + len(a.y_test) == 200
    assert set(a.y_train.unique().tolist()) == {0, 1, 2, 3}


def test_synthetic_bad_args():
    with pytest.raises(ValueError, match="name"):
        make_synthetic("moons")
    with pytest.raises(ValueError, match="n_samples"):
        make_synthetic("blobs", n_samples=3, n_classes=3)


def test_stratified_indices():
    y = torch.tensor([0] * 80 + [1] * 20)
    idx = stratified_indices(y, 10, seed=0)
    assert idx.numel() == 10 and idx.unique().numel() == 10
    assert int((y[idx] == 1).sum()) == 2


def test_npz(tmp_path):
    p = tmp_path / "d.npz"
    x = np.random.default_rng(0).normal(size=(40, 2, 3))
    np.savez(p, x=x, y=np.arange(40) % 4)
    d = load_dataset(str(p))
    assert d.n_features == 6 and d.n_classes == 4 and len(d.y_train) + len(d.y_test) == 40
    q = tmp_path / "bad.npz"
    np.savez(q, a=x)
    with pytest.raises(DataError, match="must hold arrays"):
        load_dataset(str(q))


def test_unknown_data_set():
    with pytest.raises(ValueError, match="cifar"):
        load_dataset("cifar")
    with pytest.raises(TypeError, match="name"):
        load_dataset(3)


def test_download_without_torchvision_is_a_clear_error(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_torchvision(name, *args, **kwargs):
        if name.startswith("torchvision"):
            raise ImportError("no torchvision")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torchvision)
    with pytest.raises(FileNotFoundError, match="torchvision is not installed"):
        load_mnist(tmp_path, download=True)
