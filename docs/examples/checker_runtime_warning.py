"""The runtime check: the first connection a process makes with a policy has that policy checked once, in a
background thread, and what does not fit is logged on logger ``keepalive.check`` (numbers in the message and in
``extra``). KEEPALIVE_CHECK=0 turns it off.

Here the environment says the path has an Azure load balancer (240 s) but asks for a 300 s idle: one error.
"""

import logging
import os
import socket
import threading

os.environ["KEEPALIVE_MIDDLEBOX"] = "azure-lb"
os.environ["KEEPALIVE_IDLE"] = "300"

import keepalive

records: list[logging.LogRecord] = []
logged = threading.Event()


class Collect(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        records.append(record)
        logged.set()


logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
logging.getLogger("keepalive.check").addHandler(Collect())

with socket.create_server(("127.0.0.1", 0)) as server:
    for _ in range(3):  # three connections, one check
        with keepalive.create_connection(server.getsockname(), timeout=5):
            server.accept()[0].close()

assert logged.wait(30)  # the check runs in a background thread: the connections did not wait for it
codes = [getattr(record, "keepalive_code", None) for record in records]
print("logged:", codes)
error = next(r for r in records if getattr(r, "keepalive_code", None) == "policy-idle-exceeds-path-timeout")
print("extra:", {k: v for k, v in vars(error).items() if k.startswith("keepalive_") and k != "keepalive_fix"})
assert codes.count("policy-idle-exceeds-path-timeout") == 1
