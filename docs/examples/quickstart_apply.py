"""Quickstart: turn on keepalive for a socket that something else created."""

import socket

import keepalive

policy = keepalive.Policy.below(350)  # the path forgets idle connections after 350 s (AWS NAT Gateway)

with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
    applied = keepalive.apply(sock, policy)  # never raises; the result says what happened
    print("set:", ", ".join(applied.set))
    print("not available on this platform:", ", ".join(applied.unsupported) or "nothing")
    assert applied.ok, applied

# Not a TCP socket: nothing is set, nothing is raised, and the result says why.
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
    skipped = keepalive.apply(udp, policy)
    print("UDP socket:", skipped.skipped)
    assert not skipped.ok

# strict=True turns a skip or a failure into keepalive.KeepaliveError, for code that must not go without.
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
    try:
        keepalive.apply(udp, policy, strict=True)
    except keepalive.KeepaliveError as exc:
        print("strict:", exc)
    else:
        raise AssertionError("strict apply() on a UDP socket should raise")
