"""The error of the exact walk: a model it cannot follow (docs/method.md, 'The exact walk').

Raised while compiling a model (:mod:`.program`) and while walking it (a value held across a
nonlinear layer); it names the operation and points to ``method='bisect'``.
"""

from __future__ import annotations

from ....errors import InputTypeError


class NotPiecewiseLinearError(InputTypeError):
    """The model holds an operation the exact walk cannot follow (an ``InputTypeError``, so also a
    ``TypeError``); the message names the operation and points to ``method="bisect"``.

    Examples:
        >>> import torch, spacefold as sf
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.GELU())
        >>> try:
        ...     sf.walk(net, torch.zeros(2), torch.ones(2), method="exact")
        ... except sf.NotPiecewiseLinearError as err:
        ...     print(str(err).split(". ")[0])
        method='exact' cannot walk this model: activation GELU is not piecewise linear
        >>> sf.walk(net, torch.zeros(2), torch.ones(2), method="bisect").method
        'bisect'
    """


def _refuse(what: str) -> NotPiecewiseLinearError:
    return NotPiecewiseLinearError(
        f"method='exact' cannot walk this model: {what}. The exact walk handles piecewise-linear networks "
        "(Linear, Conv, BatchNorm in eval mode, average and max pooling, Flatten, Dropout/Identity, residual "
        "additions, and the activation modules ReLU, LeakyReLU, PReLU, RReLU, Hardtanh, ReLU6); "
        "use method='bisect' for any other network"
    )
