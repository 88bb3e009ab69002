"""Section 1: apply() and create_connection() against the calls they replace."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import keepalive
from benchmarks import micro
from benchmarks._common import Result, interleaved, spread


def run(size: str) -> list[Result]:
    loops, rounds = {"smoke": (200, 3), "quick": (20_000, 15), "full": (100_000, 41)}[size]
    results: list[Result] = []
    raw, ours, ratios = interleaved(micro.time_raw, micro.time_apply, loops=loops, rounds=rounds)
    results.append(
        Result(
            name="apply_vs_raw_setsockopt",
            unit="s/call",
            ratio=statistics.median(ratios),
            value=ours,
            baseline=raw,
            goal="<= 1.15",
            note=f"keepalive.apply() vs its {len(micro.CALLS)} setsockopt calls written out, same socket, "
            f"thread CPU time, interleaved ({rounds} rounds of {loops})",
            extra=spread(ratios, "ratio"),
        )
    )
    c_loops, c_rounds = {"smoke": (20, 3), "quick": (500, 11), "full": (2000, 21)}[size]
    base, cand, ratios = interleaved(
        micro.time_socket_create_connection, micro.time_keepalive_create_connection, loops=c_loops, rounds=c_rounds
    )
    results.append(
        Result(
            name="create_connection_vs_socket_create_connection",
            unit="s/connection",
            ratio=statistics.median(ratios),
            value=cand,
            baseline=base,
            note=f"loopback connect + close, thread CPU time, interleaved ({c_rounds} rounds of {c_loops}); "
            "includes the kernel's cost of the options (see the *_vs_raw_calls_connect rows for keepalive's own share)",
            extra=spread(ratios, "ratio"),
        )
    )
    if hasattr(keepalive, "install"):
        base, cand, ratios = interleaved(
            micro.time_socket_create_connection, micro.time_connect_installed, loops=c_loops, rounds=c_rounds
        )
        results.append(
            Result(
                name="install_connect_vs_plain_connect",
                unit="s/connection",
                ratio=statistics.median(ratios),
                value=cand,
                baseline=base,
                note="socket.create_connection with keepalive.install() active vs without, thread CPU time, "
                f"interleaved ({c_rounds} rounds of {c_loops}); includes the kernel's cost of the options",
                extra=spread(ratios, "ratio"),
            )
        )
    results.extend(_against_raw_calls(c_loops, c_rounds))
    if size != "smoke":
        results.extend(_pyperf(size))
    return results


def _against_raw_calls(loops: int, rounds: int) -> list[Result]:
    """The connection rows against the same connect with apply()'s setsockopt calls written out: keepalive's own
    code, without the kernel's cost of the options (on a virtual machine a cold setsockopt after a connect costs a
    few microseconds, which the rows against the plain connect include)."""
    rows: list[Result] = []
    candidates = [
        (
            "create_connection_vs_raw_calls_connect",
            micro.time_keepalive_create_connection,
            "keepalive.create_connection",
        ),
    ]
    if hasattr(keepalive, "install"):
        candidates.append(
            (
                "install_connect_vs_raw_calls_connect",
                micro.time_connect_installed,
                "socket.create_connection with keepalive.install() active (tighten-only: reads the options first)",
            )
        )
    for name, candidate, what in candidates:
        base, cand, ratios = interleaved(micro.time_raw_calls_create_connection, candidate, loops=loops, rounds=rounds)
        rows.append(
            Result(
                name=name,
                unit="s/connection",
                ratio=statistics.median(ratios),
                value=cand,
                baseline=base,
                note=f"{what} vs socket.create_connection written out with the same {len(micro.CALLS)} setsockopt "
                f"calls before connect(), loopback connect + close, thread CPU time, interleaved ({rounds} rounds "
                f"of {loops})",
                extra=spread(ratios, "ratio"),
            )
        )
    return rows


def _pyperf(size: str) -> list[Result]:
    """The same pairs through pyperf (separate worker processes, calibrated loops) as a second opinion."""
    try:
        import pyperf  # type: ignore[import-untyped]
    except ImportError:
        why = "pyperf is not installed (pip install 'tcp-keepalive[bench]')"
        print(f"   skip pyperf: {why}", file=sys.stderr)
        return [Result(name="apply_vs_raw_setsockopt_pyperf", unit="s/op", measured=False, note=f"not measured: {why}")]

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "micro.json"
        args = [sys.executable, micro.__file__, "-o", str(out), "--quiet"]
        args.append("--fast" if size == "quick" else "--processes=6")
        env = {**os.environ, "KEEPALIVE_CHECK": "0"}
        proc = subprocess.run(args, capture_output=True, text=True, env=env, check=False, cwd=tmp)
        if proc.returncode != 0:
            return [Result(name="pyperf", unit="", measured=False, note=f"pyperf failed: {proc.stderr[-500:]}")]
        suite = pyperf.BenchmarkSuite.load(str(out))
    medians = {bench.get_name(): bench.median() for bench in suite.get_benchmarks()}
    results = []
    for name, base, cand in (
        ("apply_vs_raw_setsockopt_pyperf", "raw_setsockopt", "apply"),
        (
            "create_connection_vs_socket_create_connection_pyperf",
            "socket_create_connection",
            "keepalive_create_connection",
        ),
        ("install_connect_vs_plain_connect_pyperf", "connect_plain", "connect_installed"),
    ):
        if base in medians and cand in medians:
            results.append(
                Result(
                    name=name,
                    unit="s/op",
                    ratio=medians[cand] / medians[base],
                    value=medians[cand],
                    baseline=medians[base],
                    note="pyperf medians, separate worker processes (not interleaved)",
                )
            )
    return results


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps([r.as_json() for r in run("quick")], indent=2))
