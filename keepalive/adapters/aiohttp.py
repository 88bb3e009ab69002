"""Keepalive for aiohttp: a ``TCPConnector`` whose every socket gets the policy before it connects.

::

    import aiohttp
    import keepalive.adapters.aiohttp

    async with aiohttp.ClientSession(connector=keepalive.adapters.aiohttp.TCPConnector()) as session:
        ...

The connector passes aiohttp a ``socket_factory`` (aiohttp >= 3.12) that creates the socket, as aiohttp
would, and applies the policy to it while it is still unconnected. Connections to an HTTP proxy
(``session.get(url, proxy=...)``) are made by the same connector, HTTPS tunnels included, so they are covered.
"""

from __future__ import annotations

import socket
import typing

try:
    import aiohttp
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("keepalive.adapters.aiohttp needs aiohttp: pip install 'tcp-keepalive[aiohttp]'") from exc

import keepalive
from keepalive._runtime import resolve

if typing.TYPE_CHECKING:
    from aiohttp.connector import AddrInfoType, SocketFactoryType

    from keepalive import Policy

__all__ = ["TCPConnector", "socket_factory"]


def socket_factory(policy: Policy | None = None, factory: SocketFactoryType | None = None) -> SocketFactoryType:
    """Return an aiohttp ``socket_factory`` that applies ``policy`` to each new, unconnected socket.

    ``factory`` is the factory to wrap (a user's own); without one the socket is made as aiohttp makes it,
    ``socket.socket(family, type, proto)`` from the address info. Use it with any ``TCPConnector``
    subclass: ``SomeConnector(socket_factory=keepalive.adapters.aiohttp.socket_factory())``.
    """
    resolved = resolve(policy)

    def create(addr_info: AddrInfoType) -> socket.socket:
        if factory is not None:
            sock = factory(addr_info)
        else:
            family, type_, proto, _, _ = addr_info
            sock = socket.socket(family=family, type=type_, proto=proto)
        keepalive.apply(sock, resolved)
        return sock

    return create


_factory = socket_factory  # TCPConnector's parameter of the same name shadows it


class TCPConnector(aiohttp.TCPConnector):
    """``aiohttp.TCPConnector`` whose connections get ``policy`` (default: the default policy).

    Takes every keyword argument of ``aiohttp.TCPConnector``; a ``socket_factory`` argument is wrapped:
    it still makes the socket, then the policy is applied to it.
    """

    def __init__(
        self,
        *,
        policy: Policy | None = None,
        socket_factory: SocketFactoryType | None = None,
        **kwargs: typing.Any,
    ) -> None:
        self.policy: Policy = resolve(policy)
        super().__init__(socket_factory=_factory(self.policy, socket_factory), **kwargs)
