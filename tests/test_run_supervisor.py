"""``keepalive run -- PROGRAM`` as a supervisor: it reaches the TCP connections of programs in any language (psql,
a Python started with -S so that no start-up hook runs) with pidfd_getfd, tighten-only; it stays the parent,
forwards signals, keeps orphaned grandchildren in its tree, and exits with the child's status. Options are read
back from the test process with pidfd_getfd (keepalive.audit(pid=...))."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from keepalive import Policy
from keepalive._supervisor import descendants
from tests.helpers import LINUX, environ_without_keepalive, expected_options, require_service
from tests.reach_support import accepting_listener
from tests.test_sweep_native import connections

pytestmark = pytest.mark.skipif(not LINUX or not os.path.exists("/proc/self/net/tcp"), reason="needs Linux /proc")

ROOT = Path(__file__).resolve().parent.parent
CHILD = str(Path(__file__).resolve().parent / "reach_child.py")
POLICY = Policy(idle=60, interval=10, count=5)
POSTGRES = ("127.0.0.1", 5432)
NOBODY = 65534


def env(**extra: str) -> dict[str, str]:
    clean = environ_without_keepalive()
    clean.update(KEEPALIVE_CHECK="0", KEEPALIVE_SWEEP="0.1")
    clean.update(extra)
    return clean


def keepalive_run(*args: str) -> list[str]:
    return [sys.executable, "-m", "keepalive", "run", *args]


def wait_for(predicate: Callable[[], object], limit: float = 30) -> object:
    deadline = time.monotonic() + limit
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def descendant_named(root: int, name: str) -> int | None:
    for pid in descendants(root):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == name:
                return pid
        except OSError:
            continue
    return None


def eventually_within(pid: int, port: int, want: dict[str, int]) -> list[dict[str, int]]:
    got: list[dict[str, int]] = []

    def read() -> bool:
        nonlocal got
        got = connections(pid, port)
        return bool(got) and all(g == want for g in got)

    wait_for(read)
    return got


@pytest.fixture
def listener() -> Iterator[tuple[str, int]]:
    """A loopback server that accepts and holds every connection."""
    with accepting_listener() as address:
        yield address


def test_psql_under_keepalive_run_gets_the_policy() -> None:
    """psql (libpq, C) under keepalive run: its 7200/75/9 connection becomes 60/10/5 with a user timeout; exit 0."""
    require_service("postgresql", *POSTGRES)
    argv = keepalive_run("--policy", "60,10,5", "--", "psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test")
    argv += ["-X", "-q", "-c", "select pg_sleep(6)"]
    with subprocess.Popen(argv, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        psql = wait_for(lambda: descendant_named(proc.pid, "psql"))
        assert isinstance(psql, int), "psql did not start"
        got = eventually_within(psql, POSTGRES[1], expected_options(POLICY))
        _, err = proc.communicate(timeout=60)
    assert got == [expected_options(POLICY)], err
    assert proc.returncode == 0, err
    assert err == ""


@pytest.mark.parametrize("program", ["curl", "node"])
def test_curl_and_node_under_keepalive_run_get_the_policy(listener: tuple[str, int], program: str) -> None:
    """Two more languages from Debian's packages: curl (its own 60/60/9 keepalive) and Node (keepalive off unless
    the script calls setKeepAlive) both end at exactly 60/10/5 with the user timeout; both keep running."""
    if shutil.which(program) is None:
        pytest.skip(f"{program} is not installed (.ci/run installs it)")
    host, port = listener
    if program == "curl":
        command = ["curl", "-s", "-m", "60", f"http://{host}:{port}/"]  # the server never answers: curl waits
    else:
        script = f"require('net').connect({port}, '{host}', () => console.log('ready')); setTimeout(() => {{}}, 60000)"
        command = ["node", "-e", script]
    with subprocess.Popen(keepalive_run("--policy", "60,10,5", "--", *command), env=env()) as proc:
        try:
            holder = wait_for(lambda: descendant_named(proc.pid, program))
            assert isinstance(holder, int), f"{program} did not start"
            got = eventually_within(holder, port, expected_options(POLICY))
            assert got == [expected_options(POLICY)]
            assert proc.poll() is None
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM


@pytest.mark.parametrize(
    ("client", "want"),
    [
        ("own-120-10-9", expected_options(POLICY)),
        ("own-30-5-3", {"keepalive": 1, "idle": 30, "interval": 5, "count": 3, "user_timeout_ms": 110_000}),
        ("plain", expected_options(POLICY)),
    ],
    ids=["looser-brought-down", "tighter-kept", "off-switched-on"],
)
def test_a_program_without_the_hook_is_tightened_never_loosened(
    listener: tuple[str, int], client: str, want: dict[str, int]
) -> None:
    """python -S (no start-up hook, like any non-Python program): the supervisor alone reaches its connection."""
    argv = keepalive_run("--policy", "60,10,5", "--", sys.executable, "-S", CHILD, client, *map(str, listener))
    with subprocess.Popen(argv, env=env(), cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        assert proc.stdin is not None
        assert proc.stdout.readline().strip() == "ready"
        holder = descendants(proc.pid)[0]
        got = eventually_within(holder, listener[1], want)
        proc.stdin.close()
        proc.wait(timeout=30)
    assert got == [want]
    assert proc.returncode == 0


def test_verbose_lists_what_it_reached(listener: tuple[str, int]) -> None:
    """-v: one line per connection reached, with the values before and after."""
    argv = keepalive_run("-v", "--policy", "60,10,5", "--", sys.executable, "-S", CHILD, "own-120-10-9")
    argv += [*map(str, listener)]
    with subprocess.Popen(
        argv, env=env(), cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdin is not None
        assert proc.stdout.readline().strip() == "ready"
        holder = descendants(proc.pid)[0]
        eventually_within(holder, listener[1], expected_options(POLICY))
        _, err = proc.communicate(timeout=30)
    assert f"keepalive run: reached process {holder} (python" in err
    assert f"-> 127.0.0.1:{listener[1]}: keepalive 120/10/9 -> 60/10/5, user timeout 110 s" in err


def test_an_orphaned_grandchild_stays_in_the_tree_and_is_reached(listener: tuple[str, int], tmp_path: Path) -> None:
    """The child's child is orphaned at once (its parent exits): as a subreaper keepalive run adopts and sweeps it."""
    log = tmp_path / "holder.err"
    holder_cmd = f"sleep 60 | {sys.executable} -S {CHILD} plain {listener[0]} {listener[1]} > /dev/null 2> {log} &"
    script = f"({holder_cmd}) ; sleep 30"
    with subprocess.Popen(keepalive_run("--policy", "60,10,5", "--", "sh", "-c", script), env=env()) as proc:
        try:
            holder = wait_for(lambda: descendant_named(proc.pid, "python3") or descendant_named(proc.pid, "python"))
            assert isinstance(holder, int)
            parent = int(Path(f"/proc/{holder}/stat").read_text().rpartition(")")[2].split()[1])
            assert parent == proc.pid
            try:
                got = eventually_within(holder, listener[1], expected_options(POLICY))
            except ProcessLookupError:
                pytest.fail(f"the orphaned holder exited; its stderr: {log.read_text()!r}")
            assert got == [expected_options(POLICY)]
        finally:
            for pid in descendants(proc.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.wait(timeout=30)


HANDLES_TERM = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, lambda *a: sys.exit(42))\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)\n"
    "sys.exit(1)\n"
)


@pytest.mark.parametrize(
    ("program", "status"),
    [([sys.executable, "-S", "-c", HANDLES_TERM], 42), (["sh", "-c", "echo ready; exec sleep 60"], 128 + 15)],
    ids=["handled-exit-42", "killed-143"],
)
@pytest.mark.parametrize("auto", ["0", "1"], ids=["plain", "supervisor-itself-under-KEEPALIVE_AUTO"])
def test_sigterm_reaches_the_child_and_its_status_comes_back(program: list[str], status: int, auto: str) -> None:
    """SIGTERM to keepalive run is forwarded; the exit status is the child's, or 128+15 when it was killed. Also
    when keepalive run's own interpreter has the sweep thread running (KEEPALIVE_AUTO=1 inherited): that thread
    blocks signals, so they still reach the forwarding loop instead of killing the supervisor."""
    environ = env(KEEPALIVE_AUTO=auto, KEEPALIVE_SWEEP="0.05")
    with subprocess.Popen(keepalive_run("--", *program), env=environ, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == status


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["--", "sh", "-c", "exit 7"], 7, ""),
        (["--", "no-such-program-anywhere"], 127, "command not found: no-such-program-anywhere"),
        (["--", "/etc/hostname"], 126, "cannot run /etc/hostname"),
        (["--policy", "sixty", "--", "true"], 2, "policy 'sixty'"),
        ([], 2, "no command given"),
    ],
    ids=["child-status", "not-found-127", "not-executable-126", "bad-policy-2", "no-command-2"],
)
def test_exit_statuses_and_messages(argv: list[str], status: int, message: str) -> None:
    """A shell's conventions: the child's status, 127 not found, 126 not executable; 2 for bad usage."""
    proc = subprocess.run(keepalive_run(*argv), env=env(), capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == status, proc.stderr
    if message:
        assert message in proc.stderr
    else:
        assert proc.stderr == ""


def test_a_broken_keepalive_sweep_value_is_a_usage_error() -> None:
    """KEEPALIVE_SWEEP=soon: exit 2 naming the variable; the program does not run."""
    proc = subprocess.run(
        keepalive_run("--", "sh", "-c", "echo ran"),
        env=env(KEEPALIVE_SWEEP="soon"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "KEEPALIVE_SWEEP='soon'" in proc.stderr
    assert proc.stdout == ""


def test_processes_and_connections_that_vanish_mid_sweep_make_no_noise(listener: tuple[str, int]) -> None:
    """Many short-lived descendants that connect and exit while rounds run every 10 ms: nothing on stderr."""
    one = f"{sys.executable} -S {CHILD} plain {listener[0]} {listener[1]} < /dev/null > /dev/null"
    script = f"for i in 1 2 3 4 5 6 7 8 9 10 11 12; do {one}; done"
    proc = subprocess.run(
        keepalive_run("--", "sh", "-c", script),
        env=env(KEEPALIVE_SWEEP="0.01"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0
    assert proc.stderr == ""


def test_a_process_that_forbids_pidfd_getfd_is_named_once_on_stderr(tmp_path: Path) -> None:
    """keepalive run without CAP_SYS_PTRACE; the child makes itself non-dumpable (like ssh), so pidfd_getfd is
    refused: one line names the process and what to do; the child still runs and its status comes back."""
    if os.geteuid() != 0:
        pytest.skip("needs root to drop CAP_SYS_PTRACE with setpriv")
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    thread = threading.Thread(target=lambda: accepted.append(server.accept()[0]), daemon=True)
    thread.start()
    program = (
        "import ctypes, socket, time\n"
        "ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)\n"  # PR_SET_DUMPABLE 0
        f"s = socket.create_connection(('127.0.0.1', {server.getsockname()[1]}))\n"
        "time.sleep(1.5)\n"
    )
    script = tmp_path / "undumpable.py"
    script.write_text(program)
    script.chmod(0o644)
    tmp_path.chmod(0o755)
    argv = ["setpriv", "--bounding-set=-sys_ptrace", "--inh-caps=-sys_ptrace", *keepalive_run("--")]
    argv += [sys.executable, "-S", str(script)]
    try:
        proc = subprocess.run(argv, env=env(), capture_output=True, text=True, timeout=60, check=False, cwd="/")
    finally:
        thread.join(5)
        server.close()
        for conn in accepted:
            conn.close()
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "cannot reach" in line]
    assert len(lines) == 1, proc.stderr
    assert "not dumpable" in lines[0]
    assert "CAP_SYS_PTRACE" in lines[0]


def test_without_pidfd_support_it_says_so_once_and_still_runs_the_program() -> None:
    """No os.pidfd_open (an old Python or kernel): one line says non-Python programs are not reached; the program
    runs under supervision and its status comes back."""
    code = (
        "import os, sys; del os.pidfd_open\n"
        "from keepalive._cli import main\n"
        "sys.exit(main(['run', '--', 'sh', '-c', 'exit 3']))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env(), capture_output=True, text=True, timeout=60, check=False, cwd=ROOT
    )
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.splitlines() == [
        "keepalive run: this Python has no os.pidfd_open: the connections of non-Python programs are not reached; "
        "Python ones still are"
    ]


def test_a_failing_sweep_round_is_reported_once_and_supervision_goes_on() -> None:
    """A bug in the sweep must not cost the child its parent: one line, then the child's status as usual."""
    code = (
        "import sys, keepalive._supervisor as s\n"
        "def boom(*a, **k): raise RuntimeError('boom')\n"
        "s.tighten_round = boom\n"
        "from keepalive._cli import main\n"
        "sys.exit(main(['run', '--', 'sh', '-c', 'sleep 0.5; exit 4']))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=env(KEEPALIVE_SWEEP="0.05"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == 4, proc.stderr
    assert proc.stderr.splitlines() == [
        "keepalive run: a sweep round failed (RuntimeError: boom); supervision continues"
    ]
