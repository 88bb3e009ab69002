"""Section 2: client overhead with and without the adapter, pooled and with a new connection per request."""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import socket
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import keepalive
from benchmarks._common import Result, percentile, spread

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


Sides = tuple[Callable[[], object], Callable[[], object]]


def compare(
    name: str,
    sides: Callable[[], contextlib.AbstractContextManager[Sides]],
    *,
    pairs: int,
    rounds: int,
    goal: str | None,
    note: str,
) -> Result:
    """Requests without and with the adapter, interleaved one by one; ratio = wrapped ops/s over plain ops/s.

    Each round opens fresh clients (``sides()`` yields the plain and the wrapped request function), warms them up,
    then times ``pairs`` pairs of requests, one plain and one wrapped, alternating which goes first. The round's
    ratio is plain's median latency over wrapped's. Fresh clients per round matter: two pooled connections are
    served by two server processes (PostgreSQL) or scheduled differently, and that difference, which has nothing to
    do with keepalive, persists as long as the connections do; one-by-one interleaving makes both sides meet the
    same load, and medians ignore the requests a busy machine preempts. The row reports the median of the per-round
    ratios and their spread.
    """
    lat_plain: list[float] = []
    lat_wrapped: list[float] = []
    ratios: list[float] = []
    clock = time.perf_counter
    gc_enabled = gc.isenabled()
    try:
        for index in range(rounds):
            with sides() as (plain, wrapped):
                for _ in range(max(3, pairs // 10)):
                    plain()
                    wrapped()
                gc.collect()
                gc.disable()
                round_plain: list[float] = []
                round_wrapped: list[float] = []
                for pair in range(pairs):
                    if (pair + index) % 2:
                        t0 = clock()
                        wrapped()
                        t1 = clock()
                        plain()
                        t2 = clock()
                        round_wrapped.append(t1 - t0)
                        round_plain.append(t2 - t1)
                    else:
                        t0 = clock()
                        plain()
                        t1 = clock()
                        wrapped()
                        t2 = clock()
                        round_plain.append(t1 - t0)
                        round_wrapped.append(t2 - t1)
                if gc_enabled:
                    gc.enable()
            ratios.append(statistics.median(round_plain) / statistics.median(round_wrapped))
            lat_plain += round_plain
            lat_wrapped += round_wrapped
    finally:
        if gc_enabled:
            gc.enable()
    return Result(
        name=name,
        unit="ops/s",
        ratio=statistics.median(ratios),
        value=1 / statistics.median(lat_wrapped),
        baseline=1 / statistics.median(lat_plain),
        goal=goal,
        note=f"{note}; {rounds} rounds of {pairs} interleaved pairs, fresh clients per round, ops/s at the median "
        "latency",
        extra=spread(ratios, "ratio")
        | {
            "p50_ms": percentile(lat_wrapped, 50) * 1000,
            "p99_ms": percentile(lat_wrapped, 99) * 1000,
            "baseline_p50_ms": percentile(lat_plain, 50) * 1000,
            "baseline_p99_ms": percentile(lat_plain, 99) * 1000,
            "requests": len(lat_wrapped),
            "rounds": rounds,
        },
    )


#: (pairs per round, rounds) for the pooled rows and for the rows with a new connection per request.
_SIZES = {"smoke": ((5, 2), (3, 2)), "quick": ((200, 15), (30, 21)), "full": ((500, 41), (100, 21))}


def run(size: str) -> list[Result]:
    pooled, new = _SIZES[size]
    results: list[Result] = []
    with http_server() as url:
        results += _httpx(url, pooled, new)
        results += _requests(url, pooled, new)
    results += _redis(pooled, new)
    results += _psycopg(pooled, new)
    return results


def _skipped(name: str, why: str) -> Result:
    print(f"   skip {name}: {why}", file=sys.stderr)
    return Result(name=name, unit="ops/s", measured=False, note=f"not measured: {why}")


def _missing(name: str, exc: ImportError) -> Result:
    module = exc.name or str(exc)
    return _skipped(name, f"{module} is not installed (pip install 'tcp-keepalive[bench]')")


_Size = tuple[int, int]


def _httpx(url: str, pooled: _Size, new: _Size) -> list[Result]:
    try:
        import httpx

        from keepalive.adapters import httpx as ka_httpx
    except ImportError as exc:
        return [_missing("httpx_pooled", exc), _missing("httpx_new_connection", exc)]

    @contextlib.contextmanager
    def clients(headers: dict[str, str] | None) -> Iterator[Sides]:
        with (
            httpx.Client() as plain,
            httpx.Client(transport=ka_httpx.HTTPTransport(policy=POLICY)) as wrapped,
        ):
            yield (lambda: plain.get(url, headers=headers).read(), lambda: wrapped.get(url, headers=headers).read())

    return _http_rows("httpx", "httpx.Client", clients, pooled, new)


def _http_rows(
    name: str,
    client: str,
    sides: Callable[[dict[str, str] | None], contextlib.AbstractContextManager[Sides]],
    pooled: _Size,
    new: _Size,
) -> list[Result]:
    """An HTTP client's two rows: GETs over one pooled connection, and with ``Connection: close``."""
    close = {"Connection": "close"}
    return [
        compare(
            f"{name}_pooled",
            lambda: sides(None),
            pairs=pooled[0],
            rounds=pooled[1],
            goal=">= 0.98",
            note=f"{client} GET, one pooled connection",
        ),
        compare(
            f"{name}_new_connection",
            lambda: sides(close),
            pairs=new[0],
            rounds=new[1],
            goal=None,
            note=f"{client} GET with Connection: close",
        ),
    ]


def _requests(url: str, pooled: _Size, new: _Size) -> list[Result]:
    try:
        import requests

        from keepalive.adapters import requests as ka_requests
    except ImportError as exc:
        return [_missing("requests_pooled", exc), _missing("requests_new_connection", exc)]

    @contextlib.contextmanager
    def sessions(headers: dict[str, str] | None) -> Iterator[Sides]:
        with requests.Session() as plain, ka_requests.session(policy=POLICY) as wrapped:
            yield (lambda: plain.get(url, headers=headers).content, lambda: wrapped.get(url, headers=headers).content)

    return _http_rows("requests", "requests.Session", sessions, pooled, new)


def _redis(pooled: _Size, new: _Size) -> list[Result]:
    if not _reachable(6379):
        why = "Redis is not reachable at 127.0.0.1:6379"
        return [_skipped("redis_pooled", why), _skipped("redis_new_connection", why)]
    try:
        import redis

        from keepalive.adapters import redis as ka_redis
    except ImportError as exc:
        return [_missing("redis_pooled", exc), _missing("redis_new_connection", exc)]
    kwargs: dict[str, Any] = ka_redis.connection_kwargs(POLICY)

    @contextlib.contextmanager
    def pools() -> Iterator[Sides]:
        plain = redis.Redis(host="127.0.0.1", port=6379, socket_keepalive=False)
        wrapped = redis.Redis(host="127.0.0.1", port=6379, **kwargs)
        try:
            yield plain.ping, wrapped.ping
        finally:
            plain.close()
            wrapped.close()

    def new_plain() -> None:
        with redis.Redis(host="127.0.0.1", port=6379, socket_keepalive=False) as client:
            client.ping()

    def new_wrapped() -> None:
        with redis.Redis(host="127.0.0.1", port=6379, **kwargs) as client:
            client.ping()

    return [
        compare(
            "redis_pooled",
            pools,
            pairs=pooled[0],
            rounds=pooled[1],
            goal=">= 0.98",
            note="redis.Redis PING over its pool",
        ),
        compare(
            "redis_new_connection",
            lambda: contextlib.nullcontext((new_plain, new_wrapped)),
            pairs=new[0],
            rounds=new[1],
            goal=None,
            note="a new redis.Redis (and connection) per PING",
        ),
    ]


def _psycopg(pooled: _Size, new: _Size) -> list[Result]:
    if not _reachable(5432):
        why = "PostgreSQL is not reachable at 127.0.0.1:5432"
        return [_skipped("psycopg_pooled", why), _skipped("psycopg_new_connection", why)]
    try:
        import psycopg

        from keepalive.adapters import psycopg as ka_psycopg
    except ImportError as exc:
        return [_missing("psycopg_pooled", exc), _missing("psycopg_new_connection", exc)]
    dsn = "host=127.0.0.1 port=5432 dbname=test user=postgres"
    kwargs: dict[str, Any] = ka_psycopg.connect_kwargs(POLICY)

    @contextlib.contextmanager
    def connections() -> Iterator[Sides]:
        with psycopg.connect(dsn) as plain, psycopg.connect(dsn, **kwargs) as wrapped:
            yield (lambda: plain.execute("SELECT 1").fetchone(), lambda: wrapped.execute("SELECT 1").fetchone())

    def new_plain() -> None:
        with psycopg.connect(dsn) as conn:
            conn.execute("SELECT 1").fetchone()

    def new_wrapped() -> None:
        with psycopg.connect(dsn, **kwargs) as conn:
            conn.execute("SELECT 1").fetchone()

    return [
        compare(
            "psycopg_pooled",
            connections,
            pairs=pooled[0],
            rounds=pooled[1],
            goal=">= 0.98",
            note="psycopg 3 SELECT 1 on one open connection",
        ),
        compare(
            "psycopg_new_connection",
            lambda: contextlib.nullcontext((new_plain, new_wrapped)),
            pairs=new[0],
            rounds=new[1],
            goal=None,
            note="psycopg.connect + SELECT 1 + close per query (libpq keepalive parameters)",
        ),
    ]
