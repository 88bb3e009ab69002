"""The Prometheus textfile output, checked by tools we did not write: prometheus_client's parser and promtool."""

from __future__ import annotations

import http.server
import json
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

import keepalive
from keepalive import Policy
from keepalive.checker import Report
from tests.checker_support import make_proc, nf_stat_text

POLICY = Policy(idle=60, interval=10, count=5)
CONFIG = {"kind": "KubeProxyConfiguration", "mode": "ipvs", "conntrack": {"tcpEstablishedTimeout": "2h"}}


@pytest.fixture
def configz() -> Iterator[str]:
    """A real HTTP server on loopback answering /configz as kube-proxy does."""
    body = json.dumps({"kubeproxy.config.k8s.io": CONFIG}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/configz"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def _reports(tmp_path: Path, url: str) -> dict[str, Report]:
    config = tmp_path / "kube-proxy.json"
    config.write_text(json.dumps(CONFIG))
    proc = make_proc(tmp_path / "proc", nf_stat=nf_stat_text([{"invalid": 5, "drop": 2}]))
    broken = make_proc(
        tmp_path / "broken",
        {
            "net.ipv4.tcp_keepalive_time": b"x",
            "net.ipv4.tcp_keepalive_intvl": b"y",
            "net.ipv4.tcp_keepalive_probes": None,
        },
    )
    return {
        "config file and /configz both load": keepalive.check(
            proc_root=proc, policy=POLICY, kube_proxy_config=config, kube_proxy_url=url
        ),
        "repeated finding codes": keepalive.check(proc_root=broken, policy=POLICY, middleboxes="azure-lb"),
        "sampled": keepalive.check(proc_root=proc, policy=POLICY, path_timeout=350, sample=0.05),
        "errors": keepalive.check(proc_root=proc, policy=Policy(idle=7200), middleboxes="aws-nat-gateway"),
    }


def test_no_duplicate_series_in_any_output(tmp_path: Path, configz: str) -> None:
    """Issue 14: node_exporter drops series "collected before with the same name and label values"."""
    reports = _reports(tmp_path, configz)
    assert len([f for f in reports["repeated finding codes"].findings if f.code == "source-unreadable"]) > 1
    names = {s.name for s in reports["config file and /configz both load"].sources}
    assert "kube-proxy conntrack.tcpEstablishedTimeout" in names
    for case, report in reports.items():
        seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        for family in text_string_to_metric_families(report.to_prometheus()):
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                assert key not in seen, (case, key)
                seen.add(key)
        assert seen, case


def test_repeated_codes_are_counted_in_one_series(tmp_path: Path, configz: str) -> None:
    report = _reports(tmp_path, configz)["repeated finding codes"]
    expected = len([f for f in report.findings if f.code == "source-unreadable"])
    families = {f.name: f for f in text_string_to_metric_families(report.to_prometheus())}
    values = [s.value for s in families["keepalive_check_finding"].samples if s.labels["code"] == "source-unreadable"]
    assert values == [expected]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (Debian: prometheus)")
def test_promtool_check_metrics_accepts_every_output(tmp_path: Path, configz: str) -> None:
    """Issue 14: promtool rejected keepalive_check_policy_count (a _count suffix on a gauge)."""
    promtool = shutil.which("promtool")
    assert promtool is not None
    for case, report in _reports(tmp_path, configz).items():
        text = report.to_prometheus()
        assert "keepalive_check_policy_count" not in text
        result = subprocess.run(
            [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, (case, result.stdout, result.stderr)
        assert not result.stdout.strip(), (case, result.stdout)  # no lint complaints either


def test_no_gauge_has_a_summary_or_histogram_suffix(tmp_path: Path, configz: str) -> None:
    for report in _reports(tmp_path, configz).values():
        for family in text_string_to_metric_families(report.to_prometheus()):
            if family.type == "gauge":
                assert not family.name.endswith(("_count", "_sum", "_bucket")), family.name


def test_every_metric_a_message_or_fix_names_exists(tmp_path: Path, configz: str) -> None:
    """Issue 14: a fix told users to watch keepalive_check_conntrack_rate{counter="invalid"}, which did not exist."""
    reports = _reports(tmp_path, configz)
    assert "conntrack-invalid-packets-past" in {f.code for f in reports["sampled"].findings}
    named = 0
    for case, report in reports.items():
        text = report.to_prometheus()
        present = {
            (sample.name, tuple(sorted(sample.labels.items())))
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }
        for finding in report.findings:
            for match in re.finditer(
                r'(keepalive_check_[a-z_]+)(?:\{([a-z_]+)="([^"]*)"\})?', finding.message + finding.fix
            ):
                named += 1
                name, label, value = match.groups()
                hits = [key for key in present if key[0] == name and (label is None or (label, value) in key[1])]
                assert hits, (case, finding.code, match.group(0))
    assert named
