"""deploy/kubernetes: the manifests validate against Kubernetes' schemas, the DaemonSet is locked down as
documented, and its container command really runs: against a fake host root with the paths rewritten, it writes
the node_exporter textfile and logs each round."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import environ_without_keepalive

yaml = pytest.importorskip("yaml")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy" / "kubernetes"
MANIFESTS = sorted(DEPLOY.glob("*.yaml"))
#: The oldest Kubernetes the manifests promise to work with (safe TCP keepalive sysctls, kube-proxy tcpBeLiberal)
#: and the newest schema kubernetes-validate bundles.
_BUNDLED = kubernetes_validate.utils.all_versions()
KUBERNETES_VERSIONS = ("1.29.0" if "1.29.0" in _BUNDLED else _BUNDLED[0], _BUNDLED[-1])


def _documents(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc]


def _all_documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in MANIFESTS:
        for doc in _documents(path):
            yield path, doc


def _one(kind: str, name: str) -> dict[str, Any]:
    found = [doc for _, doc in _all_documents() if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name} in {DEPLOY}, found {len(found)}"
    return found[0]


def _daemonset() -> dict[str, Any]:
    return _one("DaemonSet", "keepalive-check")


def _container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    (container,) = [c for c in pod["containers"] + pod.get("initContainers", []) if c["name"] == name]
    return container


def test_there_are_manifests() -> None:
    assert {p.name for p in MANIFESTS} >= {"checker-daemonset.yaml", "app-deployment.yaml"}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifests_validate_strictly_against_the_kubernetes_schema(path: Path, version: str) -> None:
    """Strict validation: unknown fields (a typo in securityContext, say) fail too."""
    docs = _documents(path)
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_a_misspelt_field_is_caught_by_the_validation() -> None:
    """The validation above is not vacuous."""
    doc = _daemonset()
    broken = yaml.safe_load(yaml.safe_dump(doc))
    broken["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesytem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def test_daemonset_reads_the_nodes_proc_read_only_from_the_node_network_namespace() -> None:
    pod = _daemonset()["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["automountServiceAccountToken"] is False
    check = _container(pod, "check")
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in check["volumeMounts"]}
    proc = mounts["/host/proc"]
    assert proc["readOnly"] is True
    assert volumes[proc["name"]]["hostPath"]["path"] == "/proc"
    command = check["command"]
    assert command[:2] == ["keepalive", "check"]
    assert command[command.index("--proc-root") + 1] == "/host/proc"
    textfile = command[command.index("--textfile") + 1]
    textfile_mount = mounts[str(Path(textfile).parent)]
    assert volumes[textfile_mount["name"]]["hostPath"]["path"] == "/var/lib/node_exporter/textfile_collector"
    assert textfile.endswith(".prom")
    assert float(command[command.index("--every") + 1]) >= 60


def test_daemonset_runs_unprivileged_wherever_it_can() -> None:
    """The checker runs as nobody with nothing: no capabilities, no escalation, read-only root filesystem,
    RuntimeDefault seccomp, bounded resources. Only the init container that opens the textfile directory to
    group 65534 runs as root, with CHOWN alone."""
    pod = _daemonset()["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65534
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod["containers"] + pod.get("initContainers", []):
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False, container["name"]
        assert security["readOnlyRootFilesystem"] is True, container["name"]
        assert security["capabilities"]["drop"] == ["ALL"], container["name"]
        resources = container["resources"]
        assert {"cpu", "memory"} <= resources["requests"].keys(), container["name"]
        assert {"cpu", "memory"} <= resources["limits"].keys(), container["name"]
    check = _container(pod, "check")
    assert "add" not in check["securityContext"]["capabilities"]
    assert check["securityContext"].get("runAsUser", 65534) == 65534
    for init in pod.get("initContainers", []):
        assert init["securityContext"]["capabilities"].get("add", []) == ["CHOWN"]


def test_deployment_env_vars_give_a_valid_policy() -> None:
    """Every KEEPALIVE_* variable the example Deployment sets is one keepalive reads, and together they make
    the policy the comment promises (below AWS NAT Gateway's 350 s)."""
    pod = _one("Deployment", "example-app")["spec"]["template"]["spec"]
    (app,) = pod["containers"]
    env = {item["name"]: item["value"] for item in app["env"]}
    assert set(env) <= {
        "KEEPALIVE_MIDDLEBOX",
        "KEEPALIVE_AUTO",
        "KEEPALIVE_IDLE",
        "KEEPALIVE_INTERVAL",
        "KEEPALIVE_COUNT",
        "KEEPALIVE_USER_TIMEOUT",
        "KEEPALIVE_PATH_TIMEOUT",
        "KEEPALIVE_CHECK",
    }
    from keepalive._path._middleboxes import parse_middleboxes

    known, unknown = parse_middleboxes(env["KEEPALIVE_MIDDLEBOX"])
    assert known
    assert not unknown
    clean = environ_without_keepalive()
    result = subprocess.run(
        [sys.executable, "-m", "keepalive", "policy", "--json"],
        env={**clean, **env, "KEEPALIVE_CHECK": "0", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    import json

    policy = json.loads(result.stdout)["policy"]
    assert policy["idle"] + policy["interval"] < 350
    assert (policy["idle"], policy["interval"], policy["count"]) == (232, 30, 5)


# -- the DaemonSet's command against a fake host root ------------------------------------------------------------

NF_STAT_HEADER = (
    "entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop "
    "icmp_error  expect_new expect_create expect_delete search_restart"
)


def _nf_stat_row(invalid: int, drop: int) -> str:
    values = [0] * 17
    values[0] = 1200  # entries
    values[4] = invalid
    values[10] = drop
    return " ".join(f"{v:08x}" for v in values)


def _fake_host_proc(proc: Path) -> None:
    """What a kube-proxy node in IPVS mode shows: conntrack at kube-proxy's 24 h, a few INVALID packets."""
    netfilter = proc / "sys" / "net" / "netfilter"
    ipv4 = proc / "sys" / "net" / "ipv4"
    for directory in (netfilter, ipv4, proc / "net" / "stat"):
        directory.mkdir(parents=True)
    sysctls = {
        netfilter / "nf_conntrack_tcp_timeout_established": 86400,
        netfilter / "nf_conntrack_tcp_timeout_close_wait": 3600,
        netfilter / "nf_conntrack_tcp_be_liberal": 0,
        netfilter / "nf_conntrack_tcp_loose": 1,
        netfilter / "nf_conntrack_count": 2400,
        netfilter / "nf_conntrack_max": 262144,
        netfilter / "nf_conntrack_buckets": 65536,
        ipv4 / "tcp_keepalive_time": 7200,
        ipv4 / "tcp_keepalive_intvl": 75,
        ipv4 / "tcp_keepalive_probes": 9,
    }
    for path, value in sysctls.items():
        path.write_text(f"{value}\n")
        # In the node's own namespace nf_conntrack_max/buckets are writable (0644), which tells the checker it
        # is looking at the node and not at a pod.
        path.chmod(0o644)
    (proc / "net" / "stat" / "nf_conntrack").write_text(
        "\n".join([NF_STAT_HEADER, _nf_stat_row(invalid=7, drop=0), _nf_stat_row(invalid=5, drop=1)]) + "\n"
    )


KUBE_PROXY_CONFIG = """\
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: ipvs
conntrack:
  tcpEstablishedTimeout: 24h0m0s
ipvs:
  tcpTimeout: 0s
"""


def _samples(text: str) -> dict[str, float]:
    """Prometheus text format -> {'name{labels}': value}."""
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def _rewrite(value: str, mounts: dict[str, Path]) -> str:
    for container_path in sorted(mounts, key=len, reverse=True):
        if value == container_path or value.startswith(container_path.rstrip("/") + "/"):
            return str(mounts[container_path]) + value[len(container_path.rstrip("/")) :]
    return value


def test_daemonset_command_writes_metrics_and_logs_against_a_fake_host_root(tmp_path: Path) -> None:
    """The container's command and environment, taken from the YAML, with every mount path moved under
    tmp_path: after its first round the textfile holds the metrics (path timeout: IPVS's 900 s from kube-proxy's
    configuration), the log has the report and a round summary, and SIGTERM stops it cleanly."""
    daemonset = _daemonset()
    pod = daemonset["spec"]["template"]["spec"]
    check = _container(pod, "check")

    host = tmp_path / "host"
    _fake_host_proc(host / "proc")
    (host / "textfile").mkdir(parents=True)
    (host / "kube-proxy").mkdir()
    (host / "kube-proxy" / "config.conf").write_text(KUBE_PROXY_CONFIG)
    volumes = {v["name"]: v for v in pod["volumes"]}
    fake_for_volume = {
        "host-proc": host / "proc",
        "textfile": host / "textfile",
        "kube-proxy-config": host / "kube-proxy",
    }
    mounts: dict[str, Path] = {}
    for mount in check["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "emptyDir" in volume:
            fake = tmp_path / "emptydir" / mount["name"]
            fake.mkdir(parents=True)
            mounts[mount["mountPath"]] = fake
        else:
            mounts[mount["mountPath"]] = fake_for_volume[mount["name"]]

    env = environ_without_keepalive()
    for source in check.get("envFrom", []):
        config_map = _one("ConfigMap", source["configMapRef"]["name"])
        env.update({k: _rewrite(v, mounts) for k, v in config_map.get("data", {}).items()})
    env.update({item["name"]: _rewrite(item["value"], mounts) for item in check.get("env", [])})
    env["PYTHONPATH"] = str(ROOT)

    command = check["command"]
    assert command[0] == "keepalive"
    argv = [sys.executable, "-m", "keepalive", *(_rewrite(arg, mounts) for arg in command[1:])]
    textfile = Path(_rewrite(command[command.index("--textfile") + 1], mounts))

    log_path = tmp_path / "container.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while not textfile.exists() and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            assert process.poll() is None, "keepalive check --every exited:\n" + log_path.read_text()
            assert textfile.exists(), "no textfile after 60 s:\n" + log_path.read_text()
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()

    metrics = textfile.read_text()
    logs = log_path.read_text()
    samples = _samples(metrics)
    assert samples["keepalive_check_status"] == 1  # warnings: the INVALID packets below
    assert samples["keepalive_check_path_timeout_seconds"] == 900
    assert samples['keepalive_check_conntrack_stat_total{counter="invalid"}'] == 12
    assert samples['keepalive_check_finding{code="conntrack-invalid-packets",severity="warning"}'] == 1
    assert samples["keepalive_check_namespace_initial"] == 1
    # The log: the human-readable report of the round, then the one-line summary, then the clean stop.
    assert "conntrack-invalid-packets" in logs
    assert "keepalive_check_" not in logs
    assert "keepalive check round: status warning, path timeout 900 s" in logs
    assert "keepalive check stopped after 1 round(s)" in logs
    # Written atomically: no temporary file left next to it for node_exporter to trip over.
    assert sorted(p.name for p in textfile.parent.iterdir()) == [textfile.name]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="the init container runs as root")
def test_init_container_lets_group_65534_add_files_to_the_textfile_directory(tmp_path: Path) -> None:
    """The init container's command, from the YAML, on a root-owned 0755 directory: group 65534, group-writable,
    sticky (so the checker cannot remove other exporters' files)."""
    pod = _daemonset()["spec"]["template"]["spec"]
    init = _container(pod, "textfile-permissions")
    textfile = tmp_path / "textfile"
    textfile.mkdir(mode=0o755)
    mounts = {m["mountPath"]: textfile for m in init["volumeMounts"]}
    command = [_rewrite(arg, mounts) for arg in init["command"]]
    assert command[0] == "python"
    result = subprocess.run([sys.executable, *command[1:]], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    status = textfile.stat()
    assert status.st_gid == 65534
    assert status.st_mode & 0o070 == 0o070
    assert status.st_mode & 0o1000
    assert status.st_mode & 0o755 == 0o755
