"""The words that switch something on or off, and the words of ``user_timeout``: one set, one meaning everywhere.

=============== ======================================= =================================================
words           as a switch (KEEPALIVE_CHECK, ...)      as a user timeout (API, env, ``--policy``)
=============== ======================================= =================================================
ON_WORDS        on                                      (not a user timeout)
OFF_WORDS       off                                     ``0``: turn TCP_USER_TIMEOUT off (the kernel's 0)
KEEP_WORDS      (not a switch)                          ``None``: leave the socket's own value
=============== ======================================= =================================================

``0`` is an off word, so the number and the words agree: ``user_timeout=0`` and ``user_timeout=off`` both set
TCP_USER_TIMEOUT to 0. ``None`` (and ``keep``, ``none``) never changes the socket.
"""

from __future__ import annotations

# Not `from typing import ...`: typing costs ~2 ms to import, and mypy knows this name.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final


__all__ = ["KEEP_WORDS", "OFF_WORDS", "ON_WORDS", "is_keep", "is_off", "is_on", "switch"]

ON_WORDS: Final = frozenset({"1", "on", "yes", "true", "enabled"})
OFF_WORDS: Final = frozenset({"0", "off", "no", "false", "disabled"})
KEEP_WORDS: Final = frozenset({"keep", "none"})


def _word(text: str) -> str:
    return text.strip().lower()


def is_on(text: str) -> bool:
    """``text`` is one of :data:`ON_WORDS` (case and surrounding spaces ignored)."""
    return _word(text) in ON_WORDS


def is_off(text: str) -> bool:
    """``text`` is one of :data:`OFF_WORDS` (case and surrounding spaces ignored)."""
    return _word(text) in OFF_WORDS


def is_keep(text: str) -> bool:
    """``text`` is one of :data:`KEEP_WORDS` (case and surrounding spaces ignored)."""
    return _word(text) in KEEP_WORDS


def switch(name: str, text: str | None, *, default: bool) -> bool:
    """An on/off setting such as an environment variable: empty or unset gives ``default``.

    Raises:
        ValueError: ``text`` is neither an on nor an off word; the message names ``name`` and the value.
    """
    if text is None or not text.strip():
        return default
    if is_on(text):
        return True
    if is_off(text):
        return False
    raise ValueError(f"{name}={text!r} is not one of {', '.join(sorted(ON_WORDS))} (or {', '.join(sorted(OFF_WORDS))})")
