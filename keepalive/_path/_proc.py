"""Local reads: sysctls and conntrack statistics under a proc root, and the network namespace we are in.

Only reads; never writes a sysctl, never raises for bad input: every value comes back with the reason it is
unknown. Sysctls under ``/proc/sys/net`` always show the network namespace of the *reading process*, whatever
proc root they are read through; ``<proc root>/net`` is ``self/net``, so the same holds for the statistics.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import namedtuple

from keepalive._path._source import Source
from keepalive._path._text import decode_text, parse_int

# No typing at run time: this module is on the default policy's cheap path (the caller's thread, maybe an event
# loop's), where importing typing costs milliseconds.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final, NamedTuple

    from keepalive._path._parse import NfStat

    class _NamespaceFields(NamedTuple):
        state: str
        evidence: str

else:
    _NamespaceFields = namedtuple("Namespace", ("state", "evidence"))

__all__ = [
    "ENV_KUBE_PROXY_CONFIG",
    "ENV_PROC_ROOT",
    "NAMESPACE_INITIAL",
    "NAMESPACE_OTHER",
    "NAMESPACE_UNKNOWN",
    "SYSCTLS",
    "Namespace",
    "default_proc_root",
    "detect_namespace",
    "proc_root_problem",
    "read_bytes",
    "read_nf_stat",
    "read_sysctl",
    "sysctl_path",
]

ENV_PROC_ROOT: Final = "KEEPALIVE_PROC_ROOT"
#: kube-proxy's configuration file (read by :mod:`._kubeproxy`); here so the path model can name it without
#: importing the kube-proxy readers.
ENV_KUBE_PROXY_CONFIG: Final = "KEEPALIVE_KUBE_PROXY_CONFIG"
DEFAULT_PROC_ROOT: Final = "/proc"

ESTABLISHED: Final = "net.netfilter.nf_conntrack_tcp_timeout_established"
CLOSE_WAIT: Final = "net.netfilter.nf_conntrack_tcp_timeout_close_wait"
BE_LIBERAL: Final = "net.netfilter.nf_conntrack_tcp_be_liberal"
LOOSE: Final = "net.netfilter.nf_conntrack_tcp_loose"
COUNT: Final = "net.netfilter.nf_conntrack_count"
MAX: Final = "net.netfilter.nf_conntrack_max"
BUCKETS: Final = "net.netfilter.nf_conntrack_buckets"
KEEPALIVE_TIME: Final = "net.ipv4.tcp_keepalive_time"
KEEPALIVE_INTVL: Final = "net.ipv4.tcp_keepalive_intvl"
KEEPALIVE_PROBES: Final = "net.ipv4.tcp_keepalive_probes"

#: The sysctls the checker reads, with their units.
SYSCTLS: Final = (
    (ESTABLISHED, "s"),
    (CLOSE_WAIT, "s"),
    (BE_LIBERAL, ""),
    (LOOSE, ""),
    (COUNT, "entries"),
    (MAX, "entries"),
    (KEEPALIVE_TIME, "s"),
    (KEEPALIVE_INTVL, "s"),
    (KEEPALIVE_PROBES, "probes"),
)

SYSCTL_LIMIT: Final = 4096
NF_STAT_LIMIT: Final = 4 * 1024 * 1024

NAMESPACE_INITIAL: Final = "initial"
NAMESPACE_OTHER: Final = "non-initial"
NAMESPACE_UNKNOWN: Final = "unknown"

_MISSING_ERRNOS: Final = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EBADF})


def default_proc_root(environ: dict[str, str] | None = None) -> str:
    """``KEEPALIVE_PROC_ROOT`` when set (e.g. ``/host/proc``), else ``/proc``."""
    env = os.environ if environ is None else environ
    return env.get(ENV_PROC_ROOT, "").strip() or DEFAULT_PROC_ROOT


def sysctl_path(proc_root: str | os.PathLike[str], name: str) -> str:
    """``net.ipv4.tcp_keepalive_time`` -> ``<proc_root>/sys/net/ipv4/tcp_keepalive_time``."""
    return os.path.join(os.fspath(proc_root), "sys", *name.split("."))


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, IsADirectoryError):
        return "is a directory"
    if exc.errno == errno.ELOOP:
        return "too many symbolic links"
    return exc.strerror or type(exc).__name__


def read_bytes(path: str | os.PathLike[str], limit: int) -> tuple[bytes | None, str | None]:
    """At most ``limit`` bytes of a regular file (proc files included), or the reason it can't be read.

    Opens non-blocking and refuses anything but a regular file, so a FIFO or device never hangs the check.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        return None, _os_reason(exc)
    except ValueError as exc:  # embedded NUL in the path
        return None, str(exc)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None, "not a regular file"
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(65536, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            return None, f"larger than {limit} bytes"
        return b"".join(chunks), None
    except OSError as exc:
        return None, _os_reason(exc)
    finally:
        os.close(fd)


def _is_dir(path: str) -> bool | None:
    """Whether ``path`` is a directory; None when it does not exist (ENOENT, ENOTDIR, ELOOP, EBADF, as
    ``Path.exists()`` has it). Any other OSError is raised, to be shown."""
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except OSError as exc:
        if exc.errno in _MISSING_ERRNOS:
            return None
        raise


def proc_root_problem(proc_root: str | os.PathLike[str]) -> str | None:
    """Why ``proc_root`` is not a mounted proc (missing, not a directory, no ``sys`` directory), or None."""
    # os.stat, not pathlib: this runs on the caller's thread (the default policy), where every import costs.
    try:
        root = os.fspath(proc_root)
        is_dir = _is_dir(root)
        if is_dir is None:
            return "does not exist"
        if not is_dir:
            return "is not a directory"
        if not _is_dir(os.path.join(root, "sys")):
            return "is not a proc tree (no sys directory: an empty or unmounted hostPath?)"
    except (OSError, ValueError) as exc:
        return f"cannot be read ({exc})"
    return None


def _missing_root(proc_root: str | os.PathLike[str]) -> str | None:
    problem = proc_root_problem(proc_root)
    if problem is None:
        return None
    if problem == "does not exist":
        return f"proc root {proc_root} does not exist (not Linux, or not mounted)"
    return f"proc root {proc_root} {problem}"


def read_sysctl(proc_root: str | os.PathLike[str], name: str, unit: str = "") -> Source:
    """One integer sysctl as a :class:`Source` (value None with the reason when it can't be read)."""
    path = sysctl_path(proc_root, name)
    missing = _missing_root(proc_root)
    if missing:
        return Source(name, None, str(path), unit, reason=missing)
    data, reason = read_bytes(path, SYSCTL_LIMIT)
    if data is None:
        if reason == "no such file" and name.startswith("net.netfilter."):
            reason = "no such file (nf_conntrack is not loaded in this kernel or namespace)"
        return Source(name, None, str(path), unit, reason=reason)
    text, reason = decode_text(data)
    if text is None:
        return Source(name, None, str(path), unit, reason=reason)
    value, reason = parse_int(text)
    if value is not None and value < 0:
        return Source(name, None, str(path), unit, reason=f"negative value {value}: none of these can be negative")
    return Source(name, value, str(path), unit, reason=reason)


class Namespace(_NamespaceFields):
    """Which network namespace the sysctls describe: ``initial`` (the node's), ``non-initial`` or ``unknown``.

    A named tuple, not a dataclass: it is defined on the default policy's cheap path (the caller's thread, maybe an
    event loop's), where a dataclass costs about ten times as much to define.
    """

    __slots__ = ()

    @property
    def initial(self) -> bool:
        """True only when we know we read the node's own (initial) network namespace."""
        return self.state == NAMESPACE_INITIAL


def detect_namespace(proc_root: str | os.PathLike[str]) -> Namespace:
    """Outside the initial network namespace the kernel makes ``nf_conntrack_max`` and ``nf_conntrack_buckets``
    read-only (mode 0444); inside it they are 0644. Only the mode is looked at (a read-only /proc mount, as in
    most containers, does not change it)."""
    missing = _missing_root(proc_root)
    if missing:
        return Namespace(NAMESPACE_UNKNOWN, missing)
    reasons: list[str] = []
    for name in (MAX, BUCKETS):
        path = sysctl_path(proc_root, name)
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:
            reasons.append(f"{path}: {_os_reason(exc)}")
            continue
        except ValueError as exc:
            reasons.append(f"{path}: {exc}")
            continue
        if mode & 0o222:
            return Namespace(NAMESPACE_INITIAL, f"{path} is writable (mode {stat.S_IMODE(mode):04o})")
        return Namespace(NAMESPACE_OTHER, f"{path} is read-only (mode {stat.S_IMODE(mode):04o})")
    return Namespace(NAMESPACE_UNKNOWN, "; ".join(reasons) or "nothing to look at")


def nf_stat_path(proc_root: str | os.PathLike[str]) -> str:
    """``<proc_root>/net/stat/nf_conntrack``."""
    return os.path.join(os.fspath(proc_root), "net", "stat", "nf_conntrack")


def read_nf_stat(proc_root: str | os.PathLike[str]) -> tuple[NfStat | None, str | None]:
    """The parsed conntrack statistics, or the reason they are unknown."""
    from keepalive._path._parse import parse_nf_stat  # here: the default policy's cheap path reads no statistics

    missing = _missing_root(proc_root)
    if missing:
        return None, missing
    data, reason = read_bytes(nf_stat_path(proc_root), NF_STAT_LIMIT)
    if data is None:
        if reason == "no such file":
            reason = "no such file (nf_conntrack is not loaded in this kernel or namespace)"
        return None, reason
    text, reason = decode_text(data)
    if text is None:
        return None, reason
    return parse_nf_stat(text)
