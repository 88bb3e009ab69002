"""Ready-made lab scenarios: each runs connections with and without keepalive through one idle window.

Every scenario takes a running `Lab` and a list of policies (None = a plain socket without keepalive) and
returns one outcome per connection, with measured times, so a test or the `keepalive lab` demo can assert on
or print both sides. Connections in one call share one idle period, so comparing costs no extra time.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from keepalive import Policy
    from keepalive.lab._topology import Lab

__all__ = [
    "DEAD_PEER_PORT",
    "ECHO_PORT",
    "PUSH_PORT",
    "DeadPeerOutcome",
    "PushOutcome",
    "RequestOutcome",
    "dead_peer",
    "request_after_idle",
    "server_push",
]

PUSH_PORT = 8080
ECHO_PORT = 8081
DEAD_PEER_PORT = 8082


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _read_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1024)
        if not chunk:
            raise ConnectionError("connection closed by peer")
        data += chunk
    return data[:-1]


@dataclass
class PushOutcome:
    """One connection of `server_push`: did the server's message, sent after the idle, reach the client?"""

    policy: Policy | None
    received: bool = False
    #: seconds from the server's send to the client's receipt (None when it never arrived)
    latency: float | None = None
    client_error: str | None = None
    #: what the server saw after pushing: None when the client acknowledged, else the error (e.g. a reset)
    server_error: str | None = None
    server_acknowledged: bool = False


def server_push(
    lab: Lab, policies: Sequence[Policy | None], *, idle_for: float, port: int = PUSH_PORT, wait: float = 3.0
) -> list[PushOutcome]:
    """Connect one client per policy, idle `idle_for` s, then the server pushes a line to each (a watch event).

    The client is blocked in recv() the whole time, as a real subscriber is. It waits `wait` s after the push,
    then acknowledges what it got. Without keepalive (and a conntrack timeout below `idle_for`) the push leaves
    the node without reverse NAT: the client never sees it and answers with a RST, so the server is reset.
    """
    outcomes = [PushOutcome(policy) for policy in policies]
    push = threading.Event()
    push_time: list[float] = []

    def handler(conn: socket.socket, backend: str) -> None:
        outcome = outcomes[int(_read_line(conn))]
        conn.sendall(b"ready\n")
        push.wait()
        try:
            conn.sendall(b"event\n")
            conn.settimeout(wait + 2)
            outcome.server_acknowledged = _read_line(conn) == b"ack"
        except OSError as exc:
            outcome.server_error = _error_text(exc)

    server = lab.serve(port, handler, backends=1)
    socks = [lab.connect(port, keepalive=policy) for policy in policies]
    for index, sock in enumerate(socks):
        sock.sendall(b"%d\n" % index)
        if _read_line(sock) != b"ready":
            raise RuntimeError("lab server did not answer")

    def client(index: int, sock: socket.socket) -> None:
        outcome = outcomes[index]
        sock.settimeout(idle_for + wait)
        try:
            line = _read_line(sock)
        except OSError as exc:
            outcome.client_error = _error_text(exc)
            return
        outcome.received = line == b"event"
        outcome.latency = time.monotonic() - push_time[0] if push_time else None
        sock.sendall(b"ack\n")

    threads = [threading.Thread(target=client, args=pair, daemon=True) for pair in enumerate(socks)]
    for thread in threads:
        thread.start()
    time.sleep(idle_for)
    push_time.append(time.monotonic())
    push.set()
    for thread in threads:
        thread.join(wait + 5)
    time.sleep(0.5)  # let the server threads record what they saw
    server.stop()
    for sock in socks:
        sock.close()
    if server.errors:
        raise RuntimeError(f"lab server failed: {server.errors!r}")
    return outcomes


@dataclass
class RequestOutcome:
    """One connection of `request_after_idle`: which backend answered before and after the idle."""

    policy: Policy | None
    first_backend: str | None = None
    second_backend: str | None = None
    error: str | None = None

    @property
    def stayed(self) -> bool:
        """The request after the idle was answered by the same backend, on the same connection."""
        return self.error is None and self.second_backend == self.first_backend


def request_after_idle(
    lab: Lab, policies: Sequence[Policy | None], *, idle_for: float, port: int = ECHO_PORT, wait: float = 3.0
) -> list[RequestOutcome]:
    """Two backends behind the VIP; each client asks "who are you", idles, and asks again on the same connection.

    Without keepalive the request after the idle finds no conntrack entry, is picked up as a new flow, DNATed
    at random and, when it lands on the other backend, answered with a RST (ECONNRESET on the client).
    """
    outcomes = [RequestOutcome(policy) for policy in policies]

    def handler(conn: socket.socket, backend: str) -> None:
        conn.settimeout(idle_for + wait + 5)
        try:
            while _read_line(conn):
                conn.sendall(backend.encode() + b"\n")
        except OSError:
            return

    server = lab.serve(port, handler, backends=2)
    socks = [lab.connect(port, keepalive=policy) for policy in policies]
    for sock, outcome in zip(socks, outcomes, strict=True):
        sock.sendall(b"who\n")
        outcome.first_backend = _read_line(sock).decode()
    time.sleep(idle_for)

    def again(sock: socket.socket, outcome: RequestOutcome) -> None:
        sock.settimeout(wait)
        try:
            sock.sendall(b"who\n")
            outcome.second_backend = _read_line(sock).decode()
        except OSError as exc:
            outcome.error = _error_text(exc)

    threads = [threading.Thread(target=again, args=pair, daemon=True) for pair in zip(socks, outcomes, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(wait + 5)
    server.stop()
    for sock in socks:
        sock.close()
    return outcomes


@dataclass
class DeadPeerOutcome:
    """One connection of `dead_peer`: how long until the client's blocked read (or its send) failed."""

    policy: Policy | None
    #: True when the client sent data after the peer died (detection then runs through TCP_USER_TIMEOUT)
    sent_after_death: bool
    #: seconds from the last data exchanged (or from the send, when sent_after_death) to the failure;
    #: None when the read was still blocked after `give_up` s
    detected_after: float | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)


def dead_peer(
    lab: Lab,
    cases: Sequence[tuple[Policy | None, bool]],
    *,
    give_up: float,
    port: int = DEAD_PEER_PORT,
) -> list[DeadPeerOutcome]:
    """Each case is (policy, send_after_death). Exchange a line, then the server namespace drops every packet.

    Each client blocks in recv(); those with send_after_death also send a line right after the peer died, so
    unacknowledged data is outstanding. Returns the time from the last exchange to the read's failure.
    The server namespace is unblocked again before returning.
    """
    outcomes = [DeadPeerOutcome(policy, send) for policy, send in cases]

    def handler(conn: socket.socket, backend: str) -> None:
        conn.settimeout(give_up + 10)
        try:
            _read_line(conn)
            conn.sendall(b"hello\n")
            _read_line(conn)
        except OSError:
            return

    server = lab.serve(port, handler, backends=1)
    socks = [lab.connect(port, keepalive=policy) for policy, _ in cases]
    last_exchange: list[float] = []
    for sock in socks:
        sock.sendall(b"hi\n")
        _read_line(sock)
        last_exchange.append(time.monotonic())

    def client(index: int, sock: socket.socket) -> None:
        outcome = outcomes[index]
        if outcome.sent_after_death:
            sock.sendall(b"anyone there?\n")
            last_exchange[index] = time.monotonic()
        sock.settimeout(give_up)
        try:
            _read_line(sock)
            outcome.notes.append("unexpected data from a dead peer")
        except OSError as exc:
            if isinstance(exc, TimeoutError) and exc.errno is None:
                return  # our own socket timeout: still blocked after give_up, the dead peer went unnoticed
            outcome.error = _error_text(exc)  # the kernel gave up: ETIMEDOUT (also a TimeoutError), EHOSTUNREACH
        outcome.detected_after = time.monotonic() - last_exchange[index]

    lab.block("server")
    try:
        threads = [threading.Thread(target=client, args=pair, daemon=True) for pair in enumerate(socks)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(give_up + 5)
    finally:
        lab.unblock("server")
    server.stop()
    for sock in socks:
        sock.close()
    return outcomes
