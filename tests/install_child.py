"""Child process for tests/test_install_autostart.py: open one connection through a client, print its options.

Usage: ``python tests/install_child.py CLIENT HOST PORT``. The program itself never mentions keepalive: whatever
keepalive options the socket carries come from the start-up hook (KEEPALIVE_AUTO / ``keepalive run``). Prints
one JSON object: ``{"options": {...}, "installed": bool, "imported": bool}`` where ``options`` is
``tests.helpers.keepalive_options`` of the client's live socket and ``imported`` says whether ``keepalive`` was in
``sys.modules`` before the client ran (it must not be when the hook is off).
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from pathlib import Path
from typing import Any

IMPORTED_AT_START = "keepalive" in sys.modules
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def options(sock: Any) -> dict[str, int]:
    from tests.helpers import keepalive_options

    return keepalive_options(sock)


def options_for_local_port(port: int) -> dict[str, int]:
    from tests.helpers import socket_for_local_port

    with socket_for_local_port(port) as sock:
        return options(sock)


def stdlib(host: str, port: int) -> dict[str, int]:
    with socket.create_connection((host, port), timeout=5) as sock:
        return options(sock)


def stdlib_connect_ex(host: str, port: int) -> dict[str, int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        assert sock.connect_ex((host, port)) == 0
        return options(sock)


async def _asyncio_main(host: str, port: int) -> dict[str, int]:
    _reader, writer = await asyncio.open_connection(host, port)
    try:
        return options(writer.get_extra_info("socket"))
    finally:
        writer.close()
        await writer.wait_closed()


def asyncio_(host: str, port: int) -> dict[str, int]:
    return asyncio.run(_asyncio_main(host, port))


def uvloop_(host: str, port: int) -> dict[str, int]:
    import uvloop

    return uvloop.run(_asyncio_main(host, port))


def trio_(host: str, port: int) -> dict[str, int]:
    import trio

    async def main() -> dict[str, int]:
        stream = await trio.open_tcp_stream(host, port)
        try:
            return options(stream.socket)
        finally:
            await stream.aclose()

    return trio.run(main)


def anyio_trio(host: str, port: int) -> dict[str, int]:
    import anyio
    from anyio.abc import SocketAttribute

    async def main() -> dict[str, int]:
        async with await anyio.connect_tcp(host, port) as stream:
            return options(stream.extra(SocketAttribute.raw_socket))

    return anyio.run(main, backend="trio")


def httpx_(host: str, port: int) -> dict[str, int]:
    import httpx

    with httpx.Client() as client:
        response = client.get(f"http://{host}:{port}/")
        client_port = int(response.text.strip())  # the origin answers with the client port it sees
        return options_for_local_port(client_port)


def httpx_async(host: str, port: int) -> dict[str, int]:
    import httpx

    async def main() -> dict[str, int]:
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://{host}:{port}/")
            return options_for_local_port(int(response.text.strip()))

    return asyncio.run(main())


def requests_(host: str, port: int) -> dict[str, int]:
    import requests

    with requests.Session() as session:
        return options_for_local_port(int(session.get(f"http://{host}:{port}/", timeout=10).text.strip()))


def aiohttp_(host: str, port: int) -> dict[str, int]:
    import aiohttp

    async def main() -> dict[str, int]:
        async with aiohttp.ClientSession() as session, session.get(f"http://{host}:{port}/") as response:
            return options_for_local_port(int((await response.text()).strip()))

    return asyncio.run(main())


def pymysql_(host: str, port: int) -> dict[str, int]:
    import pymysql

    connection = pymysql.connect(host=host, port=port, user="root", password="", database="test")
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT host FROM information_schema.processlist WHERE id = CONNECTION_ID()")
            row = cursor.fetchone()
        assert row is not None
        return options_for_local_port(int(str(row[0]).rsplit(":", 1)[1]))
    finally:
        connection.close()


def asyncpg_(host: str, port: int) -> dict[str, int]:
    import asyncpg  # type: ignore[import-untyped]

    async def main() -> dict[str, int]:
        connection = await asyncpg.connect(host=host, port=port, user="postgres", database="postgres")
        try:
            return options_for_local_port(int(await connection.fetchval("SELECT inet_client_port()")))
        finally:
            await connection.close()

    return asyncio.run(main())


def _redis(host: str, port: int, **kwargs: Any) -> dict[str, int]:
    import redis

    client = redis.Redis(host=host, port=port, **kwargs)
    try:
        client_port = int(str(client.client_info()["addr"]).rsplit(":", 1)[1])
        return options_for_local_port(client_port)
    finally:
        client.close()


def redis_no_keepalive(host: str, port: int) -> dict[str, int]:
    """redis-py with its own keepalive off (the default before redis-py 8)."""
    return _redis(host, port, socket_keepalive=False)


def redis_default(host: str, port: int) -> dict[str, int]:
    """redis-py 8's defaults: it sets its own keepalive (30/5/3) before connect()."""
    return _redis(host, port)


CLIENTS = {
    "stdlib": stdlib,
    "stdlib_connect_ex": stdlib_connect_ex,
    "asyncio": asyncio_,
    "uvloop": uvloop_,
    "trio": trio_,
    "anyio_trio": anyio_trio,
    "httpx": httpx_,
    "httpx_async": httpx_async,
    "requests": requests_,
    "aiohttp": aiohttp_,
    "pymysql": pymysql_,
    "asyncpg": asyncpg_,
    "redis_no_keepalive": redis_no_keepalive,
    "redis_default": redis_default,
}


def main() -> None:
    client, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    result = CLIENTS[client](host, port)
    installed = "keepalive" in sys.modules and sys.modules["keepalive"].is_installed()
    print(json.dumps({"options": result, "installed": installed, "imported": IMPORTED_AT_START}))


if __name__ == "__main__":
    main()
