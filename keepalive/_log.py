"""Logger names: ``keepalive`` with one child per area (``keepalive.socket``, ``keepalive.check``, ...)."""

from __future__ import annotations

import logging

ROOT = "keepalive"


def get_logger(area: str) -> logging.Logger:
    """Return the logger ``keepalive.<area>``."""
    return logging.getLogger(f"{ROOT}.{area}")
