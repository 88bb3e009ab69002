"""The kernel's TCP tables: ``/proc/<pid>/net/tcp`` and ``tcp6`` rows, and a process's socket descriptors."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Container, Iterator
from dataclasses import dataclass
from typing import Final

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

    Descriptors that close while being listed are skipped. Raises PermissionError when the directory or its links
    are not readable (another user; a process that made itself not dumpable) and FileNotFoundError /
    ProcessLookupError when the process is gone.
    """
    found: dict[int, int] = {}
    with os.scandir(f"{proc}/fd") as entries:
        for entry in entries:
            try:
                target = os.readlink(entry.path)
            except PermissionError:  # a process that is not dumpable (prctl, set-uid): its links are hidden too
                raise
            except OSError:  # closed meanwhile (ENOENT), or the process is exiting (ESRCH)
                continue
            if target.startswith("socket:[") and target.endswith("]"):
                try:
                    found[int(entry.name)] = int(target[8:-1])
                except ValueError:
                    continue
    return found
