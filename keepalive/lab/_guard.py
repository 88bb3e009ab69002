"""The lab's guard routes in the root namespace: blackhole /32s to the lab addresses, added and deleted exactly.

A lab never deletes a route it did not add and never flushes by protocol: each guard route names its maker
(protocol :data:`GUARD_PROTO`, metric = the pid of the lab process), and deletion names every attribute.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from typing import Final

from keepalive.lab._command import LabError, run

__all__ = ["GUARD_PROTO", "add_host_guards", "remove_host_guards", "remove_stale_host_guards"]

#: Route protocol number that marks the lab's guard routes. Not 187 (``isis`` in /etc/iproute2/rt_protos, used by
#: FRR's isisd): deleting "our" routes by that number deleted a router's IS-IS routes. 245 is assigned by nobody:
#: the kernel's rtnetlink.h names 0..18, 42 (babel), 99 (openr) and 186..192; iproute2's rt_protos the same;
#: FRR adds 190..198 (ripng .. srte); bird, systemd-networkd, NetworkManager and keepalived use the named ones.
#: The marker alone proves nothing, though: a guard route is ours only when it also has an exact lab destination
#: (a /32 of the lab addresses), is a blackhole and its metric is the pid of the process that added it.
GUARD_PROTO: Final = "245"

#: Guard routes this process added: address -> how many of its labs use it (several labs may share one process).
_guards: dict[str, int] = {}
_guards_lock = threading.Lock()


def _guard_routes(addresses: Sequence[str]) -> list[tuple[str, int]]:
    """The lab guard routes present in this namespace: ``(address, pid)`` for every blackhole /32 route to a lab
    address with protocol :data:`GUARD_PROTO`; the metric is the pid of the process that added it."""
    try:
        text = run(["ip", "-j", "route", "show", "type", "blackhole", "proto", GUARD_PROTO])
    except LabError:
        return []
    try:
        routes = json.loads(text or "[]")
    except ValueError:
        return []
    found: list[tuple[str, int]] = []
    for route in routes:
        if not isinstance(route, dict):
            continue
        address, metric = route.get("dst"), route.get("metric", 0)
        if isinstance(address, str) and address in addresses and isinstance(metric, int) and metric > 0:
            found.append((address, metric))
    return found


def _delete_guard(address: str, pid: int) -> bool:
    """Delete the one guard route ``blackhole address/32 proto GUARD_PROTO metric pid``; the kernel matches every
    one of those attributes, so no other route can go. False when it was not there."""
    try:
        run(["ip", "route", "del", "blackhole", f"{address}/32", "proto", GUARD_PROTO, "metric", str(pid)])
    except LabError:
        return False
    return True


def add_host_guards(addresses: Sequence[str]) -> list[str]:
    """Blackhole the lab addresses (one /32 each, metric = this pid) that the root namespace reaches through a
    gateway, or that another lab process guards already; return the addresses this call guards (to pass to
    :func:`remove_host_guards`). Never touches a route it did not add."""
    pid = os.getpid()
    guarded_by_others = {address for address, owner in _guard_routes(addresses) if owner != pid}
    added: list[str] = []
    with _guards_lock:
        for address in addresses:
            if address in _guards:
                _guards[address] += 1
                added.append(address)
                continue
            if address not in guarded_by_others:
                try:
                    route = run(["ip", "-o", "route", "get", address])
                except LabError:
                    continue
                if " via " not in f" {route} ":
                    continue  # local, directly attached or blackholed by someone else: not ours to change
            try:
                run(["ip", "route", "add", "blackhole", f"{address}/32", "proto", GUARD_PROTO, "metric", str(pid)])
            except LabError as exc:
                if "File exists" not in str(exc):
                    raise
                continue  # an identical route exists that this process did not add (pid reuse): leave it alone
            _guards[address] = 1
            added.append(address)
    return added


def remove_host_guards(addresses: Sequence[str]) -> None:
    """Undo one :func:`add_host_guards` call: delete this process's guard routes that no other lab of it uses."""
    pid = os.getpid()
    with _guards_lock:
        for address in addresses:
            users = _guards.get(address, 0) - 1
            if users > 0:
                _guards[address] = users
                continue
            _guards.pop(address, None)
            _delete_guard(address, pid)


def remove_stale_host_guards(addresses: Sequence[str]) -> list[tuple[str, int]]:
    """Delete guard routes whose process is gone (after ``kill -9``); return the ``(address, pid)`` deleted."""
    deleted: list[tuple[str, int]] = []
    for address, pid in _guard_routes(addresses):
        if pid == os.getpid() or _alive(pid):
            continue
        if _delete_guard(address, pid):
            deleted.append((address, pid))
    return deleted


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
