"""What keepalive.asyncio, keepalive.anyio and keepalive.trio share: whether listeners pass options on, and what
each loads before its event loop runs.

Imports only the standard library, so each wrapper can use it without pulling in another runtime.
"""

from __future__ import annotations

import importlib
import sys
from typing import Final

__all__ = ["ACCEPTED_INHERIT", "PRELOAD", "preload"]

#: The modules the first wrapped connect of a process would otherwise import on the event loop: the path model
#: (the default policy is computed from it) and the runtime check's starter. Importing them takes about 3 ms,
#: most of the loop's stall budget (5 ms) for that connect; an async wrapper module is imported before its loop
#: runs (applications import at the top), so each wrapper loads them when it is imported (:func:`preload`) and the
#: first connect only reads a few files and starts the check's thread.
PRELOAD: Final = ("keepalive._path._model", "keepalive.checker._runtime")

#: Whether a socket returned by ``accept()`` carries the keepalive options of its listening socket.
#: Linux copies SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT and TCP_USER_TIMEOUT from the listener
#: to each accepted socket (the accepted ``struct sock`` is a clone of the listener's; tested in
#: tests/test_async_*.py). Other platforms do not promise it, so the server helpers apply the policy to each
#: accepted connection there. Each wrapper module copies this into its own
#: ``_accepted_inherit`` global, which tests flip to exercise the other platforms' path.
ACCEPTED_INHERIT: Final = sys.platform.startswith("linux")


def preload() -> None:
    """Import :data:`PRELOAD` now (the runtime check's starter only when ``KEEPALIVE_CHECK`` is not off).

    Never raises: a module that cannot be imported is imported, and its error handled, on first use as before.
    """
    from keepalive._runtime import check_enabled

    for name in PRELOAD:
        if name == "keepalive.checker._runtime" and not check_enabled():
            continue
        try:
            importlib.import_module(name)
        except Exception:  # the first connect meets the same error and handles it where it is used
            pass
