"""Prometheus metrics for node_exporter's textfile collector, written atomically (what ``--textfile`` does)."""

import tempfile
from pathlib import Path

import keepalive

report = keepalive.check(middleboxes=["gcp-cloud-nat"], policy=keepalive.Policy(idle=60, interval=10, count=5))

with tempfile.TemporaryDirectory() as collector:
    target = Path(collector, "keepalive.prom")
    report.write_textfile(target)  # what `keepalive check --textfile PATH` does each round
    text = target.read_text()
    assert [p.name for p in Path(collector).iterdir()] == ["keepalive.prom"]

for line in text.splitlines():
    if line.startswith(("keepalive_check_status", "keepalive_check_path_timeout", "keepalive_check_finding{")):
        print(line)
assert "keepalive_check_path_timeout_seconds 1200" in text
