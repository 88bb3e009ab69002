"""keepalive.adapters.aio_pika / .pika / .nats against the real RabbitMQ (127.0.0.1:5672) and NATS (:4222).

The brokers do not name the client's port over the protocol, so each test takes the local ports of this
process's TCP connections to the broker that appeared while the client connected (``/proc/self/net/tcp``),
and reads the options of those sockets back. A reconnect is provoked by shutting the client's socket down
(through a duplicate of its fd), and the new socket is checked too.
"""

from __future__ import annotations

import asyncio
import socket
import warnings
from typing import Any

import pytest

from keepalive import KeepaliveError, Policy, UnsupportedPlatformWarning
from tests.helpers import LINUX, assert_policy_applied, require_service, socket_for_local_port
from tests.http_servers import CA_FILE
from tests.tls_relay import TlsRelay

pytestmark = [
    pytest.mark.services,
    pytest.mark.skipif(not LINUX, reason="reads back Linux keepalive options"),
]

RABBIT = ("RabbitMQ", "127.0.0.1", 5672)
NATS = ("NATS", "127.0.0.1", 4222)
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
NATS_URL = "nats://127.0.0.1:4222"
POLICY = Policy(idle=41, interval=7, count=3)  # user_timeout 62 s


def local_ports_to(remote_port: int) -> set[int]:
    """Local ports of this process's established TCP connections to ``remote_port`` on loopback."""
    ports: set[int] = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == "01" and int(fields[2].rsplit(":", 1)[1], 16) == remote_port:  # ESTABLISHED
                        ports.add(int(fields[1].rsplit(":", 1)[1], 16))
        except FileNotFoundError:
            continue
    return ports


def new_port(before: set[int], remote_port: int) -> int:
    added = local_ports_to(remote_port) - before
    assert len(added) == 1, f"expected one new connection to port {remote_port}, got {sorted(added)}"
    return added.pop()


def assert_port_has(port: int, policy: Policy = POLICY) -> None:
    with socket_for_local_port(port) as sock:
        assert_policy_applied(sock, policy)


def drop(port: int) -> None:
    """Shut the client's connection down, as a middlebox reset would (the client sees EOF)."""
    with socket_for_local_port(port) as sock:
        sock.shutdown(socket.SHUT_RDWR)


# --- aio-pika / aiormq ---------------------------------------------------------------------------------------


@pytest.fixture
def ka_aio_pika() -> Any:
    pytest.importorskip("aio_pika")
    module = pytest.importorskip("keepalive.adapters.aio_pika")
    require_service(*RABBIT)
    return module


@pytest.mark.asyncio
async def test_aio_pika_connect_socket_carries_the_policy(ka_aio_pika: Any) -> None:
    before = local_ports_to(5672)
    connection = await ka_aio_pika.connect(AMQP_URL, policy=POLICY)
    try:
        assert_port_has(new_port(before, 5672))
        channel = await connection.channel()
        await channel.declare_queue("", exclusive=True)
    finally:
        await connection.close()


@pytest.mark.asyncio
async def test_aio_pika_robust_connection_reconnects_with_the_policy(ka_aio_pika: Any) -> None:
    before = local_ports_to(5672)
    connection = await ka_aio_pika.connect_robust(AMQP_URL + "?reconnect_interval=0.1", policy=POLICY)
    reconnected = asyncio.Event()
    connection.reconnect_callbacks.add(lambda *_: reconnected.set())
    try:
        first = new_port(before, 5672)
        assert_port_has(first)
        drop(first)
        async with asyncio.timeout(15):
            await reconnected.wait()
        second = new_port(before, 5672)
        assert second != first
        assert_port_has(second)
    finally:
        await connection.close()


@pytest.mark.asyncio
async def test_aiormq_connect_with_the_transport_factory_carries_the_policy(ka_aio_pika: Any) -> None:
    import aiormq

    before = local_ports_to(5672)
    connection = await aiormq.connect(AMQP_URL, transport_factory=ka_aio_pika.transport_factory(POLICY))
    try:
        assert_port_has(new_port(before, 5672))
    finally:
        await connection.close()


@pytest.mark.asyncio
async def test_the_transport_factory_wraps_a_given_inner_factory(ka_aio_pika: Any) -> None:
    import aiormq
    from aiormq.connection import TCPTransportFactory

    calls: list[str] = []

    class Recording(TCPTransportFactory):
        async def create(self, url: Any, **kwargs: Any) -> Any:
            calls.append(str(url))
            return await super().create(url, **kwargs)

    before = local_ports_to(5672)
    factory = ka_aio_pika.KeepaliveTransportFactory(POLICY, inner=Recording())
    connection = await aiormq.connect(AMQP_URL, transport_factory=factory)
    try:
        assert len(calls) == 1
        assert_port_has(new_port(before, 5672))
    finally:
        await connection.close()


@pytest.mark.asyncio
async def test_the_transport_factory_applies_the_policy_under_amqps(ka_aio_pika: Any) -> None:
    """For amqps:// the default inner factory is aiormq's TLS one; the policy lands on the TCP socket under TLS."""
    with TlsRelay("127.0.0.1", 5672) as relay:
        url = f"amqps://guest:guest@127.0.0.1:{relay.port}/?cafile={CA_FILE}"
        connection = await ka_aio_pika.connect(url, policy=POLICY)
        try:
            channel = await connection.channel()
            await channel.declare_queue("", exclusive=True)
            assert len(relay.client_ports) == 1
            assert_port_has(relay.client_ports[0])
        finally:
            await connection.close()


# --- pika ----------------------------------------------------------------------------------------------------


@pytest.fixture
def ka_pika() -> Any:
    pytest.importorskip("pika")
    return pytest.importorskip("keepalive.adapters.pika")


def test_pika_tcp_options_are_the_policy_by_pikas_option_names(ka_pika: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnsupportedPlatformWarning)
        assert ka_pika.tcp_options(POLICY) == {
            "TCP_KEEPIDLE": 41,
            "TCP_KEEPINTVL": 7,
            "TCP_KEEPCNT": 3,
            "TCP_USER_TIMEOUT": 62000,
        }


def test_pika_blocking_connection_socket_carries_the_policy(ka_pika: Any) -> None:
    import pika

    require_service(*RABBIT)
    before = local_ports_to(5672)
    params = ka_pika.connection_parameters(
        POLICY, host="127.0.0.1", port=5672, credentials=pika.PlainCredentials("guest", "guest")
    )
    connection = pika.BlockingConnection(params)
    try:
        assert_port_has(new_port(before, 5672))
        connection.channel().queue_declare("", exclusive=True)
    finally:
        connection.close()


def test_pika_url_parameters_with_tcp_options_carry_the_policy(ka_pika: Any) -> None:
    import pika

    require_service(*RABBIT)
    before = local_ports_to(5672)
    params = pika.URLParameters(AMQP_URL)
    params.tcp_options = ka_pika.tcp_options(POLICY)
    connection = pika.BlockingConnection(params)
    try:
        assert_port_has(new_port(before, 5672))
    finally:
        connection.close()


# --- NATS ----------------------------------------------------------------------------------------------------


@pytest.fixture
def ka_nats() -> Any:
    pytest.importorskip("nats")
    module = pytest.importorskip("keepalive.adapters.nats")
    require_service(*NATS)
    return module


@pytest.mark.asyncio
async def test_nats_connect_socket_carries_the_policy(ka_nats: Any) -> None:
    before = local_ports_to(4222)
    nc = await ka_nats.connect(NATS_URL, policy=POLICY)
    try:
        assert_port_has(new_port(before, 4222))
        sub = await nc.subscribe("keepalive.test")
        await nc.publish("keepalive.test", b"ping")
        msg = await sub.next_msg(timeout=5)
        assert msg.data == b"ping"
    finally:
        await nc.close()


@pytest.mark.asyncio
async def test_nats_reconnect_opens_a_socket_with_the_policy(ka_nats: Any) -> None:
    reconnected = asyncio.Event()

    async def on_reconnect() -> None:
        reconnected.set()

    before = local_ports_to(4222)
    nc = await ka_nats.connect(NATS_URL, policy=POLICY, reconnect_time_wait=0.1, reconnected_cb=on_reconnect)
    try:
        first = new_port(before, 4222)
        drop(first)
        async with asyncio.timeout(15):
            await reconnected.wait()
        second = new_port(before, 4222)
        assert second != first
        assert_port_has(second)
    finally:
        await nc.close()


@pytest.mark.asyncio
async def test_nats_websocket_servers_are_refused(ka_nats: Any) -> None:
    with pytest.raises(KeepaliveError, match="ws://"):
        await ka_nats.connect(["ws://127.0.0.1:8080"], policy=POLICY)


@pytest.mark.asyncio
async def test_nats_changed_internals_raise_an_error_naming_the_version(
    ka_nats: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from importlib.metadata import version

    from nats.aio.client import Client

    client = Client()
    await client.connect(NATS_URL)
    try:
        monkeypatch.delattr(client._transport, "_io_writer")
        with pytest.raises(KeepaliveError, match=rf"_io_writer.*nats-py {version('nats-py')} is installed"):
            ka_nats.apply(client, POLICY)
    finally:
        monkeypatch.undo()
        await client.close()


@pytest.mark.asyncio
async def test_nats_apply_sets_the_policy_on_a_client_connected_elsewhere(ka_nats: Any) -> None:
    import nats

    before = local_ports_to(4222)
    nc = await nats.connect(NATS_URL)
    try:
        assert ka_nats.apply(nc, POLICY).ok
        assert_port_has(new_port(before, 4222))
    finally:
        await nc.close()
