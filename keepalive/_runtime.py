"""What every wrapper and adapter calls before it opens a connection: :func:`resolve`.

It turns ``policy=None`` into the process's default policy (never raising: a broken environment is logged once
and the built-in default is used) and, on the first use of each distinct policy in the process, has the node
check judge that policy against the path model (``keepalive.checker``), logging what does not fit on logger
``keepalive.check``. The check runs in a daemon thread, so :func:`resolve` returns at once and never stalls an
event loop. ``KEEPALIVE_CHECK=0`` turns it off. After the first use of a policy it costs a set lookup.
"""

from __future__ import annotations

import _thread
import os

from keepalive._log import get_logger
from keepalive._policy import Policy, resolve_default_policy
from keepalive._words import is_off

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

__all__ = ["ENV_CHECK", "check_enabled", "reset", "resolve"]

log = get_logger("runtime")

ENV_CHECK: Final = "KEEPALIVE_CHECK"

#: The policies already handed to the runtime check (by value).
_seen: set[tuple[int, int, int, float | None]] = set()
#: True once any policy was handed to it (the first use in the process).
_checked = False
_lock = _thread.allocate_lock()


def _reset_in_child() -> None:
    global _lock
    _lock = _thread.allocate_lock()


if hasattr(os, "register_at_fork"):
    # A fork while another thread holds the lock must not deadlock the child's first connection.
    os.register_at_fork(after_in_child=_reset_in_child)


def check_enabled() -> bool:
    """False when ``KEEPALIVE_CHECK`` turns the runtime check off."""
    return not is_off(os.environ.get(ENV_CHECK, ""))


def _first_use(policy: Policy, key: tuple[int, int, int, float | None]) -> None:
    global _checked
    with _lock:
        if key in _seen:
            return
        _seen.add(key)
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
        checker_runtime.run_once(policy)  # starts a daemon thread and returns
    except Exception:
        # The check is advice; it must never break the connection that triggered it.
        log.debug("runtime check failed", exc_info=True)


def resolve(policy: Policy | None) -> Policy:
    """The policy a wrapper or adapter should use: ``policy``, or the default when None.

    The first use of each distinct policy also starts the runtime check of that policy (in the background).
    """
    if policy is None:
        policy = resolve_default_policy()
    elif not isinstance(policy, Policy):
        raise TypeError(f"policy must be a keepalive.Policy or None, got {type(policy).__name__}")
    key = (policy.idle, policy.interval, policy.count, policy.user_timeout)
    if key not in _seen:
        _first_use(policy, key)
    return policy


def reset() -> None:
    """Forget which policies the runtime check has seen (for tests)."""
    global _checked
    with _lock:
        _seen.clear()
        _checked = False
