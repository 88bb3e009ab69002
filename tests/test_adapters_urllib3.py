"""keepalive.adapters.urllib3: every connection a pool opens carries the policy, direct and through proxies."""

from __future__ import annotations

import socket

import pytest

import keepalive
from keepalive import Policy
from tests.helpers import LINUX, assert_policy_applied, socket_for_local_port
from tests.http_servers import CA_FILE, OriginServer, ProxyServer, SocksServer

urllib3 = pytest.importorskip("urllib3")
ka_urllib3 = pytest.importorskip("keepalive.adapters.urllib3")

pytestmark = pytest.mark.skipif(not LINUX, reason="reads back Linux keepalive options")

POLICY = Policy(idle=37, interval=7, count=4)


def nodelay(port: int) -> int:
    with socket_for_local_port(port) as sock:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def assert_applied(port: int, policy: Policy = POLICY) -> None:
    with socket_for_local_port(port) as sock:
        assert_policy_applied(sock, policy)


def get_port(http: urllib3.PoolManager, url: str) -> int:
    response = http.request("GET", url)
    assert response.status == 200
    return int(response.data)


def test_socket_options_extend_urllib3_default() -> None:
    """Without a base list the result is urllib3's default (TCP_NODELAY) followed by the policy's triples."""
    options = ka_urllib3.socket_options(POLICY)
    default = urllib3.connection.HTTPConnection.default_socket_options
    assert options[: len(default)] == default
    assert options[len(default) :] == keepalive.socket_options(POLICY)


def test_socket_options_policy_replaces_same_option_in_base() -> None:
    """An option the caller's list also sets appears once, with the policy's value; the rest of the list stays."""
    base = [(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 999), (socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)]
    options = ka_urllib3.socket_options(POLICY, base)
    assert options == [(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1), *keepalive.socket_options(POLICY)]


def test_socket_options_default_policy_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """policy=None takes the process default, here from KEEPALIVE_* variables."""
    monkeypatch.setenv("KEEPALIVE_IDLE", "41")
    assert (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 41) in ka_urllib3.socket_options()


def test_pool_manager_applies_policy_and_keeps_nodelay_on_reused_connection(origin: OriginServer) -> None:
    """Direct connections carry the policy and urllib3's TCP_NODELAY; the reused connection still does."""
    with ka_urllib3.PoolManager(policy=POLICY) as http:
        first = get_port(http, origin.url)
        assert_applied(first)
        assert nodelay(first) == 1
        assert get_port(http, origin.url) == first  # the pool reused the connection
        assert_applied(first)
        assert origin.client_ports == [first]


def test_pool_manager_extends_callers_socket_options(origin: OriginServer) -> None:
    """A caller's socket_options list is kept (replacing urllib3's default, as urllib3 does) and extended."""
    extra = [(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)]
    with ka_urllib3.PoolManager(policy=POLICY, socket_options=extra, maxsize=2) as http:
        port = get_port(http, origin.url)
        assert_applied(port)
        with socket_for_local_port(port) as sock:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0


def test_pool_manager_default_policy_when_none_given(origin: OriginServer) -> None:
    """PoolManager() uses keepalive.default_policy()."""
    with ka_urllib3.PoolManager() as http:
        assert http.policy == keepalive.default_policy()
        assert_applied(get_port(http, origin.url), keepalive.default_policy())


def test_proxy_manager_forwarding_applies_policy(origin: OriginServer, proxy: ProxyServer) -> None:
    """Plain-HTTP requests forwarded by a proxy: the socket to the proxy carries the policy, also when reused."""
    with ka_urllib3.proxy_from_url(proxy.url, policy=POLICY) as http:
        get_port(http, origin.url)
        get_port(http, origin.url)
        assert len(proxy.client_ports) == 1  # one connection to the proxy, reused
        assert_applied(proxy.client_ports[0])
        assert nodelay(proxy.client_ports[0]) == 0  # urllib3 leaves Nagle on for proxies; so do we


def test_proxy_manager_connect_tunnel_applies_policy(tls_origin: OriginServer, proxy: ProxyServer) -> None:
    """HTTPS through a CONNECT tunnel: the tunnel's socket carries the policy, also when reused."""
    with ka_urllib3.ProxyManager(proxy.url, policy=POLICY, ca_certs=str(CA_FILE)) as http:
        first = get_port(http, tls_origin.url)
        assert get_port(http, tls_origin.url) == first
        assert len(proxy.client_ports) == 1
        assert_applied(proxy.client_ports[0])


def test_plain_urllib3_proxy_manager_sets_nothing(origin: OriginServer, proxy: ProxyServer) -> None:
    """The gap the adapter closes (urllib3#2936): urllib3's own ProxyManager leaves keepalive off."""
    with urllib3.ProxyManager(proxy.url) as http:
        get_port(http, origin.url)
        with socket_for_local_port(proxy.client_ports[0]) as sock:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0


def test_socks_proxy_manager_applies_policy(origin: OriginServer, socks: SocksServer) -> None:
    """Through a SOCKS5 proxy (PySocks): the socket to the proxy carries the policy and TCP_NODELAY."""
    pytest.importorskip("socks")
    with ka_urllib3.socks_proxy_manager(socks.url("socks5h"), policy=POLICY) as http:
        get_port(http, origin.url)
        get_port(http, origin.url)
        assert len(socks.client_ports) == 1
        assert_applied(socks.client_ports[0])
        assert nodelay(socks.client_ports[0]) == 1
