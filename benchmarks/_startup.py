"""Section: what being there costs at start-up, as a new user meets it.

* ``startup_keepalive_auto``: ``KEEPALIVE_AUTO=1 python -c pass`` against ``python -c "import socket"`` (every
  Python process in a container with the variable pays it).
* ``startup_import_keepalive``: ``python -c "import keepalive"`` against ``python -c "import socket, logging"``.
* ``first_connect_loop_stall_<runtime>``: the longest event-loop stall while the first
  ``keepalive.<runtime>`` connect of a fresh process runs and for a window of the same length after it returns
  in both processes (``benchmarks._loop_lag.WINDOW``, which holds the whole runtime check the connect started:
  its work competes for the GIL), measured by a heartbeat task that yields and records the longest gap between
  its turns; against the runtime's own connect in another fresh process. Runtimes: asyncio, anyio (on asyncio),
  trio.

Fresh processes are run in interleaved pairs (the order alternates), so slow phases of a shared machine hit both
sides alike; each row reports the median of the per-pair ratios and their spread (min, max). The environment is
the user's: ``KEEPALIVE_CHECK`` is removed, so the runtime check runs as it would in production, and byte code is
cached as after ``pip install`` (``PYTHONDONTWRITEBYTECODE`` is removed and ``PYTHONPYCACHEPREFIX`` points at a
directory of this run, which the warm-up processes fill): without it every process compiles keepalive's source,
which an installed wheel never does.
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import Result, spread
from benchmarks._loop_lag import WINDOW

ROOT = Path(__file__).resolve().parent.parent

#: (pairs, processes per stall measurement) per size.
_SIZES = {"smoke": (3, 2), "quick": (40, 12), "full": (150, 40)}


_PYCACHE = ""  # set by run(): this run's byte-code cache


def _env(**changes: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEPALIVE_")}
    env.pop("PYTHONPATH", None)  # a fresh process as a user starts it: keepalive comes from its installation
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if _PYCACHE:
        env["PYTHONPYCACHEPREFIX"] = _PYCACHE
    for key, value in changes.items():
        if value is not None:
            env[key] = value
    return env


def _time_process(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) time of one fresh process, spawned without a shell (the spawn cost is the same
    on both sides). The CPU time is what the process itself spent: less disturbed by a busy machine's waits."""
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        actions = [
            (os.POSIX_SPAWN_DUP2, devnull, 0),
            (os.POSIX_SPAWN_DUP2, devnull, 1),
        ]
        start = time.perf_counter()
        pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
        _, status, usage = os.wait4(pid, 0)
        elapsed = time.perf_counter() - start
    finally:
        os.close(devnull)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        raise RuntimeError(f"{' '.join(argv)} exited {code}: {proc.stderr.strip()[-300:]}")
    return elapsed, usage.ru_utime + usage.ru_stime


class Pairs:
    """Interleaved pairs of fresh processes: wall and CPU times of each side, and the per-pair wall ratios."""

    def __init__(self) -> None:
        self.cand: list[float] = []
        self.base: list[float] = []
        self.cand_cpu: list[float] = []
        self.base_cpu: list[float] = []

    @property
    def ratios(self) -> list[float]:
        return [c / b for c, b in zip(self.cand, self.base, strict=True)]

    @property
    def cpu_ratios(self) -> list[float]:
        return [c / b for c, b in zip(self.cand_cpu, self.base_cpu, strict=True) if b > 0]


def pairs(
    candidate: tuple[list[str], dict[str, str]],
    baseline: tuple[list[str], dict[str, str]],
    n: int,
) -> Pairs:
    """Run ``n`` interleaved pairs of fresh processes, alternating which side goes first."""
    for _ in range(2):  # warm the page cache and this run's byte-code cache for both sides
        _time_process(*candidate)
        _time_process(*baseline)
    out = Pairs()
    for index in range(n):
        if index % 2:
            b = _time_process(*baseline)
            c = _time_process(*candidate)
        else:
            c = _time_process(*candidate)
            b = _time_process(*baseline)
        out.cand.append(c[0])
        out.base.append(b[0])
        out.cand_cpu.append(c[1])
        out.base_cpu.append(b[1])
    return out


def _startup_row(
    name: str, measured: Pairs, *, goal: str, note: str, modules: list[list[object]] | None = None
) -> Result:
    ratios = measured.ratios
    cpu = measured.cpu_ratios
    details: dict[str, object] = {} if modules is None else {"import_self_us": modules}
    costliest = ""
    if modules:
        costliest = "; costliest imports beyond the baseline (-X importtime, own µs): " + ", ".join(
            f"{module} {us}" for module, us in modules[:5]
        )
    return Result(
        name=name,
        unit="s/process",
        ratio=statistics.median(ratios),
        value=statistics.median(measured.cand),
        baseline=statistics.median(measured.base),
        goal=goal,
        note=f"{note}; wall time, {len(ratios)} interleaved pairs of fresh processes; CPU-time ratio "
        f"{statistics.median(cpu):.2f} ({min(cpu):.2f}-{max(cpu):.2f}){costliest}",
        extra=spread(ratios, "ratio")
        | spread(cpu, "cpu_ratio")
        | {"pairs": len(ratios), "cpu_value": statistics.median(measured.cand_cpu)}
        | {"cpu_baseline": statistics.median(measured.base_cpu)}
        | details,
    )


def _importtime(code: str, env: dict[str, str]) -> dict[str, int]:
    """``python -X importtime -c code``: module -> its own import time in µs (nested imports excluded)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], env=env, capture_output=True, text=True, check=False
    )
    out: dict[str, int] = {}
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _, name = line.removeprefix("import time:").split("|", 2)
        out[name.strip()] = int(self_us)
    return out


def import_breakdown(
    candidate: tuple[str, dict[str, str]], baseline: tuple[str, dict[str, str]], runs: int, top: int = 12
) -> list[list[object]]:
    """The modules the candidate imports beyond the baseline, costliest first: ``[module, µs]`` with the smallest
    of ``runs`` measurements (the least disturbed by a busy machine)."""
    base: set[str] = set()
    best: dict[str, int] = {}
    for _ in range(runs):
        base |= set(_importtime(*baseline))
        for module, us in _importtime(*candidate).items():
            best[module] = min(us, best.get(module, us))
    extra = sorted(((m, us) for m, us in best.items() if m not in base), key=lambda item: -item[1])
    return [[module, us] for module, us in extra[:top]]


def _stall(runtime: str, mode: str, env: dict[str, str]) -> float:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks._loop_lag", runtime, mode],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
        timeout=120,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"benchmarks._loop_lag {runtime} {mode} exited {proc.returncode}: {proc.stderr[-300:]}")
    return float(proc.stdout.strip().splitlines()[-1])


def _stall_row(runtime: str, n: int) -> Result:
    name = f"first_connect_loop_stall_{runtime}"
    missing = {"anyio": "anyio", "trio": "trio"}.get(runtime)
    if missing is not None and importlib.util.find_spec(missing) is None:
        return Result(
            name=name,
            unit="ms",
            measured=False,
            note=f"not measured: {missing} is not installed (pip install 'tcp-keepalive[bench]')",
        )
    env = _env(PYTHONPATH=str(ROOT))
    _stall(runtime, "keepalive", env)  # warm up: byte code of both sides in this run's cache
    _stall(runtime, "plain", env)
    ours: list[float] = []
    plain: list[float] = []
    for index in range(n):
        order = ("keepalive", "plain") if index % 2 == 0 else ("plain", "keepalive")
        for mode in order:
            (ours if mode == "keepalive" else plain).append(_stall(runtime, mode, env))
    what = {
        "asyncio": "keepalive.asyncio.open_connection vs asyncio.open_connection",
        "anyio": "keepalive.anyio.connect_tcp vs anyio.connect_tcp (asyncio backend)",
        "trio": "keepalive.trio.open_tcp_stream vs trio.open_tcp_stream",
    }[runtime]
    return Result(
        name=name,
        unit="ms",
        value=statistics.median(ours),
        baseline=statistics.median(plain),
        goal="<= 5 ms",
        note=f"longest gap between turns of a heartbeat task during the first {what} of a fresh process and after "
        f"it ({WINDOW:g} s in both processes, holding the whole runtime check it started), to a loopback listener; "
        f"median of {n} processes each, spread is of keepalive's",
        extra=spread(ours, "value") | {"baseline_max": max(plain), "processes": n},
    )


def run(size: str) -> list[Result]:
    global _PYCACHE
    with tempfile.TemporaryDirectory(prefix="keepalive-bench-pycache-") as pycache:
        _PYCACHE = pycache
        try:
            return _run(size)
        finally:
            _PYCACHE = ""


def _run(size: str) -> list[Result]:
    n, stall_n = _SIZES[size]
    runs = max(2, n // 4)
    python = sys.executable
    results = []
    auto = ("pass", _env(KEEPALIVE_AUTO="1"))
    plain = ("import socket", _env())
    results.append(
        _startup_row(
            "startup_keepalive_auto",
            pairs(([python, "-c", auto[0]], auto[1]), ([python, "-c", plain[0]], plain[1]), n),
            goal="<= 1.15",
            note='KEEPALIVE_AUTO=1 python -c pass vs python -c "import socket"',
            modules=import_breakdown(auto, plain, runs),
        )
    )
    imported = ("import keepalive", _env())
    plain = ("import socket, logging", _env())
    results.append(
        _startup_row(
            "startup_import_keepalive",
            pairs(([python, "-c", imported[0]], imported[1]), ([python, "-c", plain[0]], plain[1]), n),
            goal="<= 1.15",
            note='python -c "import keepalive" vs python -c "import socket, logging"',
            modules=import_breakdown(imported, plain, runs),
        )
    )
    for runtime in ("asyncio", "anyio", "trio"):
        results.append(_stall_row(runtime, stall_n))
    return results
