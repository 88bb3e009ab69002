"""kube-proxy as it really runs: its configuration file, the flags it was started with, its ``/configz``.

``--kube-proxy-config`` takes a KubeProxyConfiguration (YAML or JSON, any version), a ConfigMap (any data key),
a multi-document file, a DaemonSet/Pod/Deployment manifest (its kube-proxy container's command and args, and the
``--config`` file they name: from a ConfigMap in the same file or a hostPath on this host), a file holding a
command line, or a copy of ``/proc/<pid>/cmdline``. :func:`discover_kube_proxy` finds a running kube-proxy
through ``<proc root>/*/cmdline`` (a hostPID DaemonSet sees the node's processes). Nothing here raises for bad
input: every reader returns ``(KubeProxy, None)`` or ``(None, reason)``.

Flags and ``--config``: kube-proxy replaces its whole flag-built configuration with the file when ``--config`` is
given (``Options.Complete`` in ``cmd/kube-proxy/app/options.go``: ``o.config = c``; only logging flags and
``--hostname-override`` survive), so with ``--config`` the conntrack, IPVS and mode flags are ignored, and we
ignore them too, with a note saying so. Without ``--config`` each flag overrides kube-proxy's default.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

from keepalive._path._kubeconfig import (
    IPVS_KERNEL_TCP_TIMEOUT,
    KubeProxy,
    documents,
    from_config,
    from_flags,
    load_embedded,
    load_text,
    unwrap_config,
)
from keepalive._path._kubeflags import (
    command_argv,
    kube_proxy_argv,
    looks_like_command_line,
    nul_argv,
    parse_flags,
)
from keepalive._path._kubemanifest import config_map_text, find_container, locate_config
from keepalive._path._pace import pause
from keepalive._path._parse import decode_text
from keepalive._path._proc import ENV_KUBE_PROXY_CONFIG, read_bytes

__all__ = [
    "ENV_KUBE_PROXY_CONFIG",
    "IPVS_KERNEL_TCP_TIMEOUT",
    "KubeProxy",
    "NotLoopback",
    "discover_kube_proxy",
    "fetch_configz",
    "loopback_url",
    "parse_kube_proxy",
    "read_kube_proxy_file",
]

#: kube-proxy's defaults for the established and close-wait timeouts (kept for callers of 0.1).
DEFAULT_ESTABLISHED: Final = 86400.0
DEFAULT_CLOSE_WAIT: Final = 3600.0
CONFIG_LIMIT: Final = 4 * 1024 * 1024
#: Discovery's bounds: /proc entries looked at, bytes of one cmdline, bytes of all cmdlines together.
MAX_PROC_ENTRIES: Final = 100_000
#: Processes looked at between two pauses of a paced scan (:mod:`._pace`): a few hundred microseconds of work.
_PIDS_PER_STEP: Final = 32
CMDLINE_LIMIT: Final = 256 * 1024
CMDLINE_BUDGET: Final = 32 * 1024 * 1024
NOT_FOUND: Final = (
    "no KubeProxyConfiguration found (no conntrack, mode or ipvs fields, no kube-proxy container, no kube-proxy "
    "command line)"
)

ReadConfig = Callable[[str], tuple[KubeProxy | None, str | None]]


def _config_only(text: str, origin: str) -> tuple[KubeProxy | None, str | None]:
    """A ``--config`` file: kube-proxy accepts only a KubeProxyConfiguration there. It was named by something
    the user gave (a command line, a manifest, a running process), so its YAML is read without PyYAML too."""
    loaded, reason = load_embedded(text)
    if reason:
        return None, reason
    for doc in documents(loaded):
        root, _ = unwrap_config(doc)
        if root is not None:
            return from_config(root, origin), None
    return None, "not a KubeProxyConfiguration"


def _read_config_file(path: str) -> tuple[KubeProxy | None, str | None]:
    data, reason = read_bytes(path, CONFIG_LIMIT)
    if data is None:
        return None, f"{path}: {reason}"
    text, reason = decode_text(data)
    if text is None:
        return None, f"{path}: {reason}"
    proxy, reason = _config_only(text, path)
    return proxy, (f"{path}: {reason}" if reason else None)


def _from_argv(flags_argv: Sequence[str], origin: str, read_config: ReadConfig) -> tuple[KubeProxy | None, str | None]:
    """kube-proxy's flags; with ``--config`` the file they name decides (see the module's docstring)."""
    flags = parse_flags(flags_argv)
    if flags.config is None:
        return from_flags(flags, origin), None
    if not flags.config:
        return None, f"{origin}: --config is empty; kube-proxy refuses to start with it"
    proxy, reason = read_config(flags.config)
    if proxy is None:
        return None, (
            f"{origin} runs kube-proxy with --config {flags.config}, which cannot be read here ({reason}); "
            "give that file (or its ConfigMap) with --kube-proxy-config"
        )
    notes = [*proxy.notes, f"the configuration file named by --config {flags.config} in {origin}"]
    ignored = flags.given()
    if ignored:
        notes.append(f"{' '.join(ignored)} ignored: kube-proxy ignores these flags when --config is given")
    refused = (*proxy.refused, *(f"{text}; kube-proxy refuses to start with it" for text in flags.refused))
    return dataclasses.replace(proxy, notes=tuple(notes), refused=refused), None


def _read_local(path: str) -> tuple[KubeProxy | None, str | None]:
    return _read_config_file(path)


def _parse(
    text: str, origin: str, apply_defaults: bool, read_config: ReadConfig
) -> tuple[KubeProxy | None, str | None]:
    if looks_like_command_line(text):
        argv = command_argv(text)
        if argv is None:
            return None, "a command line that cannot be split (an unclosed quote)"
        flags = kube_proxy_argv(argv)
        return _from_argv(argv if flags is None else flags, origin, read_config)
    loaded, reason = load_text(text)
    if reason:
        return None, reason
    docs = list(documents(loaded))
    for doc in docs:  # a workload runs kube-proxy: its command line decides, whatever else the file holds
        found = find_container(doc)
        if found is None:
            continue
        where = f"{origin} ({found.label})"

        def from_volume(path: str, found: Any = found, where: str = where) -> tuple[KubeProxy | None, str | None]:
            location = locate_config(found, path)
            if location.kind == "configmap":
                inner = config_map_text(docs, location)
                if inner is None:
                    return None, (
                        f"it is key {location.key!r} of ConfigMap {location.name!r}, which this file does not hold: "
                        f"kubectl -n <namespace> get configmap {location.name} -o yaml"
                    )
                return _config_only(inner, f"{origin} (ConfigMap {location.name}, key {location.key})")
            if location.kind == "hostpath":
                return _read_config_file(location.path)
            return None, location.reason

        return _from_argv(found.flags, where, from_volume)
    hint = None
    for doc in docs:
        root, why = unwrap_config(doc)
        if root is not None:
            return from_config(root, origin, apply_defaults=apply_defaults), None
        hint = hint or why
    return None, hint or NOT_FOUND


def parse_kube_proxy(text: str, origin: str, *, apply_defaults: bool = True) -> tuple[KubeProxy | None, str | None]:
    """Parse any shape ``--kube-proxy-config`` takes (see the module's docstring), or a ``/configz`` body.

    With ``apply_defaults`` (a file), absent or ``null`` fields take kube-proxy's defaults and bad values are
    listed in ``refused``; ``/configz`` shows the values in force, so it needs neither.
    """
    return _parse(text, origin, apply_defaults, _read_local)


def read_kube_proxy_file(path: str) -> tuple[KubeProxy | None, str | None]:
    """Read and parse a file of any shape ``--kube-proxy-config`` takes; (None, reason) when that fails."""
    if not str(path).strip():
        return None, "an empty path: name the kube-proxy configuration file"
    data, reason = read_bytes(path, CONFIG_LIMIT)
    if data is None:
        return None, reason
    argv = nul_argv(data) if b"\x00" in data else None
    if argv is not None:  # a copy of /proc/<pid>/cmdline
        flags = kube_proxy_argv(argv)
        if flags is None:
            return None, "NUL-separated words, but not a kube-proxy command line"
        return _from_argv(flags, path, _read_local)
    text, reason = decode_text(data)
    if text is None:
        return None, reason
    return parse_kube_proxy(text, path)


def _runs_kube_proxy(argv: Sequence[str]) -> list[str] | None:
    """The flags when the process itself is kube-proxy (not a wrapper such as go-runner that starts it)."""
    if not argv:
        return None
    if os.path.basename(argv[0]) == "kube-proxy":
        return list(argv[1:])
    if os.path.basename(argv[0]) == "hyperkube" and len(argv) > 1 and argv[1] in ("kube-proxy", "proxy"):
        return list(argv[2:])
    return None


def discover_kube_proxy(proc_root: str) -> tuple[KubeProxy | None, str | None]:
    """Find a running kube-proxy through ``<proc_root>/<pid>/cmdline`` and read its flags and ``--config`` file.

    The ``--config`` path is in kube-proxy's mount namespace, so it is read through ``<proc_root>/<pid>/root``
    when that exists. Returns (None, None) when no kube-proxy runs, (None, reason) when one runs but can't be
    read (or the search stopped at its bounds); with several, the lowest pid is read.
    """
    root = os.fspath(proc_root)
    pids: list[int] = []
    truncated = False
    try:
        with os.scandir(root) as entries:
            for count, entry in enumerate(entries):
                if count >= MAX_PROC_ENTRIES:
                    truncated = True
                    break
                if entry.name.isdigit() and entry.name.isascii():
                    pids.append(int(entry.name))
    except (OSError, ValueError) as exc:
        return None, f"cannot list the processes in {proc_root}: {getattr(exc, 'strerror', None) or exc}"
    budget = CMDLINE_BUDGET
    for index, pid in enumerate(sorted(pids)):
        if index % _PIDS_PER_STEP == _PIDS_PER_STEP - 1:
            pause()  # the runtime check yields here, so an event loop in this process keeps its turns
        data, _ = read_bytes(os.path.join(root, str(pid), "cmdline"), CMDLINE_LIMIT)
        if not data:
            continue  # gone, a kernel thread, unreadable, or too long to be kube-proxy's
        budget -= len(data)
        flags = _runs_kube_proxy(nul_argv(data) or [])
        if flags is not None:
            return _from_argv(flags, f"kube-proxy process {pid}", functools.partial(_read_in, root, pid))
        if budget <= 0:
            truncated = True
            break
    if truncated:
        return None, f"stopped looking for kube-proxy in {proc_root} at the scan's bounds (too many processes)"
    return None, None


def _read_in(root: str, pid: int, path: str) -> tuple[KubeProxy | None, str | None]:
    """A file as process ``pid`` sees it: through ``<root>/<pid>/root`` (its mount namespace) when that exists."""
    base = os.path.join(root, str(pid), "root" if path.startswith("/") else "cwd")
    if os.path.isdir(base):
        return _read_config_file(os.path.join(base, path.lstrip("/")))
    if os.path.lexists(base):  # the link is there but can't be followed: not the host's file of the same name
        return None, f"cannot enter kube-proxy's mount namespace through {base} (permission denied?)"
    return _read_config_file(path)


class NotLoopback(ValueError):
    """A kube-proxy URL that does not point at this host's loopback: the checker only connects to loopback."""


def loopback_url(url: str) -> str:
    """Return ``url`` if it is an http(s) URL on loopback (127.0.0.0/8, ::1, or ``localhost`` resolving only to
    loopback); ``/configz`` is appended when the URL has no path.

    Raises:
        NotLoopback: with the reason, for any other URL.
    """
    import ipaddress  # here: only a URL needs them, and the runtime check imports this module
    import urllib.parse

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


class _Buffered:
    """Enough of a socket for ``http.client.HTTPResponse`` to parse a response already read."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def makefile(self, mode: str, *args: Any, **kwargs: Any) -> Any:
        import io

        return io.BytesIO(self.data)


def _get(target: str, timeout: float) -> tuple[int, str, bytes]:
    """GET ``target`` (HTTP/1.0, no proxies, no redirects) within ``timeout`` seconds in total.

    Every wait (connect, TLS, each read) gets only the time left, so a server that sends one byte a second
    cannot hold the caller past the deadline. Raises TimeoutError, OSError or ValueError.
    """
    import http.client
    import urllib.parse

    deadline = time.monotonic() + timeout
    parts = urllib.parse.urlsplit(target)

    def left() -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        return remaining

    default_port = 443 if parts.scheme == "https" else 80
    sock = socket.create_connection((parts.hostname or "", parts.port or default_port), timeout=left())
    try:
        if parts.scheme == "https":
            import ssl

            sock.settimeout(left())
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=parts.hostname)
        path = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
        host = parts.netloc.rpartition("@")[2]
        sock.settimeout(left())
        sock.sendall(
            f"GET {path} HTTP/1.0\r\nHost: {host}\r\nAccept: application/json\r\nConnection: close\r\n\r\n".encode()
        )
        chunks: list[bytes] = []
        size = 0
        while size <= CONFIG_LIMIT + 65536:
            sock.settimeout(left())
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        sock.close()
    response = http.client.HTTPResponse(_Buffered(b"".join(chunks)))  # type: ignore[arg-type]
    try:
        response.begin()
        body = response.read()
    except (http.client.HTTPException, ValueError) as exc:
        raise ValueError(f"not an HTTP response ({type(exc).__name__})") from None
    return response.status, response.reason, body


def fetch_configz(url: str, timeout: float = 3.0) -> tuple[KubeProxy | None, str | None]:
    """GET kube-proxy's ``/configz`` on loopback (no proxies, no redirects) and parse it. ``timeout`` is a total
    deadline for connecting, the headers and the body.

    Raises:
        NotLoopback: the URL is not on loopback (checked before any connection is made).
    """
    target = loopback_url(url)
    try:
        status, reason, data = _get(target, timeout)
    except TimeoutError:
        return None, f"no complete answer from {target} within {timeout:g} s"
    except ConnectionRefusedError:
        return None, f"cannot reach {target}: connection refused"
    except OSError as exc:
        return None, f"cannot reach {target}: {exc.strerror or exc}"
    except ValueError as exc:
        return None, f"cannot read {target}: {exc}"
    if status != 200:
        extra = " (redirects are not followed)" if 300 <= status < 400 else ""
        return None, f"HTTP {status} {reason} from {target}{extra}"
    if len(data) > CONFIG_LIMIT:
        return None, f"response larger than {CONFIG_LIMIT} bytes"
    text, why = decode_text(data)
    if text is None:
        return None, why
    return parse_kube_proxy(text, target, apply_defaults=False)
