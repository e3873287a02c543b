"""The MLP family of the papers ("3x20" = 3 hidden layers of 20 ReLU neurons) and checkpoints.

A checkpoint is one file written by ``torch.save`` holding only tensors and
strings: ``{"format": "spacefold-mlp", "config": <JSON text>, "state_dict": {...}}``.
It loads with ``torch.load(..., weights_only=True)`` (no pickled code), and is
written atomically: an interrupted save leaves no half-written file.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, overload

import torch
from torch import nn

from .._util import atomic_path, atomic_write, check_int, check_size
from ..errors import InputError, InputTypeError

__all__ = [
    "MLP",
    "mlp",
    "parse_arch",
    "arch_name",
    "budget_family",
    "DEPTH_SERIES",
    "save_checkpoint",
    "load_checkpoint",
    "CheckpointError",
]

#: The 60-neuron depth series of the MNIST study (docs/mnist-depth-study.md).
DEPTH_SERIES = ("1x60", "2x30", "3x20", "4x15", "5x12", "6x10")

FORMAT = "spacefold-mlp"

_ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU}


class CheckpointError(InputError):
    """A checkpoint file is missing parts, corrupt, or not a spacefold checkpoint."""


def parse_arch(arch: str | Sequence[int]) -> tuple[int, ...]:
    """Hidden widths of an architecture name.

    ``"3x20"`` -> (20, 20, 20); ``"30-20"`` or ``"30,20"`` -> (30, 20); a sequence of
    ints is taken as the widths; ``"0"`` or ``()`` -> no hidden layer (a linear model).
    """
    if isinstance(arch, str):
        s = arch.strip().lower()
        m = re.fullmatch(r"(\d+)\s*x\s*(\d+)", s)
        if m:
            depth, width = int(m.group(1)), int(m.group(2))
            if width < 1 and depth > 0:
                raise InputError(f"arch width must be >= 1, got {arch!r}")
            return (width,) * depth
        if s == "0":
            return ()
        if re.fullmatch(r"\d+([-,]\d+)*", s):
            widths = tuple(int(v) for v in re.split(r"[-,]", s))
        else:
            raise InputError(f"arch must look like '3x20' (depth x width) or '30-20' (widths), got {arch!r}")
    else:
        try:
            widths = tuple(int(v) for v in arch)
        except TypeError:
            raise InputTypeError(f"arch must be a string like '3x20' or a sequence of ints, got {arch!r}") from None
    if any(w < 1 for w in widths):
        raise InputError(f"arch widths must all be >= 1, got {widths}")
    return widths


def arch_name(hidden: Sequence[int]) -> str:
    """``(20, 20, 20)`` -> ``"3x20"``; unequal widths -> ``"30-20"``; none -> ``"0"``."""
    hidden = tuple(hidden)
    if not hidden:
        return "0"
    if len(set(hidden)) == 1:
        return f"{len(hidden)}x{hidden[0]}"
    return "-".join(str(w) for w in hidden)


def budget_family(budget: int = 60, depths: Sequence[int] = (1, 2, 3, 4, 5, 6)) -> list[str]:
    """Architectures with ``budget`` hidden neurons spread over each depth: 60 -> 1x60, 2x30, ..., 6x10."""
    check_int(budget, "budget", 1)
    out = []
    for d in depths:
        check_int(d, "depth", 1)
        if budget // d < 1:
            raise InputError(f"budget must be at least the depth {d}, got {budget}")
        out.append(f"{d}x{budget // d}")
    return out


class MLP(nn.Module):
    """Fully connected network: ``in_features -> hidden... -> n_classes``, an activation
    module after every hidden layer and none after the logits.

    ``net`` is an ``nn.Sequential`` of ``Linear`` and activation modules, so every
    hidden layer is hooked by :func:`spacefold.activation_patterns`. Inputs of any
    shape are flattened after the batch dimension.
    """

    def __init__(self, in_features: int, hidden: Sequence[int], n_classes: int, activation: str = "relu"):
        super().__init__()
        check_int(in_features, "in_features", 1)
        check_int(n_classes, "n_classes", 1)
        if activation not in _ACTIVATIONS:
            raise InputError(f"activation must be one of {', '.join(_ACTIVATIONS)}, got {activation!r}")
        self.in_features = in_features
        self.hidden = tuple(int(h) for h in hidden)
        self.n_classes = n_classes
        self.activation = activation
        layers: list[nn.Module] = []
        prev = in_features
        for h in self.hidden:
            layers += [nn.Linear(prev, h), _ACTIVATIONS[activation]()]
            prev = h
        layers.append(nn.Linear(prev, n_classes))
        self.net = nn.Sequential(*layers)

    @property
    def arch(self) -> str:
        return arch_name(self.hidden)

    def config(self) -> dict:
        return {
            "in_features": self.in_features,
            "hidden": list(self.hidden),
            "n_classes": self.n_classes,
            "activation": self.activation,
            "arch": self.arch,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))

    def extra_repr(self) -> str:
        return f"arch={self.arch}"


def mlp(
    arch: str | Sequence[int],
    in_features: int = 784,
    n_classes: int = 10,
    *,
    activation: str = "relu",
    seed: int | None = 0,
) -> MLP:
    """The MLP of the studies named ``arch`` (``"3x20"``: three hidden layers of 20), with weights
    initialised from ``seed``.

    Hidden layers are ``nn.Linear`` followed by the activation; the output layer is linear (logits).
    The global torch RNG is left as it was.

    Args:
        arch (str | Sequence[int]): ``"3x20"`` (depth x width), ``"30-20"`` or ``"30,20"`` (the widths),
            a sequence of ints, or ``"0"`` (no hidden layer: a linear model).
        in_features (int): the input features (784 for flattened MNIST).
        n_classes (int): the outputs.
        activation (str): ``"relu"``, ``"leaky_relu"``, ``"gelu"``, ``"tanh"`` or ``"silu"``.
        seed (int | None): the seed of the initial weights; ``None`` draws from the global RNG.

    Returns:
        MLP: an ``nn.Module`` ``(batch, in_features) -> (batch, n_classes)``; ``model.config()`` holds what
        rebuilds it.

    Raises:
        InputError: an ``arch`` that is not of those forms, an unknown ``activation``, a negative
            ``seed``, or a network too large to build.

    Examples:
        >>> import torch, spacefold as sf
        >>> net = sf.mlp("3x20", in_features=784, n_classes=10, seed=0)
        >>> net(torch.zeros(2, 784)).shape
        torch.Size([2, 10])
        >>> torch.equal(net.net[0].weight, sf.mlp("3x20", seed=0).net[0].weight)  # the seed fixes the weights
        True
        >>> sf.mlp([30, 20], in_features=2, n_classes=3, activation="gelu").config()["arch"]
        '30-20'
    """
    hidden = parse_arch(arch)
    if isinstance(in_features, int) and isinstance(n_classes, int):
        widths = [in_features, *hidden, n_classes]
        n_params = sum((a + 1) * b for a, b in zip(widths[:-1], widths[1:]))
        check_size(
            "arch",
            arch_name(hidden),
            4 * n_params,
            f"the {n_params:,} float32 parameters of a {in_features}-input, {n_classes}-class MLP",
        )
    if seed is None:
        return MLP(in_features, hidden, n_classes, activation)
    check_int(seed, "seed", 0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MLP(in_features, hidden, n_classes, activation)


def save_checkpoint(model: MLP, path: str | os.PathLike, metadata: dict | None = None) -> Path:
    """Save an MLP (its state_dict, its config and ``metadata``) to ``path`` atomically.

    A JSON copy of the config and metadata is written beside it (``<path>.json``) for people and
    tools; loading uses only the checkpoint itself. Files are written with the user's umask, and
    nothing half-written is left behind.

    Args:
        model (MLP): a model built by ``mlp``.
        path (str | os.PathLike): the checkpoint file to write.
        metadata (dict | None): JSON-serialisable data to store with it (training settings, accuracy).

    Returns:
        Path: ``path``.

    Raises:
        InputTypeError: ``model`` is not a spacefold MLP, or ``metadata`` is not JSON-serialisable.
        InputError: the model's weights hold NaN or inf.

    Examples:
        >>> import pathlib, tempfile, spacefold as sf
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = sf.save_checkpoint(sf.mlp("2x8", in_features=2, n_classes=2), pathlib.Path(folder) / "net.pt",
        ...                               {"epochs": 3})
        ...     sorted(p.name for p in path.parent.iterdir())
        ['net.pt', 'net.pt.json']
    """
    if not isinstance(model, MLP):
        raise InputTypeError(f"model must be a spacefold MLP, got {type(model).__name__}")
    meta = dict(metadata or {})
    try:
        meta_text = json.dumps(meta, sort_keys=True)
    except (TypeError, ValueError) as err:
        raise InputTypeError(f"metadata must be JSON-serialisable, got {err}") from None
    bad = _non_finite(model.state_dict())
    if bad:
        raise InputError(
            f"model must have finite weights to be saved, got NaN or inf in {bad} "
            "(did the training diverge? try a smaller learning rate)"
        )
    path = Path(path)
    payload = {
        "format": FORMAT,
        "config": json.dumps(model.config(), sort_keys=True),
        "metadata": meta_text,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    with atomic_write(path.with_name(path.name + ".json")) as fh:
        json.dump({"config": model.config(), "metadata": meta}, fh, indent=2, sort_keys=True)
    return path


@overload
def load_checkpoint(
    path: str | os.PathLike, *, map_location: str | torch.device = "cpu", with_metadata: Literal[False] = False
) -> MLP: ...


@overload
def load_checkpoint(
    path: str | os.PathLike, *, map_location: str | torch.device = "cpu", with_metadata: Literal[True]
) -> tuple[MLP, dict]: ...


def load_checkpoint(
    path: str | os.PathLike, *, map_location: str | torch.device = "cpu", with_metadata: bool = False
) -> MLP | tuple[MLP, dict]:
    """Load a checkpoint written by ``save_checkpoint``, with ``torch.load(weights_only=True)``.

    Args:
        path (str | os.PathLike): the checkpoint file.
        map_location (str | torch.device): where to put the tensors.
        with_metadata (bool): also return the metadata stored with the model.

    Returns:
        MLP | tuple[MLP, dict]: the model (in eval mode), or ``(model, metadata)`` with
        ``with_metadata=True``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: an ``InputError`` for anything that is not a valid spacefold checkpoint: a
            directory, a foreign or corrupt file, a config that does not match the stored tensors
            (checked before any layer is built), weights that are not finite.

    Examples:
        >>> import pathlib, tempfile, torch, spacefold as sf
        >>> net = sf.mlp("2x8", in_features=2, n_classes=2, seed=1)
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = sf.save_checkpoint(net, pathlib.Path(folder) / "net.pt", {"epochs": 3})
        ...     loaded, meta = sf.load_checkpoint(path, with_metadata=True)
        >>> meta, loaded.training, torch.equal(loaded.net[0].weight, net.net[0].weight)
        ({'epochs': 3}, False, True)
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(
            f"checkpoint must be a file written by spacefold.save_checkpoint, got the directory {path}"
        )
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # corrupt zip, truncated file, foreign pickle
        if "weights only load failed" in str(err).lower():
            why = "the file is corrupt, or holds objects other than tensors and plain containers (never unpickled)"
        else:
            why = " ".join(str(err).split()) or type(err).__name__
        raise CheckpointError(
            f"cannot load checkpoint {path}: not a readable spacefold checkpoint (a state_dict and its config "
            f"saved by spacefold.save_checkpoint, loaded with weights_only=True): {why}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a spacefold MLP checkpoint (missing format tag {FORMAT!r})")
    try:
        cfg = json.loads(payload["config"])
        meta = json.loads(payload.get("metadata", "{}"))
    except KeyError:
        raise CheckpointError(f"checkpoint {path} is malformed: it has no config") from None
    except (TypeError, ValueError) as err:
        raise CheckpointError(
            f"checkpoint {path} is malformed: its config or metadata is not JSON text ({err})"
        ) from None
    sd = payload.get("state_dict")
    if not isinstance(sd, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
        raise CheckpointError(f"checkpoint {path} is malformed: its state_dict must map names to tensors")
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint {path} is malformed: its metadata must be a JSON object, got {meta!r}")
    in_features, hidden, n_classes, activation = _check_config(cfg, path)
    _check_tensors(sd, _expected_shapes(in_features, hidden, n_classes), path)
    model = MLP(in_features, hidden, n_classes, activation)
    model.load_state_dict(sd)
    model.eval()
    return (model, meta) if with_metadata else model


def _check_config(cfg, path: Path) -> tuple[int, tuple[int, ...], int, str]:
    """The config's fields, each of the right type, or a :class:`CheckpointError` naming the field."""

    def count(key, value, minimum=1):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise CheckpointError(
                f"checkpoint {path} is malformed: config field {key!r} must be an int >= {minimum}, got {value!r}"
            )
        return value

    if not isinstance(cfg, dict):
        raise CheckpointError(f"checkpoint {path} is malformed: its config must be a JSON object, got {cfg!r}")
    missing = [k for k in ("in_features", "hidden", "n_classes") if k not in cfg]
    if missing:
        raise CheckpointError(f"checkpoint {path} is malformed: its config lacks {', '.join(missing)}")
    if not isinstance(cfg["hidden"], list):
        raise CheckpointError(
            f"checkpoint {path} is malformed: config field 'hidden' must be a list of widths, got {cfg['hidden']!r}"
        )
    hidden = tuple(count("hidden", w) for w in cfg["hidden"])
    activation = cfg.get("activation", "relu")
    if activation not in _ACTIVATIONS:
        raise CheckpointError(
            f"checkpoint {path} is malformed: config field 'activation' must be one of "
            f"{', '.join(_ACTIVATIONS)}, got {activation!r}"
        )
    return count("in_features", cfg["in_features"]), hidden, count("n_classes", cfg["n_classes"]), activation


def _expected_shapes(in_features: int, hidden: Sequence[int], n_classes: int) -> dict[str, tuple[int, ...]]:
    """The state_dict shapes of ``MLP(in_features, hidden, n_classes)``, without building it."""
    shapes: dict[str, tuple[int, ...]] = {}
    prev = in_features
    for k, h in enumerate((*hidden, n_classes)):
        shapes[f"net.{2 * k}.weight"] = (h, prev)
        shapes[f"net.{2 * k}.bias"] = (h,)
        prev = h
    return shapes


def _check_tensors(sd: dict, expected: dict, path: Path) -> None:
    missing = [k for k in expected if k not in sd]
    extra = [k for k in sd if k not in expected]
    if missing or extra:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unexpected {', '.join(extra)}"] if extra else []
        )
        raise CheckpointError(
            f"checkpoint {path} is malformed: its state_dict does not match its config: {'; '.join(parts)}"
        )
    for k, shape in expected.items():
        got = tuple(sd[k].shape)
        if got != shape:
            raise CheckpointError(
                f"checkpoint {path} is malformed: its config gives {k} the shape {shape}, the state_dict holds {got}"
            )
        if not sd[k].dtype.is_floating_point:
            raise CheckpointError(
                f"checkpoint {path} is malformed: {k} must hold floating-point weights, got dtype {sd[k].dtype}"
            )
    bad = _non_finite(sd)
    if bad:
        raise CheckpointError(
            f"checkpoint {path} holds weights that are not finite (NaN or inf) in {bad}; "
            "no folding can be measured on it"
        )


def _non_finite(sd: dict) -> str:
    """The names of the tensors of ``sd`` holding NaN or inf, comma-separated ("" when none)."""
    bad = [k for k, v in sd.items() if v.dtype.is_floating_point and not bool(torch.isfinite(v).all())]
    return ", ".join(bad)
