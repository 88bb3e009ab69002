"""Section 5: memory. RSS before and after opening, wrapping and closing many connections in sequence.

keepalive keeps nothing per connection (the compiled plan lives on the Policy), so the RSS growth should match
plain ``socket.create_connection``. Each side runs in its own fresh worker process.
"""

from __future__ import annotations

import gc
import json
import os
import socket
import struct
import subprocess
import sys
import threading
from typing import Any

from benchmarks._common import Result

_LINGER_RESET = struct.pack("ii", 1, 0)  # close with RST: no TIME_WAIT, so 100,000 connects fit the port range


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def worker(mode: str, n: int) -> dict[str, Any]:
    import keepalive

    listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
    address = listener.getsockname()

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    policy = keepalive.Policy(idle=60, interval=10, count=5)

    def one() -> None:
        if mode == "keepalive":
            sock = keepalive.create_connection(address, policy=policy)
            keepalive.apply(sock, policy)
        else:
            sock = socket.create_connection(address)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        sock.close()

    for _ in range(min(1000, n)):  # warm up allocator and caches
        one()
    gc.collect()
    before = _rss_kib()
    for _ in range(n):
        one()
    gc.collect()
    after = _rss_kib()
    listener.close()
    return {"mode": mode, "connections": n, "rss_before_kib": before, "rss_after_kib": after}


def run(size: str) -> list[Result]:
    n = {"smoke": 200, "quick": 10_000, "full": 100_000}[size]
    env = {**os.environ, "KEEPALIVE_CHECK": "0"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    data = {}
    for mode in ("plain", "keepalive"):
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks._memory", mode, str(n)],
            capture_output=True,
            text=True,
            env=env,
            cwd=root,
            check=False,
        )
        if proc.returncode != 0:
            return [
                Result(
                    name="memory_rss_growth",
                    unit="KiB",
                    measured=False,
                    note=f"not measured: {proc.stderr.strip()[-300:]}",
                )
            ]
        data[mode] = json.loads(proc.stdout)
    ours = data["keepalive"]["rss_after_kib"] - data["keepalive"]["rss_before_kib"]
    base = data["plain"]["rss_after_kib"] - data["plain"]["rss_before_kib"]
    return [
        Result(
            name="memory_rss_growth",
            unit="KiB",
            ratio=None,
            value=ours,
            baseline=base,
            note=f"RSS growth over {n:,} connections opened with keepalive.create_connection + apply and closed in "
            f"sequence (baseline: socket.create_connection); {ours / n * 1024:.2f} B per connection",
            extra={"connections": n, "keepalive": data["keepalive"], "plain": data["plain"]},
        )
    ]


if __name__ == "__main__":
    print(json.dumps(worker(sys.argv[1], int(sys.argv[2]))))
