"""Go's value syntax as kube-proxy parses it: time.ParseDuration, strconv.ParseInt(s, 0, 32), strconv.ParseBool,
and the truncation to whole seconds kube-proxy applies when it writes a duration into a sysctl."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keepalive._path._kubeflags import go_bool, go_int32, parse_go_duration, whole_seconds

S = 1_000_000_000

# Rows from Go's own table (src/time/time_test.go, parseDurationTests) plus kube-proxy's usual values.
GOOD = [
    ("0", 0),
    ("5s", 5 * S),
    ("30s", 30 * S),
    ("1478s", 1478 * S),
    ("-5s", -5 * S),
    ("+5s", 5 * S),
    ("-0", 0),
    ("+0", 0),
    ("5.0s", 5 * S),
    ("5.6s", 5 * S + 600_000_000),
    ("5.s", 5 * S),
    (".5s", S // 2),
    ("1.0s", S),
    ("1.00s", S),
    ("1.004s", S + 4_000_000),
    ("1.0040s", S + 4_000_000),
    ("100.00100s", 100 * S + 1_000_000),
    ("10ns", 10),
    ("11us", 11_000),
    ("12µs", 12_000),  # U+00B5
    ("12μs", 12_000),  # U+03BC
    ("13ms", 13_000_000),
    ("14s", 14 * S),
    ("15m", 15 * 60 * S),
    ("16h", 16 * 3600 * S),
    ("3h30m", (3 * 3600 + 30 * 60) * S),
    ("10.5s4m", (4 * 60 + 10) * S + S // 2),
    ("-2m3.4s", -(2 * 60 * S + 3 * S + 400_000_000)),
    ("1h2m3s4ms5us6ns", 3600 * S + 2 * 60 * S + 3 * S + 4_000_000 + 5_000 + 6),
    ("39h9m14.425s", (39 * 3600 + 9 * 60 + 14) * S + 425_000_000),
    ("52763797000ns", 52_763_797_000),
    ("0.3333333333333333333h", 20 * 60 * S),
    ("9007199254740993ns", (1 << 53) + 1),
    ("9223372036854775807ns", (1 << 63) - 1),
    ("9223372036854775.807us", (1 << 63) - 1),
    ("9223372036s854ms775us807ns", (1 << 63) - 1),
    ("-9223372036854775808ns", -(1 << 63)),
    ("-9223372036854775.808us", -(1 << 63)),
    ("0.100000000000000000000h", 6 * 60 * S),
    ("0.830103483285477580700h", 49 * 60 * S + 48 * S + 372_539_827),
    ("24h0m0s", 86400 * S),  # kube-proxy's default established timeout, as it prints it
    ("1h0m0s", 3600 * S),
]

BAD = [
    ("", 'time: invalid duration ""'),
    ("3", 'time: missing unit in duration "3"'),
    ("-", 'time: invalid duration "-"'),
    ("s", 'time: invalid duration "s"'),
    (".", 'time: invalid duration "."'),
    ("-.", 'time: invalid duration "-."'),
    (".s", 'time: invalid duration ".s"'),
    ("+.s", 'time: invalid duration "+.s"'),
    ("1d", 'time: unknown unit "d" in duration "1d"'),
    ("\x85\x85", 'time: invalid duration "\x85\x85"'),
    ("9223372036854775808ns", 'time: invalid duration "9223372036854775808ns"'),
    ("9223372036854775.808us", 'time: invalid duration "9223372036854775.808us"'),
    ("9223372036854ms775us808ns", 'time: invalid duration "9223372036854ms775us808ns"'),
    ("-9223372036854775809ns", 'time: invalid duration "-9223372036854775809ns"'),
    ("2562048h", 'time: invalid duration "2562048h"'),
    ("1e3s", 'time: unknown unit "e" in duration "1e3s"'),
    (" 1s", 'time: invalid duration " 1s"'),
    ("1 s", 'time: unknown unit " s" in duration "1 s"'),
    ("86400", 'time: missing unit in duration "86400"'),
]


@pytest.mark.parametrize(("text", "nanoseconds"), GOOD)
def test_go_durations_parse_to_the_same_nanoseconds_as_go(text: str, nanoseconds: int) -> None:
    assert parse_go_duration(text) == (nanoseconds, None)


@pytest.mark.parametrize(("text", "error"), BAD)
def test_bad_go_durations_give_go_s_error_text(text: str, error: str) -> None:
    assert parse_go_duration(text) == (None, error)


@pytest.mark.parametrize(
    ("nanoseconds", "seconds"),
    [(1_500_000_000, 1), (999_999_999, 0), (86400 * S, 86400), (0, 0), (-1_500_000_000, -1), (S, 1)],
)
def test_whole_seconds_truncate_toward_zero_as_go_integer_division(nanoseconds: int, seconds: int) -> None:
    assert whole_seconds(nanoseconds) == seconds


def go_string(nanoseconds: int) -> str:
    """Our reference of Go's Duration.String() for whole milliseconds (the shape kube-proxy prints)."""
    if nanoseconds == 0:
        return "0s"
    sign = "-" if nanoseconds < 0 else ""
    rest = abs(nanoseconds)
    hours, rest = divmod(rest, 3600 * S)
    minutes, rest = divmod(rest, 60 * S)
    seconds, fraction = divmod(rest, S)
    text = f"{seconds}" + (f".{fraction:09d}".rstrip("0") if fraction else "") + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{text}"
    if minutes:
        return f"{sign}{minutes}m{text}"
    return sign + text


@given(st.integers(min_value=-(2**62), max_value=2**62).map(lambda n: n - n % 1_000_000))
def test_what_go_prints_parses_back_to_the_same_duration(nanoseconds: int) -> None:
    """Round trip through Go's printed form (24h0m0s, 1m30.5s, ...), which the table cannot cover exhaustively."""
    assert parse_go_duration(go_string(nanoseconds)) == (nanoseconds, None)


@given(st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(["h", "m", "s", "ms", "us", "ns"])), min_size=1))
def test_several_whole_parts_add_up(parts: list[tuple[int, str]]) -> None:
    units = {"h": 3600 * S, "m": 60 * S, "s": S, "ms": 1_000_000, "us": 1_000, "ns": 1}
    text = "".join(f"{value}{unit}" for value, unit in parts)
    total = sum(value * units[unit] for value, unit in parts)
    expected = (total, None) if total < 2**63 else (None, f'time: invalid duration "{text}"')
    assert parse_go_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("32768", 32768),
        ("+7", 7),
        ("-1", -1),
        ("0x10", 16),
        ("0X1f", 31),
        ("010", 8),
        ("0o17", 15),
        ("0b101", 5),
        ("1_000", 1000),
        ("0x_1f", 31),
        ("2147483647", 2**31 - 1),
        ("-2147483648", -(2**31)),
    ],
)
def test_int32_flags_parse_as_strconv_parseint_base_0(text: str, value: int) -> None:
    assert go_int32(text) == (value, None)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "invalid syntax"),
        ("lots", "invalid syntax"),
        ("1.0", "invalid syntax"),
        ("_1", "invalid syntax"),
        ("1__0", "invalid syntax"),
        ("1_", "invalid syntax"),
        ("08", "invalid syntax"),
        ("0x", "invalid syntax"),
        ("2147483648", "value out of range"),
        ("-2147483649", "value out of range"),
    ],
)
def test_bad_int32_flags_give_strconv_s_reason(text: str, why: str) -> None:
    value, reason = go_int32(text)
    assert value is None
    assert reason is not None
    assert why in reason
    assert repr(text).strip("'") in reason


@pytest.mark.parametrize("text", ["1", "t", "T", "TRUE", "true", "True"])
def test_true_words_of_strconv_parsebool(text: str) -> None:
    assert go_bool(text) == (True, None)


@pytest.mark.parametrize("text", ["0", "f", "F", "FALSE", "false", "False"])
def test_false_words_of_strconv_parsebool(text: str) -> None:
    assert go_bool(text) == (False, None)


@pytest.mark.parametrize("text", ["yes", "on", "tRUE", "", " true"])
def test_other_words_are_not_booleans_for_pflag(text: str) -> None:
    value, reason = go_bool(text)
    assert value is None
    assert reason is not None
    assert "invalid syntax" in reason
