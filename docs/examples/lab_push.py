"""requires: root -- the lab in a dozen lines: a server push after the conntrack entry expired, with and without
keepalive (Linux, network namespaces; everything is deleted at the end)."""

import socket

import keepalive
from keepalive.lab import Lab, scenarios

with Lab(conntrack_timeout=2) as lab:  # client ns -> node ns (DNAT, conntrack 2 s) -> server ns
    policy = keepalive.Policy.below(3)  # idle 1 s, interval 1 s: below the node's 2 s

    # Your own server and client: a listener per backend in the server ns, sockets made in the client ns.
    def hello(conn: socket.socket, backend: str) -> None:
        conn.sendall(f"hello from {backend}\n".encode())

    lab.serve(9000, hello, backends=2)  # also DNATs 203.0.113.10:9000 to both backends at random
    sock = lab.connect(9000, keepalive=policy)  # keepalive.create_connection(..., policy=policy) in the client ns
    print(sock.recv(100).decode().strip())

    # A ready-made scenario: idle for 4 s (twice the conntrack timeout), then the server pushes.
    without, with_ = scenarios.server_push(lab, [None, policy], idle_for=4)
    print("without keepalive:", "arrived" if without.received else "lost", "| server:", without.server_error)
    print(f"with {policy}:", "arrived" if with_.received else "lost")
    print("conntrack counters in the node namespace:", lab.conntrack_stats()["invalid"], "invalid")
    assert not without.received
    assert with_.received
