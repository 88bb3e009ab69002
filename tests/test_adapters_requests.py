"""keepalive.adapters.requests: sessions whose connections carry the policy, direct and through every proxy kind."""

from __future__ import annotations

import pickle
import socket

import pytest

import keepalive
from keepalive import Policy
from tests.helpers import LINUX, assert_policy_applied, socket_for_local_port
from tests.http_servers import CA_FILE, OriginServer, ProxyServer, SocksServer

requests = pytest.importorskip("requests")
ka_requests = pytest.importorskip("keepalive.adapters.requests")

pytestmark = pytest.mark.skipif(not LINUX, reason="reads back Linux keepalive options")

POLICY = Policy(idle=37, interval=7, count=4)


def sockopt(port: int, level: int, name: int) -> int:
    with socket_for_local_port(port) as sock:
        return sock.getsockopt(level, name)


def assert_applied(port: int, policy: Policy = POLICY) -> None:
    with socket_for_local_port(port) as sock:
        assert_policy_applied(sock, policy)


def get_port(session: requests.Session, url: str, **kwargs: object) -> int:
    response = session.get(url, timeout=10, **kwargs)
    response.raise_for_status()
    return int(response.text)


def test_session_applies_policy_on_direct_and_reused_connection(origin: OriginServer) -> None:
    """session(): the connection carries the policy and TCP_NODELAY, and still does after the pool reuses it."""
    with ka_requests.session(POLICY) as session:
        session.trust_env = False
        first = get_port(session, origin.url)
        assert_applied(first)
        assert sockopt(first, socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        assert get_port(session, origin.url) == first
        assert_applied(first)


def test_session_https_direct(tls_origin: OriginServer) -> None:
    """HTTPS connections are made by the same pool manager and carry the policy."""
    with ka_requests.session(POLICY) as session:
        session.trust_env = False
        port = get_port(session, tls_origin.url, verify=str(CA_FILE))
        assert_applied(port)


def test_mount_replaces_default_adapters_and_keeps_their_retries(origin: OriginServer) -> None:
    """mount() puts the keepalive adapter on http:// and https://, keeping the replaced adapter's retries."""
    session = requests.Session()
    session.trust_env = False
    retries = requests.adapters.Retry(total=3)
    session.mount("http://", requests.adapters.HTTPAdapter(max_retries=retries, pool_maxsize=3))
    with ka_requests.mount(session, POLICY) as same:
        assert same is session
        adapter = session.get_adapter(origin.url)
        assert isinstance(adapter, ka_requests.HTTPAdapter)
        assert adapter.max_retries is retries
        assert isinstance(session.get_adapter("https://example.invalid/"), ka_requests.HTTPAdapter)
        assert_applied(get_port(session, origin.url))


def test_adapter_arguments_pass_through() -> None:
    """Pool sizes and max_retries reach requests' adapter and its urllib3 pool manager."""
    adapter = ka_requests.HTTPAdapter(pool_connections=2, pool_maxsize=5, max_retries=4, policy=POLICY)
    assert adapter.max_retries.total == 4
    assert adapter.poolmanager.connection_pool_kw["maxsize"] == 5
    assert adapter.poolmanager.connection_pool_kw["socket_options"][-len(keepalive.socket_options(POLICY)) :] == (
        keepalive.socket_options(POLICY)
    )
    adapter.close()


def test_adapter_keeps_policy_when_pickled() -> None:
    """A pickled and restored adapter (requests supports it) still applies the same policy."""
    adapter = ka_requests.HTTPAdapter(policy=POLICY)
    restored = pickle.loads(pickle.dumps(adapter))
    assert restored.policy == POLICY
    assert (
        restored.poolmanager.connection_pool_kw["socket_options"]
        == (adapter.poolmanager.connection_pool_kw["socket_options"])
    )
    adapter.close()
    restored.close()


def test_session_default_policy_from_environment(monkeypatch: pytest.MonkeyPatch, origin: OriginServer) -> None:
    """session() without a policy uses the process default (here KEEPALIVE_IDLE)."""
    monkeypatch.setenv("KEEPALIVE_IDLE", "41")
    with ka_requests.session() as session:
        session.trust_env = False
        port = get_port(session, origin.url)
        assert sockopt(port, socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 41


def test_http_proxy_forwarding(origin: OriginServer, proxy: ProxyServer) -> None:
    """proxy_manager_for: the socket to an HTTP proxy carries the policy, also when reused."""
    with ka_requests.session(POLICY) as session:
        session.trust_env = False
        proxies = {"http": proxy.url}
        get_port(session, origin.url, proxies=proxies)
        get_port(session, origin.url, proxies=proxies)
        assert len(proxy.client_ports) == 1
        assert_applied(proxy.client_ports[0])


def test_https_through_connect_tunnel(tls_origin: OriginServer, proxy: ProxyServer) -> None:
    """HTTPS through a CONNECT proxy: the tunnel's socket carries the policy, also when reused."""
    with ka_requests.session(POLICY) as session:
        session.trust_env = False
        proxies = {"https": proxy.url}
        first = get_port(session, tls_origin.url, proxies=proxies, verify=str(CA_FILE))
        assert get_port(session, tls_origin.url, proxies=proxies, verify=str(CA_FILE)) == first
        assert len(proxy.client_ports) == 1
        assert_applied(proxy.client_ports[0])


def test_proxy_from_environment(monkeypatch: pytest.MonkeyPatch, origin: OriginServer, proxy: ProxyServer) -> None:
    """A proxy picked from HTTP_PROXY goes through the same proxy_manager_for and carries the policy."""
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "REQUEST_METHOD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("http_proxy", proxy.url)  # the lowercase name wins where both are set
    with ka_requests.session(POLICY) as session:
        get_port(session, origin.url)
        assert len(proxy.client_ports) == 1
        assert_applied(proxy.client_ports[0])


@pytest.mark.parametrize("scheme", ["socks5", "socks5h"])
def test_socks_proxy(origin: OriginServer, socks: SocksServer, scheme: str) -> None:
    """SOCKS proxies (requests[socks], PySocks): the socket to the proxy carries the policy, also when reused."""
    pytest.importorskip("socks")
    with ka_requests.session(POLICY) as session:
        session.trust_env = False
        proxies = {"http": socks.url(scheme)}
        get_port(session, origin.url, proxies=proxies)
        get_port(session, origin.url, proxies=proxies)
        assert len(socks.client_ports) == 1
        assert_applied(socks.client_ports[0])
