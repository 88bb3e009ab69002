""":func:`check`: a view of the path model (:mod:`keepalive._path._model`) -- gather the evidence, read the
conntrack statistics, evaluate the rules, return a :class:`Report`."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from keepalive._exceptions import InvalidPolicy
from keepalive._path._model import ENV_MIDDLEBOX, PathModel, gather, parse_seconds
from keepalive._path._pace import pause
from keepalive._path._parse import NfStat
from keepalive._path._proc import nf_stat_path, read_nf_stat
from keepalive._policy import BUILTIN_POLICY, Policy, explain_default_policy, recommended_policy
from keepalive.checker._findings import Facts, evaluate
from keepalive.checker._model import Finding, Severity, Source
from keepalive.checker._report import Report

__all__ = ["ENV_MIDDLEBOX", "check", "parse_path_timeout", "run_check"]

#: The conntrack counters reported as sources (all are kept in ``Report.conntrack``).
REPORTED_COUNTERS: Final = ("invalid", "drop", "early_drop", "insert_failed")
MAX_SAMPLE: Final = 3600.0

#: ``KEEPALIVE_PATH_TIMEOUT`` / ``--path-timeout``: positive seconds (``350`` or ``350s``).
parse_path_timeout = parse_seconds


@dataclass(frozen=True)
class _Stats:
    totals: dict[str, int] | None
    reason: str | None
    rates: dict[str, float] | None
    sources: list[Source]


def _stat_sources(
    path: str, stat: NfStat | None, reason: str | None, rates: Mapping[str, float] | None, seconds: float
) -> list[Source]:
    if stat is None:
        return [Source("conntrack statistics", None, path, reason=reason)]
    totals = stat.totals()
    sources = [
        Source(f"conntrack {name}", totals[name], path, "packets") for name in REPORTED_COUNTERS if name in totals
    ]
    missing = [name for name in REPORTED_COUNTERS if name not in totals]
    sources.extend(Source(f"conntrack {name}", None, path, reason="no such column in this kernel") for name in missing)
    if rates is not None:
        sources.extend(
            Source(f"conntrack {name} rate", round(rates[name], 6), f"{path}, {seconds:g} s sample", "packets/s")
            for name in REPORTED_COUNTERS
            if name in rates
        )
    return sources


def _read_stats(root: str, sample: float) -> _Stats:
    """``net/stat/nf_conntrack`` once, or twice ``sample`` seconds apart (then with per-second rates)."""
    stat, reason = read_nf_stat(root)
    rates: dict[str, float] | None = None
    if stat is not None and sample > 0:
        started = time.monotonic()
        time.sleep(sample)
        later, later_reason = read_nf_stat(root)
        elapsed = time.monotonic() - started
        if later is not None:
            rates = stat.rates(later, elapsed)
            stat = later
        else:
            reason = f"second reading failed: {later_reason}"
    sources = _stat_sources(str(nf_stat_path(root)), stat, reason, rates, sample)
    return _Stats(stat.totals() if stat is not None else None, reason, rates, sources)


def _policy_under_check(policy: Policy | None, origin: str) -> tuple[Policy, str, list[Finding]]:
    """The policy to check: the one given, else the process's default (a broken environment is a finding)."""
    if policy is not None:
        if not isinstance(policy, Policy):
            raise TypeError(f"policy must be a keepalive.Policy or None, got {type(policy).__name__}")
        return policy, origin, []
    try:
        policy, origin = explain_default_policy()
    except InvalidPolicy as exc:
        return (
            BUILTIN_POLICY,
            "built-in default (the KEEPALIVE_* environment is invalid)",
            [
                Finding(
                    Severity.ERROR,
                    "invalid-policy-environment",
                    f"The KEEPALIVE_* environment is invalid: {exc}. Connections fall back to the built-in "
                    f"default {BUILTIN_POLICY}.",
                    "Fix or unset the variable named above (keepalive policy --help shows the format).",
                    {"error": str(exc)},
                )
            ],
        )
    return policy, origin, []


def _report(facts: Facts, model: PathModel, stats: _Stats) -> Report:
    return Report(
        findings=tuple(evaluate(facts)),
        sources=(*model.sources, *stats.sources),
        path_timeout=facts.path_timeout,
        path_timeout_origin=facts.path_origin,
        policy=facts.policy,
        policy_origin=facts.policy_origin,
        recommended_policy=facts.recommended,
        recommended_origin=facts.recommended_origin,
        proc_root=model.proc_root,
        namespace=model.namespace.state,
        conntrack=stats.totals or {},
        conntrack_rates=stats.rates,
        sample_seconds=facts.sample_seconds,
        generated_at=time.time(),
        evidence=model.evidence,
    )


def check(
    *,
    policy: Policy | None = None,
    proc_root: str | os.PathLike[str] | None = None,
    middleboxes: str | Iterable[str] | None = None,
    path_timeout: float | None = None,
    kube_proxy_config: str | os.PathLike[str] | None = None,
    kube_proxy_url: str | None = None,
    sample: float = 0.0,
    environ: Mapping[str, str] | None = None,
) -> Report:
    """Check this node's idle timeouts against a keepalive policy, and say what to change.

    Only reads: sysctls and ``net/stat/nf_conntrack`` under ``proc_root``, a kube-proxy configuration file,
    and -- only when given -- kube-proxy's ``/configz`` on loopback. Unreadable or malformed input is reported
    (the value unknown, with the reason), never raised.

    Args:
        policy: the policy to check; default: the process's :func:`keepalive.default_policy` (env vars apply).
        proc_root: where proc is mounted (``/host/proc`` in a pod); default ``KEEPALIVE_PROC_ROOT`` or ``/proc``.
        middleboxes: preset names (:data:`MIDDLEBOXES`), a comma-separated string or an iterable; default
            ``KEEPALIVE_MIDDLEBOX``.
        path_timeout: another idle timeout on the path in seconds; default ``KEEPALIVE_PATH_TIMEOUT``.
        kube_proxy_config: a KubeProxyConfiguration file (JSON; YAML with ``tcp-keepalive[yaml]``); default
            ``KEEPALIVE_KUBE_PROXY_CONFIG``. An empty string is refused.
        kube_proxy_url: kube-proxy's ``/configz`` URL; loopback only (``http://127.0.0.1:10249/configz``).
        sample: seconds to watch the conntrack counters (read twice) and report rates; 0 = one read.
        environ: where ``KEEPALIVE_PROC_ROOT``, ``KEEPALIVE_MIDDLEBOX``, ``KEEPALIVE_PATH_TIMEOUT`` and
            ``KEEPALIVE_KUBE_PROXY_CONFIG`` are read (default ``os.environ``). The default policy always follows
            the process's own environment, like :func:`keepalive.default_policy`.

    Raises:
        ValueError: an argument is invalid: an unknown middlebox name, a non-loopback ``kube_proxy_url``,
            a path timeout or sample that is not a positive finite number, a ``proc_root`` that is missing or not a
            proc tree, an empty ``kube_proxy_config``. (The environment's values never raise: they are findings.)
    """
    return run_check(
        policy=policy,
        proc_root=proc_root,
        middleboxes=middleboxes,
        path_timeout=path_timeout,
        kube_proxy_config=kube_proxy_config,
        kube_proxy_url=kube_proxy_url,
        sample=sample,
        environ=environ,
    )


def run_check(
    *,
    policy: Policy | None = None,
    policy_origin: str = "given",
    proc_root: str | os.PathLike[str] | None = None,
    middleboxes: str | Iterable[str] | None = None,
    middlebox_origin: str = "argument",
    path_timeout: float | None = None,
    path_timeout_origin: str = "argument",
    kube_proxy_config: str | os.PathLike[str] | None = None,
    kube_proxy_url: str | None = None,
    sample: float = 0.0,
    environ: Mapping[str, str] | None = None,
) -> Report:
    """:func:`check` with the origins of its arguments named (the CLI passes ``--policy`` etc.)."""
    if isinstance(sample, bool) or not isinstance(sample, int | float) or not 0 <= sample <= MAX_SAMPLE:
        raise ValueError(f"sample must be 0..{MAX_SAMPLE:g} seconds, got {sample!r}")
    if policy is not None and not isinstance(policy, Policy):
        raise TypeError(f"policy must be a keepalive.Policy or None, got {type(policy).__name__}")
    model = gather(
        environ=environ,
        proc_root=proc_root,
        middleboxes=middleboxes,
        middlebox_origin=middlebox_origin,
        path_timeout=path_timeout,
        path_timeout_origin=path_timeout_origin,
        kube_proxy_config=kube_proxy_config,
        kube_proxy_url=kube_proxy_url,
    )
    pause()  # a paced thread (the runtime check) lets an event loop in this process run between the steps
    checked, checked_origin, policy_findings = _policy_under_check(policy, policy_origin)
    stats = _read_stats(model.proc_root, float(sample))
    pause()
    recommended, recommended_origin = recommended_policy(model.path_timeout, model.named, model.path_label)
    facts = Facts(
        policy=checked,
        policy_origin=checked_origin,
        recommended=recommended,
        recommended_origin=recommended_origin,
        path_timeout=model.path_timeout,
        path_origin=model.path_label,
        sysctls=dict(model.sysctls),
        namespace=model.namespace,
        conntrack_totals=stats.totals,
        conntrack_reason=stats.reason,
        conntrack_rates=stats.rates,
        sample_seconds=float(sample),
        kube_proxy=model.kube_proxy,
        unreadable=[source for source in model.sysctls.values() if not source.known],
        input_findings=[*policy_findings, *model.findings],
    )
    pause()
    return _report(facts, model, stats)
