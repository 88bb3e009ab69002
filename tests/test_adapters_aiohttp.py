"""keepalive.adapters.aiohttp: a connector whose sockets carry the policy before connect, through proxies too."""

from __future__ import annotations

import socket

import pytest

import keepalive
from keepalive import Policy
from tests.helpers import LINUX, assert_policy_applied, socket_for_local_port
from tests.http_servers import OriginServer, ProxyServer, client_ssl_context

aiohttp = pytest.importorskip("aiohttp")
ka_aiohttp = pytest.importorskip("keepalive.adapters.aiohttp")

pytestmark = pytest.mark.skipif(not LINUX, reason="reads back Linux keepalive options")

POLICY = Policy(idle=37, interval=7, count=4)


def assert_applied(port: int, policy: Policy = POLICY) -> None:
    with socket_for_local_port(port) as sock:
        assert_policy_applied(sock, policy)


async def get_port(session: aiohttp.ClientSession, url: str, **kwargs: object) -> int:
    async with session.get(url, **kwargs) as response:
        response.raise_for_status()
        return int(await response.text())


@pytest.mark.asyncio
async def test_connector_applies_policy_on_direct_and_reused_connection(origin: OriginServer) -> None:
    """TCPConnector: the connection carries the policy, and still does after the pool reuses it."""
    async with aiohttp.ClientSession(connector=ka_aiohttp.TCPConnector(policy=POLICY)) as session:
        first = await get_port(session, origin.url)
        assert_applied(first)
        assert await get_port(session, origin.url) == first
        assert_applied(first)


@pytest.mark.asyncio
async def test_connector_https_and_other_arguments_pass_through(tls_origin: OriginServer) -> None:
    """ssl=, limit= and keepalive_timeout= reach aiohttp; HTTPS connections carry the policy."""
    connector = ka_aiohttp.TCPConnector(policy=POLICY, ssl=client_ssl_context(), limit=3, keepalive_timeout=60)
    assert connector.limit == 3
    async with aiohttp.ClientSession(connector=connector) as session:
        first = await get_port(session, tls_origin.url)
        assert await get_port(session, tls_origin.url) == first
        assert_applied(first)


@pytest.mark.asyncio
async def test_connector_wraps_callers_socket_factory(origin: OriginServer) -> None:
    """A caller's socket_factory still makes the socket (its options kept); the policy is applied on top."""
    calls: list[object] = []

    def factory(addr_info: tuple[int, int, int, str, tuple[object, ...]]) -> socket.socket:
        calls.append(addr_info)
        family, type_, proto, _, _ = addr_info
        sock = socket.socket(family, type_, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
        return sock

    connector = ka_aiohttp.TCPConnector(policy=POLICY, socket_factory=factory)
    async with aiohttp.ClientSession(connector=connector) as session:
        port = await get_port(session, origin.url)
        assert len(calls) == 1
        assert_applied(port)
        with socket_for_local_port(port) as sock:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE) == 1


@pytest.mark.asyncio
async def test_socket_factory_for_other_connectors(origin: OriginServer) -> None:
    """socket_factory() plugs into a plain aiohttp.TCPConnector (or a subclass such as a SOCKS connector)."""
    connector = aiohttp.TCPConnector(socket_factory=ka_aiohttp.socket_factory(POLICY))
    async with aiohttp.ClientSession(connector=connector) as session:
        assert_applied(await get_port(session, origin.url))


@pytest.mark.asyncio
async def test_connector_default_policy_from_environment(monkeypatch: pytest.MonkeyPatch, origin: OriginServer) -> None:
    """Without a policy the connector uses keepalive.default_policy() (here from KEEPALIVE_IDLE)."""
    monkeypatch.setenv("KEEPALIVE_IDLE", "41")
    connector = ka_aiohttp.TCPConnector()
    assert connector.policy == keepalive.default_policy()
    async with aiohttp.ClientSession(connector=connector) as session:
        port = await get_port(session, origin.url)
        with socket_for_local_port(port) as sock:
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 41


@pytest.mark.asyncio
async def test_http_proxy_forwarding(origin: OriginServer, proxy: ProxyServer) -> None:
    """session.get(proxy=...): the connector also makes the connection to the proxy; it carries the policy."""
    async with aiohttp.ClientSession(connector=ka_aiohttp.TCPConnector(policy=POLICY)) as session:
        await get_port(session, origin.url, proxy=proxy.url)
        await get_port(session, origin.url, proxy=proxy.url)
        assert len(proxy.client_ports) == 1
        assert_applied(proxy.client_ports[0])


@pytest.mark.asyncio
async def test_https_through_connect_tunnel(tls_origin: OriginServer, proxy: ProxyServer) -> None:
    """HTTPS through a CONNECT proxy: the tunnel's socket carries the policy, also when reused."""
    connector = ka_aiohttp.TCPConnector(policy=POLICY, ssl=client_ssl_context())
    async with aiohttp.ClientSession(connector=connector) as session:
        first = await get_port(session, tls_origin.url, proxy=proxy.url)
        assert await get_port(session, tls_origin.url, proxy=proxy.url) == first
        assert len(proxy.client_ports) == 1
        assert_applied(proxy.client_ports[0])
