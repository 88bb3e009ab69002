"""kube-proxy's command line and Go's value syntax: durations, int32 and bool flags, as kube-proxy parses them.

Durations follow Go's ``time.ParseDuration`` exactly (integer nanoseconds, the same overflow and error texts);
kube-proxy writes durations into sysctls (and IPVS) as whole seconds, truncating: ``1.5s`` is written as 1.
Flags follow spf13/pflag as kube-proxy registers them (``cmd/kube-proxy/app/options.go``): ``--flag=value`` or
``--flag value``, booleans bare or ``--flag=value``, the last occurrence wins, ``--`` ends the flags, ``_`` and
``-`` are the same in a name (kube-proxy's flag set normalises word separators). Nothing here raises for bad input.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "FLAGS",
    "KubeFlags",
    "command_argv",
    "go_bool",
    "go_int32",
    "kube_proxy_argv",
    "looks_like_command_line",
    "nul_argv",
    "parse_flags",
    "parse_go_duration",
    "whole_seconds",
]

SECOND: Final = 1_000_000_000
_UNITS: Final = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 micro sign
    "μs": 1_000,  # U+03BC Greek small letter mu
    "ms": 1_000_000,
    "s": SECOND,
    "m": 60 * SECOND,
    "h": 3600 * SECOND,
}
_MAX: Final = 1 << 63


def _quote(text: str) -> str:
    return '"' + text + '"'


def parse_go_duration(text: str) -> tuple[int | None, str | None]:
    """Go's ``time.ParseDuration``: nanoseconds, or Go's own error text (``time: invalid duration "1d"``).

    ``"0"`` (with an optional sign) is zero; every other number needs a unit; fractions (``1.5h``) and several
    parts (``1h30m``) are allowed; the result must fit an int64 of nanoseconds.
    """
    orig, rest = text, text
    neg = False
    if rest[:1] in ("-", "+"):
        neg = rest[0] == "-"
        rest = rest[1:]
    if rest == "0":
        return 0, None
    invalid = f"time: invalid duration {_quote(orig)}"
    if not rest:
        return None, invalid
    total = 0
    while rest:
        if not (rest[0] == "." or "0" <= rest[0] <= "9"):
            return None, invalid
        match = re.match(r"[0-9]*", rest)
        digits = match.group(0) if match else ""
        rest = rest[len(digits) :]
        whole = int(digits) if digits else 0
        if whole > _MAX:
            return None, invalid
        fraction, scale, post = 0, 1.0, False
        if rest[:1] == ".":
            rest = rest[1:]
            match = re.match(r"[0-9]*", rest)
            fdigits = match.group(0) if match else ""
            rest = rest[len(fdigits) :]
            post = bool(fdigits)
            for char in fdigits:  # Go stops accumulating (but keeps consuming) once the fraction would overflow
                if fraction > (_MAX - 1) // 10:
                    break
                candidate = fraction * 10 + int(char)
                if candidate > _MAX:
                    break
                fraction, scale = candidate, scale * 10
        if not digits and not post:
            return None, invalid
        match = re.match(r"[^0-9.]*", rest)
        unit_text = match.group(0) if match else ""
        if not unit_text:
            return None, f"time: missing unit in duration {_quote(orig)}"
        rest = rest[len(unit_text) :]
        unit = _UNITS.get(unit_text)
        if unit is None:
            return None, f"time: unknown unit {_quote(unit_text)} in duration {_quote(orig)}"
        if whole > _MAX // unit:
            return None, invalid
        value = whole * unit
        if fraction > 0:
            value += int(float(fraction) * (float(unit) / scale))  # Go uses float64 here, so do we
            if value > _MAX:
                return None, invalid
        total += value
        if total > _MAX:
            return None, invalid
    if neg:
        return -total, None
    if total > _MAX - 1:
        return None, invalid
    return total, None


def whole_seconds(nanoseconds: int) -> int:
    """``int(d / time.Second)`` in Go: truncated toward zero, as kube-proxy writes a duration into a sysctl."""
    seconds = abs(nanoseconds) // SECOND
    return -seconds if nanoseconds < 0 else seconds


def go_int32(text: str) -> tuple[int | None, str | None]:
    """``strconv.ParseInt(text, 0, 32)`` (pflag's Int32Var): decimal, ``0x``/``0o``/``0b``, a leading-0 octal,
    and ``_`` between digits (Go's integer literal syntax)."""
    body = text[1:] if text[:1] in ("+", "-") else text
    error = f"strconv.ParseInt: parsing {_quote(text)}: invalid syntax"
    if not body or not body.isascii() or body.startswith("_") or body.endswith("_") or "__" in body:
        return None, error
    base, digits = 10, body
    if body[:2].lower() in ("0x", "0o", "0b"):
        base, digits = {"x": 16, "o": 8, "b": 2}[body[1].lower()], body[2:]
    elif len(body) > 1 and body[0] == "0":
        base, digits = 8, body[1:]
    digits = digits.replace("_", "")
    if not digits or not all(char in "0123456789abcdef"[:base] for char in digits.lower()):
        return None, error
    value = int(digits, base)
    if text.startswith("-"):
        value = -value
    if not -(2**31) <= value < 2**31:
        return None, f"strconv.ParseInt: parsing {_quote(text)}: value out of range"
    return value, None


_TRUE: Final = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE: Final = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def go_bool(text: str) -> tuple[bool | None, str | None]:
    """``strconv.ParseBool`` (pflag's BoolVar)."""
    if text in _TRUE:
        return True, None
    if text in _FALSE:
        return False, None
    return None, f"strconv.ParseBool: parsing {_quote(text)}: invalid syntax"


#: The flags that matter here: flag name -> (KubeProxyConfiguration field, kind).
FLAGS: Final = {
    "proxy-mode": ("mode", "string"),
    "conntrack-tcp-timeout-established": ("conntrack.tcpEstablishedTimeout", "duration"),
    "conntrack-tcp-timeout-close-wait": ("conntrack.tcpCloseWaitTimeout", "duration"),
    "conntrack-max-per-core": ("conntrack.maxPerCore", "int32"),
    "conntrack-min": ("conntrack.min", "int32"),
    "conntrack-tcp-be-liberal": ("conntrack.tcpBeLiberal", "bool"),
    "ipvs-tcp-timeout": ("ipvs.tcpTimeout", "duration"),
}
#: kube-proxy's other boolean flags: a bare ``--flag`` takes no value, so the next word is not consumed.
_OTHER_BOOLS: Final = frozenset(
    {
        "cleanup",
        "bind-address-hard-fail",
        "profiling",
        "init-only",
        "masquerade-all",
        "iptables-localhost-nodeports",
        "ipvs-strict-arp",
        "version",
        "help",
        "alsologtostderr",
        "logtostderr",
        "add-dir-header",
        "skip-headers",
        "skip-log-headers",
        "one-output",
        "log-json-split-stream",
    }
)


@dataclass(frozen=True, slots=True)
class KubeFlags:
    """What a kube-proxy command line says: ``values`` maps a FLAGS name to its last raw value (``"true"`` for a
    bare boolean); ``config`` is the ``--config`` path; ``refused`` lists what pflag itself would reject (``missing``:
    the flags among them that lack their value)."""

    values: dict[str, str] = field(default_factory=dict)
    config: str | None = None
    refused: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()

    def given(self) -> list[str]:
        """``--name=value`` texts of the flags that matter, in FLAGS order, for messages."""
        return [f"--{name}={self.values[name]}" for name in FLAGS if name in self.values]


def parse_flags(argv: Sequence[str]) -> KubeFlags:
    """Read kube-proxy's flags from ``argv`` (without the program name) as pflag does."""
    values: dict[str, str] = {}
    refused: list[str] = []
    missing: list[str] = []
    config: str | None = None
    index = 0
    while index < len(argv):
        word = argv[index]
        index += 1
        if word == "--":
            break
        if not word.startswith("--") or len(word) == 2:
            continue  # a positional word or a shorthand (-v=2): nothing we read
        name, equals, value = word[2:].partition("=")
        name = name.replace("_", "-")
        takes_value = name in FLAGS or name == "config"
        is_bool = (name in FLAGS and FLAGS[name][1] == "bool") or name in _OTHER_BOOLS
        if not equals:
            if is_bool:
                value = "true"
            elif index < len(argv) and (takes_value or not argv[index].startswith("-")):
                value = argv[index]  # pflag takes the next word for a flag with a value, whatever it is; an
                index += 1  # unknown flag may be a boolean, so a following --flag is not taken as its value
            elif takes_value:
                refused.append(f"--{name}: flag needs an argument")
                missing.append(name)
                continue
        if name == "config":
            config = value
        elif name in FLAGS:
            values[name] = value
    return KubeFlags(values=values, config=config, refused=tuple(refused), missing=tuple(missing))


_PROGRAMS: Final = ("kube-proxy",)
_MULTI_CALL: Final = ("hyperkube",)  # hyperkube kube-proxy ... / hyperkube proxy ...
#: Programs that start kube-proxy from their arguments (a shell's -c string, kops' go-runner, env, nsenter).
_WRAPPERS: Final = frozenset(
    {"sh", "bash", "dash", "ash", "go-runner", "env", "exec", "nsenter"}
)  # hyperkube kube-proxy ... / hyperkube proxy ...


def _is_program(word: str) -> bool:
    return os.path.basename(word) in _PROGRAMS


def kube_proxy_argv(argv: Sequence[str]) -> list[str] | None:
    """The flags after the kube-proxy program in ``argv``, or None when ``argv`` does not run kube-proxy.

    The program may follow a wrapper (kops' ``/go-runner --log-file=... /usr/local/bin/kube-proxy --flags``), be
    hyperkube's ``kube-proxy``/``proxy`` sub-command, or sit inside a ``sh -c "exec kube-proxy ..."`` string (GKE).
    """
    words = list(argv)
    for position, word in enumerate(words):
        if _is_program(word):
            return words[position + 1 :]
        following = words[position + 1] if position + 1 < len(words) else ""
        if os.path.basename(word) in _MULTI_CALL and following in ("kube-proxy", "proxy"):
            return words[position + 2 :]
    for word in words:
        if "kube-proxy" in word and any(char.isspace() for char in word):
            inner = command_argv(word)
            if inner:
                found = kube_proxy_argv(inner)
                if found is not None:
                    return found
    return None


def command_argv(text: str) -> list[str] | None:
    """Split a command line as a POSIX shell would (quotes, ``\\`` line continuations, ``#`` comments); None when
    it can't be split (an unclosed quote)."""
    import shlex  # here: only a command-line file needs it

    try:
        return shlex.split(text.replace("\\\r\n", " ").replace("\\\n", " "), comments=True)
    except ValueError:
        return None


def looks_like_command_line(text: str) -> bool:
    """A file holding a command line: its first word (after comment lines) runs kube-proxy, or is a ``--flag``.

    Only the first word is looked at, so a big YAML file costs nothing here."""
    match = re.search(r"^[ \t]*([^\s#]\S*)", text, re.MULTILINE)
    if match is None:
        return False
    first = match.group(1).strip("'\"")
    if os.path.basename(first) in _WRAPPERS:
        return "kube-proxy" in text[:65536]
    return bool(_is_program(first) or os.path.basename(first) in _MULTI_CALL or re.match(r"--[a-z]", first))


def nul_argv(data: bytes) -> list[str] | None:
    """A ``/proc/<pid>/cmdline`` copy (NUL-separated) as argv; None when it is not that."""
    if b"\x00" not in data:
        return None
    try:
        words = data.decode("utf-8").split("\x00")
    except UnicodeDecodeError:
        return None
    while words and not words[-1]:
        words.pop()
    return words or None
