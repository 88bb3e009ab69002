"""PostgreSQL through libpq (psycopg 3, psycopg_pool, psycopg2): the policy as libpq connection parameters.

libpq sets keepalive itself when given ``keepalives``, ``keepalives_idle``, ``keepalives_interval``,
``keepalives_count`` and ``tcp_user_timeout`` (milliseconds; libpq 12+), so nothing here touches a socket::

    conn = psycopg.connect(dsn, **keepalive.adapters.psycopg.connect_kwargs())
    pool = psycopg_pool.ConnectionPool(dsn, kwargs=keepalive.adapters.psycopg.connect_kwargs())
    conn = psycopg2.connect(dsn, **keepalive.adapters.psycopg.connect_kwargs())
    dsn = keepalive.adapters.psycopg.conninfo(dsn)      # the same, folded into a connection string

Keyword arguments override the same parameters in the connection string, so the policy wins over a DSN's own
``keepalives_idle``. Works with psycopg 3 or psycopg2, whichever is installed (psycopg 3 first).
"""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType
from typing import Any

from keepalive._exceptions import UnsupportedPlatformWarning
from keepalive._policy import Policy
from keepalive._runtime import resolve
from keepalive.adapters._internals import libpq_params


def _import_client() -> ModuleType:
    errors: list[str] = []
    for name in ("psycopg", "psycopg2"):
        try:
            return importlib.import_module(name)
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
    raise ImportError(
        "keepalive.adapters.psycopg needs psycopg 3 or psycopg2: pip install 'tcp-keepalive[psycopg]' "
        "(or 'tcp-keepalive[psycopg2]'). " + "; ".join(errors)
    )


_client = _import_client()

__all__ = ["LIBPQ_TCP_USER_TIMEOUT_VERSION", "connect_kwargs", "conninfo", "libpq_version"]

#: libpq learnt ``tcp_user_timeout`` in PostgreSQL 12; older libpq rejects it as an invalid option.
LIBPQ_TCP_USER_TIMEOUT_VERSION = 120000

_warned_old_libpq = False


def libpq_version() -> int:
    """The version of the libpq the installed driver uses, as libpq's integer (``160004`` for 16.4)."""
    return _libpq_version(_client)


def _libpq_version(client: Any) -> int:
    if client.__name__ == "psycopg":
        return int(client.pq.version())
    return int(client.extensions.libpq_version())


def connect_kwargs(policy: Policy | None = None) -> dict[str, int]:
    """libpq connection parameters that give each connection ``policy`` (default: the process default policy).

    ``keepalives=1``, ``keepalives_idle``, ``keepalives_interval``, ``keepalives_count`` (seconds) and, when the
    policy has a user timeout, ``tcp_user_timeout`` in milliseconds. libpq older than 12 does not know
    ``tcp_user_timeout``: it is left out, with an :class:`~keepalive.UnsupportedPlatformWarning` once.
    Pass them as keyword arguments to ``psycopg.connect``, ``psycopg2.connect``, or as psycopg_pool's ``kwargs=``.
    """
    return _connect_kwargs(policy, _client)


def _connect_kwargs(policy: Policy | None, client: Any) -> dict[str, int]:
    global _warned_old_libpq
    params = libpq_params(resolve(policy))
    if "tcp_user_timeout" in params and _libpq_version(client) < LIBPQ_TCP_USER_TIMEOUT_VERSION:
        del params["tcp_user_timeout"]
        if not _warned_old_libpq:
            _warned_old_libpq = True
            warnings.warn(
                f"libpq {_libpq_version(client)} predates tcp_user_timeout (libpq 12); only keepalives_* are set",
                UnsupportedPlatformWarning,
                stacklevel=3,
            )
    return params


def conninfo(dsn: str = "", policy: Policy | None = None) -> str:
    """``dsn`` (a ``key=value`` string or a ``postgresql://`` URL) with the policy's parameters added.

    The result is a ``key=value`` connection string; the policy's values replace the DSN's own keepalive
    parameters. Useful where only a connection string can be passed (``PGconn`` strings, config files).
    """
    return _conninfo(dsn, policy, _client)


def _conninfo(dsn: str, policy: Policy | None, client: Any) -> str:
    params = _connect_kwargs(policy, client)
    if client.__name__ == "psycopg":
        return str(client.conninfo.make_conninfo(dsn, **params))
    return str(client.extensions.make_dsn(dsn, **params))
