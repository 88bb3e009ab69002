"""Shared pieces of the enforce tests: a private BPF filesystem, a fresh cgroup, processes started inside it, and
reading a socket's keepalive options from outside its process (pidfd_getfd)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from keepalive._enforce import ENV_BPFFS, PIN_ROOT, _unpin, mounts, remove_enforcement

#: What a socket carries, read with getsockopt: the fields every check compares.
FIELDS = ("keepalive", "idle", "interval", "count", "user_timeout")

#: A Python client: opens N connections (in THREADS threads at once), optionally setting its own options first,
#: and prints the options of each connected socket as JSON. argv: host port n own-options-json threads
PY_CLIENT = r"""
import json, socket, sys, threading
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
own = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
threads = int(sys.argv[5]) if len(sys.argv) > 5 else 1
NAMES = {"keepalive": (socket.SOL_SOCKET, socket.SO_KEEPALIVE), "idle": (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
         "interval": (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL), "count": (socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
         "user_timeout": (socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT)}
socks, lock = [], threading.Lock()
def connect(count):
    for _ in range(count):
        s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        for name, value in own.items():
            s.setsockopt(*NAMES[name], value)
        s.connect((host, port))
        with lock:
            socks.append(s)
workers = [threading.Thread(target=connect, args=(n // threads,)) for _ in range(threads)]
for w in workers: w.start()
for w in workers: w.join()
print(json.dumps([{name: s.getsockopt(*NAMES[name]) for name in NAMES} for s in socks]))
"""


def read_options(sock: socket.socket) -> dict[str, int]:
    """The keepalive options of ``sock`` as the ``FIELDS`` dict."""
    return {
        "keepalive": sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        "idle": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
        "interval": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
        "count": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
        "user_timeout": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
    }


def expected(idle: int, interval: int, count: int, user_timeout_ms: int) -> dict[str, int]:
    """The options a socket reads back after the program set this policy."""
    return {"keepalive": 1, "idle": idle, "interval": interval, "count": count, "user_timeout": user_timeout_ms}


def untouched() -> dict[str, int]:
    """A fresh Linux socket's options in this network namespace (keepalive off, the sysctl defaults)."""
    with socket.socket() as sock:
        return read_options(sock)


def unavailable_reason() -> str | None:
    """Why enforcement cannot be tested here, or None."""
    if sys.platform != "linux":
        return "Linux only"
    if os.geteuid() != 0:
        return "needs root (CAP_BPF, CAP_NET_ADMIN, mount)"
    if not mounts("cgroup2"):
        return "no cgroup v2 mounted"
    if shutil.which("mount") is None or shutil.which("umount") is None:
        return "mount/umount missing"
    return None


def require_enforce() -> None:
    """Skip without root/cgroup v2; fail instead under KEEPALIVE_REQUIRE_LAB=1 (CI runs as root)."""
    reason = unavailable_reason()
    if reason is None:
        return
    if os.environ.get("KEEPALIVE_REQUIRE_LAB", "") not in ("", "0"):
        pytest.fail(f"enforce tests unavailable: {reason} (KEEPALIVE_REQUIRE_LAB=1)")
    pytest.skip(f"enforce tests unavailable: {reason}")


@contextlib.contextmanager
def private_bpffs() -> Iterator[str]:
    """A BPF filesystem mounted on a temporary directory; unmounting it drops every pin (and so every link)."""
    path = tempfile.mkdtemp(prefix="keepalive-bpffs-")
    try:
        subprocess.run(["mount", "-t", "bpf", "bpf", path], check=True)
        try:
            yield path
        finally:
            root = os.path.join(path, PIN_ROOT)
            for name in os.listdir(root) if os.path.isdir(root) else []:
                _unpin(os.path.join(root, name))
            subprocess.run(["umount", path], check=False)
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(path)


def pins(bpffs: str) -> list[str]:
    """The enforcement pin directories under ``bpffs``."""
    root = os.path.join(bpffs, PIN_ROOT)
    return sorted(os.listdir(root)) if os.path.isdir(root) else []


@contextlib.contextmanager
def fresh_cgroup(bpffs: str) -> Iterator[str]:
    """A new cgroup v2 directory; at the end enforcement is removed, the processes of it and of any cgroup a test
    made below it are moved out and killed, and the directories are removed, even on failure."""
    root = mounts("cgroup2")[0]
    path = os.path.join(root, f"keepalive-test-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    os.mkdir(path)
    try:
        yield path
    finally:
        old = os.environ.get(ENV_BPFFS)
        os.environ[ENV_BPFFS] = bpffs
        try:
            remove_enforcement(path)
        finally:
            if old is None:
                os.environ.pop(ENV_BPFFS, None)
            else:
                os.environ[ENV_BPFFS] = old
        for _ in range(100):
            for directory, _dirs, _files in os.walk(path, topdown=False):
                _empty(root, directory)
                with contextlib.suppress(OSError):
                    os.rmdir(directory)
            if not os.path.exists(path):
                break
            time.sleep(0.05)


def _empty(root: str, directory: str) -> None:
    """Move the processes of cgroup ``directory`` back to ``root`` and kill them (they are the test's children)."""
    try:
        with open(os.path.join(directory, "cgroup.procs"), encoding="ascii") as handle:
            pids = [int(line) for line in handle if line.strip()]
    except OSError:
        return
    for pid in pids:
        with (
            contextlib.suppress(OSError),
            open(os.path.join(root, "cgroup.procs"), "w", encoding="ascii") as out,
        ):
            out.write(str(pid))
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def spawn(cgroup: str, argv: list[str], **kwargs: Any) -> subprocess.Popen[str]:
    """Start ``argv`` inside ``cgroup`` (a shell moves itself in, then execs the program)."""
    return subprocess.Popen(
        ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', cgroup, *argv], text=True, **kwargs
    )


def python_client(
    cgroup: str, host: str, port: int, n: int = 1, own: dict[str, int] | None = None, threads: int = 1
) -> list[dict[str, int]]:
    """Run PY_CLIENT in ``cgroup``; the options of each of its connections."""
    argv = [sys.executable, "-c", PY_CLIENT, host, str(port), str(n), json.dumps(own or {}), str(threads)]
    with spawn(cgroup, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    result: list[dict[str, int]] = json.loads(out)
    return result


def remote_socket_options(pid: int, match: Callable[[socket.socket], bool], *, within: float = 20.0) -> dict[str, int]:
    """The options of the socket of process ``pid`` that ``match`` picks, read from here with pidfd_getfd."""
    from keepalive._audit._access import _Getfd

    deadline = time.monotonic() + within
    while True:
        getfd = _Getfd(pid)
        try:
            assert getfd.error is None, getfd.error
            for name in os.listdir(f"/proc/{pid}/fd"):
                try:
                    if not os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
                        continue
                except OSError:
                    continue
                dup = getfd.get(int(name))
                if dup is None:
                    continue
                with socket.socket(fileno=dup) as sock:
                    if sock.type == socket.SOCK_STREAM and match(sock):
                        return read_options(sock)
        finally:
            getfd.close()
        if time.monotonic() > deadline:
            raise AssertionError(f"process {pid} has no matching socket")
        time.sleep(0.05)


def peer_is(address: tuple[str, int]) -> Callable[[socket.socket], bool]:
    """A ``match`` for remote_socket_options: the socket connected to ``address``."""

    def match(sock: socket.socket) -> bool:
        try:
            return tuple(sock.getpeername()[:2]) == address
        except OSError:
            return False

    return match
