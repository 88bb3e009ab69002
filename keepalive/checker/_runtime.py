"""The checker's side of the runtime contract (CONTRIBUTING.md).

* :func:`detected_path_timeout` -- the path model's smallest path timeout from cheap local reads, and whether the
  user named the path. Never raises, never touches the network.
* :func:`run_once` -- for ``keepalive._runtime.resolve()``: the first time the process uses a policy, judge that
  policy against the path model in a daemon thread (never on the caller's event loop), and log each distinct
  problem once per process on logger ``keepalive.check``.

Levels: WARNING (ERROR for an idle at or past the path timeout) only for what this process can act on -- its
policy does not fit the path, or its own ``KEEPALIVE_*`` settings are wrong. INFO for history (since-boot
conntrack counters: the runtime check does not sample) and for node settings its wrapped sockets do not use.
This module imports nothing heavy: the checker itself is imported in the thread, one module at a time
(:data:`STEPS`), and the thread pauses between those imports and between its reads (:mod:`keepalive._path._pace`),
so an event loop in the same process waits at most one short step for the GIL, never a whole switch interval.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
from typing import TYPE_CHECKING, Final

from keepalive._log import get_logger

if TYPE_CHECKING:
    from keepalive._policy import Policy
    from keepalive.checker._model import Finding

__all__ = ["STEPS", "check_policy", "detected_path_timeout", "reset", "run_once", "wait"]

log = get_logger("check")

#: Findings the core already logs itself (keepalive.policy): not logged twice.
_LOGGED_BY_THE_CORE: Final = frozenset({"invalid-policy-environment"})
#: Node settings and history: true, but nothing this process can change. Logged at INFO.
_NODE_CODES: Final = frozenset(
    {
        "kernel-keepalive-exceeds-path-timeout",  # only for sockets without their own idle: not the wrapped ones
        "conntrack-table-nearly-full",
        "conntrack-invalid-packets",  # without a sample: counted since boot
        "conntrack-invalid-packets-liberal",
        "conntrack-drops",  # without a sample: counted since boot
        "conntrack-insert-failed",
        "conntrack-loose-off",
        "conntrack-timeout-zero",
        "close-wait-shorter-than-idle",
        "kube-proxy-sysctl-mismatch",
        "kube-proxy-config-refused",
        "kube-proxy-field-unreadable",
        "non-initial-namespace",
        "source-unreadable",
        "conntrack-not-loaded",
    }
)

#: Every module the runtime check imports, leaves first, so each import runs only its own module's body (a
#: millisecond or so) between two pauses. tests/test_runtime_stall.py holds the list to what the check imports.
STEPS: Final = (
    "keepalive._path._pace",
    "keepalive._path._source",
    "keepalive._path._text",
    "keepalive._path._parse",
    "keepalive._path._finding",
    "keepalive._path._middleboxes",
    "keepalive._path._proc",
    "keepalive._path._model",
    "keepalive._path._kubeflags",
    "keepalive._path._kubeconfig",
    "keepalive._path._kubemanifest",
    "keepalive._path._kubeproxy",
    "keepalive.checker._model",
    "keepalive.checker._findings",
    "keepalive.checker._report",
    "keepalive.checker._check",
)

_lock = threading.Lock()
_policies: set[tuple[int, int, int, float | None]] = set()
_logged: set[tuple[str, str]] = set()
_threads: list[threading.Thread] = []


def _reset_in_child() -> None:
    global _lock
    _lock = threading.Lock()
    _threads.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_in_child)


def detected_path_timeout() -> tuple[float, bool] | None:
    """The smallest path idle timeout visible from cheap local reads, and whether the user named the path.

    Named (``True``): ``KEEPALIVE_PATH_TIMEOUT``, ``KEEPALIVE_MIDDLEBOX`` presets. Node (``False``):
    ``nf_conntrack_tcp_timeout_established`` under ``KEEPALIVE_PROC_ROOT`` (default ``/proc``; in a non-initial
    network namespace only when it differs from the kernel default 432000 s), the kube-proxy configuration named by
    ``KEEPALIVE_KUBE_PROXY_CONFIG``. None when nothing is known. Never raises and opens no network connection.
    """
    from keepalive._policy import _detected_path_timeout

    return _detected_path_timeout()


def _level(finding: Finding) -> int | None:
    severity = finding.severity.value
    if severity in {"ok", "info"} or finding.code in _LOGGED_BY_THE_CORE:
        return None
    if finding.code in _NODE_CODES:
        return logging.INFO
    return logging.ERROR if severity == "error" else logging.WARNING


def _log(finding: Finding, level: int) -> None:
    extra: dict[str, object] = {
        "keepalive_code": finding.code,
        "keepalive_severity": finding.severity.value,
        "keepalive_fix": finding.fix,
    }
    extra.update({f"keepalive_{name}": value for name, value in finding.data.items()})
    log.log(level, "keepalive check [%s]: %s Fix: %s", finding.code, finding.message, finding.fix, extra=extra)


def check_policy(policy: Policy | None = None) -> None:
    """Judge ``policy`` (default: the process's) against the path model now, in this thread; log what is new."""
    from keepalive._path._pace import pause
    from keepalive._policy import explain_default_policy
    from keepalive.checker._check import run_check

    origin = "given by the caller"
    try:
        default, why = explain_default_policy()
    except Exception:
        default, why = None, ""
    if policy is None or policy == default:
        policy, origin = default, why or origin
    report = run_check(policy=policy, policy_origin=origin)
    pause()
    for finding in report.findings:
        level = _level(finding)
        if level is None:
            continue
        key = (finding.code, finding.message)
        with _lock:
            if key in _logged:
                continue
            _logged.add(key)
        try:
            _log(finding, level)
        except Exception:
            log.debug("could not log finding %s", finding.code, exc_info=True)


def _import_in_steps() -> None:
    """Import :data:`STEPS` one module at a time, pausing after each (in a paced thread)."""
    from keepalive._path._pace import pause

    for name in STEPS:
        if name not in sys.modules:
            pause()
            importlib.import_module(name)
    pause()


def _check_quietly(policy: Policy | None) -> None:
    try:
        from keepalive._path._pace import set_paced

        set_paced(True)  # this thread only: pause() gives the GIL back between steps
        _import_in_steps()
        check_policy(policy)
    except Exception:
        # The check is advice; it must never break the process that triggered it.
        log.debug("runtime check failed", exc_info=True)


def run_once(policy: Policy | None = None) -> None:
    """On the first use of each distinct policy, start judging it against the path model in a daemon thread.

    Returns at once. Each problem is logged once per process on logger ``keepalive.check`` (the numbers in the
    message and in ``extra``: ``keepalive_code``, ``keepalive_severity``, ``keepalive_fix`` and
    ``keepalive_<name>`` for each number). Never raises.
    """
    key = None if policy is None else (policy.idle, policy.interval, policy.count, policy.user_timeout)
    with _lock:
        if key is not None and key in _policies:
            return
        if key is not None:
            _policies.add(key)
        thread = threading.Thread(target=_check_quietly, args=(policy,), name="keepalive-check", daemon=True)
        _threads.append(thread)
    try:
        thread.start()
    except RuntimeError:  # interpreter shutting down: no new threads
        log.debug("runtime check not started", exc_info=True)


def wait(timeout: float | None = None) -> bool:
    """Wait for the runtime checks started so far (for tests); True when all have finished."""
    with _lock:
        threads = list(_threads)
    for thread in threads:
        if thread.is_alive() or thread.ident is not None:
            thread.join(timeout)
    with _lock:
        _threads[:] = [t for t in _threads if t.is_alive()]
        return not _threads


def reset() -> None:
    """Forget which policies were judged and which problems were logged (for tests)."""
    wait(10)
    with _lock:
        _policies.clear()
        _logged.clear()
