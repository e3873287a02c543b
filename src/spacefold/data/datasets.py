"""Data sets for folding studies: MNIST from IDX files, scikit-learn's digits, synthetic sets.

Every loader returns a :class:`Dataset`: float32 inputs flattened to
``(n_samples, n_features)`` and scaled to [0, 1] (synthetic sets: centred, unit
scale), int64 labels, and a train/test split. Nothing here downloads unless asked
(``download=True``), and nothing depends on a fixed folder: MNIST is read from the
directory the caller names.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .._util import check_int
from ..errors import InputError, InputTypeError, MissingExtraError

__all__ = [
    "Dataset",
    "DataError",
    "DATASETS",
    "load_dataset",
    "load_mnist",
    "load_digits",
    "make_synthetic",
    "read_idx",
    "write_idx",
]

DATASETS = ("mnist", "digits", "blobs", "spirals")

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class DataError(InputError):
    """A data file is unreadable or malformed; the message names the file."""


@dataclass(frozen=True)
class Dataset:
    """Inputs ``(n, n_features)`` float32 and labels ``(n,)`` int64, split in train and test."""

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    n_classes: int
    source: str = ""

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    def split(self, which: str) -> tuple[Tensor, Tensor]:
        """``(x, y)`` of ``"train"`` or ``"test"``."""
        if which == "train":
            return self.x_train, self.y_train
        if which == "test":
            return self.x_test, self.y_test
        raise InputError(f"which must be 'train' or 'test', got {which!r}")

    def subset(self, n_train: int | None = None, n_test: int | None = None, seed: int = 0) -> Dataset:
        """A stratified random subset of at most ``n_train`` / ``n_test`` samples (seeded)."""
        xt, yt = self.x_train, self.y_train
        xs, ys = self.x_test, self.y_test
        if n_train is not None and n_train < len(yt):
            idx = stratified_indices(yt, n_train, seed)
            xt, yt = xt[idx], yt[idx]
        if n_test is not None and n_test < len(ys):
            idx = stratified_indices(ys, n_test, seed + 1)
            xs, ys = xs[idx], ys[idx]
        return Dataset(self.name, xt, yt, xs, ys, self.n_classes, self.source)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "n_train": int(self.y_train.numel()),
            "n_test": int(self.y_test.numel()),
            "n_features": self.n_features,
            "n_classes": self.n_classes,
            "source": self.source,
        }


def stratified_indices(y: Tensor, n: int, seed: int = 0) -> Tensor:
    """``n`` indices of ``y`` drawn without replacement, each class in proportion (seeded), sorted."""
    check_int(n, "n", 1)
    y = torch.as_tensor(y)
    if n >= y.numel():
        return torch.arange(y.numel())
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(y.numel(), generator=g)
    # Sorting a random permutation by label and taking every k-th keeps proportions.
    order = perm[torch.argsort(y[perm], stable=True)]
    pick = torch.linspace(0, y.numel() - 1, n).round().long()
    return torch.sort(order[pick]).values


# --------------------------------------------------------------------------- IDX files


def _open(path: Path):
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rb")
    return open(path, "rb")


#: Errors of reading a corrupt file: gzip and zip framing, deflate streams, truncation.
_CORRUPT = (OSError, EOFError, zlib.error, zipfile.BadZipFile, struct.error, NotImplementedError, OverflowError)

_CHUNK = 1 << 24


def _read_at_most(fh, n: int) -> bytes:
    """Up to ``n`` bytes of ``fh`` in bounded chunks: memory follows what the file holds,
    never what a header claims."""
    parts, got = [], 0
    while got < n:
        part = fh.read(min(_CHUNK, n - got))
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (gzipped or not) into a numpy array.

    Raises :class:`DataError` naming the file when it is truncated, has a bad
    header, trailing bytes, a corrupt gzip stream, or is not gzip/IDX at all.
    The data are read in bounded chunks, so a header announcing more than the
    file holds costs no memory.
    """
    path = Path(path)
    try:
        with _open(path) as fh:
            head = _read_at_most(fh, 4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_DTYPES:
                raise DataError(f"{path} is not an IDX file (bad magic number)")
            dtype = np.dtype(_IDX_DTYPES[head[2]])
            ndim = head[3]
            dims = _read_at_most(fh, 4 * ndim)
            if ndim == 0 or len(dims) < 4 * ndim:
                raise DataError(f"{path} is not a valid IDX file (bad header)")
            shape = struct.unpack(f">{ndim}I", dims)
            if 0 in shape:
                raise DataError(f"{path} holds no data: its header announces shape {shape}")
            expected = math.prod(shape) * dtype.itemsize
            raw = _read_at_most(fh, expected + 1)
    except (FileNotFoundError, DataError):
        raise
    except _CORRUPT as err:
        raise DataError(f"cannot read IDX file {path}: {' '.join(str(err).split()) or type(err).__name__}") from None
    if len(raw) != expected:
        held = "more" if len(raw) > expected else f"{len(raw)} bytes"
        raise DataError(
            f"{path} is corrupt or truncated: header announces shape {shape} ({expected} bytes of data), "
            f"file holds {held}"
        )
    return np.frombuffer(raw, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> None:
    """Write ``array`` as an IDX file (gzipped when ``compress`` or the name ends in .gz), atomically."""
    from .._util import atomic_path

    array = np.asarray(array)
    codes = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_DTYPES.items()}
    dt = array.dtype.newbyteorder("=")
    if dt not in codes:
        raise InputTypeError(f"array must have an IDX dtype (uint8, int8, int16, int32, float32, float64), got {dt}")
    code = codes[dt]
    data = (
        bytes([0, 0, code, array.ndim])
        + struct.pack(f">{array.ndim}I", *array.shape)
        + array.astype(np.dtype(_IDX_DTYPES[code])).tobytes()
    )
    path = Path(path)
    if compress is None:
        compress = path.suffix == ".gz"
    with atomic_path(path) as tmp:
        if compress:
            with gzip.open(tmp, "wb") as fh:
                fh.write(data)
        else:
            Path(tmp).write_bytes(data)


def _mnist_dirs(data_dir: Path) -> list[Path]:
    # The plain layout, and the ones torchvision writes (root/MNIST/raw).
    return [data_dir, data_dir / "MNIST" / "raw", data_dir / "raw", data_dir / "mnist"]


def _find_mnist_file(data_dir: Path, stem: str) -> Path | None:
    for d in _mnist_dirs(data_dir):
        for name in (stem, stem + ".gz", stem.replace("-idx", ".idx")):
            p = d / name
            if p.is_file():
                return p
    return None


def _mnist_missing(data_dir: Path, missing: list[str]) -> FileNotFoundError:
    looked = ", ".join(str(d) for d in _mnist_dirs(data_dir))
    return FileNotFoundError(
        f"MNIST files not found: {', '.join(missing)} (with or without .gz); looked in {looked}. "
        "Pass --data-dir with the four IDX files (train-images-idx3-ubyte.gz, ...), "
        "or use download=True with torchvision installed"
    )


def load_mnist(data_dir: str | os.PathLike | None = None, download: bool = False) -> Dataset:
    """MNIST (60k train, 10k test) from the standard IDX files in ``data_dir``.

    The files may be gzipped or not, and may sit in ``data_dir`` itself or in
    ``data_dir/MNIST/raw`` (torchvision's layout). With ``download=True`` and
    torchvision installed, missing files are downloaded into ``data_dir`` first.
    Integer images (the standard uint8 grey levels) are scaled to [0, 1]; float
    images are taken as they are. Inputs are flattened to 784 features. Malformed
    files raise :class:`DataError` naming the file.
    """
    if data_dir is None:
        data_dir = os.environ.get("SPACEFOLD_DATA", "")
        if not data_dir:
            raise InputError(
                "data_dir must name the directory holding the MNIST IDX files, got None "
                "(pass --data-dir DIR or set SPACEFOLD_DATA)"
            )
    data_dir = Path(data_dir).expanduser()
    files = {k: _find_mnist_file(data_dir, v) for k, v in MNIST_FILES.items()}
    missing = [MNIST_FILES[k] for k, p in files.items() if p is None]
    if missing and download:
        _download_mnist(data_dir)
        files = {k: _find_mnist_file(data_dir, v) for k, v in MNIST_FILES.items()}
        missing = [MNIST_FILES[k] for k, p in files.items() if p is None]
    if missing:
        raise _mnist_missing(data_dir, missing)
    found = {k: p for k, p in files.items() if p is not None}  # all of them: none is missing
    arrays = {k: read_idx(p) for k, p in found.items()}
    for split in ("train", "test"):
        img, lab = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        img_file, lab_file = found[f"{split}_images"], found[f"{split}_labels"]
        if img.ndim != 3 or lab.ndim != 1 or img.shape[0] != lab.shape[0]:
            raise DataError(
                f"MNIST {split} files in {img_file.parent} do not match: images {img.shape}, "
                f"labels {lab.shape}; expected (n, 28, 28) and (n,)"
            )
        if img.shape[0] == 0:
            raise DataError(f"MNIST {split} images in {img_file} must hold at least one image, got none")
        if not np.issubdtype(lab.dtype, np.integer):
            raise DataError(f"MNIST {split} labels in {lab_file} must be integers, got IDX type {lab.dtype}")
        if lab.min() < 0 or lab.max() > 9:
            raise DataError(f"MNIST {split} labels in {lab_file} must be digits 0-9, got {lab.min()} to {lab.max()}")
        if np.issubdtype(img.dtype, np.integer) and (img.min() < 0 or img.max() > 255):
            raise DataError(
                f"MNIST {split} images in {img_file} must be integer grey levels 0-255 or floats, "
                f"got integers {img.min()} to {img.max()}"
            )
        if np.issubdtype(img.dtype, np.floating) and not np.isfinite(img).all():
            raise DataError(f"MNIST {split} images in {img_file} must be finite, got NaN or inf")
    tr, te = arrays["train_images"], arrays["test_images"]
    if tr.shape[1:] != te.shape[1:]:
        raise DataError(
            f"MNIST train images in {files['train_images']} are {tr.shape[1]}x{tr.shape[2]} but test "
            f"images in {files['test_images']} are {te.shape[1]}x{te.shape[2]}; they must be the same size"
        )

    def x(a):
        # Integer grey levels 0-255 are scaled to [0, 1]; float images are taken as they are.
        if np.issubdtype(a.dtype, np.floating):
            return torch.from_numpy(a.reshape(a.shape[0], -1).astype(np.float32))
        return torch.from_numpy(a.reshape(a.shape[0], -1).astype(np.float32) / 255.0)

    def y(a):
        return torch.from_numpy(a.astype(np.int64))

    return Dataset(
        "mnist",
        x(arrays["train_images"]),
        y(arrays["train_labels"]),
        x(arrays["test_images"]),
        y(arrays["test_labels"]),
        10,
        source="MNIST IDX files",
    )


def _download_mnist(data_dir: Path) -> None:
    try:
        import torchvision  # noqa: F401
        from torchvision.datasets import MNIST
    except ImportError:
        raise FileNotFoundError(
            f"MNIST files not found in {data_dir} and torchvision is not installed to download them; "
            "pip install torchvision, or place the four IDX files there"
        ) from None
    try:
        MNIST(root=str(data_dir), train=True, download=True)
        MNIST(root=str(data_dir), train=False, download=True)
    except Exception as err:  # network errors come in many types
        raise FileNotFoundError(f"MNIST download into {data_dir} failed: {err}") from None


# --------------------------------------------------------------------------- digits, synthetic


def _need_sklearn(what: str):
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise MissingExtraError(f"{what} needs scikit-learn: pip install 'spacefold[data]'") from None


def _split(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    if not 0.0 < test_fraction < 1.0:
        raise InputError(f"test_fraction must be in (0, 1), got {test_fraction}")
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    yt = torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))
    n_test = max(1, int(round(test_fraction * len(y))))
    test = stratified_indices(yt, n_test, seed)
    mask = torch.ones(len(y), dtype=torch.bool)
    mask[test] = False
    return xt[mask], yt[mask], xt[test], yt[test]


def load_digits(test_fraction: float = 0.25, seed: int = 0) -> Dataset:
    """scikit-learn's 8x8 digits (1797 images, 10 classes), scaled to [0, 1]; no download.

    The split is stratified and seeded.
    """
    _need_sklearn("the digits data set")
    from sklearn.datasets import load_digits as _ld

    d = _ld()
    x = d.data.astype(np.float32) / 16.0
    return Dataset("digits", *_split(x, d.target, test_fraction, seed), 10, source="sklearn.datasets.load_digits")


def make_synthetic(
    name: str = "blobs",
    n_samples: int = 600,
    n_features: int = 2,
    n_classes: int = 3,
    noise: float = 0.1,
    test_fraction: float = 0.25,
    seed: int = 0,
) -> Dataset:
    """Small seeded synthetic sets (torch and numpy only).

    ``"blobs"``: one Gaussian cluster per class (unit-variance, centres on a
    sphere of radius 3, in ``n_features`` dimensions). ``"spirals"``:
    ``n_classes`` interleaved 2-D spirals with Gaussian ``noise`` (then padded
    with zero features up to ``n_features``); a set that needs depth to separate.
    """
    from .._util import check_choice

    check_choice(name, "name", ("blobs", "spirals"))
    check_int(n_samples, "n_samples", 2)
    check_int(n_features, "n_features", 1)
    check_int(n_classes, "n_classes", 2)
    if n_samples < 2 * n_classes:
        raise InputError(f"n_samples must be at least 2 * n_classes = {2 * n_classes}, got {n_samples}")
    rng = np.random.default_rng(seed)
    y = np.arange(n_samples) % n_classes
    rng.shuffle(y)
    if name == "blobs":
        centres = rng.normal(size=(n_classes, n_features))
        centres *= 3.0 / np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)
        x = centres[y] + rng.normal(size=(n_samples, n_features))
    else:
        if n_features < 2:
            raise InputError(f"n_features must be >= 2 for spirals, got {n_features}")
        r = rng.uniform(0.05, 1.0, size=n_samples)
        theta = 3.0 * np.pi * r + 2.0 * np.pi * y / n_classes
        xy = np.stack([r * np.cos(theta), r * np.sin(theta)], 1) + noise * rng.normal(size=(n_samples, 2)) * 0.3
        x = np.zeros((n_samples, n_features))
        x[:, :2] = xy
    return Dataset(name, *_split(x, y, test_fraction, seed), n_classes, source=f"synthetic {name} seed={seed}")


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file; :class:`DataError` naming the file for anything else.

    Each member's header is checked against the member's size before its array is
    allocated, so a header claiming a huge shape costs no memory; object arrays are
    refused (never unpickled).
    """
    if not zipfile.is_zipfile(path):
        raise DataError(f"data file {path} is not an .npz file (not a zip archive); write it with numpy.savez")
    arrays = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                with zf.open(info) as fh:
                    version = np.lib.format.read_magic(fh)
                    if version == (1, 0):
                        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
                    elif version == (2, 0):
                        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
                    else:
                        raise DataError(
                            f"data file {path}: array {name!r} has .npy format version {version}, expected 1.0 or 2.0"
                        )
                    if dtype.hasobject:
                        raise DataError(
                            f"data file {path}: array {name!r} holds Python objects (dtype {dtype}); expected numbers"
                        )
                    n_bytes = math.prod(shape) * dtype.itemsize
                    if fh.tell() + n_bytes != info.file_size:
                        raise DataError(
                            f"data file {path} is corrupt: array {name!r} announces shape {shape} "
                            f"({n_bytes} bytes of data), the archive member holds "
                            f"{info.file_size - fh.tell()}"
                        )
                    raw = _read_at_most(fh, n_bytes)
                if len(raw) != n_bytes:
                    raise DataError(f"data file {path} is corrupt: array {name!r} is truncated")
                a = np.frombuffer(raw, dtype=dtype)
                arrays[name] = a.reshape(shape[::-1]).T if fortran else a.reshape(shape)
    except DataError:
        raise
    except (*_CORRUPT, ValueError, KeyError, RuntimeError) as err:
        why = " ".join(str(err).split()) or type(err).__name__
        raise DataError(
            f"cannot read data file {path}: it is corrupt or not an .npz file written by numpy ({why})"
        ) from None
    return arrays


def _load_npz(path: Path, test_fraction: float, seed: int) -> Dataset:
    arrays = _read_npz(path)
    keys = set(arrays)
    if {"x_train", "y_train", "x_test", "y_test"} <= keys:
        parts = [arrays[k] for k in ("x_train", "y_train", "x_test", "y_test")]
    elif {"x", "y"} <= keys:
        parts = None
    else:
        raise DataError(
            f"{path} must hold arrays 'x' and 'y' (or x_train, y_train, x_test, y_test), got {sorted(keys)}"
        )

    def fix(x, y, what):
        if x.ndim < 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
            raise DataError(f"{path}: {what} must be x (n, features...) and y (n,), got {x.shape} and {y.shape}")
        if x.shape[0] == 0 or x[0].size == 0:
            raise DataError(f"{path}: {what} must hold at least one sample of at least one feature, got x {x.shape}")
        if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating) or x.dtype == bool):
            raise DataError(f"{path}: {what} inputs x must be real numbers, got dtype {x.dtype}")
        with np.errstate(over="ignore"):  # values beyond float32 become inf and are refused below
            x = x.reshape(x.shape[0], -1).astype(np.float32)
        if not np.isfinite(x).all():
            raise DataError(f"{path}: {what} inputs x must be finite in float32, got NaN or inf")
        if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
            raise DataError(
                f"{path}: labels must be non-negative integers, got dtype {y.dtype}"
                + (f" and minimum {y.min()}" if np.issubdtype(y.dtype, np.integer) else "")
            )
        return x, y.astype(np.int64)

    if parts is None:
        x, y = fix(arrays["x"], arrays["y"], "data")
        n_all = len(y)
        if n_all < 2:
            raise DataError(f"{path}: data must hold at least 2 samples to split into train and test, got {n_all}")
    else:
        xtr, ytr = fix(parts[0], parts[1], "train data")
        xte, yte = fix(parts[2], parts[3], "test data")
        if xtr.shape[1] != xte.shape[1]:
            raise DataError(f"{path}: train and test inputs differ in size: {xtr.shape[1]} vs {xte.shape[1]}")
        y = np.concatenate([ytr, yte])
        n_all = len(y)
    n_classes = int(y.max()) + 1
    if n_classes > n_all:
        raise DataError(
            f"{path}: labels must be class indices 0..K-1 with K at most the number of samples "
            f"({n_all}), got the label {n_classes - 1}"
        )
    if parts is None:
        tensors = _split(x, y, test_fraction, seed)
    else:
        xtr_t, ytr_t, xte_t, yte_t = (torch.from_numpy(np.ascontiguousarray(a)) for a in (xtr, ytr, xte, yte))
        tensors = (xtr_t, ytr_t, xte_t, yte_t)
    return Dataset(path.stem, *tensors, n_classes, source=str(path))


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = False,
    seed: int = 0,
    **kwargs,
) -> Dataset:
    """Load a data set by name or path.

    ``name`` is ``"mnist"`` (IDX files in ``data_dir``), ``"digits"`` (scikit-learn,
    embedded), ``"blobs"`` / ``"spirals"`` (synthetic, ``kwargs`` go to
    :func:`make_synthetic`), a directory holding MNIST-layout IDX files, or an
    ``.npz`` file with arrays ``x``, ``y`` (split 75/25, seeded) or
    ``x_train``, ``y_train``, ``x_test``, ``y_test``.
    """
    if not isinstance(name, (str, os.PathLike)):
        raise InputTypeError(f"name must be a data set name or a path, got {type(name).__name__}")
    key = str(name)
    if key == "mnist":
        return load_mnist(data_dir, download=download)
    if key == "digits":
        return load_digits(seed=seed, **kwargs)
    if key in ("blobs", "spirals"):
        return make_synthetic(key, seed=seed, **kwargs)
    path = Path(key).expanduser()
    if path.is_dir():
        return load_mnist(path)
    if path.is_file():
        if path.suffix == ".npz":
            return _load_npz(path, kwargs.get("test_fraction", 0.25), seed)
        raise DataError(f"data file {path} must be an .npz file (arrays x, y) or a directory of IDX files")
    raise InputError(
        f"data must be one of {', '.join(DATASETS)}, a directory of MNIST IDX files or an .npz file, "
        f"got {key!r} (no such file or directory)"
    )
