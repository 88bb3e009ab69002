"""Section 4: how long until a dead peer is noticed, with the default policy, below(350) and kernel defaults.

Measured in the conntrack lab (root + ip netns + nft): the server namespace starts dropping everything and the
client's blocked read is timed until it fails. Long policies are computed (idle + interval * count), and every
row says which it is.
"""

from __future__ import annotations

import socket
import time

import keepalive
from benchmarks._common import Result

KERNEL_DEFAULTS = (7200, 75, 9)


def _computed(name: str, policy: keepalive.Policy, note: str) -> Result:
    return Result(
        name=name,
        unit="s",
        value=policy.detection_time,
        measured=False,
        note=f"computed: idle + interval * count = {policy.idle} + {policy.interval} * {policy.count}; {note}",
    )


def _measure(policy: keepalive.Policy) -> float:
    from keepalive.lab import Lab

    def hold(conn: socket.socket, _backend: str) -> None:
        conn.sendall(b"hello\n")
        conn.recv(1)  # blocks until the connection dies

    with Lab(conntrack_timeout=max(policy.idle + policy.interval + 2, 3)) as lab:
        lab.serve(9000, hold, backends=1)
        sock = lab.connect(9000, keepalive=policy, timeout=None)
        assert sock.recv(6) == b"hello\n"
        lab.block("server")
        start = time.monotonic()
        try:
            sock.recv(1)
        except OSError:
            pass
        return time.monotonic() - start


def run(size: str) -> list[Result]:
    default = keepalive.BUILTIN_POLICY
    below350 = keepalive.Policy.below(350)
    idle, interval, count = KERNEL_DEFAULTS
    kernel = keepalive.Policy(idle=idle, interval=interval, count=count, user_timeout=None)
    results = [
        _computed(
            "dead_peer_detection_kernel_defaults",
            kernel,
            "sockets with SO_KEEPALIVE only (tcp_keepalive_time 7200, intvl 75, probes 9)",
        ),
        _computed("dead_peer_detection_below_350", below350, "Policy.below(350), e.g. AWS NAT Gateway"),
    ]
    from keepalive.lab import missing_requirements

    missing = missing_requirements()
    small = keepalive.Policy(idle=2, interval=1, count=3)
    if missing:
        results.append(
            _computed("dead_peer_detection_default_policy", default, "lab unavailable: " + "; ".join(missing))
        )
        return results
    if size == "full":
        took = _measure(default)
        results.append(
            Result(
                name="dead_peer_detection_default_policy",
                unit="s",
                value=took,
                baseline=default.detection_time,
                ratio=took / default.detection_time,
                note=f"measured in the lab (ratio: measured / computed); policy {default}",
            )
        )
    else:
        results.append(_computed("dead_peer_detection_default_policy", default, "measured only in a full run"))
    took = _measure(small)
    results.append(
        Result(
            name="dead_peer_detection_small_policy",
            unit="s",
            value=took,
            baseline=small.detection_time,
            ratio=took / small.detection_time,
            note=f"measured in the lab (ratio: measured / computed); policy {small}",
        )
    )
    kernel_ratio = kernel.detection_time / default.detection_time
    results.append(
        Result(
            name="dead_peer_detection_default_vs_kernel",
            unit="x faster",
            value=kernel_ratio,
            measured=False,
            note="computed: kernel-default detection time / default policy's",
        )
    )
    return results
