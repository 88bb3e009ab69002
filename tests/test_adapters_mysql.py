"""keepalive.adapters.pymysql and .aiomysql against the real MariaDB on 127.0.0.1:3306.

The server names the client's address (``information_schema.processlist`` ``host`` column for
``CONNECTION_ID()``); the test finds this process's socket with that local port and reads its options back.
"""

from __future__ import annotations

import socket
from importlib.metadata import version
from typing import Any

import pytest

from keepalive import KeepaliveError, Policy
from tests.helpers import LINUX, assert_policy_applied, require_service, socket_for_local_port

pytestmark = [
    pytest.mark.services,
    pytest.mark.skipif(not LINUX, reason="reads back Linux keepalive options"),
]

HOST, PORT = "127.0.0.1", 3306
ARGS: dict[str, Any] = {"host": HOST, "port": PORT, "user": "root", "password": ""}
POLICY = Policy(idle=41, interval=7, count=3)  # user_timeout 62 s
CLIENT_HOST_SQL = "SELECT host FROM information_schema.processlist WHERE id = CONNECTION_ID()"


@pytest.fixture(autouse=True)
def _mariadb() -> None:
    require_service("MariaDB", HOST, PORT)


def port_of(host_column: str) -> int:
    return int(host_column.rsplit(":", 1)[1])


def assert_port_has(port: int, policy: Policy = POLICY) -> None:
    with socket_for_local_port(port) as sock:
        assert_policy_applied(sock, policy)


# --- PyMySQL -------------------------------------------------------------------------------------------------


@pytest.fixture
def pymysql() -> Any:
    return pytest.importorskip("pymysql")


@pytest.fixture
def ka_pymysql(pymysql: Any) -> Any:
    return pytest.importorskip("keepalive.adapters.pymysql")


def client_port(conn: Any) -> int:
    with conn.cursor() as cur:
        cur.execute(CLIENT_HOST_SQL)
        return port_of(cur.fetchone()[0])


def test_pymysql_connect_socket_carries_the_policy(ka_pymysql: Any, pymysql: Any) -> None:
    conn = ka_pymysql.connect(database="test", policy=POLICY, **ARGS)
    try:
        assert isinstance(conn, pymysql.connections.Connection)
        assert conn.host_info == f"socket {HOST}:{PORT}"
        assert_port_has(client_port(conn))
    finally:
        conn.close()


def test_pymysql_reconnect_opens_a_socket_with_the_policy(ka_pymysql: Any) -> None:
    """connect() again (what ping(reconnect=True) does) opens a new socket, also with the policy."""
    conn = ka_pymysql.connect(policy=POLICY, **ARGS)
    try:
        first = client_port(conn)
        conn.close()
        conn.connect()
        second = client_port(conn)
        assert second != first
        assert_port_has(second)
    finally:
        conn.close()


def test_pymysql_connect_failure_raises_pymysqls_own_error(ka_pymysql: Any, pymysql: Any) -> None:
    """A refused connection is pymysql.err.OperationalError 2003, as with pymysql.connect, not a bare OSError."""
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        free_port = unused.getsockname()[1]
    with pytest.raises(pymysql.err.OperationalError) as caught:
        ka_pymysql.connect(host="127.0.0.1", port=free_port, user="root", policy=POLICY)
    with pytest.raises(pymysql.err.OperationalError) as plain:
        pymysql.connect(host="127.0.0.1", port=free_port, user="root")
    assert caught.value.args[0] == plain.value.args[0] == 2003
    assert isinstance(caught.value.original_exception, ConnectionRefusedError)


def test_pymysql_deferred_connect_gets_the_policy(ka_pymysql: Any) -> None:
    conn = ka_pymysql.connect(policy=POLICY, defer_connect=True, **ARGS)
    try:
        conn.connect()
        assert_port_has(client_port(conn))
    finally:
        conn.close()


def test_pymysql_apply_sets_the_policy_on_a_connection_opened_elsewhere(ka_pymysql: Any, pymysql: Any) -> None:
    conn = pymysql.connect(**ARGS)
    try:
        assert ka_pymysql.apply(conn, POLICY).ok
        assert_port_has(client_port(conn))
    finally:
        conn.close()


def test_pymysql_apply_refuses_a_closed_connection(ka_pymysql: Any, pymysql: Any) -> None:
    conn = pymysql.connect(**ARGS)
    conn.close()
    with pytest.raises(KeepaliveError, match="closed"):
        ka_pymysql.apply(conn, POLICY)


def test_pymysql_changed_internals_raise_an_error_naming_the_version(
    ka_pymysql: Any, pymysql: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = pymysql.connect(**ARGS)
    try:
        monkeypatch.setattr(ka_pymysql, "_HAS_SOCK_ATTR", False)
        with pytest.raises(KeepaliveError, match=rf"'_sock'.*PyMySQL {version('PyMySQL')} is installed.*NOT applied"):
            ka_pymysql.apply(conn, POLICY)
        monkeypatch.setattr(ka_pymysql, "_HAS_CONNECT_SOCK", False)
        with pytest.raises(KeepaliveError, match="'sock' argument"):
            ka_pymysql.connect(policy=POLICY, **ARGS)
    finally:
        conn.close()


# --- aiomysql ------------------------------------------------------------------------------------------------


@pytest.fixture
def aiomysql() -> Any:
    return pytest.importorskip("aiomysql")


@pytest.fixture
def ka_aiomysql(aiomysql: Any) -> Any:
    return pytest.importorskip("keepalive.adapters.aiomysql")


async def aclient_port(conn: Any) -> int:
    async with conn.cursor() as cur:
        await cur.execute(CLIENT_HOST_SQL)
        row = await cur.fetchone()
        return port_of(row[0])


@pytest.mark.asyncio
async def test_aiomysql_connect_socket_carries_the_policy(ka_aiomysql: Any, aiomysql: Any) -> None:
    conn = await ka_aiomysql.connect(db="test", policy=POLICY, **ARGS)
    try:
        assert isinstance(conn, aiomysql.Connection)
        assert_port_has(await aclient_port(conn))
    finally:
        conn.close()


@pytest.mark.asyncio
async def test_aiomysql_ping_reconnect_after_a_killed_connection_gets_the_policy(
    ka_aiomysql: Any, aiomysql: Any
) -> None:
    conn = await ka_aiomysql.connect(policy=POLICY, **ARGS)
    admin = await aiomysql.connect(**ARGS)
    try:
        first = await aclient_port(conn)
        async with admin.cursor() as cur:
            await cur.execute(f"KILL {conn.thread_id()}")
        await conn.ping(reconnect=True)
        second = await aclient_port(conn)
        assert second != first
        assert_port_has(second)
    finally:
        conn.close()
        admin.close()


@pytest.mark.asyncio
async def test_aiomysql_apply_sets_the_policy_on_a_pooled_connection(ka_aiomysql: Any, aiomysql: Any) -> None:
    pool = await aiomysql.create_pool(minsize=1, maxsize=1, **ARGS)
    try:
        for _ in range(2):
            async with pool.acquire() as conn:
                assert ka_aiomysql.apply(conn, POLICY).ok
                assert_port_has(await aclient_port(conn))
    finally:
        pool.close()
        await pool.wait_closed()


@pytest.mark.asyncio
async def test_aiomysql_apply_refuses_a_closed_connection(ka_aiomysql: Any, aiomysql: Any) -> None:
    conn = await aiomysql.connect(**ARGS)
    conn.close()
    with pytest.raises(KeepaliveError, match="closed"):
        ka_aiomysql.apply(conn, POLICY)


@pytest.mark.asyncio
async def test_aiomysql_changed_internals_raise_an_error_naming_the_version(ka_aiomysql: Any, aiomysql: Any) -> None:
    conn = await aiomysql.connect(**ARGS)
    writer = conn._writer
    try:
        del conn._writer
        with pytest.raises(KeepaliveError, match=rf"'_writer'.*aiomysql {version('aiomysql')} is installed"):
            ka_aiomysql.apply(conn, POLICY)
    finally:
        conn._writer = writer
        conn.close()
