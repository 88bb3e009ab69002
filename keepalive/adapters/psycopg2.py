"""psycopg2: the libpq connection parameters of :mod:`keepalive.adapters.psycopg`, for psycopg2's own libpq.

::

    conn = psycopg2.connect(dsn, **keepalive.adapters.psycopg2.connect_kwargs())

Use this module rather than :mod:`keepalive.adapters.psycopg` when psycopg 3 is installed too: it checks the libpq
psycopg2 links (``tcp_user_timeout`` needs libpq 12+) and builds strings with ``psycopg2.extensions.make_dsn``.
"""

from __future__ import annotations

import importlib
from typing import Any

try:
    _client: Any = importlib.import_module("psycopg2")
    importlib.import_module("psycopg2.extensions")
except ImportError as exc:
    raise ImportError("keepalive.adapters.psycopg2 needs psycopg2: pip install 'tcp-keepalive[psycopg2]'") from exc

from keepalive._policy import Policy
from keepalive.adapters.psycopg import _connect_kwargs, _conninfo, _libpq_version

__all__ = ["connect_kwargs", "conninfo", "libpq_version"]


def libpq_version() -> int:
    """The version of the libpq psycopg2 uses, as libpq's integer (``160004`` for 16.4)."""
    return _libpq_version(_client)


def connect_kwargs(policy: Policy | None = None) -> dict[str, int]:
    """libpq keepalive parameters for ``psycopg2.connect(dsn, **connect_kwargs())``; see the psycopg module."""
    return _connect_kwargs(policy, _client)


def conninfo(dsn: str = "", policy: Policy | None = None) -> str:
    """``dsn`` with the policy's libpq parameters folded in (``psycopg2.extensions.make_dsn``)."""
    return _conninfo(dsn, policy, _client)
