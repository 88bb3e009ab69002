"""A daemon thread that warns once about each connection without (or with too slow) keepalive."""

import logging
import socket

import keepalive

logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

with socket.create_server(("127.0.0.1", 0)) as listener:
    # In a service: keepalive.audit_in_background() once at start-up (every 300 s; loopback peers are skipped).
    # Here the peer is on loopback, so loopback=True; audit_now() runs a round at once instead of waiting.
    with keepalive.audit_in_background(interval=300, path_timeout=240, loopback=True) as audit:
        sdk_connection = socket.create_connection(listener.getsockname())  # opened behind our back
        peer, _ = listener.accept()
        audit.audit_now()  # logs one WARNING for each end of the connection
        audit.audit_now()  # ... and nothing new: each connection is reported once
    print("audit running:", audit.running)

    # fix=True also applies the policy to offenders (read docs/audit.md about the risks first).
    policy = keepalive.Policy(idle=60, interval=10, count=5, user_timeout=None)
    with keepalive.audit_in_background(policy=policy, fix=True, path_timeout=240, loopback=True) as audit:
        audit.audit_now()
    idle = sdk_connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE)
    print("after fix=True the SDK's socket has TCP_KEEPIDLE", idle)
    assert idle == 60

    sdk_connection.close()
    peer.close()
