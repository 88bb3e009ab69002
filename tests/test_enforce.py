"""keepalive enforce on this kernel: a real cgroup, the real sock_ops program, processes in several languages.

Every test runs in a fresh cgroup v2 directory and pins in a private BPF filesystem (unmounted at the end, which
also releases any link the test left); values are read back inside the child (Python) or from outside the
process with pidfd_getfd (node, psql).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import keepalive
from keepalive import Policy
from keepalive._enforce import ENV_BPFFS, _program, mounts
from tests.enforce_support import (
    expected,
    fresh_cgroup,
    peer_is,
    pins,
    private_bpffs,
    python_client,
    remote_socket_options,
    require_enforce,
    spawn,
    untouched,
)
from tests.helpers import require_service

POLICY = Policy(idle=37, interval=7, count=3)  # user_timeout 58 s
ENFORCED = expected(37, 7, 3, 58000)


@pytest.fixture(scope="module")
def bpffs() -> Iterator[str]:
    require_enforce()
    with private_bpffs() as path:
        yield path


@pytest.fixture
def cgroup(bpffs: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv(ENV_BPFFS, bpffs)
    with fresh_cgroup(bpffs) as path:
        yield path


@pytest.fixture
def server() -> Iterator[socket.socket]:
    """A listener outside the cgroup (its accepted sockets are not enforced)."""
    with socket.create_server(("127.0.0.1", 0), backlog=512) as listener:
        yield listener


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "keepalive", "enforce", *args],
        capture_output=True,
        text=True,
        env=env or dict(os.environ),
        timeout=60,
        check=False,
    )


def test_a_python_client_in_the_cgroup_gets_the_policy_on_connect(cgroup: str, server: socket.socket) -> None:
    """ACTIVE_ESTABLISHED: a connection made in the cgroup carries the policy; the server's side (outside) not."""
    keepalive.enforce(cgroup, POLICY)
    [options] = python_client(cgroup, "127.0.0.1", server.getsockname()[1])
    assert options == ENFORCED
    accepted, _ = server.accept()
    with accepted:
        assert accepted.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0


def test_a_node_server_in_the_cgroup_gets_the_policy_on_accepted_connections(cgroup: str) -> None:
    """PASSIVE_ESTABLISHED: an accepted connection of a Node.js server in the cgroup, read from outside."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    keepalive.enforce(cgroup, POLICY)
    script = (
        "const net = require('net'); const conns = [];"
        "const s = net.createServer((c) => conns.push(c));"
        "s.listen(0, '127.0.0.1', () => console.log(s.address().port));"
    )
    with spawn(cgroup, ["node", "-e", script], stdout=subprocess.PIPE) as proc:
        try:
            assert proc.stdout is not None
            port = int(proc.stdout.readline())
            with socket.create_connection(("127.0.0.1", port)) as client:
                options = remote_socket_options(proc.pid, peer_is(client.getsockname()[:2]))
                assert options == ENFORCED
                assert client.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0  # this side is outside
        finally:
            proc.kill()


def test_a_node_client_in_the_cgroup_gets_the_policy(cgroup: str, server: socket.socket) -> None:
    """Node sets no keepalive by default: the program switches it on with the policy's values."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    keepalive.enforce(cgroup, POLICY)
    port = server.getsockname()[1]
    script = f"require('net').connect({port}, '127.0.0.1', () => console.log('up'));"
    with spawn(cgroup, ["node", "-e", script], stdout=subprocess.DEVNULL) as proc:
        try:
            assert remote_socket_options(proc.pid, peer_is(("127.0.0.1", port))) == ENFORCED
        finally:
            proc.kill()


@pytest.mark.services
def test_psql_a_c_client_in_the_cgroup_gets_the_policy(cgroup: str) -> None:
    """libpq turns SO_KEEPALIVE on with the kernel's 7200/75/9: the program tightens them to the policy."""
    require_service("postgresql", "127.0.0.1", 5432)
    if shutil.which("psql") is None:
        pytest.skip("psql is not installed")
    keepalive.enforce(cgroup, POLICY)
    argv = ["psql", "-X", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "test"]
    with spawn(cgroup, argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL) as proc:
        try:
            assert remote_socket_options(proc.pid, peer_is(("127.0.0.1", 5432))) == ENFORCED
        finally:
            proc.kill()


def test_a_client_with_tighter_values_of_its_own_keeps_them(cgroup: str, server: socket.socket) -> None:
    """Tighten-only: idle 5 and count 2 stay, interval 20 comes down to 7, a user timeout of its own stays."""
    keepalive.enforce(cgroup, POLICY)
    port = server.getsockname()[1]
    [mixed] = python_client(cgroup, "127.0.0.1", port, own={"idle": 5, "interval": 20, "count": 2})
    assert mixed == expected(5, 7, 2, 58000)
    own = {"keepalive": 1, "idle": 5, "interval": 2, "count": 2, "user_timeout": 1234}
    [tight] = python_client(cgroup, "127.0.0.1", port, own=own)
    assert tight == own
    status = {e.cgroup: e for e in keepalive.enforcement_status()}[cgroup]
    assert (status.seen, status.tightened, status.within) == (2, 1, 1)
    assert status.mode == "tighten-only"
    assert status.set_outright == 0


def test_status_counts_connections_in_the_cgroup(cgroup: str, server: socket.socket, bpffs: str) -> None:
    """`keepalive enforce --status --json` reports the policy and the program's counters."""
    assert cli("--cgroup", cgroup, "--policy", "37,7,3").returncode == 0
    python_client(cgroup, "127.0.0.1", server.getsockname()[1], n=3)
    result = cli("--status", "--json")
    assert result.returncode == 0, result.stderr
    [entry] = [e for e in json.loads(result.stdout) if e["cgroup"] == cgroup]
    assert entry["policy"] == {"idle": 37, "interval": 7, "count": 3, "user_timeout": 58.0}
    assert (entry["seen"], entry["tightened"], entry["within"], entry["failed"]) == (3, 3, 0, 0)
    assert entry["attached"] is True
    assert entry["mode"] == "tighten-only"
    assert entry["pin_dir"].startswith(bpffs)
    assert entry["memory_bytes"] > 0
    text = cli("--status")
    assert text.returncode == 0
    assert f"{cgroup}  [attached, tighten-only]" in text.stdout
    assert "seen 3, tightened 3, within 0" in text.stdout


def test_re_enforcing_replaces_the_policy_in_place(cgroup: str, server: socket.socket) -> None:
    """A second enforce() rewrites the policy map: same program and link, new connections get the new values."""
    first = keepalive.enforce(cgroup, POLICY)
    port = server.getsockname()[1]
    assert python_client(cgroup, "127.0.0.1", port) == [ENFORCED]
    second = keepalive.enforce(cgroup, Policy(idle=20, interval=4, count=2, user_timeout=None))
    assert second.program_id == first.program_id
    assert second.pin_dir == first.pin_dir
    assert second.seen == 1  # counters carry on: nothing was re-attached
    # user_timeout=None: the program leaves the socket's own (none: 0)
    assert python_client(cgroup, "127.0.0.1", port) == [expected(20, 4, 2, 0)]


def test_remove_detaches_and_unpins(cgroup: str, server: socket.socket, bpffs: str) -> None:
    """After --remove new connections are left alone, the pins are gone, and a second remove finds nothing."""
    keepalive.enforce(cgroup, POLICY)
    assert pins(bpffs)
    result = cli("--cgroup", cgroup, "--remove")
    assert result.returncode == 0, result.stderr
    assert "removed" in result.stdout
    assert pins(bpffs) == []
    assert python_client(cgroup, "127.0.0.1", server.getsockname()[1]) == [untouched()]
    assert keepalive.remove_enforcement(cgroup) is False
    assert cgroup not in [e.cgroup for e in keepalive.enforcement_status()]


def test_the_attachment_outlives_the_command(cgroup: str, server: socket.socket) -> None:
    """`keepalive enforce` exits; connections made afterwards still get the policy."""
    result = cli("--cgroup", cgroup, "--policy", "37,7,3")
    assert result.returncode == 0, result.stderr
    assert "tighten-only" in result.stdout
    assert python_client(cgroup, "127.0.0.1", server.getsockname()[1]) == [ENFORCED]


def test_two_hundred_concurrent_connections_all_get_the_policy(cgroup: str, server: socket.socket) -> None:
    """200 connections opened by 8 threads at once: every one carries the policy, the counters add up."""
    keepalive.enforce(cgroup, POLICY)
    results = python_client(cgroup, "127.0.0.1", server.getsockname()[1], n=200, threads=8)
    assert len(results) == 200
    assert all(options == ENFORCED for options in results)
    status = {e.cgroup: e for e in keepalive.enforcement_status()}[cgroup]
    assert (status.seen, status.tightened) == (200, 200)


def _has_ipv6_loopback() -> bool:
    try:
        with socket.create_server(("::1", 0), family=socket.AF_INET6):
            return True
    except OSError:
        return False


def test_skip_loopback_leaves_127_8_and_ipv6_loopback_alone(cgroup: str) -> None:
    """--skip-loopback: 127.0.0.1, ::1 and ::ffff:127.0.0.1 are not touched and are counted as skipped."""
    if not _has_ipv6_loopback():
        pytest.skip("no IPv6 loopback")
    keepalive.enforce(cgroup, POLICY, skip_loopback=True)
    with socket.create_server(("::", 0), family=socket.AF_INET6, dualstack_ipv6=True) as dual:
        port = dual.getsockname()[1]
        for host in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):
            assert python_client(cgroup, host, port) == [untouched()], host
        status = {e.cgroup: e for e in keepalive.enforcement_status()}[cgroup]
        assert (status.seen, status.skipped_loopback, status.tightened) == (3, 3, 0)
        assert status.skip_loopback
        keepalive.enforce(cgroup, POLICY)  # loopback included again, in place
        for host in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):
            assert python_client(cgroup, host, port) == [ENFORCED], host


def test_udp_sockets_in_the_cgroup_are_untouched(cgroup: str) -> None:
    """sock_ops runs only for TCP: a connected UDP socket keeps SO_KEEPALIVE off."""
    keepalive.enforce(cgroup, POLICY)
    script = (
        "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.connect(('127.0.0.1', 9));"
        "print(s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE))"
    )
    with spawn(cgroup, [sys.executable, "-c", script], stdout=subprocess.PIPE) as proc:
        out, _ = proc.communicate(timeout=60)
    assert out.strip() == "0"
    status = {e.cgroup: e for e in keepalive.enforcement_status()}[cgroup]
    assert status.seen == 0


# --- errors: exit 2, a message naming what is missing, nothing attached or pinned ------------------------------


def test_a_directory_that_is_not_a_cgroup_is_refused(cgroup: str, bpffs: str, tmp_path: Path) -> None:
    result = cli("--cgroup", str(tmp_path))
    assert result.returncode == 2
    assert "is not a cgroup v2 directory" in result.stderr
    assert str(tmp_path) in result.stderr
    assert pins(bpffs) == []


def test_a_missing_cgroup_is_refused(cgroup: str, bpffs: str) -> None:
    result = cli("--cgroup", cgroup + "-missing")
    assert result.returncode == 2
    assert "does not exist" in result.stderr
    assert pins(bpffs) == []


def test_a_cgroup_v1_directory_is_refused(cgroup: str, bpffs: str) -> None:
    v1 = mounts("cgroup")
    if not v1:
        pytest.skip("no cgroup v1 hierarchy mounted here")
    result = cli("--cgroup", v1[0])
    assert result.returncode == 2
    assert "cgroup v1" in result.stderr
    assert pins(bpffs) == []


@pytest.mark.parametrize(
    ("setpriv", "missing"),
    [
        (["--reuid=65534", "--regid=65534", "--clear-groups"], "CAP_BPF and CAP_NET_ADMIN"),
        (["--bounding-set=-all", "--inh-caps=-all"], "CAP_BPF and CAP_NET_ADMIN"),
        (["--bounding-set=-all,+bpf", "--inh-caps=-all"], "CAP_NET_ADMIN"),
    ],
    ids=["nobody", "root-without-capabilities", "root-without-net-admin"],
)
def test_without_the_capabilities_enforce_exits_2_and_leaves_nothing(
    cgroup: str, bpffs: str, server: socket.socket, setpriv: list[str], missing: str
) -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is not installed")
    result = subprocess.run(
        ["setpriv", *setpriv, "--", sys.executable, "-m", "keepalive", "enforce", "--cgroup", cgroup],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert f"missing {missing}" in result.stderr
    assert pins(bpffs) == []
    assert python_client(cgroup, "127.0.0.1", server.getsockname()[1]) == [untouched()]


def test_cap_bpf_and_cap_net_admin_are_enough(cgroup: str, server: socket.socket) -> None:
    """The DaemonSet's capabilities: root with only CAP_BPF and CAP_NET_ADMIN attaches the program."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is not installed")
    argv = [sys.executable, "-m", "keepalive", "enforce", "--cgroup", cgroup, "--policy", "37,7,3"]
    result = subprocess.run(
        ["setpriv", "--bounding-set=-all,+bpf,+net_admin", "--inh-caps=-all", "--", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert python_client(cgroup, "127.0.0.1", server.getsockname()[1]) == [ENFORCED]


def test_a_program_the_verifier_refuses_is_reported_with_its_log_and_nothing_is_left(
    cgroup: str, bpffs: str, server: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real verifier refuses a program that returns an unset r0; the error carries its log."""
    from keepalive._enforce import _asm

    monkeypatch.setattr(_program, "build", lambda policy_fd, counters_fd: _asm.assemble([_asm.BPF_EXIT_INSN()]))
    with pytest.raises(keepalive.EnforcementError, match="verifier refused") as info:
        keepalive.enforce(cgroup, POLICY)
    assert "R0 !read_ok" in info.value.verifier_log
    assert pins(bpffs) == []
    assert python_client(cgroup, "127.0.0.1", server.getsockname()[1]) == [untouched()]


def test_bad_usage_exits_2(cgroup: str) -> None:
    assert cli().returncode == 2
    assert cli("--cgroup", cgroup, "--policy", "0,0,0").returncode == 2
    assert cli("--cgroup", cgroup, "--remove", "--policy", "30,5,3").returncode == 2
    assert cli("--status", "--policy", "30,5,3").returncode == 2
    assert cli("--cgroup", cgroup, "--json").returncode == 2


def test_status_without_enforcement_says_so(cgroup: str) -> None:
    result = cli("--status")
    assert result.returncode == 0
    assert result.stdout.strip() == "no cgroup is under keepalive enforcement"
    assert json.loads(cli("--status", "--json").stdout) == []


def test_a_deleted_cgroup_shows_as_detached_and_can_still_be_removed(
    bpffs: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel detaches the link when the cgroup goes; --status says DETACHED and --remove finds it by path."""
    monkeypatch.setenv(ENV_BPFFS, bpffs)
    with fresh_cgroup(bpffs) as parent:
        gone = os.path.join(parent, "short-lived")
        os.mkdir(gone)
        keepalive.enforce(gone, POLICY)
        os.rmdir(gone)
        deadline = time.monotonic() + 30
        while True:  # the cgroup is released asynchronously
            [entry] = [e for e in keepalive.enforcement_status() if e.cgroup == gone]
            if not entry.attached or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert entry.attached is False
        text = cli("--status")
        assert f"{gone}  [DETACHED" in text.stdout
        result = cli("--cgroup", gone, "--remove")
        assert result.returncode == 0, result.stderr
        assert "removed" in result.stdout
        assert pins(bpffs) == []


def test_concurrent_enforce_runs_on_one_cgroup_take_turns(cgroup: str, bpffs: str, server: socket.socket) -> None:
    """Four `keepalive enforce` at once on one cgroup: all succeed, one attachment, one of their policies."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "keepalive", "enforce", "--cgroup", cgroup, "--policy", f"{30 + i},5,3"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    assert len(pins(bpffs)) == 1
    [entry] = [e for e in keepalive.enforcement_status() if e.cgroup == cgroup]
    assert entry.attached
    assert entry.policy.idle in {30, 31, 32, 33}
    [options] = python_client(cgroup, "127.0.0.1", server.getsockname()[1])
    assert options["idle"] == entry.policy.idle


def test_the_python_example_in_docs_enforce_md_runs(cgroup: str) -> None:
    """docs/enforce.md's "From Python" block, with the kubepods path swapped for the test cgroup."""
    page = (Path(__file__).resolve().parent.parent / "docs" / "enforce.md").read_text(encoding="utf-8")
    [block] = re.findall(r"```python\n(.*?)```", page, re.DOTALL)
    assert "/sys/fs/cgroup/kubepods.slice" in block
    code = block.replace("/sys/fs/cgroup/kubepods.slice", cgroup)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "tighten-only idle=232s interval=30s count=5 user_timeout=382s"
    assert f"{cgroup} True 0 0 0" in result.stdout
    assert keepalive.enforcement_status() == []


def test_an_incomplete_pin_directory_is_skipped_by_status_and_replaced_by_enforce(
    cgroup: str, bpffs: str, server: socket.socket, caplog: pytest.LogCaptureFixture
) -> None:
    """Unpinning the link detaches the program; --status warns about the leftover and enforce attaches afresh."""
    first = keepalive.enforce(cgroup, POLICY)
    os.unlink(os.path.join(first.pin_dir, "link"))
    assert python_client(cgroup, "127.0.0.1", server.getsockname()[1]) == [untouched()]
    with caplog.at_level("WARNING", logger="keepalive.enforce"):
        assert [e for e in keepalive.enforcement_status() if e.cgroup == cgroup] == []
    assert "cannot read the enforcement pinned at" in caplog.text
    second = keepalive.enforce(cgroup, POLICY)
    assert second.attached
    assert second.program_id != first.program_id
    assert python_client(cgroup, "127.0.0.1", server.getsockname()[1]) == [ENFORCED]
