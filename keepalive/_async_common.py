"""What keepalive.asyncio, keepalive.anyio and keepalive.trio share: whether listeners pass options on.

Imports only the standard library, so each wrapper can use it without pulling in another runtime.
"""

from __future__ import annotations

import sys
from typing import Final

__all__ = ["ACCEPTED_INHERIT"]

#: Whether a socket returned by ``accept()`` carries the keepalive options of its listening socket.
#: Linux copies SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT and TCP_USER_TIMEOUT from the listener
#: to each accepted socket (the accepted ``struct sock`` is a clone of the listener's; tested in
#: tests/test_async_*.py). Other platforms do not promise it, so the server helpers apply the policy to each
#: accepted connection there. Each wrapper module copies this into its own
#: ``_accepted_inherit`` global, which tests flip to exercise the other platforms' path.
ACCEPTED_INHERIT: Final = sys.platform.startswith("linux")
