"""Finding a running kube-proxy through <proc root>/<pid>/cmdline, as a hostPID DaemonSet sees the node: a proc
tree laid out in tmp_path, and a real child process whose /proc/<pid>/cmdline is kube-proxy's."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from keepalive._path import _kubeproxy
from keepalive._path._kubeproxy import discover_kube_proxy

CONFIG = "kind: KubeProxyConfiguration\nmode: ipvs\nipvs:\n  tcpTimeout: 10m\nconntrack:\n  tcpEstablishedTimeout: 2h\n"


def process(root: Path, pid: int, *argv: str, files: dict[str, str] | None = None) -> Path:
    """``<root>/<pid>/cmdline`` (NUL-separated, NUL-terminated as the kernel shows it) and files under
    ``<root>/<pid>/root`` (the process's mount namespace)."""
    directory = root / str(pid)
    directory.mkdir(parents=True)
    (directory / "cmdline").write_bytes(b"".join(word.encode() + b"\x00" for word in argv))
    for path, text in (files or {}).items():
        target = directory / "root" / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return directory


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    """A proc tree with the usual neighbours: init, a kernel thread (empty cmdline), non-pid entries."""
    root = tmp_path / "proc"
    process(root, 1, "/sbin/init", "splash")
    process(root, 2)  # kthreadd: empty cmdline
    process(root, 812, "/usr/bin/containerd")
    (root / "self").mkdir()
    (root / "sys" / "net").mkdir(parents=True)
    (root / "meminfo").write_text("MemTotal: 1 kB\n")
    return root


def test_no_kube_proxy_running_is_none_and_no_reason(proc: Path) -> None:
    assert discover_kube_proxy(str(proc)) == (None, None)


def test_kube_proxy_with_config_reads_the_file_in_its_own_mount_namespace(proc: Path) -> None:
    process(
        proc,
        4242,
        "/usr/local/bin/kube-proxy",
        "--config=/var/lib/kube-proxy/config.conf",
        "--hostname-override=worker-1",
        files={"/var/lib/kube-proxy/config.conf": CONFIG},
    )
    proxy, reason = discover_kube_proxy(str(proc))
    assert reason is None
    assert proxy is not None
    assert proxy.origin == str(proc / "4242" / "root" / "var/lib/kube-proxy/config.conf")
    assert proxy.tcp_established_timeout == 7200
    assert proxy.ipvs_timeout == 600
    assert any("kube-proxy process 4242" in note for note in proxy.notes)


def test_kube_proxy_run_by_flags_is_read_from_its_command_line(proc: Path) -> None:
    process(proc, 900, "/go-runner", "--also-stdout", "/usr/local/bin/kube-proxy", "--proxy-mode=iptables")
    process(
        proc,
        901,
        "/usr/local/bin/kube-proxy",
        "--proxy-mode=ipvs",
        "--conntrack-tcp-timeout-established",
        "1h0m0s",
        "--v=2",
    )
    proxy, reason = discover_kube_proxy(str(proc))
    assert reason is None
    assert proxy is not None
    assert proxy.origin == "kube-proxy process 901"  # the go-runner wrapper (900) is not kube-proxy itself
    assert proxy.effective_mode == "ipvs"
    assert proxy.tcp_established_timeout == 3600
    assert proxy.ipvs_timeout == 900


def test_hyperkube_proxy_is_kube_proxy(proc: Path) -> None:
    process(proc, 77, "/hyperkube", "proxy", "--conntrack-tcp-timeout-established=30m")
    proxy, _ = discover_kube_proxy(str(proc))
    assert proxy is not None
    assert proxy.tcp_established_timeout == 1800


def test_kube_proxy_whose_config_cannot_be_read_gives_the_reason(proc: Path) -> None:
    process(proc, 4242, "/usr/local/bin/kube-proxy", "--config=/var/lib/kube-proxy/config.conf")
    (proc / "4242" / "root").mkdir()
    proxy, reason = discover_kube_proxy(str(proc))
    assert proxy is None
    assert reason is not None
    assert "kube-proxy process 4242" in reason
    assert "/var/lib/kube-proxy/config.conf" in reason
    assert "no such file" in reason


def test_refused_flags_of_the_running_process_are_listed(proc: Path) -> None:
    process(proc, 10, "kube-proxy", "--conntrack-max-per-core=-1")
    proxy, _ = discover_kube_proxy(str(proc))
    assert proxy is not None
    assert len(proxy.refused) == 1
    assert "--conntrack-max-per-core=-1" in proxy.refused[0]


def test_the_lowest_pid_is_read_when_several_run(proc: Path) -> None:
    process(proc, 300, "kube-proxy", "--conntrack-min=3")
    process(proc, 20, "kube-proxy", "--conntrack-min=2")
    proxy, _ = discover_kube_proxy(str(proc))
    assert proxy is not None
    assert proxy.min == 2


def test_the_scan_is_bounded_and_says_when_it_stopped(proc: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for pid in range(100, 110):
        process(proc, pid, "/bin/sleep", "1000")
    monkeypatch.setattr(_kubeproxy, "MAX_PROC_ENTRIES", 5)
    proxy, reason = discover_kube_proxy(str(proc))
    assert proxy is None
    assert reason is not None
    assert "stopped" in reason


def test_an_oversized_cmdline_is_skipped_not_read_whole(proc: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_kubeproxy, "CMDLINE_LIMIT", 64)
    process(proc, 50, "kube-proxy", "--hostname-override=" + "x" * 100)
    assert discover_kube_proxy(str(proc)) == (None, None)


@pytest.mark.parametrize("name", ["nothing", "a-file", "nul\x00byte"])
def test_a_proc_root_that_is_not_a_directory_gives_a_reason(tmp_path: Path, name: str) -> None:
    (tmp_path / "a-file").write_text("x")
    proxy, reason = discover_kube_proxy(str(tmp_path / name))
    assert proxy is None
    assert reason is not None
    assert "cannot list the processes in" in reason


# A child that becomes "kube-proxy" in /proc: it rewrites its own argument area (arg_start..arg_end of
# /proc/self/stat) through /proc/self/mem and its comm, then waits for its stdin to close.
CHILD = r"""
import os, sys
words = os.environ["KP_ARGV"].split("\x1f")
new = b"".join(w.encode() + b"\0" for w in words)
with open("/proc/self/stat", "rb") as f:
    fields = f.read().rsplit(b")", 1)[1].split()
start, end = int(fields[45]), int(fields[46])
assert len(new) <= end - start, (len(new), end - start)
with open("/proc/self/mem", "r+b", buffering=0) as mem:
    mem.seek(start)
    mem.write(new + b"\0" * (end - start - len(new)))
with open("/proc/self/comm", "w") as f:
    f.write("kube-proxy")
print("ready", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def real_kube_proxy(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A real process whose /proc/<pid>/cmdline is ``/usr/local/bin/kube-proxy --config=<file> --proxy-mode=...``."""
    if not Path("/proc/self/mem").exists():
        pytest.skip("needs Linux /proc")
    config = tmp_path / "kube-proxy" / "config.conf"
    config.parent.mkdir()
    config.write_text(CONFIG)
    argv = [
        "/usr/local/bin/kube-proxy",
        f"--config={config}",
        "--proxy-mode=nftables",
        "--conntrack-tcp-timeout-established=5m",
        "--hostname-override=worker-1",
    ]
    padding = "x" * (sum(len(word) + 1 for word in argv) + 64)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, padding],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "KP_ARGV": "\x1f".join(argv)},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"ready\n"
        yield child.pid, config
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=30)
        assert child.stdout is not None
        child.stdout.close()


def _other_kube_proxies_below(pid: int) -> bool:
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) < pid:
            try:
                argv0 = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\x00")[0]
            except OSError:
                continue
            if os.path.basename(argv0) == b"kube-proxy":
                return True
    return False


@pytest.mark.timeout(60)
def test_a_real_kube_proxy_process_is_found_under_proc(real_kube_proxy: tuple[int, Path], tmp_path: Path) -> None:
    pid, config = real_kube_proxy
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\x00")
    assert cmdline[0] == b"/usr/local/bin/kube-proxy"
    # the real /proc/<pid> alone (a proc root holding only a link to it), so other processes can't interfere
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / str(pid)).symlink_to(f"/proc/{pid}")
    proxy, reason = discover_kube_proxy(str(alone))
    assert reason is None, reason
    assert proxy is not None
    assert proxy.origin == f"{alone}/{pid}/root{config}"  # read through /proc/<pid>/root: as the process sees it
    assert proxy.tcp_established_timeout == 7200  # the file's 2h; --conntrack-tcp-timeout-established=5m is ignored
    assert proxy.ipvs_timeout == 600
    assert any("--proxy-mode=nftables" in note and "ignores" in note for note in proxy.notes)
    # and the whole /proc: the same process is found among all the others
    if _other_kube_proxies_below(pid):
        pytest.skip("another kube-proxy with a lower pid runs on this machine")
    proxy, reason = discover_kube_proxy("/proc")
    assert reason is None, reason
    assert proxy is not None
    assert proxy.origin == f"/proc/{pid}/root{config}"
    assert proxy.tcp_established_timeout == 7200


def test_config_path_is_not_read_from_the_host_when_the_process_root_cannot_be_followed(proc: Path) -> None:
    """A /proc/<pid>/root we may not follow: the host's file of the same name would be another file."""
    process(proc, 4242, "/usr/local/bin/kube-proxy", "--config=/etc/hostname")
    (proc / "4242" / "root").symlink_to(proc / "4242" / "no-such-directory")
    proxy, reason = discover_kube_proxy(str(proc))
    assert proxy is None
    assert reason is not None
    assert "mount namespace" in reason


def test_relative_config_path_is_read_from_the_process_s_working_directory(proc: Path) -> None:
    directory = process(proc, 4242, "kube-proxy", "--config", "conf/kp.yaml")
    (directory / "cwd" / "conf").mkdir(parents=True)
    (directory / "cwd" / "conf" / "kp.yaml").write_text(CONFIG)
    proxy, reason = discover_kube_proxy(str(proc))
    assert reason is None
    assert proxy is not None
    assert proxy.ipvs_timeout == 600
