"""Shared pieces: results, interleaved A/B timing, machine facts."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import keepalive


@dataclass
class Result:
    """One row of results.json: a ratio (ours / baseline) or a value, with its unit and details."""

    name: str
    unit: str
    ratio: float | None = None
    value: float | None = None
    baseline: float | None = None
    measured: bool = True
    goal: str | None = None
    note: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: dict[str, Any], *, source: str) -> Result:
        """A row from a section that returns dicts (the contract in ``benchmarks/__init__.py``)."""
        if not isinstance(row, dict) or not isinstance(row.get("name"), str) or not isinstance(row.get("unit"), str):
            raise TypeError(f"{source}.run() returned a row without a str 'name' and 'unit': {row!r}")
        known = {f.name for f in fields(cls)} - {"extra"}
        for key in ("ratio", "value", "baseline"):
            if row.get(key) is not None and not isinstance(row[key], int | float):
                raise TypeError(f"{source}.run() returned a row whose {key!r} is not a number: {row!r}")
        values = {key: row[key] for key in known if key in row}
        for key in ("ratio", "value", "baseline"):
            if values.get(key) is not None:
                values[key] = float(values[key])
        return cls(**values, extra={key: value for key, value in row.items() if key not in known})

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        extra = data.pop("extra")
        data.update(extra)
        return data


def machine() -> dict[str, Any]:
    """Facts about this machine, so a reader knows what the numbers describe."""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:
        model = None
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "kernel": platform.release(),
        "cpu": model or platform.processor(),
        "cpus": os.cpu_count(),
        "keepalive": keepalive.__version__,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def interleaved(
    baseline: Callable[[int], float],
    candidate: Callable[[int], float],
    *,
    loops: int,
    rounds: int,
) -> tuple[float, float, list[float]]:
    """Time two functions in alternating blocks; return (median baseline s/op, median candidate s/op, ratios).

    ``ratios`` are the per-round ratios (candidate / baseline): report their median and spread, so slow phases of a
    shared machine hit both sides alike.
    """
    base_times: list[float] = []
    cand_times: list[float] = []
    ratios: list[float] = []
    baseline(max(1, loops // 10))  # warm up
    candidate(max(1, loops // 10))
    for index in range(rounds):
        if index % 2:
            c = candidate(loops)
            b = baseline(loops)
        else:
            b = baseline(loops)
            c = candidate(loops)
        base_times.append(b / loops)
        cand_times.append(c / loops)
        ratios.append(c / b)
    return statistics.median(base_times), statistics.median(cand_times), ratios


def spread(values: list[float], prefix: str) -> dict[str, float]:
    """``{prefix}_min``, ``{prefix}_median``, ``{prefix}_max`` of values: the spread a row reports."""
    return {
        f"{prefix}_min": min(values),
        f"{prefix}_median": statistics.median(values),
        f"{prefix}_max": max(values),
    }


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) of values, nearest-rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]
