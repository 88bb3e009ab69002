"""keepalive.check() on fake proc trees: one test per rule, plus bad input of every kind."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import keepalive
from keepalive import Policy, Severity
from keepalive.checker import _runtime as checker_runtime
from tests.checker_support import NF_HEADER_OLD, make_proc, nf_stat_text

POLICY = Policy(idle=60, interval=10, count=5)


@pytest.fixture(autouse=True)
def _fresh_checker() -> Iterator[None]:
    checker_runtime.reset()
    yield
    checker_runtime.reset()


def codes(report: keepalive.Report) -> dict[str, Severity]:
    return {f.code: f.severity for f in report.findings}


def source(report: keepalive.Report, name: str) -> keepalive.Source:
    return next(s for s in report.sources if s.name == name)


def test_healthy_node_is_ok_and_reads_every_sysctl(tmp_path: Path) -> None:
    proc = make_proc(tmp_path)
    report = keepalive.check(proc_root=proc, policy=POLICY)
    assert report.exit_code == 0
    assert report.path_timeout == 86400
    assert report.namespace == "initial"
    assert codes(report) == {"policy-fits-path-timeout": Severity.OK}
    established = source(report, "net.netfilter.nf_conntrack_tcp_timeout_established")
    assert established.value == 86400
    assert established.limits_path
    assert established.origin == str(proc / "sys/net/netfilter/nf_conntrack_tcp_timeout_established")
    assert source(report, "net.ipv4.tcp_keepalive_probes").value == 9
    assert source(report, "net.netfilter.nf_conntrack_max").value == 262144


def test_policy_idle_at_or_above_path_timeout_is_an_error(tmp_path: Path) -> None:
    proc = make_proc(tmp_path, {"net.netfilter.nf_conntrack_tcp_timeout_established": 300})
    report = keepalive.check(proc_root=proc, policy=Policy(idle=300, interval=10, count=5))
    finding = next(f for f in report.findings if f.code == "policy-idle-exceeds-path-timeout")
    assert finding.severity is Severity.ERROR
    assert "300 s" in finding.message
    # a node-found timeout looser than the built-in default: the built-in default is recommended
    assert "KEEPALIVE_IDLE=60 KEEPALIVE_INTERVAL=10" in finding.fix
    assert "policy=keepalive.Policy(idle=60, interval=10, count=5)" in finding.fix
    assert report.exit_code == 2


def test_recommended_policy_is_below_of_the_smallest_timeout(tmp_path: Path) -> None:
    proc = make_proc(tmp_path)
    report = keepalive.check(proc_root=proc, policy=POLICY, middleboxes="aws-nat-gateway,gcp-cloud-nat")
    assert report.path_timeout == 350
    assert report.path_timeout_origin == "middlebox aws-nat-gateway from argument"
    assert report.recommended_policy == Policy.below(350)


def test_second_probe_after_path_timeout_is_a_warning(tmp_path: Path) -> None:
    proc = make_proc(tmp_path)
    report = keepalive.check(proc_root=proc, policy=Policy(idle=230, interval=15, count=3), middleboxes="azure-lb")
    assert codes(report)["policy-second-probe-late"] is Severity.WARNING
    assert report.exit_code == 1


def test_kernel_keepalive_time_above_path_timeout_warns_with_sysctl_fix(tmp_path: Path) -> None:
    proc = make_proc(tmp_path)
    report = keepalive.check(proc_root=proc, policy=POLICY, path_timeout=350)
    finding = next(f for f in report.findings if f.code == "kernel-keepalive-exceeds-path-timeout")
    assert finding.severity is Severity.WARNING
    assert "7200 s" in finding.message
    below = Policy.below(350)
    assert f"net.ipv4.tcp_keepalive_time={below.idle}" in finding.fix
    assert finding.data["tcp_keepalive_time"] == 7200


def test_conntrack_table_over_90_percent_warns(tmp_path: Path) -> None:
    proc = make_proc(tmp_path, {"net.netfilter.nf_conntrack_count": 950, "net.netfilter.nf_conntrack_max": 1000})
    report = keepalive.check(proc_root=proc, policy=POLICY)
    finding = next(f for f in report.findings if f.code == "conntrack-table-nearly-full")
    assert finding.severity is Severity.WARNING
    assert "950 of 1000" in finding.message
    assert "nf_conntrack_max" in finding.fix
    assert "--conntrack-max-per-core" in finding.fix


def test_conntrack_table_at_90_percent_is_fine(tmp_path: Path) -> None:
    proc = make_proc(tmp_path, {"net.netfilter.nf_conntrack_count": 900, "net.netfilter.nf_conntrack_max": 1000})
    assert "conntrack-table-nearly-full" not in codes(keepalive.check(proc_root=proc, policy=POLICY))


def test_invalid_packets_with_be_liberal_off_warn_and_name_the_kube_proxy_flag(tmp_path: Path) -> None:
    stat = nf_stat_text([{"invalid": 5}, {"invalid": 0x10}])
    proc = make_proc(tmp_path, nf_stat=stat)
    report = keepalive.check(proc_root=proc, policy=POLICY)
    finding = next(f for f in report.findings if f.code == "conntrack-invalid-packets")
    assert finding.severity is Severity.WARNING
    assert "21 invalid packets" in finding.message  # 5 + 0x10, summed over CPUs
    assert "--conntrack-tcp-be-liberal" in finding.fix
    assert report.conntrack["invalid"] == 21


def test_invalid_packets_with_be_liberal_on_are_info(tmp_path: Path) -> None:
    stat = nf_stat_text([{"invalid": 5}])
    proc = make_proc(tmp_path, {"net.netfilter.nf_conntrack_tcp_be_liberal": 1}, nf_stat=stat)
    found = codes(keepalive.check(proc_root=proc, policy=POLICY))
    assert found["conntrack-invalid-packets-liberal"] is Severity.INFO
    assert "conntrack-invalid-packets" not in found


def test_stat_columns_are_parsed_by_header_for_older_kernels(tmp_path: Path) -> None:
    stat = nf_stat_text([{"invalid": 3, "drop": 1, "searched": 99}, {"invalid": 4}], header=NF_HEADER_OLD)
    report = keepalive.check(proc_root=make_proc(tmp_path, nf_stat=stat), policy=POLICY)
    assert report.conntrack["invalid"] == 7
    assert report.conntrack["drop"] == 1
    assert report.conntrack["searched"] == 99
    assert report.conntrack["entries"] == 1000  # the table size, the same on every row: not summed
    assert codes(report)["conntrack-drops"] is Severity.WARNING


def test_insert_failed_is_info(tmp_path: Path) -> None:
    stat = nf_stat_text([{"insert_failed": 2}])
    found = codes(keepalive.check(proc_root=make_proc(tmp_path, nf_stat=stat), policy=POLICY))
    assert found["conntrack-insert-failed"] is Severity.INFO


def test_close_wait_shorter_than_idle_is_info(tmp_path: Path) -> None:
    proc = make_proc(tmp_path, {"net.netfilter.nf_conntrack_tcp_timeout_close_wait": 30})
    report = keepalive.check(proc_root=proc, policy=POLICY)
    finding = next(f for f in report.findings if f.code == "close-wait-shorter-than-idle")
    assert finding.severity is Severity.INFO
    assert "30 s" in finding.message
    assert "nf_conntrack_tcp_timeout_close_wait" in finding.fix


def test_loose_off_is_info(tmp_path: Path) -> None:
    proc = make_proc(tmp_path, {"net.netfilter.nf_conntrack_tcp_loose": 0})
    assert codes(keepalive.check(proc_root=proc, policy=POLICY))["conntrack-loose-off"] is Severity.INFO


@pytest.mark.parametrize("entries", [0, 3])
def test_non_initial_namespace_kernel_default_is_not_the_path_timeout(tmp_path: Path, entries: int) -> None:
    """432000 s in a pod's namespace is the kernel default it started with, not the node's: never the path timeout,
    whether or not conntrack entries exist at the moment."""
    proc = make_proc(
        tmp_path,
        {"net.netfilter.nf_conntrack_tcp_timeout_established": 432000, "net.netfilter.nf_conntrack_count": entries},
        initial=False,
    )
    report = keepalive.check(proc_root=proc, policy=POLICY)
    assert report.namespace == "non-initial"
    finding = next(f for f in report.findings if f.code == "non-initial-namespace")
    assert finding.severity is Severity.INFO
    assert "kernel default" in finding.message
    assert "hostNetwork" in finding.fix
    established = source(report, "net.netfilter.nf_conntrack_tcp_timeout_established")
    assert established.value == 432000
    assert not established.limits_path
    assert established.note
    assert "not the node's value" in established.note
    assert report.path_timeout is None


@pytest.mark.parametrize("entries", [0, 3])
def test_non_initial_namespace_value_set_on_purpose_is_the_path_timeout(tmp_path: Path, entries: int) -> None:
    """Issue 14: a pod namespace's nf_conntrack_tcp_timeout_established=5 differs from the kernel default, so
    someone set it and it counts; the verdict does not flip with whether a conntrack entry exists."""
    proc = make_proc(
        tmp_path,
        {"net.netfilter.nf_conntrack_tcp_timeout_established": 5, "net.netfilter.nf_conntrack_count": entries},
        initial=False,
    )
    report = keepalive.check(proc_root=proc, policy=Policy(idle=200, interval=10, count=5))
    assert report.path_timeout == 5
    assert codes(report)["policy-idle-exceeds-path-timeout"] is Severity.ERROR
    assert report.exit_code == 2
    assert report.recommended_policy == Policy.below(5)
    finding = next(f for f in report.findings if f.code == "non-initial-namespace")
    assert "set here on purpose" in finding.message


def test_node_timeout_longer_than_builtin_recommends_builtin(tmp_path: Path) -> None:
    report = keepalive.check(proc_root=make_proc(tmp_path), policy=POLICY)
    assert report.path_timeout == 86400
    assert report.recommended_policy == keepalive.BUILTIN_POLICY
    assert "built-in default" in report.recommended_origin


@pytest.mark.parametrize("make", ["missing", "empty", "file"])
def test_a_proc_root_argument_that_is_not_a_proc_tree_is_refused_by_name(tmp_path: Path, make: str) -> None:
    """Issue 14: an unmounted hostPath (empty directory) or a missing path is not "nothing expires here"."""
    root = tmp_path / "host-proc"
    if make == "empty":
        root.mkdir()
    elif make == "file":
        root.write_text("")
    with pytest.raises(ValueError, match=f"proc root {root}"):
        keepalive.check(proc_root=root, policy=POLICY)


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_a_proc_root_from_the_environment_that_is_not_a_proc_tree_is_an_error(tmp_path: Path, make: str) -> None:
    root = tmp_path / "host-proc"
    if make == "empty":
        root.mkdir()
    report = keepalive.check(policy=POLICY, environ={"KEEPALIVE_PROC_ROOT": str(root)})
    assert report.exit_code == 2
    finding = codes(report)
    assert finding["proc-root-invalid"] is Severity.ERROR
    assert "conntrack-not-loaded" not in finding
    error = next(f for f in report.findings if f.code == "proc-root-invalid")
    assert str(root) in error.message
    assert all(s.value is None for s in report.sources if s.name.startswith("net."))


def test_a_zero_established_timeout_is_a_finding_not_silence(tmp_path: Path) -> None:
    """Issue 14: nf_conntrack_tcp_timeout_established=0 was silently ignored."""
    proc = make_proc(tmp_path, {"net.netfilter.nf_conntrack_tcp_timeout_established": 0})
    report = keepalive.check(proc_root=proc, policy=POLICY)
    assert codes(report)["conntrack-timeout-zero"] is Severity.WARNING
    assert report.exit_code == 1
    assert report.path_timeout is None


def test_an_empty_kube_proxy_config_argument_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="kube_proxy_config: empty path"):
        keepalive.check(proc_root=make_proc(tmp_path), policy=POLICY, kube_proxy_config="")


def test_conntrack_not_loaded_is_one_info(tmp_path: Path) -> None:
    proc = make_proc(
        tmp_path,
        dict.fromkeys(
            (
                "net.netfilter.nf_conntrack_tcp_timeout_established",
                "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
                "net.netfilter.nf_conntrack_tcp_be_liberal",
                "net.netfilter.nf_conntrack_tcp_loose",
                "net.netfilter.nf_conntrack_count",
                "net.netfilter.nf_conntrack_max",
                "net.netfilter.nf_conntrack_buckets",
            )
        ),
    )
    (proc / "net/stat/nf_conntrack").unlink()
    report = keepalive.check(proc_root=proc, policy=POLICY)
    found = [f.code for f in report.findings]
    assert found.count("conntrack-not-loaded") == 1
    assert "source-unreadable" not in found
    assert source(report, "net.ipv4.tcp_keepalive_time").value == 7200


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"abc\n", "not an integer"),
        (b"\x00\x01\x02", "binary"),
        (b"\xff\xfe\n", "not UTF-8"),
        (b"1 2\n", "expected one integer"),
        (b"-5\n", "negative"),
        (b"9" * 400 + b"\n", "too large"),
    ],
)
def test_garbage_sysctl_is_unknown_with_the_reason(tmp_path: Path, content: bytes, reason: str) -> None:
    proc = make_proc(tmp_path, {"net.netfilter.nf_conntrack_tcp_timeout_established": content})
    report = keepalive.check(proc_root=proc, policy=POLICY)
    established = source(report, "net.netfilter.nf_conntrack_tcp_timeout_established")
    assert established.value is None
    assert established.reason is not None
    assert reason in established.reason
    finding = next(f for f in report.findings if "nf_conntrack_tcp_timeout_established" in f.message)
    assert finding.code == "source-unreadable"
    assert finding.severity is Severity.INFO


def test_huge_but_valid_numbers_are_taken_as_they_are(tmp_path: Path) -> None:
    proc = make_proc(
        tmp_path,
        {"net.netfilter.nf_conntrack_tcp_timeout_established": 2**63 - 1, "net.netfilter.nf_conntrack_count": 2**40},
    )
    report = keepalive.check(proc_root=proc, policy=POLICY)
    assert report.path_timeout == float(2**63 - 1)
    json.loads(report.to_json())
    assert "keepalive_check_path_timeout_seconds" in report.to_prometheus()


def _reasons_as_nobody(proc: Path) -> dict[str, str | None]:
    """Run the check in a forked child that dropped root for user nobody; its sources' reasons, by name."""
    import warnings

    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() in a threaded process (3.12+)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        status = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            report = keepalive.check(proc_root=proc, policy=POLICY)
            os.write(write_end, json.dumps({s.name: s.reason for s in report.sources}).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    result: dict[str, str | None] = json.loads(data)
    return result


def test_permission_denied_is_unknown_with_the_reason(tmp_path: Path) -> None:
    """A file the reader may not open is reported as "permission denied" (as root: checked as user nobody)."""
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="keepalive-perm-", dir="/tmp"))
    try:
        base.chmod(0o755)
        proc = make_proc(base / "proc")
        for directory in [p for p in (base / "proc").rglob("*") if p.is_dir()]:
            directory.chmod(0o755)
        for file in [p for p in (base / "proc").rglob("*") if p.is_file()]:
            file.chmod(file.stat().st_mode | 0o444)
        (proc / "sys/net/ipv4/tcp_keepalive_time").chmod(0)
        if os.geteuid() == 0:
            reasons = _reasons_as_nobody(proc)
        else:
            report = keepalive.check(proc_root=proc, policy=POLICY)
            reasons = {s.name: s.reason for s in report.sources}
        assert reasons["net.ipv4.tcp_keepalive_time"] == "permission denied"
        assert reasons["net.ipv4.tcp_keepalive_intvl"] is None
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_unreadable_paths_directory_and_fifo_do_not_hang_or_raise(tmp_path: Path) -> None:
    proc = make_proc(tmp_path, {"net.ipv4.tcp_keepalive_time": None, "net.ipv4.tcp_keepalive_intvl": None})
    (proc / "sys/net/ipv4/tcp_keepalive_time").mkdir()
    os.mkfifo(proc / "sys/net/ipv4/tcp_keepalive_intvl")
    report = keepalive.check(proc_root=proc, policy=POLICY)
    assert source(report, "net.ipv4.tcp_keepalive_time").reason == "not a regular file"
    assert source(report, "net.ipv4.tcp_keepalive_intvl").reason == "not a regular file"


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"entries invalid\n",
        b"entries invalid\nzz 00\n",
        b"entries invalid\n00000001\n",
        b"\x00" * 10,
        b"ENTRIES\n1\n",
    ],
)
def test_garbage_nf_stat_is_unknown_with_the_reason(tmp_path: Path, content: bytes) -> None:
    report = keepalive.check(proc_root=make_proc(tmp_path, nf_stat=content), policy=POLICY)
    assert report.conntrack == {}
    stat = source(report, "conntrack statistics")
    assert stat.value is None
    assert stat.reason
    assert any("net/stat/nf_conntrack" in f.message for f in report.findings if f.code == "source-unreadable")


def test_sample_reports_rates_from_two_reads(tmp_path: Path) -> None:
    proc = make_proc(tmp_path, nf_stat=nf_stat_text([{"invalid": 10}]))
    report = keepalive.check(proc_root=proc, policy=POLICY, sample=0.05)
    assert report.conntrack_rates is not None
    assert report.conntrack_rates["invalid"] == 0
    assert report.sample_seconds == 0.05
    found = codes(report)
    assert "conntrack-invalid-packets" not in found  # counted since boot, none during the sample
    assert found["conntrack-invalid-packets-past"] is Severity.INFO


def test_rates_handle_per_cpu_counter_wrap() -> None:
    from keepalive._path._parse import parse_nf_stat

    before, _ = parse_nf_stat("entries invalid\n00000001 fffffffe\n00000001 00000001\n")
    after, _ = parse_nf_stat("entries invalid\n00000001 00000002\n00000001 00000003\n")
    assert before is not None
    assert after is not None
    assert before.rates(after, 2.0) == {"invalid": 3.0}  # (4 + 2) / 2 s


def test_env_middlebox_and_path_timeout_are_sources(tmp_path: Path) -> None:
    env = {"KEEPALIVE_MIDDLEBOX": "azure-lb, nope", "KEEPALIVE_PATH_TIMEOUT": "garbage"}
    report = keepalive.check(proc_root=make_proc(tmp_path), policy=POLICY, environ=env)
    assert report.path_timeout == 240
    assert source(report, "middlebox azure-lb").origin == "KEEPALIVE_MIDDLEBOX"
    found = codes(report)
    assert found["unknown-middlebox"] is Severity.WARNING
    assert found["invalid-path-timeout"] is Severity.WARNING


def test_invalid_policy_environment_is_an_error_finding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEPALIVE_IDLE", "soon")
    report = keepalive.check(proc_root=make_proc(tmp_path))
    assert codes(report)["invalid-policy-environment"] is Severity.ERROR
    assert report.policy == keepalive.BUILTIN_POLICY


def test_default_policy_is_checked_when_none_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEPALIVE_IDLE", "500")
    report = keepalive.check(proc_root=make_proc(tmp_path), middleboxes=["aws-nlb"])
    assert report.policy.idle == 500
    assert "environment" in report.policy_origin
    assert codes(report)["policy-idle-exceeds-path-timeout"] is Severity.ERROR


def test_path_timeout_too_short_is_an_error(tmp_path: Path) -> None:
    report = keepalive.check(proc_root=make_proc(tmp_path), policy=POLICY, path_timeout=2)
    assert codes(report)["path-timeout-too-short"] is Severity.ERROR


@pytest.mark.parametrize(
    "kwargs",
    [
        {"middleboxes": "not-a-box"},
        {"path_timeout": -1},
        {"path_timeout": float("nan")},
        {"sample": -1},
        {"kube_proxy_url": "http://10.0.0.1:10249/configz"},
    ],
)
def test_invalid_arguments_raise_value_error(tmp_path: Path, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        keepalive.check(proc_root=tmp_path, policy=POLICY, **kwargs)  # type: ignore[arg-type]


def test_report_json_has_the_documented_fields(tmp_path: Path) -> None:
    report = keepalive.check(proc_root=make_proc(tmp_path), policy=POLICY, middleboxes="aws-nat-gateway")
    data = json.loads(report.to_json())
    assert {"findings", "recommended_policy", "path_timeout", "sources", "exit_code"} <= set(data)
    assert data["path_timeout"] == 350
    assert set(data["recommended_policy"]) >= {"idle", "interval", "count", "user_timeout"}
    assert data["recommended_policy"]["idle"] == Policy.below(350).idle
    for finding in data["findings"]:
        assert {"severity", "code", "message", "fix"} <= set(finding)
    assert all({"name", "value", "origin"} <= set(s) for s in data["sources"])


def test_report_text_names_sources_findings_and_env_to_paste(tmp_path: Path) -> None:
    report = keepalive.check(proc_root=make_proc(tmp_path), policy=POLICY, middleboxes="aws-nat-gateway")
    text = report.to_text()
    below = Policy.below(350)
    assert f"KEEPALIVE_IDLE={below.idle}" in text
    assert "Path timeout: 350 s" in text
    assert "nf_conntrack_tcp_timeout_established" in text
    assert "WARNING  kernel-keepalive-exceeds-path-timeout" in text


def test_report_prometheus_is_valid_exposition(tmp_path: Path) -> None:
    stat = nf_stat_text([{"invalid": 3}])
    report = keepalive.check(proc_root=make_proc(tmp_path, nf_stat=stat), policy=POLICY, path_timeout=350)
    text = report.to_prometheus()
    assert "keepalive_check_path_timeout_seconds 350" in text
    assert 'keepalive_check_conntrack_stat_total{counter="invalid"} 3' in text
    assert "keepalive_check_status 1" in text
    for line in text.splitlines():
        if line.startswith("#"):
            assert line.split()[1] in {"HELP", "TYPE"}
            continue
        name_labels, _, value = line.rpartition(" ")
        assert name_labels.startswith("keepalive_check_")
        float(value)  # NaN and numbers parse


def test_finding_is_immutable_and_severity_ordered() -> None:
    finding = keepalive.Finding(Severity.WARNING, "x", "m", "f", {"n": 1})
    with pytest.raises(AttributeError):
        finding.code = "y"  # type: ignore[misc]
    assert Severity.ERROR.rank > Severity.WARNING.rank > Severity.INFO.rank > Severity.OK.rank
    assert keepalive.Finding("info", "x", "m").severity is Severity.INFO
    assert keepalive.MIDDLEBOXES["aws-nat-gateway"] == 350
    assert keepalive.MIDDLEBOXES["azure-lb"] == 240
    assert keepalive.MIDDLEBOXES["gcp-cloud-nat"] == 1200
    assert keepalive.MIDDLEBOXES["ipvs"] == 900


def test_real_proc_is_read_without_errors() -> None:
    """On this machine's real /proc: every sysctl is read (Linux) or reported unknown, nothing raises; an idle above
    the given path timeout is an error whatever the node holds, so the exit code is exactly 2."""
    report = keepalive.check(proc_root="/proc", policy=POLICY, path_timeout=POLICY.idle - 1)
    assert report.exit_code == 2
    assert codes(report)["policy-idle-exceeds-path-timeout"] is Severity.ERROR
    if os.path.exists("/proc/sys/net/ipv4/tcp_keepalive_time"):
        assert isinstance(source(report, "net.ipv4.tcp_keepalive_time").value, int)
        with open("/proc/sys/net/ipv4/tcp_keepalive_time") as handle:
            assert source(report, "net.ipv4.tcp_keepalive_time").value == int(handle.read())
    if os.path.exists("/proc/sys/net/netfilter/nf_conntrack_max"):
        assert report.namespace in {"initial", "non-initial"}
        assert "entries" in report.conntrack
    json.loads(report.to_json())


@pytest.mark.parametrize(
    ("config", "path_timeout"),
    [
        ({"kind": "KubeProxyConfiguration", "conntrack": {"tcpEstablishedTimeout": None, "maxPerCore": None}}, 86400),
        ({"kind": "KubeProxyConfiguration", "mode": "ipvs", "ipvs": {"tcpTimeout": "0s"}}, 900),
    ],
    ids=["stock kubeadm (null conntrack fields)", "ipvs"],
)
def test_kube_proxy_config_never_loosens_the_recommendation(
    tmp_path: Path, config: dict[str, object], path_timeout: int
) -> None:
    """Issue 14: a stock kubeadm kube-proxy ConfigMap or an IPVS config made the checker recommend idle=300."""
    file = tmp_path / "kube-proxy.json"
    file.write_text(json.dumps(config))
    report = keepalive.check(proc_root=make_proc(tmp_path / "proc"), policy=POLICY, kube_proxy_config=file)
    assert report.path_timeout == path_timeout
    assert report.recommended_policy == keepalive.BUILTIN_POLICY
    kinds = {e.label.split(" in ")[0]: e.kind for e in report.evidence}
    assert set(kinds.values()) == {"node"}
