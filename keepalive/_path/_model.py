"""The path model: evidence of the path's idle timeouts, each with its provenance, -> one path timeout; a judge.

Everything that needs the path's idle timeout asks here: the default policy (:mod:`keepalive._policy`), the
checker, the runtime check, the audit's verdicts and ``keepalive policy``.

Evidence comes in two kinds:

* explicit -- the user named the path: ``KEEPALIVE_PATH_TIMEOUT`` / ``--path-timeout`` and ``KEEPALIVE_MIDDLEBOX``
  / ``--middlebox`` presets;
* node -- read on this node: ``nf_conntrack_tcp_timeout_established`` (of the initial network namespace, or of
  another one when it differs from the kernel default 432000 s: then someone set it), kube-proxy's
  configuration (file, flags, ``/configz``) and IPVS's timeout.

The path timeout is the minimum over all evidence. What the default policy makes of it (named path ->
``Policy.below(min)``; node evidence only -> never looser than the built-in policy) is in
:func:`keepalive._policy.recommended_policy`; :func:`judge` says whether keepalive timings fit a path timeout.
Standard library only; never imports :mod:`keepalive.checker` or :mod:`keepalive._policy`.
"""

from __future__ import annotations

import enum
import math
import os
from collections import namedtuple
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from keepalive._path._middleboxes import MIDDLEBOX_NOTES, MIDDLEBOXES, parse_middleboxes
from keepalive._path._pace import pause
from keepalive._path._proc import (
    ENV_KUBE_PROXY_CONFIG,
    ENV_PROC_ROOT,
    ESTABLISHED,
    NAMESPACE_OTHER,
    SYSCTLS,
    Namespace,
    default_proc_root,
    detect_namespace,
    proc_root_problem,
    read_sysctl,
)
from keepalive._path._source import Source, plain

# No typing at run time: the default policy's cheap path (the caller's thread, maybe an event loop's) runs this.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final, NamedTuple

    from keepalive._path._finding import Finding

    # Imported where used: the default policy's cheap path (on the caller's thread, maybe an event loop) reads no
    # kube-proxy configuration unless one is named, so it never pays for the readers and their imports.
    from keepalive._path._kubeproxy import KubeProxy

__all__ = [
    "ENV_MIDDLEBOX",
    "ENV_PATH_TIMEOUT",
    "EXPLICIT",
    "KERNEL_DEFAULT_ESTABLISHED",
    "NODE",
    "Evidence",
    "Fit",
    "PathModel",
    "established_counts",
    "gather",
    "judge",
    "parse_seconds",
]

ENV_MIDDLEBOX: Final = "KEEPALIVE_MIDDLEBOX"
#: The same variable :meth:`keepalive.Policy.from_env` reads; here it is evidence about the path.
ENV_PATH_TIMEOUT: Final = "KEEPALIVE_PATH_TIMEOUT"
#: ``nf_conntrack_tcp_timeout_established`` of a fresh network namespace (5 days): a different value was set.
KERNEL_DEFAULT_ESTABLISHED: Final = 432000

EXPLICIT: Final = "explicit"
NODE: Final = "node"

_KUBE_PROXY_FIX: Final = (
    "Point --kube-proxy-config at kube-proxy's KubeProxyConfiguration (kubeadm: the kube-system/kube-proxy "
    "ConfigMap, key config.conf) or --kube-proxy-url at http://127.0.0.1:10249/configz on the node."
)


class Fit(enum.StrEnum):
    """How keepalive timings compare with a path timeout ``T`` (:func:`judge`)."""

    #: ``idle + interval < T``: even if the first probe is lost, the second refreshes the path in time.
    FITS = "fits"
    #: ``idle < T <= idle + interval``: the first probe comes in time, a lost one is not made up for.
    SECOND_PROBE_LATE = "second-probe-late"
    #: ``idle >= T``: the path forgets an idle connection before the first probe.
    IDLE_EXCEEDS = "idle-exceeds-path-timeout"
    #: No path timeout is known.
    UNKNOWN = "unknown"


def judge(idle: float, interval: float, path_timeout: float | None) -> Fit:
    """Whether keepalive ``idle``/``interval`` (seconds) fit a path whose idle timeout is ``path_timeout``.

    The one rule the checker, the runtime check and the audit share.

    >>> [str(judge(*timings)) for timings in ((60, 10, 240), (232, 30, 240), (300, 30, 240), (60, 10, None))]
    ['fits', 'second-probe-late', 'idle-exceeds-path-timeout', 'unknown']
    """
    if path_timeout is None:
        return Fit.UNKNOWN
    if idle >= path_timeout:
        return Fit.IDLE_EXCEEDS
    if idle + interval >= path_timeout:
        return Fit.SECOND_PROBE_LATE
    return Fit.FITS


def parse_seconds(text: str) -> tuple[float | None, str | None]:
    """Positive seconds as ``KEEPALIVE_PATH_TIMEOUT`` / ``--path-timeout`` take them (``350`` or ``350s``)."""
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


if TYPE_CHECKING:

    class _EvidenceFields(NamedTuple):
        timeout: float
        label: str
        kind: str

else:
    _EvidenceFields = namedtuple("Evidence", ("timeout", "label", "kind"))


class Evidence(_EvidenceFields):
    """One idle timeout on the path (a named tuple: see :class:`PathModel`).

    Attributes:
        timeout: seconds.
        label: what it is and where it came from, e.g. ``middlebox azure-lb from KEEPALIVE_MIDDLEBOX``.
        kind: :data:`EXPLICIT` (the user named it) or :data:`NODE` (read on this node).
    """

    __slots__ = ()

    @property
    def explicit(self) -> bool:
        """True when the user named this timeout (a path timeout or a middlebox)."""
        return self.kind == EXPLICIT

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: timeout, label, kind."""
        return {"timeout": plain(self.timeout), "label": self.label, "kind": self.kind}


def established_counts(namespace: Namespace, value: int) -> tuple[bool, str | None]:
    """Whether a conntrack established timeout read in ``namespace`` is evidence of the path, and a note.

    The initial namespace's value is the node's. Another namespace starts from the kernel default (432000 s);
    a different value there was set by someone, on purpose, and limits that namespace's connections. The answer
    does not depend on whether conntrack entries happen to exist at the moment.
    """
    if namespace.state != NAMESPACE_OTHER:
        return True, None
    if value != KERNEL_DEFAULT_ESTABLISHED:
        return True, (
            f"read in a non-initial network namespace, where it differs from the kernel default "
            f"{KERNEL_DEFAULT_ESTABLISHED} s: it was set there and limits this namespace's connections"
        )
    return False, (
        f"read in a non-initial network namespace: {KERNEL_DEFAULT_ESTABLISHED} s is the kernel default every new "
        "namespace starts with, not the node's value, so it is not used as the path timeout"
    )


_NOT_READ: Final = Namespace("unknown", "not read")
_NO_SYSCTLS: Final[Mapping[str, Source]] = MappingProxyType({})


if TYPE_CHECKING:

    class _PathModelFields(NamedTuple):
        evidence: tuple[Evidence, ...] = ()
        sources: tuple[Source, ...] = ()
        findings: tuple[Finding, ...] = ()
        proc_root: str = "/proc"
        namespace: Namespace = _NOT_READ
        sysctls: Mapping[str, Source] = _NO_SYSCTLS
        kube_proxy: KubeProxy | None = None

else:
    _PathModelFields = namedtuple(
        "PathModel",
        ("evidence", "sources", "findings", "proc_root", "namespace", "sysctls", "kube_proxy"),
        defaults=((), (), (), "/proc", _NOT_READ, _NO_SYSCTLS, None),
    )


class PathModel(_PathModelFields):
    """Everything known about the path's idle timeouts.

    It, :class:`Evidence` and :class:`~keepalive._path._proc.Namespace` are named tuples, not dataclasses: the
    default policy's cheap path defines them on the caller's thread (maybe an event loop's), where a frozen
    dataclass costs about ten times as much to define (0.5-1 ms each on a busy machine).

    Attributes:
        evidence: every idle timeout on the path, each with its provenance.
        sources: every value looked at (for reports), known or with the reason it is unknown.
        findings: problems with the inputs (an unknown middlebox, an unreadable kube-proxy configuration, ...).
        proc_root: the proc root read.
        namespace: whose network namespace the sysctls describe.
        sysctls: the sysctls read, by name.
        kube_proxy: kube-proxy's configuration, when one was read.
    """

    __slots__ = ()

    @property
    def shortest(self) -> Evidence | None:
        """The evidence with the smallest timeout (an explicit one wins a tie), or None."""
        return min(self.evidence, key=lambda e: (e.timeout, not e.explicit), default=None)

    @property
    def path_timeout(self) -> float | None:
        """The path timeout: the minimum over all evidence, or None when there is none."""
        shortest = self.shortest
        return None if shortest is None else shortest.timeout

    @property
    def path_label(self) -> str | None:
        """Where the path timeout came from."""
        shortest = self.shortest
        return None if shortest is None else shortest.label

    @property
    def named(self) -> bool:
        """True when the user named the path (a path timeout or a middlebox), not only the node."""
        return any(e.explicit for e in self.evidence)

    def judge(self, idle: float, interval: float) -> Fit:
        """:func:`judge` against this path's timeout."""
        return judge(idle, interval, self.path_timeout)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: path_timeout, path_timeout_origin, named, evidence."""
        return {
            "path_timeout": plain(self.path_timeout),
            "path_timeout_origin": self.path_label,
            "named": self.named,
            "evidence": [e.to_dict() for e in self.evidence],
        }


def _finding(severity: str, code: str, message: str, fix: str, data: Mapping[str, Any]) -> Finding:
    """A :class:`Finding`; its module is imported only when there is one to report (not on the cheap path)."""
    from keepalive._path._finding import Finding, Severity

    return Finding(Severity(severity), code, message, fix, data)


class _Gathered:
    """What :func:`gather` collects (a plain class: the default policy's cheap path defines no more than needed)."""

    __slots__ = ("evidence", "findings", "kube_proxy", "sources")

    def __init__(self) -> None:
        self.evidence: list[Evidence] = []
        self.sources: list[Source] = []
        self.findings: list[Finding] = []
        self.kube_proxy: KubeProxy | None = None


def gather(
    *,
    environ: Mapping[str, str] | None = None,
    proc_root: str | os.PathLike[str] | None = None,
    middleboxes: str | Iterable[str] | None = None,
    middlebox_origin: str = "argument",
    path_timeout: float | None = None,
    path_timeout_origin: str = "argument",
    kube_proxy_config: str | os.PathLike[str] | None = None,
    kube_proxy_url: str | None = None,
    evidence_only: bool = False,
) -> PathModel:
    """Collect the evidence: the arguments, else the environment, and this node.

    Arguments left None fall back to ``KEEPALIVE_MIDDLEBOX``, ``KEEPALIVE_PATH_TIMEOUT``, ``KEEPALIVE_PROC_ROOT``
    and ``KEEPALIVE_KUBE_PROXY_CONFIG`` in ``environ`` (default ``os.environ``). Only reads; opens a network
    connection only for ``kube_proxy_url``. A bad value in the environment becomes a finding; a bad argument raises.
    ``evidence_only`` reads just the sysctl that is evidence (the default policy's cheap path), not all of them.

    Raises:
        ValueError: an unknown middlebox name, a path timeout that is not a positive number, a ``proc_root`` that
            is missing or not a proc tree, an empty ``kube_proxy_config``, a non-loopback ``kube_proxy_url``.
    """
    env: Mapping[str, str] = os.environ if environ is None else environ
    if kube_proxy_url is not None:
        from keepalive._path._kubeproxy import loopback_url

        loopback_url(kube_proxy_url)  # raises NotLoopback (a ValueError) before anything is read
    if kube_proxy_config is not None and not os.fspath(kube_proxy_config).strip():
        raise ValueError("kube_proxy_config: empty path (give kube-proxy's configuration file, or leave it out)")
    if proc_root is not None:
        root = os.fspath(proc_root)
        problem = proc_root_problem(root)
        if problem:
            raise ValueError(f"proc root {root}: {problem}")
    else:
        root = default_proc_root(dict(env))
    found = _Gathered()
    _middleboxes(found, env, middleboxes, middlebox_origin)
    _path_timeout(found, env, path_timeout, path_timeout_origin)
    namespace, sysctls = _node(found, env, root, proc_root is not None, evidence_only)
    pause()  # in the runtime check's thread: let an event loop in this process run between the steps
    _kube_proxy(found, env, kube_proxy_config, kube_proxy_url, None if evidence_only else root)
    return PathModel(
        evidence=tuple(found.evidence),
        sources=tuple(found.sources),
        findings=tuple(found.findings),
        proc_root=root,
        namespace=namespace,
        sysctls=sysctls,
        kube_proxy=found.kube_proxy,
    )


def _middleboxes(found: _Gathered, env: Mapping[str, str], given: str | Iterable[str] | None, origin: str) -> None:
    if given is None:
        names, unknown = parse_middleboxes(env.get(ENV_MIDDLEBOX, ""))
        origin = ENV_MIDDLEBOX
        found.findings.extend(
            _finding(
                "warning",
                "unknown-middlebox",
                f"{ENV_MIDDLEBOX} names {name!r}, which is not a known middlebox preset; it was ignored.",
                f"Use one of: {', '.join(MIDDLEBOXES)}; or give its idle timeout with {ENV_PATH_TIMEOUT}.",
                {"name": name},
            )
            for name in unknown
        )
    else:
        names, unknown = parse_middleboxes(given if isinstance(given, str) else ",".join(given))
        if unknown:
            raise ValueError(
                f"unknown middlebox {', '.join(map(repr, unknown))}; known: {', '.join(MIDDLEBOXES)} "
                "(use path_timeout / --path-timeout for anything else)"
            )
    for name in names:
        timeout = MIDDLEBOXES[name]
        found.sources.append(
            Source(f"middlebox {name}", timeout, origin, "s", note=MIDDLEBOX_NOTES[name], limits_path=True)
        )
        found.evidence.append(Evidence(float(timeout), f"middlebox {name} from {origin}", EXPLICIT))


def _path_timeout(found: _Gathered, env: Mapping[str, str], given: float | None, origin: str) -> None:
    if given is None:
        raw = env.get(ENV_PATH_TIMEOUT, "").strip()
        if not raw:
            return
        value, reason = parse_seconds(raw)
        if value is None:
            found.findings.append(
                _finding(
                    "warning",
                    "invalid-path-timeout",
                    f"{ENV_PATH_TIMEOUT}={raw[:40]!r} is not usable: {reason}; it was ignored.",
                    f"Set {ENV_PATH_TIMEOUT} to the path's idle timeout in seconds, e.g. 350.",
                    {"value": raw[:40]},
                )
            )
            return
        origin = ENV_PATH_TIMEOUT
    else:
        if isinstance(given, bool) or not isinstance(given, int | float) or not (math.isfinite(given) and given > 0):
            raise ValueError(f"path_timeout must be a positive number of seconds, got {given!r}")
        value = float(given)
    found.sources.append(Source("path timeout", plain(value), origin, "s", limits_path=True))
    found.evidence.append(Evidence(value, origin, EXPLICIT))


def _node(
    found: _Gathered, env: Mapping[str, str], root: str, root_given: bool, evidence_only: bool
) -> tuple[Namespace, dict[str, Source]]:
    if not root_given and env.get(ENV_PROC_ROOT, "").strip():
        problem = proc_root_problem(root)
        if problem:
            found.findings.append(
                _finding(
                    "error",
                    "proc-root-invalid",
                    f"{ENV_PROC_ROOT}={root}: {problem}; nothing about this node could be read.",
                    f"Mount the host's proc there (hostPath /proc) or point {ENV_PROC_ROOT} at a proc tree.",
                    {"proc_root": root, "reason": problem},
                )
            )
    namespace = detect_namespace(root)
    wanted = [(ESTABLISHED, "s")] if evidence_only else SYSCTLS
    sysctls: dict[str, Source] = {}
    for name, unit in wanted:
        pause()
        sysctls[name] = read_sysctl(root, name, unit)
    established = sysctls[ESTABLISHED]
    value = established.value
    if isinstance(value, int) and not isinstance(value, bool):
        if value == 0:
            found.findings.append(
                _finding(
                    "warning",
                    "conntrack-timeout-zero",
                    f"{ESTABLISHED} is 0 ({established.origin}): conntrack forgets an established connection as soon "
                    "as it is quiet, so no keepalive is short enough; it is not used as the path timeout.",
                    f"sysctl -w {ESTABLISHED}=86400 (kube-proxy writes it at start-up from "
                    "--conntrack-tcp-timeout-established; 0 there means it leaves the sysctl alone).",
                    {"nf_conntrack_tcp_timeout_established": 0},
                )
            )
        else:
            counts, note = established_counts(namespace, value)
            sysctls[ESTABLISHED] = Source(
                established.name, value, established.origin, "s", note=note, limits_path=counts
            )
            if counts:
                found.evidence.append(Evidence(float(value), ESTABLISHED, NODE))
    found.sources.extend(sysctls.values())
    found.sources.append(Source("network namespace", namespace.state, root, note=namespace.evidence))
    return namespace, sysctls


def _kube_proxy(
    found: _Gathered,
    env: Mapping[str, str],
    config: str | os.PathLike[str] | None,
    url: str | None,
    proc_root: str | None,
) -> None:
    """All kube-proxy evidence: the configuration file (argument, else ``KEEPALIVE_KUBE_PROXY_CONFIG``), the
    ``/configz`` URL (only when given) and -- see below -- a running kube-proxy found under the proc root."""
    path = os.fspath(config) if config is not None else env.get(ENV_KUBE_PROXY_CONFIG, "").strip() or None
    optional = config is None  # a file named by the environment may be an absent optional ConfigMap mount
    if not path and not url and proc_root is None:
        return  # nothing to read: the kube-proxy readers are not even imported
    pause()
    from keepalive._path._kubeproxy import discover_kube_proxy, fetch_configz, read_kube_proxy_file

    pause()

    loads: list[tuple[str, Any, bool]] = []
    if path:
        loads.append((path, read_kube_proxy_file, optional))
    if url:
        loads.append((url, fetch_configz, False))
    for where, load, may_be_absent in loads:
        proxy, reason = load(where)
        if proxy is None:
            found.sources.append(Source("kube-proxy configuration", None, where, reason=reason))
            absent = may_be_absent and reason == "no such file"
            found.findings.append(
                _finding(
                    "info" if absent else "warning",
                    "kube-proxy-unreadable",
                    f"kube-proxy configuration {where} could not be used: {reason}.",
                    _KUBE_PROXY_FIX,
                    {"origin": where, "reason": reason},
                )
            )
            continue
        _add_kube_proxy(found, proxy)
        pause()
    if proc_root is None:
        return  # the default policy's cheap path: no scan of the process table
    # A running kube-proxy (a hostPID DaemonSet sees the node's processes): its flags and the --config they name.
    proxy, reason = discover_kube_proxy(proc_root)
    if proxy is not None:
        _add_kube_proxy(found, proxy)
    elif reason is not None:
        where = f"running kube-proxy under {proc_root}"
        found.sources.append(Source("kube-proxy configuration", None, where, reason=reason))
        found.findings.append(
            _finding(
                "info",
                "kube-proxy-unreadable",
                f"kube-proxy configuration {where} could not be used: {reason}.",
                _KUBE_PROXY_FIX,
                {"origin": where, "reason": reason},
            )
        )


def _add_kube_proxy(found: _Gathered, proxy: KubeProxy) -> None:
    found.kube_proxy = proxy
    origin = proxy.origin
    sources = found.sources

    def note_for(name: str) -> str | None:
        return "absent from the configuration: kube-proxy's default" if name in proxy.defaulted else None

    sources.append(
        Source(
            "kube-proxy mode",
            proxy.effective_mode,
            origin,
            note=None if proxy.mode else "not set: kube-proxy's default on Linux, iptables",
        )
    )
    established = proxy.tcp_established_timeout
    sources.append(
        Source(
            "kube-proxy conntrack.tcpEstablishedTimeout",
            plain(established),
            origin,
            "s",
            reason=None if established is not None else "not given",
            note="0: kube-proxy leaves net.netfilter.nf_conntrack_tcp_timeout_established as it is"
            if established == 0
            else note_for("tcpEstablishedTimeout"),
            limits_path=bool(established),
        )
    )
    if established:
        found.evidence.append(Evidence(established, f"kube-proxy conntrack.tcpEstablishedTimeout in {origin}", NODE))
    close_wait = proxy.tcp_close_wait_timeout
    sources.append(
        Source(
            "kube-proxy conntrack.tcpCloseWaitTimeout",
            plain(close_wait),
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
        sources.append(Source("kube-proxy ipvs.tcpTimeout", plain(ipvs), origin, "s", note=note, limits_path=True))
        found.evidence.append(Evidence(ipvs, f"kube-proxy ipvs.tcpTimeout (IPVS mode) in {origin}", NODE))
    for problem in getattr(proxy, "refused", ()):
        found.findings.append(
            _finding(
                "warning",
                "kube-proxy-config-refused",
                f"kube-proxy configuration {origin}: {problem}; kube-proxy refuses to start with it.",
                "Fix that field as the message says; kube-proxy's own error names it the same way.",
                {"origin": origin, "problem": problem},
            )
        )
