"""Bad data files: every defect gets one clear DataError naming the file, and fuzzed files
(random or corrupted bytes of IDX, gzip and .npz files) either load or raise exactly that."""

from __future__ import annotations

import gzip
import io
import os
import zipfile

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spacefold.data.datasets import MNIST_FILES, DataError, Dataset, load_dataset, load_mnist, read_idx, write_idx
from spacefold.errors import InputError

# SPACEFOLD_FUZZ=5000 for a longer search.
FUZZ = settings(
    max_examples=int(os.environ.get("SPACEFOLD_FUZZ", 150)),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def _mnist(root, n_train=20, n_test=10, train_shape=(28, 28), test_shape=(28, 28), dtype=np.uint8, scale=255):
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": (rng.random((n_train, *train_shape)) * scale).astype(dtype),
        "train_labels": (np.arange(n_train) % 10).astype(np.uint8),
        "test_images": (rng.random((n_test, *test_shape)) * scale).astype(dtype),
        "test_labels": (np.arange(n_test) % 10).astype(np.uint8),
    }
    root.mkdir(parents=True, exist_ok=True)
    for k, a in arrays.items():
        write_idx(root / (MNIST_FILES[k] + ".gz"), a)
    return arrays


def _idx_bytes(a: np.ndarray, gz: bool) -> bytes:
    buf = io.BytesIO()
    dt = {np.dtype(np.uint8): 8, np.dtype(np.float32): 0x0D}[a.dtype]
    data = bytes([0, 0, dt, a.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in a.shape)
    data += a.astype(a.dtype.newbyteorder(">")).tobytes()
    if not gz:
        return data
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as fh:
        fh.write(data)
    return buf.getvalue()


def _npz_bytes(compressed: bool, **arrays) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


# --------------------------------------------------------------------------- one test per defect


def test_float_idx_images_are_not_divided_by_255(tmp_path):
    arrays = _mnist(tmp_path, dtype=np.float32, scale=1.0)
    d = load_mnist(tmp_path)
    np.testing.assert_array_equal(d.x_train.numpy(), arrays["train_images"].reshape(20, -1))
    assert float(d.x_train.max()) > 0.5  # scaled by 1/255 they would all be below 0.004


def test_integer_idx_images_are_scaled(tmp_path):
    arrays = _mnist(tmp_path)
    np.testing.assert_allclose(
        load_mnist(tmp_path).x_test.numpy(), arrays["test_images"].reshape(10, -1) / 255.0, rtol=1e-6
    )


def test_train_and_test_images_of_different_shapes(tmp_path):
    _mnist(tmp_path, test_shape=(14, 14))
    with pytest.raises(DataError, match=r"28x28.*14x14.*same size") as err:
        load_mnist(tmp_path)
    assert "t10k-images" in str(err.value) and "train-images" in str(err.value)


def test_corrupt_deflate_stream(tmp_path):
    _mnist(tmp_path)
    p = tmp_path / "train-images-idx3-ubyte.gz"
    raw = bytearray(p.read_bytes())
    raw[200:260] = bytes(60)  # inside the deflate stream, gzip framing intact
    p.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz"):
        load_mnist(tmp_path)


def test_idx_dims_that_overflow(tmp_path):
    p = tmp_path / "big.idx"
    p.write_bytes(bytes([0, 0, 0x0E, 4]) + b"\xff\xff\xff\xff" * 4 + bytes(16))  # 2^128 float64 values claimed
    with pytest.raises(DataError, match=r"big\.idx.*truncated"):
        read_idx(p)
    g = tmp_path / "big.idx.gz"
    g.write_bytes(gzip.compress(p.read_bytes()))
    with pytest.raises(DataError, match=r"big\.idx\.gz.*truncated"):
        read_idx(g)


def test_idx_with_trailing_bytes(tmp_path):
    p = tmp_path / "t.idx"
    p.write_bytes(_idx_bytes(np.zeros((2, 3), np.uint8), gz=False) + b"extra")
    with pytest.raises(DataError, match=r"t\.idx.*holds more"):
        read_idx(p)


@pytest.mark.parametrize(
    "content", [b"hello, not a zip", b"PK\x03\x04 truncated zip", _idx_bytes(np.zeros(3, np.uint8), gz=False)]
)
def test_npz_that_is_not_a_zip(tmp_path, content):
    p = tmp_path / "d.npz"
    p.write_bytes(content)
    with pytest.raises(DataError, match=r"d\.npz"):
        load_dataset(str(p))


def test_npy_saved_as_npz(tmp_path):
    p = tmp_path / "plain.npz"
    with open(p, "wb") as fh:
        np.save(fh, np.zeros((4, 2)))
    with pytest.raises(DataError, match=r"plain\.npz.*not a zip"):
        load_dataset(str(p))


def test_labels_of_a_billion(tmp_path):
    p = tmp_path / "big_labels.npz"
    np.savez(p, x=np.zeros((6, 2)), y=np.array([0, 1, 0, 1, 0, 10**9]))
    with pytest.raises(DataError, match=r"big_labels\.npz.*label 1000000000"):
        load_dataset(str(p))


def test_npz_header_claiming_a_huge_array(tmp_path):
    p = tmp_path / "claims.npz"
    member = io.BytesIO()
    np.lib.format.write_array_header_1_0(member, {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)})
    member.write(bytes(64))  # a valid archive (CRC right) whose x claims 8 TB
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("x.npy", member.getvalue())
        zf.writestr("y.npy", _npz_member(np.arange(4)))
    with pytest.raises(DataError, match=r"claims\.npz.*'x' announces shape \(1000000, 1000000\)"):
        load_dataset(str(p))


def _npz_member(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a)
    return buf.getvalue()


@pytest.mark.parametrize(
    "bad,needle",
    [
        ({"x": np.array([[0.0, np.nan]] * 4), "y": np.arange(4) % 2}, "finite"),
        ({"x": np.array([[1e39, 0.0]] * 4), "y": np.arange(4) % 2}, "finite"),
        ({"x": np.ones((4, 2)) + 1j, "y": np.arange(4) % 2}, "real numbers"),
        ({"x": np.array([["a", "b"]] * 4), "y": np.arange(4) % 2}, "real numbers"),
        ({"x": np.ones((4, 2)), "y": np.array([0.0, 1.0, 0.0, 1.0])}, "integers"),
        ({"x": np.ones((4, 2)), "y": np.array([0, -1, 0, 1])}, "non-negative"),
        ({"x": np.ones((1, 2)), "y": np.array([0])}, "at least 2 samples"),
        ({"x": np.ones((4, 0)), "y": np.arange(4) % 2}, "at least one feature"),
    ],
)
def test_npz_contents(tmp_path, bad, needle):
    p = tmp_path / "c.npz"
    np.savez(p, **bad)
    with pytest.raises(DataError, match=needle) as err:
        load_dataset(str(p))
    assert str(p) in str(err.value)


def test_npz_with_objects_is_never_unpickled(tmp_path):
    p = tmp_path / "o.npz"
    np.savez(p, x=np.array([object(), object()], dtype=object), y=np.arange(2))
    with pytest.raises(DataError, match=r"o\.npz.*objects"):
        load_dataset(str(p))


def test_fortran_order_npz_loads(tmp_path):
    p = tmp_path / "f.npz"
    x = np.asfortranarray(np.arange(24, dtype=np.float32).reshape(8, 3))
    np.savez(p, x=x, y=np.arange(8) % 2)
    d = load_dataset(str(p))
    got = torch.cat([d.x_train, d.x_test]).numpy()
    assert sorted(map(tuple, got)) == sorted(map(tuple, np.ascontiguousarray(x)))


def test_data_error_is_an_input_error():
    assert issubclass(DataError, InputError)


# --------------------------------------------------------------------------- fuzzing


def _loads_or_names_the_file(load, path):
    try:
        out = load(path)
    except InputError as err:
        assert str(path) in str(err), str(err)
        return None
    return out


def _mutate(data: bytes, edits, cut) -> bytes:
    b = bytearray(data)
    for pos, val in edits:
        if b:
            b[pos % len(b)] = val
    if cut is not None:
        b = b[: cut % (len(b) + 1)]
    return bytes(b)


edits = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6)
cuts = st.none() | st.integers(0, 10**6)


@FUZZ
@given(st.binary(max_size=300), st.booleans())
def test_fuzz_idx_random_bytes(tmp_path, data, gz):
    p = tmp_path / ("r.idx.gz" if gz else "r.idx")
    p.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    a = _loads_or_names_the_file(read_idx, p)
    assert a is None or isinstance(a, np.ndarray)


@FUZZ
@given(st.booleans(), st.sampled_from([np.uint8, np.float32]), edits, cuts)
def test_fuzz_idx_corrupted(tmp_path, gz, dtype, ed, cut):
    good = _idx_bytes(np.arange(24).reshape(2, 3, 4).astype(dtype), gz)
    p = tmp_path / ("c.idx.gz" if gz else "c.idx")
    p.write_bytes(_mutate(good, ed, cut))
    a = _loads_or_names_the_file(read_idx, p)
    assert a is None or isinstance(a, np.ndarray)


@FUZZ
@given(st.sampled_from(list(MNIST_FILES)), edits, cuts)
def test_fuzz_mnist_directory(tmp_path_factory, which, ed, cut):
    root = tmp_path_factory.mktemp("m")
    _mnist(root, n_train=12, n_test=6, train_shape=(4, 4), test_shape=(4, 4))
    p = root / (MNIST_FILES[which] + ".gz")
    p.write_bytes(_mutate(p.read_bytes(), ed, cut))
    d = _loads_or_names_the_file(load_mnist, root)
    assert d is None or isinstance(d, Dataset) and bool(torch.isfinite(d.x_train).all())


@FUZZ
@given(st.booleans(), st.booleans(), edits, cuts)
def test_fuzz_npz_corrupted(tmp_path, compressed, split, ed, cut):
    rng = np.random.default_rng(1)
    x, y = rng.random((8, 3)), np.arange(8) % 2
    arrays = {"x_train": x[:6], "y_train": y[:6], "x_test": x[6:], "y_test": y[6:]} if split else {"x": x, "y": y}
    p = tmp_path / "c.npz"
    p.write_bytes(_mutate(_npz_bytes(compressed, **arrays), ed, cut))
    d = _loads_or_names_the_file(lambda q: load_dataset(str(q)), p)
    if d is not None:
        assert isinstance(d, Dataset) and d.x_train.shape[1] == d.x_test.shape[1]
        assert bool(torch.isfinite(d.x_train).all()) and int(d.y_train.max()) < d.n_classes


@FUZZ
@given(st.binary(max_size=400))
def test_fuzz_npz_random_bytes(tmp_path, data):
    p = tmp_path / "r.npz"
    p.write_bytes(b"PK\x03\x04" + data if data[:1] == b"\x00" else data)
    d = _loads_or_names_the_file(lambda q: load_dataset(str(q)), p)
    assert d is None or isinstance(d, Dataset)


def test_bad_deflate_right_after_the_gzip_header(tmp_path):
    p = tmp_path / "z.gz"
    p.write_bytes(b"\x1f\x8b\x08\x00" + bytes(6) + b"\xff" * 40)  # zlib.error inside gzip
    with pytest.raises(DataError, match=r"z\.gz"):
        read_idx(p)
