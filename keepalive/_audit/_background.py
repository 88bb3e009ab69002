"""The background audit: one round of the sweep engine every ``interval`` seconds in a daemon thread."""

from __future__ import annotations

import os
import socket
import threading
import weakref
from types import TracebackType

from keepalive._audit._sweep import _own
from keepalive._audit._verdict import SocketState, _check_policy, _path_timeout, _require_proc
from keepalive._exceptions import KeepaliveError
from keepalive._log import get_logger
from keepalive._policy import Policy, resolve_default_policy
from keepalive._socket import apply

log = get_logger("audit")


_handles: weakref.WeakSet[BackgroundAudit] = weakref.WeakSet()


class BackgroundAudit:
    """A running :func:`audit_in_background`: ``stop()`` it, or use it as a context manager.

    Attributes:
        interval: seconds between rounds.
        fix: whether offenders get the policy applied.
        loopback: whether connections to loopback addresses are reported.
        rounds: completed rounds (in this process).
    """

    def __init__(
        self, interval: float, *, policy: Policy | None, fix: bool, path_timeout: float | None, loopback: bool
    ) -> None:
        self.interval = interval
        self.fix = fix
        self.loopback = loopback
        self.rounds = 0
        self._policy = policy
        self._path_timeout = path_timeout
        self._reported: set[tuple[int, str, str]] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failed_once = False

    # lifecycle
    def _start(self, delay: float) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(delay,), name="keepalive-audit", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        """True while the thread runs (and stop() has not been called)."""
        thread = self._thread
        return thread is not None and thread.is_alive() and not self._stop.is_set()

    def stop(self, timeout: float | None = None) -> None:
        """Stop the thread and wait up to ``timeout`` seconds for it (None: until it ends; a round is short)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def __enter__(self) -> BackgroundAudit:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<BackgroundAudit interval={self.interval:g}s fix={self.fix} running={self.running}>"

    def _after_fork_in_child(self) -> None:
        # The thread does not exist in the child; a lock it held at fork time would stay held forever.
        self._lock = threading.Lock()
        self.rounds = 0
        if self._thread is not None and not self._stop.is_set():
            self._start(self.interval)

    # the work
    def _loop(self, delay: float) -> None:
        stop = self._stop
        while not stop.wait(delay):
            delay = self.interval
            try:
                self.audit_now()
            except Exception:
                if not self._failed_once:
                    self._failed_once = True
                    log.exception("keepalive audit round failed; it will keep trying")
                else:
                    log.debug("keepalive audit round failed", exc_info=True)

    def audit_now(self) -> list[SocketState]:
        """Run one round now, in the calling thread: log (and with ``fix``, fix) new offenders; return all states.

        Only ESTABLISHED offenders are reported, each connection once.
        """
        policy = self._policy if self._policy is not None else resolve_default_policy()
        timeout = _path_timeout(self._path_timeout)
        with self._lock:
            seen: set[tuple[int, str, str]] = set()

            def visit(state: SocketState, sock: socket.socket) -> None:
                if state.state != "ESTABLISHED" or not state.offending or (state.loopback and not self.loopback):
                    return
                key = (state.inode, state.local, state.remote)
                seen.add(key)
                if key not in self._reported:
                    self._report(state, sock, policy)

            states = _own(policy, timeout, visit)
            self._reported = seen  # forget connections that are gone
            self.rounds += 1
            return states

    def _report(self, state: SocketState, sock: socket.socket, policy: Policy) -> None:
        extra = {
            "keepalive_remote": state.remote,
            "keepalive_local": state.local,
            "keepalive_fd": state.fd,
            "keepalive_verdict": state.verdict,
            "keepalive_idle": state.idle,
            "keepalive_interval": state.interval,
            "keepalive_count": state.count,
            "keepalive_path_timeout": state.path_timeout,
        }
        if not self.fix:
            log.warning(
                "keepalive audit: connection to %s (from %s, fd %d) is %s: %s; fix: %s",
                state.remote,
                state.local,
                state.fd,
                state.verdict,
                state.reason,
                state.fix,
                extra=extra,
            )
            return
        applied = apply(sock, policy)
        if applied.ok:
            outcome = f"applied {policy}"
        else:
            problems = [f"{name}: {error}" for name, error in applied.failed]
            outcome = f"could not apply {policy}: {applied.skipped or '; '.join(problems)}"
        extra["keepalive_fixed"] = applied.ok
        log.warning(
            "keepalive audit: connection to %s (from %s, fd %d) is %s: %s; %s",
            state.remote,
            state.local,
            state.fd,
            state.verdict,
            state.reason,
            outcome,
            extra=extra,
        )


def _restart_in_child() -> None:
    for handle in list(_handles):
        handle._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_restart_in_child)


def audit_in_background(
    interval: float = 300,
    *,
    policy: Policy | None = None,
    fix: bool = False,
    path_timeout: float | None = None,
    loopback: bool = False,
) -> BackgroundAudit:
    """Audit this process every ``interval`` seconds in a daemon thread; warn once per offending connection.

    Each ESTABLISHED connection whose verdict is ``no-keepalive`` or ``too-slow`` is logged once, as a warning
    on logger ``keepalive.audit`` (remote address, what is wrong, the fix; the numbers in ``extra``). The first
    round runs at once.

    After ``os.fork()`` the child, which inherits no threads, gets its own audit thread with the same settings;
    its first round comes ``interval`` seconds later, and connections already reported by the parent are not
    reported again.

    Args:
        interval: seconds between rounds (> 0).
        policy: the yardstick and the fix; default :func:`keepalive.default_policy`.
        fix: also apply ``policy`` to each offender (on a duplicate of its descriptor, which changes the same
            socket). This changes sockets that other code owns: see docs/audit.md for the risks.
        path_timeout: the path's idle timeout; default: the one the checker detects, if any.
        loopback: also report (and fix) connections to a loopback address. Off by default: no middlebox sits on
            that path (a local sidecar or proxy holds the long way out).

    Returns:
        The handle: ``stop()`` it, or use it in a ``with`` block. Not on Linux: a handle that is already
        stopped, and one warning on ``keepalive.audit``.
    """
    if isinstance(interval, bool) or not isinstance(interval, int | float) or not interval > 0:
        raise ValueError(f"interval must be a positive number of seconds, got {interval!r}")
    _check_policy(policy)
    if path_timeout is not None:
        _path_timeout(path_timeout)
    handle = BackgroundAudit(float(interval), policy=policy, fix=fix, path_timeout=path_timeout, loopback=loopback)
    try:
        _require_proc()
    except KeepaliveError as exc:
        log.warning("keepalive audit is not running: %s", exc)
        return handle
    _handles.add(handle)
    handle._start(0)
    return handle
