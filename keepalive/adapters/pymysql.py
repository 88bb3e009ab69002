"""PyMySQL (MySQL, MariaDB): connections whose sockets carry the policy, reconnects included.

::

    conn = keepalive.adapters.pymysql.connect(host="db", user="app", database="app")
    keepalive.adapters.pymysql.apply(conn)          # a connection opened elsewhere (its current socket only)

:func:`connect` returns a :class:`KeepaliveConnection`, a ``pymysql.connections.Connection`` whose ``connect()``
opens its TCP socket with :func:`keepalive.create_connection` and hands it to PyMySQL's public
``Connection.connect(sock)``. So the policy is on the socket before the first byte, and a later
``ping(reconnect=True)`` reconnects with it too. Unix-socket connections are left as PyMySQL makes them.

:func:`apply` is for a connection someone else opened (SQLAlchemy's pool uses it): PyMySQL has no public socket
accessor, so it reads ``Connection._sock`` and raises :class:`~keepalive.KeepaliveError`, naming the PyMySQL
version, if that attribute is gone.
"""

from __future__ import annotations

import importlib
import inspect
import socket
from typing import Any

try:
    _pymysql: Any = importlib.import_module("pymysql")
except ImportError as exc:
    raise ImportError("keepalive.adapters.pymysql needs PyMySQL: pip install 'tcp-keepalive[pymysql]'") from exc

from keepalive._exceptions import KeepaliveError
from keepalive._platform import Applied
from keepalive._policy import Policy
from keepalive._runtime import resolve
from keepalive._socket import apply as apply_socket
from keepalive._socket import create_connection
from keepalive.adapters._internals import internals_changed

__all__ = ["KeepaliveConnection", "apply", "connect"]

_CLIENT = "PyMySQL"
_DIST = "PyMySQL"
_Connection: Any = _pymysql.connections.Connection


def _takes_sock(connect: Any) -> bool:
    """Whether PyMySQL's ``Connection.connect()`` takes ``sock``; False when its signature cannot be read (the
    docs build imports this module against a mock of PyMySQL)."""
    try:
        return "sock" in inspect.signature(connect).parameters
    except (TypeError, ValueError):
        return False


_HAS_CONNECT_SOCK = _takes_sock(_Connection.connect)
_HAS_SOCK_ATTR = hasattr(_Connection, "_sock")
#: MySQL client error 2003, "Can't connect to MySQL server" (pymysql.constants.CR.CR_CONN_HOST_ERROR).
_CR_CONN_HOST_ERROR = 2003


def _check_connect_sock() -> None:
    if not _HAS_CONNECT_SOCK:
        raise internals_changed(_CLIENT, _DIST, "pymysql Connection.connect() no longer takes a 'sock' argument")


class KeepaliveConnection(_Connection):  # type: ignore[misc]
    """A PyMySQL connection that opens every TCP socket with the keepalive policy (reconnects included).

    Takes PyMySQL's ``Connection`` arguments plus ``policy`` (default: the process default policy).
    """

    def __init__(self, *args: Any, policy: Policy | None = None, **kwargs: Any) -> None:
        _check_connect_sock()
        # Set before PyMySQL's __init__, which connects (unless defer_connect=True).
        self.keepalive_policy: Policy = resolve(policy)
        super().__init__(*args, **kwargs)

    def connect(self, sock: socket.socket | None = None) -> None:
        """PyMySQL's ``connect``: a TCP socket is created here with the policy applied, then handed to PyMySQL."""
        if sock is None and not self.unix_socket:
            source = (self.bind_address, 0) if self.bind_address is not None else None
            try:
                sock = create_connection(
                    (self.host, self.port), self.connect_timeout, source_address=source, policy=self.keepalive_policy
                )
            except OSError as exc:
                # The error PyMySQL raises when it fails to connect its own socket.
                error = _pymysql.err.OperationalError(
                    _CR_CONN_HOST_ERROR, f"Can't connect to MySQL server on {self.host!r} ({exc})"
                )
                error.original_exception = exc
                raise error from exc
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as PyMySQL does for its own sockets
            self.host_info = f"socket {self.host}:{self.port:d}"
        elif sock is not None:
            apply_socket(sock, self.keepalive_policy)
        super().connect(sock)


def connect(*args: Any, policy: Policy | None = None, **kwargs: Any) -> Any:
    """``pymysql.connect(*args, **kwargs)`` returning a :class:`KeepaliveConnection` with ``policy``."""
    return KeepaliveConnection(*args, policy=policy, **kwargs)


def apply(connection: Any, policy: Policy | None = None) -> Applied:
    """Set ``policy`` on the current socket of an open PyMySQL connection (not on a later reconnect's).

    Raises :class:`~keepalive.KeepaliveError` when the connection is closed or PyMySQL's internals changed.
    """
    policy = resolve(policy)
    if not isinstance(connection, _Connection):
        raise TypeError(f"expected a pymysql connection, got {type(connection).__name__}")
    if not _HAS_SOCK_ATTR:
        raise internals_changed(_CLIENT, _DIST, "pymysql Connection has no '_sock' attribute")
    sock = connection._sock
    if sock is None:
        raise KeepaliveError("cannot apply keepalive to a closed PyMySQL connection")
    if not isinstance(sock, socket.socket):
        raise internals_changed(_CLIENT, _DIST, f"Connection._sock is a {type(sock).__name__}, not a socket")
    return apply_socket(sock, policy)
