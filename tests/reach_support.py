"""Shared by tests/test_sweep_native.py and tests/test_run_supervisor.py: a loopback server that holds connections."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def accepting_listener() -> Iterator[tuple[str, int]]:
    """A loopback server that accepts and holds every connection, answering nothing (pymongo waits for hello)."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[:2]
    finally:
        stop.set()
        thread.join()
        server.close()
        for conn in held:
            conn.close()
