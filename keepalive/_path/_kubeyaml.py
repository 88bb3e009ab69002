"""A small, strict subset of YAML, for the KubeProxyConfiguration kubeadm and kubectl write, when PyYAML is absent.

A JSON ConfigMap (``kubectl -o json``) or a running kube-proxy's ``--config`` file holds its configuration as
YAML text, and the user gave no YAML: reading it should not need PyYAML. This reader takes block mappings and
block sequences of scalars (plain, single- or double-quoted), literal block scalars (``|``, ``|-``, ``|+``: kubectl's
``config.conf: |-``), ``{}``/``[]`` and comments, and resolves plain
scalars as YAML 1.1 does (PyYAML's rules: ``null``/``~``, ``true``/``yes``/``on``..., integers,
floats, else a string). Anything else (flow collections with content, anchors, tags, folded scalars, several
documents) gives a reason, never a guess; the caller then asks for PyYAML.
"""

from __future__ import annotations

import json
import re
from typing import Final

__all__ = ["load_block_yaml"]

_NULL: Final = frozenset({"", "~", "null", "Null", "NULL"})
_TRUE: Final = frozenset({"yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"})
_FALSE: Final = frozenset({"no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"})
_INT: Final = re.compile(r"[-+]?(?:0|[1-9][0-9_]*)|[-+]?0b[01_]+|[-+]?0[0-7_]+|[-+]?0x[0-9a-fA-F_]+")
_FLOAT: Final = re.compile(
    r"[-+]?(?:[0-9][0-9_]*)?\.[0-9_]*(?:[eE][-+][0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)"
)
_KEY: Final = re.compile(
    r"""(?P<key>"(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[^\s#'"{}\[\],&*!|>%@`-][^#]*?|-[^\s#][^#]*?)\s*:(?:\s+(?P<rest>.*))?$"""
)


class Unsupported(ValueError):
    """Outside the subset this reader takes."""


def _resolve(plain: str) -> object:
    if plain in _NULL:
        return None
    if plain in _TRUE:
        return True
    if plain in _FALSE:
        return False
    if _INT.fullmatch(plain):
        text = plain.replace("_", "")
        sign = -1 if text.startswith("-") else 1
        body = text.lstrip("+-")
        if body.startswith(("0b", "0x")):
            return sign * int(body, 0)
        if len(body) > 1 and body.startswith("0"):
            return sign * int(body, 8)
        return sign * int(body)
    if _FLOAT.fullmatch(plain) and plain not in {".", "-.", "+."}:
        lowered = plain.lower()
        if "inf" in lowered or "nan" in lowered:
            return float(lowered.replace(".", ""))
        return float(plain.replace("_", ""))
    return plain


def _scalar(text: str) -> object:
    """One scalar after ``key:`` or ``-``, with a trailing comment allowed."""
    if text.startswith('"'):
        match = re.match(r'"((?:[^"\\]|\\.)*)"\s*(?:#.*)?$', text)
        if match is None:
            raise Unsupported("a double-quoted scalar over several lines")
        try:
            return json.loads(f'"{match.group(1)}"')
        except ValueError:
            raise Unsupported("a YAML escape that JSON does not share") from None
    if text.startswith("'"):
        match = re.match(r"'((?:[^']|'')*)'\s*(?:#.*)?$", text)
        if match is None:
            raise Unsupported("a single-quoted scalar over several lines")
        return match.group(1).replace("''", "'")
    plain = re.sub(r"\s+#.*$", "", text).strip()
    if plain in ("{}", "[]"):
        return {} if plain == "{}" else []
    if plain[:1] in set("{[&*!|>%@`") or plain.startswith(("? ", ": ")):
        raise Unsupported(f"{plain[:1]!r} (flow collections, anchors, tags, block scalars)")
    return _resolve(plain)


class _Reader:
    def __init__(self, text: str) -> None:
        self.lines: list[tuple[int, str]] = []
        self.raw: list[str] = []
        self.raw_index: list[int] = []  # lines[i] is raw[raw_index[i]]
        for number, line in enumerate(text.splitlines()):
            stripped = line.strip()
            if stripped in ("---", "...") or stripped.startswith(("--- ", "%")):
                if self.lines or stripped.startswith("%"):
                    raise Unsupported("several documents or directives")
                continue
            if "\t" in line[: len(line) - len(line.lstrip())]:
                raise Unsupported(f"a tab in the indentation (line {number + 1})")
            self.raw.append(line)
            if not stripped or stripped.startswith("#"):
                continue
            self.lines.append((len(line) - len(line.lstrip(" ")), line.strip()))
            self.raw_index.append(len(self.raw) - 1)
        self.position = 0

    def peek(self) -> tuple[int, str] | None:
        return self.lines[self.position] if self.position < len(self.lines) else None

    def node(self, indent: int) -> object:
        line = self.peek()
        if line is None or line[0] < indent:
            return None
        if line[1] == "-" or line[1].startswith("- "):
            return self.sequence(line[0])
        return self.mapping(line[0])

    def mapping(self, indent: int) -> dict[str, object]:
        result: dict[str, object] = {}
        while (line := self.peek()) is not None and line[0] == indent:
            match = _KEY.match(line[1])
            if match is None or line[1].startswith("- "):
                raise Unsupported(f"not a 'key: value' line: {line[1][:40]!r}")
            key = match.group("key")
            key_value = _scalar(key) if key[:1] in "\"'" else key
            rest = (match.group("rest") or "").strip()
            self.position += 1
            if re.fullmatch(r"\|[-+]?(?:\s+#.*)?", rest):
                result[str(key_value)] = self.literal(indent, rest[1:2])
                continue
            if rest and not rest.startswith("#"):
                result[str(key_value)] = _scalar(rest)
                continue
            following = self.peek()
            if following is not None and following[0] == indent and (following[1] == "-" or following[1][:2] == "- "):
                result[str(key_value)] = self.sequence(indent)  # kubectl writes a key's list at the key's column
                continue
            result[str(key_value)] = self.node(indent + 1)
        line = self.peek()
        if line is not None and line[0] > indent:
            raise Unsupported(f"unexpected indentation: {line[1][:40]!r}")
        return result

    def literal(self, indent: int, chomp: str) -> str:
        """A literal block scalar (``|``, ``|-``, ``|+``) after the line just read: its lines, comments included,
        with the first line's indentation removed; clip, strip or keep the final newlines."""
        start = self.raw_index[self.position - 1] + 1
        end = start
        while end < len(self.raw) and (
            not self.raw[end].strip() or len(self.raw[end]) - len(self.raw[end].lstrip()) > indent
        ):
            end += 1
        body = self.raw[start:end]
        content = [line for line in body if line.strip()]
        margin = min((len(line) - len(line.lstrip(" ")) for line in content[:1]), default=0)
        if any(line.strip() and len(line) - len(line.lstrip(" ")) < margin for line in body):
            raise Unsupported("a literal block scalar with a less-indented line")
        text = "\n".join(line[margin:] for line in body)
        while self.position < len(self.lines) and self.raw_index[self.position] < end:
            self.position += 1
        if chomp == "+":
            return text + "\n"
        text = text.rstrip("\n")
        return text if chomp == "-" or not text else text + "\n"

    def sequence(self, indent: int) -> list[object]:
        result: list[object] = []
        while (line := self.peek()) is not None and line[0] == indent and (line[1] == "-" or line[1].startswith("- ")):
            rest = line[1][1:].lstrip(" ")
            if not rest or rest.startswith("#"):
                self.position += 1
                result.append(self.node(indent + 1))
            elif _KEY.match(rest) and not rest.startswith(("'", '"')):
                inner = indent + (len(line[1]) - len(rest))
                self.lines[self.position] = (inner, rest)  # "- key: value" opens a mapping at the key's column
                result.append(self.mapping(inner))
            else:
                self.position += 1
                result.append(_scalar(rest))
        return result


def load_block_yaml(text: str) -> tuple[object | None, str | None]:
    """The one document of ``text`` if it stays within the subset, else (None, reason)."""
    try:
        reader = _Reader(text)
        value = reader.node(0)
        if reader.peek() is not None:
            raise Unsupported(f"unexpected line {reader.peek()[1][:40]!r}")  # type: ignore[index]
    except (Unsupported, RecursionError) as exc:
        return None, f"outside the YAML this reader takes without PyYAML: {exc}"
    return value, None
