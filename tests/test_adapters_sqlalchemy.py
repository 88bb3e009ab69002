"""keepalive.adapters.sqlalchemy: every pooled connection of sync and async engines, per driver, on real servers.

PostgreSQL (psycopg, psycopg2, asyncpg) and MariaDB (pymysql, aiomysql): the server names the client's port, the
test reads that socket's options back -- for the first connection and for the one the pool hands out again.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from keepalive import KeepaliveError, KeepaliveWarning, Policy
from tests.helpers import LINUX, assert_policy_applied, require_service, socket_for_local_port

sqlalchemy = pytest.importorskip("sqlalchemy")
ka_sqlalchemy = pytest.importorskip("keepalive.adapters.sqlalchemy")

pytestmark = [
    pytest.mark.services,
    pytest.mark.skipif(not LINUX, reason="reads back Linux keepalive options"),
]

POLICY = Policy(idle=41, interval=7, count=3)  # user_timeout 62 s
OTHER = Policy(idle=53, interval=9, count=2)
PG = ("PostgreSQL", "127.0.0.1", 5432)
MARIADB = ("MariaDB", "127.0.0.1", 3306)
PG_PORT_SQL = "select inet_client_port()"
MYSQL_PORT_SQL = "SELECT host FROM information_schema.processlist WHERE id = CONNECTION_ID()"

SYNC_URLS = {
    "psycopg": ("postgresql+psycopg://postgres@127.0.0.1:5432/test", PG, "psycopg"),
    "psycopg2": ("postgresql+psycopg2://postgres@127.0.0.1:5432/test", PG, "psycopg2"),
    "pymysql": ("mysql+pymysql://root@127.0.0.1:3306/test", MARIADB, "pymysql"),
}
ASYNC_URLS = {
    "asyncpg": ("postgresql+asyncpg://postgres@127.0.0.1:5432/test", PG, "asyncpg"),
    "psycopg_async": ("postgresql+psycopg://postgres@127.0.0.1:5432/test", PG, "psycopg"),
    "aiomysql": ("mysql+aiomysql://root@127.0.0.1:3306/test", MARIADB, "aiomysql"),
}


def port_from(value: Any) -> int:
    return value if isinstance(value, int) else int(str(value).rsplit(":", 1)[1])


def port_sql(url: str) -> Any:
    return sqlalchemy.text(PG_PORT_SQL if url.startswith("postgresql") else MYSQL_PORT_SQL)


def assert_port_has(port: int, policy: Policy = POLICY) -> None:
    with socket_for_local_port(port) as sock:
        assert_policy_applied(sock, policy)


def needs(service: tuple[str, str, int], module: str) -> None:
    pytest.importorskip(module)
    require_service(*service)


def sync_port(engine: Any, url: str) -> int:
    with engine.connect() as conn:
        return port_from(conn.execute(port_sql(url)).scalar_one())


async def async_port(engine: Any, url: str) -> int:
    async with engine.connect() as conn:
        return port_from((await conn.execute(port_sql(url))).scalar_one())


@pytest.mark.parametrize("driver", sorted(SYNC_URLS))
def test_sync_engine_connections_carry_the_policy_also_when_handed_out_again(driver: str) -> None:
    url, service, module = SYNC_URLS[driver]
    needs(service, module)
    engine = ka_sqlalchemy.instrument(sqlalchemy.create_engine(url, pool_size=1, max_overflow=0), POLICY)
    try:
        first = sync_port(engine, url)
        assert_port_has(first)
        second = sync_port(engine, url)
        assert second == first, "the pool handed out its one connection again"
        assert_port_has(second)
    finally:
        engine.dispose()


@pytest.mark.parametrize("driver", sorted(ASYNC_URLS))
@pytest.mark.asyncio
async def test_async_engine_connections_carry_the_policy_also_when_handed_out_again(driver: str) -> None:
    pytest.importorskip("sqlalchemy.ext.asyncio")
    pytest.importorskip("greenlet")
    from sqlalchemy.ext.asyncio import create_async_engine

    url, service, module = ASYNC_URLS[driver]
    needs(service, module)
    engine = create_async_engine(url, pool_size=1, max_overflow=0)
    assert ka_sqlalchemy.instrument(engine, POLICY) is engine
    try:
        first = await async_port(engine, url)
        assert_port_has(first)
        second = await async_port(engine, url)
        assert second == first
        assert_port_has(second)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("driver", sorted(SYNC_URLS))
def test_a_connection_the_pool_replaces_after_invalidation_gets_the_policy(driver: str) -> None:
    url, service, module = SYNC_URLS[driver]
    needs(service, module)
    engine = ka_sqlalchemy.instrument(sqlalchemy.create_engine(url, pool_size=1, max_overflow=0), POLICY)
    try:
        with engine.connect() as conn:
            first = port_from(conn.execute(port_sql(url)).scalar_one())
            conn.invalidate()
        second = sync_port(engine, url)
        assert second != first
        assert_port_has(second)
    finally:
        engine.dispose()


@pytest.mark.parametrize("driver", sorted(ASYNC_URLS))
@pytest.mark.asyncio
async def test_an_async_engine_replaces_an_invalidated_connection_with_one_that_has_the_policy(driver: str) -> None:
    pytest.importorskip("greenlet")
    from sqlalchemy.ext.asyncio import create_async_engine

    url, service, module = ASYNC_URLS[driver]
    needs(service, module)
    engine = ka_sqlalchemy.instrument(create_async_engine(url, pool_size=1, max_overflow=0), POLICY)
    try:
        async with engine.connect() as conn:
            first = port_from((await conn.execute(port_sql(url))).scalar_one())
            await conn.invalidate()
        second = await async_port(engine, url)
        assert second != first
        assert_port_has(second)
    finally:
        await engine.dispose()


def test_libpq_drivers_get_the_policy_as_connect_arguments() -> None:
    """For psycopg the policy reaches libpq itself (keepalives_idle ... in the connection's parameters)."""
    needs(PG, "psycopg")
    engine = ka_sqlalchemy.instrument(sqlalchemy.create_engine(SYNC_URLS["psycopg"][0]), POLICY)
    try:
        with engine.connect() as conn:
            dsn = conn.connection.driver_connection.info.dsn
            assert "keepalives_idle=41" in dsn
            assert "tcp_user_timeout=62000" in dsn
    finally:
        engine.dispose()


def test_an_engine_with_its_own_creator_still_gets_the_policy() -> None:
    """``creator=`` bypasses connect arguments; the pool's connect event applies the policy to fileno()."""
    needs(PG, "psycopg2")
    import psycopg2

    engine = sqlalchemy.create_engine(
        "postgresql+psycopg2://", creator=lambda: psycopg2.connect("host=127.0.0.1 user=postgres dbname=test")
    )
    ka_sqlalchemy.instrument(engine, POLICY)
    try:
        assert_port_has(sync_port(engine, "postgresql"))
    finally:
        engine.dispose()


def test_instrumenting_again_replaces_the_policy_for_new_connections() -> None:
    url = SYNC_URLS["pymysql"][0]
    needs(MARIADB, "pymysql")
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    ka_sqlalchemy.instrument(engine, POLICY)
    ka_sqlalchemy.instrument(engine, OTHER)
    try:
        # NullPool opens a new connection each time; only the second policy's listener is left.
        with engine.connect() as conn:
            assert_port_has(port_from(conn.execute(port_sql(url)).scalar_one()), OTHER)
    finally:
        engine.dispose()


def test_instrumenting_an_engine_with_open_connections_warns_how_many_keep_their_settings() -> None:
    url = SYNC_URLS["pymysql"][0]
    needs(MARIADB, "pymysql")
    engine = sqlalchemy.create_engine(url, pool_size=1, max_overflow=0)
    try:
        sync_port(engine, url)  # one connection now sits in the pool
        with pytest.warns(KeepaliveWarning, match="1 connection"):
            ka_sqlalchemy.instrument(engine, POLICY)
    finally:
        engine.dispose()


def test_an_unsupported_driver_is_refused_loudly() -> None:
    engine = sqlalchemy.create_engine("sqlite://")
    with pytest.raises(KeepaliveError, match=r"sqlite\+pysqlite.*NOT applied"):
        ka_sqlalchemy.instrument(engine, POLICY)


def test_instrument_rejects_what_is_not_an_engine() -> None:
    with pytest.raises(TypeError, match="Engine or AsyncEngine"):
        ka_sqlalchemy.instrument(object(), POLICY)


def test_a_fresh_engine_instruments_without_warnings() -> None:
    needs(MARIADB, "pymysql")
    engine = sqlalchemy.create_engine(SYNC_URLS["pymysql"][0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ka_sqlalchemy.instrument(engine, POLICY)
    engine.dispose()
