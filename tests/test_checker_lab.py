"""The checker in a real network namespace (root, ip netns): pod-like values are read and called what they are.

Each test makes its own namespace with a unique name and removes it even when the test fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import require_lab

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[1]
ESTABLISHED = "net.netfilter.nf_conntrack_tcp_timeout_established"


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("KEEPALIVE_") or k.startswith("KEEPALIVE_REQUIRE")}


@pytest.fixture
def netns() -> Iterator[str]:
    """A fresh network namespace with loopback up, conntrack established timeout 7 s; deleted afterwards."""
    require_lab()
    name = f"kachk-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    created = _ip("netns", "add", name)
    if created.returncode != 0:
        message = f"ip netns add failed: {created.stderr.strip()}"
        if os.environ.get("KEEPALIVE_REQUIRE_LAB", "") not in {"", "0"}:
            pytest.fail(message)
        pytest.skip(message)
    try:
        assert _ip("netns", "exec", name, "ip", "link", "set", "lo", "up").returncode == 0
        setting = subprocess.run(
            ["ip", "netns", "exec", name, "sysctl", "-w", f"{ESTABLISHED}=7"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert setting.returncode == 0, f"{ESTABLISHED} in a new namespace: {setting.stderr.strip()}"
        yield name
    finally:
        _ip("netns", "del", name)
    assert name not in _ip("netns", "list").stdout


def _in_netns(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", name, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=_clean_env(),
        check=False,
    )


def _sources(data: dict[str, object]) -> dict[str, dict[str, object]]:
    sources = data["sources"]
    assert isinstance(sources, list)
    return {s["name"]: s for s in sources}


def test_check_in_a_namespace_with_a_lowered_timeout_reports_that_timeout(netns: str) -> None:
    """Issue 14: the namespace's 7 s differs from the kernel default (432000 s), so someone set it: it is the path
    timeout, with no conntrack entry in the namespace (the verdict must not depend on one)."""
    result = _in_netns(netns, sys.executable, "-m", "keepalive", "check", "--json", "--policy", "60,10,5")
    assert "Traceback" not in result.stderr
    data = json.loads(result.stdout)
    assert data["exit_code"] == result.returncode == 2
    assert data["namespace"] == "non-initial"
    sources = _sources(data)
    # the value this namespace really has (set above), read through /proc
    assert sources[ESTABLISHED]["value"] == 7
    assert sources[ESTABLISHED]["limits_path"] is True
    assert sources["net.netfilter.nf_conntrack_count"]["value"] == 0
    keepalive_time = _in_netns(netns, "cat", "/proc/sys/net/ipv4/tcp_keepalive_time").stdout.strip()
    assert sources["net.ipv4.tcp_keepalive_time"]["value"] == int(keepalive_time)
    evidence = sources["network namespace"]["note"]
    assert isinstance(evidence, str)
    assert "0444" in evidence
    finding = next(f for f in data["findings"] if f["code"] == "non-initial-namespace")
    assert finding["severity"] == "info"
    assert "7 s" in finding["message"]
    assert "hostNetwork" in finding["fix"]
    assert data["path_timeout"] == 7
    codes = {f["code"]: f["severity"] for f in data["findings"]}
    assert codes["policy-idle-exceeds-path-timeout"] == "error"
    assert data["recommended_policy"]["idle"] + data["recommended_policy"]["interval"] < 7
    text = _in_netns(netns, sys.executable, "-m", "keepalive", "check", "--policy", "60,10,5")
    assert "Path timeout: 7 s" in text.stdout


def test_check_in_a_fresh_namespace_does_not_take_its_kernel_default_for_the_nodes() -> None:
    """A namespace nobody tuned holds the kernel default 432000 s: that is not the node's value, not a path timeout."""
    require_lab()
    name = f"kachk-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    created = _ip("netns", "add", name)
    if created.returncode != 0:
        message = f"ip netns add failed: {created.stderr.strip()}"
        if os.environ.get("KEEPALIVE_REQUIRE_LAB", "") not in {"", "0"}:
            pytest.fail(message)
        pytest.skip(message)
    try:
        assert _ip("netns", "exec", name, "ip", "link", "set", "lo", "up").returncode == 0
        result = _in_netns(name, sys.executable, "-m", "keepalive", "check", "--json", "--policy", "60,10,5")
        data = json.loads(result.stdout)
        sources = _sources(data)
        assert sources[ESTABLISHED]["value"] == 432000
        assert sources[ESTABLISHED]["limits_path"] is False
        assert data["path_timeout"] is None
        assert data["namespace"] == "non-initial"
    finally:
        _ip("netns", "del", name)
    assert name not in _ip("netns", "list").stdout


def test_the_hosts_own_check_is_unaffected(netns: str) -> None:
    """The same sysctl read outside the namespace is the node's, not the namespace's 7 s."""
    import keepalive

    report = keepalive.check(proc_root="/proc", policy=keepalive.Policy())
    established = next(s for s in report.sources if s.name == ESTABLISHED)
    with open(f"/proc/sys/{ESTABLISHED.replace('.', '/')}") as handle:
        assert established.value == int(handle.read()) != 7
    assert report.namespace == "initial"


_ACTIVE = """
import json, socket, keepalive
server = socket.create_server(("127.0.0.1", 0))
client = socket.create_connection(server.getsockname())
peer, _ = server.accept()
client.sendall(b"x"); peer.recv(1)
report = keepalive.check(policy=keepalive.Policy(idle=60, interval=10, count=5))
print(report.to_json())
"""


def test_active_conntrack_in_a_namespace_limits_its_connections(netns: str) -> None:
    """With a conntrack rule and a live connection in the namespace, its 7 s timeout is on the path: error."""
    rules = (
        "table inet kacheck {\n"
        "  chain out { type filter hook output priority 0; ct state new,established accept; }\n"
        "}\n"
    )
    loaded = subprocess.run(
        ["ip", "netns", "exec", netns, "nft", "-f", "-"],
        input=rules,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert loaded.returncode == 0, loaded.stderr
    result = _in_netns(netns, sys.executable, "-c", _ACTIVE)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert _sources(data)["net.netfilter.nf_conntrack_count"]["value"] >= 1
    assert data["path_timeout"] == 7
    codes = {f["code"]: f["severity"] for f in data["findings"]}
    assert codes["policy-idle-exceeds-path-timeout"] == "error"
    assert codes["non-initial-namespace"] == "info"
    assert data["recommended_policy"]["idle"] + data["recommended_policy"]["interval"] < 7
