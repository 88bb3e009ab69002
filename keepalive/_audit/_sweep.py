"""The sweep engine: walk a process's TCP sockets through duplicates of their descriptors, judge each, and
let a visitor act on it (report, apply, tighten)."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from keepalive._audit._access import _alive, _describe, _Getfd, _ProcessGone, _read_options, _same_socket
from keepalive._audit._tables import _read_tables, _Row, _socket_fds
from keepalive._audit._verdict import SocketState, _check_policy, _path_timeout, _require_proc, _state, _timer_state
from keepalive._policy import Policy, resolve_default_policy
from keepalive._socket import borrow_socket
from keepalive._tighten import Tightened, log_tightened, tighten

_Visitor = Callable[[SocketState, socket.socket], None]


def _own(policy: Policy, path_timeout: float | None, visit: _Visitor | None = None) -> list[SocketState]:
    """This process's sockets; ``visit(state, sock)`` is called with a borrowed duplicate before it closes."""
    pid = os.getpid()
    states: list[SocketState] = []
    for fd, inode in sorted(_socket_fds("/proc/self").items()):
        try:
            dup = os.dup(fd)
        except OSError:  # closed meanwhile
            continue
        state = _inspect(pid, fd, inode, dup, policy=policy, path_timeout=path_timeout, visit=visit)
        if state is not None:
            states.append(state)
    return states


def _inspect(
    pid: int,
    fd: int,
    inode: int,
    dup: int,
    *,
    policy: Policy,
    path_timeout: float | None,
    visit: _Visitor | None = None,
) -> SocketState | None:
    """The state of the socket behind ``dup`` (a descriptor of this process, closed here); None: not TCP/IP."""
    try:
        if not _same_socket(dup, inode):  # closed and the number reused meanwhile
            return None
        try:
            sock = borrow_socket(dup)
        except OSError:
            return None
        dup = -1  # the socket object owns it now
        with sock:
            row = _describe(sock, inode)
            if row is None:  # UDP, AF_UNIX, netlink, ...
                return None
            state = _state(pid, fd, row, options=_read_options(sock), path_timeout=path_timeout, policy=policy)
            if visit is not None:
                visit(state, sock)
            return state
    finally:
        if dup >= 0:
            os.close(dup)


def _other(pid: int, policy: Policy, path_timeout: float | None) -> list[SocketState]:
    proc = f"/proc/{pid}"
    try:
        getfd = _Getfd(pid)
        try:
            try:
                fds = _socket_fds(proc)
            except (FileNotFoundError, ProcessLookupError):
                raise _ProcessGone from None
            states: list[SocketState] = []
            rows: dict[int, _Row] | None = None
            for fd, inode in sorted(fds.items()):
                dup = getfd.get(fd)
                if dup is not None:
                    state = _inspect(pid, fd, inode, dup, policy=policy, path_timeout=path_timeout)
                    if state is not None:
                        states.append(state)
                    continue
                if getfd.error is None:  # closed meanwhile
                    continue
                if rows is None:
                    try:
                        rows = _read_tables(proc, set(fds.values()))
                    except (FileNotFoundError, ProcessLookupError):
                        raise _ProcessGone from None
                row = rows.get(inode)
                if row is not None:
                    states.append(_timer_state(pid, fd, row, getfd.error, policy=policy, path_timeout=path_timeout))
            if getfd.pidfd is not None and not _alive(getfd.pidfd):
                raise _ProcessGone
            return states
        finally:
            getfd.close()
    except _ProcessGone:
        raise ProcessLookupError(errno.ESRCH, "no such process, or it exited during the audit") from None
    except PermissionError as exc:
        raise PermissionError(
            errno.EACCES,
            f"cannot read the descriptors of process {pid} ({exc.strerror}): run as the same user or with "
            "CAP_SYS_PTRACE (root)",
        ) from None


def audit(
    policy: Policy | None = None, *, pid: int | None = None, path_timeout: float | None = None
) -> list[SocketState]:
    """The TCP sockets of this process (or of process ``pid``) with their keepalive options and a verdict.

    Only reads: descriptors are duplicated, inspected with ``getsockopt`` and the duplicates closed; the original
    sockets are never closed or changed. Sockets that are not TCP, and descriptors that close during the audit,
    are skipped.

    Args:
        policy: the yardstick when no path timeout is known, and the advice in ``fix``; default
            :func:`keepalive.default_policy` (a broken environment falls back to the built-in policy).
        pid: another process (Linux; its options are read with ``pidfd_getfd`` where permitted, else only its
            kernel keepalive timer: ``source == "timer"``). None or ``os.getpid()``: this process.
        path_timeout: the path's idle timeout in seconds; default: the one the checker detects, if any.

    Returns:
        One :class:`SocketState` per TCP socket, ordered by descriptor.

    Raises:
        KeepaliveError: not Linux (no ``/proc``).
        ProcessLookupError: ``pid`` does not exist or exited during the audit.
        PermissionError: ``pid``'s descriptors are not readable (another user without CAP_SYS_PTRACE).
        ValueError: ``path_timeout`` is not a positive number.
    """
    _require_proc()
    _check_policy(policy)
    timeout = _path_timeout(path_timeout)
    if policy is None:
        policy = resolve_default_policy()
    if pid is None or pid == os.getpid():
        return _own(policy, timeout)
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        raise ValueError(f"pid must be a positive integer, got {pid!r}")
    return _other(pid, policy, timeout)


# ------------------------------------------------------------------------------------------------ tighten sweep


@dataclass(frozen=True, slots=True)
class Reached:
    """One connection a tighten round reached for the first time.

    Attributes:
        pid: the process holding it.
        fd: its descriptor number there.
        local: local address (``ip:port``).
        remote: remote address.
        result: what :func:`keepalive._tighten.tighten` read and changed.
    """

    pid: int
    fd: int
    local: str
    remote: str
    result: Tightened


@dataclass(slots=True)
class Round:
    """The outcome of :func:`tighten_round` for one process.

    Attributes:
        reached: connections seen for the first time (each one is reached once; later rounds skip it).
        unreachable: why this process's descriptors cannot be duplicated (pidfd_getfd refused, not available),
            or None.
        gone: the process exited during the round.
    """

    reached: list[Reached] = field(default_factory=list)
    unreachable: str | None = None
    gone: bool = False


def tighten_round(pid: int | None, policy: Policy, known: set[int], *, origin: str) -> Round:
    """Bring every connected TCP socket of process ``pid`` (None: this process) within ``policy``, tighten-only.

    ``known`` holds the inodes of sockets handled in earlier rounds: they are skipped (a descriptor listing and a
    set lookup each), new ones are tightened and added, and inodes no longer open are forgotten. Listening
    sockets are left alone, and sockets not connected yet are left for a later round (their owner may still be
    setting its own options before connect). Descriptors that close and processes that exit during the round are
    skipped without error. Each change is logged once per distinct (origin, values) at INFO (:func:`log_tightened`).
    """
    result = Round()
    own = pid is None or pid == os.getpid()
    proc = "/proc/self" if own else f"/proc/{pid}"
    number = os.getpid() if own else int(pid)  # type: ignore[arg-type]
    getfd: _Getfd | None = None
    try:
        try:
            fds = _socket_fds(proc)
        except (FileNotFoundError, ProcessLookupError):
            result.gone = True
            return result
        except PermissionError as exc:
            why = f"{exc.strerror}: another user, or a process that is not dumpable"
            result.unreachable = f"cannot read its descriptors in /proc ({why})"
            return result
        known.intersection_update(fds.values())
        for fd, inode in sorted(fds.items()):
            if inode in known:
                continue
            if own:
                try:
                    dup: int | None = os.dup(fd)
                except OSError:
                    continue
            else:
                if getfd is None:
                    getfd = _Getfd(number)
                dup = getfd.get(fd)
                if dup is None:
                    if getfd.error is not None:
                        result.unreachable = getfd.error
                        return result
                    continue  # closed meanwhile
            if dup is None:
                continue
            outcome = _tighten_one(Found(number, fd, inode), dup, policy, origin)
            if outcome is not None:
                known.add(inode)
                if isinstance(outcome, Reached):
                    result.reached.append(outcome)
    except _ProcessGone:
        result.gone = True
    finally:
        if getfd is not None:
            getfd.close()
    return result


class Found(NamedTuple):
    """A socket descriptor found in a process: where it is and which socket it was when listed."""

    pid: int
    fd: int
    inode: int


def _tighten_one(found: Found, dup: int, policy: Policy, origin: str) -> Reached | bool | None:
    """Tighten the socket behind ``dup`` (closed here): a :class:`Reached`; False for what is not a connection
    (UDP, AF_UNIX, a listener: remembered and skipped from now on); None when it is gone meanwhile or not
    connected yet (looked at again next round)."""
    pid, fd, inode = found
    try:
        if not _same_socket(dup, inode):
            return None
        try:
            sock = borrow_socket(dup)
        except OSError:
            return None
        dup = -1
        with sock:
            row = _describe(sock, inode)
            if row is None or row.state == "LISTEN":
                return False
            if row.state == "CLOSE":  # not connected yet: its owner may still set its own options; look again later
                return None
            tightened = tighten(sock, policy)
            log_tightened(origin, tightened)
            return Reached(pid=pid, fd=fd, local=row.local, remote=row.remote, result=tightened)
    finally:
        if dup >= 0:
            os.close(dup)
