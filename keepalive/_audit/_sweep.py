"""The sweep engine: walk a process's TCP sockets through duplicates of their descriptors (:func:`_sockets`).

One engine for every user: :func:`keepalive.audit` (this process and others), the background audit
(``_own`` with a visitor that reports or fixes), and the tighten-only rounds of ``install()``'s sweep and
``keepalive run``'s supervisor (:func:`tighten_round`)."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass, field

from keepalive._audit._access import _alive, _describe, _Getfd, _ProcessGone, _read_options, _same_socket
from keepalive._audit._tables import _read_tables, _Row, _socket_fds
from keepalive._audit._verdict import SocketState, _check_policy, _path_timeout, _require_proc, _state, _timer_state
from keepalive._policy import Policy, resolve_default_policy
from keepalive._socket import borrow_socket
from keepalive._tighten import Tightened, log_tightened, tighten

_Visitor = Callable[[SocketState, socket.socket], None]


def _sockets(
    pid: int, fds: dict[int, int], getfd: _Getfd | None, skip: Container[int] = ()
) -> Iterator[tuple[int, int, socket.socket | None, _Row | None]]:
    """The engine: each socket descriptor of process ``pid`` (``fds``: fd -> inode, as listed), through a borrowed
    duplicate (``os.dup`` when ``getfd`` is None: this process; else ``pidfd_getfd``), in descriptor order.

    Yields ``(fd, inode, sock, row)``: ``sock`` is the borrowed duplicate, open until the next item; ``row`` its
    address and TCP state, None when it is not a TCP/IP socket. ``sock`` is None (and ``row`` too) for a
    descriptor that could not be duplicated (``getfd.error`` says why). Descriptors that close, or whose number
    is reused by another socket, meanwhile are skipped, as are inodes in ``skip``. Raises _ProcessGone.
    """
    for fd, inode in sorted(fds.items()):
        if inode in skip:
            continue
        if getfd is None:
            try:
                dup: int | None = os.dup(fd)
            except OSError:  # closed meanwhile
                continue
        else:
            dup = getfd.get(fd)
        if dup is None:
            if getfd is not None and getfd.error is not None:
                yield fd, inode, None, None
            continue  # closed meanwhile
        sock = _borrow(dup, inode)
        if sock is None:  # closed and the number reused meanwhile
            continue
        with sock:
            yield fd, inode, sock, _describe(sock, inode)


def _borrow(dup: int, inode: int) -> socket.socket | None:
    """A socket object owning ``dup`` if ``dup`` is still the socket ``inode``; else ``dup`` is closed: None."""
    try:
        if _same_socket(dup, inode):
            return borrow_socket(dup)
    except OSError:
        pass
    os.close(dup)
    return None


def _own(policy: Policy, path_timeout: float | None, visit: _Visitor | None = None) -> list[SocketState]:
    """This process's sockets; ``visit(state, sock)`` is called with a borrowed duplicate before it closes."""
    pid = os.getpid()
    states: list[SocketState] = []
    for fd, _inode, sock, row in _sockets(pid, _socket_fds("/proc/self"), None):
        if sock is None or row is None:  # UDP, AF_UNIX, netlink, ...
            continue
        state = _state(pid, fd, row, options=_read_options(sock), path_timeout=path_timeout, policy=policy)
        if visit is not None:
            visit(state, sock)
        states.append(state)
    return states


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
            for fd, inode, sock, row in _sockets(pid, fds, getfd):
                if sock is not None:
                    if row is not None:
                        options = _read_options(sock)
                        states.append(_state(pid, fd, row, options=options, path_timeout=path_timeout, policy=policy))
                    continue
                if rows is None:  # pidfd_getfd refused: the kernel's keepalive timer is all there is
                    try:
                        rows = _read_tables(proc, set(fds.values()))
                    except (FileNotFoundError, ProcessLookupError):
                        raise _ProcessGone from None
                timer_row = rows.get(inode)
                if timer_row is not None:
                    why = getfd.error or "pidfd_getfd failed"
                    states.append(_timer_state(pid, fd, timer_row, why, policy=policy, path_timeout=path_timeout))
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
        if not own:
            getfd = _Getfd(number)
        for fd, inode, sock, row in _sockets(number, fds, getfd, skip=known):
            if sock is None:
                result.unreachable = getfd.error if getfd is not None else None
                break
            if row is None or row.state == "LISTEN":  # not a connection: never look at it again
                known.add(inode)
                continue
            if row.state == "CLOSE":  # not connected yet: its owner may still set its own options; look again later
                continue
            tightened = tighten(sock, policy)
            log_tightened(origin, tightened)
            known.add(inode)
            result.reached.append(Reached(pid=number, fd=fd, local=row.local, remote=row.remote, result=tightened))
    except _ProcessGone:
        result.gone = True
    finally:
        if getfd is not None:
            getfd.close()
    return result
