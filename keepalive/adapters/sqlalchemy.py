"""SQLAlchemy: every DBAPI connection a sync or async engine's pool opens gets the policy.

::

    engine = keepalive.adapters.sqlalchemy.instrument(create_engine("postgresql+psycopg://..."))
    engine = keepalive.adapters.sqlalchemy.instrument(create_async_engine("postgresql+asyncpg://..."))

Call it right after creating the engine, before the pool opens connections. Per driver:

=========== ================================================================================================
psycopg,    libpq's own parameters (``keepalives_idle`` ...) added to the connect arguments by a ``do_connect``
psycopg2    listener, and -- so a ``creator=`` / ``async_creator=`` engine is covered too -- the policy applied
            to the connection's ``fileno()`` by the pool's ``connect`` event
asyncpg     the pool's ``connect`` event applies it to the asyncpg connection's socket
            (:func:`keepalive.adapters.asyncpg.apply`)
pymysql     the pool's ``connect`` event (:func:`keepalive.adapters.pymysql.apply`)
aiomysql    the pool's ``connect`` event (:func:`keepalive.adapters.aiomysql.apply`)
=========== ================================================================================================

The pool's ``connect`` event fires once per new physical connection, so connections the pool replaces (after
``pool_recycle``, an invalidation or a disconnect) get the policy too. Other drivers raise
:class:`~keepalive.KeepaliveError` here rather than leaving keepalive off unnoticed.
"""

from __future__ import annotations

import importlib
import warnings
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

try:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
except ImportError as exc:
    raise ImportError(
        "keepalive.adapters.sqlalchemy needs SQLAlchemy: pip install 'tcp-keepalive[sqlalchemy]'"
    ) from exc

from keepalive._exceptions import KeepaliveError, KeepaliveWarning
from keepalive._policy import Policy
from keepalive._runtime import resolve
from keepalive.adapters._internals import apply_to_fd

__all__ = ["SUPPORTED_DRIVERS", "instrument"]

#: SQLAlchemy driver names (``dialect.driver``) that :func:`instrument` handles.
SUPPORTED_DRIVERS = ("psycopg", "psycopg2", "asyncpg", "pymysql", "aiomysql")
_LIBPQ_DRIVERS = ("psycopg", "psycopg2")

_E = TypeVar("_E")
_Listener = tuple[str, Callable[..., Any]]
_installed: weakref.WeakKeyDictionary[Engine, list[_Listener]] = weakref.WeakKeyDictionary()


def _sync_engine(engine: object) -> Engine:
    if isinstance(engine, Engine):
        return engine
    sync_engine = getattr(engine, "sync_engine", None)  # sqlalchemy.ext.asyncio.AsyncEngine
    if isinstance(sync_engine, Engine):
        return sync_engine
    raise TypeError(f"expected a SQLAlchemy Engine or AsyncEngine, got {type(engine).__name__}")


def _socket_applier(driver: str, policy: Policy) -> Callable[[Any], object]:
    """The function that applies ``policy`` to a driver-level connection of ``driver``."""
    if driver in _LIBPQ_DRIVERS:
        return lambda connection: apply_to_fd(connection.fileno(), policy)
    adapter: Any = importlib.import_module(f"keepalive.adapters.{driver}")
    return lambda connection: adapter.apply(connection, policy)


def _libpq_params(driver: str, policy: Policy) -> dict[str, int]:
    if driver == "psycopg2":
        from keepalive.adapters import psycopg2 as libpq_adapter
    else:
        from keepalive.adapters import psycopg as libpq_adapter  # type: ignore[no-redef]
    return libpq_adapter.connect_kwargs(policy)


def _open_connections(engine: Engine) -> int:
    pool: Any = engine.pool
    try:
        return int(pool.checkedin()) + int(pool.checkedout())
    except (AttributeError, TypeError):
        return 0


def instrument(engine: _E, policy: Policy | None = None) -> _E:
    """Give every connection ``engine``'s pool opens from now on ``policy``; returns ``engine``.

    ``engine`` is an ``Engine`` or an ``AsyncEngine`` using one of :data:`SUPPORTED_DRIVERS`. Calling it again
    replaces the earlier policy (for connections opened afterwards). Connections already in the pool are not
    changed: a :class:`~keepalive.KeepaliveWarning` says how many, and ``engine.dispose()`` replaces them.
    """
    sync_engine = _sync_engine(engine)
    resolved = resolve(policy)
    driver = sync_engine.dialect.driver
    if driver not in SUPPORTED_DRIVERS:
        raise KeepaliveError(
            f"keepalive.adapters.sqlalchemy does not support the {sync_engine.dialect.name}+{driver} driver "
            f"(supported: {', '.join(SUPPORTED_DRIVERS)}); keepalive was NOT applied"
        )
    apply_to_driver_connection = _socket_applier(driver, resolved)

    for name, listener in _installed.pop(sync_engine, []):
        event.remove(sync_engine, name, listener)
    listeners: list[_Listener] = []

    if driver in _LIBPQ_DRIVERS:
        params = _libpq_params(driver, resolved)

        def add_libpq_params(dialect: Any, connection_record: Any, cargs: Any, cparams: dict[str, Any]) -> None:
            cparams.update(params)

        event.listen(sync_engine, "do_connect", add_libpq_params, insert=True)
        listeners.append(("do_connect", add_libpq_params))

    def apply_on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        apply_to_driver_connection(connection_record.driver_connection)

    event.listen(sync_engine, "connect", apply_on_connect)
    listeners.append(("connect", apply_on_connect))
    _installed[sync_engine] = listeners

    already_open = _open_connections(sync_engine)
    if already_open:
        warnings.warn(
            f"{already_open} connection(s) already in the pool of {sync_engine!r} keep their old settings; "
            "call instrument() before first use, or engine.dispose() to replace them",
            KeepaliveWarning,
            stacklevel=2,
        )
    return engine
