"""Any model and any data set, by a string: what ``--model`` and ``--data`` accept.

:func:`load_model` takes

- a spacefold checkpoint (``spacefold.save_checkpoint``, ``spacefold sweep``);
- a ``torch.export`` archive (``.pt2``, from ``torch.export.save``; export with a dynamic
  batch dimension, ``torch.export.Dim("batch")``, to walk batches of any size);
- a TorchScript file (``torch.jit.save``), converted to a ``torch.export`` program;
- ``package.module:factory`` (a callable returning an ``nn.Module``), with ``weights=`` a
  state_dict file (loaded with ``torch.load(weights_only=True)``).

Exported and TorchScript programs compute their activations as operators
(``aten.relu``), which activation patterns read like any function called in ``forward``.
Activations and linear layers are rewritten into modules (``nn.ReLU``, ``nn.Linear``, ...
with the program's own weights), so that for networks of Linear layers and piecewise-linear
activations the exact walk works as it does for any ``nn.Module``. A program with other operations is walked
by bisection (the exact walk says so when asked).

:func:`load_data` takes ``mnist`` | ``digits`` | ``blobs`` | ``spirals``, an ``.npz`` file,
a directory of MNIST-layout IDX files, or an image folder in torchvision's ``ImageFolder``
layout: ``ROOT/<class>/<image>`` with the classes in sorted order of their folder names
(class index = position in that order), images found recursively below each class folder,
files with the extensions ``.jpg .jpeg .png .ppm .bmp .pgm .tif .tiff .webp`` (any case),
read with Pillow and converted to RGB (or greyscale with ``grayscale=True``), scaled to
[0, 1] and flattened in channel, row, column order. ``ROOT/train`` and ``ROOT/test`` (or
``ROOT/val``) folders in that layout are the two splits; otherwise the images are split
75/25, stratified and seeded. Every image must have one size, or pass ``image_size``.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import InputError, InputTypeError, MissingExtraError

__all__ = ["load_model", "load_data", "fit_input_shape", "IMG_EXTENSIONS"]

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


# --------------------------------------------------------------------------- models


def _first(err: BaseException) -> str:
    s = str(err).strip()
    return s.splitlines()[0] if s else type(err).__name__


def load_model(
    spec: str | os.PathLike, weights: str | os.PathLike | None = None, *, example: torch.Tensor | None = None
) -> nn.Module:
    """The model named by ``spec`` (see the module notes), in eval mode.

    ``example`` (a batch of inputs) is used only to convert TorchScript files whose input
    size cannot be read from their first Linear layer.
    """
    if not isinstance(spec, (str, os.PathLike)):
        raise InputTypeError(f"model must be a file path or 'package.module:factory', got {type(spec).__name__}")
    text = str(spec)
    path = Path(text).expanduser()
    if not path.exists() and ":" in text and not text.startswith(("/", ".")):
        model = _from_factory(text)
        if weights is not None:
            _load_weights(model, weights)
        return model.eval()
    if weights is not None:
        raise InputError(f"--weights goes with a 'package.module:factory' model, got the file {text}")
    if path.is_dir():
        raise IsADirectoryError(
            f"model must be a file (a checkpoint, .pt2 or TorchScript file) or "
            f"'package.module:factory', got the directory {text}"
        )
    if not path.is_file():
        raise FileNotFoundError(
            f"model {text} not found (a checkpoint, .pt2 or TorchScript file, or 'package.module:factory')"
        )
    if path.suffix == ".pt2":
        try:
            with _quiet_torch():  # torch logs the whole traceback of a bad archive first
                program = torch.export.load(str(path))
        except Exception as err:  # not a zip, not an export archive
            raise InputError(
                f"model {path} is not a torch.export archive (.pt2 from torch.export.save): {_first(err)}"
            ) from None
        return _modules_from_program(program, path).eval()
    import warnings

    from ..models.mlp import CheckpointError, load_checkpoint

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.load's note on TorchScript archives
            return load_checkpoint(path)
    except CheckpointError as ckpt_err:
        try:
            scripted = torch.jit.load(str(path), map_location="cpu")
        except Exception:
            raise InputError(
                f"model {path} is neither a spacefold checkpoint ({_first(ckpt_err)}) nor a "
                "TorchScript file nor a torch.export archive (.pt2)"
            ) from None
    return _from_torchscript(scripted, path, example).eval()


def _from_factory(text: str) -> nn.Module:
    mod_name, _, attr = text.partition(":")
    try:
        module = importlib.import_module(mod_name)
    except ImportError as err:
        raise InputError(f"model {text}: cannot import module {mod_name!r}: {_first(err)}") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise InputError(f"model {text}: {mod_name} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise InputTypeError(
            f"model {text}: {attr} must be callable (a factory returning an nn.Module), got {type(obj).__name__}"
        )
    try:
        inspect.signature(obj).bind()
    except TypeError as err:  # required arguments: the factory cannot be called as one
        raise InputTypeError(
            f"model {text}: the factory must be callable with no arguments ({_first(err)}); "
            "wrap it in a function of none"
        ) from None
    except ValueError:  # no signature to read (a builtin): call it and see
        pass
    model = obj()
    if not isinstance(model, nn.Module):
        raise InputTypeError(f"model {text}: the factory must return a torch.nn.Module, got {type(model).__name__}")
    return model


def _load_weights(model: nn.Module, weights) -> None:
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"weights {path} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise InputError(
            f"weights {path} must be a state_dict saved with torch.save (loaded with weights_only=True): {_first(err)}"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(
            f"weights {path} must hold a state_dict (parameter name -> tensor), got {type(state).__name__}"
        )
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise InputError(f"weights {path} do not fit the model: {_first(err)}") from None


@contextlib.contextmanager
def _quiet_torch():
    """No log records or warnings from torch while a file is read or converted: its failures
    become one line (:class:`InputError`), and its logs would repeat them as tracebacks."""
    log = logging.getLogger("torch")
    level = log.level
    log.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)


def _from_torchscript(scripted, path: Path, example) -> nn.Module:
    try:
        from torch._export.converter import TS2EPConverter
    except ImportError:  # pragma: no cover - older torch
        raise InputError(
            f"model {path} is a TorchScript file, which this version of torch cannot convert to "
            "torch.export; save the model with torch.export.save (.pt2) instead"
        ) from None
    if example is None:
        first = next((p for p in scripted.parameters() if p.dim() == 2), None)
        if first is None:
            raise InputError(
                f"model {path}: TorchScript without a Linear layer first needs example inputs "
                "(load_model(..., example=x))"
            )
        example = torch.zeros(2, first.shape[1], dtype=first.dtype)
    try:
        with torch.no_grad():
            scripted(example)
    except RuntimeError as err:  # the inputs do not fit: say so before converting
        first = next((p for p in scripted.parameters() if p.dim() == 2), None)
        why = f"its first layer takes {first.shape[1]} input features" if first is not None else _first(err)
        raise InputError(f"model {path} does not take inputs of shape {tuple(example.shape[1:])} ({why})") from None
    try:
        with _quiet_torch():
            program = TS2EPConverter(scripted, (example,)).convert()
    except Exception as err:
        raise InputError(
            f"model {path}: cannot convert this TorchScript program to torch.export "
            f"({_first(err)}); save the model with torch.export.save (.pt2) instead"
        ) from None
    return _modules_from_program(program, path)


def _modules_from_program(program, path: Path) -> nn.Module:
    """``program.module()`` with activations, linear layers and flattening as modules."""
    import torch.fx as fx

    if not isinstance(program, torch.export.ExportedProgram):
        raise InputError(f"model {path} does not hold an exported program, got {type(program).__name__}")
    gm = program.module()
    aten = torch.ops.aten
    acts = {
        aten.relu.default: nn.ReLU,
        aten.relu_.default: nn.ReLU,
        aten.gelu.default: nn.GELU,
        aten.tanh.default: nn.Tanh,
        aten.sigmoid.default: nn.Sigmoid,
        aten.silu.default: nn.SiLU,
        aten.elu.default: nn.ELU,
        aten.softplus.default: nn.Softplus,
    }
    graph = gm.graph
    count = 0
    for node in list(graph.nodes):
        if node.op == "call_module" and not node.users and "guard" in str(node.target):
            graph.erase_node(node)
            continue
        if node.op != "call_function":
            continue
        new_mod = None
        if node.target in acts:
            new_mod = acts[node.target]()
        elif node.target in (aten.leaky_relu.default, aten.leaky_relu_.default):
            new_mod = nn.LeakyReLU(float(node.args[1]) if len(node.args) > 1 else 0.01)
        elif node.target in (aten.hardtanh.default, aten.hardtanh_.default):
            lo, hi = (float(v) for v in (node.args[1:3] if len(node.args) >= 3 else (-1.0, 1.0)))
            new_mod = nn.ReLU6() if (lo, hi) == (0.0, 6.0) else nn.Hardtanh(lo, hi)
        elif node.target == aten.linear.default and all(getattr(a, "op", None) == "get_attr" for a in node.args[1:]):
            w = _attr(gm, node.args[1].target)
            b = _attr(gm, node.args[2].target) if len(node.args) > 2 and node.args[2] is not None else None
            if w.dim() == 2:
                new_mod = nn.Linear(w.shape[1], w.shape[0], bias=b is not None, dtype=w.dtype)
                new_mod.weight = nn.Parameter(w.detach(), requires_grad=w.requires_grad)
                if b is not None:
                    new_mod.bias = nn.Parameter(b.detach(), requires_grad=b.requires_grad)
        if new_mod is None:
            continue
        name = f"sf_{type(new_mod).__name__.lower()}_{count}"
        count += 1
        gm.add_submodule(name, new_mod)
        with graph.inserting_after(node):
            repl = graph.call_module(name, (node.args[0],))
        node.replace_all_uses_with(repl)
        graph.erase_node(node)
    graph.eliminate_dead_code()
    graph.lint()
    out = fx.GraphModule(gm, graph)
    return out


def _attr(gm: nn.Module, target: str) -> torch.Tensor:
    obj: Any = gm  # submodules down the path, then the tensor it names
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def fit_input_shape(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` (``(n, features)``) reshaped to what ``model`` takes: as it is, or as square
    images ``(n, 1, s, s)`` / ``(n, 3, s, s)``. Raises :class:`InputError` when none fits."""
    from .._core.patterns import to_model

    n, f = x.shape[0], int(np.prod(x.shape[1:]))
    shapes = [tuple(x.shape[1:])]
    for c in (1, 3):
        s = int(round((f / c) ** 0.5))
        if c * s * s == f:
            shapes.append((c, s, s))
    errors = []
    for shape in shapes:
        try:
            with torch.no_grad():
                model.eval()(to_model(model, x[:2].reshape((min(n, 2),) + shape)))
            return x.reshape((n,) + shape)
        except Exception as err:  # the model rejects this shape
            errors.append(f"{shape}: {_first(err)}")
    first = next((m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))), None)
    if isinstance(first, nn.Linear):
        raise InputError(f"--model takes {first.in_features} input features but the data has {f}")
    raise InputError(
        f"--model takes none of the input shapes of the data ({f} input features per sample): " + "; ".join(errors)
    )


# --------------------------------------------------------------------------- data


def load_data(
    spec: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    *,
    seed: int = 0,
    download: bool = False,
    grayscale: bool = False,
    image_size: int | None = None,
    test_fraction: float = 0.25,
):
    """The data set named by ``spec`` (see the module notes) as a :class:`spacefold.data.Dataset`."""
    from .datasets import load_dataset

    if not isinstance(spec, (str, os.PathLike)):
        raise InputTypeError(f"data must be a data set name or a path, got {type(spec).__name__}")
    path = Path(str(spec)).expanduser()
    if path.is_dir() and _is_image_folder(path):
        return load_image_folder(
            path, seed=seed, grayscale=grayscale, image_size=image_size, test_fraction=test_fraction
        )
    if path.is_dir() and _class_dirs(path) and not any("ubyte" in f.name for f in path.rglob("*") if f.is_file()):
        dirs = [d.name for d in _class_dirs(path)]
        shown = ", ".join(dirs[:5]) + (", ..." if len(dirs) > 5 else "")
        raise InputError(
            f"data {spec}: found {len(dirs)} sub-folders ({shown}) but no image "
            f"({', '.join(IMG_EXTENSIONS)}) in them and no MNIST IDX file; an image folder needs "
            "one sub-folder of images per class"
        )
    return load_dataset(str(spec), data_dir, download=download, seed=seed)


def _class_dirs(root: Path) -> list[Path]:
    return sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.name)


def _is_image_folder(root: Path) -> bool:
    return any(f.suffix.lower() in IMG_EXTENSIONS for d in _class_dirs(root) for f in d.rglob("*") if f.is_file())


def _folder_files(root: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    classes = [d.name for d in _class_dirs(root)]
    if not classes:
        raise InputError(f"image folder {root} must hold one sub-folder per class (ImageFolder layout), got none")
    files = []
    for i, c in enumerate(classes):
        found = [p for p in sorted((root / c).rglob("*")) if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS]
        if not found:
            raise InputError(f"image folder {root}: class folder {c!r} holds no image ({', '.join(IMG_EXTENSIONS)})")
        files += [(p, i) for p in found]
    return classes, files


def _read_images(files, grayscale: bool, image_size: int | None) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError:
        raise MissingExtraError("image folders need Pillow: pip install pillow") from None
    out, size = [], None
    for p, _ in files:
        try:
            with Image.open(p) as opened:
                im = opened.convert("L" if grayscale else "RGB")
                if image_size is not None:
                    im = im.resize((image_size, image_size), Image.Resampling.BILINEAR)
                a = np.asarray(im, dtype=np.float32) / 255.0
        except OSError as err:
            raise InputError(f"image {p} cannot be read: {_first(err)}") from None
        if size is None:
            size = a.shape
        elif a.shape != size:
            raise InputError(
                f"images must have one size, got {size[:2]} and {a.shape[:2]} ({p}); pass image_size "
                "(--image-size) to resize them"
            )
        out.append(a.reshape(a.shape[0], a.shape[1], -1).transpose(2, 0, 1).reshape(-1))
    return np.stack(out)


def load_image_folder(
    root: str | os.PathLike,
    *,
    seed: int = 0,
    grayscale: bool = False,
    image_size: int | None = None,
    test_fraction: float = 0.25,
):
    """An image folder in ``ImageFolder`` layout as a :class:`spacefold.data.Dataset`."""
    from .datasets import Dataset, _split

    root = Path(root)
    split_dirs = (root / "train", next((root / s for s in ("test", "val") if (root / s).is_dir()), None))
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1):
        raise InputError(f"image_size must be an int >= 1, got {image_size!r}")
    if split_dirs[0].is_dir() and split_dirs[1] is not None and _is_image_folder(split_dirs[0]):
        (c_tr, f_tr), (c_te, f_te) = _folder_files(split_dirs[0]), _folder_files(split_dirs[1])
        if c_tr != c_te:
            raise InputError(
                f"image folder {root}: train and {split_dirs[1].name} must have the same class folders, "
                f"got {c_tr} and {c_te}"
            )
        x = _read_images(f_tr + f_te, grayscale, image_size)
        y = np.array([c for _, c in f_tr + f_te], dtype=np.int64)
        n = len(f_tr)
        tensors = (torch.from_numpy(x[:n]), torch.from_numpy(y[:n]), torch.from_numpy(x[n:]), torch.from_numpy(y[n:]))
        classes = c_tr
    else:
        classes, files = _folder_files(root)
        x = _read_images(files, grayscale, image_size)
        y = np.array([c for _, c in files], dtype=np.int64)
        tensors = _split(x, y, test_fraction, seed)
    ds = Dataset(root.name, *tensors, len(classes), source=str(root))
    return ds
