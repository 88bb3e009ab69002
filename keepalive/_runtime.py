"""What every wrapper and adapter calls before it opens a connection: :func:`resolve`.

It turns ``policy=None`` into the process's default policy (never raising: a broken environment is logged once
and the built-in default is used) and, on its first call in the process, runs the node check once
(``keepalive.checker``), logging what does not fit on logger ``keepalive.check``. ``KEEPALIVE_CHECK=0`` turns
that check off. After the first call it costs one global read.
"""

from __future__ import annotations

import os
import threading
from typing import Final

from keepalive._log import get_logger
from keepalive._policy import Policy, resolve_default_policy

__all__ = ["ENV_CHECK", "check_enabled", "reset", "resolve"]

log = get_logger("runtime")

ENV_CHECK: Final = "KEEPALIVE_CHECK"
_OFF: Final = frozenset({"0", "off", "false", "no", "disabled"})

_checked = False
_lock = threading.Lock()


def check_enabled() -> bool:
    """False when ``KEEPALIVE_CHECK`` turns the once-per-process runtime check off."""
    return os.environ.get(ENV_CHECK, "").strip().lower() not in _OFF


def _first_use() -> None:
    global _checked
    with _lock:
        if _checked:
            return
        _checked = True
    if not check_enabled():
        log.debug("runtime check disabled by %s", ENV_CHECK)
        return
    try:
        from keepalive.checker import _runtime as checker_runtime  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        log.debug("runtime check unavailable: keepalive.checker is not importable")
        return
    try:
        checker_runtime.run_once()
    except Exception:
        # The check is advice; it must never break the connection that triggered it.
        log.debug("runtime check failed", exc_info=True)


def resolve(policy: Policy | None) -> Policy:
    """The policy a wrapper or adapter should use: ``policy``, or the default when None.

    The first call in the process also runs the once-per-process runtime check.
    """
    if not _checked:
        _first_use()
    if policy is None:
        return resolve_default_policy()
    if not isinstance(policy, Policy):
        raise TypeError(f"policy must be a keepalive.Policy or None, got {type(policy).__name__}")
    return policy


def reset() -> None:
    """Forget that the runtime check ran (for tests)."""
    global _checked
    with _lock:
        _checked = False
