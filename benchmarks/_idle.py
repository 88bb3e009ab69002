"""Section 3: the cost of keeping N idle connections alive, kernel keepalive vs an application heartbeat.

The measurement runs in a worker process (``python -m benchmarks._idle WORKER-ARGS``), inside a fresh network
namespace when this machine allows it (root + ``ip netns``), so the loopback counters count only our packets.
The worker forks a server process that accepts the connections and reads (and discards) whatever arrives; the
client process then holds the connections for a fixed time, either sleeping (the kernel probes every ``idle``
second) or running one asyncio task per connection that sends a 1-byte ping at the same rate. Only the client
process's CPU time and context switches are counted: that is what the service pays.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import selectors
import shutil
import socket
import subprocess
import sys
import time
import uuid
from typing import Any

from benchmarks._common import Result

RATE_SECONDS = 1


def _raise_fd_limit(needed: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(hard, max(soft, needed)) if hard != resource.RLIM_INFINITY else max(soft, needed)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _lo_counters() -> tuple[int, int]:
    with open("/proc/net/dev") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name.strip() == "lo":
                fields = rest.split()
                return int(fields[8]), int(fields[9])  # tx bytes, tx packets
    return 0, 0


def _softirq_jiffies() -> int:
    with open("/proc/stat") as f:
        fields = f.readline().split()
    return int(fields[7])  # cpu: user nice system idle iowait irq softirq


def _server(listener: socket.socket, n: int) -> None:
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    conns = []
    while True:
        for key, _ in sel.select():
            if key.fileobj is listener:
                conn, _ = listener.accept()
                conn.setblocking(False)
                conns.append(conn)
                sel.register(conn, selectors.EVENT_READ)
            else:
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(sock)
                    sock.close()


def worker(mode: str, n: int, seconds: float) -> dict[str, Any]:
    """Open n loopback connections, hold them for `seconds` in `mode`, return what the client paid."""
    import keepalive

    limit = _raise_fd_limit(n + 64)
    if limit < n + 64:
        return {"error": f"fd limit {limit} is below {n + 64}"}
    listener = socket.create_server(("127.0.0.1", 0), backlog=min(n, 65535))
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            _server(listener, n)
        finally:
            os._exit(0)
    listener_address = listener.getsockname()
    listener.close()
    policy = keepalive.Policy(idle=RATE_SECONDS, interval=RATE_SECONDS, count=5)
    conns = []
    try:
        for _ in range(n):
            sock = socket.create_connection(listener_address)
            if mode == "kernel":
                keepalive.apply(sock, policy, strict=True)
            conns.append(sock)
        time.sleep(1.5)  # let connection setup settle before counting
        before = resource.getrusage(resource.RUSAGE_SELF)
        bytes0, packets0 = _lo_counters()
        soft0 = _softirq_jiffies()
        wall0 = time.monotonic()
        if mode == "kernel":
            time.sleep(seconds)
        else:
            asyncio.run(_heartbeats(conns, seconds))
        wall = time.monotonic() - wall0
        after = resource.getrusage(resource.RUSAGE_SELF)
        bytes1, packets1 = _lo_counters()
        soft1 = _softirq_jiffies()
    finally:
        for sock in conns:
            sock.close()
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    probes = n * wall / RATE_SECONDS
    return {
        "mode": mode,
        "connections": n,
        "seconds": wall,
        "cpu_seconds": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "context_switches": (after.ru_nvcsw - before.ru_nvcsw) + (after.ru_nivcsw - before.ru_nivcsw),
        "packets_per_probe": (packets1 - packets0) / probes if probes else None,
        "bytes_per_probe": (bytes1 - bytes0) / probes if probes else None,
        "softirq_seconds_machine_wide": (soft1 - soft0) / os.sysconf("SC_CLK_TCK"),
    }


async def _heartbeats(conns: list[socket.socket], seconds: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    streams = []
    for sock in conns:
        _reader, writer = await asyncio.open_connection(sock=sock)
        streams.append(writer)

    async def beat(writer: asyncio.StreamWriter, offset: float) -> None:
        await asyncio.sleep(offset)
        while loop.time() < deadline:
            writer.write(b"p")
            await writer.drain()
            await asyncio.sleep(RATE_SECONDS)

    n = len(streams)
    await asyncio.gather(*(beat(w, RATE_SECONDS * i / n) for i, w in enumerate(streams)))
    for writer in streams:
        writer.transport.abort()


def _namespace_prefix() -> tuple[list[str], str | None]:
    """`ip netns exec NS` when root can make a namespace (clean loopback counters), else nothing."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return [], None
    name = f"ka-bench-{uuid.uuid4().hex[:8]}"
    try:
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        return [], None
    return ["ip", "netns", "exec", name], name


def _run_worker(prefix: list[str], mode: str, n: int, seconds: float) -> dict[str, Any]:
    cmd = [*prefix, sys.executable, "-m", "benchmarks._idle", mode, str(n), str(seconds)]
    env = {**os.environ, "KEEPALIVE_CHECK": "0"}
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip()[-500:] or f"exit {proc.returncode}"}
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def run(size: str) -> list[Result]:
    plan = {"smoke": ([20], 2.0), "quick": ([1000], 5.0), "full": ([1000, 10000], 30.0)}[size]
    sizes, seconds = plan
    prefix, namespace = _namespace_prefix()
    results: list[Result] = []
    try:
        for n in sizes:
            kernel = _run_worker(prefix, "kernel", n, seconds)
            heartbeat = _run_worker(prefix, "heartbeat", n, seconds)
            if "error" in kernel or "error" in heartbeat:
                results.append(
                    Result(
                        name=f"idle_{n}_connections",
                        unit="cpu s",
                        measured=False,
                        note=f"not measured: {kernel.get('error') or heartbeat.get('error')}",
                    )
                )
                continue
            where = f"namespace {namespace}" if namespace else "the host's loopback (counters include other traffic)"
            hb_cpu = heartbeat["cpu_seconds"]
            results.append(
                Result(
                    name=f"idle_{n}_connections_cpu",
                    unit="cpu s",
                    ratio=kernel["cpu_seconds"] / hb_cpu if hb_cpu else None,
                    value=kernel["cpu_seconds"],
                    baseline=hb_cpu,
                    note=f"{n} idle connections for {seconds:g} s, one probe/ping per connection per "
                    f"{RATE_SECONDS} s: process CPU with kernel keepalive / with asyncio heartbeats ({where})",
                    extra={"kernel": kernel, "heartbeat": heartbeat},
                )
            )
            hb_cs = heartbeat["context_switches"]
            results.append(
                Result(
                    name=f"idle_{n}_connections_context_switches",
                    unit="switches",
                    ratio=kernel["context_switches"] / hb_cs if hb_cs else None,
                    value=kernel["context_switches"],
                    baseline=hb_cs,
                    note="process context switches, kernel keepalive / heartbeat",
                )
            )
            results.append(
                Result(
                    name=f"idle_{n}_connections_wire",
                    unit="packets/probe",
                    ratio=(kernel["packets_per_probe"] / heartbeat["packets_per_probe"])
                    if heartbeat["packets_per_probe"]
                    else None,
                    value=kernel["packets_per_probe"],
                    baseline=heartbeat["packets_per_probe"],
                    note="loopback packets per probe (a probe and its ACK) vs per ping; bytes: "
                    f"{kernel['bytes_per_probe']:.0f} vs {heartbeat['bytes_per_probe']:.0f} per probe/ping",
                    extra={
                        "bytes_per_probe": kernel["bytes_per_probe"],
                        "baseline_bytes_per_probe": heartbeat["bytes_per_probe"],
                    },
                )
            )
    finally:
        if namespace:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["kernel", "heartbeat"])
    parser.add_argument("n", type=int)
    parser.add_argument("seconds", type=float)
    args = parser.parse_args()
    print(json.dumps(worker(args.mode, args.n, args.seconds)))


if __name__ == "__main__":
    main()
