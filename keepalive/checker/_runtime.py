"""The checker's side of the runtime contract (CONTRIBUTING.md).

* :func:`detected_path_timeout` -- for :func:`keepalive.default_policy`: the smallest path timeout from cheap
  local reads, and whether it was given explicitly. Never raises, never touches the network.
* :func:`run_once` -- for ``keepalive._runtime.resolve()``: the first time the process applies keepalive, run the
  check once and log each warning and error once on logger ``keepalive.check``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from typing import Final

from keepalive._log import get_logger
from keepalive._path._kubeproxy import ENV_KUBE_PROXY_CONFIG, read_kube_proxy_file
from keepalive._path._middleboxes import MIDDLEBOXES, parse_middleboxes
from keepalive._path._proc import COUNT, ESTABLISHED, default_proc_root, detect_namespace, read_sysctl
from keepalive._policy import ENV_PATH_TIMEOUT, Policy
from keepalive.checker._check import ENV_MIDDLEBOX, conntrack_limits_path, parse_path_timeout, run_check
from keepalive.checker._model import Severity

__all__ = ["detected_path_timeout", "reset", "run_once"]

log = get_logger("check")

_LEVELS: Final = {Severity.WARNING: logging.WARNING, Severity.ERROR: logging.ERROR}

#: Findings the core already logs itself (keepalive.policy): not logged twice.
_LOGGED_BY_THE_CORE: Final = frozenset({"invalid-policy-environment"})

_done = False
_lock = threading.Lock()


def _detect(env: Mapping[str, str]) -> tuple[float, bool] | None:
    candidates: list[tuple[float, bool]] = []
    raw = env.get(ENV_PATH_TIMEOUT, "").strip()
    if raw:
        value, _ = parse_path_timeout(raw)
        if value is not None:
            candidates.append((value, True))
    names, _ = parse_middleboxes(env.get(ENV_MIDDLEBOX, ""))
    candidates.extend((float(MIDDLEBOXES[name]), True) for name in names)
    config = env.get(ENV_KUBE_PROXY_CONFIG, "").strip()
    if config:
        proxy, _ = read_kube_proxy_file(config)
        if proxy is not None:
            if proxy.tcp_established_timeout:
                candidates.append((proxy.tcp_established_timeout, True))
            if proxy.ipvs_timeout:
                candidates.append((proxy.ipvs_timeout, True))
    root = default_proc_root(dict(env))
    established = read_sysctl(root, ESTABLISHED).value
    if isinstance(established, int) and established > 0:
        count = read_sysctl(root, COUNT).value
        limits, _ = conntrack_limits_path(detect_namespace(root), count if isinstance(count, int) else None)
        if limits:
            candidates.append((float(established), False))
    if not candidates:
        return None
    return min(candidates, key=lambda candidate: (candidate[0], not candidate[1]))


def detected_path_timeout() -> tuple[float, bool] | None:
    """The smallest path idle timeout visible from cheap local reads, and whether it was given explicitly.

    Explicit (``True``): ``KEEPALIVE_PATH_TIMEOUT``, ``KEEPALIVE_MIDDLEBOX`` presets, the kube-proxy configuration
    file named by ``KEEPALIVE_KUBE_PROXY_CONFIG``. Found (``False``): ``nf_conntrack_tcp_timeout_established``
    under ``KEEPALIVE_PROC_ROOT`` (default ``/proc``) -- not in a pod's network namespace without conntrack
    entries, whose value is the kernel default rather than the node's. None when nothing is known.
    Never raises and opens no network connection.
    """
    try:
        return _detect(os.environ)
    except Exception:
        log.debug("path timeout detection failed", exc_info=True)
        return None


def run_once(policy: Policy | None = None) -> None:
    """Run the check once per process (no network, no sampling) and log each warning and error once.

    Each finding is logged on logger ``keepalive.check`` at WARNING or ERROR, with the numbers in the message
    and in ``extra`` (``keepalive_code``, ``keepalive_severity``, ``keepalive_fix`` and ``keepalive_<name>`` for
    each number). Later calls do nothing. Never raises.
    """
    global _done
    with _lock:
        if _done:
            return
        _done = True
    try:
        report = run_check(policy=policy, policy_origin="given")
    except Exception:
        log.debug("runtime check failed", exc_info=True)
        return
    for finding in report.findings:
        level = _LEVELS.get(finding.severity)
        if level is None or finding.code in _LOGGED_BY_THE_CORE:
            continue
        extra: dict[str, object] = {
            "keepalive_code": finding.code,
            "keepalive_severity": finding.severity.value,
            "keepalive_fix": finding.fix,
        }
        extra.update({f"keepalive_{name}": value for name, value in finding.data.items()})
        try:
            log.log(level, "keepalive check [%s]: %s Fix: %s", finding.code, finding.message, finding.fix, extra=extra)
        except Exception:
            log.debug("could not log finding %s", finding.code, exc_info=True)


def reset() -> None:
    """Let :func:`run_once` run again (for tests)."""
    global _done
    with _lock:
        _done = False
