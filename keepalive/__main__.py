"""``python -m keepalive``: the command-line interface."""

from __future__ import annotations

import sys

from keepalive._cli import main

if __name__ == "__main__":
    sys.exit(main())
