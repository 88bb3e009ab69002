"""Audit another process: keepalive.audit(pid=...) and `keepalive audit --pid PID --json`."""

import json
import socket
import subprocess
import sys

import keepalive

HOLDER = """
import socket, sys
sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])))  # no keepalive
print(sock.fileno(), flush=True)
sys.stdin.read()
"""

with socket.create_server(("127.0.0.1", 0)) as listener:
    port = listener.getsockname()[1]
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    peer, _ = listener.accept()
    try:
        fd = int(child.stdout.readline())

        # The API: exact options where pidfd_getfd is permitted (same user with ptrace access, or root),
        # else source == "timer": only whether the kernel runs a keepalive timer for the socket.
        (state,) = [s for s in keepalive.audit(pid=child.pid, path_timeout=240) if s.fd == fd]
        print(state.local, "->", state.remote, state.verdict, f"(source: {state.source})")
        assert state.verdict == "no-keepalive"

        # The command: exit status 1 because an established connection lacks keepalive.
        result = subprocess.run(
            [sys.executable, "-m", "keepalive", "audit", "--pid", str(child.pid), "--json", "--path-timeout", "240"],
            capture_output=True,
            text=True,
            check=False,
        )
        document = json.loads(result.stdout)
        print("exit status", result.returncode, json.dumps(document["connections"][0], indent=2))
        assert result.returncode == 1
    finally:
        child.stdin.close()
        child.wait()
        child.stdout.close()
        peer.close()
