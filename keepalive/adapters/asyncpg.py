"""asyncpg: the policy on every connection's socket (asyncpg has no keepalive option, asyncpg#606).

::

    pool = await asyncpg.create_pool(dsn, init=keepalive.adapters.asyncpg.init())
    pool = await asyncpg.create_pool(dsn, init=keepalive.adapters.asyncpg.init(then=my_init))  # yours runs after
    pool = await keepalive.adapters.asyncpg.create_pool(dsn, init=my_init)                      # the same
    conn = await keepalive.adapters.asyncpg.connect(dsn)

asyncpg offers no public way to the socket, so this module reads ``Connection._transport`` (the asyncio transport
asyncpg's protocol writes to) and then uses asyncio's public ``transport.get_extra_info("socket")``: for TLS
connections that is the TCP socket under the TLS layer. If a future asyncpg drops that attribute, every call
here raises :class:`~keepalive.KeepaliveError` naming the installed asyncpg version -- it never silently
leaves keepalive off. A pool's ``init`` runs once per new physical connection, so reconnects get the policy too.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from typing import Any

try:
    asyncpg: Any = importlib.import_module("asyncpg")
except ImportError as exc:
    raise ImportError("keepalive.adapters.asyncpg needs asyncpg: pip install 'tcp-keepalive[asyncpg]'") from exc

from keepalive._exceptions import KeepaliveError
from keepalive._platform import Applied
from keepalive._policy import Policy
from keepalive._runtime import resolve
from keepalive.adapters._internals import apply_to_transport, internals_changed

__all__ = ["apply", "connect", "create_pool", "init"]

_CLIENT = "asyncpg"
_DIST = "asyncpg"
#: The attribute this adapter relies on; checked once here so a changed asyncpg fails at the first call.
_HAS_TRANSPORT = hasattr(asyncpg.connection.Connection, "_transport")
_CONNECTION_TYPES: tuple[type, ...] = (asyncpg.connection.Connection, asyncpg.pool.PoolConnectionProxy)

InitHook = Callable[[Any], Awaitable[None]]


def apply(connection: Any, policy: Policy | None = None) -> Applied:
    """Set ``policy`` on the socket of an open asyncpg connection (a ``Connection`` or a pool's proxy).

    Raises :class:`~keepalive.KeepaliveError` when the connection is closed or asyncpg's internals changed;
    otherwise returns what :func:`keepalive.apply` did (a Unix-socket connection is skipped, not an error).
    """
    policy = resolve(policy)
    if not isinstance(connection, _CONNECTION_TYPES):
        raise TypeError(f"expected an asyncpg connection, got {type(connection).__name__}")
    connection = _as_any(connection)
    if not _HAS_TRANSPORT:
        raise internals_changed(_CLIENT, _DIST, "asyncpg.connection.Connection has no '_transport' attribute")
    if connection.is_closed():
        raise KeepaliveError("cannot apply keepalive to a closed asyncpg connection")
    transport = connection._transport
    if transport is None or not hasattr(transport, "get_extra_info"):
        raise internals_changed(_CLIENT, _DIST, f"Connection._transport is {type(transport).__name__}")
    return apply_to_transport(transport, policy, _CLIENT, _DIST)


def _as_any(value: object) -> Any:
    return value


def init(policy: Policy | None = None, *, then: InitHook | None = None) -> InitHook:
    """An ``init`` coroutine function for ``asyncpg.create_pool(init=...)`` that applies ``policy``.

    asyncpg calls ``init`` once for each new physical connection. ``then`` is your own ``init``: it runs after
    the policy is applied, with the same connection. The policy is resolved (and the runtime check run) now.
    """
    resolved = resolve(policy)
    if not _HAS_TRANSPORT:
        raise internals_changed(_CLIENT, _DIST, "asyncpg.connection.Connection has no '_transport' attribute")

    async def keepalive_init(connection: Any) -> None:
        apply(connection, resolved)
        if then is not None:
            await then(connection)

    return keepalive_init


async def connect(dsn: str | None = None, *, policy: Policy | None = None, **kwargs: Any) -> Any:
    """``asyncpg.connect(dsn, **kwargs)`` with ``policy`` applied; the connection is closed if that fails."""
    resolved = resolve(policy)
    connection = await asyncpg.connect(dsn, **kwargs)
    try:
        apply(connection, resolved)
    except BaseException:
        await connection.close()
        raise
    return connection


def create_pool(dsn: str | None = None, *, policy: Policy | None = None, **kwargs: Any) -> Any:
    """``asyncpg.create_pool(dsn, **kwargs)`` with :func:`init` composed with your own ``init=`` (if any).

    Returns the (not yet initialised) ``asyncpg.Pool``: ``await`` it or use ``async with``, as with asyncpg's own.
    """
    kwargs["init"] = init(policy, then=kwargs.get("init"))
    return asyncpg.create_pool(dsn, **kwargs)
