"""trio: TCP streams and servers that carry TCP keepalive, set before ``connect()``.

:func:`open_tcp_stream` is :func:`trio.open_tcp_stream` with one more keyword, ``policy``: the same
resolution, the same happy eyeballs (RFC 6555 ordering, an attempt started every ``happy_eyeballs_delay``
seconds while the earlier ones are pending), the same ``OSError`` when every attempt fails; only each socket
gets the keepalive options between ``socket()`` and ``connect()``.
"""

from __future__ import annotations

import errno
import ssl
import sys
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any, NoReturn

try:
    import trio
    import trio.socket
except ImportError as exc:  # pragma: no cover - exercised by a subprocess test
    raise ImportError(
        "keepalive.trio needs trio: pip install 'tcp-keepalive[trio]'", name=exc.name, path=exc.path
    ) from exc

from keepalive import _runtime
from keepalive._async_common import ACCEPTED_INHERIT, preload
from keepalive._platform import Applied
from keepalive._policy import Policy
from keepalive._socket import apply as _apply_options

__all__ = ["apply", "open_ssl_over_tcp_stream", "open_tcp_listeners", "open_tcp_stream", "serve_tcp"]

preload()  # what the first connect needs, loaded now rather than on the event loop (_async_common.PRELOAD)

DEFAULT_DELAY = 0.250  # trio's own default happy_eyeballs_delay

# Whether accepted sockets inherit the listener's options (Linux). Tests flip it to cover the other path.
_accepted_inherit: bool = ACCEPTED_INHERIT


def apply(
    target: trio.SocketStream | trio.SSLStream[Any] | trio.socket.SocketType,
    policy: Policy | None = None,
    *,
    strict: bool = False,
) -> Applied:
    """Set keepalive on an open trio stream (``SocketStream``, ``SSLStream`` over one) or trio socket.

    The socket is reached through ``SocketStream.socket``; the options take effect from now on (the helpers in
    this module set them before ``connect()`` instead).

    Raises:
        TypeError: an ``SSLStream`` that is not over a ``SocketStream``.
    """
    if isinstance(target, trio.SSLStream):
        target = target.transport_stream
        if not isinstance(target, trio.SocketStream):
            raise TypeError(f"SSLStream over {type(target).__name__}: no socket to set keepalive on")
    if isinstance(target, trio.SocketStream):
        target = target.socket
    return _apply_options(target, _runtime.resolve(policy), strict=strict)


async def open_tcp_stream(
    host: str | bytes,
    port: int,
    *,
    policy: Policy | None = None,
    happy_eyeballs_delay: float | None = DEFAULT_DELAY,
    local_address: str | None = None,
) -> trio.SocketStream:
    """:func:`trio.open_tcp_stream` with TCP keepalive set on each socket before ``connect()``.

    Same arguments, same errors; ``policy`` defaults to :func:`keepalive.default_policy`.
    """
    if not isinstance(host, (str, bytes)):
        raise ValueError(f"host must be str or bytes, not {host!r}")
    if not isinstance(port, int):
        raise TypeError(f"port must be int, not {port!r}")
    if happy_eyeballs_delay is None:
        happy_eyeballs_delay = DEFAULT_DELAY
    policy = _runtime.resolve(policy)

    targets = await trio.socket.getaddrinfo(host, port, type=trio.socket.SOCK_STREAM)
    if not targets:
        raise OSError(f"no results found for hostname lookup: {_format_host_port(host, port)}")
    _reorder_for_rfc_6555_section_5_4(targets)

    oserrors: list[OSError] = []
    winning_socket: trio.socket.SocketType | None = None
    open_sockets: set[trio.socket.SocketType] = set()

    async def attempt_connect(socket_args: tuple[int, int, int], sockaddr: Any, attempt_failed: trio.Event) -> None:
        nonlocal winning_socket
        try:
            sock = trio.socket.socket(*socket_args)
            open_sockets.add(sock)
            _apply_options(sock, policy)
            if local_address is not None:
                # As trio does: let connect() pick the port, so many connections can share the source address.
                with suppress(OSError, AttributeError):
                    sock.setsockopt(trio.socket.IPPROTO_IP, trio.socket.IP_BIND_ADDRESS_NO_PORT, 1)
                try:
                    await sock.bind((local_address, 0))
                except OSError:
                    raise OSError(
                        f"local_address={local_address!r} is incompatible with remote address {sockaddr!r}"
                    ) from None
            await sock.connect(sockaddr)
            if winning_socket is None:
                winning_socket = sock
            nursery.cancel_scope.cancel()
        except OSError as exc:
            oserrors.append(exc)
            attempt_failed.set()

    try:
        async with trio.open_nursery() as nursery:
            for family, kind, proto, _, sockaddr in targets:
                attempt_failed = trio.Event()
                nursery.start_soon(attempt_connect, (family, kind, proto), sockaddr, attempt_failed)
                with trio.move_on_after(happy_eyeballs_delay):
                    await attempt_failed.wait()
        if winning_socket is None:
            message = f"all attempts to connect to {_format_host_port(host, port)} failed"
            raise OSError(message) from ExceptionGroup(message, oserrors)
        stream = trio.SocketStream(winning_socket)
        open_sockets.discard(winning_socket)
        return stream
    finally:
        # Every socket but the one handed to the stream: losers, failures, and all of them on cancellation.
        for sock in open_sockets:
            sock.close()


async def open_ssl_over_tcp_stream(
    host: str | bytes,
    port: int,
    *,
    policy: Policy | None = None,
    https_compatible: bool = False,
    ssl_context: ssl.SSLContext | None = None,
    happy_eyeballs_delay: float | None = DEFAULT_DELAY,
) -> trio.SSLStream[trio.SocketStream]:
    """:func:`trio.open_ssl_over_tcp_stream` over :func:`open_tcp_stream` (keepalive set before ``connect()``).

    Like trio's, it does not do the handshake: that happens on first use or :meth:`trio.SSLStream.do_handshake`.
    """
    tcp_stream = await open_tcp_stream(host, port, policy=policy, happy_eyeballs_delay=happy_eyeballs_delay)
    if ssl_context is None:
        ssl_context = ssl.create_default_context()
        if hasattr(ssl, "OP_IGNORE_UNEXPECTED_EOF"):
            ssl_context.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF
    return trio.SSLStream(tcp_stream, ssl_context, server_hostname=host, https_compatible=https_compatible)


async def open_tcp_listeners(
    port: int,
    *,
    host: str | bytes | None = None,
    backlog: int | None = None,
    policy: Policy | None = None,
) -> list[trio.SocketListener]:
    """:func:`trio.open_tcp_listeners` with ``policy`` set on each listening socket before ``listen()``.

    The sockets are made as trio makes them (the same addresses, SO_REUSEADDR, IPV6_V6ONLY, backlog capped at
    0xFFFF, the same error when no address family works), with the options set between ``bind()`` and
    ``listen()``: no connection can be accepted before the listener carries them. Linux copies the listener's
    options to every accepted socket, so on Linux every stream these listeners accept carries the policy. Other
    platforms do not promise that: use :func:`serve_tcp` there (it applies the policy to each accepted stream),
    or call :func:`apply` on each accepted stream.
    """
    policy = _runtime.resolve(policy)
    if not isinstance(port, int):
        raise TypeError(f"port must be an int not {port!r}")
    if backlog is not None and not isinstance(backlog, int):
        raise TypeError(f"backlog must be an int or None, not {backlog!r}")
    computed_backlog = 0xFFFF if backlog is None else min(backlog, 0xFFFF)
    addresses = await trio.socket.getaddrinfo(host, port, type=trio.socket.SOCK_STREAM, flags=trio.socket.AI_PASSIVE)
    listeners: list[trio.SocketListener] = []
    unsupported: list[OSError] = []
    try:
        for family, kind, proto, _, sockaddr in addresses:
            try:
                sock = trio.socket.socket(family, kind, proto)
            except OSError as exc:
                if exc.errno == errno.EAFNOSUPPORT:
                    unsupported.append(exc)
                    continue
                raise
            try:
                if sys.platform != "win32":
                    sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
                if family == trio.socket.AF_INET6:
                    sock.setsockopt(trio.socket.IPPROTO_IPV6, trio.socket.IPV6_V6ONLY, 1)
                await sock.bind(sockaddr)
                _apply_options(sock, policy)
                sock.listen(computed_backlog)
                listeners.append(trio.SocketListener(sock))
            except BaseException:
                sock.close()
                raise
    except BaseException:
        for listener in listeners:
            listener.socket.close()
        raise
    if unsupported and not listeners:
        message = "This system doesn't support any of the kinds of socket that that address could use"
        raise OSError(errno.EAFNOSUPPORT, message) from ExceptionGroup(message, unsupported)
    return listeners


async def serve_tcp(
    handler: Callable[[trio.SocketStream], Awaitable[object]],
    port: int,
    *,
    host: str | bytes | None = None,
    backlog: int | None = None,
    handler_nursery: trio.Nursery | None = None,
    policy: Policy | None = None,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """:func:`trio.serve_tcp` whose accepted streams carry ``policy``.

    The policy is set on the listening sockets (Linux copies it to each accepted socket); on other platforms each
    accepted stream also gets it before ``handler`` runs. Use with ``nursery.start`` to get the listeners.
    """
    policy = _runtime.resolve(policy)
    listeners = await open_tcp_listeners(port, host=host, backlog=backlog, policy=policy)
    if not _accepted_inherit:
        inner = handler

        async def applying_handler(stream: trio.SocketStream) -> object:
            _apply_options(stream.socket, policy)
            return await inner(stream)

        handler = applying_handler
    await trio.serve_listeners(handler, listeners, handler_nursery=handler_nursery, task_status=task_status)


def _reorder_for_rfc_6555_section_5_4(targets: list[Any]) -> None:
    """Move the first address of another family to second place (RFC 6555 section 5.4), as trio does."""
    for i in range(1, len(targets)):
        if targets[i][0] != targets[0][0]:
            if i != 1:
                targets.insert(1, targets.pop(i))
            break


def _format_host_port(host: str | bytes, port: int | str) -> str:
    host = host.decode("ascii") if isinstance(host, bytes) else host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
