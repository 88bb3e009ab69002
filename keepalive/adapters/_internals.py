"""Shared by the database, cache and broker adapters: reaching a client's socket, and failing loudly when we can't.

Some clients (asyncpg, aiomysql, nats-py) expose no keepalive option and no public socket accessor. Their adapters
reach one documented-by-use attribute (``connection._transport``, ``connection._writer``,
``transport._io_writer``) and then only use asyncio's public ``get_extra_info("socket")``. When such an attribute
is gone, :func:`internals_changed` builds the error: it names the client, its installed version and the attribute,
so an upgrade that breaks the adapter fails at the first connection instead of silently leaving keepalive off.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any, Protocol

from keepalive._exceptions import KeepaliveError
from keepalive._platform import CURRENT, Applied, compile_plan
from keepalive._policy import Policy
from keepalive._socket import apply, borrow_socket

__all__ = [
    "apply_to_fd",
    "apply_to_transport",
    "client_version",
    "internals_changed",
    "libpq_params",
    "tcp_level_options",
]


class _HasExtraInfo(Protocol):
    def get_extra_info(self, name: str, default: Any = None) -> Any: ...


def client_version(distribution: str) -> str:
    """The installed version of ``distribution``, or ``"unknown"``."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def internals_changed(client: str, distribution: str, detail: str) -> KeepaliveError:
    """The error for a client whose internals no longer match what its adapter relies on."""
    return KeepaliveError(
        f"keepalive cannot reach the socket of this {client} connection: {detail} "
        f"({distribution} {client_version(distribution)} is installed). The adapter relies on {client}'s "
        f"internals, which have changed; keepalive was NOT applied. Please report this to the keepalive project "
        f"and pin {distribution} to a version the adapter supports meanwhile."
    )


def apply_to_transport(transport: _HasExtraInfo, policy: Policy, client: str, distribution: str) -> Applied:
    """Apply ``policy`` to the socket behind an asyncio transport (plain or TLS) or a StreamWriter."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        raise internals_changed(
            client, distribution, f"its transport {type(transport).__name__} exposes no 'socket' extra info"
        )
    return apply(sock, policy)


def apply_to_fd(fd: int, policy: Policy) -> Applied:
    """Apply ``policy`` to the socket whose file descriptor (Windows: SOCKET handle) a client owns.

    The temporary socket object is detached afterwards, so the client's descriptor stays open and owned by it.
    """
    sock = borrow_socket(fd)
    try:
        return apply(sock, policy)
    finally:
        sock.detach()


def libpq_params(policy: Policy) -> dict[str, int]:
    """libpq's own keepalive connection parameters for ``policy`` (tcp_user_timeout in ms, omitted when None)."""
    params = {
        "keepalives": 1,
        "keepalives_idle": policy.idle,
        "keepalives_interval": policy.interval,
        "keepalives_count": policy.count,
    }
    user_timeout_ms = policy.user_timeout_ms
    if user_timeout_ms is not None:
        params["tcp_user_timeout"] = user_timeout_ms
    return params


def tcp_level_options(policy: Policy) -> tuple[dict[str, tuple[int, int]], list[str]]:
    """The policy's IPPROTO_TCP-level setsockopt options on this platform, for clients that take such a list.

    Returns (option name -> (optname, value), names this platform cannot express as a TCP-level setsockopt).
    SO_KEEPALIVE is not included: every such client has its own switch for it. On a Windows build that needs the
    SIO_KEEPALIVE_VALS ioctl for idle and interval, those two are reported as missing.
    """
    plan = compile_plan(policy, CURRENT)
    options = {name: (optname, value) for name, level, optname, value in plan.calls if level == CURRENT.ipproto_tcp}
    missing = list(plan.success.unsupported)
    if plan.ioctl is not None:
        missing.append("SIO_KEEPALIVE_VALS")
    return options, missing
