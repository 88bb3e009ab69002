"""The rules: facts about the node and the policy -> findings with the numbers and the exact fix.

Every code here is stable and documented in docs/checker.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from keepalive._path._kubeproxy import KubeProxy
from keepalive._path._model import KERNEL_DEFAULT_ESTABLISHED, Fit, judge
from keepalive._path._proc import (
    BE_LIBERAL,
    CLOSE_WAIT,
    COUNT,
    ESTABLISHED,
    KEEPALIVE_TIME,
    LOOSE,
    MAX,
    Namespace,
)
from keepalive._policy import BELOW_MIN_TIMEOUT, Policy
from keepalive.checker._model import Finding, Severity, Source

__all__ = ["FULL_RATIO", "Facts", "evaluate"]

#: A conntrack table fuller than this is a warning.
FULL_RATIO: Final = 0.9


@dataclass
class Facts:
    """Everything the rules look at, gathered by :func:`keepalive.check`."""

    policy: Policy
    policy_origin: str
    recommended: Policy
    recommended_origin: str
    path_timeout: float | None
    path_origin: str | None
    sysctls: dict[str, Source]
    namespace: Namespace
    conntrack_totals: dict[str, int] | None
    conntrack_reason: str | None
    conntrack_rates: dict[str, float] | None = None
    sample_seconds: float = 0.0
    kube_proxy: KubeProxy | None = None
    unreadable: list[Source] = field(default_factory=list)
    input_findings: list[Finding] = field(default_factory=list)

    def sysctl(self, name: str) -> int | None:
        source = self.sysctls.get(name)
        if source is None or not isinstance(source.value, int) or isinstance(source.value, bool):
            return None
        return source.value


def _env_fix(policy: Policy) -> str:
    return " ".join(f"{name}={value}" for name, value in policy.to_env().items())


def _sysctl_fix(policy: Policy) -> str:
    return (
        f"sysctl -w net.ipv4.tcp_keepalive_time={policy.idle} net.ipv4.tcp_keepalive_intvl={policy.interval} "
        f"net.ipv4.tcp_keepalive_probes={policy.count}"
    )


def _s(value: float) -> str:
    return f"{value:g} s"


def _policy_rules(facts: Facts) -> list[Finding]:
    policy, timeout = facts.policy, facts.path_timeout
    if timeout is None:
        return [
            Finding(
                Severity.INFO,
                "path-timeout-unknown",
                f"No idle timeout of the path is known, so policy {policy} ({facts.policy_origin}) was checked "
                "against nothing; cloud NAT gateways and load balancers are invisible from the node.",
                "Name the middleboxes on the path (--middlebox / KEEPALIVE_MIDDLEBOX, e.g. aws-nat-gateway) or "
                "give the shortest idle timeout (--path-timeout / KEEPALIVE_PATH_TIMEOUT).",
                {"idle": policy.idle, "interval": policy.interval, "count": policy.count},
            )
        ]
    data = {
        "idle": policy.idle,
        "interval": policy.interval,
        "count": policy.count,
        "path_timeout": timeout,
        "recommended_idle": facts.recommended.idle,
        "recommended_interval": facts.recommended.interval,
    }
    rec = facts.recommended
    fix = (
        f"Set {_env_fix(rec)} (the recommended policy: {facts.recommended_origin}), or pass "
        f"policy=keepalive.Policy(idle={rec.idle}, interval={rec.interval}, count={rec.count})."
    )
    findings: list[Finding] = []
    if timeout < BELOW_MIN_TIMEOUT:
        findings.append(
            Finding(
                Severity.ERROR,
                "path-timeout-too-short",
                f"The path timeout {_s(timeout)} ({facts.path_origin}) is too short for TCP keepalive, which "
                "works in whole seconds (idle 1 s + interval 1 s must stay below it).",
                "Check the value; raise the middlebox's idle timeout to at least 3 s, or have the "
                "application send its own heartbeats.",
                {"path_timeout": timeout},
            )
        )
    fit = judge(policy.idle, policy.interval, timeout)
    if fit is Fit.IDLE_EXCEEDS:
        findings.append(
            Finding(
                Severity.ERROR,
                "policy-idle-exceeds-path-timeout",
                f"Keepalive idle {_s(policy.idle)} is not below the path timeout {_s(timeout)} "
                f"({facts.path_origin}): an idle connection is forgotten before the first probe is sent. "
                f"Policy from {facts.policy_origin}.",
                fix,
                data,
            )
        )
    elif fit is Fit.SECOND_PROBE_LATE:
        findings.append(
            Finding(
                Severity.WARNING,
                "policy-second-probe-late",
                f"Keepalive idle {_s(policy.idle)} + interval {_s(policy.interval)} = "
                f"{_s(policy.idle + policy.interval)} is not below the path timeout {_s(timeout)} "
                f"({facts.path_origin}): if one probe is lost, the path forgets the connection. "
                f"Policy from {facts.policy_origin}.",
                fix,
                data,
            )
        )
    else:
        findings.append(
            Finding(
                Severity.OK,
                "policy-fits-path-timeout",
                f"Keepalive idle {_s(policy.idle)} + interval {_s(policy.interval)} stays below the path timeout "
                f"{_s(timeout)} ({facts.path_origin}). Policy from {facts.policy_origin}.",
                "",
                data,
            )
        )
    return findings


def _kernel_rules(facts: Facts) -> list[Finding]:
    findings: list[Finding] = []
    timeout = facts.path_timeout
    keepalive_time = facts.sysctl(KEEPALIVE_TIME)
    if timeout is not None and keepalive_time is not None and keepalive_time >= timeout:
        findings.append(
            Finding(
                Severity.WARNING,
                "kernel-keepalive-exceeds-path-timeout",
                f"net.ipv4.tcp_keepalive_time is {_s(keepalive_time)}, not below the path timeout {_s(timeout)} "
                f"({facts.path_origin}): sockets that only set SO_KEEPALIVE (and no per-socket idle) are "
                "forgotten by the path before their first probe.",
                f"Set per connection with keepalive.apply(), or in this network namespace: "
                f"{_sysctl_fix(facts.recommended)}. These sysctls are per network namespace: on Kubernetes set "
                "them in the pod's securityContext.sysctls (safe sysctls since 1.29), not on the node.",
                {"tcp_keepalive_time": keepalive_time, "path_timeout": timeout},
            )
        )
    count, maximum = facts.sysctl(COUNT), facts.sysctl(MAX)
    if count is not None and maximum is not None and maximum > 0 and count > FULL_RATIO * maximum:
        findings.append(
            Finding(
                Severity.WARNING,
                "conntrack-table-nearly-full",
                f"The conntrack table holds {count} of {maximum} entries ({100 * count / maximum:.0f} %, over "
                f"{FULL_RATIO:.0%}): new connections will be dropped when it is full.",
                f"Raise net.netfilter.nf_conntrack_max (sysctl -w net.netfilter.nf_conntrack_max={2 * maximum}); "
                "with kube-proxy, raise --conntrack-max-per-core / --conntrack-min (conntrack.maxPerCore, "
                "conntrack.min), which it writes at start-up.",
                {"count": count, "max": maximum, "ratio": round(count / maximum, 4)},
            )
        )
    close_wait = facts.sysctl(CLOSE_WAIT)
    if close_wait is not None and close_wait < facts.policy.idle:
        findings.append(
            Finding(
                Severity.INFO,
                "close-wait-shorter-than-idle",
                f"net.netfilter.nf_conntrack_tcp_timeout_close_wait is {_s(close_wait)}, shorter than the "
                f"keepalive idle {_s(facts.policy.idle)}: a half-closed connection that stays idle is forgotten "
                "before a probe refreshes it.",
                f"If half-closed connections matter, raise it above the idle: sysctl -w "
                f"net.netfilter.nf_conntrack_tcp_timeout_close_wait={max(3600, 2 * facts.policy.idle)} "
                "(kube-proxy: --conntrack-tcp-timeout-close-wait), or lower the keepalive idle.",
                {"close_wait": close_wait, "idle": facts.policy.idle},
            )
        )
    if facts.sysctl(LOOSE) == 0:
        findings.append(
            Finding(
                Severity.INFO,
                "conntrack-loose-off",
                "net.netfilter.nf_conntrack_tcp_loose is 0: once conntrack has forgotten a connection, its next "
                "packet cannot be picked up again and is INVALID.",
                "Keep keepalive below the path timeout; sysctl -w net.netfilter.nf_conntrack_tcp_loose=1 restores "
                "the kernel default.",
                {"nf_conntrack_tcp_loose": 0},
            )
        )
    return findings


def _liberal(facts: Facts) -> bool:
    return facts.sysctl(BE_LIBERAL) == 1 or (facts.kube_proxy is not None and facts.kube_proxy.tcp_be_liberal is True)


def _stat_rules(facts: Facts) -> list[Finding]:
    totals = facts.conntrack_totals
    if totals is None:
        return []
    findings: list[Finding] = []
    rates = facts.conntrack_rates
    sampled = rates is not None
    invalid_total = totals.get("invalid", 0)
    invalid_rate = rates.get("invalid") if rates is not None else None
    window = (
        f"{invalid_rate:.3g} invalid packets/s over a {facts.sample_seconds:g} s sample"
        if invalid_rate is not None
        else f"{invalid_total} invalid packets since boot"
    )
    counting = invalid_rate > 0 if invalid_rate is not None else invalid_total > 0
    if counting:
        data = {"invalid": invalid_total, "invalid_per_second": invalid_rate, "be_liberal": facts.sysctl(BE_LIBERAL)}
        if _liberal(facts):
            findings.append(
                Finding(
                    Severity.INFO,
                    "conntrack-invalid-packets-liberal",
                    f"conntrack counted {window}; nf_conntrack_tcp_be_liberal is on, so out-of-window TCP "
                    "packets are not among them.",
                    "Nothing to change for TCP windows; keep keepalive below the path timeout.",
                    data,
                )
            )
        else:
            findings.append(
                Finding(
                    Severity.WARNING,
                    "conntrack-invalid-packets",
                    f"conntrack counted {window} while nf_conntrack_tcp_be_liberal=0: packets of connections "
                    "it forgot (idle too long) or whose window it rejects are INVALID, and kube-proxy drops "
                    "them (or the peer answers with a RST).",
                    "Keep idle connections alive below the path timeout (keepalive.apply / KEEPALIVE_* "
                    "variables), and run kube-proxy with --conntrack-tcp-be-liberal (conntrack.tcpBeLiberal: "
                    "true, 1.29+) or set sysctl -w net.netfilter.nf_conntrack_tcp_be_liberal=1.",
                    data,
                )
            )
    elif sampled and invalid_total > 0:
        findings.append(
            Finding(
                Severity.INFO,
                "conntrack-invalid-packets-past",
                f"conntrack counted {invalid_total} invalid packets since boot, none during the "
                f"{facts.sample_seconds:g} s sample.",
                'Sample for longer (--sample) or watch keepalive_check_conntrack_stat_rate{counter="invalid"}.',
                {"invalid": invalid_total, "invalid_per_second": 0.0},
            )
        )
    dropped = totals.get("drop", 0) + totals.get("early_drop", 0)
    if rates is not None:
        dropped_now = rates.get("drop", 0.0) + rates.get("early_drop", 0.0)
        drops = dropped_now > 0
    else:
        dropped_now = None
        drops = dropped > 0
    if drops:
        findings.append(
            Finding(
                Severity.WARNING,
                "conntrack-drops",
                f"conntrack dropped packets: drop {totals.get('drop', 0)}, early_drop {totals.get('early_drop', 0)}"
                + (f" ({dropped_now:.3g}/s during the sample)" if dropped_now is not None else " since boot")
                + ": the table was full or an entry could not be created.",
                "Raise net.netfilter.nf_conntrack_max (kube-proxy: --conntrack-max-per-core / --conntrack-min) "
                "and check nf_conntrack_count against it.",
                {"drop": totals.get("drop", 0), "early_drop": totals.get("early_drop", 0), "per_second": dropped_now},
            )
        )
    insert_failed = totals.get("insert_failed", 0)
    if insert_failed > 0:
        findings.append(
            Finding(
                Severity.INFO,
                "conntrack-insert-failed",
                f"conntrack counted {insert_failed} insert_failed: races when two packets create the same entry "
                "(usually parallel UDP DNS queries), not idle timeouts.",
                "For DNS: 'options single-request-reopen' or NodeLocal DNSCache; nothing to do for keepalive.",
                {"insert_failed": insert_failed},
            )
        )
    return findings


def _namespace_rules(facts: Facts) -> list[Finding]:
    if facts.namespace.state != "non-initial":
        return []
    established = facts.sysctl(ESTABLISHED)
    if established is None:
        value = ""
    elif established == KERNEL_DEFAULT_ESTABLISHED:
        value = (
            f" (nf_conntrack_tcp_timeout_established reads {established} s here, the kernel default: not used as "
            "the path timeout)"
        )
    else:
        value = (
            f" (nf_conntrack_tcp_timeout_established reads {established} s here; it differs from the kernel "
            f"default {KERNEL_DEFAULT_ESTABLISHED} s, so it was set here on purpose and is used as a path timeout)"
        )
    return [
        Finding(
            Severity.INFO,
            "non-initial-namespace",
            "This process runs in a non-initial network namespace (a pod or container): the conntrack values "
            f"read here{value} are this namespace's, which start from kernel defaults, not the node's. "
            f"Evidence: {facts.namespace.evidence}.",
            "To check the node, run with hostNetwork: true (sysctls follow the reader's network namespace, so "
            "mounting the host's /proc alone is not enough for them), or give the node's timeout with "
            "--path-timeout / KEEPALIVE_PATH_TIMEOUT or --kube-proxy-config. The tcp_keepalive_* values here "
            "are the ones this namespace's sockets use.",
            {"namespace": facts.namespace.state, "nf_conntrack_tcp_timeout_established": established},
        )
    ]


def _kube_proxy_rules(facts: Facts) -> list[Finding]:
    proxy = facts.kube_proxy
    if proxy is None:
        return []
    findings: list[Finding] = [
        Finding(
            Severity.INFO,
            "kube-proxy-field-unreadable",
            f"kube-proxy configuration {proxy.origin}: {problem}.",
            "Fix that field (a duration such as '24h0m0s'), or give the value with --path-timeout.",
            {"origin": proxy.origin},
        )
        for problem in proxy.problems
    ]
    established = facts.sysctl(ESTABLISHED)
    configured = proxy.tcp_established_timeout
    if (
        facts.namespace.initial
        and established is not None
        and configured
        and "tcpEstablishedTimeout" not in proxy.defaulted
        and abs(established - configured) >= 1
    ):
        findings.append(
            Finding(
                Severity.INFO,
                "kube-proxy-sysctl-mismatch",
                f"kube-proxy's conntrack.tcpEstablishedTimeout is {_s(configured)} but the node's "
                f"nf_conntrack_tcp_timeout_established is {_s(established)}: something changed it after "
                "kube-proxy started, or the configuration is not this node's. The shorter one counts.",
                "Make them agree: set --conntrack-tcp-timeout-established in kube-proxy (it writes the sysctl at "
                "start-up) and nowhere else.",
                {"kube_proxy": configured, "sysctl": established},
            )
        )
    return findings


def _unreadable_rules(facts: Facts) -> list[Finding]:
    netfilter = [s for s in facts.unreadable if s.name.startswith("net.netfilter.")]
    others = [s for s in facts.unreadable if not s.name.startswith("net.netfilter.")]
    findings: list[Finding] = []
    root_missing = [s for s in facts.unreadable if s.reason and s.reason.startswith("proc root ")]
    if root_missing and len(root_missing) == len(facts.unreadable):
        return [
            Finding(
                Severity.INFO,
                "source-unreadable",
                f"No node values: {root_missing[0].reason}; sysctls and conntrack statistics are unknown.",
                "On Linux, point --proc-root / KEEPALIVE_PROC_ROOT at a mounted proc (the host's, e.g. "
                "/host/proc); elsewhere give the path timeout with --middlebox or --path-timeout.",
                {"source": "proc root", "reason": root_missing[0].reason},
            )
        ]
    missing_module = [s for s in netfilter if s.reason and "nf_conntrack is not loaded" in s.reason]
    if missing_module and len(missing_module) == len(netfilter) and facts.conntrack_totals is None:
        findings.append(
            Finding(
                Severity.INFO,
                "conntrack-not-loaded",
                "No conntrack here: the net.netfilter sysctls and /net/stat/nf_conntrack do not exist (the "
                "nf_conntrack module is not loaded in this kernel or namespace), so nothing on this host expires "
                "idle connections by conntrack.",
                "Nothing to do for this host; middleboxes elsewhere on the path still need --middlebox or "
                "--path-timeout.",
                {"unreadable": len(netfilter)},
            )
        )
    else:
        others = netfilter + others
        if facts.conntrack_totals is None and facts.conntrack_reason:
            findings.append(
                Finding(
                    Severity.INFO,
                    "source-unreadable",
                    f"conntrack statistics (net/stat/nf_conntrack) unknown: {facts.conntrack_reason}.",
                    "Run on Linux with /proc mounted (or point --proc-root / KEEPALIVE_PROC_ROOT at the host's "
                    "proc); reading it needs no privileges.",
                    {"source": "net/stat/nf_conntrack", "reason": facts.conntrack_reason},
                )
            )
    findings.extend(
        Finding(
            Severity.INFO,
            "source-unreadable",
            f"{source.name} unknown ({source.origin}): {source.reason}.",
            "Run on Linux with /proc mounted (or point --proc-root / KEEPALIVE_PROC_ROOT at the host's proc); "
            "these files are readable without privileges.",
            {"source": source.name, "reason": source.reason},
        )
        for source in others
    )
    return findings


def evaluate(facts: Facts) -> list[Finding]:
    """All findings for ``facts``, worst first (stable order within a severity)."""
    findings = [
        *facts.input_findings,
        *_policy_rules(facts),
        *_kernel_rules(facts),
        *_stat_rules(facts),
        *_namespace_rules(facts),
        *_kube_proxy_rules(facts),
        *_unreadable_rules(facts),
    ]
    return sorted(findings, key=lambda finding: -finding.severity.rank)
