"""The benchmarks can't rot: `python -m benchmarks` runs end to end on tiny sizes (no timing is asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_benchmarks_run_and_write_results_json_and_markdown(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "KEEPALIVE_CHECK": "0"},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "results.json").read_text())
    assert {"machine", "results"} <= set(data)
    assert data["machine"]["python"]
    names = [row["name"] for row in data["results"]]
    for expected in (
        "apply_vs_raw_setsockopt",
        "create_connection_vs_socket_create_connection",
        "httpx_pooled",
        "requests_pooled",
        "redis_pooled",
        "psycopg_pooled",
        "memory_rss_growth",
        "dead_peer_detection_kernel_defaults",
        "dead_peer_detection_below_350",
    ):
        assert expected in names, names
    assert any("idle" in name for name in names)
    for row in data["results"]:
        assert {"name", "ratio", "value", "unit"} <= set(row), row
        assert row["ratio"] is None or isinstance(row["ratio"], float)
        assert "Traceback" not in (row.get("note") or "")
    by_name = {row["name"]: row for row in data["results"]}
    # Every section really measured something (a section that crashed reports measured=False with its error).
    assert by_name["apply_vs_raw_setsockopt"]["measured"]
    assert by_name["httpx_pooled"]["measured"], by_name["httpx_pooled"]
    markdown = (tmp_path / "results.md").read_text()
    assert "| apply_vs_raw_setsockopt |" in markdown
