"""Process-wide keepalive: :func:`install` and :func:`uninstall`.

``install()`` overrides ``connect`` and ``connect_ex`` on :class:`socket.socket` (the Python subclass of the C
type ``_socket.socket``; the C type itself cannot be patched). Every connection made from Python goes through
them: ``socket.create_connection``, asyncio's selector loops (``loop.sock_connect`` / ``create_connection`` call
``sock.connect``), trio (its socket wraps a :class:`socket.socket`), anyio on both, uvloop's ``sock_connect``,
``ssl.SSLSocket`` (it calls ``super().connect``), and every client built on them. Two event loops connect
without ``socket.socket.connect`` and get a wrapper of their own, put in place when their module is imported
(before or after :func:`install`): uvloop's ``Loop.create_connection`` (libuv connects in C; applied right after
the connection is made) and asyncio's proactor loop (Windows' default; ``sock_connect`` uses ConnectEx).

Per connect, the hook costs two C attribute reads (family and type: UDP and AF_UNIX sockets are skipped), five
getsockopt calls and one setsockopt per option it has to lower. It never breaks a connect: every
error of the hook is logged at DEBUG on ``keepalive.install`` and the original ``connect`` runs regardless.

Tighten-only: the hook never loosens what a socket already has and always brings it within the policy
(:func:`keepalive._tighten.tighten`): SO_KEEPALIVE on; idle, interval and count each the smaller of the socket's
and the policy's; the policy's user timeout where the socket has none. A client's own tighter keepalive survives
(redis-py's 30/5/3 under 60/10/5); a looser one (pymongo's 120/10/9, set before connect) is brought down.
Adapters that apply after ``connect()`` run later, so their explicit policy wins there.

Connections made in C (libpq, libmariadb, gRPC core, librdkafka) never call ``socket.socket.connect``: a light
sweep of the process's own TCP sockets (a daemon thread, one round every ``KEEPALIVE_SWEEP`` seconds, default 5;
``KEEPALIVE_SWEEP=0`` turns it off) tightens them the same way a few seconds after they connect. The thread
starts with :func:`install`, sleeps until its first round, and only then imports the sweep engine
(``keepalive._audit``), so start-up stays cheap; after ``os.fork()`` the child starts its own.
"""

from __future__ import annotations

import _socket
import _thread
import functools
import os
import socket
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

from keepalive._log import get_logger

# Not `from typing import ...`: typing costs ~2 ms to import, and mypy knows this name.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import importlib.machinery
    from typing import Any, Final

    from keepalive._policy import Policy

# What install() itself needs is imported above; what the first connection needs (keepalive._runtime,
# keepalive._tighten and through them threading and the platform probe) is imported then, so that KEEPALIVE_AUTO=1
# costs a process that never connects almost nothing.

__all__ = ["install", "installed_policy", "is_installed", "uninstall"]

log = get_logger("install")

_PATCHED_NAMES: Final = ("connect", "connect_ex")
_INET: Final = frozenset({socket.AF_INET, socket.AF_INET6})
_SOCK_STREAM: Final = int(socket.SOCK_STREAM)

# C-level accessors: ``socket.socket.family`` / ``.type`` are Python properties that build enums (about 2 us
# each); the C members cost about 0.1 us.
_family: Final[Callable[[Any], int]] = _socket.socket.family.__get__
_type: Final[Callable[[Any], int]] = _socket.socket.type.__get__

_lock = _thread.RLock()
#: True between install() and uninstall(); the hooks read it without the lock.
_enabled = False
#: What install() was given (None: the process default).
_requested: Policy | None = None
#: The policy the hooks apply, resolved on the first connection (None until then).
_policy: Policy | None = None
#: True while this thread resolves the policy (a connection made by the runtime check itself is left alone).
_resolving = False

#: name -> (was it in socket.socket.__dict__, the attribute before install()) for each hook still in place.
_originals: dict[str, tuple[bool, Any]] = {}
#: name -> our hook function currently installed on socket.socket.
_hooks: dict[str, Callable[..., Any]] = {}


def _after_fork_in_child() -> None:
    """A fork while another thread held the lock (or was resolving the policy) must not leave the child stuck.

    The sweep thread does not exist in the child: start the child's own (its first round one interval later)."""
    global _lock, _resolving
    _lock = _thread.RLock()
    _resolving = False
    sweeper = _sweeper
    if sweeper is not None and _enabled:
        sweeper.start()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _resolve_first() -> Policy | None:
    """Resolve the policy on the first connection: runs the once-per-process runtime check (keepalive._runtime)."""
    global _policy, _resolving
    with _lock:
        if _policy is not None:
            return _policy
        if not _enabled or _resolving:
            return None
        _resolving = True
        try:
            from keepalive._runtime import resolve

            policy = resolve(_requested)
        finally:
            _resolving = False
        if _enabled:
            _policy = policy
        return policy


def _prepare(sock: Any) -> None:
    """Bring a TCP socket within the installed policy, tighten-only. Never raises."""
    try:
        if _family(sock) not in _INET or _type(sock) != _SOCK_STREAM:
            return
        policy = _policy
        if policy is None:
            policy = _resolve_first()
            if policy is None:
                return
        from keepalive._tighten import log_tightened, tighten

        log_tightened("install()", tighten(sock, policy, verify=False))  # on every connect: no read-back
    except Exception:
        log.debug("install: could not prepare socket %r", sock, exc_info=True)


def _make_hook(name: str, original: Any) -> Callable[..., Any]:
    def hook(self: socket.socket, address: Any, /) -> Any:
        if _enabled:
            _prepare(self)
        return original(self, address)

    try:
        functools.update_wrapper(hook, original)
    except (AttributeError, TypeError):  # pragma: no cover - a foreign callable without metadata
        pass
    hook.__wrapped__ = original  # type: ignore[attr-defined]
    hook.__keepalive_hook__ = True  # type: ignore[attr-defined]
    return hook


def install(policy: Policy | None = None, *, sweep: float | None = None) -> None:
    """Give every TCP connection this process makes keepalive within the policy, tighten-only.

    Covers ``socket.socket.connect`` / ``connect_ex`` (set before ``connect()``) and so the stdlib, asyncio
    (selector loops and uvloop), trio, anyio and every client that connects through them (urllib3/requests, httpx,
    aiohttp, redis-py, asyncpg, PyMySQL, pymongo, ...). Connections made in C (libpq behind psycopg2, mysqlclient,
    gRPC core, librdkafka) are reached by the sweep: a daemon thread that tightens the process's own connected
    TCP sockets every ``sweep`` seconds (Linux; loopback included; restarted in a forked child).

    Tighten-only: SO_KEEPALIVE on; idle, interval and count each the smaller of the socket's and the policy's;
    the policy's user timeout where the socket has none. A client's own tighter keepalive is kept, a looser one
    brought down (logged once per distinct values at INFO on ``keepalive.install``).

    Idempotent and thread-safe; a second call with another policy replaces the first. The policy (``None``: the
    process default, :func:`keepalive.default_policy`) is resolved, and the once-per-process runtime check runs,
    on the first connection.

    Args:
        policy: the timings; None uses the process default.
        sweep: seconds between sweep rounds; 0 turns the sweep off; None reads ``KEEPALIVE_SWEEP`` (the same: a
            number of seconds, or 0), default 5. A broken ``KEEPALIVE_SWEEP`` is logged as an error and the
            default used.

    Raises:
        TypeError: ``policy`` is not a :class:`keepalive.Policy` or None.
        ValueError: ``sweep`` is negative or not a number.
    """
    global _enabled, _requested, _policy
    if policy is not None:
        from keepalive._policy import Policy

        if not isinstance(policy, Policy):
            raise TypeError(f"policy must be a keepalive.Policy or None, got {type(policy).__name__}")
    interval = _sweep_interval(sweep)
    with _lock:
        _set_sweep(interval)
        if _enabled and policy == _requested and _hooks.keys() == set(_PATCHED_NAMES):
            return
        _requested = policy
        _policy = None
        for name in _PATCHED_NAMES:
            if name in _hooks:
                continue  # still in place (an uninstall() left it under a foreign wrapper)
            had = name in socket.socket.__dict__
            original = getattr(socket.socket, name)
            hook = _make_hook(name, original)
            _originals[name] = (had, original)
            _hooks[name] = hook
            setattr(socket.socket, name, hook)
        _enabled = True
        _watch_loops()
    log.debug("installed process-wide keepalive (policy %s)", "default" if policy is None else policy)


def uninstall() -> None:
    """Undo :func:`install`: ``socket.socket.connect`` and ``connect_ex`` are the original objects again.

    Idempotent and thread-safe. If another library has wrapped our hook in the meantime, its wrapper is left in
    place and our hook inside it turns into a plain pass-through. Sockets already connected keep their options.
    """
    global _enabled, _policy, _requested
    with _lock:
        _enabled = False
        _set_sweep(0)
        _policy = None
        _requested = None
        for name in list(_hooks):
            hook = _hooks[name]
            if socket.socket.__dict__.get(name) is not hook:
                log.debug("socket.socket.%s was wrapped after install(); leaving our hook in place, disabled", name)
                continue
            had, original = _originals.pop(name)
            if had:
                setattr(socket.socket, name, original)
            else:
                delattr(socket.socket, name)
            del _hooks[name]
        _unwatch_loops()
    log.debug("uninstalled process-wide keepalive")


def is_installed() -> bool:
    """True between :func:`install` and :func:`uninstall`."""
    return _enabled


def installed_policy() -> Policy | None:
    """The policy the hooks apply (resolving it now if no connection has yet), or None when not installed."""
    if not _enabled:
        return None
    return _policy if _policy is not None else _resolve_first()


# --- the sweep: connections made in C ----------------------------------------------------------------------------

ENV_SWEEP: Final = "KEEPALIVE_SWEEP"
#: Seconds between sweep rounds unless KEEPALIVE_SWEEP or install(sweep=) says otherwise.
DEFAULT_SWEEP_INTERVAL: Final = 5.0


def parse_sweep(text: str) -> float:
    """``KEEPALIVE_SWEEP``'s value: seconds between rounds, 0 for off. Raises ValueError naming the variable."""
    value = text.strip().lower()
    if value in ("off", "false", "no"):
        return 0.0
    if value in ("on", "true", "yes", ""):
        return DEFAULT_SWEEP_INTERVAL
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0 or seconds == float("inf"):
        raise ValueError(f"{ENV_SWEEP}={text!r} is not a number of seconds (or 0 for off)")
    return seconds


def _sweep_interval(sweep: float | None) -> float:
    if sweep is not None:
        if isinstance(sweep, bool) or not isinstance(sweep, int | float) or not 0 <= sweep < float("inf"):
            raise ValueError(f"sweep must be a number of seconds >= 0 (0: off), got {sweep!r}")
        return float(sweep)
    text = os.environ.get(ENV_SWEEP)
    if text is None:
        return DEFAULT_SWEEP_INTERVAL
    try:
        return parse_sweep(text)
    except ValueError as exc:
        log.error("keepalive: %s; sweeping every %g s instead", exc, DEFAULT_SWEEP_INTERVAL)
        return DEFAULT_SWEEP_INTERVAL


class _Stop:
    """A one-shot stop signal that a sleeping thread waits on: ``threading.Event`` without importing threading
    (about 1 ms at start-up, which every process started with KEEPALIVE_AUTO=1 would pay)."""

    def __init__(self) -> None:
        self._lock = _thread.allocate_lock()
        self._lock.acquire()  # held until set()

    def set(self) -> None:
        try:
            self._lock.release()
        except RuntimeError:  # set already
            pass

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds; True as soon as (or if) set() was called."""
        if self._lock.acquire(True, timeout):
            self.set()  # release it again, for the next wait (and a racing second set() is harmless)
            return True
        return False


class _DaemonThread:
    """A daemon thread started with ``_thread`` (see _Stop): ``start()``, ``is_alive()``, ``join(timeout)``."""

    name = "keepalive-sweep"

    def __init__(self, target: Callable[[_Stop], None], stop: _Stop) -> None:
        self._target = target
        self._stop = stop
        self._running = _thread.allocate_lock()

    def start(self) -> None:
        self._running.acquire()
        try:
            _thread.start_new_thread(self._run, ())
        except BaseException:
            self._running.release()
            raise

    def _run(self) -> None:
        try:
            self._target(self._stop)
        finally:
            self._running.release()

    def is_alive(self) -> bool:
        return self._running.locked()

    def join(self, timeout: float | None = None) -> None:
        if self._running.acquire(True, -1 if timeout is None else timeout):
            self._running.release()


class _Sweeper:
    """The daemon thread that tightens this process's own TCP sockets every ``interval`` seconds."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.rounds = 0
        self._known: set[int] = set()
        self._stop = _Stop()
        self._thread: _DaemonThread | None = None
        self._failed = False

    def start(self) -> None:
        self._stop = _Stop()
        self._thread = _DaemonThread(self._loop, self._stop)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self, stop: _Stop) -> None:
        _block_signals()
        while not stop.wait(self.interval):
            if _enabled and sys.platform.startswith("linux"):
                self.sweep_now()

    def sweep_now(self) -> None:
        """One round in the calling thread. Never raises (the first failure is logged at ERROR, later at DEBUG)."""
        try:
            policy = _policy if _policy is not None else _resolve_first()
            if policy is None:
                return
            from keepalive._audit._sweep import tighten_round

            tighten_round(None, policy, self._known, origin="the sweep")
            self.rounds += 1
        except Exception:
            if not self._failed:
                self._failed = True
                log.exception("keepalive sweep round failed; it will keep trying")
            else:
                log.debug("keepalive sweep round failed", exc_info=True)


def _block_signals() -> None:
    """Keep process-directed signals off this thread: they belong to the program's main thread (and to
    ``keepalive run``'s signal forwarding, which waits for them there)."""
    try:
        # _signal, not signal: signal builds its enums on import (this thread runs while the program starts up).
        signals: Any = __import__("_signal")
        signals.pthread_sigmask(signals.SIG_BLOCK, signals.valid_signals())
    except (ImportError, AttributeError, OSError, ValueError):  # pragma: no cover - no pthread_sigmask (Windows)
        pass


_sweeper: _Sweeper | None = None


def _set_sweep(interval: float) -> None:
    """Start, retime or stop the sweep thread (called under _lock)."""
    global _sweeper
    if _sweeper is not None and _sweeper.interval == interval:
        return
    if _sweeper is not None:
        _sweeper.stop()
        _sweeper = None
    if interval > 0 and sys.platform.startswith("linux"):
        _sweeper = _Sweeper(interval)
        _sweeper.start()


def sweep_rounds() -> int:
    """How many sweep rounds have run in this process since the sweep (re)started (0 when it is off)."""
    return 0 if _sweeper is None else _sweeper.rounds


# --- event loops that do not call socket.socket.connect ----------------------------------------------------------
# uvloop's create_connection() makes and connects its own socket in C (libuv): wrapped to apply right after the
# connection is made. asyncio's proactor loop (Windows' default) connects with ConnectEx on the descriptor:
# its sock_connect(), which create_connection() also uses, is wrapped to apply before. Both are wrapped as soon as
# their module is imported, before or after install(), through a finder that only looks at those two names.


async def _uvloop_create_connection(original: Any, self: Any, *args: Any, **kwargs: Any) -> Any:
    transport, protocol = await original(self, *args, **kwargs)
    if _enabled:
        _prepare_transport(transport)
    return transport, protocol


async def _proactor_sock_connect(original: Any, self: Any, sock: Any, address: Any) -> Any:
    if _enabled:
        _prepare(sock)
    return await original(self, sock, address)


def _prepare_transport(transport: Any) -> None:
    """Apply the policy to the connected socket behind a transport (through a dup of its descriptor)."""
    try:
        pseudo = transport.get_extra_info("socket")
        if pseudo is None:
            return
        from keepalive._socket import borrow_socket

        with borrow_socket(os.dup(pseudo.fileno())) as sock:
            _prepare(sock)
    except Exception:
        log.debug("install: could not prepare uvloop transport %r", transport, exc_info=True)


def _wrapped_uvloop() -> None:
    log.debug("wrapped uvloop.Loop.create_connection")


def _wrapped_proactor() -> None:
    log.debug("wrapped asyncio's proactor loop sock_connect")


#: module -> (class name, method name, wrapper taking the original first, what to log once wrapped).
_LOOP_METHODS: Final[dict[str, tuple[str, str, Callable[..., Any], Callable[[], None]]]] = {
    "uvloop": ("Loop", "create_connection", _uvloop_create_connection, _wrapped_uvloop),
    "asyncio.proactor_events": ("BaseProactorEventLoop", "sock_connect", _proactor_sock_connect, _wrapped_proactor),
}
#: module -> (class, method name, was it in the class's __dict__, the original, our wrapper) while wrapped.
_loop_saved: dict[str, tuple[type, str, bool, Any, Any]] = {}
_finder: _LoopModuleFinder | None = None


def _wrap_loop_method(module_name: str, module: ModuleType) -> None:
    if module_name in _loop_saved:
        return
    class_name, method_name, wrapper, wrapped = _LOOP_METHODS[module_name]
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        return
    original = getattr(cls, method_name)
    bound = _as_method(original, wrapper)
    _loop_saved[module_name] = (cls, method_name, method_name in cls.__dict__, original, bound)
    setattr(cls, method_name, bound)
    wrapped()


def _as_method(original: Any, wrapper: Callable[..., Any]) -> Callable[..., Any]:
    """A plain coroutine function ``(self, *args, **kwargs)`` calling ``wrapper(original, self, ...)``."""

    async def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return await wrapper(original, self, *args, **kwargs)

    try:
        functools.update_wrapper(method, original)
    except (AttributeError, TypeError):  # pragma: no cover
        pass
    method.__wrapped__ = original  # type: ignore[attr-defined]
    return method


def _unwrap_loop_methods() -> None:
    for module_name, (cls, method_name, had, original, ours) in list(_loop_saved.items()):
        if cls.__dict__.get(method_name) is not ours:
            continue  # wrapped again by someone else: ours stays, inert (it checks _enabled)
        if had:
            setattr(cls, method_name, original)
        else:
            delattr(cls, method_name)
        del _loop_saved[module_name]


class _LoopModuleFinder:
    """Wraps the loop classes right after their module is imported (finds nothing itself; wraps the loader)."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _LOOP_METHODS:
            return None
        import importlib.machinery

        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_and_wrap(module: ModuleType) -> None:
            exec_module(module)
            try:
                with _lock:
                    if _enabled:
                        _wrap_loop_method(fullname, module)
            except Exception:
                log.debug("install: could not wrap %s", fullname, exc_info=True)

        # The loader is a fresh instance made for this spec: shadow its method rather than replace the loader.
        loader.exec_module = exec_and_wrap  # type: ignore[method-assign]
        return spec


def _watch_loops() -> None:
    """Wrap the loop classes now if imported, else when they are (called under _lock)."""
    global _finder
    for module_name in _LOOP_METHODS:
        module = sys.modules.get(module_name)
        if module is not None:
            _wrap_loop_method(module_name, module)
    if _finder is None:
        _finder = _LoopModuleFinder()
        sys.meta_path.insert(0, _finder)


def _unwatch_loops() -> None:
    global _finder
    if _finder is not None:
        try:
            sys.meta_path.remove(_finder)
        except ValueError:
            pass
        _finder = None
    _unwrap_loop_methods()
