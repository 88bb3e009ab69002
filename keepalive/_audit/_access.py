"""Descriptor access: a duplicate of a socket's descriptor (``os.dup`` here, ``pidfd_getfd(2)`` in another
process) and what the socket itself tells through it (address, TCP state, keepalive options)."""

from __future__ import annotations

import errno
import os
import select
import socket
import stat
from dataclasses import dataclass
from typing import Any, Final

from keepalive._audit._tables import _TCP_STATES, _Row

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


class _ProcessGone(Exception):
    """The process went away while it was being read."""


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


def _alive(pidfd: int) -> bool:
    """A pidfd polls readable once its process has exited."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return not poller.poll(0)


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
