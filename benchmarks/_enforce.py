"""Cost of ``keepalive enforce``: connections per second inside a cgroup with and without the sock_ops program, and
the program's memory.

``python -m benchmarks._enforce [smoke|quick|full]`` prints the results as JSON. ``run(size)`` returns them as
:class:`benchmarks._common.Result` rows, in the shape ``benchmarks/__main__.py``'s sections use.

One worker process connects to and accepts from its own loopback listener (loopback included, as by default)
and closes with RST (no TIME_WAIT build-up). Between blocks it is moved between two sibling cgroups, one with the
program and one without (a socket belongs to the cgroup its creator was in when it was created), so both sides
run in the same process on the same warm caches; blocks alternate which side goes first, and the ratio is the
median of per-pair ratios, with its spread. Blocks are short (a few tens of milliseconds) and many: this virtual
machine stops a busy process for 5-20 ms every few seconds, which turns one long block in three into an outlier,
while with short blocks most pairs see no interruption and the median is theirs. The rate is measured with the
kernel's BPF statistics off, as in production (they add two clock reads to each run of the program); the
program's own time is then measured in a separate phase of the same size with them on. The program runs once per
connection, on the connect: an accepted
socket belongs to its listener's cgroup, and the listener was created in the plain one. Needs root and cgroup
v2; a private BPF filesystem is mounted for the pins and removed at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import uuid
from collections.abc import Iterator
from typing import Any

from benchmarks._common import Result, percentile
from keepalive import Policy

_WORKER = textwrap.dedent(
    """
    import socket, struct, sys, time
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)
    address = listener.getsockname()
    reset = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close with RST, no TIME_WAIT
    print("ready", flush=True)
    for line in sys.stdin:
        n = int(line)
        start = time.perf_counter()
        for _ in range(n):
            client = socket.create_connection(address)
            accepted, _ = listener.accept()
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, reset)
            accepted.close()
            client.close()
        print(time.perf_counter() - start, flush=True)
    """
)


def _unavailable() -> str | None:
    if sys.platform != "linux":
        return "Linux only"
    if os.geteuid() != 0:
        return "needs root (CAP_BPF and CAP_NET_ADMIN)"
    from keepalive._enforce import mounts

    if not mounts("cgroup2"):
        return "no cgroup v2 mounted"
    return None


@contextlib.contextmanager
def _bpffs() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="keepalive-bench-bpffs-")
    try:
        subprocess.run(["mount", "-t", "bpf", "bpf", path], check=True)
        try:
            yield path
        finally:
            subprocess.run(["umount", path], check=False)
    finally:
        os.rmdir(path)


@contextlib.contextmanager
def _cgroup(root: str, name: str) -> Iterator[str]:
    path = os.path.join(root, f"keepalive-bench-{name}-{uuid.uuid4().hex[:8]}")
    os.mkdir(path)
    try:
        yield path
    finally:
        with open(os.path.join(path, "cgroup.procs"), encoding="ascii") as handle:
            for line in handle:
                with (
                    contextlib.suppress(OSError),
                    open(os.path.join(root, "cgroup.procs"), "w", encoding="ascii") as out,
                ):
                    out.write(line.strip())
        os.rmdir(path)


class _Worker:
    """A connect/accept loop started inside ``cgroup``; ``time(n)`` returns the seconds for n connections."""

    def __init__(self, cgroup: str) -> None:
        self.proc = subprocess.Popen(
            ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', cgroup, sys.executable, "-c", _WORKER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdin is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        if self.stdout.readline().strip() != "ready":
            raise RuntimeError("benchmark worker failed to start")

    def move(self, cgroup: str) -> None:
        with open(os.path.join(cgroup, "cgroup.procs"), "w", encoding="ascii") as procs:
            procs.write(str(self.proc.pid))

    def time(self, n: int) -> float:
        self.stdin.write(f"{n}\n")
        self.stdin.flush()
        return float(self.stdout.readline())

    def close(self) -> None:
        self.stdin.close()
        self.proc.wait(timeout=30)
        self.stdout.close()


def _runs(pin_dir: str) -> tuple[int, int]:
    """(runs, nanoseconds) the kernel counted for the pinned program (with BPF_ENABLE_STATS on)."""
    from keepalive._enforce import _bpf

    fd = _bpf.obj_get(os.path.join(pin_dir, "program"))
    try:
        info = _bpf.fdinfo(fd)
    finally:
        os.close(fd)
    return int(info.get("run_cnt", "0")), int(info.get("run_time_ns", "0"))


def _memory(pin_dir: str) -> dict[str, Any]:
    from keepalive._enforce import _bpf

    sizes: dict[str, Any] = {}
    for name in ("program", "policy", "counters", "info"):
        fd = _bpf.obj_get(os.path.join(pin_dir, name))
        try:
            sizes[f"{name}_memlock_bytes"] = int(_bpf.fdinfo(fd).get("memlock", "0"))
            if name == "program":
                xlated, jited = _bpf.prog_info(fd)
                sizes["program_xlated_bytes"] = xlated
                sizes["program_jited_bytes"] = jited
                sizes["program_instructions"] = xlated // 8
        finally:
            os.close(fd)
    return sizes


def run(size: str) -> list[Result]:
    """Connection rate with/without the program (``size``: smoke, quick or full) and the program's memory."""
    reason = _unavailable()
    if reason is not None:
        note = f"not measured: {reason}"
        return [
            Result(name="enforce_connection_rate", unit="ratio", measured=False, note=note),
            Result(name="enforce_memory", unit="bytes", measured=False, note=note),
        ]
    import keepalive
    from keepalive._enforce import ENV_BPFFS, _bpf, mounts

    loops = {"smoke": 50, "quick": 200, "full": 300}[size]
    rounds = {"smoke": 4, "quick": 61, "full": 201}[size]
    root = mounts("cgroup2")[0]
    saved = os.environ.get(ENV_BPFFS)
    results: list[Result] = []
    with _bpffs() as bpffs, _cgroup(root, "on") as enforced, _cgroup(root, "off") as plain:
        os.environ[ENV_BPFFS] = bpffs
        try:
            entry = keepalive.enforce(enforced, Policy(idle=60, interval=10, count=5))
            worker = _Worker(plain)
            try:

                def timed(cgroup: str) -> float:
                    worker.move(cgroup)
                    return worker.time(loops)

                timed(enforced)  # warm up both sides
                timed(plain)
                ratios: list[float] = []
                on_rates: list[float] = []
                off_rates: list[float] = []
                for index in range(rounds):
                    if index % 2:
                        t_on, t_off = timed(enforced), timed(plain)
                    else:
                        t_off, t_on = timed(plain), timed(enforced)
                    on_rates.append(loops / t_on)
                    off_rates.append(loops / t_off)
                    ratios.append(t_off / t_on)
                stats = _bpf.enable_stats()  # the kernel's own clock on the program, while this fd is open
                try:
                    before = _runs(entry.pin_dir)
                    for _ in range(rounds):
                        timed(enforced)
                    after = _runs(entry.pin_dir)
                finally:
                    os.close(stats)
            finally:
                worker.move(plain)
                worker.close()
            status = {e.cgroup: e for e in keepalive.enforcement_status()}[enforced]
            memory = _memory(entry.pin_dir)
            keepalive.remove_enforcement(enforced)
        finally:
            if saved is None:
                os.environ.pop(ENV_BPFFS, None)
            else:
                os.environ[ENV_BPFFS] = saved
    results.append(
        Result(
            name="enforce_connection_rate",
            unit="ratio",
            ratio=statistics.median(ratios),
            value=statistics.median(on_rates),
            baseline=statistics.median(off_rates),
            goal=">= 0.97 (connections per second with the program / without)",
            note=f"loopback connect+accept+close by one process moved between a cgroup with the sock_ops program and "
            f"a sibling without; "
            f"{rounds} interleaved rounds of {loops}, BPF statistics off; the program ran {status.seen} times "
            f"({status.tightened} tightened)",
            extra={
                "ratio_p10": percentile(ratios, 10),
                "ratio_p90": percentile(ratios, 90),
                "ratio_min": min(ratios),
                "ratio_max": max(ratios),
                "connections_per_s_with": statistics.median(on_rates),
                "connections_per_s_without": statistics.median(off_rates),
            },
        )
    )
    runs, run_ns = after[0] - before[0], after[1] - before[1]
    connections = rounds * loops  # made in the enforced cgroup while the stats were on (their own phase)
    program_ns = run_ns / connections
    per_connection_ns = 1e9 / statistics.median(off_rates)
    results.append(
        Result(
            name="enforce_program_time_per_connection",
            unit="s/connection",
            value=program_ns / 1e9,
            goal="small against a connection's own cost (implied rate ratio >= 0.97)",
            note=f"the kernel's clock on the program (BPF_ENABLE_STATS): {run_ns / 1e6:.1f} ms over {runs} runs for "
            f"{connections} connections (sock_ops calls it at several points of a connection; all but the "
            f"ESTABLISHED one return at once); a loopback connect+accept+close costs "
            f"{per_connection_ns / 1000:.1f} µs here without it",
            extra={
                "runs_per_connection": runs / connections,
                "ns_per_run": run_ns / runs if runs else float("nan"),
                "implied_rate_ratio": per_connection_ns / (per_connection_ns + program_ns),
            },
        )
    )
    results.append(
        Result(
            name="enforce_memory",
            unit="bytes",
            value=float(
                memory["program_memlock_bytes"]
                + memory["policy_memlock_bytes"]
                + memory["counters_memlock_bytes"]
                + memory["info_memlock_bytes"]
            ),
            note="kernel memory charged for the program and its three maps (memlock in /proc/self/fdinfo), "
            "whatever the number of connections",
            extra=memory,
        )
    )
    return results


if __name__ == "__main__":
    chosen = sys.argv[1] if len(sys.argv) > 1 else "quick"
    print(json.dumps([r.as_json() for r in run(chosen)], indent=2))
