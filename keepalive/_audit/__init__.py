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

The modules: ``_tables`` (the kernel's TCP tables and a process's socket descriptors), ``_access`` (duplicates of
descriptors through ``os.dup`` / ``pidfd_getfd`` and what they tell), ``_verdict`` (:class:`SocketState` and the
verdict), ``_sweep`` (the engine that walks a process's sockets: the audit, the fix and the tighten sweeps) and
``_background`` (:func:`audit_in_background`).
"""

from __future__ import annotations

from keepalive._audit._background import BackgroundAudit, audit_in_background
from keepalive._audit._sweep import audit
from keepalive._audit._verdict import SocketState, Verdict

__all__ = ["BackgroundAudit", "SocketState", "Verdict", "audit", "audit_in_background"]
