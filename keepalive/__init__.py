"""Per-connection TCP keepalive below the path's idle timeout.

Long-lived TCP connections that sit idle longer than a middlebox's idle timeout (conntrack behind kube-proxy,
IPVS, cloud NAT gateways and load balancers) are forgotten by it; the next packet hangs or is reset. keepalive
sets SO_KEEPALIVE, TCP_KEEPIDLE / TCP_KEEPINTVL / TCP_KEEPCNT and TCP_USER_TIMEOUT on each connection, with the
idle time below the shortest timeout on the path, so the kernel's probes refresh every middlebox::

    import keepalive

    sock = keepalive.create_connection(("db.internal", 5432), timeout=5)
    keepalive.apply(existing_sock, keepalive.Policy(idle=60, interval=10, count=5))

``import keepalive`` needs only the standard library; runtimes and clients live in optional modules
(``keepalive.asyncio``, ``keepalive.anyio``, ``keepalive.trio``, ``keepalive.adapters.<client>``).
"""

from __future__ import annotations

import sys as _sys

# Not `from typing import TYPE_CHECKING`: typing costs ~2 ms to import, and mypy knows this name.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from keepalive._audit import BackgroundAudit, SocketState, audit, audit_in_background
    from keepalive._enforce import (
        Enforcement,
        EnforcementError,
        enforce,
        enforcement_status,
        remove_enforcement,
    )
    from keepalive._exceptions import InvalidPolicy, KeepaliveError, KeepaliveWarning, UnsupportedPlatformWarning
    from keepalive._install import install, installed_policy, is_installed, uninstall
    from keepalive._platform import CURRENT as PLATFORM
    from keepalive._platform import Applied, PlatformInfo
    from keepalive._policy import (
        BUILTIN_POLICY,
        Policy,
        default_policy,
        explain_default_policy,
        reset_default_policy,
    )
    from keepalive._socket import SocketLike, apply, create_connection, create_server, socket_options
    from keepalive._version import __version__
    from keepalive.checker import MIDDLEBOXES, Finding, Report, Severity, Source, check
del TYPE_CHECKING

# Every public name is loaded on first use (PEP 562), each from its own module: ``import keepalive`` costs almost
# nothing, and the KEEPALIVE_AUTO hook (``keepalive._autostart``, which imports this package first) loads only what
# install() needs. The platform probe, apply() and the policy resolution load with the first name that needs them;
# the checker and the audit only when asked for.
_LAZY = {
    "__version__": "keepalive._version",
    "InvalidPolicy": "keepalive._exceptions",
    "KeepaliveError": "keepalive._exceptions",
    "KeepaliveWarning": "keepalive._exceptions",
    "UnsupportedPlatformWarning": "keepalive._exceptions",
    "install": "keepalive._install",
    "installed_policy": "keepalive._install",
    "is_installed": "keepalive._install",
    "uninstall": "keepalive._install",
    "PLATFORM": "keepalive._platform",
    "Applied": "keepalive._platform",
    "PlatformInfo": "keepalive._platform",
    "BUILTIN_POLICY": "keepalive._policy",
    "Policy": "keepalive._policy",
    "default_policy": "keepalive._policy",
    "explain_default_policy": "keepalive._policy",
    "reset_default_policy": "keepalive._policy",
    "SocketLike": "keepalive._socket",
    "apply": "keepalive._socket",
    "create_connection": "keepalive._socket",
    "create_server": "keepalive._socket",
    "socket_options": "keepalive._socket",
    "MIDDLEBOXES": "keepalive.checker",
    "Finding": "keepalive.checker",
    "Report": "keepalive.checker",
    "Severity": "keepalive.checker",
    "Source": "keepalive.checker",
    "check": "keepalive.checker",
    "BackgroundAudit": "keepalive._audit",
    "SocketState": "keepalive._audit",
    "audit": "keepalive._audit",
    "audit_in_background": "keepalive._audit",
    "Enforcement": "keepalive._enforce",
    "EnforcementError": "keepalive._enforce",
    "enforce": "keepalive._enforce",
    "enforcement_status": "keepalive._enforce",
    "remove_enforcement": "keepalive._enforce",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'keepalive' has no attribute {name!r}")
    __import__(module)  # not importlib.import_module: importlib costs more than what it would load here
    value = getattr(_sys.modules[module], "CURRENT" if name == "PLATFORM" else name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "BUILTIN_POLICY",
    "MIDDLEBOXES",
    "PLATFORM",
    "Applied",
    "BackgroundAudit",
    "Enforcement",
    "EnforcementError",
    "Finding",
    "InvalidPolicy",
    "KeepaliveError",
    "KeepaliveWarning",
    "PlatformInfo",
    "Policy",
    "Report",
    "Severity",
    "SocketLike",
    "SocketState",
    "Source",
    "UnsupportedPlatformWarning",
    "__version__",
    "apply",
    "audit",
    "audit_in_background",
    "check",
    "create_connection",
    "create_server",
    "default_policy",
    "enforce",
    "enforcement_status",
    "explain_default_policy",
    "install",
    "installed_policy",
    "is_installed",
    "remove_enforcement",
    "reset_default_policy",
    "socket_options",
    "uninstall",
]

# The package logger's NullHandler: now if logging is loaded already, else when keepalive first logs
# (keepalive._log.get_logger's stand-ins): a process that never logs through keepalive does not import logging.
if "logging" in _sys.modules:
    from keepalive._log import attach_null_handler as _attach_null_handler

    _attach_null_handler()
