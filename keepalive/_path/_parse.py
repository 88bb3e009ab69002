"""Pure parsers for what the checker reads. None of them raises: each returns a value or the reason it can't.

A parser result is ``(value, None)`` or ``(None, reason)``; the reason is a short text for the report.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from keepalive._path._text import decode_text, describe, parse_int

__all__ = [
    "NfStat",
    "decode_text",
    "describe",
    "parse_duration",
    "parse_int",
    "parse_nf_stat",
]

#: /proc/net/stat/nf_conntrack counters are ``unsigned int`` per CPU (``%08x``); they wrap at 2**32.
COUNTER_WRAP: Final = 2**32


_DURATION_UNITS: Final = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART: Final = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_MAX_SECONDS: Final = 2**63 / 1e9  # Go's time.Duration is int64 nanoseconds


def parse_duration(value: object) -> tuple[float | None, str | None]:
    """A Kubernetes duration (Go ``time.ParseDuration``: ``"24h0m0s"``, ``"1h"``, ``"1.5m"``, ``"0s"``) in seconds.

    ``"0"`` and ``0`` mean zero. Other bare numbers are refused, as kube-proxy refuses them: a duration needs a unit.
    """
    if isinstance(value, bool):
        return None, f"expected a duration such as '24h0m0s', got {value!r}"
    if isinstance(value, int | float):
        if value == 0:
            return 0.0, None
        return None, f"expected a duration with a unit such as '24h0m0s', got the bare number {value!r}"
    if not isinstance(value, str):
        return None, f"expected a duration such as '24h0m0s', got {type(value).__name__}"
    text = value.strip()
    if text in {"0", "+0", "-0"}:
        return 0.0, None
    body = text[1:] if text[:1] in "+-" else text
    if not body:
        return None, f"not a duration: {describe(text)}"
    total = 0.0
    position = 0
    for match in _DURATION_PART.finditer(body):
        if match.start() != position:
            return None, f"not a duration: {describe(text)}"
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if position != len(body) or position == 0:
        return None, f"not a duration: {describe(text)}"
    if text.startswith("-"):
        total = -total
    if not math.isfinite(total) or abs(total) > _DURATION_MAX_SECONDS:
        return None, f"duration out of range: {describe(text)}"
    return total, None


@dataclass(frozen=True, slots=True)
class NfStat:
    """``/proc/net/stat/nf_conntrack``: the header's column names and one row of counters per CPU."""

    columns: tuple[str, ...]
    rows: tuple[tuple[int, ...], ...]

    def totals(self) -> dict[str, int]:
        """Each column summed over the CPUs; ``entries`` (the same table size on every row) is taken once."""
        result: dict[str, int] = {}
        for index, name in enumerate(self.columns):
            column = [row[index] for row in self.rows]
            result[name] = max(column) if name == "entries" else sum(column)
        return result

    def rates(self, later: NfStat, seconds: float) -> dict[str, float]:
        """Per-second increase of each counter from this reading to ``later`` (``entries`` excluded).

        Each CPU's counter is a 32-bit value that wraps; a difference is taken modulo 2**32 per CPU when both
        readings have the same CPUs, else from the totals (a negative total difference is left out).
        """
        if seconds <= 0:
            return {}
        result: dict[str, float] = {}
        same_shape = len(self.rows) == len(later.rows)
        later_index = {name: i for i, name in enumerate(later.columns)}
        for index, name in enumerate(self.columns):
            other = later_index.get(name)
            if other is None or name == "entries":
                continue
            if same_shape:
                delta = sum(
                    (after[other] - before[index]) % COUNTER_WRAP
                    for before, after in zip(self.rows, later.rows, strict=True)
                )
            else:
                delta = sum(row[other] for row in later.rows) - sum(row[index] for row in self.rows)
                if delta < 0:
                    continue
            result[name] = delta / seconds
        return result


def _hex(token: str) -> int | None:
    if not 1 <= len(token) <= 16 or not token.isascii():
        return None
    try:
        return int(token, 16)
    except ValueError:
        return None


def parse_nf_stat(text: str) -> tuple[NfStat | None, str | None]:
    """Parse ``/proc/net/stat/nf_conntrack`` by its header: the columns differ between kernels.

    The first line names the columns; every other non-empty line is one CPU's counters in hex.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return None, "empty"
    columns = tuple(lines[0].split())
    if not all(re.fullmatch(r"[a-z_][a-z0-9_]*", name) for name in columns):
        return None, f"unexpected header {describe(lines[0])}"
    if len(set(columns)) != len(columns):
        return None, "header repeats a column name"
    if len(lines) == 1:
        return None, "header only, no per-CPU rows"
    rows: list[tuple[int, ...]] = []
    for number, line in enumerate(lines[1:], start=2):
        tokens: Sequence[str] = line.split()
        if len(tokens) != len(columns):
            return None, f"line {number} has {len(tokens)} fields, the header has {len(columns)}"
        values = [_hex(token) for token in tokens]
        if any(value is None for value in values):
            return None, f"line {number} is not hexadecimal: {describe(line)}"
        rows.append(tuple(value for value in values if value is not None))
    return NfStat(columns=columns, rows=tuple(rows)), None
