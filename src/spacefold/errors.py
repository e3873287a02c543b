"""The errors spacefold raises for bad input.

Every check at the edge of the library (public functions, loaders, the CLI) raises an
:class:`InputError` whose message names the argument, what was expected and what came.
The command line turns exactly these into exit code 2 and one line on stderr; any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input: a value, shape, file or option that spacefold cannot use (a ``ValueError``).

    The message is one sentence that names the argument, what was expected and what came. The command
    line turns exactly these errors into exit code 2 and one line on stderr; any other exception is a
    bug and keeps its traceback.

    Examples:
        >>> import torch, spacefold as sf
        >>> try:
        ...     sf.chi(torch.tensor([[0, 2]]))
        ... except sf.InputError as err:
        ...     print(err)
        walk must hold only 0 and 1, got other values
        >>> issubclass(sf.InputError, ValueError)
        True
    """


class InputTypeError(InputError, TypeError):
    """Bad input of the wrong kind: a type, a module or a layer that is not supported (an
    ``InputError`` and a ``TypeError``).

    Examples:
        >>> import spacefold as sf
        >>> try:
        ...     sf.chi([[0, 1]])
        ... except sf.InputTypeError as err:
        ...     print(err)
        walk must be a torch.Tensor of 0/1 patterns, got list
        >>> issubclass(sf.InputTypeError, TypeError), issubclass(sf.InputTypeError, sf.InputError)
        (True, True)
    """


class MissingExtraError(InputError, ImportError):
    """An optional dependency is not installed; the message names what to install
    (``pip install 'spacefold[plot]'``). An ``ImportError`` too, so ``except ImportError`` still works."""


__all__ = ["InputError", "InputTypeError", "MissingExtraError"]
