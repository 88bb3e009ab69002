"""Audit: the TCP connections of this (or another) process and whether their keepalive fits the path.

Linux only. ``/proc/<pid>/fd`` lists the process's sockets (``socket:[inode]`` links); each is read through a
*duplicate* of its descriptor (``os.dup`` for this process, ``pidfd_getfd(2)`` for another one): address, TCP
state (``TCP_INFO``) and the keepalive options with ``getsockopt``. Socket options live on the socket, not on the
descriptor, so the duplicate sees (and, with ``fix=True``, changes) the same socket; closing the duplicate never
closes the original. Where another process's descriptors cannot be duplicated, ``/proc/<pid>/net/tcp`` and
``tcp6`` (the whole network namespace, matched by inode) still tell whether the kernel runs a keepalive timer.

Verdicts (:data:`Verdict`), against the path timeout ``T`` (the checker's, or the one given):

- ``no-keepalive``: SO_KEEPALIVE is off; the kernel never probes an idle connection.
- ``too-slow``: ``idle >= T`` (the first probe comes after the middlebox forgot the connection) or
  ``idle + interval >= T`` (it comes in time, but if it is lost the next one is too late). Without a known ``T``,
  the policy is the yardstick: ``idle > policy.idle`` or ``idle + interval > policy.idle + policy.interval``.
- ``unknown``: the options could not be read (see ``reason``).
- ``ok``: otherwise.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import stat
import sys
import threading
import weakref
from collections.abc import Callable, Container, Iterator
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any, Final, Literal

from keepalive._exceptions import InvalidPolicy, KeepaliveError
from keepalive._log import get_logger
from keepalive._policy import BUILTIN_POLICY, Policy, _detected_path_timeout, resolve_default_policy
from keepalive._socket import apply, borrow_socket

__all__ = ["BackgroundAudit", "SocketState", "Verdict", "audit", "audit_in_background"]

log = get_logger("audit")

Verdict = Literal["ok", "no-keepalive", "too-slow", "unknown"]

#: include/net/tcp_states.h
_TCP_STATES: Final = {
    1: "ESTABLISHED",
    2: "SYN_SENT",
    3: "SYN_RECV",
    4: "FIN_WAIT1",
    5: "FIN_WAIT2",
    6: "TIME_WAIT",
    7: "CLOSE",
    8: "CLOSE_WAIT",
    9: "LAST_ACK",
    10: "LISTEN",
    11: "CLOSING",
    12: "NEW_SYN_RECV",
}
#: The ``tr`` column of /proc/net/tcp (net/ipv4/tcp_ipv4.c get_tcp4_sock): which timer is pending.
_TIMERS: Final = {0: "none", 1: "retransmit", 2: "keepalive", 3: "time-wait", 4: "zero-window-probe"}
#: ``tm->when`` is in clock ticks (USER_HZ, 100 on every Linux architecture Python runs on).
_USER_HZ: Final = 100

#: pidfd_getfd(2) is 438 in the unified syscall table every architecture uses from 5.1 on, except alpha and mips.
_SYS_PIDFD_GETFD: Final = 438
_PIDFD_GETFD_ARCHES: Final = frozenset(
    {
        "x86_64",
        "i386",
        "i486",
        "i586",
        "i686",
        "aarch64",
        "arm64",
        "armv7l",
        "armv6l",
        "armv8l",
        "riscv64",
        "ppc64",
        "ppc64le",
        "s390x",
        "loongarch64",
    }
)


_Visitor = Callable[["SocketState", socket.socket], None]


class _ProcessGone(Exception):
    """The process went away while it was being read."""


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


# --------------------------------------------------------------------------------------------------- /proc tables


@dataclass(frozen=True, slots=True)
class _Row:
    """One row of /proc/<pid>/net/tcp or tcp6."""

    inode: int
    family: str
    local: str
    remote: str
    state: str
    timer: str
    timer_remaining: float
    uid: int


def _address(hex_address: str) -> str:
    """``0100007F:1F90`` -> ``127.0.0.1:8080``; IPv6 ``[..]:port``. Each 32-bit word is in host byte order."""
    host, _, port = hex_address.partition(":")
    raw = b"".join(int(host[i : i + 8], 16).to_bytes(4, sys.byteorder) for i in range(0, len(host), 8))
    number = int(port, 16)
    if len(raw) == 4:
        return f"{socket.inet_ntop(socket.AF_INET, raw)}:{number}"
    return f"[{socket.inet_ntop(socket.AF_INET6, raw)}]:{number}"


def _parse_table(text: str, family: str, inodes: Container[int] | None = None) -> Iterator[_Row]:
    """The rows of a /proc/net/tcp-style table (only those whose inode is in ``inodes``, if given).

    Malformed lines are skipped. Rows with inode 0 (TIME_WAIT, request sockets: no descriptor) are skipped too.
    """
    for line in text.splitlines()[1:]:
        fields = line.split(None, 10)
        if len(fields) < 10:
            continue
        try:
            inode = int(fields[9])
            if not inode or (inodes is not None and inode not in inodes):
                continue
            timer, _, when = fields[5].partition(":")
            yield _Row(
                inode=inode,
                family=family,
                local=_address(fields[1]),
                remote=_address(fields[2]),
                state=_TCP_STATES.get(int(fields[3], 16), fields[3]),
                timer=_TIMERS.get(int(timer, 16), timer),
                timer_remaining=int(when, 16) / _USER_HZ,
                uid=int(fields[7]),
            )
        except ValueError:
            continue


def _read_tables(proc: str, inodes: Container[int] | None = None) -> dict[int, _Row]:
    """inode -> row, from ``<proc>/net/tcp`` and ``tcp6``. A missing tcp6 (IPv6 disabled) is fine."""
    rows: dict[int, _Row] = {}
    for name, family in (("tcp", "ipv4"), ("tcp6", "ipv6")):
        try:
            with open(f"{proc}/net/{name}", encoding="ascii", errors="replace") as table:
                text = table.read()
        except FileNotFoundError:
            if name == "tcp6" and os.path.isdir(proc):
                continue
            raise
        for row in _parse_table(text, family, inodes):
            rows[row.inode] = row
    return rows


def _socket_fds(proc: str) -> dict[int, int]:
    """fd -> socket inode for every socket descriptor under ``<proc>/fd``.

    Descriptors that close while being listed are skipped. Raises PermissionError when the directory is not
    readable and FileNotFoundError / ProcessLookupError when the process is gone.
    """
    found: dict[int, int] = {}
    with os.scandir(f"{proc}/fd") as entries:
        for entry in entries:
            try:
                target = os.readlink(entry.path)
            except OSError:  # closed meanwhile (ENOENT), or the process is exiting (ESRCH)
                continue
            if target.startswith("socket:[") and target.endswith("]"):
                try:
                    found[int(entry.name)] = int(target[8:-1])
                except ValueError:
                    continue
    return found


# ---------------------------------------------------------------------------------------------------- options


@dataclass(frozen=True, slots=True)
class _Options:
    keepalive: bool | None
    idle: int | None
    interval: int | None
    count: int | None
    user_timeout: float | None
    error: str | None


def _read_options(sock: socket.socket) -> _Options:
    """getsockopt of the keepalive options. Never raises; an unreadable socket gives Nones and the error."""
    try:
        keepalive = sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0
        idle = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE)
        interval = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL)
        count = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT)
    except OSError as exc:
        return _Options(None, None, None, None, None, f"getsockopt failed: {_strerror(exc)}")
    user_timeout: float | None
    try:
        user_timeout = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) / 1000
    except (OSError, AttributeError):
        user_timeout = None
    return _Options(keepalive, idle, interval, count, user_timeout, None)


def _strerror(exc: OSError) -> str:
    if exc.errno is not None:
        return f"{errno.errorcode.get(exc.errno, exc.errno)} ({os.strerror(exc.errno)})"
    return str(exc)


def _same_socket(fd: int, inode: int) -> bool:
    """Whether descriptor ``fd`` (of this process) is the socket with ``inode`` (it may have been reused)."""
    try:
        info = os.fstat(fd)
    except OSError:
        return False
    return stat.S_ISSOCK(info.st_mode) and info.st_ino == inode


_syscall_function: Any = None


def _libc_syscall() -> Any:
    """libc's ``syscall``, loaded on first use (``import keepalive`` stays free of ctypes)."""
    global _syscall_function
    if _syscall_function is None:
        import ctypes

        _syscall_function = ctypes.CDLL(None, use_errno=True).syscall
    return _syscall_function


class _Getfd:
    """pidfd_getfd(2) through libc's ``syscall``: a duplicate of another process's descriptor.

    Needs ptrace access to the target (same user and not blocked by Yama's ``ptrace_scope``, or
    CAP_SYS_PTRACE) and Linux 5.6+. After the first refusal the remaining descriptors are not tried.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.pidfd: int | None = None
        self.error: str | None = None
        pidfd_open = getattr(os, "pidfd_open", None)
        machine = os.uname().machine
        if machine not in _PIDFD_GETFD_ARCHES or pidfd_open is None:
            self.error = f"pidfd_getfd is not available on this platform ({machine})"
            return
        try:
            self._syscall = _libc_syscall()
        except (OSError, AttributeError, ImportError) as exc:
            self.error = f"pidfd_getfd is not available: {exc}"
            return
        try:
            self.pidfd = pidfd_open(pid)
        except ProcessLookupError:
            raise _ProcessGone from None
        except OSError as exc:
            self.error = f"pidfd_open failed: {_strerror(exc)}"

    def get(self, fd: int) -> int | None:
        """A duplicate of the target's ``fd`` in this process (close it), or None (see ``error``)."""
        if self.pidfd is None or self.error is not None:
            return None
        import ctypes

        result = self._syscall(ctypes.c_long(_SYS_PIDFD_GETFD), ctypes.c_int(self.pidfd), ctypes.c_int(fd), 0)
        if result >= 0:
            return int(result)
        code = ctypes.get_errno()
        if code == errno.EBADF:  # the descriptor was closed meanwhile
            return None
        if code == errno.ESRCH:
            raise _ProcessGone
        if code in (errno.EPERM, errno.EACCES):
            self.error = f"pidfd_getfd: {os.strerror(code)} (needs the same user and ptrace access, or CAP_SYS_PTRACE)"
        elif code == errno.ENOSYS:
            self.error = "pidfd_getfd is not implemented by this kernel (needs Linux 5.6+)"
        else:
            self.error = f"pidfd_getfd: {errno.errorcode.get(code, code)} ({os.strerror(code)})"
        return None

    def close(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None


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
    if path_timeout is not None:
        if idle >= path_timeout:
            return "too-slow", f"the first probe comes after {idle} s idle, at or after {path}", fix
        if idle + interval >= path_timeout:
            return (
                "too-slow",
                f"the first probe at {idle} s is in time, but if it is lost the next one at {idle + interval} s "
                f"comes at or after {path}",
                fix,
            )
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
    """The path timeout the verdicts use, and where it comes from.

    Like :func:`keepalive.default_policy`: a timeout given or configured (``KEEPALIVE_PATH_TIMEOUT``,
    ``KEEPALIVE_MIDDLEBOX``, kube-proxy's configuration) is used as is; one merely found on this node (its
    conntrack timeout) only when it is tighter than what the built-in policy covers, because cloud NAT and load
    balancer timeouts (240 s on Azure) are invisible from the node. Otherwise None: the policy is the yardstick.
    """
    if path_timeout is not None:
        if isinstance(path_timeout, bool) or not isinstance(path_timeout, int | float) or not path_timeout > 0:
            raise ValueError(f"path_timeout must be a positive number of seconds, got {path_timeout!r}")
        return float(path_timeout), "given"
    detected = _detected_path_timeout()
    if detected is None:
        return None, "unknown: none configured or found on this node"
    timeout, explicit = float(detected[0]), detected[1]
    if explicit:
        return timeout, "configured (KEEPALIVE_PATH_TIMEOUT, KEEPALIVE_MIDDLEBOX or kube-proxy's configuration)"
    try:
        below = Policy.below(timeout)
        tighter = below.idle + below.interval < BUILTIN_POLICY.idle + BUILTIN_POLICY.interval
    except InvalidPolicy:  # below 3 s: as tight as it gets
        tighter = True
    if tighter:
        return timeout, "found on this node (conntrack)"
    return None, (
        f"not configured; this node's own {timeout:g} s is not used because cloud NAT/load balancer idle timeouts "
        "(Azure: 240 s) cannot be seen from here: set KEEPALIVE_PATH_TIMEOUT or KEEPALIVE_MIDDLEBOX"
    )


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


def _describe(sock: socket.socket, inode: int) -> _Row | None:
    """Address, family and TCP state of a borrowed socket, or None when it is not a TCP/IP socket.

    Read from the socket itself (getsockname, getpeername, TCP_INFO's first byte), not from /proc/net/tcp: that
    table covers the whole network namespace and walks the kernel's whole connection hash table on every read
    (about 10 ms per file even when nearly empty, on a 262144-bucket table), while this costs a few syscalls.
    """
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.proto != socket.IPPROTO_TCP:
        return None
    try:
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) != socket.SOCK_STREAM:
            return None
        code = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
        local = _format(sock.getsockname())
    except OSError:
        return None
    try:
        remote = _format(sock.getpeername())
    except OSError:  # ENOTCONN: listening or not connected
        remote = "[::]:0" if sock.family == socket.AF_INET6 else "0.0.0.0:0"
    family = "ipv6" if sock.family == socket.AF_INET6 else "ipv4"
    state = _TCP_STATES.get(code, str(code))
    return _Row(
        inode=inode, family=family, local=local, remote=remote, state=state, timer="", timer_remaining=0, uid=-1
    )


def _format(address: tuple[object, ...]) -> str:
    host, port = address[0], address[1]
    if ":" in str(host):
        return f"[{str(host).partition('%')[0]}]:{port}"
    return f"{host}:{port}"


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


def _alive(pidfd: int) -> bool:
    """A pidfd polls readable once its process has exited."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return not poller.poll(0)


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


# ------------------------------------------------------------------------------------------------- background

_handles: weakref.WeakSet[BackgroundAudit] = weakref.WeakSet()


class BackgroundAudit:
    """A running :func:`audit_in_background`: ``stop()`` it, or use it as a context manager.

    Attributes:
        interval: seconds between rounds.
        fix: whether offenders get the policy applied.
        loopback: whether connections to loopback addresses are reported.
        rounds: completed rounds (in this process).
    """

    def __init__(
        self, interval: float, *, policy: Policy | None, fix: bool, path_timeout: float | None, loopback: bool
    ) -> None:
        self.interval = interval
        self.fix = fix
        self.loopback = loopback
        self.rounds = 0
        self._policy = policy
        self._path_timeout = path_timeout
        self._reported: set[tuple[int, str, str]] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failed_once = False

    # lifecycle
    def _start(self, delay: float) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(delay,), name="keepalive-audit", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        """True while the thread runs (and stop() has not been called)."""
        thread = self._thread
        return thread is not None and thread.is_alive() and not self._stop.is_set()

    def stop(self, timeout: float | None = None) -> None:
        """Stop the thread and wait up to ``timeout`` seconds for it (None: until it ends; a round is short)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def __enter__(self) -> BackgroundAudit:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<BackgroundAudit interval={self.interval:g}s fix={self.fix} running={self.running}>"

    def _after_fork_in_child(self) -> None:
        # The thread does not exist in the child; a lock it held at fork time would stay held forever.
        self._lock = threading.Lock()
        self.rounds = 0
        if self._thread is not None and not self._stop.is_set():
            self._start(self.interval)

    # the work
    def _loop(self, delay: float) -> None:
        stop = self._stop
        while not stop.wait(delay):
            delay = self.interval
            try:
                self.audit_now()
            except Exception:
                if not self._failed_once:
                    self._failed_once = True
                    log.exception("keepalive audit round failed; it will keep trying")
                else:
                    log.debug("keepalive audit round failed", exc_info=True)

    def audit_now(self) -> list[SocketState]:
        """Run one round now, in the calling thread: log (and with ``fix``, fix) new offenders; return all states.

        Only ESTABLISHED offenders are reported, each connection once.
        """
        policy = self._policy if self._policy is not None else resolve_default_policy()
        timeout = _path_timeout(self._path_timeout)
        with self._lock:
            seen: set[tuple[int, str, str]] = set()

            def visit(state: SocketState, sock: socket.socket) -> None:
                if state.state != "ESTABLISHED" or not state.offending or (state.loopback and not self.loopback):
                    return
                key = (state.inode, state.local, state.remote)
                seen.add(key)
                if key not in self._reported:
                    self._report(state, sock, policy)

            states = _own(policy, timeout, visit)
            self._reported = seen  # forget connections that are gone
            self.rounds += 1
            return states

    def _report(self, state: SocketState, sock: socket.socket, policy: Policy) -> None:
        extra = {
            "keepalive_remote": state.remote,
            "keepalive_local": state.local,
            "keepalive_fd": state.fd,
            "keepalive_verdict": state.verdict,
            "keepalive_idle": state.idle,
            "keepalive_interval": state.interval,
            "keepalive_count": state.count,
            "keepalive_path_timeout": state.path_timeout,
        }
        if not self.fix:
            log.warning(
                "keepalive audit: connection to %s (from %s, fd %d) is %s: %s; fix: %s",
                state.remote,
                state.local,
                state.fd,
                state.verdict,
                state.reason,
                state.fix,
                extra=extra,
            )
            return
        applied = apply(sock, policy)
        if applied.ok:
            outcome = f"applied {policy}"
        else:
            problems = [f"{name}: {error}" for name, error in applied.failed]
            outcome = f"could not apply {policy}: {applied.skipped or '; '.join(problems)}"
        extra["keepalive_fixed"] = applied.ok
        log.warning(
            "keepalive audit: connection to %s (from %s, fd %d) is %s: %s; %s",
            state.remote,
            state.local,
            state.fd,
            state.verdict,
            state.reason,
            outcome,
            extra=extra,
        )


def _restart_in_child() -> None:
    for handle in list(_handles):
        handle._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_restart_in_child)


def audit_in_background(
    interval: float = 300,
    *,
    policy: Policy | None = None,
    fix: bool = False,
    path_timeout: float | None = None,
    loopback: bool = False,
) -> BackgroundAudit:
    """Audit this process every ``interval`` seconds in a daemon thread; warn once per offending connection.

    Each ESTABLISHED connection whose verdict is ``no-keepalive`` or ``too-slow`` is logged once, as a warning
    on logger ``keepalive.audit`` (remote address, what is wrong, the fix; the numbers in ``extra``). The first
    round runs at once.

    After ``os.fork()`` the child, which inherits no threads, gets its own audit thread with the same settings;
    its first round comes ``interval`` seconds later, and connections already reported by the parent are not
    reported again.

    Args:
        interval: seconds between rounds (> 0).
        policy: the yardstick and the fix; default :func:`keepalive.default_policy`.
        fix: also apply ``policy`` to each offender (on a duplicate of its descriptor, which changes the same
            socket). This changes sockets that other code owns: see docs/audit.md for the risks.
        path_timeout: the path's idle timeout; default: the one the checker detects, if any.
        loopback: also report (and fix) connections to a loopback address. Off by default: no middlebox sits on
            that path (a local sidecar or proxy holds the long way out).

    Returns:
        The handle: ``stop()`` it, or use it in a ``with`` block. Not on Linux: a handle that is already
        stopped, and one warning on ``keepalive.audit``.
    """
    if isinstance(interval, bool) or not isinstance(interval, int | float) or not interval > 0:
        raise ValueError(f"interval must be a positive number of seconds, got {interval!r}")
    _check_policy(policy)
    if path_timeout is not None:
        _path_timeout(path_timeout)
    handle = BackgroundAudit(float(interval), policy=policy, fix=fix, path_timeout=path_timeout, loopback=loopback)
    try:
        _require_proc()
    except KeepaliveError as exc:
        log.warning("keepalive audit is not running: %s", exc)
        return handle
    _handles.add(handle)
    handle._start(0)
    return handle
