"""The result of a check: :class:`Report`, and its three renderings (text, JSON, Prometheus textfile)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from keepalive._path._model import Evidence
from keepalive._policy import Policy
from keepalive.checker._model import Finding, Severity, Source, plain

__all__ = ["Report"]

_WIDTH = 100


def _wrap(text: str, indent: int, hanging: int | None = None) -> list[str]:
    import textwrap  # the imports of the views are in the views: the runtime check only builds the report

    return textwrap.wrap(
        text,
        _WIDTH,
        initial_indent=" " * indent,
        subsequent_indent=" " * (indent if hanging is None else hanging),
        break_on_hyphens=False,
        break_long_words=False,
    )


def _number(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{key}="{_label(value)}"' for key, value in labels.items()) + "}"


def _format_value(source: Source) -> str:
    if source.value is None:
        return "unknown"
    if isinstance(source.value, bool):
        return "true" if source.value else "false"
    if isinstance(source.value, float):
        text = f"{source.value:g}" if source.value < 1e15 else str(source.value)
    else:
        text = str(source.value)
    return f"{text} {source.unit}" if source.unit else text


@dataclass(frozen=True)
class Report:
    """What :func:`keepalive.check` found.

    Attributes:
        findings: the findings, worst first.
        sources: every value looked at (sysctls, conntrack counters, kube-proxy fields, middleboxes, ...), each
            with where it came from, or why it is unknown.
        path_timeout: the smallest idle timeout on the path in seconds, or None when none is known.
        path_timeout_origin: the source that gave it.
        policy: the policy checked (``--policy``, or the process's :func:`keepalive.default_policy`).
        policy_origin: where that policy came from.
        recommended_policy: ``Policy.below(path_timeout)``, or the built-in default when nothing tighter is known.
        recommended_origin: why that one.
        proc_root: the proc root read.
        namespace: ``initial``, ``non-initial`` or ``unknown``: whose network namespace the sysctls describe.
        conntrack: conntrack statistics summed over CPUs (``invalid``, ``drop``, ...), empty when unknown.
        conntrack_rates: per-second increases over the sample, or None when not sampled.
        sample_seconds: the sample length (0 = no sample).
        generated_at: Unix time of the check.
        evidence: every idle timeout on the path the model knows, each with its provenance.
    """

    findings: tuple[Finding, ...]
    sources: tuple[Source, ...]
    path_timeout: float | None
    path_timeout_origin: str | None
    policy: Policy
    policy_origin: str
    recommended_policy: Policy
    recommended_origin: str
    proc_root: str
    namespace: str
    conntrack: Mapping[str, int] = field(default_factory=dict)
    conntrack_rates: Mapping[str, float] | None = None
    sample_seconds: float = 0.0
    generated_at: float = 0.0
    evidence: tuple[Evidence, ...] = ()

    @property
    def severity(self) -> Severity:
        """The worst severity among the findings (``ok`` when there are none)."""
        return max((f.severity for f in self.findings), key=lambda s: s.rank, default=Severity.OK)

    @property
    def exit_code(self) -> int:
        """0 when everything is ok or informational, 1 with warnings, 2 with errors."""
        return self.severity.exit_code

    def by_severity(self, severity: Severity | str) -> list[Finding]:
        """The findings of one severity."""
        wanted = Severity(severity)
        return [f for f in self.findings if f.severity is wanted]

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready: ``findings``, ``recommended_policy``, ``path_timeout``, ``sources``, ..."""
        recommended = self.recommended_policy.to_dict()
        recommended["origin"] = self.recommended_origin
        recommended["env"] = self.recommended_policy.to_env()
        checked = self.policy.to_dict()
        checked["origin"] = self.policy_origin
        return {
            "status": self.severity.value,
            "exit_code": self.exit_code,
            "path_timeout": plain(self.path_timeout),
            "path_timeout_origin": self.path_timeout_origin,
            "evidence": [e.to_dict() for e in self.evidence],
            "policy": checked,
            "recommended_policy": recommended,
            "findings": [f.to_dict() for f in self.findings],
            "sources": [s.to_dict() for s in self.sources],
            "proc_root": self.proc_root,
            "namespace": self.namespace,
            "conntrack": dict(self.conntrack),
            "conntrack_rates": None if self.conntrack_rates is None else dict(self.conntrack_rates),
            "sample_seconds": self.sample_seconds,
            "generated_at": self.generated_at,
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        """:meth:`to_dict` as JSON (NaN-free: unknown values are null)."""
        import json

        return json.dumps(self.to_dict(), indent=indent, allow_nan=False, default=str)

    def to_text(self) -> str:
        """The readable report: sources, path timeout, findings with fixes, the recommended policy to paste."""
        lines = [f"keepalive check: proc root {self.proc_root}, network namespace {self.namespace}", "", "Sources:"]
        name_width = min(56, max((len(s.name) for s in self.sources), default=10))
        for source in self.sources:
            value = _format_value(source)
            marker = "  [path]" if source.limits_path else ""
            origin = source.origin + (f" ({source.reason})" if source.reason else "")
            lines.append(f"  {source.name:<{name_width}}  {value:<14} {origin}{marker}")
            if source.note:
                lines.extend(_wrap(source.note, 6))
        lines.append("")
        if self.path_timeout is None:
            lines.append("Path timeout: unknown (give --middlebox or --path-timeout)")
        else:
            lines.append(f"Path timeout: {self.path_timeout:g} s ({self.path_timeout_origin})")
            lines.append("  the minimum over the path's evidence:")
            lines.extend(f"    {e.timeout:>8g} s  {e.kind:<8}  {e.label}" for e in self.evidence)
        lines.append(f"Policy checked: {self.policy} ({self.policy_origin})")
        lines.append("")
        lines.append("Findings:")
        for finding in self.findings:
            head = f"  {finding.severity.value.upper():<8} {finding.code}"
            lines.append(head)
            lines.extend(_wrap(finding.message, 11))
            if finding.fix:
                lines.extend(_wrap("fix: " + finding.fix, 11, 16))
        if not self.findings:
            lines.append("  (none)")
        lines.append("")
        lines.append(f"Recommended policy: {self.recommended_policy} ({self.recommended_origin})")
        lines.append("  paste into the environment:")
        lines.extend(f"    {name}={value}" for name, value in self.recommended_policy.to_env().items())
        counts = {s: len(self.by_severity(s)) for s in (Severity.ERROR, Severity.WARNING, Severity.INFO)}
        lines.append("")
        lines.append(
            f"Result: {counts[Severity.ERROR]} error(s), {counts[Severity.WARNING]} warning(s), "
            f"{counts[Severity.INFO]} info -> exit {self.exit_code}"
        )
        return "\n".join(lines) + "\n"

    def write_textfile(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_prometheus` to ``path`` atomically, for node_exporter's textfile collector.

        A hidden temporary file in the same directory (its name ends in ``.tmp``, which the collector ignores),
        fsync, then a rename over ``path``; the file is mode 0644. Raises ``OSError`` when it can't be written.
        """
        import tempfile  # with shutil, random, bz2 and lzma: only a textfile needs it

        target = os.path.abspath(os.fspath(path))
        directory, name = os.path.split(target)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(self.to_prometheus())
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def to_prometheus(self) -> str:
        """node_exporter textfile-collector metrics (``keepalive_check_*``)."""
        out: list[str] = []

        def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")
            seen: set[str] = set()
            for labels, value in samples:
                if labels in seen:  # one series per label set: node_exporter drops repeated series
                    continue
                seen.add(labels)
                out.append(f"{name}{labels} {_number(value)}")

        metric(
            "keepalive_check_status",
            "gauge",
            "Exit code of keepalive check: 0 ok, 1 warnings, 2 errors.",
            [("", self.exit_code)],
        )
        metric(
            "keepalive_check_findings",
            "gauge",
            "Number of findings by severity.",
            [(_labels(severity=s.value), len(self.by_severity(s))) for s in Severity],
        )
        by_code: dict[tuple[str, str], int] = {}
        for finding in self.findings:
            key = (finding.code, finding.severity.value)
            by_code[key] = by_code.get(key, 0) + 1
        metric(
            "keepalive_check_finding",
            "gauge",
            "Number of findings with this code and severity (a code can repeat, e.g. one per unreadable source).",
            [(_labels(code=code, severity=severity), n) for (code, severity), n in by_code.items()],
        )
        metric(
            "keepalive_check_path_timeout_seconds",
            "gauge",
            "Smallest idle timeout on the path (NaN when unknown).",
            [("", math.nan if self.path_timeout is None else self.path_timeout)],
        )
        policy_samples: list[tuple[str, float]] = []
        for which, policy in (("checked", self.policy), ("recommended", self.recommended_policy)):
            for param, value in (("idle", policy.idle), ("interval", policy.interval)):
                policy_samples.append((_labels(policy=which, param=param), value))
            user = math.nan if policy.user_timeout is None else policy.user_timeout
            policy_samples.append((_labels(policy=which, param="user_timeout"), user))
        metric(
            "keepalive_check_policy_seconds",
            "gauge",
            "Keepalive policy times, checked and recommended.",
            policy_samples,
        )
        metric(
            "keepalive_check_policy_probes",
            "gauge",
            "Keepalive probe count, checked and recommended.",
            [
                (_labels(policy="checked"), self.policy.count),
                (_labels(policy="recommended"), self.recommended_policy.count),
            ],
        )
        numeric = [s for s in self.sources if isinstance(s.value, int | float)]
        metric(
            "keepalive_check_source_value",
            "gauge",
            "Values read by keepalive check (booleans as 0/1), by source, origin and unit.",
            [
                (
                    _labels(source=s.name, origin=s.origin, unit=s.unit, limits_path="1" if s.limits_path else "0"),
                    float(s.value) if isinstance(s.value, float) else int(s.value),
                )
                for s in numeric
                if isinstance(s.value, int | float)
            ],
        )
        metric(
            "keepalive_check_source_known",
            "gauge",
            "1 when the source could be read, 0 when it is unknown, by source and origin.",
            [(_labels(source=s.name, origin=s.origin), 1 if s.known else 0) for s in self.sources],
        )
        counters = [(name, value) for name, value in self.conntrack.items() if name != "entries"]
        metric(
            "keepalive_check_conntrack_stat_total",
            "counter",
            "conntrack statistics from net/stat/nf_conntrack, summed over CPUs.",
            [(_labels(counter=name), value) for name, value in counters],
        )
        if self.conntrack_rates is not None:
            metric(
                "keepalive_check_conntrack_stat_rate",
                "gauge",
                f"Per-second increase of conntrack statistics over a {self.sample_seconds:g} s sample.",
                [(_labels(counter=name), value) for name, value in self.conntrack_rates.items()],
            )
        initial = {"initial": 1.0, "non-initial": 0.0}.get(self.namespace, math.nan)
        metric(
            "keepalive_check_namespace_initial",
            "gauge",
            "1 when the values describe the node's network namespace, 0 in a pod's, NaN when unknown.",
            [("", initial)],
        )
        metric(
            "keepalive_check_last_run_timestamp_seconds",
            "gauge",
            "Unix time of the last check.",
            [("", self.generated_at)],
        )
        return "\n".join(out) + "\n"
