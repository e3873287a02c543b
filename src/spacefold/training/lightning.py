"""Φ_N during Lightning training: :class:`FoldingCallback` (needs the ``lightning`` extra).

    from spacefold.lightning import FoldingCallback
    x1, x2 = spacefold.probe_pairs(x_val, y_val, n_pairs=200)
    trainer = lightning.Trainer(callbacks=[FoldingCallback(x1, x2, every_n_epochs=1)])

(a complete run is the example of :class:`FoldingCallback`).

The callback walks a fixed probe set of segments (exact walks by default) under the
LightningModule (or one of its submodules, ``module="net"``) every n epochs or every n
steps and logs ``folding/phi``, ``folding/phi_max`` and ``folding/fraction_folded`` with
``pl_module.log``, so they land in whatever logger the trainer has (TensorBoard where it
is installed) beside the loss and accuracy. To *train* for folding, add
``lam * spacefold.folding_loss(self, x1, x2)`` to the loss in ``training_step``.
"""

from __future__ import annotations

try:
    import lightning.pytorch as pl
except ImportError:  # pragma: no cover - depends on the environment
    try:
        import pytorch_lightning as pl  # type: ignore[no-redef]
    except ImportError:
        raise ImportError(
            "spacefold.lightning needs Lightning: pip install 'spacefold[lightning]' (or pip install lightning); "
            "without it, use spacefold.FoldingTracker in a plain PyTorch loop"
        ) from None

from torch import Tensor, nn

from .._util import check_int
from ..errors import InputError, InputTypeError
from .regularize import FoldingTracker

__all__ = ["FoldingCallback"]


class FoldingCallback(pl.Callback):
    """A Lightning callback that logs Φ_N, the median of maxima and the share of folded paths of a fixed
    probe set of segments during training.

    The callback walks the probe segments (exact walks by default) under the LightningModule (or its
    submodule ``module``) every n epochs or every n steps, and logs ``folding/phi``,
    ``folding/phi_max`` and ``folding/fraction_folded`` with ``pl_module.log_dict``, so they land in
    whatever logger the trainer has. ``callback.history`` keeps every measurement (dicts with
    ``epoch``, ``step`` and the values). To *train* for folding, add
    ``lam * spacefold.folding_loss(self, x1, x2)`` to the loss in ``training_step``.

    Args:
        x1 (Tensor): the starts of the probe segments, ``(n_probe, *input_shape)`` (see
            ``spacefold.probe_pairs``).
        x2 (Tensor): their ends, of the same shape.
        every_n_epochs (int): measure at the end of every n-th training epoch (and the last one).
        every_n_steps (int | None): measure after every n-th optimiser step instead (overrides epochs).
        method (str): the walk method, as in ``spacefold.folding_batch``.
        steps (int): for ``method="uniform"``: ``steps + 1`` points per segment.
        layers (str | type | list | None): which activations give bits.
        module (str | None): the attribute name of the submodule to measure (default: the LightningModule).
        prefix (str): the name prefix of the logged values.

    Raises:
        InputTypeError: a count that is not an int, ``module`` or ``prefix`` not a string, or segments
            that are not tensors.
        InputError: a count below 1, segments of different shapes, an unknown ``method``, or (during
            training) a ``module`` that names no submodule.

    Examples:
        >>> import torch, lightning, spacefold as sf
        >>> from spacefold.lightning import FoldingCallback
        >>> class Classifier(lightning.LightningModule):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.net = sf.mlp("2x8", in_features=2, n_classes=2, seed=0)
        ...     def training_step(self, batch, batch_idx):
        ...         x, y = batch
        ...         return torch.nn.functional.cross_entropy(self.net(x), y)
        ...     def configure_optimizers(self):
        ...         return torch.optim.SGD(self.parameters(), lr=0.1)
        >>> x = torch.randn(32, 2, generator=torch.Generator().manual_seed(0))
        >>> y = (x[:, 0] > 0).long()
        >>> data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
        >>> callback = FoldingCallback(*sf.probe_pairs(x, y, n_pairs=8), module="net")
        >>> quiet = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False,
        ...              enable_model_summary=False)
        >>> trainer = lightning.Trainer(max_epochs=2, callbacks=[callback], accelerator="cpu", **quiet)
        >>> trainer.fit(Classifier(), data)
        >>> [(row["epoch"], row["n_paths"]) for row in callback.history]
        [(0, 8), (1, 8)]
    """

    def __init__(
        self,
        x1: Tensor,
        x2: Tensor,
        *,
        every_n_epochs: int = 1,
        every_n_steps: int | None = None,
        method: str = "exact",
        steps: int = 100,
        layers=None,
        module: str | None = None,
        prefix: str = "folding/",
    ):
        super().__init__()
        try:
            check_int(every_n_epochs, "every_n_epochs", 1)
            if every_n_steps is not None:
                check_int(every_n_steps, "every_n_steps", 1)
        except TypeError as err:
            raise InputTypeError(str(err)) from None
        except ValueError as err:
            raise InputError(str(err)) from None
        if module is not None and not isinstance(module, str):
            raise InputTypeError(f"module must be the attribute name of a submodule or None, got {module!r}")
        if not isinstance(prefix, str):
            raise InputTypeError(f"prefix must be a string, got {type(prefix).__name__}")
        self.tracker = FoldingTracker(x1, x2, every=1, method=method, steps=steps, layers=layers)
        self.every_n_epochs, self.every_n_steps = every_n_epochs, every_n_steps
        self.module, self.prefix = module, prefix
        self.history: list[dict] = []

    def _target(self, pl_module: nn.Module) -> nn.Module:
        if self.module is None:
            return pl_module
        sub = getattr(pl_module, self.module, None)
        if not isinstance(sub, nn.Module):
            raise InputError(f"module={self.module!r} names no submodule of {type(pl_module).__name__}")
        return sub

    def _measure(self, trainer, pl_module, *, on_step: bool) -> None:
        values = self.tracker.measure(self._target(pl_module))
        self.history.append({"epoch": int(trainer.current_epoch), "step": int(trainer.global_step), **values})
        logged = {f"{self.prefix}{k}": float(v) for k, v in values.items() if k != "n_paths"}
        pl_module.log_dict(logged, on_step=on_step, on_epoch=not on_step, prog_bar=False)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: D102
        if self.every_n_steps is not None and trainer.global_step % self.every_n_steps == 0:
            self._measure(trainer, pl_module, on_step=True)

    def on_train_epoch_end(self, trainer, pl_module) -> None:  # noqa: D102
        if self.every_n_steps is not None:
            return
        epoch = trainer.current_epoch
        last = trainer.max_epochs is not None and epoch == trainer.max_epochs - 1
        if epoch % self.every_n_epochs == 0 or last:
            self._measure(trainer, pl_module, on_step=False)
