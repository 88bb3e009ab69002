"""The checker's side of the runtime contract (CONTRIBUTING.md).

* :func:`detected_path_timeout` -- the path model's smallest path timeout from cheap local reads, and whether the
  user named the path. Never raises, never touches the network.
* :func:`run_once` -- for ``keepalive._runtime.resolve()``: the first time the process uses a policy, judge that
  policy against the path model in a daemon thread (never on the caller's event loop), and log each distinct
  problem once per process on logger ``keepalive.check``.

Levels: WARNING (ERROR for an idle at or past the path timeout) only for what this process can act on -- its
policy does not fit the path, its own ``KEEPALIVE_*`` settings are wrong, or conntrack counts invalid packets or
drops *now*. INFO for history (counters since boot) and for node settings its wrapped sockets do not use. "Now":
after the first check of the process, the same thread samples the conntrack counters for
``KEEPALIVE_CHECK_SAMPLE`` seconds (default 10; ``0`` turns the sample off) and warns when they rose meanwhile.
This module imports nothing heavy: the checker itself is imported in the thread, one module at a time
(:data:`STEPS`), and the thread pauses between those imports and between its reads (:mod:`keepalive._path._pace`),
so an event loop in the same process waits at most one short step for the GIL, never a whole switch interval.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading

from keepalive._log import get_logger

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

    from keepalive._policy import Policy
    from keepalive.checker._model import Finding

__all__ = ["ENV_SAMPLE", "STEPS", "check_policy", "detected_path_timeout", "reset", "run_once", "wait"]

log = get_logger("check")

#: logging's levels, without importing logging on the caller's thread (a trio program may not have it loaded).
_INFO: Final = 20
_WARNING: Final = 30
_ERROR: Final = 40

#: Seconds the runtime check samples the conntrack counters after its first check (0 = no sample).
ENV_SAMPLE: Final = "KEEPALIVE_CHECK_SAMPLE"
DEFAULT_SAMPLE: Final = 10.0
#: Counter findings that are a WARNING when the counter rose during the sample (data names the rate), else INFO.
_RISING: Final = {"conntrack-invalid-packets": "invalid_per_second", "conntrack-drops": "per_second"}

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
#: ``copy`` and ``dataclasses`` are the standard-library modules an asyncio or trio program has not loaded yet
#: (everything they import is loaded by the runtime); as steps of their own they do not lengthen a keepalive step.
STEPS: Final = (
    "keepalive._path._pace",
    "keepalive._path._source",
    "keepalive._path._text",
    "copy",
    "dataclasses",
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
#: The first-check phase of each thread started: set when that check has logged what it found.
_checks: list[threading.Event] = []
#: The threads still sampling (:func:`wait` with ``sample=True``).
_samplers: list[threading.Thread] = []
#: Whether this process has started its one conntrack sample.
_sampled = False
#: Bumped by :func:`reset`: a sample started before a reset logs nothing after it (tests).
_generation = 0


def _reset_in_child() -> None:
    global _lock, _sampled
    _lock = threading.Lock()
    _checks.clear()
    _samplers.clear()
    _sampled = False  # the child's counters are worth a sample of their own


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


def _rising(finding: Finding) -> bool:
    """A counter finding measured over a sample that saw the counter rise."""
    rate = finding.data.get(_RISING.get(finding.code, ""))
    return isinstance(rate, int | float) and rate > 0


def _level(finding: Finding) -> int | None:
    severity = finding.severity.value
    if severity in {"ok", "info"} or finding.code in _LOGGED_BY_THE_CORE:
        return None
    if _rising(finding):
        return _WARNING
    if finding.code in _NODE_CODES:
        return _INFO
    return _ERROR if severity == "error" else _WARNING


def _log(finding: Finding, level: int) -> None:
    extra: dict[str, object] = {
        "keepalive_code": finding.code,
        "keepalive_severity": finding.severity.value,
        "keepalive_fix": finding.fix,
    }
    extra.update({f"keepalive_{name}": value for name, value in finding.data.items()})
    log.log(level, "keepalive check [%s]: %s Fix: %s", finding.code, finding.message, finding.fix, extra=extra)


def _policy_and_origin(policy: Policy | None) -> tuple[Policy | None, str]:
    from keepalive._policy import explain_default_policy

    origin = "given by the caller"
    try:
        default, why = explain_default_policy()
    except Exception:
        default, why = None, ""
    if policy is None or policy == default:
        return default, why or origin
    return policy, origin


def _log_new(findings: list[Finding], *, only_rising: bool = False, generation: int | None = None) -> None:
    for finding in findings:
        if only_rising and not _rising(finding):
            continue
        level = _level(finding)
        if level is None:
            continue
        key = (finding.code, finding.message)
        with _lock:
            if key in _logged or (generation is not None and generation != _generation):
                continue
            _logged.add(key)
        try:
            _log(finding, level)
        except Exception:
            log.debug("could not log finding %s", finding.code, exc_info=True)


def check_policy(policy: Policy | None = None) -> tuple[Policy | None, str]:
    """Judge ``policy`` (default: the process's) against the path model now, in this thread; log what is new.
    Returns the policy judged and where it came from."""
    from keepalive._path._pace import pause
    from keepalive.checker._check import run_check

    policy, origin = _policy_and_origin(policy)
    report = run_check(policy=policy, policy_origin=origin)
    pause()
    _log_new(list(report.findings))
    return policy, origin


def _sample_seconds() -> float:
    text = os.environ.get(ENV_SAMPLE, "").strip()
    if not text:
        return DEFAULT_SAMPLE
    from keepalive._words import is_off

    if is_off(text):
        return 0.0
    try:
        seconds = float(text.removesuffix("s"))
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 3600:
        log.debug("ignoring %s=%r: not 0..3600 seconds; sampling %g s", ENV_SAMPLE, text, DEFAULT_SAMPLE)
        return DEFAULT_SAMPLE
    return seconds


def _sample(policy: Policy | None, origin: str, seconds: float, generation: int) -> None:
    """Sample the conntrack counters for ``seconds`` and warn about those that rose (once per process)."""
    from keepalive.checker._check import run_check

    report = run_check(policy=policy, policy_origin=origin, sample=seconds)
    _log_new(list(report.findings), only_rising=True, generation=generation)


def _import_in_steps() -> None:
    """Import :data:`STEPS` one module at a time, pausing after each (in a paced thread)."""
    from keepalive._path._pace import pause

    for name in STEPS:
        if name not in sys.modules:
            pause()
            importlib.import_module(name)
    pause()


def _check_quietly(policy: Policy | None, done: threading.Event) -> None:
    global _sampled
    origin: str | None = None
    try:
        from keepalive._path._pace import set_paced

        set_paced(True)  # this thread only: pause() gives the GIL back between steps
        _import_in_steps()
        policy, origin = check_policy(policy)
    except Exception:
        # The check is advice; it must never break the process that triggered it.
        log.debug("runtime check failed", exc_info=True)
    finally:
        with _lock:  # registered as the sampler before the check counts as done, so wait(sample=True) sees it
            first = origin is not None and not _sampled
            if first:
                _sampled = True
                _samplers.append(threading.current_thread())
            generation = _generation
        done.set()
    if not first or origin is None:
        return
    try:
        seconds = _sample_seconds()
        if seconds > 0:
            _sample(policy, origin, seconds, generation)
    except Exception:
        log.debug("runtime conntrack sample failed", exc_info=True)


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
        done = threading.Event()
        thread = threading.Thread(target=_check_quietly, args=(policy, done), name="keepalive-check", daemon=True)
        _checks.append(done)
    try:
        thread.start()
    except RuntimeError:  # interpreter shutting down: no new threads
        log.debug("runtime check not started", exc_info=True)


def wait(timeout: float | None = None, *, sample: bool = False) -> bool:
    """Wait for the runtime checks started so far (for tests); True when all have finished.

    ``sample=True`` waits for the process's conntrack sample too (``KEEPALIVE_CHECK_SAMPLE`` seconds).
    """
    with _lock:
        checks = list(_checks)
    finished = all(done.wait(timeout) for done in checks)
    with _lock:
        samplers = list(_samplers) if sample else []
    for thread in samplers:
        thread.join(timeout)
    with _lock:
        _checks[:] = [done for done in _checks if not done.is_set()]
        _samplers[:] = [thread for thread in _samplers if thread.is_alive()]
        return finished and not _checks and not (sample and _samplers)


def reset() -> None:
    """Forget which policies were judged and which problems were logged (for tests); a sample still running
    logs nothing afterwards, and the next check samples again."""
    global _generation, _sampled
    wait(10)
    with _lock:
        _policies.clear()
        _logged.clear()
        _samplers.clear()  # a sample still running logs nothing now (the generation changed)
        _generation += 1
        _sampled = False
