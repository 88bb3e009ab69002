"""Cost of keepalive.audit(): one round over this process's sockets, and how the namespace's table size matters.

``python -m benchmarks._audit [smoke|quick|full]`` prints the results as JSON. ``run(size)`` returns them as
:class:`benchmarks._common.Result` rows, in the shape ``benchmarks/__main__.py``'s sections use.

What a round costs: ``/proc/self/fd`` (one readlink per descriptor), ``/proc/self/net/tcp`` and ``tcp6`` (the
*whole network namespace*, so other processes' connections count too), then per TCP socket one dup, one fstat
and five getsockopt calls. ``audit_in_background(300)`` spends one such round every 300 s.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager

import keepalive
from benchmarks._common import Result

# Holds N loopback connections (2N sockets in the namespace's table) until stdin closes.
_HOLDER = textwrap.dedent(
    """
    import resource, socket, sys
    n = int(sys.argv[1])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    listener = socket.create_server(("127.0.0.1", 0), backlog=4096)
    held = []
    for _ in range(n):
        client = socket.create_connection(listener.getsockname())
        held += [client, listener.accept()[0]]
    print("ready", flush=True)
    sys.stdin.read()
    """
)


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@contextmanager
def _own_connections(n: int) -> Iterator[None]:
    listener = socket.create_server(("127.0.0.1", 0), backlog=4096)
    held: list[socket.socket] = [listener]
    try:
        for _ in range(n):
            client = socket.create_connection(listener.getsockname())
            held += [client, listener.accept()[0]]
        yield
    finally:
        for sock in held:
            sock.close()


@contextmanager
def _other_process_connections(n: int) -> Iterator[int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("holder process failed")
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()


def _table_rows() -> int:
    rows = 0
    for name in ("tcp", "tcp6"):
        try:
            with open(f"/proc/self/net/{name}") as table:
                rows += sum(1 for _ in table) - 1
        except FileNotFoundError:
            pass
    return rows


def _time_rounds(rounds: int, pid: int | None = None) -> tuple[float, float, int]:
    """(median wall s/round, median CPU s/round, sockets audited)."""
    walls: list[float] = []
    cpus: list[float] = []
    count = 0
    keepalive.audit(pid=pid, path_timeout=240)  # warm up
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        count = len(keepalive.audit(pid=pid, path_timeout=240))
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return statistics.median(walls), statistics.median(cpus), count


def run(size: str) -> list[Result]:
    """The audit's cost per round for a few socket counts (``size``: smoke, quick or full)."""
    if not os.path.exists("/proc/self/net/tcp"):
        return [Result(name="audit_round", unit="s/round", measured=False, note="not measured: needs Linux /proc")]
    _raise_nofile()
    own_counts = {"smoke": [10], "quick": [10, 100, 1000], "full": [10, 100, 1000, 4000]}[size]
    other_counts = {"smoke": [1000], "quick": [0, 5000], "full": [0, 5000, 9000]}[size]
    rounds = {"smoke": 5, "quick": 30, "full": 100}[size]
    results: list[Result] = []
    for n in own_counts:
        with _own_connections(n):
            wall, cpu, count = _time_rounds(rounds)
            rows = _table_rows()
        results.append(
            Result(
                name=f"audit_round_own_{n}_connections",
                unit="s/round",
                value=wall,
                goal="a round every 300 s stays below 0.01 % of one CPU",
                note=f"this process holds {n} loopback connections ({count} TCP sockets audited, {rows} rows in "
                f"the namespace's tcp tables); median of {rounds} rounds",
                extra={"cpu_s_per_round": cpu, "cpu_share_at_300s": cpu / 300, "table_rows": rows},
            )
        )
    with _own_connections(5):
        for m in other_counts:
            with _other_process_connections(m) if m else _null() as _:
                wall, cpu, count = _time_rounds(rounds)
                rows = _table_rows()
            results.append(
                Result(
                    name=f"audit_round_own_5_with_{2 * m}_other_sockets_in_netns",
                    unit="s/round",
                    value=wall,
                    note=f"11 own TCP sockets; another process holds {2 * m} sockets in the same network namespace "
                    f"({rows} table rows): the audit asks each of its own sockets, so their number does not matter; "
                    f"median of {rounds} rounds",
                    extra={"cpu_s_per_round": cpu, "table_rows": rows},
                )
            )
    with _other_process_connections(own_counts[-1]) as pid:
        wall, cpu, count = _time_rounds(max(3, rounds // 5), pid=pid)
    results.append(
        Result(
            name=f"audit_pid_{2 * own_counts[-1]}_sockets",
            unit="s/round",
            value=wall,
            note=f"keepalive.audit(pid=...) of a process with {count} TCP sockets (pidfd_getfd per socket)",
            extra={"cpu_s_per_round": cpu},
        )
    )
    return results


@contextmanager
def _null() -> Iterator[None]:
    yield


if __name__ == "__main__":
    size = sys.argv[1] if len(sys.argv) > 1 else "quick"
    print(json.dumps([r.as_json() for r in run(size)], indent=2))
