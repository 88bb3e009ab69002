"""The node checker: find the path's idle timeouts, compare them with the keepalive policy, say what to change.

Sources (sysctls and conntrack statistics under a proc root, kube-proxy's configuration, middlebox presets)
-> findings (severity, stable code, message with the numbers, exact fix) -> :class:`Report`
(text, JSON, Prometheus textfile). The checker only reads; it knows nothing of clients.
"""

from __future__ import annotations

from keepalive._path._middleboxes import MIDDLEBOXES
from keepalive.checker._check import check
from keepalive.checker._model import Finding, Severity, Source
from keepalive.checker._report import Report

__all__ = ["MIDDLEBOXES", "Finding", "Report", "Severity", "Source", "check"]
