"""``python -m benchmarks._loop_lag RUNTIME MODE``: the longest event-loop stall of a first connect, in ms.

Run in a fresh process by ``benchmarks._startup`` (one measurement per process: the first connect of a process is
the one that pays for start-up work). RUNTIME is asyncio, anyio (``anyio.run`` on asyncio, which loads anyio's
backend before the loop runs) or trio; MODE is ``keepalive`` (the keepalive wrapper) or ``plain`` (the runtime's own
connect). The wrapper module is imported before the loop starts, as an application imports it at the top. A
heartbeat task yields in a loop (``sleep(0)``, a checkpoint) and records the longest gap between two of its turns
while the connect runs and for ``WINDOW`` seconds after it returns, in both modes alike: a shared machine
interrupts a busy process now and then (gaps of 5-20 ms every few seconds here, with nothing of keepalive
running), so two windows of different lengths would measure the machine, not the connect. The runtime check that
the first keepalive connect starts (thread ``keepalive-check``: imports, file reads, a judgement, and after its
conntrack sample a second judgement) competes for the GIL, so it has to end inside the window: the sample is
shortened to ``SAMPLE`` seconds (``KEEPALIVE_CHECK_SAMPLE``; its length changes when the second judgement runs,
not what it costs), and if the check is still running when the window ends the window grows until it ends (the
run fails after ``CHECK_LIMIT`` seconds rather than measure without it). The peer is a listening socket in this
process: the kernel completes the handshake from its backlog, so no server work runs on the loop.
Prints the stall in ms.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

WINDOW = 1.0  # seconds measured after the connect returns, in both modes
SAMPLE = "0.5"  # KEEPALIVE_CHECK_SAMPLE here: the check's conntrack sample and second judgement end inside WINDOW
CHECK_LIMIT = 30.0  # the most time waited for the runtime check to end
CHECK_THREAD = "keepalive-check"  # keepalive.checker._runtime's thread name


def check_running() -> bool:
    """True while keepalive's runtime check thread is alive."""
    return any(thread.name == CHECK_THREAD for thread in threading.enumerate())


class Probe:
    """The heartbeat: ``beat()`` after every yield; ``worst`` is the longest gap seen while ``armed``."""

    def __init__(self) -> None:
        self.last = time.perf_counter()
        self.worst = 0.0
        self.armed = False
        self.done = False

    def beat(self) -> None:
        now = time.perf_counter()
        if self.armed:
            self.worst = max(self.worst, now - self.last)
        self.last = now


async def _measure(
    connect: Callable[[], Awaitable[Any]],
    sleep: Callable[[float], Awaitable[Any]],
    probe: Probe,
) -> None:
    await sleep(0.01)  # the heartbeat is running
    probe.beat()
    probe.armed = True
    stream = await connect()
    await sleep(WINDOW)
    waited = WINDOW
    while check_running():  # the check is part of what the first connect costs the loop: measure all of it
        if waited > CHECK_LIMIT:
            raise SystemExit(f"the runtime check was still running {CHECK_LIMIT:g} s after the connect")
        await sleep(0.01)
        waited += 0.01
    probe.armed = False
    probe.done = True
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()
    elif isinstance(stream, tuple):  # asyncio: (reader, writer)
        stream[1].close()


def main(runtime: str, mode: str) -> float:
    os.environ["KEEPALIVE_CHECK_SAMPLE"] = SAMPLE
    listener = socket.create_server(("127.0.0.1", 0), backlog=16)
    host, port = listener.getsockname()[:2]
    probe = Probe()

    if runtime == "asyncio":
        import asyncio

        if mode == "keepalive":
            import keepalive.asyncio as ka_asyncio

            async def connect() -> Any:
                return await ka_asyncio.open_connection(host, port)
        else:

            async def connect() -> Any:
                return await asyncio.open_connection(host, port)

        async def heartbeat() -> None:
            while not probe.done:
                await asyncio.sleep(0)
                probe.beat()

        async def amain() -> None:
            beat = asyncio.ensure_future(heartbeat())
            await _measure(connect, asyncio.sleep, probe)
            await beat

        asyncio.run(amain())
    elif runtime == "anyio":
        import anyio
        import anyio.lowlevel

        if mode == "keepalive":
            import keepalive.anyio as ka_anyio

            async def anyio_connect() -> Any:
                return await ka_anyio.connect_tcp(host, port)
        else:

            async def anyio_connect() -> Any:
                return await anyio.connect_tcp(host, port)

        async def anyio_heartbeat() -> None:
            while not probe.done:
                await anyio.lowlevel.checkpoint()
                probe.beat()

        async def anyio_main() -> None:
            async with anyio.create_task_group() as group:
                group.start_soon(anyio_heartbeat)
                await _measure(anyio_connect, anyio.sleep, probe)

        anyio.run(anyio_main, backend="asyncio")  # imports anyio's asyncio backend before the loop runs
    elif runtime == "trio":
        import trio
        import trio.lowlevel

        if mode == "keepalive":
            import keepalive.trio as ka_trio

            async def trio_connect() -> Any:
                return await ka_trio.open_tcp_stream(host, port)
        else:

            async def trio_connect() -> Any:
                return await trio.open_tcp_stream(host, port)

        async def trio_heartbeat() -> None:
            while not probe.done:
                await trio.lowlevel.checkpoint()
                probe.beat()

        async def trio_main() -> None:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio_heartbeat)
                await _measure(trio_connect, trio.sleep, probe)

        trio.run(trio_main)
    else:
        raise SystemExit(f"unknown runtime {runtime!r}: asyncio, anyio or trio")
    listener.close()
    return probe.worst * 1000


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[2] not in ("keepalive", "plain"):
        print("usage: python -m benchmarks._loop_lag asyncio|anyio|trio keepalive|plain", file=sys.stderr)
        sys.exit(2)
    print(f"{main(sys.argv[1], sys.argv[2]):.3f}")
