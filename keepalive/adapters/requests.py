"""Keepalive for requests: an ``HTTPAdapter`` whose every connection gets the policy before it connects.

::

    import keepalive.adapters.requests

    session = keepalive.adapters.requests.session()            # a new requests.Session
    keepalive.adapters.requests.mount(existing_session)         # or replace the http:// and https:// adapters

The adapter passes urllib3 ``socket_options`` (urllib3's TCP_NODELAY default kept) to the pool manager for
direct connections *and* to the proxy managers requests creates for HTTP(S) and SOCKS proxies, which
otherwise get no options (urllib3#2936).
"""

from __future__ import annotations

import typing

try:
    import requests
    import requests.adapters
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("keepalive.adapters.requests needs requests: pip install 'tcp-keepalive[requests]'") from exc

from keepalive._runtime import resolve
from keepalive.adapters.urllib3 import socket_options

if typing.TYPE_CHECKING:
    from keepalive import Policy

__all__ = ["HTTPAdapter", "mount", "session"]

_PREFIXES = ("http://", "https://")


class HTTPAdapter(requests.adapters.HTTPAdapter):
    """``requests.adapters.HTTPAdapter`` whose connections get ``policy`` (default: the default policy).

    Takes every argument of requests' adapter (``pool_connections``, ``pool_maxsize``, ``max_retries``,
    ``pool_block``). The policy is resolved once, when the adapter is made, and survives pickling.
    """

    # requests pickles the attributes named here; keep the policy with them (requests declares a plain list).
    __attrs__ = [*requests.adapters.HTTPAdapter.__attrs__, "policy"]  # noqa: RUF012

    policy: Policy

    def __init__(self, *args: typing.Any, policy: Policy | None = None, **kwargs: typing.Any) -> None:
        # Set before super().__init__(), which calls init_poolmanager().
        self.policy = resolve(policy)
        super().__init__(*args, **kwargs)

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: typing.Any) -> None:
        """Make the pool manager for direct connections, with the policy's socket options."""
        pool_kwargs["socket_options"] = socket_options(self.policy, pool_kwargs.get("socket_options"))
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: typing.Any) -> typing.Any:
        """Return the proxy manager for ``proxy`` (HTTP, HTTPS or SOCKS), with the policy's socket options.

        HTTP(S) proxies get only the policy's options on top of urllib3's proxy default (none); SOCKS
        proxies keep urllib3's default TCP_NODELAY, as urllib3 itself does for them.
        """
        if proxy not in self.proxy_manager:
            base = proxy_kwargs.get("socket_options")
            if base is None and not proxy.lower().startswith("socks"):
                base = []
            proxy_kwargs["socket_options"] = socket_options(self.policy, base)
        return super().proxy_manager_for(proxy, **proxy_kwargs)


def _adapter_like(old: object, policy: Policy, adapter_kwargs: dict[str, typing.Any]) -> HTTPAdapter:
    """Return our adapter, taking retries and pool sizes from ``old`` unless given in ``adapter_kwargs``."""
    if isinstance(old, requests.adapters.HTTPAdapter):
        adapter_kwargs.setdefault("max_retries", old.max_retries)
        for name in ("pool_connections", "pool_maxsize", "pool_block"):
            value = getattr(old, f"_{name}", None)
            if value is not None:
                adapter_kwargs.setdefault(name, value)
    return HTTPAdapter(policy=policy, **adapter_kwargs)


def mount(session: requests.Session, policy: Policy | None = None, **adapter_kwargs: typing.Any) -> requests.Session:
    """Mount a keepalive :class:`HTTPAdapter` on ``session`` for ``http://`` and ``https://``; return it.

    ``adapter_kwargs`` go to the adapter (``max_retries``, ``pool_maxsize``, ...); those not given are taken
    from the adapter being replaced when it is a requests ``HTTPAdapter``. The replaced adapters are closed,
    so no connection opened before keeps being reused without the policy. Adapters mounted on more specific
    prefixes are left alone: mount an :class:`HTTPAdapter` there yourself.
    """
    resolved = resolve(policy)
    for prefix in _PREFIXES:
        old = session.adapters.get(prefix)
        session.mount(prefix, _adapter_like(old, resolved, dict(adapter_kwargs)))
        if old is not None:
            old.close()
    return session


def session(policy: Policy | None = None, **adapter_kwargs: typing.Any) -> requests.Session:
    """Return a new ``requests.Session`` whose ``http://`` and ``https://`` adapters apply ``policy``.

    ``adapter_kwargs`` go to :class:`HTTPAdapter` (``max_retries``, ``pool_connections``, ``pool_maxsize``,
    ``pool_block``).
    """
    return mount(requests.Session(), policy, **adapter_kwargs)
