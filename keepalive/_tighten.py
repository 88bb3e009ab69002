"""Tighten-only: bring a socket's keepalive within a policy without ever loosening what it has.

Everything that acts on sockets the user did not configure explicitly (``install()``, ``KEEPALIVE_AUTO``, the
in-process sweep, ``keepalive run``'s supervisor) goes through :func:`tighten`. For each socket:

- SO_KEEPALIVE on;
- idle, interval and count: each the smaller of the socket's value and the policy's (the socket's value is its
  effective one: the namespace's ``tcp_keepalive_*`` sysctl when it set none);
- TCP_USER_TIMEOUT: the policy's where the socket has none (0); a socket's own user timeout is left alone.

So a client's own tighter choice survives (redis-py's 30/5/3 under a 60/10/5 policy) and a looser one (pymongo's
120/10/9) is brought down. Explicit adapters and :func:`keepalive.apply` keep applying their policy as given.

Where the current values cannot be read (Windows before 10 1709 sets idle and interval through an ioctl that has
no getter), a socket with keepalive off gets the policy and one with keepalive on is left alone: switching it on
was someone's choice and its timings are unknown.
"""

from __future__ import annotations

import _thread
import os

from keepalive._log import get_logger
from keepalive._platform import CURRENT
from keepalive._policy import Policy
from keepalive._socket import apply
from keepalive._value import Value

# Not `from typing import ...`: typing costs ~2 ms to import, and mypy knows this name.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar, Final

__all__ = ["Tightened", "log_tightened", "tighten"]

log = get_logger("install")

_SOL_SOCKET: Final = CURRENT.sol_socket
_SO_KEEPALIVE: Final = CURRENT.so_keepalive
_TCP: Final = CURRENT.ipproto_tcp
#: The (name, option) pairs tighten() reads and lowers, in the order the kernel wants them (count last is fine).
_TIMINGS: Final = tuple(
    (name, opt)
    for name, opt in (("idle", CURRENT.idle), ("interval", CURRENT.interval), ("count", CURRENT.count))
    if opt is not None
)
_USER_TIMEOUT: Final = CURRENT.user_timeout
_READABLE: Final = len(_TIMINGS) == 3


class Tightened(Value):
    """What :func:`tighten` found and did on one socket.

    Attributes:
        before: the socket's (keepalive, idle, interval, count, user timeout in ms) before; None where unreadable.
        after: the same after (equal to ``before`` when nothing changed).
        changed: the names of the options that were set (``"keepalive"``, ``"idle"``, ``"interval"``, ``"count"``,
            ``"user_timeout"``); empty when the socket was already within the policy.
        error: why the socket could not be read or changed, or None.
    """

    __slots__ = ("after", "before", "changed", "error")
    _field_types: ClassVar[dict[str, str]] = {
        "before": "tuple[bool | None, int | None, int | None, int | None, int | None]",
        "after": "tuple[bool | None, int | None, int | None, int | None, int | None]",
        "changed": "tuple[str, ...]",
        "error": "str | None",
    }

    before: tuple[bool | None, int | None, int | None, int | None, int | None]
    after: tuple[bool | None, int | None, int | None, int | None, int | None]
    changed: tuple[str, ...]
    error: str | None

    def __init__(
        self,
        before: tuple[bool | None, int | None, int | None, int | None, int | None],
        after: tuple[bool | None, int | None, int | None, int | None, int | None],
        changed: tuple[str, ...],
        error: str | None = None,
    ) -> None:
        object.__setattr__(self, "before", before)
        object.__setattr__(self, "after", after)
        object.__setattr__(self, "changed", changed)
        object.__setattr__(self, "error", error)

    @property
    def loosened(self) -> bool:
        """Whether any timing ended above its value before (a bug: tighten() must never do that)."""
        return any(
            a is not None and b is not None and a > b for a, b in zip(self.after[1:4], self.before[1:4], strict=True)
        )


def _read(sock: Any) -> tuple[bool, int | None, int | None, int | None, int | None]:
    getsockopt = sock.getsockopt
    keepalive = bool(getsockopt(_SOL_SOCKET, _SO_KEEPALIVE))
    values = [int(getsockopt(_TCP, opt)) for _name, opt in _TIMINGS] if _READABLE else [None, None, None]
    user_timeout: int | None = None
    if _USER_TIMEOUT is not None:
        try:
            user_timeout = int(getsockopt(_TCP, _USER_TIMEOUT))
        except OSError:
            user_timeout = None
    return keepalive, values[0], values[1], values[2], user_timeout


def tighten(sock: Any, policy: Policy, *, verify: bool = True) -> Tightened:
    """Bring ``sock``'s keepalive within ``policy`` without loosening anything. Never raises for socket errors.

    Args:
        sock: a TCP socket (or a borrowed duplicate of one: options live on the socket, not the descriptor).
        policy: the upper bound for idle, interval and count; its user timeout fills a socket that has none.
        verify: read the options back after changing them (``after`` is what the kernel holds). False gives
            ``after`` as what was read before with what was set in place (Linux stores each of these options
            exactly as given, so the two agree), saving one getsockopt per option: ``install()``'s connect
            hook, which runs on every connection the process makes, uses it.

    Returns:
        What was read and changed (:class:`Tightened`).
    """
    try:
        before = _read(sock)
    except OSError as exc:
        unread = (None, None, None, None, None)
        return Tightened(unread, unread, (), f"getsockopt failed: {exc}")
    keepalive, idle, interval, count, user_timeout = before
    if not _READABLE:
        if keepalive:
            return Tightened(before, before, ())
        applied = apply(sock, policy)
        names = ("keepalive", "idle", "interval", "count") if applied.ok else ()
        return Tightened(before, _safe_read(sock, before), names, None if applied.ok else _why(applied))
    wanted = {"idle": policy.idle, "interval": policy.interval, "count": policy.count}
    current = {"idle": idle, "interval": interval, "count": count}
    changed: list[str] = []
    try:
        for name, opt in _TIMINGS:
            value = current[name]
            if value is None or value > wanted[name]:
                sock.setsockopt(_TCP, opt, wanted[name])
                changed.append(name)
                current[name] = wanted[name]
        policy_ms = policy.user_timeout_ms
        if _USER_TIMEOUT is not None and policy_ms is not None and user_timeout == 0:
            sock.setsockopt(_TCP, _USER_TIMEOUT, policy_ms)
            changed.append("user_timeout")
            user_timeout = policy_ms
        if not keepalive:
            sock.setsockopt(_SOL_SOCKET, _SO_KEEPALIVE, 1)  # last: the timer starts with the tightened values
            changed.append("keepalive")
    except OSError as exc:
        return Tightened(before, _safe_read(sock, before), tuple(changed), f"setsockopt failed: {exc}")
    if not changed:
        return Tightened(before, before, ())
    if not verify:
        return Tightened(
            before, (True, current["idle"], current["interval"], current["count"], user_timeout), tuple(changed)
        )
    return Tightened(before, _safe_read(sock, before), tuple(changed))


def _safe_read(sock: Any, fallback: Any) -> Any:
    try:
        return _read(sock)
    except OSError:
        return fallback


def _why(applied: Any) -> str:
    problems = [f"{name}: {error}" for name, error in applied.failed]
    return str(applied.skipped or "; ".join(problems) or "not applied")


def describe(values: tuple[bool | None, int | None, int | None, int | None, int | None]) -> str:
    """``"off"`` or ``"120/10/9"`` (idle/interval/count) plus the user timeout when set, for messages."""
    keepalive, idle, interval, count, user_timeout = values
    if keepalive is None:
        return "unreadable"
    timings = "/".join("?" if v is None else str(v) for v in (idle, interval, count))
    text = timings if keepalive else f"off ({timings})"
    if user_timeout:
        text += f", user timeout {user_timeout / 1000:g} s"
    return text


_logged: set[tuple[str, tuple[Any, ...], tuple[Any, ...]]] = set()
_logged_lock = _thread.allocate_lock()
_LOGGED_MAX: Final = 1024


def _after_fork_in_child() -> None:
    global _logged_lock
    _logged_lock = _thread.allocate_lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def log_tightened(origin: str, result: Tightened) -> None:
    """Log at INFO that ``origin`` brought a socket down, once per distinct (origin, before, after)."""
    if not result.changed:
        return
    key = (origin, result.before, result.after)
    with _logged_lock:
        if key in _logged or len(_logged) >= _LOGGED_MAX:
            return
        _logged.add(key)
    log.info(
        "keepalive: %s brought a connection's keepalive from %s to %s",
        origin,
        describe(result.before),
        describe(result.after),
        extra={"keepalive_origin": origin, "keepalive_changed": list(result.changed)},
    )
