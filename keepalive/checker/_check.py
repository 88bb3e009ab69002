""":func:`check`: gather the sources, derive the path timeout, evaluate the rules, return a :class:`Report`."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from keepalive._exceptions import InvalidPolicy
from keepalive._path._kubeproxy import (
    ENV_KUBE_PROXY_CONFIG,
    KubeProxy,
    fetch_configz,
    loopback_url,
    read_kube_proxy_file,
)
from keepalive._path._middleboxes import MIDDLEBOX_NOTES, MIDDLEBOXES, parse_middleboxes
from keepalive._path._parse import NfStat
from keepalive._path._proc import (
    COUNT,
    ESTABLISHED,
    NAMESPACE_OTHER,
    SYSCTLS,
    Namespace,
    default_proc_root,
    detect_namespace,
    nf_stat_path,
    read_nf_stat,
    read_sysctl,
)
from keepalive._policy import BUILTIN_POLICY, ENV_PATH_TIMEOUT, Policy, explain_default_policy
from keepalive.checker._findings import Facts, evaluate
from keepalive.checker._model import Finding, Severity, Source
from keepalive.checker._report import Report

__all__ = ["ENV_MIDDLEBOX", "check", "conntrack_limits_path", "parse_path_timeout"]

ENV_MIDDLEBOX: Final = "KEEPALIVE_MIDDLEBOX"
#: The conntrack counters reported as sources (all are kept in ``Report.conntrack``).
REPORTED_COUNTERS: Final = ("invalid", "drop", "early_drop", "insert_failed")
MAX_SAMPLE: Final = 3600.0


def parse_path_timeout(text: str) -> tuple[float | None, str | None]:
    """``KEEPALIVE_PATH_TIMEOUT`` / ``--path-timeout``: positive seconds (``350`` or ``350s``)."""
    value = text.strip().lower()
    if value.endswith("s") and not value.endswith("ms"):
        value = value[:-1]
    try:
        number = float(value)
    except ValueError:
        return None, f"expected a number of seconds, got {text.strip()[:40]!r}"
    if not math.isfinite(number) or number <= 0:
        return None, f"expected a positive number of seconds, got {text.strip()[:40]!r}"
    return number, None


def conntrack_limits_path(namespace: Namespace, entries: int | None) -> tuple[bool, str | None]:
    """Whether the conntrack established timeout read here is on this process's path, and a note why not.

    In the initial namespace it is the node's. In a pod's namespace it is the pod's own copy (kernel defaults),
    which matters only when conntrack is active there (entries > 0).
    """
    if namespace.state != NAMESPACE_OTHER:
        return True, None
    if entries:
        return True, (
            f"read in a non-initial network namespace where conntrack is active ({entries} entries): it limits "
            "this namespace's connections; the node's own value is not visible from here"
        )
    return False, (
        "read in a non-initial network namespace with no conntrack entries: this is the namespace's own "
        "(kernel default) value, not the node's, so it is not used as the path timeout"
    )


@dataclass
class _Candidate:
    timeout: float
    label: str
    explicit: bool


def _whole(value: float | None) -> float | int | None:
    """350.0 -> 350 (for display); other values unchanged."""
    if value is not None and float(value).is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _kube_proxy_sources(proxy: KubeProxy) -> tuple[list[Source], list[_Candidate]]:
    sources: list[Source] = []
    candidates: list[_Candidate] = []
    origin = proxy.origin

    def note_for(field: str) -> str | None:
        return "absent from the configuration: kube-proxy's default" if field in proxy.defaulted else None

    sources.append(
        Source(
            "kube-proxy mode",
            proxy.effective_mode,
            origin,
            note=None if proxy.mode else "not set: kube-proxy's default on Linux, iptables",
        )
    )
    established = proxy.tcp_established_timeout
    limits = bool(established)
    sources.append(
        Source(
            "kube-proxy conntrack.tcpEstablishedTimeout",
            _whole(established),
            origin,
            "s",
            reason=None if established is not None else "not given",
            note="0: kube-proxy leaves net.netfilter.nf_conntrack_tcp_timeout_established as it is"
            if established == 0
            else note_for("tcpEstablishedTimeout"),
            limits_path=limits,
        )
    )
    if established:
        candidates.append(_Candidate(established, f"kube-proxy conntrack.tcpEstablishedTimeout in {origin}", True))
    close_wait = proxy.tcp_close_wait_timeout
    sources.append(
        Source(
            "kube-proxy conntrack.tcpCloseWaitTimeout",
            _whole(close_wait),
            origin,
            "s",
            reason=None if close_wait is not None else "not given",
            note=note_for("tcpCloseWaitTimeout"),
        )
    )
    for name, value, unit in (
        ("kube-proxy conntrack.tcpBeLiberal", proxy.tcp_be_liberal, ""),
        ("kube-proxy conntrack.maxPerCore", proxy.max_per_core, "entries"),
        ("kube-proxy conntrack.min", proxy.min, "entries"),
    ):
        sources.append(Source(name, value, origin, unit, reason=None if value is not None else "not given"))
    ipvs = proxy.ipvs_timeout
    if ipvs is not None:
        note = None if proxy.ipvs_tcp_timeout else "0 or not set: the kernel's IPVS TCP timeout, 900 s"
        sources.append(Source("kube-proxy ipvs.tcpTimeout", _whole(ipvs), origin, "s", note=note, limits_path=True))
        candidates.append(_Candidate(ipvs, f"kube-proxy ipvs.tcpTimeout (IPVS mode) in {origin}", True))
    return sources, candidates


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
            ``KEEPALIVE_KUBE_PROXY_CONFIG``.
        kube_proxy_url: kube-proxy's ``/configz`` URL; loopback only (``http://127.0.0.1:10249/configz``).
        sample: seconds to watch the conntrack counters (read twice) and report rates; 0 = one read.
        environ: where ``KEEPALIVE_PROC_ROOT``, ``KEEPALIVE_MIDDLEBOX``, ``KEEPALIVE_PATH_TIMEOUT`` and
            ``KEEPALIVE_KUBE_PROXY_CONFIG`` are read (default ``os.environ``). The default policy always follows
            the process's own environment, like :func:`keepalive.default_policy`.

    Raises:
        ValueError: an argument is invalid: an unknown middlebox name, a non-loopback ``kube_proxy_url``,
            a path timeout or sample that is not a positive finite number. (The environment's values never raise.)
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
    env: Mapping[str, str] = os.environ if environ is None else environ
    if isinstance(sample, bool) or not isinstance(sample, int | float) or not 0 <= sample <= MAX_SAMPLE:
        raise ValueError(f"sample must be 0..{MAX_SAMPLE:g} seconds, got {sample!r}")
    if kube_proxy_url is not None:
        loopback_url(kube_proxy_url)  # raises NotLoopback (a ValueError) before anything is read
    root = os.fspath(proc_root) if proc_root is not None else default_proc_root(dict(env))
    inputs: list[Finding] = []
    sources: list[Source] = []
    candidates: list[_Candidate] = []

    # The policy checked.
    if policy is None:
        try:
            policy, policy_origin = explain_default_policy()
        except InvalidPolicy as exc:
            policy, policy_origin = BUILTIN_POLICY, "built-in default (the KEEPALIVE_* environment is invalid)"
            inputs.append(
                Finding(
                    Severity.ERROR,
                    "invalid-policy-environment",
                    f"The KEEPALIVE_* environment is invalid: {exc}. Connections fall back to the built-in "
                    f"default {BUILTIN_POLICY}.",
                    "Fix or unset the variable named above (keepalive policy --help shows the format).",
                    {"error": str(exc)},
                )
            )
    elif not isinstance(policy, Policy):
        raise TypeError(f"policy must be a keepalive.Policy or None, got {type(policy).__name__}")

    # Explicit path timeouts: middleboxes and --path-timeout.
    if middleboxes is None:
        text = env.get(ENV_MIDDLEBOX, "")
        names, unknown = parse_middleboxes(text)
        box_origin = ENV_MIDDLEBOX
        for name in unknown:
            inputs.append(
                Finding(
                    Severity.WARNING,
                    "unknown-middlebox",
                    f"{ENV_MIDDLEBOX} names {name!r}, which is not a known middlebox preset; it was ignored.",
                    f"Use one of: {', '.join(MIDDLEBOXES)}; or give its idle timeout with {ENV_PATH_TIMEOUT}.",
                    {"name": name},
                )
            )
    else:
        text = middleboxes if isinstance(middleboxes, str) else ",".join(middleboxes)
        names, unknown = parse_middleboxes(text)
        box_origin = middlebox_origin
        if unknown:
            raise ValueError(
                f"unknown middlebox {', '.join(map(repr, unknown))}; known: {', '.join(MIDDLEBOXES)} "
                "(use path_timeout / --path-timeout for anything else)"
            )
    for name in names:
        timeout = float(MIDDLEBOXES[name])
        sources.append(
            Source(
                f"middlebox {name}", MIDDLEBOXES[name], box_origin, "s", note=MIDDLEBOX_NOTES[name], limits_path=True
            )
        )
        candidates.append(_Candidate(timeout, f"middlebox {name} from {box_origin}", True))

    if path_timeout is None:
        raw = env.get(ENV_PATH_TIMEOUT, "").strip()
        if raw:
            value, reason = parse_path_timeout(raw)
            if value is None:
                inputs.append(
                    Finding(
                        Severity.WARNING,
                        "invalid-path-timeout",
                        f"{ENV_PATH_TIMEOUT}={raw[:40]!r} is not usable: {reason}; it was ignored.",
                        f"Set {ENV_PATH_TIMEOUT} to the path's idle timeout in seconds, e.g. 350.",
                        {"value": raw[:40]},
                    )
                )
            else:
                sources.append(Source("path timeout", value, ENV_PATH_TIMEOUT, "s", limits_path=True))
                candidates.append(_Candidate(value, ENV_PATH_TIMEOUT, True))
    else:
        if (
            isinstance(path_timeout, bool)
            or not isinstance(path_timeout, int | float)
            or not (math.isfinite(path_timeout) and path_timeout > 0)
        ):
            raise ValueError(f"path_timeout must be a positive number of seconds, got {path_timeout!r}")
        sources.append(Source("path timeout", path_timeout, path_timeout_origin, "s", limits_path=True))
        candidates.append(_Candidate(float(path_timeout), f"{path_timeout_origin}", True))

    # The node: sysctls, namespace, conntrack statistics.
    namespace = detect_namespace(root)
    sysctls = {name: read_sysctl(root, name, unit) for name, unit in SYSCTLS}
    unreadable = [source for source in sysctls.values() if not source.known]
    entries = sysctls[COUNT].value if isinstance(sysctls[COUNT].value, int) else None
    established = sysctls[ESTABLISHED]
    if isinstance(established.value, int) and established.value > 0:
        limits, note = conntrack_limits_path(namespace, entries)
        sysctls[ESTABLISHED] = Source(
            established.name, established.value, established.origin, "s", note=note, limits_path=limits
        )
        if limits:
            candidates.append(_Candidate(float(established.value), ESTABLISHED, False))
    sources.extend(sysctls.values())
    sources.append(Source("network namespace", namespace.state, root, note=namespace.evidence))

    stat_path = str(nf_stat_path(root))
    stat, stat_reason = read_nf_stat(root)
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
            stat_reason = f"second reading failed: {later_reason}"
    sources.extend(_stat_sources(stat_path, stat, stat_reason, rates, sample))

    # kube-proxy.
    proxy: KubeProxy | None = None
    config_path = os.fspath(kube_proxy_config) if kube_proxy_config is not None else env.get(ENV_KUBE_PROXY_CONFIG)
    config_from_env = kube_proxy_config is None
    for where, load, optional in (
        (config_path, read_kube_proxy_file, config_from_env),
        (kube_proxy_url, fetch_configz, False),
    ):
        if not where:
            continue
        loaded, reason = load(where)
        if loaded is None:
            sources.append(Source("kube-proxy configuration", None, where, reason=reason))
            # A file named by the environment may legitimately be absent (an optional ConfigMap mount): info.
            # Anything asked for explicitly, or present but unusable, is a warning.
            absent = optional and reason == "no such file"
            inputs.append(
                Finding(
                    Severity.INFO if absent else Severity.WARNING,
                    "kube-proxy-unreadable",
                    f"kube-proxy configuration {where} could not be used: {reason}.",
                    "Point --kube-proxy-config at kube-proxy's KubeProxyConfiguration (kubeadm: the "
                    "kube-system/kube-proxy ConfigMap, key config.conf) or --kube-proxy-url at "
                    "http://127.0.0.1:10249/configz on the node.",
                    {"origin": where, "reason": reason},
                )
            )
            continue
        proxy = loaded
        proxy_sources, proxy_candidates = _kube_proxy_sources(loaded)
        sources.extend(proxy_sources)
        candidates.extend(proxy_candidates)

    # The path timeout and the recommended policy.
    best = min(candidates, key=lambda c: c.timeout, default=None)
    recommended, recommended_origin = BUILTIN_POLICY, "built-in default: no path timeout known"
    if best is not None:
        try:
            derived = Policy.below(best.timeout)
        except InvalidPolicy:
            derived = Policy(idle=1, interval=1, count=5)
            inputs.append(
                Finding(
                    Severity.ERROR,
                    "path-timeout-too-short",
                    f"The path timeout {best.timeout:g} s ({best.label}) is too short for TCP keepalive, which "
                    "works in whole seconds (idle 1 s + interval 1 s must stay below it).",
                    "Check the value; raise the middlebox's idle timeout to at least 3 s, or have the "
                    "application send its own heartbeats.",
                    {"path_timeout": best.timeout},
                )
            )
            recommended, recommended_origin = derived, "the shortest possible keepalive"
        else:
            tighter = derived.idle + derived.interval < BUILTIN_POLICY.idle + BUILTIN_POLICY.interval
            if best.explicit or tighter:
                recommended, recommended_origin = derived, f"Policy.below({best.timeout:g}) of the path timeout"
            else:
                recommended_origin = (
                    f"built-in default: the node's path timeout {best.timeout:g} s is longer, and the built-in "
                    "default also covers cloud NAT/LB idle timeouts down to 240 s"
                )

    facts = Facts(
        policy=policy,
        policy_origin=policy_origin,
        recommended=recommended,
        recommended_origin=recommended_origin,
        path_timeout=best.timeout if best else None,
        path_origin=best.label if best else None,
        sysctls=sysctls,
        namespace=namespace,
        conntrack_totals=stat.totals() if stat is not None else None,
        conntrack_reason=stat_reason,
        conntrack_rates=rates,
        sample_seconds=float(sample),
        kube_proxy=proxy,
        unreadable=unreadable,
        input_findings=inputs,
    )
    return Report(
        findings=tuple(evaluate(facts)),
        sources=tuple(sources),
        path_timeout=facts.path_timeout,
        path_timeout_origin=facts.path_origin,
        policy=policy,
        policy_origin=policy_origin,
        recommended_policy=recommended,
        recommended_origin=recommended_origin,
        proc_root=root,
        namespace=namespace.state,
        conntrack=facts.conntrack_totals or {},
        conntrack_rates=rates,
        sample_seconds=float(sample),
        generated_at=time.time(),
    )
