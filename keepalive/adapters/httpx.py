"""Keepalive for httpx: transports whose every connection gets the policy.

::

    import httpx
    import keepalive.adapters.httpx

    client = httpx.Client(transport=keepalive.adapters.httpx.HTTPTransport())
    client = httpx.AsyncClient(transport=keepalive.adapters.httpx.AsyncHTTPTransport(proxy="http://proxy:3128"))

Direct connections and connections to an HTTP(S) proxy get the options before ``connect()``, through
``socket_options`` (httpx >= 0.25). httpcore drops ``socket_options`` on the SOCKS path, so there the
transport applies the policy right after the first response on each new connection, through the public
``network_stream`` response extension. ``uds=`` connections are Unix sockets: no TCP options are passed.

Pass ``proxy=`` to the transport, not to the client: ``httpx.Client(proxy=...)`` builds its own transport
without the policy, and a client given ``transport=`` ignores the proxy environment variables.
"""

from __future__ import annotations

import typing
import weakref

try:
    import httpx
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("keepalive.adapters.httpx needs httpx: pip install 'tcp-keepalive[httpx]'") from exc

import keepalive
from keepalive._runtime import resolve

if typing.TYPE_CHECKING:
    from keepalive import Policy

__all__ = ["AsyncHTTPTransport", "HTTPTransport"]

_SOCKS_SCHEMES = frozenset({"socks5", "socks5h"})


def _is_socks(proxy: object) -> bool:
    """Whether httpx will route through a SOCKS proxy (the path where httpcore drops socket_options)."""
    if proxy is None:
        return False
    url = proxy.url if isinstance(proxy, httpx.Proxy) else httpx.URL(str(proxy))
    return url.scheme in _SOCKS_SCHEMES


class _AfterConnect:
    """Applies a policy once per socket, to the socket behind a response's ``network_stream``."""

    def __init__(self, policy: Policy) -> None:
        self._policy = policy
        self._done: weakref.WeakSet[typing.Any] = weakref.WeakSet()

    def __call__(self, response: httpx.Response) -> None:
        stream = response.extensions.get("network_stream")
        sock = None if stream is None else stream.get_extra_info("socket")
        if sock is None:
            return
        try:
            if sock in self._done:
                return
            self._done.add(sock)
        except TypeError:  # not weak-referenceable: apply again on each response, still correct
            pass
        # Any socket httpcore's backends expose (socket.socket, ssl.SSLSocket, trio's socket) has setsockopt.
        keepalive.apply(sock, self._policy)


def _transport_kwargs(
    policy: Policy, kwargs: dict[str, typing.Any]
) -> tuple[dict[str, typing.Any], _AfterConnect | None]:
    """Return httpx's keyword arguments with the policy's socket options, and the after-connect hook if needed."""
    if kwargs.get("uds") is not None:
        return kwargs, None
    given = kwargs.get("socket_options")
    ours = keepalive.socket_options(policy)
    taken = {(level, name) for level, name, _ in ours}
    kept = [opt for opt in (given or ()) if (opt[0], opt[1]) not in taken]
    kwargs["socket_options"] = kept + ours
    return kwargs, _AfterConnect(policy) if _is_socks(kwargs.get("proxy")) else None


class HTTPTransport(httpx.HTTPTransport):
    """``httpx.HTTPTransport`` whose connections get ``policy`` (default: the default policy).

    Takes every keyword argument of ``httpx.HTTPTransport``; a ``socket_options`` argument is extended (an
    option the policy also sets takes the policy's value).
    """

    def __init__(self, *, policy: Policy | None = None, **kwargs: typing.Any) -> None:
        self.policy: Policy = resolve(policy)
        kwargs, self._after_connect = _transport_kwargs(self.policy, kwargs)
        super().__init__(**kwargs)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request``; on the SOCKS path, apply the policy to a new connection's socket."""
        response = super().handle_request(request)
        if self._after_connect is not None:
            self._after_connect(response)
        return response


class AsyncHTTPTransport(httpx.AsyncHTTPTransport):
    """``httpx.AsyncHTTPTransport`` whose connections get ``policy`` (default: the default policy).

    Takes every keyword argument of ``httpx.AsyncHTTPTransport``; a ``socket_options`` argument is
    extended (an option the policy also sets takes the policy's value).
    """

    def __init__(self, *, policy: Policy | None = None, **kwargs: typing.Any) -> None:
        self.policy: Policy = resolve(policy)
        kwargs, self._after_connect = _transport_kwargs(self.policy, kwargs)
        super().__init__(**kwargs)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request``; on the SOCKS path, apply the policy to a new connection's socket."""
        response = await super().handle_async_request(request)
        if self._after_connect is not None:
            self._after_connect(response)
        return response
