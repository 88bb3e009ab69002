"""RabbitMQ with pika: the policy as pika's own ``tcp_options``.

::

    params = keepalive.adapters.pika.connection_parameters(host="rabbit")
    connection = pika.BlockingConnection(params)

    params = pika.URLParameters("amqp://guest:guest@rabbit/")
    params.tcp_options = keepalive.adapters.pika.tcp_options()

pika sets ``SO_KEEPALIVE`` and each ``tcp_options`` entry (by name: TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT,
TCP_USER_TIMEOUT) on every socket it opens, for every connection adapter (blocking, select, asyncio, ...).
pika only knows those names where the ``socket`` module has them -- that is Linux; elsewhere :func:`tcp_options`
warns with :class:`~keepalive.UnsupportedPlatformWarning` and returns what pika can set.
"""

from __future__ import annotations

import importlib
import socket
import warnings
from typing import Any

try:
    _pika: Any = importlib.import_module("pika")
except ImportError as exc:
    raise ImportError("keepalive.adapters.pika needs pika: pip install 'tcp-keepalive[pika]'") from exc

from keepalive._exceptions import UnsupportedPlatformWarning
from keepalive._policy import Policy
from keepalive._runtime import resolve
from keepalive.adapters._internals import tcp_level_options

__all__ = ["connection_parameters", "tcp_options"]

#: The option names pika's ``tcp_options`` understands (pika resolves them with ``getattr(socket, name)``).
PIKA_OPTION_NAMES = ("TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT", "TCP_USER_TIMEOUT")

_warned: set[str] = set()


def tcp_options(policy: Policy | None = None) -> dict[str, int]:
    """``ConnectionParameters(tcp_options=...)`` for ``policy``: ``{"TCP_KEEPIDLE": 60, ...}``."""
    options, missing = tcp_level_options(resolve(policy))
    result: dict[str, int] = {}
    for name, (optname, value) in options.items():
        if name in PIKA_OPTION_NAMES and getattr(socket, name, None) == optname:
            result[name] = value
        else:
            missing.append(name)
    for name in missing:
        if name != "TCP_USER_TIMEOUT" and name not in _warned:
            _warned.add(name)
            warnings.warn(
                f"pika's tcp_options cannot set {name} on this platform; those connections keep the system default",
                UnsupportedPlatformWarning,
                stacklevel=2,
            )
    return result


def connection_parameters(policy: Policy | None = None, **kwargs: Any) -> Any:
    """``pika.ConnectionParameters(**kwargs)`` with ``tcp_options`` for ``policy``."""
    return _pika.ConnectionParameters(tcp_options=tcp_options(policy), **kwargs)
