"""kube-proxy's configuration: a KubeProxyConfiguration file (YAML or JSON) or its ``/configz`` on loopback.

Field paths vary between versions, so lookup is tolerant: keys match case-insensitively (``/configz`` of some
versions prints Go field names such as ``TCPEstablishedTimeout``), ``conntrack`` is looked for at the top and
under ``linux``, and a wrapper such as ``{"kubeproxy.config.k8s.io": {...}}`` (``/configz``) or a kubeadm
ConfigMap (``data: {config.conf: ...}``) is unwrapped. Nothing here raises for bad input.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from keepalive._path._parse import decode_text, describe, parse_duration
from keepalive._path._proc import read_bytes

__all__ = [
    "ENV_KUBE_PROXY_CONFIG",
    "IPVS_KERNEL_TCP_TIMEOUT",
    "KubeProxy",
    "NotLoopback",
    "fetch_configz",
    "loopback_url",
    "parse_kube_proxy",
    "read_kube_proxy_file",
]

ENV_KUBE_PROXY_CONFIG: Final = "KEEPALIVE_KUBE_PROXY_CONFIG"
#: The kernel's IPVS TCP timeout, used by kube-proxy when ipvs.tcpTimeout is 0 (the default).
IPVS_KERNEL_TCP_TIMEOUT: Final = 900
#: kube-proxy's defaults (v1alpha1 defaulting), used for fields a config file leaves out.
DEFAULT_ESTABLISHED: Final = 86400.0
DEFAULT_CLOSE_WAIT: Final = 3600.0
CONFIG_LIMIT: Final = 4 * 1024 * 1024
YAML_HINT: Final = (
    "the file is YAML and reading YAML needs PyYAML: pip install 'tcp-keepalive[yaml]' (or give the file as JSON)"
)


@dataclass(frozen=True, slots=True)
class KubeProxy:
    """What the checker takes from a KubeProxyConfiguration. Durations are seconds; None = not given/unreadable.

    ``defaulted`` names the fields that were absent and took kube-proxy's default; ``problems`` lists fields that
    were present but unreadable, with the reason.
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


def _get(mapping: object, *names: str) -> Any:
    """``mapping[name]`` for the first name that matches case-insensitively (ignoring ``_``/``-``), else None."""
    if not isinstance(mapping, Mapping):
        return None
    wanted = [_norm(name) for name in names]
    index = {_norm(key): value for key, value in mapping.items()}
    for name in wanted:
        if name in index:
            return index[name]
    return None


_MARKERS: Final = ("conntrack", "linux", "mode", "ipvs")


def _looks_like_config(obj: object) -> bool:
    return isinstance(obj, Mapping) and any(_get(obj, marker) is not None for marker in _MARKERS)


def _unwrap(obj: object, depth: int = 0) -> Mapping[str, Any] | None:
    """Find the KubeProxyConfiguration mapping in ``obj`` (``/configz`` wrapper, kubeadm ConfigMap, plain)."""
    if depth > 3 or not isinstance(obj, Mapping):
        return None
    kind = _get(obj, "kind")
    kind = kind.strip().lower() if isinstance(kind, str) else ""
    if kind and kind not in {"configmap", "kubeproxyconfiguration"}:
        return None  # another document of a kubeadm configuration file
    if kind == "configmap":
        data = _get(obj, "data")
        if isinstance(data, Mapping):
            for value in data.values():
                if isinstance(value, str):
                    inner, _ = _load_text(value)
                    for doc in _documents(inner):
                        found = _unwrap(doc, depth + 1)
                        if found is not None:
                            return found
        return None
    if kind == "kubeproxyconfiguration" or _looks_like_config(obj):
        return obj
    wrapped = [value for value in obj.values() if isinstance(value, Mapping)]
    if len(obj) == 1 and len(wrapped) == 1:
        return _unwrap(wrapped[0], depth + 1)
    return None


def _documents(loaded: object) -> Iterator[object]:
    if isinstance(loaded, list) and loaded and all(isinstance(d, Mapping | type(None)) for d in loaded):
        yield from (doc for doc in loaded if doc is not None)
    elif loaded is not None:
        yield loaded


def _load_text(text: str) -> tuple[object, str | None]:
    """JSON when the text is JSON, else YAML (all documents) when PyYAML is installed."""
    stripped = text.lstrip()
    json_reason = ""
    if stripped.startswith(("{", "[")):
        try:
            return json.loads(stripped), None
        except (ValueError, RecursionError) as exc:
            json_reason = f"not valid JSON: {exc}"
    try:
        import yaml
    except ImportError:
        return None, json_reason or YAML_HINT
    try:
        docs: list[object] = list(yaml.safe_load_all(text))
    except (yaml.YAMLError, ValueError, RecursionError, TypeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return None, json_reason or f"not valid YAML: {first}"
    if len(docs) == 1:
        return docs[0], None
    return docs, None


def _seconds(conntrack: object, key: str, problems: list[str], prefix: str) -> float | None:
    raw = _get(conntrack, key)
    if raw is None:
        return None
    value, reason = parse_duration(raw)
    if reason:
        problems.append(f"{prefix}{key}: {reason}")
        return None
    if value is not None and value < 0:
        problems.append(f"{prefix}{key}: negative duration {raw!r}")
        return None
    return value


def _int(mapping: object, key: str, problems: list[str], prefix: str) -> int | None:
    raw = _get(mapping, key)
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int):
        if isinstance(raw, str) and raw.strip().isdigit() and len(raw.strip()) <= 20:
            return int(raw.strip())
        problems.append(f"{prefix}{key}: expected a whole number, got {describe(repr(raw))}")
        return None
    return raw


def _bool(mapping: object, key: str, problems: list[str], prefix: str) -> bool | None:
    raw = _get(mapping, key)
    if raw is None:
        return None
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in {"true", "false"}:
        return raw.strip().lower() == "true"
    problems.append(f"{prefix}{key}: expected true or false, got {describe(repr(raw))}")
    return None


def parse_kube_proxy(text: str, origin: str, *, apply_defaults: bool = True) -> tuple[KubeProxy | None, str | None]:
    """Parse a KubeProxyConfiguration (YAML, JSON, a ``/configz`` body or a kubeadm ConfigMap).

    With ``apply_defaults`` (a file), absent conntrack timeouts take kube-proxy's defaults (24 h established,
    1 h close-wait), as kube-proxy itself does; ``/configz`` shows the values in force, so it needs none.
    """
    loaded, reason = _load_text(text)
    if reason:
        return None, reason
    root = None
    for doc in _documents(loaded):
        root = _unwrap(doc)
        if root is not None:
            break
    if root is None:
        return None, "no KubeProxyConfiguration found (no conntrack, mode or ipvs fields)"
    problems: list[str] = []
    conntrack = _get(_get(root, "linux"), "conntrack")
    prefix = "linux.conntrack."
    if conntrack is None:
        conntrack = _get(root, "conntrack")
        prefix = "conntrack."
    if conntrack is not None and not isinstance(conntrack, Mapping):
        problems.append(f"{prefix.rstrip('.')}: expected a mapping, got {type(conntrack).__name__}")
        conntrack = None
    established = _seconds(conntrack, "tcpEstablishedTimeout", problems, prefix)
    close_wait = _seconds(conntrack, "tcpCloseWaitTimeout", problems, prefix)
    defaulted: list[str] = []
    if apply_defaults and _get(conntrack, "tcpEstablishedTimeout") is None:
        established = DEFAULT_ESTABLISHED
        defaulted.append("tcpEstablishedTimeout")
    if apply_defaults and _get(conntrack, "tcpCloseWaitTimeout") is None:
        close_wait = DEFAULT_CLOSE_WAIT
        defaulted.append("tcpCloseWaitTimeout")
    mode = _get(root, "mode")
    if mode is not None and not isinstance(mode, str):
        problems.append(f"mode: expected a string, got {describe(repr(mode))}")
        mode = None
    ipvs = _get(root, "ipvs")
    return (
        KubeProxy(
            origin=origin,
            mode=mode or None,
            tcp_established_timeout=established,
            tcp_close_wait_timeout=close_wait,
            tcp_be_liberal=_bool(conntrack, "tcpBeLiberal", problems, prefix),
            max_per_core=_int(conntrack, "maxPerCore", problems, prefix),
            min=_int(conntrack, "min", problems, prefix),
            ipvs_tcp_timeout=_seconds(ipvs, "tcpTimeout", problems, "ipvs."),
            defaulted=tuple(defaulted),
            problems=tuple(problems),
        ),
        None,
    )


def read_kube_proxy_file(path: str) -> tuple[KubeProxy | None, str | None]:
    """Read and parse a KubeProxyConfiguration file; (None, reason) when that fails."""
    data, reason = read_bytes(path, CONFIG_LIMIT)
    if data is None:
        return None, reason
    text, reason = decode_text(data)
    if text is None:
        return None, reason
    return parse_kube_proxy(text, path)


class NotLoopback(ValueError):
    """A kube-proxy URL that does not point at this host's loopback: the checker only connects to loopback."""


def loopback_url(url: str) -> str:
    """Return ``url`` if it is an http(s) URL on loopback (127.0.0.0/8, ::1, or ``localhost`` resolving only to
    loopback); ``/configz`` is appended when the URL has no path.

    Raises:
        NotLoopback: with the reason, for any other URL.
    """
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise NotLoopback(f"kube-proxy URL {url!r} is not a valid URL: {exc}") from None
    if parts.scheme not in {"http", "https"}:
        raise NotLoopback(f"kube-proxy URL {url!r}: only http:// or https:// URLs on loopback are accepted")
    host = parts.hostname or ""
    if not host:
        raise NotLoopback(f"kube-proxy URL {url!r} has no host")
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        if host.lower() not in {"localhost", "localhost.localdomain", "ip6-localhost"}:
            raise NotLoopback(
                f"kube-proxy URL {url!r}: host {host!r} is not loopback; the checker only connects to "
                "127.0.0.1, ::1 or localhost (kube-proxy's metrics address is 127.0.0.1:10249)"
            ) from None
        try:
            infos = socket.getaddrinfo(host, port or 80, proto=socket.IPPROTO_TCP)
            addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
        except (OSError, ValueError) as exc:
            raise NotLoopback(f"kube-proxy URL {url!r}: cannot resolve {host!r}: {exc}") from None
    if not addresses or not all(address.is_loopback for address in addresses):
        raise NotLoopback(
            f"kube-proxy URL {url!r}: {host} is not a loopback address; the checker only connects to "
            "127.0.0.1, ::1 or localhost (kube-proxy's metrics address is 127.0.0.1:10249)"
        )
    if parts.path in {"", "/"}:
        parts = parts._replace(path="/configz")
    return urllib.parse.urlunsplit(parts)


def fetch_configz(url: str, timeout: float = 3.0) -> tuple[KubeProxy | None, str | None]:
    """GET kube-proxy's ``/configz`` on loopback (no proxies, no redirects) and parse it.

    Raises:
        NotLoopback: the URL is not on loopback (checked before any connection is made).
    """
    import urllib.error
    import urllib.request  # here, not at the top: `import keepalive` stays light

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None  # a redirect could lead off loopback

    target = loopback_url(url)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect)
    request = urllib.request.Request(target, headers={"Accept": "application/json"})
    try:
        with opener.open(request, timeout=timeout) as response:
            data = response.read(CONFIG_LIMIT + 1)
    except urllib.error.HTTPError as exc:
        return None, f"HTTP {exc.code} {exc.reason} from {target}"
    except urllib.error.URLError as exc:
        return None, f"cannot reach {target}: {exc.reason}"
    except (OSError, ValueError) as exc:
        return None, f"cannot read {target}: {exc}"
    if len(data) > CONFIG_LIMIT:
        return None, f"response larger than {CONFIG_LIMIT} bytes"
    text, reason = decode_text(data)
    if text is None:
        return None, reason
    return parse_kube_proxy(text, target, apply_defaults=False)
