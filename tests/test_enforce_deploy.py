"""deploy/kubernetes/enforcer-daemonset.yaml: the fewest privileges that work, and its script really enforces.

(Schema validation with kubernetes-validate covers every manifest in tests/test_deploy.py.)
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import keepalive
from keepalive._enforce import ENV_BPFFS, mounts
from tests.enforce_support import expected, fresh_cgroup, private_bpffs, python_client, require_enforce

yaml = pytest.importorskip("yaml")

MANIFEST = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes" / "enforcer-daemonset.yaml"


def _pod() -> dict[str, Any]:
    docs = [doc for doc in yaml.safe_load_all(MANIFEST.read_text(encoding="utf-8")) if doc]
    [daemonset] = [doc for doc in docs if doc["kind"] == "DaemonSet"]
    assert daemonset["metadata"]["name"] == "keepalive-enforce"
    pod: dict[str, Any] = daemonset["spec"]["template"]["spec"]
    return pod


def test_enforcer_has_only_cap_bpf_and_cap_net_admin_and_no_host_network() -> None:
    pod = _pod()
    assert not pod.get("hostNetwork", False)
    assert not pod.get("hostPID", False)
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    [container] = pod["containers"]
    security = container["securityContext"]
    assert security["capabilities"] == {"drop": ["ALL"], "add": ["BPF", "NET_ADMIN"]}
    assert security.get("privileged", False) is False
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert {"cpu", "memory"} <= container["resources"]["limits"].keys()


def test_enforcer_mounts_the_hosts_cgroup_and_bpf_filesystems() -> None:
    pod = _pod()
    volumes = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert volumes == {"host-cgroup": "/sys/fs/cgroup", "bpffs": "/sys/fs/bpf"}
    assert mounts == {"host-cgroup": "/host/cgroup", "bpffs": "/sys/fs/bpf"}


def _script() -> str:
    [container] = _pod()["containers"]
    assert container["command"][:2] == ["/bin/sh", "-c"]
    script: str = container["command"][2]
    return script


@pytest.fixture
def node(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    """(bpffs, fake /host/cgroup): a cgroup standing for the node's cgroup root, with kubepods.slice/pod-1 inside
    (removed with it at the end)."""
    require_enforce()
    with private_bpffs() as bpffs, fresh_cgroup(bpffs) as root:
        monkeypatch.setenv(ENV_BPFFS, bpffs)
        os.makedirs(os.path.join(root, "kubepods.slice", "pod-1"))
        yield bpffs, root


def test_the_daemonset_script_enforces_on_kubepods_and_pods_below_it(node: tuple[str, str]) -> None:
    """The container's script, with /host/cgroup pointing at a test cgroup: it attaches to kubepods.slice, prints
    the status and stays; a process in a pod cgroup below gets the default policy."""
    _, root = node
    script = _script().replace("/host/cgroup", root)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    with subprocess.Popen(
        ["/bin/sh", "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            enforcing = proc.stdout.readline()
            assert enforcing.startswith("enforcing idle="), enforcing
            status = proc.stdout.readline()
            assert status.startswith(os.path.join(root, "kubepods.slice") + "  [attached, tighten-only]"), status
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
    policy = keepalive.default_policy()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        [options] = python_client(os.path.join(root, "kubepods.slice", "pod-1"), "127.0.0.1", port)
    assert options == expected(policy.idle, policy.interval, policy.count, policy.user_timeout_ms or 0)
    assert keepalive.remove_enforcement(os.path.join(root, "kubepods.slice"))


def test_the_daemonset_script_fails_without_a_kubepods_cgroup(tmp_path: Path) -> None:
    result = subprocess.run(
        ["/bin/sh", "-c", _script().replace("/host/cgroup", str(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "no kubepods cgroup" in result.stderr


def test_a_read_only_mount_of_the_cgroup_filesystem_is_enough(node: tuple[str, str]) -> None:
    """As in the DaemonSet (the host's /sys/fs/cgroup mounted read-only): a private mount namespace bind-mounts
    the cgroup2 filesystem read-only and enforces through it."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not installed")
    _, root = node
    cgroup2 = mounts("cgroup2")[0]
    relative = os.path.relpath(os.path.join(root, "kubepods.slice"), cgroup2)
    script = (
        'set -e; mkdir -p "$0"; mount --bind "$1" "$0"; mount -o remount,bind,ro "$0"; '
        'grep -q " $0 cgroup2 ro," /proc/mounts; exec "$2" -m keepalive enforce --cgroup "$0/$3" --policy 37,7,3'
    )
    with tempfile.TemporaryDirectory() as mountpoint:
        result = subprocess.run(
            [
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
                mountpoint,
                cgroup2,
                sys.executable,
                relative,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        [options] = python_client(os.path.join(root, "kubepods.slice", "pod-1"), "127.0.0.1", port)
    assert options == expected(37, 7, 3, 58000)
