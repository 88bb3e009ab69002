"""keepalive.adapters.psycopg / psycopg2 / asyncpg against the real PostgreSQL on 127.0.0.1:5432.

Each test asks the server for the client's port (``inet_client_port()``), finds this process's socket with that
local port and reads the options back with getsockopt.
"""

from __future__ import annotations

from typing import Any

import pytest

from keepalive import KeepaliveError, Policy, _runtime
from tests.helpers import LINUX, assert_policy_applied, require_service, socket_for_local_port
from tests.http_servers import client_ssl_context
from tests.tls_relay import TlsRelay

pytestmark = [
    pytest.mark.services,
    pytest.mark.skipif(not LINUX, reason="reads back Linux keepalive options"),
]

HOST, PORT = "127.0.0.1", 5432
DSN = f"host={HOST} port={PORT} user=postgres dbname=test"
URL = f"postgresql://postgres@{HOST}:{PORT}/test"
POLICY = Policy(idle=41, interval=7, count=3)  # user_timeout 62 s


@pytest.fixture(autouse=True)
def _postgres() -> None:
    require_service("PostgreSQL", HOST, PORT)


def assert_port_has(port: int, policy: Policy = POLICY) -> None:
    with socket_for_local_port(port) as sock:
        assert_policy_applied(sock, policy)


# --- psycopg 3 -----------------------------------------------------------------------------------------------


@pytest.fixture
def ka_psycopg() -> Any:
    pytest.importorskip("psycopg")
    return pytest.importorskip("keepalive.adapters.psycopg")


def test_connect_kwargs_are_the_policy_as_libpq_parameters(ka_psycopg: Any) -> None:
    """keepalives_* in seconds, tcp_user_timeout in milliseconds."""
    assert ka_psycopg.connect_kwargs(POLICY) == {
        "keepalives": 1,
        "keepalives_idle": 41,
        "keepalives_interval": 7,
        "keepalives_count": 3,
        "tcp_user_timeout": 62000,
    }


def test_connect_kwargs_leave_out_tcp_user_timeout_when_the_policy_has_none(ka_psycopg: Any) -> None:
    params = ka_psycopg.connect_kwargs(Policy(idle=41, interval=7, count=3, user_timeout=None))
    assert "tcp_user_timeout" not in params
    assert params["keepalives_idle"] == 41


def test_connect_kwargs_default_to_the_process_default_policy_and_run_the_runtime_check(
    ka_psycopg: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEEPALIVE_CHECK", "0")
    monkeypatch.setenv("KEEPALIVE_IDLE", "33")
    assert ka_psycopg.connect_kwargs()["keepalives_idle"] == 33
    assert _runtime._checked


def test_psycopg_connection_socket_carries_the_policy(ka_psycopg: Any) -> None:
    import psycopg

    with psycopg.connect(DSN, **ka_psycopg.connect_kwargs(POLICY)) as conn:
        port = conn.execute("select inet_client_port()").fetchone()[0]  # type: ignore[index]
        assert_port_has(port)


def test_psycopg_policy_overrides_the_dsn_own_keepalive_parameters(ka_psycopg: Any) -> None:
    import psycopg

    with psycopg.connect(DSN + " keepalives_idle=999", **ka_psycopg.connect_kwargs(POLICY)) as conn:
        assert_port_has(conn.execute("select inet_client_port()").fetchone()[0])  # type: ignore[index]


def test_conninfo_folds_the_policy_into_a_url_dsn(ka_psycopg: Any) -> None:
    import psycopg

    dsn = ka_psycopg.conninfo(URL + "?keepalives_idle=999", POLICY)
    assert "keepalives_idle=41" in dsn
    assert "999" not in dsn
    assert "tcp_user_timeout=62000" in dsn
    with psycopg.connect(dsn) as conn:
        assert_port_has(conn.execute("select inet_client_port()").fetchone()[0])  # type: ignore[index]


@pytest.mark.asyncio
async def test_psycopg_async_connection_socket_carries_the_policy(ka_psycopg: Any) -> None:
    import psycopg

    conn = await psycopg.AsyncConnection.connect(DSN, **ka_psycopg.connect_kwargs(POLICY))
    async with conn:
        cur = await conn.execute("select inet_client_port()")
        row = await cur.fetchone()
        assert row is not None
        assert_port_has(row[0])


def test_psycopg_pool_hands_out_connections_with_the_policy_the_second_time_too(ka_psycopg: Any) -> None:
    psycopg_pool = pytest.importorskip("psycopg_pool")
    pool = psycopg_pool.ConnectionPool(
        DSN, min_size=1, max_size=1, kwargs=ka_psycopg.connect_kwargs(POLICY), open=False
    )
    pool.open(wait=True)
    try:
        ports = []
        for _ in range(2):
            with pool.connection() as conn:
                port = conn.execute("select inet_client_port()").fetchone()[0]  # type: ignore[index]
                assert_port_has(port)
                ports.append(port)
        assert ports[0] == ports[1], "the pool handed out the same physical connection again"
    finally:
        pool.close()


# --- psycopg2 ------------------------------------------------------------------------------------------------


@pytest.fixture
def psycopg2() -> Any:
    return pytest.importorskip("psycopg2")


def test_psycopg2_connection_socket_carries_the_policy(psycopg2: Any) -> None:
    ka_psycopg2 = pytest.importorskip("keepalive.adapters.psycopg2")
    conn = psycopg2.connect(DSN, **ka_psycopg2.connect_kwargs(POLICY))
    try:
        with conn.cursor() as cur:
            cur.execute("select inet_client_port()")
            assert_port_has(cur.fetchone()[0])
    finally:
        conn.close()


def test_psycopg2_conninfo_string_carries_the_policy(psycopg2: Any) -> None:
    ka_psycopg2 = pytest.importorskip("keepalive.adapters.psycopg2")
    conn = psycopg2.connect(ka_psycopg2.conninfo(DSN, POLICY))
    try:
        with conn.cursor() as cur:
            cur.execute("select inet_client_port()")
            assert_port_has(cur.fetchone()[0])
    finally:
        conn.close()


def test_psycopg2_pool_hands_out_connections_with_the_policy_the_second_time_too(psycopg2: Any) -> None:
    ka_psycopg2 = pytest.importorskip("keepalive.adapters.psycopg2")
    from psycopg2 import pool as pg_pool

    pool = pg_pool.SimpleConnectionPool(1, 1, DSN, **ka_psycopg2.connect_kwargs(POLICY))
    try:
        for _ in range(2):
            conn = pool.getconn()
            with conn.cursor() as cur:
                cur.execute("select inet_client_port()")
                assert_port_has(cur.fetchone()[0])
            pool.putconn(conn)
    finally:
        pool.closeall()


# --- asyncpg -------------------------------------------------------------------------------------------------


@pytest.fixture
def ka_asyncpg() -> Any:
    pytest.importorskip("asyncpg")
    return pytest.importorskip("keepalive.adapters.asyncpg")


@pytest.mark.asyncio
async def test_asyncpg_connect_applies_the_policy(ka_asyncpg: Any) -> None:
    conn = await ka_asyncpg.connect(URL, policy=POLICY)
    try:
        assert_port_has(await conn.fetchval("select inet_client_port()"))
    finally:
        await conn.close()


@pytest.mark.asyncio
async def test_asyncpg_tls_connection_gets_the_policy_on_the_tcp_socket_under_tls(ka_asyncpg: Any) -> None:
    relay = TlsRelay(HOST, PORT)
    try:
        conn = await ka_asyncpg.connect(
            host="127.0.0.1",
            port=relay.port,
            user="postgres",
            database="test",
            ssl=client_ssl_context(),
            direct_tls=True,
            policy=POLICY,
        )
        try:
            assert await conn.fetchval("select 1") == 1
            assert conn._transport.get_extra_info("ssl_object") is not None, "the connection is TLS"
            assert len(relay.client_ports) == 1
            assert_port_has(relay.client_ports[0])
        finally:
            await conn.close()
    finally:
        relay.close()


@pytest.mark.asyncio
async def test_asyncpg_pool_init_applies_the_policy_and_runs_the_users_init_after_it(ka_asyncpg: Any) -> None:
    import asyncpg

    seen: list[Any] = []

    async def my_init(conn: Any) -> None:
        # The policy is already on the socket when the user's init runs.
        assert_port_has(await conn.fetchval("select inet_client_port()"))
        seen.append(conn)

    pool = await asyncpg.create_pool(URL, min_size=1, max_size=1, init=ka_asyncpg.init(POLICY, then=my_init))
    try:
        ports = []
        for _ in range(2):
            async with pool.acquire() as conn:
                port = await conn.fetchval("select inet_client_port()")
                assert_port_has(port)
                ports.append(port)
        assert ports[0] == ports[1]
        assert len(seen) == 1, "init runs once per physical connection"
    finally:
        await pool.close()


@pytest.mark.asyncio
async def test_asyncpg_create_pool_composes_with_the_init_given(ka_asyncpg: Any) -> None:
    calls = 0

    async def my_init(conn: Any) -> None:
        nonlocal calls
        calls += 1

    async with ka_asyncpg.create_pool(URL, policy=POLICY, min_size=1, max_size=1, init=my_init) as pool:
        for _ in range(2):
            async with pool.acquire() as conn:
                assert_port_has(await conn.fetchval("select inet_client_port()"))
    assert calls == 1


@pytest.mark.asyncio
async def test_asyncpg_pool_replaces_a_lost_connection_with_one_that_has_the_policy(ka_asyncpg: Any) -> None:
    """A connection the server killed is replaced; init runs again, so the new socket has the policy."""
    async with ka_asyncpg.create_pool(URL, policy=POLICY, min_size=1, max_size=1) as pool:
        async with pool.acquire() as conn:
            first = await conn.fetchval("select inet_client_port()")
            conn.terminate()
        async with pool.acquire() as conn:
            second = await conn.fetchval("select inet_client_port()")
            assert_port_has(second)
        assert second != first


@pytest.mark.asyncio
async def test_asyncpg_apply_works_on_a_pool_proxy(ka_asyncpg: Any) -> None:
    import asyncpg

    async with asyncpg.create_pool(URL, min_size=1, max_size=1) as pool, pool.acquire() as conn:
        applied = ka_asyncpg.apply(conn, POLICY)
        assert applied.ok
        assert_port_has(await conn.fetchval("select inet_client_port()"))


@pytest.mark.asyncio
async def test_asyncpg_apply_refuses_a_closed_connection(ka_asyncpg: Any) -> None:
    import asyncpg

    conn = await asyncpg.connect(URL)
    await conn.close()
    with pytest.raises(KeepaliveError, match="closed"):
        ka_asyncpg.apply(conn, POLICY)


@pytest.mark.asyncio
async def test_asyncpg_changed_internals_raise_an_error_naming_the_asyncpg_version(
    ka_asyncpg: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If asyncpg drops Connection._transport the adapter fails loudly instead of silently doing nothing."""
    import asyncpg

    monkeypatch.setattr(ka_asyncpg, "_HAS_TRANSPORT", False)
    with pytest.raises(KeepaliveError, match=rf"asyncpg {asyncpg.__version__}.*NOT applied"):
        ka_asyncpg.init(POLICY)
    conn = await asyncpg.connect(URL)
    try:
        with pytest.raises(KeepaliveError, match="_transport"):
            ka_asyncpg.apply(conn, POLICY)
    finally:
        await conn.close()


def test_asyncpg_apply_rejects_what_is_not_an_asyncpg_connection(ka_asyncpg: Any) -> None:
    with pytest.raises(TypeError, match="asyncpg connection"):
        ka_asyncpg.apply(object(), POLICY)


def test_asyncpg_under_uvloop_applies_the_policy_to_uvloops_socket(ka_asyncpg: Any) -> None:
    """uvloop's transports expose a socket-like object too; the pool's connections get the policy."""
    uvloop = pytest.importorskip("uvloop")

    async def main() -> None:
        async with ka_asyncpg.create_pool(URL, policy=POLICY, min_size=1, max_size=1) as pool:
            for _ in range(2):
                async with pool.acquire() as conn:
                    assert_port_has(await conn.fetchval("select inet_client_port()"))

    uvloop.run(main())
