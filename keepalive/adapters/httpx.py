"""Keepalive for httpx: transports whose every connection gets the policy.

::

    import httpx
    import keepalive.adapters.httpx

    client = httpx.Client(transport=keepalive.adapters.httpx.HTTPTransport())
    client = httpx.AsyncClient(transport=keepalive.adapters.httpx.AsyncHTTPTransport(proxy="http://proxy:3128"))

Direct connections get the options through ``socket_options`` (httpx >= 0.25). httpcore sets them right
after the TCP connect, on the connected socket, before the TLS handshake and the first byte of the request (not
before ``connect()``: the TCP handshake runs without them, bounded by httpx's connect timeout; keepalive only
acts on an established connection anyway). httpcore drops ``socket_options`` on every proxy path
(``HTTPProxy`` never hands them to the connections it makes, and httpx does not give them to ``SOCKSProxy``),
so with ``proxy=`` the transport applies the policy right after the TCP connect to the proxy, before the
CONNECT / SOCKS handshake, through httpcore's public ``trace`` request extension; the ``network_stream``
response extension is the fallback should the trace events ever change. ``uds=`` connections are Unix
sockets: no TCP options are passed.

Pass ``proxy=`` to the transport, not to the client: ``httpx.Client(proxy=...)`` builds its own transport
without the policy, and a client given ``transport=`` ignores the proxy environment variables.
"""

from __future__ import annotations

import re
import typing
import weakref
from collections.abc import Awaitable, Callable

try:
    import httpcore
    import httpx
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("keepalive.adapters.httpx needs httpx: pip install 'tcp-keepalive[httpx]'") from exc

import keepalive
from keepalive._runtime import resolve

if typing.TYPE_CHECKING:
    from keepalive import Policy

__all__ = ["AsyncHTTPTransport", "HTTPTransport"]

_CONNECTED = ".connect_tcp.complete"  # httpcore's trace event once a TCP connection (to origin or proxy) is up


def _version(text: str) -> tuple[int, ...]:
    """``"1.0.3rc1"`` -> ``(1, 0, 3)``."""
    return tuple(int(m.group()) if (m := re.match(r"\d+", part)) else 0 for part in text.split(".")[:3])


# Before httpcore 1.0.3 (encode/httpcore#849) the async SOCKS path called the trace callback synchronously and
# raised TypeError for an async one; there the transport relies on the network_stream fallback alone.
_ASYNC_SOCKS_TRACE = _version(httpcore.__version__) >= (1, 0, 3)

_Trace = Callable[[str, dict[str, typing.Any]], None]
_AsyncTrace = Callable[[str, dict[str, typing.Any]], Awaitable[None]]


class _AfterConnect:
    """Applies a policy once per socket, to the socket behind an httpcore network stream."""

    def __init__(self, policy: Policy) -> None:
        self._policy = policy
        self._done: weakref.WeakSet[typing.Any] = weakref.WeakSet()

    def stream(self, stream: typing.Any, *, apply: bool = True) -> None:
        """Apply the policy to the stream's socket unless done before; ``apply=False`` only remembers it."""
        sock = None if stream is None else stream.get_extra_info("socket")
        if sock is None:
            return
        try:
            if sock in self._done:
                return
            self._done.add(sock)
        except TypeError:  # not weak-referenceable: apply again on each response, still correct
            pass
        if apply:
            # Any socket httpcore's backends expose (socket.socket, ssl.SSLSocket, trio's socket) has setsockopt.
            keepalive.apply(sock, self._policy)

    def response(self, response: httpx.Response, *, connected: bool) -> None:
        """After a response: the fallback, unless this request's trace hook already applied the policy.

        The response's stream may wrap the connected one (TLS), so its socket object can differ: remember it
        so that later responses on the same connection skip it.
        """
        self.stream(response.extensions.get("network_stream"), apply=not connected)

    def trace(self, user_trace: _Trace | None, connected: list[bool]) -> _Trace:
        def trace(name: str, info: dict[str, typing.Any]) -> None:
            if name.endswith(_CONNECTED):
                self.stream(info.get("return_value"))
                connected.append(True)
            if user_trace is not None:
                user_trace(name, info)

        return trace

    def async_trace(self, user_trace: _AsyncTrace | None, connected: list[bool]) -> _AsyncTrace:
        async def trace(name: str, info: dict[str, typing.Any]) -> None:
            if name.endswith(_CONNECTED):
                self.stream(info.get("return_value"))
                connected.append(True)
            if user_trace is not None:
                await user_trace(name, info)

        return trace


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
    return kwargs, None if kwargs.get("proxy") is None else _AfterConnect(policy)


def _is_socks(proxy: object) -> bool:
    """Whether ``proxy`` (a URL string, ``httpx.URL`` or ``httpx.Proxy``) is a SOCKS proxy."""
    if proxy is None:
        return False
    url = proxy.url if isinstance(proxy, httpx.Proxy) else httpx.URL(str(proxy))
    return url.scheme.startswith("socks")


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
        """Send ``request``; through a proxy, apply the policy to each new connection's socket."""
        hook = self._after_connect
        if hook is None:
            return super().handle_request(request)
        extensions = request.extensions
        connected: list[bool] = []
        request.extensions = {**extensions, "trace": hook.trace(extensions.get("trace"), connected)}
        try:
            response = super().handle_request(request)
        finally:
            request.extensions = extensions
        hook.response(response, connected=bool(connected))
        return response


class AsyncHTTPTransport(httpx.AsyncHTTPTransport):
    """``httpx.AsyncHTTPTransport`` whose connections get ``policy`` (default: the default policy).

    Takes every keyword argument of ``httpx.AsyncHTTPTransport``; a ``socket_options`` argument is
    extended (an option the policy also sets takes the policy's value).
    """

    def __init__(self, *, policy: Policy | None = None, **kwargs: typing.Any) -> None:
        self.policy: Policy = resolve(policy)
        kwargs, self._after_connect = _transport_kwargs(self.policy, kwargs)
        self._trace = _ASYNC_SOCKS_TRACE or not _is_socks(kwargs.get("proxy"))
        super().__init__(**kwargs)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request``; through a proxy, apply the policy to each new connection's socket."""
        hook = self._after_connect
        if hook is None:
            return await super().handle_async_request(request)
        if not self._trace:
            response = await super().handle_async_request(request)
            hook.response(response, connected=False)
            return response
        extensions = request.extensions
        connected: list[bool] = []
        request.extensions = {**extensions, "trace": hook.async_trace(extensions.get("trace"), connected)}
        try:
            response = await super().handle_async_request(request)
        finally:
            request.extensions = extensions
        hook.response(response, connected=bool(connected))
        return response
