"""asyncio: connections and servers that carry TCP keepalive, set before ``connect()``.

The connection helpers are drop-in replacements for :func:`asyncio.open_connection` and
:meth:`loop.create_connection() <asyncio.loop.create_connection>` with one more keyword, ``policy``. They
resolve the address like the loop does, make each socket themselves, set the keepalive options on it, connect
it with :meth:`loop.sock_connect() <asyncio.loop.sock_connect>` (trying every resolved address in order, or
staggered with asyncio's own happy eyeballs when ``happy_eyeballs_delay`` is given) and hand the connected
socket to the loop with ``sock=``, TLS arguments passed through. Errors are the loop's: the single error, or
``OSError('Multiple exceptions: ...')``, or an :class:`ExceptionGroup` with ``all_errors=True``.

Works with any loop that implements ``sock_connect`` and ``create_connection(sock=...)``, uvloop included.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import socket
from asyncio import staggered
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar, cast

from keepalive import _runtime
from keepalive._async_common import ACCEPTED_INHERIT, preload
from keepalive._platform import Applied
from keepalive._policy import Policy
from keepalive._socket import SocketLike
from keepalive._socket import apply as _apply_options

if TYPE_CHECKING:
    from ssl import SSLContext

__all__ = ["apply", "create_connection", "create_server", "open_connection", "start_server"]

preload()  # what the first connect needs, loaded now rather than on the event loop (_async_common.PRELOAD)

_ProtocolT = TypeVar("_ProtocolT", bound=asyncio.BaseProtocol)
_AddrInfo: TypeAlias = tuple[socket.AddressFamily, socket.SocketKind, int, str, Any]
_ClientConnectedCallback: TypeAlias = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None] | None]

# Whether accepted sockets inherit the listener's options (Linux). Tests flip it to cover the other path.
_accepted_inherit: bool = ACCEPTED_INHERIT

_NUMERIC = socket.AI_NUMERICHOST | getattr(socket, "AI_NUMERICSERV", 0)
_STREAM_LIMIT = 2**16  # asyncio.streams._DEFAULT_LIMIT


def apply(
    target: asyncio.StreamWriter | asyncio.BaseTransport | SocketLike,
    policy: Policy | None = None,
    *,
    strict: bool = False,
) -> Applied:
    """Set keepalive on an open asyncio connection: a ``StreamWriter``, a transport or a socket.

    The socket is reached through ``get_extra_info("socket")``; the options take effect from now on (the
    connection helpers in this module set them before ``connect()`` instead).

    Raises:
        ValueError: the transport has no socket (a pipe, a closed transport).
    """
    sock: SocketLike
    get_extra_info = getattr(target, "get_extra_info", None)  # StreamWriter, asyncio's or uvloop's transports
    if get_extra_info is not None:
        found = get_extra_info("socket")
        if found is None:
            raise ValueError(f"{type(target).__name__} has no socket (closed, or not a socket transport)")
        sock = found
    else:
        sock = cast(SocketLike, target)
    return _apply_options(sock, _runtime.resolve(policy), strict=strict)


async def open_connection(
    host: str | None = None,
    port: int | str | None = None,
    *,
    policy: Policy | None = None,
    limit: int = _STREAM_LIMIT,
    ssl: SSLContext | bool | None = None,
    family: int = 0,
    proto: int = 0,
    flags: int = 0,
    sock: socket.socket | None = None,
    local_addr: tuple[str, int] | None = None,
    server_hostname: str | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
    happy_eyeballs_delay: float | None = None,
    interleave: int | None = None,
    all_errors: bool = False,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """:func:`asyncio.open_connection` with TCP keepalive set on the socket before ``connect()``.

    Same arguments and errors; ``policy`` defaults to :func:`keepalive.default_policy`.
    """
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    transport, _ = await create_connection(
        lambda: protocol,
        host,
        port,
        policy=policy,
        ssl=ssl,
        family=family,
        proto=proto,
        flags=flags,
        sock=sock,
        local_addr=local_addr,
        server_hostname=server_hostname,
        ssl_handshake_timeout=ssl_handshake_timeout,
        ssl_shutdown_timeout=ssl_shutdown_timeout,
        happy_eyeballs_delay=happy_eyeballs_delay,
        interleave=interleave,
        all_errors=all_errors,
    )
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    return reader, writer


async def create_connection(
    protocol_factory: Callable[[], _ProtocolT],
    host: str | None = None,
    port: int | str | None = None,
    *,
    policy: Policy | None = None,
    ssl: SSLContext | bool | None = None,
    family: int = 0,
    proto: int = 0,
    flags: int = 0,
    sock: socket.socket | None = None,
    local_addr: tuple[str, int] | None = None,
    server_hostname: str | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
    happy_eyeballs_delay: float | None = None,
    interleave: int | None = None,
    all_errors: bool = False,
) -> tuple[asyncio.Transport, _ProtocolT]:
    """:meth:`loop.create_connection() <asyncio.loop.create_connection>` with keepalive set before ``connect()``.

    Same arguments (``all_errors`` as in Python 3.12, on every version) and the same errors. With ``sock=``
    the given socket gets the options and is handed over as it is.
    """
    loop = asyncio.get_running_loop()
    # The loop's own argument checks, first, so nothing is resolved or connected for a call that cannot work.
    if server_hostname is not None and not ssl:
        raise ValueError("server_hostname is only meaningful with ssl")
    if server_hostname is None and ssl:
        if not host:
            raise ValueError("You must set server_hostname when using ssl without a host")
        server_hostname = host
    if ssl_handshake_timeout is not None and not ssl:
        raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
    if ssl_shutdown_timeout is not None and not ssl:
        raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
    if host is not None or port is not None:
        if sock is not None:
            raise ValueError("host/port and sock can not be specified at the same time")
    elif sock is None:
        raise ValueError("host and port was not specified and no sock specified")

    policy = _runtime.resolve(policy)
    if sock is not None:
        _apply_options(sock, policy)
    else:
        sock = await _connect(
            loop,
            host,
            port,
            policy=policy,
            family=family,
            proto=proto,
            flags=flags,
            local_addr=local_addr,
            happy_eyeballs_delay=happy_eyeballs_delay,
            interleave=interleave,
            all_errors=all_errors,
        )
    # From here the loop owns the socket: it closes it itself if the transport cannot be set up (uvloop
    # detaches it first), so closing it here too could close a descriptor number reused meanwhile.
    return await loop.create_connection(
        protocol_factory,
        sock=sock,
        ssl=ssl,
        server_hostname=server_hostname,
        ssl_handshake_timeout=ssl_handshake_timeout,
        ssl_shutdown_timeout=ssl_shutdown_timeout,
    )


async def start_server(
    client_connected_cb: _ClientConnectedCallback,
    host: str | Sequence[str] | None = None,
    port: int | str | None = None,
    *,
    policy: Policy | None = None,
    limit: int = _STREAM_LIMIT,
    start_serving: bool = True,
    **kwds: Any,
) -> asyncio.Server:
    """:func:`asyncio.start_server` whose accepted connections carry ``policy``.

    The options are set on the listening sockets before the server starts accepting; Linux copies them to every
    accepted socket. On other platforms each accepted connection also gets them before ``client_connected_cb``
    runs. Other keywords go to :meth:`loop.create_server() <asyncio.loop.create_server>`.
    """
    loop = asyncio.get_running_loop()
    policy = _runtime.resolve(policy)
    callback = client_connected_cb
    if not _accepted_inherit:
        callback = _applying_callback(client_connected_cb, policy)

    def factory() -> asyncio.StreamReaderProtocol:
        reader = asyncio.StreamReader(limit=limit, loop=loop)
        return asyncio.StreamReaderProtocol(reader, callback, loop=loop)

    return await _serve(
        loop, factory=factory, host=host, port=port, policy=policy, start_serving=start_serving, kwds=kwds
    )


async def create_server(
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    host: str | Sequence[str] | None = None,
    port: int | str | None = None,
    *,
    policy: Policy | None = None,
    start_serving: bool = True,
    **kwds: Any,
) -> asyncio.Server:
    """:meth:`loop.create_server() <asyncio.loop.create_server>` whose accepted connections carry ``policy``.

    The options are set on the listening sockets before the server starts accepting; Linux copies them to every
    accepted socket. On other platforms each protocol's ``connection_made`` is preceded by :func:`apply` on its
    transport (through a small wrapper protocol, so ``transport.get_protocol()`` returns the wrapper there).
    """
    loop = asyncio.get_running_loop()
    policy = _runtime.resolve(policy)
    factory: Callable[[], asyncio.BaseProtocol] = protocol_factory
    if not _accepted_inherit:
        factory = functools.partial(_wrap_protocol, protocol_factory, policy)
    return await _serve(
        loop, factory=factory, host=host, port=port, policy=policy, start_serving=start_serving, kwds=kwds
    )


async def _serve(
    loop: asyncio.AbstractEventLoop,
    *,
    factory: Callable[[], asyncio.BaseProtocol],
    host: str | Sequence[str] | None,
    port: int | str | None,
    policy: Policy,
    start_serving: bool,
    kwds: dict[str, Any],
) -> asyncio.Server:
    # start_serving=False: asyncio calls listen() only in start_serving(), so no connection can be accepted
    # before the listening sockets carry the options.
    server = await loop.create_server(factory, host, cast(int, port), start_serving=False, **kwds)
    try:
        for listener in server.sockets:
            _apply_options(listener, policy)
        if start_serving:
            await server.start_serving()
    except BaseException:
        server.close()
        raise
    return server


def _applying_callback(callback: _ClientConnectedCallback, policy: Policy) -> _ClientConnectedCallback:
    @functools.wraps(callback)
    def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Awaitable[None] | None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            _apply_options(sock, policy)
        return callback(reader, writer)

    return on_connect


def _wrap_protocol(protocol_factory: Callable[[], asyncio.BaseProtocol], policy: Policy) -> asyncio.BaseProtocol:
    inner = protocol_factory()
    if isinstance(inner, asyncio.BufferedProtocol):
        return _ApplyingBufferedProtocol(inner, policy)
    if isinstance(inner, asyncio.Protocol):
        return _ApplyingProtocol(inner, policy)
    return inner  # not a stream protocol: nothing to set


class _Applying(asyncio.BaseProtocol):
    """Forwards every callback to ``inner``; applies the policy to the transport first."""

    _inner: Any

    def __init__(self, inner: asyncio.BaseProtocol, policy: Policy) -> None:
        self._inner = inner
        self._policy = policy

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            _apply_options(sock, self._policy)
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def eof_received(self) -> bool | None:
        result: bool | None = self._inner.eof_received()
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _ApplyingProtocol(_Applying, asyncio.Protocol):
    """:class:`_Applying` for :class:`asyncio.Protocol`."""

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)


class _ApplyingBufferedProtocol(_Applying, asyncio.BufferedProtocol):
    """:class:`_Applying` for :class:`asyncio.BufferedProtocol`."""

    def get_buffer(self, sizehint: int) -> Any:
        return self._inner.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        self._inner.buffer_updated(nbytes)


# -- connecting ----------------------------------------------------------------------------------------------


async def _getaddrinfo(
    loop: asyncio.AbstractEventLoop,
    host: str | None,
    port: int | str | None,
    *,
    family: int,
    proto: int,
    flags: int,
) -> list[_AddrInfo]:
    # A numeric address needs no resolver: answer it here, without the executor round trip, like the loop's own
    # fast path for IP literals. Anything else goes to loop.getaddrinfo() exactly as the loop would send it.
    # An ASCII host goes as bytes: a str host makes CPython encode it with the "idna" codec, whose first use
    # imports encodings.idna, stringprep and unicodedata (about 4 ms on the loop); an IP literal is ASCII anyway.
    literal: str | bytes | None = host.encode("ascii") if isinstance(host, str) and host.isascii() else host
    try:
        return list(socket.getaddrinfo(literal, port, family, socket.SOCK_STREAM, proto, flags | _NUMERIC))
    except (socket.gaierror, UnicodeError):
        pass
    return list(await loop.getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM, proto=proto, flags=flags))


def _interleave(infos: Sequence[_AddrInfo], first_family_count: int) -> list[_AddrInfo]:
    """asyncio's address interleaving for happy eyeballs (RFC 8305 section 4): alternate the families."""
    by_family: dict[int, list[_AddrInfo]] = {}
    for info in infos:
        by_family.setdefault(info[0], []).append(info)
    lists = list(by_family.values())
    reordered: list[_AddrInfo] = []
    if first_family_count > 1:
        reordered.extend(lists[0][: first_family_count - 1])
        del lists[0][: first_family_count - 1]
    reordered.extend(info for info in itertools.chain.from_iterable(itertools.zip_longest(*lists)) if info)
    return reordered


async def _connect_sock(
    loop: asyncio.AbstractEventLoop,
    exceptions: list[list[OSError]],
    info: _AddrInfo,
    local_infos: list[_AddrInfo] | None,
    policy: Policy,
) -> socket.socket:
    """Create, configure, bind and connect one socket (the loop's ``_connect_sock`` plus the policy)."""
    mine: list[OSError] = []
    exceptions.append(mine)
    family, kind, proto, _, address = info
    sock = None
    try:
        sock = socket.socket(family=family, type=kind, proto=proto)
        sock.setblocking(False)
        _apply_options(sock, policy)
        if local_infos is not None:
            for local_family, _, _, _, local_address in local_infos:
                if local_family != family:
                    continue  # a local address of another family cannot be bound
                try:
                    sock.bind(local_address)
                    break
                except OSError as exc:
                    reason = (exc.strerror or str(exc)).lower()
                    mine.append(
                        OSError(exc.errno, f"error while attempting to bind on address {local_address!r}: {reason}")
                    )
            else:
                if mine:
                    raise mine.pop()
                raise OSError(f"no matching local address with family={family!r} found")
        await loop.sock_connect(sock, address)
        return sock
    except OSError as exc:
        mine.append(exc)
        if sock is not None:
            sock.close()
        raise
    except BaseException:
        if sock is not None:
            sock.close()
        raise


async def _connect(
    loop: asyncio.AbstractEventLoop,
    host: str | None,
    port: int | str | None,
    *,
    policy: Policy,
    family: int,
    proto: int,
    flags: int,
    local_addr: tuple[str, int] | None,
    happy_eyeballs_delay: float | None,
    interleave: int | None,
    all_errors: bool,
) -> socket.socket:
    """Connect a socket with ``policy`` set to ``host``:``port`` the way ``loop.create_connection`` does."""
    infos = await _getaddrinfo(loop, host, port, family=family, proto=proto, flags=flags)
    if not infos:
        raise OSError("getaddrinfo() returned empty list")
    local_infos = None
    if local_addr is not None:
        local_infos = await _getaddrinfo(loop, *local_addr[:2], family=family, proto=proto, flags=flags)
        if not local_infos:
            raise OSError("getaddrinfo() returned empty list")
    if happy_eyeballs_delay is not None and interleave is None:
        interleave = 1  # happy eyeballs alternates the families by default, as asyncio does
    if interleave:
        infos = _interleave(infos, interleave)

    exceptions: list[list[OSError]] = []
    if happy_eyeballs_delay is None:
        for info in infos:
            try:
                return await _connect_sock(loop, exceptions, info, local_infos, policy)
            except OSError:
                continue
    else:
        sock, other_errors = await _race(
            loop, exceptions=exceptions, infos=infos, local_infos=local_infos, policy=policy, delay=happy_eyeballs_delay
        )
        if sock is not None:
            return sock
        if other_errors:
            raise other_errors[0]
    errors = [exc for attempt in exceptions for exc in attempt]
    try:
        if all_errors:
            raise ExceptionGroup("create_connection failed", errors)
        if len(errors) == 1:
            raise errors[0]
        model = str(errors[0])
        if all(str(exc) == model for exc in errors):
            raise errors[0]
        raise OSError("Multiple exceptions: {}".format(", ".join(str(exc) for exc in errors)))
    finally:
        errors = []
        exceptions = []  # break the traceback -> frame -> exception cycle, as the loop does


async def _race(
    loop: asyncio.AbstractEventLoop,
    *,
    exceptions: list[list[OSError]],
    infos: list[_AddrInfo],
    local_infos: list[_AddrInfo] | None,
    policy: Policy,
    delay: float,
) -> tuple[socket.socket | None, list[BaseException]]:
    """asyncio's happy eyeballs (``staggered_race``) over the attempts; no connected socket is left open.

    Returns the winning socket (or None) and the attempts' errors that are not OSError (bugs: re-raised).
    """
    connected: list[socket.socket] = []

    async def attempt(info: _AddrInfo) -> socket.socket:
        sock = await _connect_sock(loop, exceptions, info, local_infos, policy)
        connected.append(sock)
        return sock

    try:
        winner, _, errors = await staggered.staggered_race(
            (functools.partial(attempt, info) for info in infos), delay, loop=loop
        )
    except BaseException:
        # Cancelled (or failed) after an attempt connected: that socket is nobody's.
        for sock in connected:
            sock.close()
        raise
    for sock in connected:
        if sock is not winner:
            sock.close()
    others: list[BaseException] = [exc for exc in errors if exc is not None and not isinstance(exc, OSError)]
    return cast("socket.socket | None", winner), others
