"""The pytest plugin with the async test runners, real clients and pytest-xdist (see test_pytest_plugin.py)."""

from __future__ import annotations

import pytest

from tests.helpers import require_service
from tests.test_pytest_plugin import CONFTEST, INI, SYNC, teardown_lines

pytest_plugins = ["pytester"]


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    """A sample project with pytest configured like ours (warnings are errors, strict markers) and a server."""
    pytester.makeini(INI)
    pytester.makeconftest(CONFTEST)
    return pytester


# ---------------------------------------------------------------------------------------------- async plugins

ASYNCIO = """
import asyncio

import pytest
import pytest_asyncio

import keepalive.asyncio


@pytest_asyncio.fixture
async def held():
    writers = []
    yield writers
    for writer in writers:
        writer.close()
        await writer.wait_closed()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_stream():
    from conftest import Server

    srv = Server()
    _, writer = await asyncio.open_connection(*srv.address)
    yield writer
    writer.close()
    await writer.wait_closed()
    srv.close()


@pytest.mark.asyncio
async def test_plain_stream(server, held):
    _, writer = await asyncio.open_connection(*server.address)
    held.append(writer)


@pytest.mark.asyncio
async def test_keepalive_stream(server, held):
    _, writer = await keepalive.asyncio.open_connection(*server.address)
    held.append(writer)


@pytest.mark.asyncio(loop_scope="module")
async def test_uses_module_stream(module_stream):
    module_stream.write(b"x")
    await module_stream.drain()
"""


def test_pytest_asyncio_streams_and_async_fixtures(suite: pytest.Pytester) -> None:
    """asyncio streams are checked; a module-scoped async fixture's stream fails its own teardown, not the test."""
    suite.makepyfile(ASYNCIO)
    result = suite.runpytest("--keepalive-strict")
    result.assert_outcomes(passed=3, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_plain_stream*",
            "keepalive-strict: 1 connection this test opened *",
            "*ERROR at teardown of test_uses_module_stream*",
            "keepalive-strict: 1 connection that module-scoped fixture 'module_stream' opened *",
        ]
    )


ANYIO = """
import anyio
import pytest

import keepalive.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param


@pytest.fixture
async def held(anyio_backend):
    streams = []
    yield streams
    for stream in streams:
        await stream.aclose()


@pytest.mark.anyio
async def test_plain_stream(server, held):
    held.append(await anyio.connect_tcp(*server.address))


@pytest.mark.anyio
async def test_keepalive_stream(server, held):
    held.append(await keepalive.anyio.connect_tcp(*server.address))
"""


def test_anyio_plugin_streams_on_asyncio_and_trio(suite: pytest.Pytester) -> None:
    """anyio's pytest plugin, both backends: the plain stream fails on each, the keepalive one passes on each."""
    suite.makepyfile(ANYIO)
    result = suite.runpytest("--keepalive-strict", "-rE")
    result.assert_outcomes(passed=4, errors=2)
    result.stdout.fnmatch_lines(["ERROR *test_plain_stream?asyncio?*", "ERROR *test_plain_stream?trio?*"])


TRIO = """
import socket

import pytest
import trio

import keepalive.trio
from conftest import KEEP


@pytest.mark.trio
async def test_plain_stream(server):
    stream = await trio.open_tcp_stream(*server.address)
    KEEP.append(socket.socket(fileno=stream.socket.detach()))  # closed after the loop, outside trio


@pytest.mark.trio
async def test_keepalive_stream(server):
    stream = await keepalive.trio.open_tcp_stream(*server.address)
    KEEP.append(socket.socket(fileno=stream.socket.detach()))  # closed after the loop, outside trio
"""


def test_pytest_trio_streams(suite: pytest.Pytester) -> None:
    """pytest-trio: a trio stream the test leaves open is checked like any other connection."""
    suite.makepyfile(TRIO)
    result = suite.runpytest("--keepalive-strict", "-rE")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["ERROR *test_plain_stream*"])


# ---------------------------------------------------------------------------------------- real clients, xdist

CLIENTS = """
import pika
import psycopg2
import pymysql
import pytest
import redis

import keepalive.adapters.pika
import keepalive.adapters.psycopg2
import keepalive.adapters.pymysql
import keepalive.adapters.redis


@pytest.fixture
def redis_client(request):
    kwargs = keepalive.adapters.redis.connection_kwargs() if request.param else {}
    client = redis.Redis(host="127.0.0.1", port=6379, **kwargs)
    yield client
    client.close()


@pytest.fixture
def pg(request):
    kwargs = keepalive.adapters.psycopg2.connect_kwargs() if request.param else {}
    conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="test", **kwargs)
    yield conn
    conn.close()


@pytest.fixture
def mysql(request):
    connect = keepalive.adapters.pymysql.connect if request.param else pymysql.connect
    conn = connect(host="127.0.0.1", port=3306, user="root", password="", database="test")
    yield conn
    conn.close()


@pytest.fixture
def amqp(request):
    kwargs = {"host": "127.0.0.1", "port": 5672}
    make = keepalive.adapters.pika.connection_parameters if request.param else pika.ConnectionParameters
    conn = pika.BlockingConnection(make(**kwargs))  # also makes a TCP wake-up pair inside the process
    yield conn
    conn.close()


@pytest.mark.parametrize("redis_client", [False, True], ids=["plain", "adapter"], indirect=True)
def test_redis(redis_client):
    assert redis_client.ping()


@pytest.mark.parametrize("pg", [False, True], ids=["plain", "adapter"], indirect=True)
def test_psycopg2(pg):
    with pg.cursor() as cur:
        cur.execute("select 1")
        assert cur.fetchone() == (1,)


@pytest.mark.parametrize("mysql", [False, True], ids=["plain", "adapter"], indirect=True)
def test_pymysql(mysql):
    with mysql.cursor() as cur:
        cur.execute("select 1")
        assert cur.fetchone() == (1,)


@pytest.mark.parametrize("amqp", [False, True], ids=["plain", "adapter"], indirect=True)
def test_pika(amqp):
    assert amqp.channel().is_open
"""


@pytest.mark.services
def test_real_clients_pooled_and_native_connections_are_caught_and_the_fix_named(suite: pytest.Pytester) -> None:
    """redis-py's pooled connection, libpq's own socket (psycopg2), PyMySQL and pika fail without their adapter only."""
    require_service("redis", "127.0.0.1", 6379)
    require_service("postgres", "127.0.0.1", 5432)
    require_service("mariadb", "127.0.0.1", 3306)
    require_service("rabbitmq", "127.0.0.1", 5672)
    suite.makepyfile(CLIENTS)
    result = suite.runpytest("--keepalive-strict", "-rE")
    result.assert_outcomes(passed=8, errors=4)
    errors = sorted(line.split()[1].rpartition("::")[2] for line in result.outlines if line.startswith("ERROR "))
    assert errors == ["test_pika[plain]", "test_psycopg2[plain]", "test_pymysql[plain]", "test_redis[plain]"]
    lines = teardown_lines(result)
    redis_line = next(line for line in lines if "-> 127.0.0.1:6379:" in line)
    pg_line = next(line for line in lines if "-> 127.0.0.1:5432:" in line)
    # redis-py 8 turns keepalive on (30/5/3) but sets no user timeout; libpq keeps the kernel's 7200 s idle.
    assert "no TCP_USER_TIMEOUT" in redis_line
    assert "keepalive.adapters.redis.connection_kwargs()" in redis_line
    assert "idle 7200 s > 60 s" in pg_line
    assert "keepalive.adapters.psycopg2" in pg_line
    mysql_line = next(line for line in lines if "-> 127.0.0.1:3306:" in line)
    assert "keepalive.adapters.pymysql.connect(...)" in mysql_line
    amqp_line = next(line for line in lines if "-> 127.0.0.1:5672:" in line)
    assert "keepalive.adapters.pika.connection_parameters(...)" in amqp_line


@pytest.mark.slow
def test_xdist_workers_each_check_their_tests(suite: pytest.Pytester) -> None:
    """Under pytest-xdist every worker runs the check on its own tests (its own /proc/self)."""
    suite.makepyfile(SYNC)
    result = suite.runpytest_subprocess("--keepalive-strict", "-n", "2")
    result.assert_outcomes(passed=6, errors=2)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_bare_socket*"], consecutive=False)
