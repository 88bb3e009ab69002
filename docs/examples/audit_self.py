"""Audit this process: which TCP connections lack keepalive, or have it too slow for the path."""

import socket

import keepalive

with socket.create_server(("127.0.0.1", 0)) as listener:
    bare = socket.create_connection(listener.getsockname())  # what a third-party SDK might open
    tuned = keepalive.create_connection(listener.getsockname())  # keepalive below the path timeout
    peers = [listener.accept()[0], listener.accept()[0]]

    # path_timeout: the path's idle timeout; without it the one the checker detects is used (or the policy).
    states = keepalive.audit(path_timeout=240)
    for state in states:
        print(f"fd {state.fd:3} {state.state:12} {state.local:>21} -> {state.remote:21} {state.verdict}")
        if state.offending:
            print(f"        {state.reason}")

    by_fd = {state.fd: state for state in states}
    assert by_fd[bare.fileno()].verdict == "no-keepalive"
    assert by_fd[tuned.fileno()].verdict == "ok"
    assert by_fd[tuned.fileno()].idle == keepalive.default_policy().idle

    for sock in (bare, tuned, *peers):
        sock.close()
