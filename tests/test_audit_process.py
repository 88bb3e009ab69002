"""Auditing another process: ``keepalive.audit(pid=...)`` and ``keepalive audit --pid PID [--json]``.

A child process holds real connections (to listeners in the test process), with and without keepalive; the CLI
runs as ``sys.executable -m keepalive``. Permission scenarios drop root in a forked child (os.setuid to nobody).
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import keepalive
import keepalive._audit._access
import keepalive._audit._sweep
from keepalive import _audit
from keepalive._cli import build_parser
from tests.helpers import LINUX

pytestmark = pytest.mark.skipif(not LINUX or not os.path.exists("/proc/self/net/tcp"), reason="needs Linux /proc")

ROOT = Path(__file__).resolve().parent.parent
NOBODY = 65534

# Connects one socket per spec to the given port; prints {"pid", "sockets": {name: {fd, local}}}; waits for EOF.
HOLDER = textwrap.dedent(
    """
    import json, os, socket, sys
    specs = json.loads(sys.argv[1])
    held, report = [], {}
    for name, spec in specs.items():
        family = socket.AF_INET6 if spec["host"] == "::1" else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        if spec.get("keepalive"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if spec.get("idle"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, spec["idle"])
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, spec["interval"])
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, spec["count"])
        sock.connect((spec["host"], spec["port"]))
        held.append(sock)
        host, port = sock.getsockname()[:2]
        local = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
        report[name] = {"fd": sock.fileno(), "local": local}
    print(json.dumps({"pid": os.getpid(), "sockets": report}), flush=True)
    sys.stdin.read()
    """
)


class Held:
    def __init__(self, proc: subprocess.Popen[str], info: dict[str, Any], accepted: list[socket.socket]) -> None:
        self.proc = proc
        self.pid: int = info["pid"]
        self.sockets: dict[str, dict[str, Any]] = info["sockets"]
        self.accepted = accepted

    def fd(self, name: str) -> int:
        return int(self.sockets[name]["fd"])


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield sock


@contextmanager
def holding(specs: dict[str, dict[str, Any]]) -> Iterator[Held]:
    """A child process (sys.executable) holding one connection per spec; the test process accepts them."""
    listeners: dict[str, socket.socket] = {}
    for spec in specs.values():
        host = spec.setdefault("host", "127.0.0.1")
        if host not in listeners:
            family = socket.AF_INET6 if host == "::1" else socket.AF_INET
            listeners[host] = socket.create_server((host, 0), family=family)
        spec["port"] = listeners[host].getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, json.dumps(specs)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    accepted: list[socket.socket] = []
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, "the holder process died"
        for sock in listeners.values():
            sock.settimeout(10)
        for spec in specs.values():
            accepted.append(listeners[spec["host"]].accept()[0])
        yield Held(proc, json.loads(line), accepted)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()
        for sock in [*accepted, *listeners.values()]:
            sock.close()


def by_fd(states: list[keepalive.SocketState], fd: int) -> keepalive.SocketState:
    matches = [s for s in states if s.fd == fd]
    assert len(matches) == 1, states
    return matches[0]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "keepalive", "audit", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


SPECS: dict[str, dict[str, Any]] = {
    "plain": {},
    "default": {"keepalive": True},
    "tuned": {"keepalive": True, "idle": 30, "interval": 5, "count": 3},
    "plain6": {"host": "::1"},
}


@pytest.fixture
def held() -> Iterator[Held]:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    with holding({name: dict(spec) for name, spec in SPECS.items()}) as h:
        yield h


def test_other_process_options_are_read_exactly(held: Held) -> None:
    """Root (or the same user) gets a duplicate through pidfd_getfd and reads every option."""
    states = keepalive.audit(pid=held.pid, path_timeout=240)
    assert {s.pid for s in states} == {held.pid}
    plain, default, tuned, plain6 = (by_fd(states, held.fd(n)) for n in ("plain", "default", "tuned", "plain6"))
    assert all(s.source == "getsockopt" for s in (plain, default, tuned, plain6))
    assert (plain.keepalive, plain.verdict) == (False, "no-keepalive")
    assert (tuned.keepalive, tuned.idle, tuned.interval, tuned.count, tuned.verdict) == (True, 30, 5, 3, "ok")
    assert default.keepalive is True
    assert default.verdict == ("too-slow" if (default.idle or 0) >= 240 else "ok")
    assert plain6.family == "ipv6"
    assert plain6.local == held.sockets["plain6"]["local"]
    assert plain.local == held.sockets["plain"]["local"]


def test_other_process_sockets_only_its_own(held: Held) -> None:
    """/proc/PID/net/tcp lists the whole network namespace; only the process's descriptors are reported."""
    states = keepalive.audit(pid=held.pid, path_timeout=240)
    ours = {s.getsockname()[1] for s in held.accepted}
    assert all(int(s.local.rsplit(":", 1)[1]) not in ours for s in states)
    assert len(states) == len(SPECS)


def test_without_pidfd_getfd_the_kernel_timer_still_tells_keepalive_on_or_off(
    held: Held, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unknown syscall number makes the real kernel answer ENOSYS: only /proc/PID/net/tcp's timer is left."""
    monkeypatch.setattr(_audit._access, "_SYS_PIDFD_GETFD", 0x7FFF)
    states = keepalive.audit(pid=held.pid, path_timeout=240)
    plain, default, tuned = (by_fd(states, held.fd(n)) for n in ("plain", "default", "tuned"))
    assert all(s.source == "timer" for s in states)
    assert all(s.idle is None and s.interval is None and s.count is None for s in states)
    assert (plain.keepalive, plain.timer, plain.verdict) == (False, "none", "no-keepalive")
    assert (default.keepalive, default.timer) == (True, "keepalive")
    assert (tuned.keepalive, tuned.timer) == (True, "keepalive")
    assert tuned.timer_remaining is not None
    assert tuned.timer_remaining <= 30
    assert tuned.verdict == "unknown"
    assert "pidfd_getfd" in tuned.reason
    if default.timer_remaining is not None and default.timer_remaining >= 240:
        assert default.verdict == "too-slow"


def test_process_that_does_not_exist_is_process_lookup_error() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    with pytest.raises(ProcessLookupError):
        keepalive.audit(pid=proc.pid)


@pytest.mark.parametrize("reap", [True, False], ids=["reaped", "zombie"])
@pytest.mark.parametrize("stage", ["_socket_fds", "_read_tables"])
def test_process_that_exits_mid_scan_is_process_lookup_error(
    held: Held, monkeypatch: pytest.MonkeyPatch, reap: bool, stage: str
) -> None:
    """Killed after its descriptors were listed (pidfd_getfd path), or before its tables are read (timer path)."""
    real = getattr(_audit._sweep, stage)

    def kill_then(proc: str, *more: Any) -> Any:
        result = real(proc) if stage == "_socket_fds" else None
        held.proc.kill()
        if reap:
            held.proc.wait()
        else:  # dead but not yet waited for: /proc/PID still exists
            os.waitid(os.P_PID, held.pid, os.WEXITED | os.WNOWAIT)
        return result if stage == "_socket_fds" else real(proc, *more)

    monkeypatch.setattr(_audit._sweep, stage, kill_then)
    if stage == "_read_tables":
        monkeypatch.setattr(_audit._access, "_SYS_PIDFD_GETFD", 0x7FFF)  # ENOSYS: fall back to the tables
    with pytest.raises(ProcessLookupError, match="exited during the audit"):
        keepalive.audit(pid=held.pid)


# ------------------------------------------------------------------------------------------------------------- CLI


def test_cli_json_lists_the_child_connections(held: Held) -> None:
    result = run_cli("--pid", str(held.pid), "--json", "--path-timeout", "240")
    assert result.returncode == 1, result.stderr  # offenders found
    document = json.loads(result.stdout)
    assert document["errors"] == []
    assert document["path_timeout"] == 240
    connections = {c["fd"]: c for c in document["connections"]}
    plain, tuned = connections[held.fd("plain")], connections[held.fd("tuned")]
    for key in ("local", "remote", "state", "keepalive", "idle", "interval", "count", "user_timeout", "verdict"):
        assert key in plain
    assert (plain["keepalive"], plain["verdict"], plain["state"]) == (False, "no-keepalive", "ESTABLISHED")
    assert plain["reason"]
    if tuned["source"] == "timer":  # the CLI is the holder's sibling: Yama (non-root) refuses pidfd_getfd
        assert yama_restricts_ptrace()
        assert (tuned["idle"], tuned["keepalive"], tuned["verdict"]) == (None, True, "unknown")
        return
    assert (tuned["idle"], tuned["interval"], tuned["count"], tuned["user_timeout"]) == (30, 5, 3, 0.0)
    assert tuned["verdict"] == "ok"


def yama_restricts_ptrace() -> bool:
    """Yama's ptrace_scope >= 1 and no root: pidfd_getfd only works on descendants."""
    yama = Path("/proc/sys/kernel/yama/ptrace_scope")
    return os.geteuid() != 0 and yama.exists() and yama.read_text().strip() != "0"


def test_cli_exits_0_when_every_connection_fits() -> None:
    with holding({"tuned": {"keepalive": True, "idle": 30, "interval": 5, "count": 3}}) as h:
        result = run_cli("--pid", str(h.pid), "--path-timeout", "240")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ESTABLISHED" in result.stdout
    assert " ok" in result.stdout


def test_cli_text_names_the_offender_and_the_fix(held: Held) -> None:
    result = run_cli("--pid", str(held.pid), "--path-timeout", "240")
    assert result.returncode == 1
    assert "VERDICT" in result.stdout
    assert f"{held.pid}/{held.fd('plain')} {held.sockets['plain']['local']}" in result.stdout
    assert "fix:" in result.stdout
    assert "Traceback" not in result.stderr


def test_cli_without_pid_audits_every_process(held: Held) -> None:
    result = run_cli("--json", "--path-timeout", "240")
    document = json.loads(result.stdout)
    assert held.pid in {c["pid"] for c in document["connections"]}
    assert os.getpid() in {c["pid"] for c in document["connections"]}  # the test process holds the listeners


def test_cli_missing_pid_is_reported_without_traceback() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    result = run_cli("--pid", str(proc.pid), "--json")
    assert result.returncode == 2
    document = json.loads(result.stdout)
    assert document["connections"] == []
    assert document["errors"][0]["pid"] == proc.pid
    assert "no such process" in document["errors"][0]["reason"]
    text = run_cli("--pid", str(proc.pid))
    assert text.returncode == 2
    assert "no such process" in text.stderr
    assert "Traceback" not in text.stderr


@pytest.mark.parametrize("bad", ["0", "-3", "abc"])
def test_cli_rejects_a_malformed_pid(bad: str) -> None:
    result = run_cli("--pid", bad)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "--pid" in result.stderr


# ----------------------------------------------------------------------------------------------------- permissions


def run_as(uid: int, func: Callable[[], int]) -> tuple[int, str]:
    """Run ``func`` in a forked child that dropped to ``uid`` (no capabilities left); its exit code and stdout."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 99
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            out = io.StringIO()
            sys.stdout = out
            code = func()
            os.write(write_end, out.getvalue().encode())
        except BaseException as exc:
            os.write(write_end, f"child failed: {exc!r}".encode())
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        output = pipe.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), output


@contextmanager
def holding_as(uid: int) -> Iterator[tuple[int, int]]:
    """A forked child running as ``uid`` that holds one connection without keepalive; yields (pid, fd)."""
    import ctypes  # before the fork: nobody may not import from root's stdlib

    libc = ctypes.CDLL(None, use_errno=True)
    listener = socket.create_server(("127.0.0.1", 0))
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.close(ready_r)
            os.close(done_w)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            libc.prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE: a set-uid child is not, a process started as uid is
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.connect(listener.getsockname())  # not create_connection: getaddrinfo imports a codec
            os.write(ready_w, str(sock.fileno()).encode())
            os.read(done_r, 1)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(done_r)
    try:
        fd = int(os.read(ready_r, 32))
        conn, _ = listener.accept()
        with conn:
            yield pid, fd
    finally:
        os.close(done_w)
        os.close(ready_r)
        os.waitpid(pid, 0)
        listener.close()


needs_root = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to drop to nobody")


@needs_root
def test_permission_denied_is_reported_with_exit_2(held: Held) -> None:
    """nobody may not read root's /proc/PID/fd: the CLI says so (JSON and text) instead of crashing."""
    parser = build_parser()  # imports every module now: nobody may not read root's stdlib under /root
    keepalive.audit(pid=held.pid)  # ... including what the audit of another process loads on first use

    def cli() -> int:
        args = parser.parse_args(["audit", "--pid", str(held.pid), "--json"])
        return int(args._run(args))

    code, output = run_as(NOBODY, cli)
    assert code == 2, output
    document = json.loads(output)
    assert document["connections"] == []
    assert "CAP_SYS_PTRACE" in document["errors"][0]["reason"]

    def api() -> int:
        try:
            keepalive.audit(pid=held.pid)
        except PermissionError as exc:
            print(exc.strerror)
            return 3
        return 0

    code, output = run_as(NOBODY, api)
    assert code == 3, output
    assert f"process {held.pid}" in output


@needs_root
def test_same_unprivileged_user_reads_exact_options() -> None:
    """nobody auditing nobody's process: pidfd_getfd is permitted (no Yama here), so options are exact."""
    with holding_as(NOBODY) as (pid, fd):

        def api() -> int:
            states = keepalive.audit(pid=pid, path_timeout=240)
            print(json.dumps([s.to_dict() for s in states]))
            return 0

        code, output = run_as(NOBODY, api)
        assert code == 0, output
        state = next(s for s in json.loads(output) if s["fd"] == fd)
        yama = Path("/proc/sys/kernel/yama/ptrace_scope")
        if yama.exists() and yama.read_text().strip() != "0":  # Yama refuses pidfd_getfd to a sibling
            assert state["source"] == "timer"
            assert "pidfd_getfd" in state["reason"]
        else:
            assert state["source"] == "getsockopt"
            assert state["idle"] is not None
        assert (state["keepalive"], state["verdict"]) == (False, "no-keepalive")


@needs_root
def test_root_reads_another_users_process() -> None:
    with holding_as(NOBODY) as (pid, fd):
        state = by_fd(keepalive.audit(pid=pid, path_timeout=240), fd)
    assert state.source == "getsockopt"
    assert state.verdict == "no-keepalive"
