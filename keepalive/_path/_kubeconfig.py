"""A KubeProxyConfiguration, or kube-proxy's flags, read into :class:`KubeProxy` the way kube-proxy reads them.

Field paths vary between versions, so lookup is tolerant: keys match case-insensitively (``/configz`` of some
versions prints Go field names such as ``TCPEstablishedTimeout``), ``conntrack`` is looked for at the top
(v1alpha1) and under ``linux`` (the internal type of 1.29+, v1alpha2), and a ``/configz`` wrapper
(``{"kubeproxy.config.k8s.io": {...}}``) or a ConfigMap (``data: {<any key>: ...}``) is unwrapped.

What kube-proxy itself would refuse to start with (a value of the wrong JSON type, a negative duration or
count, an unknown mode: its decoder and ``validation.go``) is listed in ``KubeProxy.refused``; ``problems`` is for
what could not be read. ``/configz`` shows a running kube-proxy's values, so nothing there is "refused".
Nothing here raises for bad input.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from keepalive._path._kubeflags import FLAGS, KubeFlags, go_bool, go_int32, parse_go_duration, whole_seconds
from keepalive._path._parse import describe

__all__ = [
    "DEFAULTS",
    "IPVS_KERNEL_TCP_TIMEOUT",
    "KubeProxy",
    "documents",
    "from_config",
    "from_flags",
    "get",
    "load_embedded",
    "load_text",
    "unwrap_config",
]

#: The kernel's IPVS TCP timeout, used by kube-proxy when ipvs.tcpTimeout is 0 (the default).
IPVS_KERNEL_TCP_TIMEOUT: Final = 900
#: kube-proxy's defaults (``pkg/proxy/apis/config/v1alpha1/defaults.go``) for absent or ``null`` fields.
DEFAULTS: Final[dict[str, object]] = {
    "tcpEstablishedTimeout": 86400.0,
    "tcpCloseWaitTimeout": 3600.0,
    "maxPerCore": 32768,
    "min": 131072,
    "tcpBeLiberal": False,
    "tcpTimeout": 0.0,
}
#: Proxy modes kube-proxy accepts on Linux ("" = iptables); ``userspace`` until 1.25, ``nftables`` from 1.29.
MODES: Final = frozenset({"", "iptables", "ipvs", "nftables", "userspace"})
YAML_HINT: Final = (
    "the file is YAML and reading YAML needs PyYAML: pip install 'tcp-keepalive[yaml]' (or give the file as JSON)"
)
REFUSES: Final = "kube-proxy refuses to start with it"


@dataclass(frozen=True, slots=True)
class KubeProxy:
    """What the checker takes from kube-proxy's configuration. Durations are whole seconds (kube-proxy truncates
    them when it writes the sysctls); None = not given or unreadable.

    ``defaulted`` names the fields that were absent (or ``null``) and took kube-proxy's default; ``problems``
    lists what could not be read, with the reason; ``refused`` lists, one text each, the fields kube-proxy itself
    would refuse to start with (such a field's value is None); ``notes`` are facts worth reporting (flags that
    kube-proxy ignores because of ``--config``, a sub-second duration written as 0, ...).
    """

    origin: str
    mode: str | None = None
    tcp_established_timeout: float | None = None
    tcp_close_wait_timeout: float | None = None
    tcp_be_liberal: bool | None = None
    max_per_core: int | None = None
    min: int | None = None
    ipvs_tcp_timeout: float | None = None
    defaulted: tuple[str, ...] = ()
    problems: tuple[str, ...] = field(default=())
    refused: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def effective_mode(self) -> str:
        """The proxy mode; an empty or missing mode is kube-proxy's default on Linux, ``iptables``."""
        return (self.mode or "iptables").lower()

    @property
    def ipvs_timeout(self) -> float | None:
        """In IPVS mode: the idle timeout of IPVS connections (``ipvs.tcpTimeout``, 0 = the kernel's 900 s)."""
        if self.effective_mode != "ipvs":
            return None
        if not self.ipvs_tcp_timeout:
            return float(IPVS_KERNEL_TCP_TIMEOUT)
        return self.ipvs_tcp_timeout


def _norm(key: object) -> str:
    return str(key).lower().replace("_", "").replace("-", "")


def get(mapping: object, *names: str) -> Any:
    """``mapping[name]`` for the first name that matches case-insensitively (ignoring ``_``/``-``), else None."""
    if not isinstance(mapping, Mapping):
        return None
    index = {_norm(key): value for key, value in mapping.items()}
    for name in names:
        if _norm(name) in index:
            return index[_norm(name)]
    return None


def _has(mapping: object, name: str) -> bool:
    return isinstance(mapping, Mapping) and any(_norm(key) == _norm(name) for key in mapping)


def documents(loaded: object) -> Iterator[object]:
    """The documents of a loaded file: each of a multi-document list, the items of a ``kind: List``, or itself."""
    if isinstance(loaded, list) and all(isinstance(d, Mapping | type(None)) for d in loaded):
        for doc in loaded:
            yield from documents(doc)
    elif isinstance(loaded, Mapping) and str(get(loaded, "kind") or "").endswith("List"):
        items = get(loaded, "items")
        if isinstance(items, list):
            yield from (item for item in items if isinstance(item, Mapping))
    elif loaded is not None:
        yield loaded


def load_text(text: str) -> tuple[object, str | None]:
    """JSON when the text is JSON (no PyYAML needed), else YAML (a list when it has several documents).

    YAML needs PyYAML (``tcp-keepalive[yaml]``). When it is installed, the strict subset of :mod:`._kubeyaml` is
    tried first: it reads what kubeadm and kubectl write exactly as PyYAML does (tests/test_kubeproxy_yaml.py) and
    refuses anything else, and it costs a fraction of PyYAML's import (about 30 ms, all of it on the thread that
    asks: the default policy's, when ``KEEPALIVE_KUBE_PROXY_CONFIG`` is set). PyYAML reads what the subset refuses.
    """
    stripped = text.lstrip()
    json_reason = ""
    if stripped.startswith(("{", "[")):
        import json  # here: only JSON text needs it

        try:
            return json.loads(stripped), None
        except (ValueError, RecursionError) as exc:
            json_reason = f"not valid JSON: {exc}"
    import importlib.util

    if importlib.util.find_spec("yaml") is None:
        return None, json_reason or YAML_HINT
    if not json_reason:
        from keepalive._path._kubeyaml import load_block_yaml

        value, why = load_block_yaml(text)
        if why is None:
            return value, None
    try:
        import yaml
    except ImportError:
        return None, json_reason or YAML_HINT
    try:
        docs: list[object] = list(yaml.safe_load_all(text))
    except (yaml.YAMLError, ValueError, RecursionError, TypeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return None, json_reason or f"not valid YAML: {first}"
    return (docs[0] if len(docs) == 1 else docs), None


def load_embedded(text: str) -> tuple[object, str | None]:
    """YAML text inside something the user gave without YAML (a JSON ConfigMap, a running kube-proxy's
    ``--config`` file): PyYAML when installed, else the strict subset of :mod:`._kubeyaml`, else the hint."""
    loaded, reason = load_text(text)
    if reason != YAML_HINT:
        return loaded, reason
    from keepalive._path._kubeyaml import load_block_yaml

    value, why = load_block_yaml(text)
    if why is None:
        return value, None
    return None, f"{YAML_HINT}; {why}"


def kind_of(doc: object) -> str:
    """``kind`` of a document, lower case ("" when it has none)."""
    kind = get(doc, "kind")
    return kind.strip().lower() if isinstance(kind, str) else ""


def _looks_like_config(obj: Mapping[str, Any]) -> bool:
    return any(get(obj, marker) is not None for marker in ("conntrack", "linux", "mode", "ipvs"))


def unwrap_config(doc: object, depth: int = 0) -> tuple[Mapping[str, Any] | None, str | None]:
    """The KubeProxyConfiguration in ``doc`` (itself, a ``/configz`` wrapper, or inside a ConfigMap), or
    (None, reason) when a ConfigMap's data could not be read (e.g. YAML without PyYAML), or (None, None)."""
    if depth > 3 or not isinstance(doc, Mapping):
        return None, None
    kind = kind_of(doc)
    if kind == "configmap":
        data = get(doc, "data")
        reasons: list[str] = []
        for value in data.values() if isinstance(data, Mapping) else ():
            if not isinstance(value, str) or not value.strip():
                continue
            inner, reason = load_embedded(value)
            if reason:
                reasons.append(reason)
                continue
            for inner_doc in documents(inner):
                found, why = unwrap_config(inner_doc, depth + 1)
                if found is not None:
                    return found, None
                if why:
                    reasons.append(why)
        return None, next((reason for reason in reasons if YAML_HINT in reason), None)
    if kind == "kubeproxyconfiguration" or (not kind and _looks_like_config(doc)):
        return doc, None
    if kind:
        return None, None  # another document: a kubeadm ClusterConfiguration, a Service, ...
    wrapped = [value for value in doc.values() if isinstance(value, Mapping)]
    if len(doc) == 1 and len(wrapped) == 1:
        return unwrap_config(wrapped[0], depth + 1)
    return None, None


class _Reader:
    """Collects values and what went wrong; ``strict``: a bad value is something kube-proxy refuses."""

    def __init__(self, origin: str, *, strict: bool, apply_defaults: bool) -> None:
        self.origin = origin
        self.strict = strict
        self.apply_defaults = apply_defaults
        self.values: dict[str, object] = {}
        self.defaulted: list[str] = []
        self.problems: list[str] = []
        self.refused: list[str] = []
        self.notes: list[str] = []

    def bad(self, where: str, what: str) -> None:
        if self.strict:
            self.refused.append(f"{where}: {what}; {REFUSES}")
        else:
            self.problems.append(f"{where}: {what}")

    def default(self, key: str) -> None:
        if self.apply_defaults:
            self.values[key] = DEFAULTS[key]
            self.defaulted.append(key)

    def nanoseconds(self, key: str, where: str, nanos: int, shown: str) -> None:
        if nanos < 0:
            self.bad(where, f"{shown} is negative (must be greater than or equal to 0)")
            return
        seconds = whole_seconds(nanos)
        if nanos > 0 and seconds * 1_000_000_000 != nanos:
            self.notes.append(
                f"{where}: {shown} is written as {seconds} s (kube-proxy truncates to whole seconds)"
                + ("; 0 in the sysctl means entries expire at once" if seconds == 0 and key != "tcpTimeout" else "")
            )
        self.values[key] = float(seconds)

    def build(self) -> KubeProxy:
        v = self.values
        return KubeProxy(
            origin=self.origin,
            mode=v.get("mode") or None,  # type: ignore[arg-type]
            tcp_established_timeout=v.get("tcpEstablishedTimeout"),  # type: ignore[arg-type]
            tcp_close_wait_timeout=v.get("tcpCloseWaitTimeout"),  # type: ignore[arg-type]
            tcp_be_liberal=v.get("tcpBeLiberal"),  # type: ignore[arg-type]
            max_per_core=v.get("maxPerCore"),  # type: ignore[arg-type]
            min=v.get("min"),  # type: ignore[arg-type]
            ipvs_tcp_timeout=v.get("tcpTimeout"),  # type: ignore[arg-type]
            defaulted=tuple(self.defaulted),
            problems=tuple(self.problems),
            refused=tuple(self.refused),
            notes=tuple(self.notes),
        )


def _kind_name(raw: object) -> str:
    if isinstance(raw, bool):
        return f"the boolean {str(raw).lower()}"
    if isinstance(raw, int | float):
        return f"the number {raw!r}"
    if isinstance(raw, str):
        return f"the string {describe(raw)}"
    if isinstance(raw, list):
        return "a list"
    if isinstance(raw, Mapping):
        return "a mapping"
    return type(raw).__name__


def _typed(reader: _Reader, key: str, kind: str, raw: object, where: str) -> None:
    """One field of a decoded document, checked the way Go's JSON decoder checks it."""
    if kind == "duration":
        if not isinstance(raw, str):  # metav1.Duration only unmarshals from a JSON string
            reader.bad(where, f"expected a duration string such as '24h0m0s', got {_kind_name(raw)}")
            return
        nanos, reason = parse_go_duration(raw)
        if nanos is None:
            reader.bad(where, str(reason))
            return
        reader.nanoseconds(key, where, nanos, repr(raw))
    elif kind == "int32":
        if isinstance(raw, bool) or not isinstance(raw, int):
            reader.bad(where, f"expected a whole number, got {_kind_name(raw)}")
        elif not -(2**31) <= raw < 2**31:
            reader.bad(where, f"{raw} does not fit a 32-bit integer")
        elif raw < 0:
            reader.bad(where, f"{raw} is negative (must be greater than or equal to 0)")
        else:
            reader.values[key] = raw
    elif kind == "bool":
        if isinstance(raw, bool):
            reader.values[key] = raw
        else:
            reader.bad(where, f"expected true or false, got {_kind_name(raw)}")
    else:
        _mode(reader, raw, where)


def _mode(reader: _Reader, raw: object, where: str) -> None:
    if not isinstance(raw, str):
        reader.bad(where, f"expected a string, got {_kind_name(raw)}")
    elif raw in MODES or (not reader.strict and raw.lower() in MODES):
        reader.values["mode"] = raw
    else:
        reader.bad(where, f"unknown proxy mode {describe(raw)} (iptables, ipvs, nftables or empty)")


#: (key, kind) of the conntrack fields, in the order they are reported.
_CONNTRACK: Final = (
    ("maxPerCore", "int32"),
    ("min", "int32"),
    ("tcpEstablishedTimeout", "duration"),
    ("tcpCloseWaitTimeout", "duration"),
    ("tcpBeLiberal", "bool"),
)


def from_config(root: Mapping[str, Any], origin: str, *, apply_defaults: bool = True) -> KubeProxy:
    """Read a KubeProxyConfiguration mapping. ``apply_defaults`` (a file: strict, defaults for absent/null fields)
    or not (``/configz``: the values in force, so nothing is defaulted and nothing is "refused")."""
    reader = _Reader(origin, strict=apply_defaults, apply_defaults=apply_defaults)
    linux = get(root, "linux")
    conntrack, prefix = get(linux, "conntrack"), "linux.conntrack"
    if conntrack is None:
        conntrack, prefix = get(root, "conntrack"), "conntrack"
    if conntrack is not None and not isinstance(conntrack, Mapping):
        reader.bad(prefix, f"expected a mapping, got {_kind_name(conntrack)}")
        conntrack = {}
    for key, kind in _CONNTRACK:
        raw = get(conntrack, key)
        if raw is None:
            reader.default(key)
        else:
            _typed(reader, key, kind, raw, f"{prefix}.{key}")
    ipvs = get(root, "ipvs")
    if ipvs is not None and not isinstance(ipvs, Mapping):
        reader.bad("ipvs", f"expected a mapping, got {_kind_name(ipvs)}")
        ipvs = {}
    raw = get(ipvs, "tcpTimeout")
    if raw is None:
        reader.default("tcpTimeout")
    else:
        _typed(reader, "tcpTimeout", "duration", raw, "ipvs.tcpTimeout")
    mode = get(root, "mode")
    if mode is not None:
        _mode(reader, mode, "mode")
    return reader.build()


def from_flags(flags: KubeFlags, origin: str) -> KubeProxy:
    """kube-proxy run by flags alone (no ``--config``): each flag as pflag parses it, kube-proxy's defaults for
    the rest (the flags' defaults are the defaulted v1alpha1 configuration)."""
    reader = _Reader(origin, strict=True, apply_defaults=True)
    reader.refused.extend(f"{text}; {REFUSES}" for text in flags.refused)
    for name, (path, kind) in FLAGS.items():
        key = path.rpartition(".")[2]
        raw = flags.values.get(name)
        if raw is None:
            if key != "mode" and name not in flags.missing:
                reader.default(key)
            continue
        where = f"--{name}={raw}"
        if kind == "duration":
            nanos, reason = parse_go_duration(raw)
            if nanos is None:
                reader.bad(where, f"invalid argument: {reason}")
            else:
                reader.nanoseconds(key, where, nanos, repr(raw))
        elif kind == "int32":
            number, reason = go_int32(raw)
            if number is None:
                reader.bad(where, f"invalid argument: {reason}")
            elif number < 0:
                reader.bad(where, f"{number} is negative (must be greater than or equal to 0)")
            else:
                reader.values[key] = number
        elif kind == "bool":
            flag, reason = go_bool(raw)
            if flag is None:
                reader.bad(where, f"invalid argument: {reason}")
            else:
                reader.values[key] = flag
        else:
            _mode(reader, raw, where)
    return reader.build()
