"""The headline results as a chart (SVG), drawn from results.json by matplotlib's Agg backend.

Left: every interleaved row that compares time against time (``s/...`` units) or throughput against throughput
(``ops/s``), as the time keepalive takes over the time the baseline takes (throughput ratios are inverted, so 1.0 is
"free" and longer bars always cost more), with the spread of the per-pair ratios as whiskers and the row's goal as
a mark. pyperf's rows (a second opinion, not interleaved) stay in the table only.
Right: the longest event-loop stall of a first connect per runtime, keepalive against the runtime's own connect,
with the goal as a line. The SVG is deterministic for the same data (fixed hash salt, no date).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

#: Units whose ratios the left panel shows.
_TIME_UNITS = ("s/", "ops/s")
_GOAL = re.compile(r"^\s*([<>]=?)\s*([0-9.]+)\s*(ms)?\s*$")


def _goal(text: str | None) -> tuple[str, float] | None:
    match = _GOAL.match(text or "")
    return None if match is None else (match.group(1), float(match.group(2)))


def cost_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of the left panel: name, cost (time ratio), low/high whiskers and the goal as a time ratio."""
    rows = []
    for row in results:
        unit = row.get("unit") or ""
        ratio = row.get("ratio")
        if not row.get("measured", True) or ratio is None or not unit.startswith(_TIME_UNITS) or ratio <= 0:
            continue
        if row["name"].endswith("_pyperf"):  # a second opinion, not interleaved: the table has it
            continue
        invert = unit == "ops/s"
        low, high = row.get("ratio_min", ratio), row.get("ratio_max", ratio)
        if invert:
            ratio, low, high = 1 / ratio, 1 / high, 1 / low
        goal = _goal(row.get("goal"))
        rows.append(
            {
                "name": row["name"],
                "cost": ratio,
                "low": low,
                "high": high,
                "goal": None if goal is None else (1 / goal[1] if invert else goal[1]),
            }
        )
    return rows


def stall_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of the right panel: runtime, keepalive's and the baseline's stall (ms), spread and goal."""
    rows = []
    for row in results:
        if not row["name"].startswith("first_connect_loop_stall_") or not row.get("measured", True):
            continue
        if row.get("value") is None:
            continue
        goal = _goal(row.get("goal"))
        rows.append(
            {
                "runtime": row["name"].removeprefix("first_connect_loop_stall_"),
                "value": row["value"],
                "baseline": row.get("baseline"),
                "low": row.get("value_min", row["value"]),
                "high": row.get("value_max", row["value"]),
                "goal": None if goal is None else goal[1],
            }
        )
    return rows


def write_chart(data: dict[str, Any], path: Path) -> bool:
    """Draw the chart of ``data`` (the content of results.json) to ``path``. False if there is nothing to draw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = data["results"]
    costs = cost_rows(results)
    stalls = stall_rows(results)
    if not costs and not stalls:
        return False
    matplotlib.rcParams["svg.hashsalt"] = "keepalive-benchmarks"
    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: smaller, searchable
    height = max(3.0, 0.32 * max(len(costs), 3 * len(stalls)) + 1.5)
    widths = [3, 2] if stalls and costs else [1]
    fig, axes = plt.subplots(1, len(widths), figsize=(12, height), gridspec_kw={"width_ratios": widths}, squeeze=False)
    panels = list(axes[0])
    if costs:
        ax = panels.pop(0)
        names = [row["name"] for row in costs][::-1]
        y = list(range(len(names)))
        values = [row["cost"] for row in costs][::-1]
        lows = [row["cost"] - row["low"] for row in costs][::-1]
        highs = [row["high"] - row["cost"] for row in costs][::-1]
        colors = ["#c0392b" if row["goal"] is not None and row["cost"] > row["goal"] else "#2e86c1" for row in costs][
            ::-1
        ]
        ax.barh(y, values, color=colors, xerr=[lows, highs], error_kw={"ecolor": "#555", "capsize": 2, "lw": 0.8})
        for index, row in enumerate(costs[::-1]):
            if row["goal"] is not None:
                ax.plot([row["goal"]] * 2, [index - 0.4, index + 0.4], color="#27ae60", lw=2)
        ax.axvline(1.0, color="black", lw=0.8, ls="--")
        marks = [row["goal"] for row in costs if row["goal"] is not None]
        ax.set_xlim(0, max(2.0, 1.25 * max(values + marks)))  # a wild whisker is cut at the edge, not the scale
        ax.set_yticks(y, names, fontsize=8)
        ax.set_xlabel("time with keepalive / time without (1 = free)\nwhiskers: min-max of the per-pair ratios")
        ax.set_title("What keepalive costs (green mark: goal)", fontsize=10)
    if stalls:
        ax = panels.pop(0)
        runtimes = [row["runtime"] for row in stalls]
        y = list(range(len(runtimes)))
        ours = [row["value"] for row in stalls]
        base = [row["baseline"] or 0.0 for row in stalls]
        err = [[row["value"] - row["low"] for row in stalls], [row["high"] - row["value"] for row in stalls]]
        ax.barh([i + 0.2 for i in y], ours, height=0.4, color="#2e86c1", xerr=err, label="keepalive", capsize=2)
        ax.barh([i - 0.2 for i in y], base, height=0.4, color="#aab7b8", label="runtime's own connect")
        goals = {row["goal"] for row in stalls if row["goal"] is not None}
        for goal in goals:
            ax.axvline(goal, color="#27ae60", lw=2, label=f"goal {goal:g} ms")
        ax.set_xlim(0, 1.5 * max(ours + base + list(goals)))  # a wild whisker is cut at the edge
        ax.set_yticks(y, runtimes)
        ax.set_xlabel("longest event-loop stall, ms\n(median of fresh processes; whiskers: min-max)")
        ax.set_title("First connect of a process", fontsize=10)
        ax.legend(fontsize=8, loc="lower right")
    mach = data.get("machine", {})
    fig.suptitle(
        f"keepalive {mach.get('keepalive', '?')} benchmarks ({data.get('size', '?')} run, {mach.get('time', '?')}, "
        f"{mach.get('cpus', '?')} CPUs, Python {mach.get('python', '?')})",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="svg", metadata={"Date": None}, bbox_inches="tight")
    plt.close(fig)
    return True
