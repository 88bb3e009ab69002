"""RabbitMQ with aio-pika or aiormq: a transport factory that puts the policy on every AMQP socket.

::

    connection = await keepalive.adapters.aio_pika.connect_robust("amqp://guest:guest@rabbit/")
    connection = await keepalive.adapters.aio_pika.connect("amqp://guest:guest@rabbit/")
    connection = await aiormq.connect(url, transport_factory=keepalive.adapters.aio_pika.transport_factory())

aiormq (under aio-pika) opens its sockets through a public ``aiormq.TransportFactory``; this one wraps aiormq's own
TCP or TLS factory and applies the policy to the new connection's socket (``StreamWriter.get_extra_info``).
``aio_pika.connect*`` turn extra keyword arguments into URL query parameters, so a factory cannot be passed
through them; :func:`connect` and :func:`connect_robust` instead give aio-pika a ``connection_class`` (a subclass
of yours, by default ``aio_pika.Connection`` / ``RobustConnection``) that adds the factory to the arguments
aio-pika hands aiormq on every (re)connect (``Connection.kwargs``), so a robust connection's reconnects get the
policy too. If that attribute is gone in a future aio-pika, they raise :class:`~keepalive.KeepaliveError`.
AMQP heartbeats (60 s by default) also keep a connection busy; TCP keepalive still matters where a
heartbeat is disabled, longer than the path's idle timeout, or the client is blocked.
"""

from __future__ import annotations

import asyncio
from typing import Any

try:
    import aio_pika
    import aiormq
    from aiormq.connection import TCPTransportFactory, TLSTransportFactory
except ImportError as exc:
    raise ImportError(
        "keepalive.adapters.aio_pika needs aio-pika with aiormq >= 7.2 (TransportFactory): "
        "pip install 'tcp-keepalive[aio-pika]'"
    ) from exc

from yarl import URL

from keepalive._policy import Policy
from keepalive._runtime import resolve
from keepalive.adapters._internals import apply_to_transport, internals_changed

__all__ = ["KeepaliveTransportFactory", "connect", "connect_robust", "transport_factory"]


class KeepaliveTransportFactory(aiormq.TransportFactory):
    """An ``aiormq.TransportFactory`` that applies ``policy`` to each connection's socket.

    ``inner`` is the factory that really opens the connection; by default aiormq's own TCP factory, or its TLS
    factory for ``amqps://`` URLs.
    """

    def __init__(self, policy: Policy | None = None, inner: aiormq.TransportFactory | None = None) -> None:
        self.policy = resolve(policy)
        self.inner = inner

    async def create(self, url: URL, **kwargs: Any) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Open the connection with the inner factory, then apply the policy to its socket."""
        inner = self.inner
        if inner is None:
            inner = TLSTransportFactory() if url.scheme == "amqps" else TCPTransportFactory()
        reader, writer = await inner.create(url, **kwargs)
        try:
            apply_to_transport(writer, self.policy, "aiormq", "aiormq")
        except BaseException:
            writer.close()
            raise
        return reader, writer


def transport_factory(policy: Policy | None = None) -> KeepaliveTransportFactory:
    """A transport factory for ``aio_pika.connect*`` / ``aiormq.connect``'s ``transport_factory=`` argument."""
    return KeepaliveTransportFactory(policy)


def _connection_class(base: type[Any], policy: Policy | None) -> type[Any]:
    factory = transport_factory(policy)

    class KeepaliveConnection(base):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            aiormq_kwargs = getattr(self, "kwargs", None)
            if not isinstance(aiormq_kwargs, dict):
                raise internals_changed(
                    "aio-pika", "aio-pika", f"{base.__name__} has no 'kwargs' dict of aiormq connect arguments"
                )
            aiormq_kwargs["transport_factory"] = factory

    KeepaliveConnection.__name__ = KeepaliveConnection.__qualname__ = f"Keepalive{base.__name__}"
    return KeepaliveConnection


async def connect(
    url: str | URL | None = None,
    *,
    policy: Policy | None = None,
    connection_class: type[Any] = aio_pika.Connection,
    **kwargs: Any,
) -> Any:
    """``aio_pika.connect(url, **kwargs)`` whose socket carries ``policy``; returns an instance of a subclass of
    ``connection_class``."""
    return await aio_pika.connect(url, connection_class=_connection_class(connection_class, policy), **kwargs)


async def connect_robust(
    url: str | URL | None = None,
    *,
    policy: Policy | None = None,
    connection_class: type[Any] = aio_pika.RobustConnection,
    **kwargs: Any,
) -> Any:
    """``aio_pika.connect_robust(url, **kwargs)`` whose sockets carry ``policy``, reconnects included."""
    return await aio_pika.connect_robust(url, connection_class=_connection_class(connection_class, policy), **kwargs)
