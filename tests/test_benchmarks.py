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
        "startup_keepalive_auto",
        "startup_import_keepalive",
        "first_connect_loop_stall_asyncio",
        "first_connect_loop_stall_anyio",
        "first_connect_loop_stall_trio",
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
    # The rows compared side by side report the spread of their per-pair ratios around the median.
    for name in ("apply_vs_raw_setsockopt", "httpx_pooled", "startup_import_keepalive", "startup_keepalive_auto"):
        row = by_name[name]
        assert row["measured"], row
        assert row["ratio_min"] <= row["ratio"] <= row["ratio_max"], row
    # The start-up rows name the modules that cost the most beyond their baseline (-X importtime).
    modules = by_name["startup_import_keepalive"]["import_self_us"]
    assert modules, by_name["startup_import_keepalive"]
    assert all(isinstance(module, str) and isinstance(us, int) for module, us in modules), modules
    assert any(module.startswith("keepalive") for module, _ in modules), modules
    stall = by_name["first_connect_loop_stall_asyncio"]
    assert stall["measured"], stall
    assert stall["value_min"] <= stall["value"] <= stall["value_max"], stall
    markdown = (tmp_path / "results.md").read_text()
    assert "| apply_vs_raw_setsockopt |" in markdown
    svg = (tmp_path / "results.svg").read_text()
    assert svg.lstrip().startswith("<?xml")
    assert "<svg" in svg
    assert "apply_vs_raw_setsockopt" in svg


def _tiny_results() -> dict[str, object]:
    return {
        "machine": {"keepalive": "0", "time": "2026-01-01T00:00Z", "cpu": "x", "cpus": 2, "kernel": "6", "python": "3"},
        "size": "smoke",
        "results": [
            {"name": "apply_vs_raw_setsockopt", "unit": "s/call", "ratio": 1.1, "ratio_min": 1.05,
             "ratio_max": 1.3, "goal": "<= 1.15", "measured": True},
            {"name": "redis_pooled", "unit": "ops/s", "ratio": 0.8, "ratio_min": 0.5, "ratio_max": 1.0,
             "goal": ">= 0.98", "measured": True},
            {"name": "memory_rss_growth", "unit": "KiB", "ratio": None, "value": 0.0, "measured": True},
            {"name": "psycopg_pooled", "unit": "ops/s", "ratio": None, "measured": False, "note": "not measured: x"},
            {"name": "first_connect_loop_stall_trio", "unit": "ms", "ratio": None, "value": 3.0, "baseline": 2.0,
             "value_min": 2.5, "value_max": 4.0, "goal": "<= 5 ms", "measured": True},
        ],
    }  # fmt: skip


def test_chart_shows_cost_rows_as_time_ratios_and_stalls_against_their_goal(tmp_path: Path) -> None:
    """Throughput ratios are inverted into time ratios (1/0.8 = 1.25), spreads flip with them, and rows without a
    ratio, unmeasured rows and other units stay out of the cost panel; the SVG is written and deterministic."""
    from benchmarks import _chart

    data = _tiny_results()
    rows = {row["name"]: row for row in _chart.cost_rows(data["results"])}  # type: ignore[arg-type]
    assert set(rows) == {"apply_vs_raw_setsockopt", "redis_pooled"}
    assert rows["apply_vs_raw_setsockopt"] == {
        "name": "apply_vs_raw_setsockopt", "cost": 1.1, "low": 1.05, "high": 1.3, "goal": 1.15,
    }  # fmt: skip
    redis = rows["redis_pooled"]
    assert redis["cost"] == pytest.approx(1.25)
    assert (redis["low"], redis["high"]) == (pytest.approx(1.0), pytest.approx(2.0))
    assert redis["goal"] == pytest.approx(1 / 0.98)
    (stall,) = _chart.stall_rows(data["results"])  # type: ignore[arg-type]
    assert (stall["runtime"], stall["value"], stall["baseline"], stall["goal"]) == ("trio", 3.0, 2.0, 5.0)
    first, second = tmp_path / "a.svg", tmp_path / "b.svg"
    assert _chart.write_chart(data, first)
    assert _chart.write_chart(data, second)
    text = first.read_text()
    assert "redis_pooled" in text
    assert "trio" in text
    assert "memory_rss_growth" not in text
    assert text == second.read_text()


def test_chart_with_nothing_to_draw_writes_no_file(tmp_path: Path) -> None:
    from benchmarks import _chart

    data = {"machine": {}, "size": "smoke", "results": [{"name": "memory_rss_growth", "unit": "KiB", "value": 1.0}]}
    assert not _chart.write_chart(data, tmp_path / "none.svg")
    assert not (tmp_path / "none.svg").exists()


def test_chart_only_redraws_markdown_and_svg_from_results_json(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text(json.dumps(_tiny_results()))
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--chart-only", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    markdown = (tmp_path / "results.md").read_text()
    assert "| redis_pooled | 0.800 | 0.500-1.000 |" in markdown
    assert "apply_vs_raw_setsockopt" in (tmp_path / "results.svg").read_text()


def test_chart_only_without_results_json_is_a_usage_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--chart-only", "--out", str(tmp_path / "missing")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert "results.json" in proc.stderr


def test_optional_section_missing_module_is_one_not_measured_row() -> None:
    from benchmarks.__main__ import optional_section

    (row,) = optional_section("benchmarks._no_such_section", "nothing")("smoke")
    assert (row.name, row.measured) == ("nothing", False)
    assert row.note == "not measured: benchmarks._no_such_section is not part of this checkout"


def test_optional_section_rows_are_dicts_passed_quick_and_kept_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The contract of benchmarks/_sweep.py and _enforce.py: run(quick: bool) -> list[dict]; extra keys survive."""
    from benchmarks.__main__ import optional_section

    (tmp_path / "ka_bench_section.py").write_text(
        "def run(quick):\n"
        "    return [{'name': 'sweep_round', 'unit': 's/round', 'ratio': 1, 'value': 0.5, 'quick': quick,\n"
        "             'ratio_min': 0.9, 'ratio_max': 1.2}]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    section = optional_section("ka_bench_section", "sweep")
    (quick,) = section("quick")
    (full,) = section("full")
    assert quick.as_json()["quick"] is True
    assert full.as_json()["quick"] is False
    row = quick.as_json()
    assert row["ratio"] == 1.0
    assert isinstance(row["ratio"], float)
    assert (row["name"], row["unit"], row["value"], row["ratio_max"], row["measured"]) == (
        "sweep_round", "s/round", 0.5, 1.2, True,
    )  # fmt: skip


def test_optional_section_row_without_a_unit_names_the_module() -> None:
    from benchmarks._common import Result

    with pytest.raises(TypeError, match=r"benchmarks\._sweep"):
        Result.from_row({"name": "x"}, source="benchmarks._sweep")
    with pytest.raises(TypeError, match="'ratio' is not a number"):
        Result.from_row({"name": "x", "unit": "s", "ratio": "fast"}, source="benchmarks._sweep")
