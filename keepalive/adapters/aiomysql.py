"""aiomysql (MySQL, MariaDB on asyncio): connections whose sockets carry the policy, reconnects included.

::

    conn = await keepalive.adapters.aiomysql.connect(host="db", user="app", db="app")
    keepalive.adapters.aiomysql.apply(conn)         # a connection opened elsewhere (its current socket only)

aiomysql has no keepalive option and no public socket accessor. :func:`connect` returns a subclass of
``aiomysql.Connection`` whose (re)connect step -- aiomysql's ``Connection._connect``, also run by
``ping(reconnect=True)`` -- applies the policy to the socket behind ``Connection._writer``, through asyncio's
public ``get_extra_info("socket")``. If either attribute is gone in a future aiomysql, every call raises
:class:`~keepalive.KeepaliveError` naming the installed version instead of silently leaving keepalive off.

``aiomysql.create_pool`` has no connection factory to hook: use SQLAlchemy's async engine with
:func:`keepalive.adapters.sqlalchemy.instrument`, or call :func:`apply` on what the pool hands out.
"""

from __future__ import annotations

import importlib
from typing import Any

try:
    _aiomysql: Any = importlib.import_module("aiomysql")
except ImportError as exc:
    raise ImportError("keepalive.adapters.aiomysql needs aiomysql: pip install 'tcp-keepalive[aiomysql]'") from exc

from keepalive._exceptions import KeepaliveError
from keepalive._platform import Applied
from keepalive._policy import Policy
from keepalive._runtime import resolve
from keepalive.adapters._internals import apply_to_transport, internals_changed

__all__ = ["KeepaliveConnection", "apply", "connect"]

_CLIENT = "aiomysql"
_DIST = "aiomysql"
_Connection: Any = _aiomysql.Connection
_HAS_CONNECT = hasattr(_Connection, "_connect")
_MISSING: Any = object()


def _check_internals() -> None:
    if not _HAS_CONNECT:
        raise internals_changed(_CLIENT, _DIST, "aiomysql.Connection has no '_connect' method")


def apply(connection: Any, policy: Policy | None = None) -> Applied:
    """Set ``policy`` on the current socket of an open aiomysql connection (not on a later reconnect's).

    Raises :class:`~keepalive.KeepaliveError` when the connection is closed or aiomysql's internals changed; a
    Unix-socket connection is skipped by :func:`keepalive.apply`, not an error.
    """
    policy = resolve(policy)
    if not isinstance(connection, _Connection):
        raise TypeError(f"expected an aiomysql connection, got {type(connection).__name__}")
    _check_internals()
    writer = getattr(connection, "_writer", _MISSING)
    if writer is _MISSING:
        raise internals_changed(_CLIENT, _DIST, "aiomysql.Connection has no '_writer' attribute")
    if writer is None:
        raise KeepaliveError("cannot apply keepalive to a closed aiomysql connection")
    transport = getattr(writer, "transport", None)
    if transport is None:
        raise internals_changed(_CLIENT, _DIST, f"Connection._writer is a {type(writer).__name__}")
    return apply_to_transport(transport, policy, _CLIENT, _DIST)


class KeepaliveConnection(_Connection):  # type: ignore[misc]
    """An aiomysql connection that applies the policy each time it (re)connects.

    Takes ``aiomysql.Connection``'s arguments plus ``policy``; open it with ``await conn._connect()`` or, better,
    use :func:`connect`.
    """

    def __init__(self, *args: Any, policy: Policy | None = None, **kwargs: Any) -> None:
        _check_internals()
        self.keepalive_policy: Policy = resolve(policy)
        super().__init__(*args, **kwargs)

    async def _connect(self) -> None:
        await super()._connect()
        try:
            apply(self, self.keepalive_policy)
        except BaseException:
            self.close()
            raise


async def connect(*, policy: Policy | None = None, **kwargs: Any) -> Any:
    """``await aiomysql.connect(**kwargs)`` returning a connection with ``policy`` that keeps it on reconnect."""
    connection = KeepaliveConnection(policy=policy, **kwargs)
    await connection._connect()
    return connection
