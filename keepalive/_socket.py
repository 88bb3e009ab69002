"""apply(), socket_options(), create_connection() and create_server()."""

from __future__ import annotations

import errno
import os
import socket

from keepalive._exceptions import KeepaliveError
from keepalive._log import get_logger
from keepalive._platform import CURRENT, Applied, Plan, PlatformInfo, compile_plan
from keepalive._policy import Policy, resolve_default_policy

# Not `from typing import ...`: typing costs ~2 ms to import, and mypy knows this name.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final, Protocol

__all__ = ["SocketLike", "apply", "create_connection", "create_server", "socket_options"]

log = get_logger("socket")

_GLOBAL_DEFAULT_TIMEOUT: Final[Any] = getattr(socket, "_GLOBAL_DEFAULT_TIMEOUT", object())
#: What a socket's setsockopt raises for a socket that cannot take an option (closed, not TCP, refused). Not
#: AttributeError or TypeError: those are programmer errors (not a socket at all) and are raised as TypeError.
_CAUGHT: Final = (OSError, ValueError, OverflowError)
#: (option, errno or exception name) of the refusals already logged as a WARNING in this process.
_warned: dict[tuple[str, int | str], object] = {}


if TYPE_CHECKING:

    class SocketLike(Protocol):
        """Anything with ``setsockopt``: :class:`socket.socket`, asyncio's ``TransportSocket``, a trio socket."""

        def setsockopt(self, level: int, optname: int, value: int, /) -> None: ...

else:  # the same class without typing.Protocol (importing typing costs ~2 ms at start-up); never instantiated

    class SocketLike:
        """Anything with ``setsockopt``: :class:`socket.socket`, asyncio's ``TransportSocket``, a trio socket."""

        def setsockopt(self, level: int, optname: int, value: int, /) -> None: ...


def _plan_for(policy: Policy) -> Plan:
    plan: Plan | None = policy._plan
    if plan is None:
        plan = compile_plan(policy, CURRENT)
        object.__setattr__(policy, "_plan", plan)
    return plan


def apply(sock: SocketLike, policy: Policy | None = None, *, strict: bool = False) -> Applied:
    """Turn on TCP keepalive on ``sock`` with ``policy``'s timings (default: :func:`keepalive.default_policy`).

    Sets SO_KEEPALIVE and the platform's idle / interval / count options, and TCP_USER_TIMEOUT where the platform
    has it and the policy sets it. Works on anything with ``setsockopt`` (a :class:`socket.socket`, asyncio's
    ``TransportSocket``, a trio socket), connected or not; apply before ``connect()`` to cover the handshake.

    The hot path makes only the setsockopt calls. A socket that is not TCP (UDP, AF_UNIX) or is closed is left
    untouched: by default a DEBUG log line and an :class:`Applied` whose ``skipped`` says why. A TCP socket that
    refuses an option gets the others; the refusal is in ``Applied.failed`` and is logged as a WARNING on
    ``keepalive.socket`` once per process for each option and error.

    Args:
        sock: the socket.
        policy: the timings; None uses the process default.
        strict: raise :class:`KeepaliveError` instead of returning a skipped or failed :class:`Applied`.

    Returns:
        What was set, what this platform cannot set, what failed.

    Raises:
        KeepaliveError: only with ``strict=True``.
        TypeError: ``sock`` is not a socket (has no ``setsockopt``), or ``policy`` is not a :class:`Policy`.
    """
    try:
        setsockopt = sock.setsockopt
    except AttributeError:
        raise _not_a_socket(sock) from None
    if policy is None:
        policy = resolve_default_policy()
    try:
        plan: Plan | None = policy._plan
    except AttributeError:
        raise TypeError(f"policy must be a keepalive.Policy or None, got {type(policy).__name__}") from None
    if plan is None:
        plan = _plan_for(policy)
    try:
        for _name, level, optname, value in plan.calls:
            setsockopt(level, optname, value)
        if plan.ioctl is not None:
            _ioctl(sock)(*plan.ioctl)
    except _CAUGHT as exc:
        return _after_failure(sock, policy, plan, exc, strict)
    return plan.success


def _not_a_socket(sock: object) -> TypeError:
    return TypeError(f"apply() needs a socket (an object with setsockopt()), got {type(sock).__name__}: {sock!r:.80}")


def _ioctl(sock: Any) -> Any:
    """``sock.ioctl`` (Windows' SIO_KEEPALIVE_VALS), or a function raising OSError where the socket has none."""
    ioctl = getattr(sock, "ioctl", None)
    if ioctl is None:

        def missing(*_args: object) -> None:
            raise OSError(errno.EOPNOTSUPP, f"{type(sock).__name__} has no ioctl()")

        return missing
    return ioctl


def _apply_with(sock: Any, policy: Policy, platform: PlatformInfo, *, strict: bool = False) -> Applied:
    """apply() for another platform's constants (tests drive the macOS/Windows/BSD branches through this)."""
    if not hasattr(sock, "setsockopt"):
        raise _not_a_socket(sock)
    plan = compile_plan(policy, platform)
    try:
        for _name, level, optname, value in plan.calls:
            sock.setsockopt(level, optname, value)
        if plan.ioctl is not None:
            _ioctl(sock)(*plan.ioctl)
    except _CAUGHT as exc:
        return _after_failure(sock, policy, plan, exc, strict)
    return plan.success


def _describe(sock: Any) -> str:
    try:
        return f"fd={sock.fileno()} family={sock.family!r} type={sock.type!r}"
    except Exception:
        return type(sock).__name__


def _skip_reason(sock: Any, exc: BaseException) -> str | None:
    """Why ``sock`` cannot take keepalive at all, or None when it is a TCP socket that refused one option."""
    try:
        if sock.fileno() == -1:
            return "the socket is closed"
    except Exception:
        pass
    if isinstance(exc, OSError) and exc.errno == errno.EBADF:
        return "the socket is closed"
    family = getattr(sock, "family", None)
    kind = getattr(sock, "type", None)
    if family is not None and family not in (socket.AF_INET, socket.AF_INET6):
        return f"not a TCP socket (family {getattr(family, 'name', family)})"
    if kind is not None and (int(kind) & 0xF) != socket.SOCK_STREAM:
        return f"not a TCP socket (type {getattr(kind, 'name', kind)})"
    return None


def _after_failure(sock: Any, policy: Policy, plan: Plan, exc: BaseException, strict: bool) -> Applied:
    reason = _skip_reason(sock, exc)
    if reason is not None:
        log.debug("keepalive not applied to %s: %s", _describe(sock), reason, extra={"keepalive_skipped": reason})
        if strict:
            raise KeepaliveError(f"cannot apply keepalive: {reason}") from exc
        return Applied(policy=policy, unsupported=plan.success.unsupported, skipped=reason)
    # A TCP socket that refused an option (an old kernel, a sandbox): set what can be set, report the rest.
    done: list[str] = []
    failed: list[tuple[str, str]] = []
    errors: list[BaseException] = []
    for name, level, optname, value in plan.calls:
        try:
            sock.setsockopt(level, optname, value)
            done.append(name)
        except _CAUGHT as error:
            failed.append((name, _error_text(error)))
            errors.append(error)
    if plan.ioctl is not None:
        try:
            _ioctl(sock)(*plan.ioctl)
            done.append("SIO_KEEPALIVE_VALS")
        except _CAUGHT as error:
            failed.append(("SIO_KEEPALIVE_VALS", _error_text(error)))
            errors.append(error)
    if failed:
        log.debug(
            "keepalive partly applied to %s: failed %s",
            _describe(sock),
            ", ".join(f"{name} ({text})" for name, text in failed),
            extra={"keepalive_failed": dict(failed)},
        )
        for (name, text), refusal in zip(failed, errors, strict=True):
            _warn_once(sock, name, text, refusal)
        if strict:
            raise KeepaliveError(
                "cannot apply keepalive: " + ", ".join(f"{name}: {text}" for name, text in failed)
            ) from exc
    return Applied(policy=policy, set=tuple(done), unsupported=plan.success.unsupported, failed=tuple(failed))


def _warn_once(sock: Any, option: str, text: str, error: BaseException) -> None:
    """One WARNING per process for each (option, errno) the kernel refused; later ones are DEBUG only."""
    code: int | str = error.errno if isinstance(error, OSError) and error.errno is not None else type(error).__name__
    key = (option, code)
    if key in _warned:
        return
    token = object()
    if _warned.setdefault(key, token) is not token:  # atomic: another thread logged it first
        return
    log.warning(
        "keepalive: the kernel refused %s on %s: %s; the other options were set (logged once per option and error)",
        option,
        _describe(sock),
        text,
        extra={"keepalive_option": option, "keepalive_errno": code, "keepalive_error": text},
    )


def _error_text(error: BaseException) -> str:
    if isinstance(error, OSError) and error.errno is not None:
        return f"{errno.errorcode.get(error.errno, error.errno)}: {os.strerror(error.errno)}"
    return f"{type(error).__name__}: {error}"


def borrow_socket(fd: int) -> socket.socket:
    """A socket object for a TCP descriptor that someone else owns, without changing the descriptor's flags.

    ``socket.socket(fileno=fd)`` switches the open file description to non-blocking when the application has
    called ``socket.setdefaulttimeout()``, and that flag is shared with the owner's descriptor (a client's blocking
    socket would start raising BlockingIOError). Passing ``SOCK_NONBLOCK`` in ``type`` makes CPython take the
    timeout as 0 without calling ``fcntl``; family and protocol are read from the descriptor. ``detach()`` the
    result when the owner keeps ``fd``; ``close()`` it when ``fd`` is a duplicate of your own.
    """
    nonblock = getattr(socket, "SOCK_NONBLOCK", 0)
    if nonblock:
        return socket.socket(type=socket.SOCK_STREAM | nonblock, fileno=fd)
    return socket.socket(fileno=fd)  # Windows and macOS: no shared blocking flag is touched by a SOCKET wrap


def _resolve(policy: Policy | None) -> Policy:
    """:func:`keepalive._runtime.resolve`, imported on the first connection rather than by ``import keepalive``."""
    from keepalive._runtime import resolve

    return resolve(policy)


def socket_options(policy: Policy | None = None) -> list[tuple[int, int, int]]:
    """The ``(level, optname, value)`` setsockopt triples that :func:`apply` makes on this platform.

    For clients that take socket options before connecting (urllib3's ``socket_options``, redis-py's
    ``socket_keepalive_options``). SO_KEEPALIVE is included (last). Windows before 10 1709 needs an ioctl that
    cannot be expressed as a triple: use :func:`apply` there.
    """
    plan = _plan_for(resolve_default_policy() if policy is None else policy)
    return [(level, optname, value) for _name, level, optname, value in plan.calls]


def create_connection(
    address: tuple[str, int],
    timeout: float | None = _GLOBAL_DEFAULT_TIMEOUT,
    source_address: tuple[str, int] | None = None,
    *,
    all_errors: bool = False,
    policy: Policy | None = None,
) -> socket.socket:
    """:func:`socket.create_connection` with keepalive set before ``connect()``.

    Same arguments, same behaviour: every address ``getaddrinfo`` returns is tried in order; the error of the
    last attempt is raised (or an :class:`ExceptionGroup` of all of them with ``all_errors=True``).
    ``policy`` defaults to :func:`keepalive.default_policy`.
    """
    policy = _resolve(policy)
    host, port = address
    exceptions: list[OSError] = []
    for family, kind, proto, _canonname, sockaddr in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM):
        sock = None
        try:
            sock = socket.socket(family, kind, proto)
            apply(sock, policy)
            if timeout is not _GLOBAL_DEFAULT_TIMEOUT:
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            exceptions.clear()
            return sock
        except OSError as exc:
            if not all_errors:
                exceptions.clear()
            exceptions.append(exc)
            if sock is not None:
                sock.close()
    if exceptions:
        try:
            if not all_errors:
                raise exceptions[0]
            raise ExceptionGroup("create_connection failed", exceptions)
        finally:
            exceptions = []
    raise OSError("getaddrinfo returns an empty list")


def create_server(
    address: tuple[str, int] | tuple[str, int, int, int],
    *,
    family: socket.AddressFamily = socket.AF_INET,
    backlog: int | None = None,
    reuse_port: bool = False,
    dualstack_ipv6: bool = False,
    policy: Policy | None = None,
) -> socket.socket:
    """:func:`socket.create_server` whose accepted connections carry ``policy``.

    The options are set on the listening socket before ``listen()``. Linux copies them to every accepted
    socket (tested). Other platforms do not promise it: there, call :func:`apply` on each accepted socket.
    """
    policy = _resolve(policy)
    if reuse_port and not hasattr(socket, "SO_REUSEPORT"):
        raise ValueError("SO_REUSEPORT not supported on this platform")
    if dualstack_ipv6:
        if not socket.has_dualstack_ipv6():
            raise ValueError("dualstack_ipv6 not supported on this platform")
        if family != socket.AF_INET6:
            raise ValueError("dualstack_ipv6 requires AF_INET6 family")
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if os.name not in ("nt", "cygwin") and hasattr(socket, "SO_REUSEADDR"):
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            except OSError:
                pass
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if socket.has_ipv6 and family == socket.AF_INET6:
            if dualstack_ipv6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            elif hasattr(socket, "IPV6_V6ONLY") and hasattr(socket, "IPPROTO_IPV6"):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            sock.bind(address)
        except OSError as err:
            raise OSError(err.errno, f"{err.strerror} (while attempting to bind on address {address!r})") from None
        apply(sock, policy)
        if backlog is None:
            sock.listen()
        else:
            sock.listen(backlog)
        return sock
    except BaseException:
        sock.close()
        raise
