"""The errors spacefold raises for bad input.

Every check at the edge of the library (public functions, loaders, the CLI) raises an
:class:`InputError` whose message names the argument, what was expected and what came.
The command line turns exactly these into exit code 2 and one line on stderr; any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input: a value, shape, file or option that spacefold cannot use."""


class InputTypeError(InputError, TypeError):
    """Bad input of the wrong kind (a type, a module, a layer that is not supported)."""


class MissingExtraError(InputError, ImportError):
    """An optional dependency is not installed; the message names what to install
    (``pip install 'spacefold[plot]'``). An ``ImportError`` too, so ``except ImportError`` still works."""


__all__ = ["InputError", "InputTypeError", "MissingExtraError"]
