"""kube-proxy as a source: KubeProxyConfiguration files (YAML, JSON, kubeadm ConfigMap) and /configz on loopback."""

from __future__ import annotations

import http.server
import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

import keepalive
from keepalive import Policy, Severity
from tests.checker_support import make_proc, nf_stat_text

POLICY = Policy(idle=60, interval=10, count=5)

V1ALPHA1_YAML = """\
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: "iptables"
conntrack:
  maxPerCore: 32768
  min: 131072
  tcpCloseWaitTimeout: 1h0m0s
  tcpEstablishedTimeout: 2h0m0s
  tcpBeLiberal: false
ipvs:
  tcpTimeout: 0s
"""

#: /configz of kube-proxy 1.29+: the internal type, Go field names (no JSON tags), conntrack under Linux.
CONFIGZ_INTERNAL = {
    "kubeproxy.config.k8s.io": {
        "Linux": {
            "Conntrack": {
                "MaxPerCore": 32768,
                "Min": 131072,
                "TCPEstablishedTimeout": "1h0m0s",
                "TCPCloseWaitTimeout": "1h0m0s",
                "TCPBeLiberal": True,
                "UDPTimeout": "0s",
                "UDPStreamTimeout": "0s",
            },
            "MasqueradeAll": False,
        },
        "Mode": "ipvs",
        "IPVS": {"Scheduler": "", "TCPTimeout": "10m0s", "TCPFinTimeout": "0s", "UDPTimeout": "0s"},
    }
}
#: An older /configz: v1alpha1-style names, conntrack at the top.
CONFIGZ_OLD = {
    "kubeproxy.config.k8s.io": {
        "conntrack": {"maxPerCore": 32768, "min": 131072, "tcpEstablishedTimeout": "24h0m0s"},
        "mode": "iptables",
    }
}


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def source(report: keepalive.Report, name: str) -> keepalive.Source:
    return next(s for s in report.sources if s.name == name)


def codes(report: keepalive.Report) -> dict[str, Severity]:
    return {f.code: f.severity for f in report.findings}


def test_v1alpha1_yaml_fields_are_sources_and_limit_the_path(tmp_path: Path) -> None:
    config = write(tmp_path, "kube-proxy.yaml", V1ALPHA1_YAML)
    report = keepalive.check(proc_root=make_proc(tmp_path / "proc"), policy=POLICY, kube_proxy_config=config)
    established = source(report, "kube-proxy conntrack.tcpEstablishedTimeout")
    assert established.value == 7200
    assert established.limits_path
    assert established.origin == config
    assert source(report, "kube-proxy conntrack.tcpCloseWaitTimeout").value == 3600
    assert source(report, "kube-proxy conntrack.maxPerCore").value == 32768
    assert source(report, "kube-proxy conntrack.tcpBeLiberal").value is False
    assert source(report, "kube-proxy mode").value == "iptables"
    assert report.path_timeout == 7200
    assert report.path_timeout_origin is not None
    assert "kube-proxy" in report.path_timeout_origin
    # node evidence (a kube-proxy configuration) never loosens the built-in default, which covers cloud NATs
    assert report.recommended_policy == keepalive.BUILTIN_POLICY
    assert codes(report)["kube-proxy-sysctl-mismatch"] is Severity.INFO  # the fake node says 86400


def test_json_config_works_without_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "yaml", None)  # `import yaml` fails
    config = write(
        tmp_path,
        "kube-proxy.json",
        json.dumps({"kind": "KubeProxyConfiguration", "conntrack": {"tcpEstablishedTimeout": "30m"}}),
    )
    report = keepalive.check(proc_root=make_proc(tmp_path / "proc"), policy=POLICY, kube_proxy_config=config)
    assert report.path_timeout == 1800


def test_yaml_without_pyyaml_says_which_extra_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "yaml", None)
    config = write(tmp_path, "kube-proxy.yaml", V1ALPHA1_YAML)
    report = keepalive.check(proc_root=make_proc(tmp_path / "proc"), policy=POLICY, kube_proxy_config=config)
    finding = next(f for f in report.findings if f.code == "kube-proxy-unreadable")
    assert finding.severity is Severity.WARNING
    assert "pip install 'tcp-keepalive[yaml]'" in finding.message
    assert source(report, "kube-proxy configuration").value is None


def test_ipvs_mode_with_zero_tcp_timeout_means_900_seconds(tmp_path: Path) -> None:
    config = write(tmp_path, "kp.yaml", V1ALPHA1_YAML.replace('mode: "iptables"', "mode: ipvs"))
    report = keepalive.check(proc_root=make_proc(tmp_path / "proc"), policy=POLICY, kube_proxy_config=config)
    ipvs = source(report, "kube-proxy ipvs.tcpTimeout")
    assert ipvs.value == 900
    assert ipvs.limits_path
    assert report.path_timeout == 900
    assert (
        report.recommended_policy == keepalive.BUILTIN_POLICY
    )  # node evidence: below(900) is looser than the built-in


def test_zero_established_timeout_leaves_the_sysctl_alone(tmp_path: Path) -> None:
    config = write(
        tmp_path, "kp.yaml", V1ALPHA1_YAML.replace("tcpEstablishedTimeout: 2h0m0s", "tcpEstablishedTimeout: 0s")
    )
    report = keepalive.check(proc_root=make_proc(tmp_path / "proc"), policy=POLICY, kube_proxy_config=config)
    established = source(report, "kube-proxy conntrack.tcpEstablishedTimeout")
    assert established.value == 0
    assert not established.limits_path
    assert report.path_timeout == 86400  # the node's sysctl


def test_absent_fields_take_kube_proxy_defaults(tmp_path: Path) -> None:
    config = write(tmp_path, "kp.yaml", "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n")
    report = keepalive.check(proc_root=make_proc(tmp_path / "proc"), policy=POLICY, kube_proxy_config=config)
    established = source(report, "kube-proxy conntrack.tcpEstablishedTimeout")
    assert established.value == 86400
    assert established.note is not None
    assert "default" in established.note


def test_kubeadm_configmap_and_multi_document_files_are_unwrapped(tmp_path: Path) -> None:
    indented = "".join(f"    {line}\n" for line in V1ALPHA1_YAML.splitlines())
    configmap = write(
        tmp_path,
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kube-proxy\n  namespace: kube-system\n"
        f"data:\n  config.conf: |\n{indented}",
    )
    multi = write(
        tmp_path,
        "kubeadm.yaml",
        "apiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\n---\n" + V1ALPHA1_YAML,
    )
    for config in (configmap, multi):
        report = keepalive.check(proc_root=make_proc(tmp_path / "proc"), policy=POLICY, kube_proxy_config=config)
        assert source(report, "kube-proxy conntrack.tcpEstablishedTimeout").value == 7200, config


def test_be_liberal_in_kube_proxy_turns_the_invalid_warning_into_info(tmp_path: Path) -> None:
    config = write(tmp_path, "kp.yaml", V1ALPHA1_YAML.replace("tcpBeLiberal: false", "tcpBeLiberal: true"))
    proc = make_proc(tmp_path / "proc", nf_stat=nf_stat_text([{"invalid": 9}]))
    found = codes(keepalive.check(proc_root=proc, policy=POLICY, kube_proxy_config=config))
    assert "conntrack-invalid-packets" not in found
    assert found["conntrack-invalid-packets-liberal"] is Severity.INFO


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("{not json", "not valid"),
        ("just: [unclosed", "not valid YAML"),
        ("- a\n- b\n", "no KubeProxyConfiguration"),
    ],
)
def test_bad_config_files_are_reported_not_raised(tmp_path: Path, text: str, reason: str) -> None:
    config = write(tmp_path, "kp.yaml", text)
    report = keepalive.check(proc_root=make_proc(tmp_path / "proc"), policy=POLICY, kube_proxy_config=config)
    finding = next(f for f in report.findings if f.code == "kube-proxy-unreadable")
    assert reason in finding.message


def test_values_kube_proxy_refuses_are_not_used_as_path_timeouts(tmp_path: Path) -> None:
    """A bare number where kube-proxy wants a duration string: kube-proxy would not start with it, so it is
    listed in KubeProxy.refused (tests/test_kubeproxy_shapes.py) and never becomes the path timeout."""
    text = V1ALPHA1_YAML.replace("2h0m0s", "86400").replace("maxPerCore: 32768", "maxPerCore: lots")
    config = write(tmp_path, "kp.yaml", text)
    report = keepalive.check(
        proc_root=make_proc(tmp_path / "proc", {"net.netfilter.nf_conntrack_tcp_timeout_established": 7000}),
        policy=POLICY,
        kube_proxy_config=config,
    )
    assert source(report, "kube-proxy conntrack.tcpEstablishedTimeout").value is None
    assert source(report, "kube-proxy conntrack.maxPerCore").value is None
    assert report.path_timeout == 7000  # the node's sysctl, not 86400


def test_kube_proxy_run_by_flags_limits_the_path(tmp_path: Path) -> None:
    """The issue's command line: it used to yield "no KubeProxyConfiguration found" and only the sysctl."""
    config = write(tmp_path, "kube-proxy.cmdline", "--proxy-mode=ipvs --conntrack-tcp-timeout-established=1h0m0s\n")
    report = keepalive.check(proc_root=make_proc(tmp_path / "proc"), policy=POLICY, kube_proxy_config=config)
    assert source(report, "kube-proxy mode").value == "ipvs"
    assert source(report, "kube-proxy conntrack.tcpEstablishedTimeout").value == 3600
    assert source(report, "kube-proxy ipvs.tcpTimeout").value == 900
    assert report.path_timeout == 900


def test_kubeadm_configmap_nulls_are_kube_proxy_defaults_not_unknown(tmp_path: Path) -> None:
    config = str(Path(__file__).parent / "data" / "kube-proxy" / "kubeadm-configmap.yaml")
    report = keepalive.check(proc_root=make_proc(tmp_path / "proc"), policy=POLICY, kube_proxy_config=config)
    assert source(report, "kube-proxy conntrack.tcpEstablishedTimeout").value == 86400
    assert source(report, "kube-proxy conntrack.maxPerCore").value == 32768
    assert source(report, "kube-proxy conntrack.min").value == 131072
    assert source(report, "kube-proxy conntrack.tcpBeLiberal").value is False


def test_json_configmap_is_read_without_pyyaml(tmp_path: Path) -> None:
    """kubectl -o json of kubeadm's ConfigMap needs no PyYAML: neither the hint nor "no KubeProxyConfiguration"."""
    code = (
        "import sys; sys.modules['yaml'] = None\n"
        "import keepalive\n"
        f"report = keepalive.check(proc_root={str(make_proc(tmp_path / 'proc'))!r}, "
        f"policy=keepalive.Policy(idle=60, interval=10, count=5), "
        f"kube_proxy_config={str(Path(__file__).parent / 'data' / 'kube-proxy' / 'kubeadm-configmap.json')!r})\n"
        "print([f.code for f in report.findings if f.code.startswith('kube-proxy-')])\n"
        "print(next(s.value for s in report.sources if s.name == 'kube-proxy conntrack.maxPerCore'))\n"
    )
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    codes_line, max_per_core = out.splitlines()
    assert "kube-proxy-unreadable" not in codes_line
    assert max_per_core == "32768"


def test_missing_config_file_is_a_warning(tmp_path: Path) -> None:
    report = keepalive.check(
        proc_root=make_proc(tmp_path / "proc"), policy=POLICY, kube_proxy_config=tmp_path / "missing.yaml"
    )
    finding = next(f for f in report.findings if f.code == "kube-proxy-unreadable")
    assert "no such file" in finding.message
    assert report.exit_code == 1


def test_env_names_the_config_file(tmp_path: Path) -> None:
    config = write(tmp_path, "kp.yaml", V1ALPHA1_YAML)
    report = keepalive.check(
        proc_root=make_proc(tmp_path / "proc"), policy=POLICY, environ={"KEEPALIVE_KUBE_PROXY_CONFIG": config}
    )
    assert report.path_timeout == 7200


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: ClassVar[dict[str, tuple[int, bytes]]] = {}

    def do_GET(self) -> None:
        status, body = self.routes.get(self.path, (404, b"not found"))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def configz() -> Iterator[tuple[str, dict[str, tuple[int, bytes]]]]:
    """A real HTTP server on 127.0.0.1 standing in for kube-proxy's metrics port."""
    routes: dict[str, tuple[int, bytes]] = {}
    handler = type("Handler", (_Handler,), {"routes": routes})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", routes
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_configz_of_the_internal_type_is_read(
    tmp_path: Path, configz: tuple[str, dict[str, tuple[int, bytes]]]
) -> None:
    base, routes = configz
    routes["/configz"] = (200, json.dumps(CONFIGZ_INTERNAL).encode())
    proc = make_proc(tmp_path / "proc", nf_stat=nf_stat_text([{"invalid": 4}]))
    report = keepalive.check(proc_root=proc, policy=POLICY, kube_proxy_url=base)  # /configz appended
    assert source(report, "kube-proxy conntrack.tcpEstablishedTimeout").value == 3600
    assert source(report, "kube-proxy conntrack.tcpBeLiberal").value is True
    assert source(report, "kube-proxy ipvs.tcpTimeout").value == 600
    assert report.path_timeout == 600
    assert source(report, "kube-proxy mode").origin == base + "/configz"
    assert "conntrack-invalid-packets" not in codes(report)


def test_configz_of_older_versions_is_read(tmp_path: Path, configz: tuple[str, dict[str, tuple[int, bytes]]]) -> None:
    base, routes = configz
    routes["/configz"] = (200, json.dumps(CONFIGZ_OLD).encode())
    report = keepalive.check(proc_root=make_proc(tmp_path / "proc"), policy=POLICY, kube_proxy_url=base + "/configz")
    assert source(report, "kube-proxy conntrack.tcpEstablishedTimeout").value == 86400
    assert source(report, "kube-proxy conntrack.tcpCloseWaitTimeout").value is None  # /configz: no defaulting


def test_configz_errors_are_warnings(tmp_path: Path, configz: tuple[str, dict[str, tuple[int, bytes]]]) -> None:
    base, routes = configz
    routes["/configz"] = (200, b"\x00\x01garbage")
    report = keepalive.check(proc_root=make_proc(tmp_path / "proc"), policy=POLICY, kube_proxy_url=base)
    assert "binary" in next(f for f in report.findings if f.code == "kube-proxy-unreadable").message
    report = keepalive.check(proc_root=make_proc(tmp_path / "proc"), policy=POLICY, kube_proxy_url=base + "/nope")
    assert "HTTP 404" in next(f for f in report.findings if f.code == "kube-proxy-unreadable").message


def test_configz_unreachable_port_is_a_warning(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    report = keepalive.check(
        proc_root=make_proc(tmp_path / "proc"), policy=POLICY, kube_proxy_url=f"http://127.0.0.1:{port}/configz"
    )
    assert "cannot reach" in next(f for f in report.findings if f.code == "kube-proxy-unreadable").message


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1:10249/configz",
        "http://example.com/configz",
        "ftp://127.0.0.1/configz",
        "file:///etc/passwd",
        "http://[2001:db8::1]:10249/",
        "http://127.0.0.1:notaport/",
        "http:///configz",
    ],
)
def test_non_loopback_urls_are_refused_before_connecting(tmp_path: Path, url: str) -> None:
    from keepalive._path._kubeproxy import NotLoopback

    with pytest.raises(NotLoopback):
        keepalive.check(proc_root=tmp_path, policy=POLICY, kube_proxy_url=url)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:10249/configz",
        "http://[::1]:10249",
        "http://localhost:10249/configz",
        "https://127.0.0.2:10249/configz",
    ],
)
def test_loopback_urls_are_accepted(url: str) -> None:
    from keepalive._path._kubeproxy import loopback_url

    assert loopback_url(url).endswith("/configz")


def test_absent_file_named_by_the_environment_is_only_info(tmp_path: Path) -> None:
    """An optional ConfigMap mount that is empty on this cluster: unknown, not a warning every round."""
    report = keepalive.check(
        proc_root=make_proc(tmp_path / "proc"),
        policy=POLICY,
        environ={"KEEPALIVE_KUBE_PROXY_CONFIG": str(tmp_path / "config.conf")},
    )
    finding = next(f for f in report.findings if f.code == "kube-proxy-unreadable")
    assert finding.severity is Severity.INFO
    assert report.exit_code == 0


def test_check_finds_a_running_kube_proxy_in_the_proc_root_and_reads_its_flags(tmp_path: Path) -> None:
    """A hostPID checker sees kube-proxy's command line under the proc root: its IPVS mode and established
    timeout are node evidence (the path timeout is their minimum; the default is not loosened by them)."""
    proc = make_proc(tmp_path / "proc")
    process = proc / "4242"
    process.mkdir()
    (process / "cmdline").write_bytes(
        b"/usr/local/bin/kube-proxy\0--proxy-mode=ipvs\0--conntrack-tcp-timeout-established=1h0m0s\0"
    )
    report = keepalive.check(proc_root=proc, policy=POLICY)
    assert source(report, "kube-proxy mode").value == "ipvs"
    assert source(report, "kube-proxy mode").origin == "kube-proxy process 4242"
    assert source(report, "kube-proxy conntrack.tcpEstablishedTimeout").value == 3600
    assert report.path_timeout == 900  # IPVS's kernel timeout, the shorter of the two
    assert report.recommended_policy == keepalive.BUILTIN_POLICY


def test_check_reports_a_field_kube_proxy_would_refuse_as_a_warning(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        "kp.yaml",
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nconntrack: 5\n",
    )
    report = keepalive.check(proc_root=make_proc(tmp_path / "proc"), policy=POLICY, kube_proxy_config=config)
    assert codes(report)["kube-proxy-config-refused"] is Severity.WARNING
