"""NATS with nats-py: a connect helper whose client carries the policy on every (re)connect.

::

    nc = await keepalive.adapters.nats.connect("nats://nats:4222", name="worker")
    keepalive.adapters.nats.apply(nc)               # a client connected elsewhere (its current socket only)

nats-py has no socket option and no transport hook (a transport handed to the client before it connects is
replaced, because an unconnected transport is falsy). So :func:`connect` applies the policy right after
``Client.connect`` returns and again from a ``reconnected_cb`` it installs (yours, if given, runs after it):
each time on the socket behind the client's transport, ``Client._transport._io_writer``, through asyncio's public
``get_extra_info("socket")``. ``tls://`` servers work (that is the TCP socket under TLS); WebSocket servers
(``ws://``, ``wss://``) are refused. If nats-py's internals change, :func:`connect` raises
:class:`~keepalive.KeepaliveError` naming the installed version instead of silently leaving keepalive off.
NATS's own PING (every 2 minutes by default) is traffic too; TCP keepalive still covers a shorter path idle
timeout than that, and finds a dead peer while the client is idle.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

try:
    import nats  # noqa: F401  (the client this adapter configures; imported so a missing one fails here)
    from nats.aio.client import Client
except ImportError as exc:
    raise ImportError("keepalive.adapters.nats needs nats-py: pip install 'tcp-keepalive[nats]'") from exc

from keepalive._exceptions import KeepaliveError
from keepalive._platform import Applied
from keepalive._policy import Policy
from keepalive._runtime import resolve
from keepalive.adapters._internals import apply_to_transport, internals_changed

__all__ = ["apply", "connect"]

_CLIENT = "nats-py"
_DIST = "nats-py"
_MISSING: Any = object()


def apply(client: Client, policy: Policy | None = None) -> Applied:
    """Set ``policy`` on the current socket of a connected nats-py client (not on a later reconnect's).

    Raises :class:`~keepalive.KeepaliveError` when the client is not connected or nats-py's internals changed.
    """
    policy = resolve(policy)
    if not isinstance(client, Client):
        raise TypeError(f"expected a nats.aio.client.Client, got {type(client).__name__}")
    transport = getattr(client, "_transport", _MISSING)
    if transport is _MISSING:
        raise internals_changed(_CLIENT, _DIST, "nats.aio.client.Client has no '_transport' attribute")
    if transport is None or client.is_closed:
        raise KeepaliveError("cannot apply keepalive to a nats-py client that is not connected")
    writer = getattr(transport, "_io_writer", _MISSING)
    if writer is _MISSING:
        raise internals_changed(_CLIENT, _DIST, f"its transport {type(transport).__name__} has no '_io_writer'")
    if writer is None:
        raise KeepaliveError("cannot apply keepalive to a nats-py client that is not connected")
    return apply_to_transport(writer, policy, _CLIENT, _DIST)


async def connect(
    servers: str | list[str] = "nats://127.0.0.1:4222", *, policy: Policy | None = None, **options: Any
) -> Client:
    """``nats.connect(servers, **options)`` with the policy on the client's socket, reconnects included.

    A ``reconnected_cb`` in ``options`` still runs, after the policy is applied to the new socket.
    """
    for url in [servers] if isinstance(servers, str) else servers:
        if url.lower().startswith(("ws://", "wss://")):
            raise KeepaliveError(f"keepalive.adapters.nats supports nats:// and tls:// servers, not {url!r}")
    resolved = resolve(policy)
    users_reconnected_cb: Callable[[], Awaitable[None]] | None = options.pop("reconnected_cb", None)
    client = Client()

    async def reconnected_cb() -> None:
        apply(client, resolved)
        if users_reconnected_cb is not None:
            await users_reconnected_cb()

    await client.connect(servers, reconnected_cb=reconnected_cb, **options)
    try:
        apply(client, resolved)
    except BaseException:
        await client.close()
        raise
    return client
