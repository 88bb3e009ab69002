"""anyio: TCP streams and listeners that carry TCP keepalive, on anyio's asyncio and trio backends.

:func:`connect_tcp` is :func:`anyio.connect_tcp` with one more keyword, ``policy``. It resolves and orders the
addresses as anyio does (an IPv6 address first, then an IPv4 one), runs anyio's happy eyeballs (a new attempt
every ``happy_eyeballs_delay`` seconds while the earlier ones are pending), and raises anyio's
``OSError("All connection attempts failed")`` with the attempts' errors as its cause. Each attempt makes its
own socket, sets the keepalive options (and TCP_NODELAY, as anyio does) before ``connect()``, connects it with
:func:`anyio.wait_writable` and hands it to :meth:`anyio.abc.SocketStream.from_socket`; TLS is then done with
:meth:`anyio.streams.tls.TLSStream.wrap`, exactly as anyio does it.
"""

from __future__ import annotations

import errno
import socket
import ssl
import sys
from collections.abc import Callable
from ipaddress import IPv6Address, ip_address
from typing import Any, Literal, overload

try:
    import anyio
    from anyio.abc import IPAddressType, Listener, SocketAttribute, SocketListener, SocketStream, TaskGroup
    from anyio.streams.stapled import MultiListener
    from anyio.streams.tls import TLSStream
except ImportError as exc:  # pragma: no cover - exercised by a subprocess test
    raise ImportError(
        "keepalive.anyio needs anyio: pip install 'tcp-keepalive[anyio]'", name=exc.name, path=exc.path
    ) from exc

from keepalive import _runtime
from keepalive._async_common import ACCEPTED_INHERIT, preload
from keepalive._platform import Applied
from keepalive._policy import Policy
from keepalive._socket import apply as _apply_options

__all__ = ["apply", "connect_tcp", "create_tcp_listener"]

preload()  # what the first connect needs, loaded now rather than on the event loop (_async_common.PRELOAD)

_AnyIPAddressFamily = Literal[
    socket.AddressFamily.AF_UNSPEC, socket.AddressFamily.AF_INET, socket.AddressFamily.AF_INET6
]

# Whether accepted sockets inherit the listener's options (Linux). Tests flip it to cover the other path.
_accepted_inherit: bool = ACCEPTED_INHERIT


def apply(target: anyio.TypedAttributeProvider, policy: Policy | None = None, *, strict: bool = False) -> Applied:
    """Set keepalive on an open anyio socket stream (``SocketStream``, a ``TLSStream`` over one, a listener).

    The socket is reached through ``target.extra(SocketAttribute.raw_socket)``; the options take effect from now
    on (:func:`connect_tcp` sets them before ``connect()`` instead).

    Raises:
        anyio.TypedAttributeLookupError: ``target`` has no socket.
    """
    sock = target.extra(SocketAttribute.raw_socket)
    return _apply_options(sock, _runtime.resolve(policy), strict=strict)


@overload
async def connect_tcp(
    remote_host: IPAddressType,
    remote_port: int,
    *,
    policy: Policy | None = ...,
    local_host: IPAddressType | None = ...,
    local_port: int | None = ...,
    ssl_context: ssl.SSLContext | None = ...,
    tls_standard_compatible: bool = ...,
    tls_hostname: str,
    happy_eyeballs_delay: float = ...,
) -> TLSStream: ...


@overload
async def connect_tcp(
    remote_host: IPAddressType,
    remote_port: int,
    *,
    policy: Policy | None = ...,
    local_host: IPAddressType | None = ...,
    local_port: int | None = ...,
    ssl_context: ssl.SSLContext,
    tls_standard_compatible: bool = ...,
    tls_hostname: str | None = ...,
    happy_eyeballs_delay: float = ...,
) -> TLSStream: ...


@overload
async def connect_tcp(
    remote_host: IPAddressType,
    remote_port: int,
    *,
    policy: Policy | None = ...,
    local_host: IPAddressType | None = ...,
    local_port: int | None = ...,
    tls: Literal[True],
    ssl_context: ssl.SSLContext | None = ...,
    tls_standard_compatible: bool = ...,
    tls_hostname: str | None = ...,
    happy_eyeballs_delay: float = ...,
) -> TLSStream: ...


@overload
async def connect_tcp(
    remote_host: IPAddressType,
    remote_port: int,
    *,
    policy: Policy | None = ...,
    local_host: IPAddressType | None = ...,
    local_port: int | None = ...,
    tls: Literal[False],
    ssl_context: ssl.SSLContext | None = ...,
    tls_standard_compatible: bool = ...,
    tls_hostname: str | None = ...,
    happy_eyeballs_delay: float = ...,
) -> SocketStream: ...


@overload
async def connect_tcp(
    remote_host: IPAddressType,
    remote_port: int,
    *,
    policy: Policy | None = ...,
    local_host: IPAddressType | None = ...,
    local_port: int | None = ...,
    happy_eyeballs_delay: float = ...,
) -> SocketStream: ...


async def connect_tcp(
    remote_host: IPAddressType,
    remote_port: int,
    *,
    policy: Policy | None = None,
    local_host: IPAddressType | None = None,
    local_port: int | None = None,
    tls: bool = False,
    ssl_context: ssl.SSLContext | None = None,
    tls_standard_compatible: bool = True,
    tls_hostname: str | None = None,
    happy_eyeballs_delay: float = 0.25,
) -> SocketStream | TLSStream:
    """:func:`anyio.connect_tcp` with TCP keepalive set on each socket before ``connect()``.

    Same arguments, same results (a ``SocketStream``, or a ``TLSStream`` when ``tls``, ``ssl_context`` or
    ``tls_hostname`` is given) and the same errors; ``policy`` defaults to :func:`keepalive.default_policy`.
    """
    policy = _runtime.resolve(policy)
    connected: SocketStream | None = None

    async def try_connect(family: int, sockaddr: tuple[Any, ...], event: anyio.Event) -> None:
        nonlocal connected
        try:
            stream = await _connect_one(family, sockaddr, local_address, policy)
        except OSError as exc:
            oserrors.append(exc)
            return
        else:
            if connected is None:
                connected = stream
                tg.cancel_scope.cancel()
            else:
                await stream.aclose()
        finally:
            event.set()

    local_address: tuple[Any, ...] | None = None
    family: int = socket.AF_UNSPEC
    if local_host:
        gai_res = await anyio.getaddrinfo(str(local_host), local_port)
        family, *_, local_address = gai_res[0]

    try:
        addr_obj = ip_address(remote_host)
    except ValueError:
        addr_obj = None

    targets: list[tuple[int, tuple[Any, ...]]]
    if addr_obj is not None:
        if isinstance(addr_obj, IPv6Address):
            targets = [(socket.AF_INET6, (addr_obj.compressed, remote_port))]
        else:
            targets = [(socket.AF_INET, (addr_obj.compressed, remote_port))]
    else:
        # getaddrinfo() raises if the name cannot be resolved
        gai_res = await anyio.getaddrinfo(str(remote_host), remote_port, family=family, type=socket.SOCK_STREAM)
        # anyio's order: the first IPv6 address, then the first IPv4 address, then the rest as returned.
        v6_found = v4_found = False
        targets = []
        for af, *_, sockaddr in gai_res:
            if af == socket.AF_INET6 and not v6_found:
                v6_found = True
                targets.insert(0, (af, sockaddr))
            elif af == socket.AF_INET and not v4_found and v6_found:
                v4_found = True
                targets.insert(1, (af, sockaddr))
            else:
                targets.append((af, sockaddr))

    oserrors: list[OSError] = []
    try:
        async with anyio.create_task_group() as tg:
            for target_family, target_address in targets:
                event = anyio.Event()
                tg.start_soon(try_connect, target_family, target_address, event)
                with anyio.move_on_after(happy_eyeballs_delay):
                    await event.wait()

        if connected is None:
            cause = (
                oserrors[0] if len(oserrors) == 1 else ExceptionGroup("multiple connection attempts failed", oserrors)
            )
            raise OSError("All connection attempts failed") from cause
    except BaseException:
        if connected is not None:
            await anyio.aclose_forcefully(connected)
        raise
    finally:
        oserrors.clear()

    if tls or tls_hostname or ssl_context:
        try:
            return await TLSStream.wrap(
                connected,
                server_side=False,
                hostname=tls_hostname or str(remote_host),
                ssl_context=ssl_context,
                standard_compatible=tls_standard_compatible,
            )
        except BaseException:
            await anyio.aclose_forcefully(connected)
            raise
    return connected


async def _connect_one(
    family: int, sockaddr: tuple[Any, ...], local_address: tuple[Any, ...] | None, policy: Policy
) -> SocketStream:
    """One attempt: a socket with the policy set, bound if asked, connected, wrapped as a SocketStream."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        _apply_options(sock, policy)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as both anyio backends do
        except OSError:
            pass
        if local_address is not None:
            sock.bind(local_address)
        try:
            sock.connect(sockaddr)
        except (BlockingIOError, InterruptedError):
            await anyio.wait_writable(sock)
            error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                # The message asyncio's sock_connect() uses; OSError(errno, ...) picks the subclass
                # (ConnectionRefusedError, ...).
                raise OSError(error, f"Connect call failed {sockaddr}") from None
        try:
            return await SocketStream.from_socket(sock)
        except ValueError as exc:
            # from_socket() checks getpeername(): the peer reset the connection in between.
            if isinstance(exc.__cause__, OSError):
                raise exc.__cause__ from None
            raise
    except BaseException:
        sock.close()
        raise


async def create_tcp_listener(
    *,
    local_host: IPAddressType | None = None,
    local_port: int = 0,
    family: _AnyIPAddressFamily = socket.AddressFamily.AF_UNSPEC,
    backlog: int = 65536,
    reuse_port: bool = False,
    policy: Policy | None = None,
) -> MultiListener[SocketStream]:
    """:func:`anyio.create_tcp_listener` whose accepted streams carry ``policy``.

    The listening sockets are made as anyio makes them (the same addresses, one dual-stack socket for "any
    host", the same port on every address when ``local_port`` is 0, SO_REUSEADDR / SO_EXCLUSIVEADDRUSE,
    ``reuse_port``, backlog capped at 65536), with the policy set between ``bind()`` and ``listen()``, and
    handed to :meth:`anyio.abc.SocketListener.from_socket`: no connection can be accepted before the listener
    carries the options, and Linux copies them to each accepted socket. On other platforms each listener is
    wrapped so that every accepted stream gets the policy before the handler sees it; the multi-listener's
    extra attributes (``SocketAttribute.local_port``, ...) are unchanged.
    """
    policy = _runtime.resolve(policy)
    sockets = await _listening_sockets(
        local_host=local_host,
        local_port=local_port,
        family=family,
        backlog=min(backlog, 65536),
        reuse_port=reuse_port,
        policy=policy,
    )
    listeners: list[Listener[SocketStream]] = []
    try:
        while sockets:
            listeners.append(await SocketListener.from_socket(sockets[0]))  # owns the socket from here on
            sockets.pop(0)
    except BaseException:
        for sock in sockets:
            sock.close()
        for listener in listeners:
            await anyio.aclose_forcefully(listener)
        raise
    if _accepted_inherit:
        return MultiListener(listeners)
    return MultiListener([_ApplyingListener(listener, policy) for listener in listeners])


async def _listening_sockets(
    *,
    local_host: IPAddressType | None,
    local_port: int,
    family: _AnyIPAddressFamily,
    backlog: int,
    reuse_port: bool,
    policy: Policy,
) -> list[socket.socket]:
    """anyio's listening sockets (anyio/_core/_sockets.py, ``create_tcp_listener``), with the policy applied
    before ``listen()``."""

    def setup(fam: socket.AddressFamily, address: tuple[Any, ...], *, v6only: bool = True) -> socket.socket:
        sock = socket.socket(fam)
        try:
            sock.setblocking(False)
            if fam == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
            if sys.platform == "win32":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)  # type: ignore[attr-defined,unused-ignore]
            else:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if fam == socket.AF_INET6 and "%" in address[0]:  # anyio#554: a scope id in the address text
                host, scope_id = address[0].split("%", 1)
                address = (host, address[1], 0, int(scope_id))
            sock.bind(address)
            _apply_options(sock, policy)
            sock.listen(backlog)
        except BaseException:
            sock.close()
            raise
        return sock

    host = str(local_host) if local_host is not None else None
    # anyio passes type=0 outside Windows (a uvloop workaround, uvloop#539) and keeps the stream results.
    infos = await anyio.getaddrinfo(
        host,
        local_port,
        family=family,
        type=socket.SOCK_STREAM if sys.platform == "win32" else 0,
        flags=socket.AI_PASSIVE | socket.AI_ADDRCONFIG,
    )
    sockaddrs = sorted({info for info in infos if info[1] == socket.SOCK_STREAM})
    if (
        host is None
        and family == socket.AF_UNSPEC
        and socket.has_dualstack_ipv6()
        and any(fam == socket.AF_INET6 for fam, *_ in infos)
    ):
        return [setup(socket.AF_INET6, ("::", local_port), v6only=False)]
    errors: list[OSError] = []
    for _attempt in range(10):  # as anyio: enough to absorb ephemeral port collisions between families
        sockets: list[socket.socket] = []
        port = local_port
        try:
            for fam, *_, sockaddr in sockaddrs:
                sock = setup(fam, (sockaddr[0], port, *sockaddr[2:]))
                sockets.append(sock)
                if local_port == 0 and len(infos) > 1:
                    port = sock.getsockname()[1]  # the same port on every address
        except BaseException as exc:
            for sock in sockets:
                sock.close()
            if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE and local_port == 0 and port:
                errors.append(exc)
                sockaddrs.append(sockaddrs.pop(0))
                continue
            raise
        return sockets
    raise OSError(f"Could not create {len(sockaddrs)} listeners with a consistent port") from ExceptionGroup(
        "Several bind attempts failed", errors
    )


class _ApplyingListener(Listener[SocketStream]):
    """A listener that sets the policy on each accepted stream before handing it to the handler."""

    def __init__(self, inner: Listener[SocketStream], policy: Policy) -> None:
        self._inner = inner
        self._policy = policy

    async def serve(self, handler: Callable[[SocketStream], Any], task_group: TaskGroup | None = None) -> None:
        policy = self._policy

        async def applying_handler(stream: SocketStream) -> Any:
            _apply_options(stream.extra(SocketAttribute.raw_socket), policy)
            return await handler(stream)

        await self._inner.serve(applying_handler, task_group)

    async def accept(self) -> SocketStream:
        """Accept one connection (like :meth:`anyio.abc.SocketListener.accept`) and set the policy on it."""
        stream: SocketStream = await self._inner.accept()  # type: ignore[attr-defined]
        _apply_options(stream.extra(SocketAttribute.raw_socket), self._policy)
        return stream

    async def aclose(self) -> None:
        await self._inner.aclose()

    @property
    def extra_attributes(self) -> dict[Any, Callable[[], Any]]:
        return dict(self._inner.extra_attributes)
