"""redis-py (sync and asyncio, pools, cluster, sentinel): the policy as redis-py's own keepalive arguments.

::

    r = redis.Redis(host="cache", **keepalive.adapters.redis.connection_kwargs())
    r = redis.asyncio.Redis(host="cache", **keepalive.adapters.redis.connection_kwargs())
    pool = redis.ConnectionPool(host="cache", **keepalive.adapters.redis.connection_kwargs())
    rc = redis.cluster.RedisCluster(host="node", **keepalive.adapters.redis.connection_kwargs())
    r = redis.Redis.from_url(url, **keepalive.adapters.redis.connection_kwargs())

redis-py sets ``SO_KEEPALIVE`` when ``socket_keepalive`` is true and then calls
``setsockopt(IPPROTO_TCP, option, value)`` for each item of ``socket_keepalive_options`` on every socket it opens,
so every pooled and reconnected connection gets the policy. redis-py 8 enables keepalive by default with
30/5/3 s; these arguments replace those values with the policy's (TCP_USER_TIMEOUT included where the platform
has it).
"""

from __future__ import annotations

import warnings
from typing import Any

try:
    import redis  # noqa: F401  (the client this adapter configures; imported so a missing one fails here)
except ImportError as exc:
    raise ImportError("keepalive.adapters.redis needs redis-py: pip install 'tcp-keepalive[redis]'") from exc

from keepalive._exceptions import UnsupportedPlatformWarning
from keepalive._policy import Policy
from keepalive._runtime import resolve
from keepalive.adapters._internals import tcp_level_options

__all__ = ["connection_kwargs", "socket_keepalive_options"]

_warned: set[str] = set()


def socket_keepalive_options(policy: Policy | None = None) -> dict[int, int]:
    """``{optname: value}`` for redis-py's ``socket_keepalive_options``: the policy's IPPROTO_TCP options here.

    The option numbers are this platform's (TCP_KEEPIDLE on Linux, TCP_KEEPALIVE on macOS, ...). What the
    platform cannot express as a TCP-level setsockopt is left out, with an
    :class:`~keepalive.UnsupportedPlatformWarning` once per option (TCP_USER_TIMEOUT outside Linux is expected
    and not warned about).
    """
    options, missing = tcp_level_options(resolve(policy))
    for name in missing:
        if name != "TCP_USER_TIMEOUT" and name not in _warned:
            _warned.add(name)
            warnings.warn(
                f"redis-py can only set TCP-level socket options; {name} is not one on this platform",
                UnsupportedPlatformWarning,
                stacklevel=3,
            )
    return dict(options.values())


def connection_kwargs(policy: Policy | None = None) -> dict[str, Any]:
    """Keyword arguments for redis-py clients and pools that give each connection ``policy``.

    ``{"socket_keepalive": True, "socket_keepalive_options": {...}}`` -- pass them to ``redis.Redis``,
    ``redis.asyncio.Redis``, ``ConnectionPool``, ``RedisCluster``, ``Sentinel`` or ``from_url``. Not for
    ``unix_socket_path`` connections (a Unix socket has no TCP keepalive).
    """
    return {"socket_keepalive": True, "socket_keepalive_options": socket_keepalive_options(policy)}
