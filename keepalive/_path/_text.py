"""Text of proc and config files: decoding, one integer, short quotes for messages. None of these raises.

Split from :mod:`._parse` (which re-exports them): the default policy's cheap path needs only these, on
the caller's thread: no regular expressions, no dataclasses.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

__all__ = ["MAX_DIGITS", "decode_text", "describe", "parse_int"]

#: Bigger values are reported as garbage: no sysctl or counter the checker reads is wider than 64 bits.
MAX_DIGITS: Final = 20


def describe(text: str, limit: int = 40) -> str:
    """``repr`` of ``text``, shortened to about ``limit`` characters, for messages."""
    if len(text) > limit:
        return repr(text[:limit]) + "..."
    return repr(text)


def decode_text(data: bytes) -> tuple[str | None, str | None]:
    """Bytes of a proc file or config file as text, or the reason they are not text."""
    if not data.strip():
        return None, "empty"
    if b"\x00" in data:
        return None, "binary content (NUL bytes), not text"
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        return None, "not UTF-8 text"


def parse_int(text: str) -> tuple[int | None, str | None]:
    """One decimal integer, as a sysctl file holds it (``"86400\\n"``)."""
    token = text.strip()
    if not token:
        return None, "empty"
    if len(token.split()) != 1:
        return None, f"expected one integer, got {describe(token)}"
    digits = token[1:] if token[0] in "+-" else token
    if not digits.isascii() or not digits.isdigit():
        return None, f"not an integer: {describe(token)}"
    if len(digits) > MAX_DIGITS:
        return None, f"number too large ({len(digits)} digits)"
    return int(token), None
