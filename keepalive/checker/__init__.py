"""The node checker: find the path's idle timeouts, compare them with the keepalive policy, say what to change.

A view of the path model (:mod:`keepalive._path._model`): its evidence (sysctls under a proc root, kube-proxy's
configuration, middlebox presets) and conntrack statistics -> findings (severity, stable code, message with the
numbers, exact fix) -> :class:`Report` (text, JSON, Prometheus textfile). The checker only reads; it knows
nothing of clients. Names load on first use, so the runtime check (``keepalive.checker._runtime``) stays cheap.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

    from keepalive._path._middleboxes import MIDDLEBOXES
    from keepalive.checker._check import check
    from keepalive.checker._model import Finding, Severity, Source
    from keepalive.checker._report import Report

__all__ = ["MIDDLEBOXES", "Finding", "Report", "Severity", "Source", "check"]

_WHERE: Final = {
    "MIDDLEBOXES": "keepalive._path._middleboxes",
    "Finding": "keepalive.checker._model",
    "Report": "keepalive.checker._report",
    "Severity": "keepalive.checker._model",
    "Source": "keepalive.checker._model",
    "check": "keepalive.checker._check",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
