"""keepalive.adapters.httpx: sync and async transports whose connections carry the policy, proxies included."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

import keepalive
from keepalive import Policy
from tests.helpers import LINUX, assert_policy_applied, expected_options, keepalive_options, socket_for_local_port
from tests.http_servers import (
    OriginServer,
    ProxyServer,
    SocksServer,
    client_ssl_context,
    unix_origin,
)

httpx = pytest.importorskip("httpx")
ka_httpx = pytest.importorskip("keepalive.adapters.httpx")

pytestmark = pytest.mark.skipif(not LINUX, reason="reads back Linux keepalive options")

POLICY = Policy(idle=37, interval=7, count=4)
BACKENDS = pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"], indirect=True)


def assert_applied(port: int, policy: Policy = POLICY) -> None:
    with socket_for_local_port(port) as sock:
        assert_policy_applied(sock, policy)


def keepalive_off(port: int) -> bool:
    with socket_for_local_port(port) as sock:
        return sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0


def get_port(client: httpx.Client, url: str) -> int:
    response = client.get(url)
    response.raise_for_status()
    return int(response.text)


async def aget_port(client: httpx.AsyncClient, url: str) -> int:
    response = await client.get(url)
    response.raise_for_status()
    return int(response.text)


def test_transport_applies_policy_on_direct_and_reused_connection(origin: OriginServer) -> None:
    """HTTPTransport: the connection carries the policy, and still does after the pool reuses it."""
    with httpx.Client(transport=ka_httpx.HTTPTransport(policy=POLICY)) as client:
        first = get_port(client, origin.url)
        assert_applied(first)
        assert get_port(client, origin.url) == first
        assert_applied(first)


def test_direct_connection_gets_the_options_after_connect_and_before_the_request(
    origin: OriginServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exactly what the adapter claims: httpcore connects first and then sets socket_options, so at connect()
    the socket has no keepalive yet, and the first byte of the request leaves a socket that carries the policy."""
    at_connect: list[dict[str, int]] = []
    at_first_send: list[dict[str, int]] = []
    connect, send, sendall = socket.socket.connect, socket.socket.send, socket.socket.sendall

    def recording_connect(self: socket.socket, address: Any) -> None:
        if address[1] == origin.port:
            at_connect.append(keepalive_options(self))
        connect(self, address)

    def record_first_send(sock: socket.socket) -> None:
        if not at_first_send and sock.getpeername()[1] == origin.port:
            at_first_send.append(keepalive_options(sock))

    def recording_send(self: socket.socket, data: Any, *args: Any) -> int:
        record_first_send(self)
        return send(self, data, *args)

    def recording_sendall(self: socket.socket, data: Any, *args: Any) -> None:
        record_first_send(self)
        sendall(self, data, *args)

    monkeypatch.setattr(socket.socket, "connect", recording_connect)
    monkeypatch.setattr(socket.socket, "send", recording_send)
    monkeypatch.setattr(socket.socket, "sendall", recording_sendall)
    with httpx.Client(transport=ka_httpx.HTTPTransport(policy=POLICY)) as client:
        get_port(client, origin.url)
    assert [options["keepalive"] for options in at_connect] == [0]
    assert at_first_send == [expected_options(POLICY)]


def test_transport_https_and_other_arguments_pass_through(tls_origin: OriginServer) -> None:
    """verify=, retries= and limits= reach httpx; HTTPS connections carry the policy."""
    limits = httpx.Limits(max_connections=3, keepalive_expiry=60)
    transport = ka_httpx.HTTPTransport(policy=POLICY, verify=client_ssl_context(), retries=1, limits=limits)
    with httpx.Client(transport=transport) as client:
        first = get_port(client, tls_origin.url)
        assert get_port(client, tls_origin.url) == first
        assert_applied(first)


def test_transport_extends_callers_socket_options(origin: OriginServer) -> None:
    """A caller's socket_options are kept; an option the policy also sets takes the policy's value."""
    mine = [(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1), (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 999)]
    with httpx.Client(transport=ka_httpx.HTTPTransport(policy=POLICY, socket_options=mine)) as client:
        port = get_port(client, origin.url)
        assert_applied(port)
        with socket_for_local_port(port) as sock:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE) == 1


def test_transport_default_policy_from_environment(monkeypatch: pytest.MonkeyPatch, origin: OriginServer) -> None:
    """Without a policy the transport uses keepalive.default_policy() (here from KEEPALIVE_IDLE)."""
    monkeypatch.setenv("KEEPALIVE_IDLE", "41")
    transport = ka_httpx.HTTPTransport()
    assert transport.policy == keepalive.default_policy()
    with httpx.Client(transport=transport) as client, socket_for_local_port(get_port(client, origin.url)) as sock:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 41


def test_plain_httpx_http_proxy_drops_socket_options(origin: OriginServer, proxy: ProxyServer) -> None:
    """The gap the adapter closes: httpcore's HTTPProxy never hands socket_options to its connections."""
    options = keepalive.socket_options(POLICY)
    with httpx.Client(transport=httpx.HTTPTransport(proxy=httpx.Proxy(proxy.url), socket_options=options)) as client:
        get_port(client, origin.url)
        assert keepalive_off(proxy.client_ports[0])


def test_http_proxy_forwarding(origin: OriginServer, proxy: ProxyServer) -> None:
    """Through an HTTP proxy: the socket to the proxy carries the policy, also when reused."""
    with httpx.Client(transport=ka_httpx.HTTPTransport(policy=POLICY, proxy=httpx.Proxy(proxy.url))) as client:
        get_port(client, origin.url)
        get_port(client, origin.url)
        assert len(proxy.client_ports) == 1
        assert_applied(proxy.client_ports[0])


def test_https_through_connect_tunnel(tls_origin: OriginServer, proxy: ProxyServer) -> None:
    """HTTPS through a CONNECT proxy: the tunnel's socket carries the policy, also when reused."""
    transport = ka_httpx.HTTPTransport(policy=POLICY, proxy=httpx.Proxy(proxy.url), verify=client_ssl_context())
    with httpx.Client(transport=transport) as client:
        first = get_port(client, tls_origin.url)
        assert get_port(client, tls_origin.url) == first
        assert len(proxy.client_ports) == 1
        assert_applied(proxy.client_ports[0])


def test_plain_httpx_socks_path_drops_socket_options(origin: OriginServer, socks: SocksServer) -> None:
    """The gap the adapter closes: httpx's own transport ignores socket_options on the SOCKS path."""
    pytest.importorskip("socksio")
    options = keepalive.socket_options(POLICY)
    with httpx.Client(transport=httpx.HTTPTransport(proxy=httpx.Proxy(socks.url()), socket_options=options)) as client:
        get_port(client, origin.url)
        assert keepalive_off(socks.client_ports[0])


@pytest.mark.parametrize("scheme", ["socks5", "socks5h"])
def test_socks_proxy_applied_after_connect(origin: OriginServer, socks: SocksServer, scheme: str) -> None:
    """SOCKS: the transport applies the policy right after connect; the reused connection keeps it."""
    pytest.importorskip("socksio")
    try:
        httpx.Proxy(socks.url(scheme))
    except ValueError:
        pytest.skip(f"httpx {httpx.__version__} has no {scheme} proxies")
    with httpx.Client(transport=ka_httpx.HTTPTransport(policy=POLICY, proxy=httpx.Proxy(socks.url(scheme)))) as client:
        get_port(client, origin.url)
        assert_applied(socks.client_ports[0])
        get_port(client, origin.url)
        assert len(socks.client_ports) == 1
        assert_applied(socks.client_ports[0])


def test_proxy_policy_applied_before_request_is_sent(origin: OriginServer, socks: SocksServer) -> None:
    """The policy is on the socket as soon as the TCP connect completes (trace hook); the caller's trace still runs."""
    pytest.importorskip("socksio")
    seen: list[int] = []

    def trace(name: str, info: dict[str, Any]) -> None:
        if name.endswith("connect_tcp.complete"):  # before the SOCKS handshake and the request
            sock = info["return_value"].get_extra_info("socket")
            seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE))

    with httpx.Client(transport=ka_httpx.HTTPTransport(policy=POLICY, proxy=httpx.Proxy(socks.url()))) as client:
        client.get(origin.url, extensions={"trace": trace}).raise_for_status()
    assert seen == [POLICY.idle]


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"], indirect=True)
@pytest.mark.anyio
async def test_async_policy_applied_before_request_is_sent(origin: OriginServer, proxy: ProxyServer) -> None:
    """Async: the caller's async trace callback sees every event, and the policy is on right after connect."""
    names: list[str] = []
    seen: list[int] = []

    async def trace(name: str, info: dict[str, Any]) -> None:
        names.append(name)
        if name.endswith("connect_tcp.complete"):
            sock = info["return_value"].get_extra_info("socket")
            seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE))

    transport = ka_httpx.AsyncHTTPTransport(policy=POLICY, proxy=httpx.Proxy(proxy.url))
    async with httpx.AsyncClient(transport=transport) as client:
        (await client.get(origin.url, extensions={"trace": trace})).raise_for_status()
    assert "http11.send_request_headers.started" in names
    assert seen == [POLICY.idle]


def test_proxy_connection_gets_the_policy_once(
    monkeypatch: pytest.MonkeyPatch, tls_origin: OriginServer, proxy: ProxyServer
) -> None:
    """One apply() per proxied connection: not again for the TLS stream wrapping it, nor for a reused connection."""
    calls: list[object] = []
    real_apply = keepalive.apply

    def counting_apply(sock: Any, policy: Policy | None = None, **kwargs: Any) -> keepalive.Applied:
        calls.append(sock)
        return real_apply(sock, policy, **kwargs)

    monkeypatch.setattr(keepalive, "apply", counting_apply)
    transport = ka_httpx.HTTPTransport(policy=POLICY, proxy=httpx.Proxy(proxy.url), verify=client_ssl_context())
    with httpx.Client(transport=transport) as client:
        get_port(client, tls_origin.url)
        get_port(client, tls_origin.url)
    assert len(calls) == 1


def test_proxy_fallback_applies_after_response_when_trace_events_change(
    monkeypatch: pytest.MonkeyPatch, origin: OriginServer, proxy: ProxyServer
) -> None:
    """Should httpcore rename its trace events, the network_stream response extension still applies the policy."""
    monkeypatch.setattr(ka_httpx, "_CONNECTED", ".no-such-event")
    with httpx.Client(transport=ka_httpx.HTTPTransport(policy=POLICY, proxy=httpx.Proxy(proxy.url))) as client:
        get_port(client, origin.url)
        assert_applied(proxy.client_ports[0])


def test_unix_socket_transport_passes_no_tcp_options(tmp_path: Path) -> None:
    """uds=: TCP options would fail on a Unix socket, so none are passed and the request works."""
    with unix_origin(tmp_path) as path, httpx.Client(transport=ka_httpx.HTTPTransport(policy=POLICY, uds=path)) as c:
        assert c.get("http://localhost/").status_code == 200


@BACKENDS
@pytest.mark.anyio
async def test_async_transport_applies_policy_on_direct_and_reused_connection(origin: OriginServer) -> None:
    """AsyncHTTPTransport (asyncio and trio): the connection carries the policy, also after reuse."""
    async with httpx.AsyncClient(transport=ka_httpx.AsyncHTTPTransport(policy=POLICY)) as client:
        first = await aget_port(client, origin.url)
        assert_applied(first)
        assert await aget_port(client, origin.url) == first
        assert_applied(first)


@BACKENDS
@pytest.mark.anyio
async def test_async_https_through_connect_tunnel(tls_origin: OriginServer, proxy: ProxyServer) -> None:
    """Async HTTPS through a CONNECT proxy: the tunnel's socket carries the policy, also when reused."""
    transport = ka_httpx.AsyncHTTPTransport(policy=POLICY, proxy=httpx.Proxy(proxy.url), verify=client_ssl_context())
    async with httpx.AsyncClient(transport=transport) as client:
        first = await aget_port(client, tls_origin.url)
        assert await aget_port(client, tls_origin.url) == first
        assert len(proxy.client_ports) == 1
        assert_applied(proxy.client_ports[0])


@BACKENDS
@pytest.mark.anyio
async def test_async_socks_proxy_applied_after_connect(origin: OriginServer, socks: SocksServer) -> None:
    """Async SOCKS (asyncio and trio): the policy is applied after the first response and kept on reuse."""
    pytest.importorskip("socksio")
    transport = ka_httpx.AsyncHTTPTransport(policy=POLICY, proxy=httpx.Proxy(socks.url()))
    async with httpx.AsyncClient(transport=transport) as client:
        await aget_port(client, origin.url)
        await aget_port(client, origin.url)
        assert len(socks.client_ports) == 1
        assert_applied(socks.client_ports[0])
