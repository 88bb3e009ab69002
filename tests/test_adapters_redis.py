"""keepalive.adapters.redis against the real Redis on 127.0.0.1:6379: sync, asyncio, pools, URLs, reconnects.

The server names the client's address (``CLIENT INFO`` ``addr``); the test finds this process's socket with that
local port and reads its options back.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keepalive import Policy
from tests.helpers import LINUX, assert_policy_applied, require_service, socket_for_local_port

redis = pytest.importorskip("redis")
redis_asyncio = pytest.importorskip("redis.asyncio")
ka_redis = pytest.importorskip("keepalive.adapters.redis")

pytestmark = [
    pytest.mark.services,
    pytest.mark.skipif(not LINUX, reason="reads back Linux keepalive options"),
]

HOST, PORT = "127.0.0.1", 6379
POLICY = Policy(idle=41, interval=7, count=3)  # user_timeout 62 s


@pytest.fixture(autouse=True)
def _redis() -> None:
    require_service("Redis", HOST, PORT)


def client_port(info: dict[str, Any]) -> int:
    return int(str(info["addr"]).rsplit(":", 1)[1])


def assert_port_has(port: int, policy: Policy = POLICY) -> None:
    with socket_for_local_port(port) as sock:
        assert_policy_applied(sock, policy)


def test_connection_kwargs_are_redis_py_keepalive_arguments_with_this_platforms_tcp_options() -> None:
    assert ka_redis.connection_kwargs(POLICY) == {
        "socket_keepalive": True,
        "socket_keepalive_options": {
            socket.TCP_KEEPIDLE: 41,
            socket.TCP_KEEPINTVL: 7,
            socket.TCP_KEEPCNT: 3,
            socket.TCP_USER_TIMEOUT: 62000,
        },
    }


def test_a_policy_without_user_timeout_sets_no_tcp_user_timeout() -> None:
    options = ka_redis.socket_keepalive_options(Policy(idle=41, interval=7, count=3, user_timeout=None))
    assert socket.TCP_USER_TIMEOUT not in options
    assert options[socket.TCP_KEEPIDLE] == 41


def test_sync_client_socket_carries_the_policy() -> None:
    r = redis.Redis(host=HOST, port=PORT, **ka_redis.connection_kwargs(POLICY))
    try:
        assert_port_has(client_port(r.client_info()))
    finally:
        r.close()


def test_the_policy_replaces_redis_py_8s_default_keepalive_values() -> None:
    """Without the adapter redis-py 8 sets its own 30/5/3; with it the socket has the policy's values."""
    plain = redis.Redis(host=HOST, port=PORT)
    adapted = redis.Redis(host=HOST, port=PORT, **ka_redis.connection_kwargs(POLICY))
    try:
        with socket_for_local_port(client_port(plain.client_info())) as sock:
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) != POLICY.idle
        assert_port_has(client_port(adapted.client_info()))
    finally:
        plain.close()
        adapted.close()


def test_from_url_client_socket_carries_the_policy() -> None:
    r = redis.Redis.from_url(f"redis://{HOST}:{PORT}/0", **ka_redis.connection_kwargs(POLICY))
    try:
        assert_port_has(client_port(r.client_info()))
    finally:
        r.close()


def test_pool_hands_out_connections_with_the_policy_the_second_time_too() -> None:
    pool = redis.ConnectionPool(host=HOST, port=PORT, max_connections=1, **ka_redis.connection_kwargs(POLICY))
    r = redis.Redis(connection_pool=pool)
    try:
        ports = [client_port(r.client_info()) for _ in range(2)]
        assert ports[0] == ports[1], "the pool reused its one connection"
        assert_port_has(ports[1])
    finally:
        r.close()
        pool.disconnect()


def test_a_reconnect_after_the_server_dropped_the_connection_gets_the_policy() -> None:
    r = redis.Redis(host=HOST, port=PORT, **ka_redis.connection_kwargs(POLICY))
    admin = redis.Redis(host=HOST, port=PORT)
    try:
        info = r.client_info()
        admin.client_kill_filter(_id=info["id"])
        second = client_port(r.client_info())  # redis-py retries on a fresh socket
        assert second != client_port(info)
        assert_port_has(second)
    finally:
        r.close()
        admin.close()


@pytest.mark.asyncio
async def test_asyncio_client_socket_carries_the_policy() -> None:
    r = redis_asyncio.Redis(host=HOST, port=PORT, **ka_redis.connection_kwargs(POLICY))
    try:
        assert_port_has(client_port(await r.client_info()))
    finally:
        await r.aclose()


@pytest.mark.asyncio
async def test_asyncio_pool_hands_out_connections_with_the_policy_the_second_time_too() -> None:
    pool = redis_asyncio.ConnectionPool(host=HOST, port=PORT, max_connections=1, **ka_redis.connection_kwargs(POLICY))
    r = redis_asyncio.Redis(connection_pool=pool)
    try:
        ports = [client_port(await r.client_info()) for _ in range(2)]
        assert ports[0] == ports[1]
        assert_port_has(ports[1])
    finally:
        await r.aclose()
        await pool.disconnect()


# --- cluster -------------------------------------------------------------------------------------------------


@pytest.fixture
def cluster_port() -> Iterator[int]:
    """A one-node Redis Cluster (all 16384 slots) on a free loopback port, from the local redis-server binary."""
    server = shutil.which("redis-server")
    if server is None:
        reason = "redis-server is not installed (needed to start a one-node cluster)"
        if os.environ.get("KEEPALIVE_REQUIRE_SERVICES", "").strip().lower() in {"1", "true", "yes", "on"}:
            pytest.fail(f"{reason} (KEEPALIVE_REQUIRE_SERVICES=1)")
        pytest.skip(reason)
    port = _free_cluster_port()
    with tempfile.TemporaryDirectory(prefix="keepalive-redis-cluster-") as workdir:
        args = [server, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes"]
        args += ["--cluster-config-file", os.path.join(workdir, "nodes.conf"), "--dir", workdir]
        args += ["--save", "", "--appendonly", "no", "--logfile", os.path.join(workdir, "redis.log")]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_until_listening(proc, port, workdir)
            admin = redis.Redis(host=HOST, port=port)
            try:
                admin.execute_command("CLUSTER", "ADDSLOTS", *range(16384))
                for _ in range(200):
                    if admin.cluster("INFO")["cluster_state"] == "ok":
                        break
                    time.sleep(0.05)
                else:
                    pytest.fail("the one-node Redis Cluster did not reach cluster_state:ok")
            finally:
                admin.close()
            yield port
        finally:
            proc.terminate()
            proc.wait(10)


def _free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000, at most 65535) is free too."""
    for _ in range(100):
        port = random.randint(20000, 55535)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind((HOST, port))
                b.bind((HOST, port + 10000))
        except OSError:
            continue
        return port
    pytest.fail("no free port pair for a Redis Cluster node")


def _wait_until_listening(proc: subprocess.Popen[bytes], port: int, workdir: str) -> None:
    for _ in range(200):
        if proc.poll() is not None:
            log = Path(workdir, "redis.log")
            pytest.fail(f"redis-server exited with {proc.returncode}: {log.read_text() if log.exists() else ''}")
        try:
            socket.create_connection((HOST, port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"redis-server did not listen on port {port}")


def test_cluster_client_socket_carries_the_policy(cluster_port: int) -> None:
    from redis.cluster import RedisCluster

    rc = RedisCluster(host=HOST, port=cluster_port, **ka_redis.connection_kwargs(POLICY))
    try:
        rc.set("keepalive:test", "1")
        node = rc.get_node(host=HOST, port=cluster_port)
        info = rc.client_info(target_nodes=node)
        assert_port_has(client_port(info))
    finally:
        rc.close()


@pytest.mark.asyncio
async def test_asyncio_cluster_client_socket_carries_the_policy(cluster_port: int) -> None:
    from redis.asyncio.cluster import RedisCluster

    rc = RedisCluster(host=HOST, port=cluster_port, **ka_redis.connection_kwargs(POLICY))
    try:
        await rc.set("keepalive:test", "1")
        node = rc.get_node(host=HOST, port=cluster_port)
        assert node is not None
        info = await rc.client_info(target_nodes=node)
        assert_port_has(client_port(info))
    finally:
        await rc.aclose()
