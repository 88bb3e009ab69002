"""The verdict: whether a socket's keepalive fits the path's idle timeout (or, without one, the policy)."""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass
from typing import Literal

from keepalive._audit._access import _Options
from keepalive._audit._tables import _Row
from keepalive._exceptions import KeepaliveError
from keepalive._path import Fit, judge
from keepalive._policy import Policy, explain_path_timeout

Verdict = Literal["ok", "no-keepalive", "too-slow", "unknown"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SocketState:
    """One TCP socket of a process, its keepalive options and the verdict.

    Values that could not be read are None; ``reason`` then says why.

    Attributes:
        pid: the process that holds the socket.
        fd: its descriptor number in that process.
        inode: the socket's inode (``socket:[inode]`` in ``/proc/<pid>/fd``).
        family: ``"ipv4"`` or ``"ipv6"``.
        local: local address, ``"ip:port"`` (IPv6: ``"[ip]:port"``).
        remote: remote address, same format; ``"0.0.0.0:0"`` / ``"[::]:0"`` for a listener or an unconnected
            socket.
        state: the kernel's TCP state name (``"ESTABLISHED"``, ``"LISTEN"``, ``"CLOSE_WAIT"``, ...).
        keepalive: SO_KEEPALIVE on or off.
        idle: TCP_KEEPIDLE in seconds (the effective value: the ``tcp_keepalive_time`` sysctl when not set).
        interval: TCP_KEEPINTVL in seconds (effective value).
        count: TCP_KEEPCNT (effective value).
        user_timeout: TCP_USER_TIMEOUT in seconds; ``0.0`` means not set (the kernel's retransmission limits).
        verdict: ``"ok"``, ``"no-keepalive"``, ``"too-slow"`` or ``"unknown"``.
        reason: why that verdict, in words.
        fix: what to do about it, or None when nothing needs doing.
        path_timeout: the path timeout the verdict used (seconds), or None when the policy was the yardstick.
        source: ``"getsockopt"`` (exact options) or ``"timer"`` (another process whose descriptors could not be
            duplicated: only the kernel's keepalive timer from ``/proc/<pid>/net/tcp``).
        timer: the timer pending on the socket per ``/proc/<pid>/net/tcp`` (``"keepalive"``, ``"retransmit"``,
            ``"none"``, ...); only for other processes, else None.
        timer_remaining: seconds until that timer fires; only for other processes, else None.
    """

    pid: int
    fd: int
    inode: int
    family: str
    local: str
    remote: str
    state: str
    keepalive: bool | None
    idle: int | None
    interval: int | None
    count: int | None
    user_timeout: float | None
    verdict: Verdict
    reason: str
    fix: str | None = None
    path_timeout: float | None = None
    source: str = "getsockopt"
    timer: str | None = None
    timer_remaining: float | None = None

    @property
    def loopback(self) -> bool:
        """True when the remote address is on loopback (no middlebox on that path)."""
        host = self.remote.rpartition(":")[0].strip("[]")
        return host.startswith(("127.", "::ffff:127.")) or host == "::1"

    @property
    def offending(self) -> bool:
        """True when the verdict is ``no-keepalive`` or ``too-slow``."""
        return self.verdict in ("no-keepalive", "too-slow")

    def to_dict(self) -> dict[str, object]:
        """The fields as a JSON-ready dict (None stays None, i.e. null)."""
        return asdict(self)


# ----------------------------------------------------------------------------------------------------- verdict


def _judge(
    keepalive: bool | None,
    idle: int | None,
    interval: int | None,
    path_timeout: float | None,
    policy: Policy,
    *,
    state: str = "ESTABLISHED",
    why_unread: str | None = None,
    timer_remaining: float | None = None,
) -> tuple[Verdict, str, str | None]:
    """(verdict, reason, fix) for one socket."""
    wanted = f"idle {policy.idle} s, interval {policy.interval} s, count {policy.count}"
    how = "keepalive.apply(sock) on it, or the keepalive adapter of the client that opened it (docs/audit.md)"
    path = f"the path timeout of {path_timeout:g} s" if path_timeout is not None else None
    if keepalive is None:
        return "unknown", f"keepalive state not readable: {why_unread or 'unknown error'}", None
    if not keepalive:
        limit = path or "a middlebox's idle timeout"
        if state == "LISTEN":
            return (
                "no-keepalive",
                "SO_KEEPALIVE is off on this listener: the connections it accepts inherit that, unless the server "
                "turns keepalive on for each",
                f"turn keepalive on for the listener or each accepted connection ({wanted}): {how}",
            )
        return (
            "no-keepalive",
            f"SO_KEEPALIVE is off: nothing refreshes the path while the connection is idle, so it dies silently "
            f"after {limit}",
            f"turn keepalive on ({wanted}): {how}",
        )
    if idle is None or interval is None:
        if path_timeout is not None and timer_remaining is not None and timer_remaining >= path_timeout:
            return (
                "too-slow",
                f"keepalive is on but its next timer fires in {timer_remaining:g} s, at or after {path}",
                f"lower TCP_KEEPIDLE/TCP_KEEPINTVL ({wanted}): {how}",
            )
        return "unknown", f"keepalive is on, its timings are not readable: {why_unread or 'unknown error'}", None
    fix = f"lower TCP_KEEPIDLE/TCP_KEEPINTVL ({wanted}): {how}"
    fit = judge(idle, interval, path_timeout)
    if fit is Fit.IDLE_EXCEEDS:
        return "too-slow", f"the first probe comes after {idle} s idle, at or after {path}", fix
    if fit is Fit.SECOND_PROBE_LATE:
        return (
            "too-slow",
            f"the first probe at {idle} s is in time, but if it is lost the next one at {idle + interval} s "
            f"comes at or after {path}",
            fix,
        )
    if fit is Fit.FITS:
        return "ok", f"probes at {idle} s and {idle + interval} s idle, both before {path}", None
    if idle > policy.idle or idle + interval > policy.idle + policy.interval:
        return (
            "too-slow",
            f"no path timeout configured; probes at {idle} s and {idle + interval} s idle are later than the policy's "
            f"{policy.idle} s and {policy.idle + policy.interval} s",
            fix,
        )
    return (
        "ok",
        f"no path timeout configured; probes at {idle} s and {idle + interval} s idle are no later than the policy's",
        None,
    )


# ------------------------------------------------------------------------------------------------------- audit


def _check_policy(policy: object) -> None:
    if policy is not None and not isinstance(policy, Policy):
        raise TypeError(f"policy must be a keepalive.Policy or None, got {type(policy).__name__}")


def _require_proc() -> None:
    if not sys.platform.startswith("linux") or not os.path.exists("/proc/self/net/tcp"):
        raise KeepaliveError(f"keepalive.audit needs Linux's /proc (this is {sys.platform})")


def _path_timeout(path_timeout: float | None) -> float | None:
    return _explain_path_timeout(path_timeout)[0]


def _explain_path_timeout(path_timeout: float | None) -> tuple[float | None, str]:
    """The path timeout the verdicts use, and where it comes from: the path model's answer
    (:func:`keepalive._policy.explain_path_timeout`), so the audit, the checker and the default policy agree."""
    return explain_path_timeout(path_timeout)


def _state(
    pid: int,
    fd: int,
    row: _Row,
    *,
    options: _Options,
    path_timeout: float | None,
    policy: Policy,
    source: str = "getsockopt",
) -> SocketState:
    verdict, reason, fix = _judge(
        options.keepalive,
        options.idle,
        options.interval,
        path_timeout,
        policy,
        state=row.state,
        why_unread=options.error,
    )
    return SocketState(
        pid=pid,
        fd=fd,
        inode=row.inode,
        family=row.family,
        local=row.local,
        remote=row.remote,
        state=row.state,
        keepalive=options.keepalive,
        idle=options.idle,
        interval=options.interval,
        count=options.count,
        user_timeout=options.user_timeout,
        verdict=verdict,
        reason=reason,
        fix=fix,
        path_timeout=path_timeout,
        source=source,
    )


def _timer_state(pid: int, fd: int, row: _Row, why: str, *, policy: Policy, path_timeout: float | None) -> SocketState:
    """What /proc/<pid>/net/tcp alone tells about a socket whose descriptor could not be duplicated."""
    # Only the kernel's view: a pending keepalive timer means SO_KEEPALIVE is on (tcp_set_keepalive arms it in
    # every state but LISTEN and CLOSE); no timer on an established socket means it is off; a retransmission or
    # zero-window timer hides the keepalive timer.
    keepalive: bool | None
    if row.timer == "keepalive":
        keepalive = True
    elif row.timer == "none" and row.state == "ESTABLISHED":
        keepalive = False
    else:
        keepalive = None
        why = f"{why}; the kernel shows the {row.timer!r} timer for a {row.state} socket"
    verdict, reason, fix = _judge(
        keepalive,
        None,
        None,
        path_timeout,
        policy,
        state=row.state,
        why_unread=why,
        timer_remaining=row.timer_remaining,
    )
    if verdict == "no-keepalive":
        reason = f"{reason} (from the kernel's timer: {why})"
    return SocketState(
        pid=pid,
        fd=fd,
        inode=row.inode,
        family=row.family,
        local=row.local,
        remote=row.remote,
        state=row.state,
        keepalive=keepalive,
        idle=None,
        interval=None,
        count=None,
        user_timeout=None,
        verdict=verdict,
        reason=reason,
        fix=fix,
        path_timeout=path_timeout,
        source="timer",
        timer=row.timer,
        timer_remaining=row.timer_remaining,
    )
