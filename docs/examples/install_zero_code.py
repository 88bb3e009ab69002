"""Zero-code activation: `keepalive run -- python app.py` and KEEPALIVE_AUTO=1 for a program that never imports
keepalive."""

import os
import socket
import subprocess
import sys

# The "application": plain stdlib code that knows nothing about keepalive.
APP = """
import socket, sys
with socket.create_connection(("127.0.0.1", int(sys.argv[1]))) as sock:
    on = sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
    idle = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) if hasattr(socket, "TCP_KEEPIDLE") else "?"
    print(f"keepalive={on} idle={idle}")
"""

server = socket.create_server(("127.0.0.1", 0))
port = str(server.getsockname()[1])
env = {k: v for k, v in os.environ.items() if not k.startswith("KEEPALIVE_")}


def run(argv: list[str], **extra_env: str) -> str:
    done = subprocess.run(argv, env={**env, **extra_env}, capture_output=True, text=True, check=True)
    return done.stdout.strip()


app = [sys.executable, "-c", APP, port]
print("plain:                      ", run(app))
# Like opentelemetry-instrument: the command sets KEEPALIVE_AUTO=1 and the policy, then execs the program.
print("keepalive run --policy ...: ", run([sys.executable, "-m", "keepalive", "run", "--policy", "45,9,5", "--", *app]))
# What a Kubernetes Deployment would set in the container's env.
print("KEEPALIVE_AUTO=1:           ", run(app, KEEPALIVE_AUTO="1", KEEPALIVE_PATH_TIMEOUT="350"))
# A broken setting: one error line on stderr, the program still runs (with the built-in policy).
broken = subprocess.run(
    app, env={**env, "KEEPALIVE_AUTO": "1", "KEEPALIVE_IDLE": "1m"}, capture_output=True, text=True, check=True
)
print("KEEPALIVE_IDLE=1m:          ", broken.stdout.strip(), "| stderr:", broken.stderr.strip())
server.close()
