"""Keepalive for urllib3: pools whose every connection gets the policy before it connects.

urllib3 sets socket options on each new socket before ``connect()`` from the pool's ``socket_options`` list.
A list given there *replaces* ``HTTPConnection.default_socket_options`` (TCP_NODELAY), so this module always
extends a base list instead of replacing it::

    import keepalive.adapters.urllib3

    http = keepalive.adapters.urllib3.PoolManager()                  # default policy, TCP_NODELAY kept
    proxied = keepalive.adapters.urllib3.proxy_from_url("http://proxy:3128")
    socks = keepalive.adapters.urllib3.socks_proxy_manager("socks5h://proxy:1080")   # needs PySocks
    pool = urllib3.HTTPConnectionPool("host", socket_options=keepalive.adapters.urllib3.socket_options())

``ProxyManager`` keeps urllib3's own choice for proxied pools: no TCP_NODELAY (urllib3 leaves Nagle on for
proxies), only the policy's options (urllib3#2936: a proxy manager otherwise gets no options at all).
"""

from __future__ import annotations

import typing
from collections.abc import Iterable

try:
    import urllib3
    from urllib3.connection import HTTPConnection
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("keepalive.adapters.urllib3 needs urllib3: pip install 'tcp-keepalive[urllib3]'") from exc

import keepalive
from keepalive._runtime import resolve

if typing.TYPE_CHECKING:
    from urllib3.contrib.socks import SOCKSProxyManager

    from keepalive import Policy

__all__ = ["PoolManager", "ProxyManager", "proxy_from_url", "socket_options", "socks_proxy_manager"]

SocketOption = tuple[int, int, int | bytes]
"""One ``(level, optname, value)`` triple as urllib3 passes it to ``setsockopt``."""


def socket_options(policy: Policy | None = None, base: Iterable[SocketOption] | None = None) -> list[SocketOption]:
    """Return a urllib3 ``socket_options`` list: ``base`` followed by the policy's options.

    ``base`` defaults to ``urllib3.connection.HTTPConnection.default_socket_options`` (TCP_NODELAY), the list
    urllib3 would have used; pass your own list to extend it, or ``[]`` for proxied pools. An option of
    ``base`` that the policy also sets is dropped from ``base``, so the policy's value is the one set.
    ``policy=None`` means :func:`keepalive.default_policy`. The first call in the process runs the
    once-per-process runtime check.
    """
    ours: list[SocketOption] = list(keepalive.socket_options(resolve(policy)))
    if base is None:
        base = HTTPConnection.default_socket_options
    taken = {(level, name) for level, name, _ in ours}
    return [opt for opt in base if (opt[0], opt[1]) not in taken] + ours


def _with_options(
    policy: Policy | None, kwargs: dict[str, typing.Any], *, default_base: list[SocketOption] | None
) -> dict[str, typing.Any]:
    """Return ``kwargs`` with ``socket_options`` extended by the policy (the caller's list kept first)."""
    given = kwargs.get("socket_options")
    kwargs["socket_options"] = socket_options(policy, default_base if given is None else given)
    return kwargs


class PoolManager(urllib3.PoolManager):
    """``urllib3.PoolManager`` whose connections get ``policy`` (default: :func:`keepalive.default_policy`).

    Every argument of ``urllib3.PoolManager`` is accepted unchanged. A ``socket_options`` argument is
    extended, not replaced; without one, urllib3's default (TCP_NODELAY) is kept.
    """

    def __init__(
        self,
        num_pools: int = 10,
        headers: typing.Mapping[str, str] | None = None,
        *,
        policy: Policy | None = None,
        **connection_pool_kw: typing.Any,
    ) -> None:
        self.policy: Policy = resolve(policy)
        _with_options(self.policy, connection_pool_kw, default_base=None)
        super().__init__(num_pools, headers, **connection_pool_kw)


class ProxyManager(urllib3.ProxyManager):
    """``urllib3.ProxyManager`` whose connections to the proxy get ``policy``.

    Covers both plain-HTTP forwarding and HTTPS tunnels (CONNECT): either way the client's socket is the one
    connected to the proxy. Without a ``socket_options`` argument the base list is empty, as urllib3 uses
    for proxies (Nagle left on), so only the policy's options are set.
    """

    def __init__(self, proxy_url: str, *args: typing.Any, policy: Policy | None = None, **kwargs: typing.Any) -> None:
        self.policy: Policy = resolve(policy)
        _with_options(self.policy, kwargs, default_base=[])
        super().__init__(proxy_url, *args, **kwargs)


def proxy_from_url(url: str, *, policy: Policy | None = None, **kw: typing.Any) -> ProxyManager:
    """Like ``urllib3.proxy_from_url``: a :class:`ProxyManager` for ``url`` with ``policy``."""
    return ProxyManager(url, policy=policy, **kw)


def socks_proxy_manager(
    proxy_url: str, *args: typing.Any, policy: Policy | None = None, **kwargs: typing.Any
) -> SOCKSProxyManager:
    """Return ``urllib3.contrib.socks.SOCKSProxyManager(proxy_url, ...)`` whose connections get ``policy``.

    PySocks sets the options on the socket before it connects to the SOCKS proxy. The base list is urllib3's
    default (TCP_NODELAY), as urllib3 itself uses for SOCKS pools. Needs PySocks (``urllib3[socks]``).
    """
    try:
        from urllib3.contrib.socks import SOCKSProxyManager
    except ImportError as exc:
        raise ImportError("SOCKS proxies need PySocks: pip install 'tcp-keepalive[urllib3]' 'urllib3[socks]'") from exc
    _with_options(policy, kwargs, default_base=None)
    return SOCKSProxyManager(proxy_url, *args, **kwargs)
