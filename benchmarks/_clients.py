"""Section 2: client overhead with and without the adapter, pooled and with a new connection per request."""

from __future__ import annotations

import contextlib
import multiprocessing
import socket
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import keepalive
from benchmarks._common import Result, percentile

POLICY = keepalive.Policy(idle=60, interval=10, count=5)
_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
_RESPONSE_CLOSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\nok"


def _http_server(listener: socket.socket) -> None:
    """A minimal HTTP/1.1 keep-alive server (asyncio, in its own process) answering 'ok' to every request."""
    import asyncio

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                close = b"connection: close" in head.lower()
                writer.write(_RESPONSE_CLOSE if close else _RESPONSE)
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, sock=listener, backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


@contextlib.contextmanager
def http_server() -> Iterator[str]:
    listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
    port = listener.getsockname()[1]
    ctx = multiprocessing.get_context("fork")
    proc = ctx.Process(target=_http_server, args=(listener,), daemon=True)
    proc.start()
    listener.close()
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        proc.join(5)


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def compare(
    name: str,
    plain: Callable[[], None],
    wrapped: Callable[[], None],
    *,
    per_round: int,
    rounds: int,
    goal: str | None,
    note: str,
) -> Result:
    """Alternate blocks of requests without and with the adapter; ratio = wrapped ops/s over plain ops/s."""
    lat_plain: list[float] = []
    lat_wrapped: list[float] = []
    ratios: list[float] = []
    for _ in range(max(1, per_round // 10)):
        plain()
        wrapped()
    for index in range(rounds):
        order = [(plain, lat_plain), (wrapped, lat_wrapped)]
        if index % 2:
            order.reverse()
        elapsed: dict[int, float] = {}
        for func, sink in order:
            start = time.perf_counter()
            for _ in range(per_round):
                t0 = time.perf_counter()
                func()
                sink.append(time.perf_counter() - t0)
            elapsed[id(func)] = time.perf_counter() - start
        ratios.append(elapsed[id(plain)] / elapsed[id(wrapped)])
    ops_plain = len(lat_plain) / sum(lat_plain)
    ops_wrapped = len(lat_wrapped) / sum(lat_wrapped)
    return Result(
        name=name,
        unit="ops/s",
        ratio=statistics.median(ratios),
        value=ops_wrapped,
        baseline=ops_plain,
        goal=goal,
        note=note,
        extra={
            "p50_ms": percentile(lat_wrapped, 50) * 1000,
            "p99_ms": percentile(lat_wrapped, 99) * 1000,
            "baseline_p50_ms": percentile(lat_plain, 50) * 1000,
            "baseline_p99_ms": percentile(lat_plain, 99) * 1000,
            "requests": len(lat_wrapped),
        },
    )


def run(size: str) -> list[Result]:
    per_round, rounds = {"smoke": (5, 2), "quick": (200, 8), "full": (1000, 20)}[size]
    per_round_new, rounds_new = {"smoke": (3, 2), "quick": (50, 6), "full": (200, 16)}[size]
    results: list[Result] = []
    with http_server() as url:
        results += _httpx(url, per_round, rounds, per_round_new, rounds_new)
        results += _requests(url, per_round, rounds, per_round_new, rounds_new)
    results += _redis(per_round, rounds, per_round_new, rounds_new)
    results += _psycopg(per_round, rounds, max(2, per_round_new // 4), rounds_new)
    return results


def _skipped(name: str, why: str) -> Result:
    return Result(name=name, unit="ops/s", measured=False, note=f"not measured: {why}")


def _httpx(url: str, n: int, r: int, n_new: int, r_new: int) -> list[Result]:
    try:
        import httpx

        from keepalive.adapters import httpx as ka_httpx
    except ImportError as exc:
        return [_skipped("httpx_pooled", str(exc))]
    out = []
    with (
        httpx.Client() as plain,
        httpx.Client(transport=ka_httpx.HTTPTransport(policy=POLICY)) as wrapped,
    ):
        out.append(
            compare(
                "httpx_pooled",
                lambda: plain.get(url).read(),
                lambda: wrapped.get(url).read(),
                per_round=n,
                rounds=r,
                goal=">= 0.98",
                note="httpx.Client GET, one pooled connection",
            )
        )
        close = {"Connection": "close"}
        out.append(
            compare(
                "httpx_new_connection",
                lambda: plain.get(url, headers=close).read(),
                lambda: wrapped.get(url, headers=close).read(),
                per_round=n_new,
                rounds=r_new,
                goal=None,
                note="httpx.Client GET with Connection: close",
            )
        )
    return out


def _requests(url: str, n: int, r: int, n_new: int, r_new: int) -> list[Result]:
    try:
        import requests

        from keepalive.adapters import requests as ka_requests
    except ImportError as exc:
        return [_skipped("requests_pooled", str(exc))]
    out = []
    with requests.Session() as plain, ka_requests.session(policy=POLICY) as wrapped:
        out.append(
            compare(
                "requests_pooled",
                lambda: plain.get(url).content,
                lambda: wrapped.get(url).content,
                per_round=n,
                rounds=r,
                goal=">= 0.98",
                note="requests.Session GET, one pooled connection",
            )
        )
        close = {"Connection": "close"}
        out.append(
            compare(
                "requests_new_connection",
                lambda: plain.get(url, headers=close).content,
                lambda: wrapped.get(url, headers=close).content,
                per_round=n_new,
                rounds=r_new,
                goal=None,
                note="requests.Session GET with Connection: close",
            )
        )
    return out


def _redis(n: int, r: int, n_new: int, r_new: int) -> list[Result]:
    if not _reachable(6379):
        return [_skipped("redis_pooled", "Redis is not reachable at 127.0.0.1:6379")]
    try:
        import redis

        from keepalive.adapters import redis as ka_redis
    except ImportError as exc:
        return [_skipped("redis_pooled", str(exc))]
    kwargs: dict[str, Any] = ka_redis.connection_kwargs(POLICY)
    plain = redis.Redis(host="127.0.0.1", port=6379, socket_keepalive=False)
    wrapped = redis.Redis(host="127.0.0.1", port=6379, **kwargs)
    out = [
        compare(
            "redis_pooled",
            plain.ping,
            wrapped.ping,
            per_round=n,
            rounds=r,
            goal=">= 0.98",
            note="redis.Redis PING over its pool",
        ),
    ]
    plain.close()
    wrapped.close()

    def new_plain() -> None:
        with redis.Redis(host="127.0.0.1", port=6379, socket_keepalive=False) as client:
            client.ping()

    def new_wrapped() -> None:
        with redis.Redis(host="127.0.0.1", port=6379, **kwargs) as client:
            client.ping()

    out.append(
        compare(
            "redis_new_connection",
            new_plain,
            new_wrapped,
            per_round=n_new,
            rounds=r_new,
            goal=None,
            note="a new redis.Redis (and connection) per PING",
        )
    )
    return out


def _psycopg(n: int, r: int, n_new: int, r_new: int) -> list[Result]:
    if not _reachable(5432):
        return [_skipped("psycopg_pooled", "PostgreSQL is not reachable at 127.0.0.1:5432")]
    try:
        import psycopg

        from keepalive.adapters import psycopg as ka_psycopg
    except ImportError as exc:
        return [_skipped("psycopg_pooled", str(exc))]
    dsn = "host=127.0.0.1 port=5432 dbname=test user=postgres"
    kwargs = ka_psycopg.connect_kwargs(POLICY)
    out = []
    with psycopg.connect(dsn) as plain, psycopg.connect(dsn, **kwargs) as wrapped:
        out.append(
            compare(
                "psycopg_pooled",
                lambda: plain.execute("SELECT 1").fetchone(),
                lambda: wrapped.execute("SELECT 1").fetchone(),
                per_round=n,
                rounds=r,
                goal=">= 0.98",
                note="psycopg 3 SELECT 1 on one open connection",
            )
        )

    def new_plain() -> None:
        with psycopg.connect(dsn) as conn:
            conn.execute("SELECT 1").fetchone()

    def new_wrapped() -> None:
        with psycopg.connect(dsn, **kwargs) as conn:
            conn.execute("SELECT 1").fetchone()

    out.append(
        compare(
            "psycopg_new_connection",
            new_plain,
            new_wrapped,
            per_round=n_new,
            rounds=r_new,
            goal=None,
            note="psycopg.connect + SELECT 1 + close per query (libpq keepalive parameters)",
        )
    )
    return out
