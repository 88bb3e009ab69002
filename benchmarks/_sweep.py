"""Cost of the tighten sweep (the in-process sweep of install()/KEEPALIVE_AUTO and keepalive run's supervisor).

``python -m benchmarks._sweep [quick]`` prints the rows as JSON; ``run(quick)`` returns them as dicts in the shape
of :meth:`benchmarks._common.Result.as_json`.

A round lists ``/proc/<pid>/fd`` (one readlink per descriptor). A socket it has not seen costs one dup (this
process) or pidfd_getfd (another one), one fstat, the getsockname/getpeername/TCP_INFO reads, five getsockopt and
the setsockopt calls it needs; a socket seen in an earlier round costs only its readlink and a set lookup. So
two figures per setting: the first round (every connection new, each brought down from keepalive off) and the
steady state (every round after, nothing new).
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from benchmarks._common import Result
from keepalive import Policy
from keepalive._audit._sweep import tighten_round

POLICY = Policy(idle=60, interval=10, count=5)

_HOLDER = textwrap.dedent(
    """
    import resource, socket, sys
    n = int(sys.argv[1])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    listener = socket.create_server(("127.0.0.1", 0), backlog=4096)
    held = []
    for _ in range(n):
        held.append(socket.create_connection(listener.getsockname()))
        held.append(listener.accept()[0])
    print("ready", flush=True)
    sys.stdin.read()
    """
)


@contextmanager
def _own(n: int) -> Iterator[list[socket.socket]]:
    listener = socket.create_server(("127.0.0.1", 0), backlog=4096)
    held: list[socket.socket] = []
    try:
        for _ in range(n):
            held.append(socket.create_connection(listener.getsockname()))
            held.append(listener.accept()[0])
        yield held
    finally:
        for sock in held:
            sock.close()
        listener.close()


@contextmanager
def _other(n: int) -> Iterator[int]:
    with subprocess.Popen(
        [sys.executable, "-S", "-c", _HOLDER, str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        try:
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError("holder process failed")
            yield proc.pid
        finally:
            proc.kill()


def _loosen(socks: list[socket.socket]) -> None:
    for sock in socks:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 0)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 7200)


def _time(rounds: int, setup: Callable[[], set[int]], pid: int | None) -> tuple[float, float]:
    """(median wall s, median CPU s) of one tighten_round after ``setup()`` returned its ``known`` set."""
    walls, cpus = [], []
    for _ in range(rounds):
        known = setup()
        wall, cpu = time.perf_counter(), time.process_time()
        tighten_round(pid, POLICY, known, origin="benchmark")
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return statistics.median(walls), statistics.median(cpus)


def _rows(
    where: str, n: int, first: tuple[float, float], steady: tuple[float, float], rounds: int, first_note: str
) -> list[Result]:
    sockets = 2 * n
    rows = []
    for kind, (wall, cpu) in (("first_round", first), ("steady_round", steady)):
        rows.append(
            Result(
                name=f"sweep_{where}_{kind}_{sockets}_sockets",
                unit="s/round",
                value=wall,
                goal="steady rounds every 5 s (in-process) or 1 s (keepalive run) stay below 0.1 % of one CPU",
                note=f"tighten_round over {sockets} connected loopback sockets "
                + (first_note if kind == "first_round" else "all seen before (readlink + set lookup)")
                + f"; median of {rounds} rounds",
                extra={
                    "per_socket_s": wall / sockets,
                    "cpu_s_per_round": cpu,
                    "cpu_share_at_5s": cpu / 5,
                    "cpu_share_at_1s": cpu / 1,
                },
            )
        )
    return rows


def run(quick: bool) -> list[dict[str, Any]]:
    """The sweep's cost per round and per socket, in this process and in another one (``quick``: fewer sizes)."""
    if not os.path.exists("/proc/self/fd") or not sys.platform.startswith("linux"):
        return [Result(name="sweep_round", unit="s/round", measured=False, note="not measured: Linux only").as_json()]
    counts = [50] if quick else [50, 500]
    rounds = 9 if quick else 31
    results: list[Result] = []
    for n in counts:
        with _own(n) as socks:

            def fresh(socks: list[socket.socket] = socks) -> set[int]:
                _loosen(socks)
                return set()

            first = _time(rounds, fresh, None)
            known: set[int] = set()
            tighten_round(None, POLICY, known, origin="benchmark")
            steady = _time(rounds, lambda known=known: known, None)
        results += _rows("own", n, first, steady, rounds, "all new and loosened (each one brought down)")
        with _other(n) as pid:
            first = _time(rounds, set, pid)  # the holder's sockets: off; once tightened they stay so (cheaper)
            known = set()
            tighten_round(pid, POLICY, known, origin="benchmark")
            steady = _time(rounds, lambda known=known: known, pid)
        note = "of another process, all new (pidfd_getfd and the reads each; brought down in the first round only)"
        results += _rows("other_process", n, first, steady, rounds, note)
    return [row.as_json() for row in results]


if __name__ == "__main__":
    print(json.dumps(run(len(sys.argv) > 1 and sys.argv[1] == "quick"), indent=2))
