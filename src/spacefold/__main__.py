"""``python -m spacefold``: the command line (also under ``torchrun -m spacefold``)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
