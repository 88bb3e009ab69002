"""``python -m benchmarks [--quick] [--out DIR]``: run every benchmark, write results.json, results.md and results.svg.

``--chart-only`` redraws results.md and results.svg from an existing results.json without measuring anything.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from benchmarks import _audit, _clients, _detection, _enforce, _idle, _memory, _micro, _startup
from benchmarks._common import Result, machine


def optional_section(module: str, name: str) -> Callable[[str], list[Result]]:
    """A section from a module that may be absent: ``module.run(quick: bool) -> list[dict]`` (see __init__)."""

    def section(size: str) -> list[Result]:
        try:
            loaded = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            why = f"{module} is not part of this checkout"
            print(f"   skip {name}: {why}", file=sys.stderr)
            return [Result(name=name, unit="", measured=False, note=f"not measured: {why}")]
        rows = loaded.run(size != "full")
        return [Result.from_row(row, source=module) for row in rows]

    return section


SECTIONS: dict[str, Callable[[str], list[Result]]] = {
    "apply": _micro.run,
    "startup": _startup.run,
    "clients": _clients.run,
    "idle": _idle.run,
    "detection": _detection.run,
    "memory": _memory.run,
    "audit": _audit.run,
    "sweep": optional_section("benchmarks._sweep", "sweep"),
    "enforce": _enforce.run,
}


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if unit.startswith("s/"):
        return f"{value * 1e6:.2f} µs" if value < 1e-3 else f"{value * 1e3:.2f} ms"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def _unit(unit: str) -> str:
    return "per " + unit[2:] if unit.startswith("s/") else unit


def _spread(row: dict[str, object]) -> str:
    for prefix, unit in (("ratio", ""), ("value", str(row.get("unit") or ""))):
        low, high = row.get(f"{prefix}_min"), row.get(f"{prefix}_max")
        if isinstance(low, int | float) and isinstance(high, int | float):
            if prefix == "ratio":
                return f"{low:.3f}-{high:.3f}"
            return f"{_fmt(float(low), unit)}-{_fmt(float(high), unit)}"
    return ""


def write_outputs(data: dict[str, object], out: Path) -> list[Path]:
    """Write results.md and, when matplotlib is installed, results.svg for ``data``; return what was written."""
    written = [out / "results.md"]
    written[0].write_text(to_markdown(data))
    try:
        from benchmarks._chart import write_chart

        if write_chart(data, out / "results.svg"):
            written.append(out / "results.svg")
    except ImportError as exc:
        print(f"   skip chart: {exc.name} is not installed (pip install 'tcp-keepalive[bench]')", file=sys.stderr)
    return written


def to_markdown(data: dict[str, object]) -> str:
    """The results as a Markdown table (shown in the docs)."""
    mach = data["machine"]
    assert isinstance(mach, dict)
    lines = [
        f"Run {mach['time']} ({data['size']}) on {mach['cpu']} x {mach['cpus']}, Linux {mach['kernel']}, "
        f"Python {mach['python']}, keepalive {mach['keepalive']}.",
        "",
        "| benchmark | ratio | spread | keepalive | baseline | unit | goal | how |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    results = data["results"]
    assert isinstance(results, list)
    for row in results:
        ratio = "-" if row.get("ratio") is None else f"{row['ratio']:.3f}"
        how = (row.get("note") or "").replace("|", "\\|")
        if not row.get("measured", True) and not how.startswith(("computed", "not measured")):
            how = "computed: " + how
        lines.append(
            f"| {row['name']} | {ratio} | {_spread(row)} | {_fmt(row.get('value'), row['unit'])} | "
            f"{_fmt(row.get('baseline'), row['unit'])} | {_unit(row['unit'])} | "
            f"{row.get('goal') or ''} | {how} |"
        )
    lines.append("")
    lines.append(
        "Ratios are keepalive / baseline (for ops/s: wrapped / unwrapped throughput), measured side by side "
        "in one run; absolute numbers do not compare between runs on a shared machine. Spread: the smallest and "
        "the largest of the per-pair (per-round) ratios the median is taken from, or of the values for rows "
        "without a ratio."
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes: a minute or two")
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # tiny sizes, for the test suite
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="output directory")
    parser.add_argument("--only", action="append", choices=sorted(SECTIONS), help="run only these sections")
    parser.add_argument(
        "--chart-only", action="store_true", help="redraw results.md and results.svg from OUT/results.json"
    )
    args = parser.parse_args(argv)
    if args.chart_only:
        try:
            saved = json.loads((args.out / "results.json").read_text())
        except (OSError, ValueError) as exc:
            parser.error(f"--chart-only needs a readable {args.out / 'results.json'}: {exc}")
        for path in write_outputs(saved, args.out):
            print(f"wrote {path}", file=sys.stderr)
        return 0
    size = "smoke" if args.smoke else "quick" if args.quick else "full"
    os.environ.setdefault("KEEPALIVE_CHECK", "0")
    results: list[Result] = []
    started = time.monotonic()
    for name, section in SECTIONS.items():
        if args.only and name not in args.only:
            continue
        print(f"== {name}", file=sys.stderr, flush=True)
        try:
            rows = section(size)
        except Exception as exc:
            traceback.print_exc()
            rows = [Result(name=name, unit="", measured=False, note=f"not measured: {type(exc).__name__}: {exc}")]
        for row in rows:
            ratio = "" if row.ratio is None else f" ratio {row.ratio:.3f}"
            print(f"   {row.name}:{ratio} value {_fmt(row.value, row.unit)} {row.unit}", file=sys.stderr)
        results.extend(rows)
    data: dict[str, object] = {
        "machine": machine(),
        "size": size,
        "seconds": round(time.monotonic() - started, 1),
        "results": [r.as_json() for r in results],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(data, indent=2) + "\n")
    written = [args.out / "results.json", *write_outputs(data, args.out)]
    print(f"wrote {', '.join(str(path) for path in written)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
