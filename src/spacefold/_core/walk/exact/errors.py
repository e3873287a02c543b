"""The error of the exact walk: a model it cannot follow (docs/method.md, 'The exact walk').

Raised while compiling a model (:mod:`.program`) and while walking it (a value held across a
nonlinear layer); it names the operation and points to ``method='bisect'``.
"""

from __future__ import annotations

from ....errors import InputTypeError


class NotPiecewiseLinearError(InputTypeError):
    """The model holds an operation the exact walk cannot follow (an :class:`InputTypeError`,
    so also a ``TypeError``)."""


def _refuse(what: str) -> NotPiecewiseLinearError:
    return NotPiecewiseLinearError(
        f"method='exact' cannot walk this model: {what}. The exact walk handles piecewise-linear networks "
        "(Linear, Conv, BatchNorm in eval mode, average and max pooling, Flatten, Dropout/Identity, residual "
        "additions, and the activation modules ReLU, LeakyReLU, PReLU, RReLU, Hardtanh, ReLU6); "
        "use method='bisect' for any other network"
    )
