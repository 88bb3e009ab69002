"""Errors and warnings: two small trees.

``KeepaliveError`` is the root of every error the library raises; errors that resemble a builtin also inherit
it (``InvalidPolicy`` is a ``ValueError``), so callers can catch whichever they already expect.
``KeepaliveWarning`` is the root of the warnings.
"""

from __future__ import annotations

__all__ = [
    "InvalidPolicy",
    "KeepaliveError",
    "KeepaliveWarning",
    "UnsupportedPlatformWarning",
]


class KeepaliveError(Exception):
    """Base class of every error raised by keepalive."""


class InvalidPolicy(KeepaliveError, ValueError):
    """A keepalive setting is out of range or unreadable.

    The message names the field (or environment variable), the value and the allowed range.
    """


class KeepaliveWarning(Warning):
    """Base class of the warnings issued by keepalive."""


class UnsupportedPlatformWarning(KeepaliveWarning):
    """This platform cannot set some of the policy's options (for example TCP_USER_TIMEOUT on macOS)."""
