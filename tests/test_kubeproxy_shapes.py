"""Every shape --kube-proxy-config takes, read the way kube-proxy reads it: the real-shaped samples in
tests/data/kube-proxy, flags and their precedence, null fields, truncated durations, and refused fields."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from keepalive._path._kubeproxy import KubeProxy, parse_kube_proxy, read_kube_proxy_file

DATA = Path(__file__).parent / "data" / "kube-proxy"
ALL_DEFAULTS = ("maxPerCore", "min", "tcpEstablishedTimeout", "tcpCloseWaitTimeout")


def read(name: str) -> KubeProxy:
    proxy, reason = read_kube_proxy_file(str(DATA / name))
    assert reason is None, reason
    assert proxy is not None
    return proxy


def parse(text: str) -> KubeProxy:
    proxy, reason = parse_kube_proxy(text, "test")
    assert reason is None, reason
    assert proxy is not None
    return proxy


@pytest.mark.parametrize("name", ["kubeadm-configmap.yaml", "kubeadm-configmap.json"])
def test_kubeadm_configmap_with_null_conntrack_fields_means_kube_proxy_s_defaults(name: str) -> None:
    proxy = read(name)
    assert proxy.effective_mode == "iptables"
    assert proxy.tcp_established_timeout == 86400
    assert proxy.tcp_close_wait_timeout == 3600
    assert proxy.max_per_core == 32768
    assert proxy.min == 131072
    assert proxy.tcp_be_liberal is False
    assert proxy.ipvs_timeout is None
    assert set(ALL_DEFAULTS) <= set(proxy.defaulted)
    assert "tcpBeLiberal" not in proxy.defaulted  # the file says false
    assert proxy.problems == proxy.refused == ()


def test_json_configmap_holding_json_needs_no_pyyaml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "yaml", None)
    inner = {"kind": "KubeProxyConfiguration", "mode": "ipvs", "ipvs": {"tcpTimeout": "10m"}}
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"whatever.json": json.dumps(inner)}}
    proxy = parse(json.dumps(configmap))
    assert proxy.ipvs_timeout == 600


def test_yaml_without_pyyaml_gives_the_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "yaml", None)
    proxy, reason = read_kube_proxy_file(str(DATA / "kubeadm-configmap.yaml"))
    assert proxy is None
    assert reason is not None
    assert "pip install 'tcp-keepalive[yaml]'" in reason


def test_multi_document_kubeadm_file_with_ipvs_means_the_kernel_s_900_seconds() -> None:
    proxy = read("kubeadm-init-ipvs.yaml")
    assert proxy.effective_mode == "ipvs"
    assert proxy.ipvs_tcp_timeout == 0
    assert proxy.ipvs_timeout == 900
    assert proxy.tcp_established_timeout == 86400


def test_configz_of_kube_proxy_1_30_is_read_without_defaults() -> None:
    proxy, reason = parse_kube_proxy((DATA / "configz.json").read_text(), "configz", apply_defaults=False)
    assert reason is None
    assert proxy is not None
    assert (proxy.mode, proxy.tcp_established_timeout, proxy.tcp_close_wait_timeout) == ("iptables", 86400, 3600)
    assert (proxy.max_per_core, proxy.min, proxy.tcp_be_liberal) == (32768, 131072, False)
    assert proxy.defaulted == proxy.refused == proxy.problems == ()


def test_daemonset_run_by_flags_through_go_runner_reads_the_flags_and_expands_env() -> None:
    proxy = read("daemonset-flags.yaml")
    assert "DaemonSet kube-system/kube-proxy container kube-proxy" in proxy.origin
    assert proxy.effective_mode == "ipvs"
    assert proxy.tcp_established_timeout == 3600
    assert proxy.max_per_core == 131072
    assert proxy.ipvs_tcp_timeout == 900  # $(IPVS_TCP_TIMEOUT) = 15m from the container's env
    assert proxy.ipvs_timeout == 900
    assert set(proxy.defaulted) == {"tcpCloseWaitTimeout", "min", "tcpBeLiberal"}
    assert proxy.tcp_close_wait_timeout == 3600
    assert proxy.min == 131072


def test_gke_shell_command_line_in_a_file_reads_flags_with_separate_values_and_bare_booleans() -> None:
    proxy = read("gke-command-line.txt")
    assert proxy.tcp_established_timeout == 1800  # --conntrack-tcp-timeout-established 30m
    assert proxy.tcp_be_liberal is True  # bare --conntrack-tcp-be-liberal
    assert proxy.effective_mode == "iptables"


@pytest.mark.parametrize("name", ["kubeadm-daemonset.yaml", "pod-config.yaml"])
def test_manifest_whose_config_is_in_a_configmap_elsewhere_says_which_one(name: str) -> None:
    proxy, reason = read_kube_proxy_file(str(DATA / name))
    assert proxy is None
    assert reason is not None
    assert "--config /var/lib/kube-proxy/config.conf" in reason
    assert "ConfigMap 'kube-proxy'" in reason
    assert "'config.conf'" in reason


def test_kubeadm_addon_output_reads_the_configmap_the_daemonset_mounts(tmp_path: Path) -> None:
    """kubeadm's addon phase prints the ConfigMap and the DaemonSet together: the --config file is found."""
    configmap = (
        (DATA / "kubeadm-configmap.yaml")
        .read_text()
        .replace("tcpEstablishedTimeout: null", "tcpEstablishedTimeout: 2h")
    )
    both = tmp_path / "addon.yaml"
    both.write_text((DATA / "kubeadm-daemonset.yaml").read_text() + "\n---\n" + configmap)
    proxy, reason = read_kube_proxy_file(str(both))
    assert reason is None, reason
    assert proxy is not None
    assert proxy.tcp_established_timeout == 7200
    assert "ConfigMap kube-proxy, key config.conf" in proxy.origin


def test_pod_whose_config_is_a_host_path_reads_that_file(tmp_path: Path) -> None:
    host = tmp_path / "host" / "kube-proxy"
    host.mkdir(parents=True)
    (host / "config.conf").write_text("kind: KubeProxyConfiguration\nmode: ipvs\nipvs:\n  tcpTimeout: 5m\n")
    manifest = (DATA / "pod-config.yaml").read_text()
    manifest = manifest.replace(
        "  - configMap:\n      defaultMode: 420\n      name: kube-proxy\n    name: kube-proxy\n",
        f"  - hostPath:\n      path: {host}\n    name: kube-proxy\n",
    )
    pod = tmp_path / "pod.yaml"
    pod.write_text(manifest)
    proxy, reason = read_kube_proxy_file(str(pod))
    assert reason is None, reason
    assert proxy is not None
    assert proxy.ipvs_timeout == 300
    assert any("--config /var/lib/kube-proxy/config.conf" in note for note in proxy.notes)


def test_kubectl_list_of_daemonsets_is_searched(tmp_path: Path) -> None:
    import yaml

    daemonset = yaml.safe_load((DATA / "daemonset-flags.yaml").read_text())
    listing = {"apiVersion": "v1", "kind": "List", "items": [{"kind": "Service", "apiVersion": "v1"}, daemonset]}
    proxy = parse(json.dumps(listing))
    assert proxy.tcp_established_timeout == 3600


@pytest.mark.parametrize(
    "text",
    [
        "--proxy-mode=ipvs --conntrack-tcp-timeout-established=1h0m0s\n",
        "kube-proxy --proxy-mode ipvs --conntrack-tcp-timeout-established 1h0m0s\n",
        "/usr/local/bin/kube-proxy \\\n  --proxy-mode=ipvs \\\n  --conntrack-tcp-timeout-established=1h0m0s\n",
        "# saved from ps\nhyperkube proxy --proxy-mode=ipvs --conntrack_tcp_timeout_established=1h0m0s\n",
    ],
)
def test_command_line_files_are_read_as_flags(text: str) -> None:
    """The issue's example: flags that used to yield "no KubeProxyConfiguration found"."""
    proxy = parse(text)
    assert proxy.effective_mode == "ipvs"
    assert proxy.tcp_established_timeout == 3600
    assert proxy.ipvs_timeout == 900


def test_proc_cmdline_copy_is_read(tmp_path: Path) -> None:
    path = tmp_path / "cmdline"
    path.write_bytes(b"/usr/local/bin/kube-proxy\x00--proxy-mode=ipvs\x00--ipvs-tcp-timeout=10m\x00")
    proxy, reason = read_kube_proxy_file(str(path))
    assert reason is None
    assert proxy is not None
    assert proxy.ipvs_timeout == 600


def test_the_last_occurrence_of_a_flag_wins_and_double_dash_ends_the_flags() -> None:
    proxy = parse(
        "kube-proxy --conntrack-min=1 --conntrack-min=2 --conntrack-max-per-core 0x100 -- --conntrack-min=3\n"
    )
    assert proxy.min == 2
    assert proxy.max_per_core == 256


def test_flags_are_ignored_when_config_is_given_as_kube_proxy_does(tmp_path: Path) -> None:
    config = tmp_path / "config.conf"
    config.write_text('{"kind": "KubeProxyConfiguration", "conntrack": {"tcpEstablishedTimeout": "2h"}}')
    proxy = parse(f"kube-proxy --proxy-mode=ipvs --conntrack-tcp-timeout-established=5m --config={config}\n")
    assert proxy.tcp_established_timeout == 7200
    assert proxy.effective_mode == "iptables"
    ignored = next(note for note in proxy.notes if "kube-proxy ignores these flags" in note)
    assert "--proxy-mode=ipvs" in ignored
    assert "--conntrack-tcp-timeout-established=5m" in ignored


def test_config_flag_naming_a_missing_file_says_so(tmp_path: Path) -> None:
    proxy, reason = parse_kube_proxy(f"kube-proxy --config {tmp_path}/nope.conf\n", "cmd")
    assert proxy is None
    assert reason is not None
    assert f"--config {tmp_path}/nope.conf" in reason
    assert "no such file" in reason


@pytest.mark.parametrize(
    ("yaml_value", "seconds"),
    [("1.5s", 1), ("90m", 5400), ("1h0m0s", 3600), ("0.9s", 0), ("2562047h", 2562047 * 3600), ('"0"', 0)],
)
def test_durations_are_truncated_to_whole_seconds_as_kube_proxy_writes_them(yaml_value: str, seconds: int) -> None:
    proxy = parse(f"kind: KubeProxyConfiguration\nconntrack:\n  tcpEstablishedTimeout: {yaml_value}\n")
    assert proxy.tcp_established_timeout == seconds
    assert proxy.refused == ()


def test_a_sub_second_duration_is_noted_as_written_zero() -> None:
    proxy = parse("kind: KubeProxyConfiguration\nconntrack:\n  tcpEstablishedTimeout: 500ms\n")
    assert proxy.tcp_established_timeout == 0
    assert any("written as 0 s" in note and "expire at once" in note for note in proxy.notes)


@pytest.mark.parametrize(
    ("text", "field", "value_attr"),
    [
        ("kind: KubeProxyConfiguration\nconntrack: 5\n", "conntrack", None),
        (
            "kind: KubeProxyConfiguration\nconntrack:\n  tcpEstablishedTimeout: -1h\n",
            "tcpEstablishedTimeout",
            "tcp_established_timeout",
        ),
        (
            "kind: KubeProxyConfiguration\nconntrack:\n  tcpEstablishedTimeout: 86400\n",
            "tcpEstablishedTimeout",
            "tcp_established_timeout",
        ),
        (
            "kind: KubeProxyConfiguration\nconntrack:\n  tcpCloseWaitTimeout: 1d\n",
            "tcpCloseWaitTimeout",
            "tcp_close_wait_timeout",
        ),
        ("kind: KubeProxyConfiguration\nconntrack:\n  maxPerCore: lots\n", "maxPerCore", "max_per_core"),
        ("kind: KubeProxyConfiguration\nconntrack:\n  maxPerCore: '32768'\n", "maxPerCore", "max_per_core"),
        ("kind: KubeProxyConfiguration\nconntrack:\n  min: -1\n", "min", "min"),
        ("kind: KubeProxyConfiguration\nconntrack:\n  min: 4294967296\n", "min", "min"),
        ("kind: KubeProxyConfiguration\nconntrack:\n  tcpBeLiberal: 'true'\n", "tcpBeLiberal", "tcp_be_liberal"),
        ("kind: KubeProxyConfiguration\nipvs:\n  tcpTimeout: -5m\n", "ipvs.tcpTimeout", "ipvs_tcp_timeout"),
        ("kind: KubeProxyConfiguration\nipvs:\n  tcpTimeout: 0\n", "ipvs.tcpTimeout", "ipvs_tcp_timeout"),
        ("kind: KubeProxyConfiguration\nmode: IPVS\n", "mode", "mode"),
        ("kind: KubeProxyConfiguration\nmode: 3\n", "mode", "mode"),
        (
            "kube-proxy --conntrack-tcp-timeout-established=1d\n",
            "--conntrack-tcp-timeout-established=1d",
            "tcp_established_timeout",
        ),
        ("kube-proxy --conntrack-min=-5\n", "--conntrack-min=-5", "min"),
        ("kube-proxy --conntrack-max-per-core=lots\n", "--conntrack-max-per-core=lots", "max_per_core"),
        ("kube-proxy --conntrack-tcp-be-liberal=yes\n", "--conntrack-tcp-be-liberal=yes", "tcp_be_liberal"),
        ("kube-proxy --proxy-mode=kernelspace\n", "--proxy-mode=kernelspace", "mode"),
        ("kube-proxy --ipvs-tcp-timeout\n", "--ipvs-tcp-timeout", "ipvs_tcp_timeout"),
    ],
)
def test_fields_kube_proxy_refuses_are_listed_as_refused_not_used(
    text: str, field: str, value_attr: str | None
) -> None:
    proxy = parse(text)
    assert len(proxy.refused) == 1, proxy.refused
    assert field in proxy.refused[0]
    assert "kube-proxy refuses to start with it" in proxy.refused[0]
    assert proxy.problems == ()
    if value_attr is not None:
        assert getattr(proxy, value_attr) is None


def test_configz_oddities_are_problems_not_refusals() -> None:
    """/configz is what a running kube-proxy uses: something we can't read there is ours, not a refusal."""
    body = json.dumps({"kubeproxy.config.k8s.io": {"Mode": "ipvs", "Linux": {"Conntrack": {"MaxPerCore": "x"}}}})
    proxy, _ = parse_kube_proxy(body, "configz", apply_defaults=False)
    assert proxy is not None
    assert proxy.refused == ()
    assert len(proxy.problems) == 1
    assert "MaxPerCore" in proxy.problems[0] or "maxPerCore" in proxy.problems[0]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("{not json", "not valid"),
        ("just: [unclosed", "not valid YAML"),
        ("- a\n- b\n", "no KubeProxyConfiguration"),
        ("apiVersion: v1\nkind: Service\nmetadata:\n  name: x\n", "no KubeProxyConfiguration"),
        ("kube-proxy --config='unclosed\n", "cannot be split"),
        ("kube-proxy --config=\n", "--config is empty"),
    ],
)
def test_unreadable_files_give_a_reason_and_never_raise(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "kp.yaml"
    path.write_text(text)
    proxy, why = read_kube_proxy_file(str(path))
    assert proxy is None
    assert why is not None
    assert reason in why


def test_an_empty_path_is_named_as_such() -> None:
    assert read_kube_proxy_file("") == (None, "an empty path: name the kube-proxy configuration file")


def test_an_unknown_flag_does_not_swallow_the_next_flag() -> None:
    """kube-proxy has boolean flags this reader does not know; --proxy-mode after one is still read."""
    proxy = parse("kube-proxy --some-future-boolean --proxy-mode=ipvs --kubeconfig /etc/kubeconfig --conntrack-min 7\n")
    assert proxy.effective_mode == "ipvs"
    assert proxy.min == 7
