"""Node-wide enforcement: a cgroup sock_ops BPF program that brings every TCP connection of a cgroup within a policy.

``enforce(cgroup, policy)`` loads the program (``_program.py``, assembled by ``_asm.py``, loaded by ``_bpf.py``),
attaches it to a cgroup v2 directory with a BPF link, and pins the link, the program and its maps under
``<bpffs>/keepalive/cgroup-<cgroup inode>/`` so the attachment outlives the process; running it again rewrites the
policy map in place (no gap). ``remove_enforcement(cgroup)`` detaches it and removes the pins;
``enforcement_status()`` lists every enforced cgroup with the policy and the program's counters.

Where the cgroup's path is kept: bpffs holds only BPF objects, so the record (cgroup path and id, who attached
it, when) is a JSON text in a third pinned one-entry ARRAY map, ``info``. Everything about one enforcement lives
in its pin directory and nothing in /run, so a container that mounts the host's /sys/fs/bpf sees the same state
as the host.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Final

from keepalive._enforce import _bpf, _program
from keepalive._exceptions import KeepaliveError
from keepalive._log import get_logger
from keepalive._policy import Policy
from keepalive._version import __version__

__all__ = ["Enforcement", "EnforcementError", "enforce", "enforcement_status", "remove_enforcement"]

log = get_logger("enforce")

CAP_NET_ADMIN: Final = 12
CAP_SYS_ADMIN: Final = 21
CAP_BPF: Final = 39
PIN_ROOT: Final = "keepalive"
#: Environment variable naming the BPF filesystem mount to pin under (default /sys/fs/bpf).
ENV_BPFFS: Final = "KEEPALIVE_BPFFS"
_PINS: Final = ("link", "program", "policy", "counters", "info")
_INFO_SIZE: Final = 4096
_KEY0: Final = b"\0\0\0\0"
#: bpf_getsockopt reads SOL_SOCKET / SOL_TCP options in sock_ops since Linux 6.1 (sk_getsockopt/do_tcp_getsockopt).
_GETSOCKOPT_SINCE: Final = (6, 1)


class EnforcementError(KeepaliveError):
    """Enforcement could not be set up, changed, read or removed; the message names what is missing.

    Nothing is left attached or pinned when ``enforce()`` raises it. ``verifier_log`` holds the kernel verifier's
    log when the kernel refused the program (empty otherwise).
    """

    def __init__(self, message: str, *, verifier_log: str = "") -> None:
        super().__init__(message)
        self.verifier_log = verifier_log


@dataclass(frozen=True, slots=True)
class Enforcement:
    """One cgroup under enforcement: its policy, whether the program is still attached, and its counters.

    ``mode`` is ``"tighten-only"`` where the kernel lets the program read each socket's values (it never loosens
    them) and ``"set outright"`` where it could not read them and set the policy's values instead.
    Counters since attachment: ``seen`` connections established in the cgroup, ``tightened`` (at least one
    option set), ``within`` (nothing to change), ``skipped_loopback``, ``set_outright`` (an option could not be
    read), ``failed`` (the kernel refused a setsockopt). ``memory_bytes``: kernel memory charged for the program
    and its maps.
    """

    cgroup: str
    cgroup_id: int
    policy: Policy
    skip_loopback: bool
    attached: bool
    mode: str
    seen: int
    tightened: int
    within: int
    skipped_loopback: int
    set_outright: int
    failed: int
    pin_dir: str
    program_id: int
    memory_bytes: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the policy as its four fields)."""
        data = asdict(self)
        data["policy"] = {
            "idle": self.policy.idle,
            "interval": self.policy.interval,
            "count": self.policy.count,
            "user_timeout": self.policy.user_timeout,
        }
        return data


# --- the node: privileges, mounts, the cgroup ---------------------------------------------------------------------


def _effective_caps() -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def _check_privileges() -> None:
    caps = _effective_caps()

    def has(cap: int) -> bool:
        return bool(caps >> cap & 1)

    missing = []
    if not (has(CAP_BPF) or has(CAP_SYS_ADMIN)):
        missing.append("CAP_BPF")
    if not (has(CAP_NET_ADMIN) or has(CAP_SYS_ADMIN)):
        missing.append("CAP_NET_ADMIN")
    if missing:
        who = "root without them" if os.geteuid() == 0 else f"uid {os.geteuid()}"
        raise EnforcementError(
            f"loading and attaching a sock_ops program needs CAP_BPF and CAP_NET_ADMIN (or root): missing "
            f"{' and '.join(missing)} (running as {who})"
        )


def _unescape(field: str) -> str:
    """/proc/mounts escapes space, tab, newline and backslash as octal."""
    for code in ("\\040", "\\011", "\\012", "\\134"):
        field = field.replace(code, chr(int(code[1:], 8)))
    return field


def mounts(fstype: str) -> list[str]:
    """Mount points of filesystems of type ``fstype`` (``cgroup2``, ``bpf``), from /proc/mounts."""
    found = []
    with open("/proc/mounts", encoding="utf-8", errors="surrogateescape") as handle:
        for line in handle:
            fields = line.split()
            if len(fields) >= 3 and fields[2] == fstype:
                found.append(_unescape(fields[1]))
    return found


def _filesystem_of(path: str) -> tuple[str, str]:
    """(mount point, type) of the mount that holds ``path`` (the longest mount point that prefixes it)."""
    best = ("", "")
    with open("/proc/mounts", encoding="utf-8", errors="surrogateescape") as handle:
        for line in handle:
            fields = line.split()
            if len(fields) < 3:
                continue
            point = _unescape(fields[1])
            prefix = point.rstrip("/") + "/"
            if (path == point or path.startswith(prefix) or point == "/") and len(point) >= len(best[0]):
                best = (point, fields[2])
    return best


def cgroup_dir(path: str | os.PathLike[str]) -> tuple[str, int]:
    """(real path, inode) of a cgroup v2 directory, or EnforcementError saying why ``path`` is not one."""
    text = os.fspath(path)
    real = os.path.realpath(text)
    v2 = mounts("cgroup2")
    if not v2:
        raise EnforcementError(
            f"cgroup {text!r}: no cgroup v2 filesystem is mounted here (no 'cgroup2' line in /proc/mounts); "
            "sock_ops programs attach only to cgroup v2 directories"
        )
    if not os.path.exists(real):
        raise EnforcementError(f"cgroup {text!r} does not exist (cgroup v2 is mounted at {', '.join(v2)})")
    if not os.path.isdir(real):
        raise EnforcementError(f"cgroup {text!r} is not a directory (cgroup v2 is mounted at {', '.join(v2)})")
    point, fstype = _filesystem_of(real)
    if fstype != "cgroup2":
        raise EnforcementError(
            f"cgroup {text!r} is not a cgroup v2 directory: it is on a "
            f"{'cgroup v1' if fstype == 'cgroup' else fstype or 'unknown'} filesystem mounted at "
            f"{point!r}; cgroup v2 is mounted at {', '.join(v2)}"
        )
    return real, os.stat(real).st_ino


def _bpffs(*, required: bool = True) -> str:
    """Where to pin: $KEEPALIVE_BPFFS, else /sys/fs/bpf, else the first BPF filesystem in /proc/mounts.

    With ``required=False`` an empty string when none is mounted (then nothing can be enforced).
    """
    found = mounts("bpf")
    chosen = os.environ.get(ENV_BPFFS, "")
    if chosen:
        if os.path.realpath(chosen) not in found:
            raise EnforcementError(f"{ENV_BPFFS}={chosen!r} is not a BPF filesystem mount (bpf mounts: {found})")
        return os.path.realpath(chosen)
    if not found:
        if not required:
            return ""
        raise EnforcementError(
            "no BPF filesystem is mounted (no 'bpf' line in /proc/mounts) to pin the program so it outlives this "
            "command: mount -t bpf bpf /sys/fs/bpf"
        )
    return "/sys/fs/bpf" if "/sys/fs/bpf" in found else found[0]


@contextlib.contextmanager
def _locked(real: str) -> Iterator[int]:
    """The cgroup directory's fd, flock()ed so two enforcers on one cgroup take turns."""
    fd = os.open(real, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)


def _kernel_reads_options() -> bool:
    try:
        parts = os.uname().release.split(".")
        return (int(parts[0]), int(parts[1].split("-")[0])) >= _GETSOCKOPT_SINCE
    except (ValueError, IndexError):
        return False


# --- reading and writing an enforcement's pins -------------------------------------------------------------------


def _pin_dir(bpffs: str, cgroup_id: int) -> str:
    return os.path.join(bpffs, PIN_ROOT, f"cgroup-{cgroup_id}")


def _policy_value(policy: Policy, skip_loopback: bool) -> bytes:
    return _program.pack_policy(
        policy.idle, policy.interval, policy.count, policy.user_timeout_ms or 0, skip_loopback=skip_loopback
    )


def _info_value(record: dict[str, Any]) -> bytes:
    text = json.dumps(record, sort_keys=True).encode("utf-8")
    if len(text) >= _INFO_SIZE:
        raise EnforcementError(f"cgroup path too long to record ({len(text)} bytes of metadata)")
    return text.ljust(_INFO_SIZE, b"\0")


@contextlib.contextmanager
def _opened(pin_dir: str, names: tuple[str, ...]) -> Iterator[dict[str, int]]:
    fds: dict[str, int] = {}
    try:
        for name in names:
            fds[name] = _bpf.obj_get(os.path.join(pin_dir, name))
        yield fds
    finally:
        for fd in fds.values():
            os.close(fd)


def _read(pin_dir: str) -> Enforcement:
    with _opened(pin_dir, _PINS) as fds:
        record = json.loads(_bpf.map_lookup(fds["info"], _KEY0, _INFO_SIZE).rstrip(b"\0") or b"{}")
        idle, interval, count, user_ms, skip = _program.unpack_policy(
            _bpf.map_lookup(fds["policy"], _KEY0, _program.POLICY.size)
        )
        counters = _program.unpack_counters(_bpf.map_lookup(fds["counters"], _KEY0, _program.COUNTERS.size))
        _, _, prog_id, link_cgroup = _bpf.link_info(fds["link"])
        memory = sum(int(_bpf.fdinfo(fds[name]).get("memlock", "0")) for name in _PINS if name != "link")
    policy = Policy(idle=idle, interval=interval, count=count, user_timeout=user_ms / 1000 if user_ms else None)
    if counters["set_outright"]:
        mode = "set outright"
    elif counters["seen"] - counters["skipped_loopback"] > 0 or _kernel_reads_options():
        mode = "tighten-only"
    else:
        mode = "set outright"
    cgroup_id = int(record.get("cgroup_id", 0))
    return Enforcement(
        cgroup=str(record.get("cgroup", "?")),
        cgroup_id=cgroup_id,
        policy=policy,
        skip_loopback=skip,
        attached=link_cgroup != 0,
        mode=mode,
        pin_dir=pin_dir,
        program_id=prog_id,
        memory_bytes=memory,
        **counters,
    )


def _unpin(pin_dir: str) -> None:
    """Detach the pinned link (if any) and remove the pin directory."""
    try:
        with _opened(pin_dir, ("link",)) as fds:
            _bpf.link_detach(fds["link"])
    except OSError as exc:
        log.debug("no link to detach in %s: %s", pin_dir, exc)
    shutil.rmtree(pin_dir, ignore_errors=True)


# --- the API ------------------------------------------------------------------------------------------------------


def enforce(
    cgroup: str | os.PathLike[str], policy: Policy | None = None, *, skip_loopback: bool = False
) -> Enforcement:
    """Bring every TCP connection established in ``cgroup`` (a cgroup v2 directory) within ``policy``.

    Attaches a sock_ops BPF program to the cgroup (and so to every cgroup below it) that runs when a connection
    made or accepted there is established: tighten-only (it never loosens a value the socket already has),
    loopback included unless ``skip_loopback``. ``policy=None`` means the default policy (from the path model).
    The attachment is pinned under the BPF filesystem and stays after this process exits, until
    ``remove_enforcement(cgroup)``. Calling it again on the same cgroup replaces the policy in place, without a
    moment unenforced. Needs CAP_BPF and CAP_NET_ADMIN (root). Raises EnforcementError, with nothing left
    attached or pinned, when something is missing.
    """
    if policy is None:
        from keepalive._policy import default_policy

        policy = default_policy()
    if not isinstance(policy, Policy):
        raise TypeError(f"policy must be a keepalive.Policy, not {type(policy).__name__}")
    real, cgroup_id = cgroup_dir(cgroup)
    _check_privileges()
    bpffs = _bpffs()
    pin_dir = _pin_dir(bpffs, cgroup_id)
    value = _policy_value(policy, skip_loopback)
    with _locked(real) as cgroup_fd:
        if os.path.isdir(pin_dir):
            updated = False
            try:
                with _opened(pin_dir, ("link", "policy")) as fds:
                    if _bpf.link_info(fds["link"])[3] == cgroup_id:
                        _bpf.map_update(fds["policy"], _KEY0, value)  # in place: the program stays attached
                        updated = True
            except OSError as exc:
                log.debug("replacing the incomplete enforcement in %s: %s", pin_dir, exc)
            if updated:
                log.info(
                    "updated the policy on cgroup %s to %s",
                    real,
                    policy,
                    extra={"keepalive_cgroup": real, "keepalive_idle": policy.idle},
                )
                return _read(pin_dir)
            _unpin(pin_dir)
        record = {
            "cgroup": real,
            "cgroup_id": cgroup_id,
            "attached_at": int(time.time()),
            "attached_by": f"keepalive {__version__} pid {os.getpid()}",
        }
        _attach(cgroup_fd, pin_dir, value, _info_value(record))
    log.info(
        "enforcing %s on cgroup %s%s",
        policy,
        real,
        " (loopback skipped)" if skip_loopback else "",
        extra={"keepalive_cgroup": real, "keepalive_idle": policy.idle},
    )
    return _read(pin_dir)


def _attach(cgroup_fd: int, pin_dir: str, policy_value: bytes, info_value: bytes) -> None:
    """Create the maps, load the program, attach it and pin everything at ``pin_dir``; all or nothing."""
    fds: dict[str, int] = {}
    try:
        try:
            fds["policy"] = _bpf.map_create(_bpf.BPF_MAP_TYPE_ARRAY, 4, _program.POLICY.size, 1, "ka_policy")
            fds["counters"] = _bpf.map_create(_bpf.BPF_MAP_TYPE_ARRAY, 4, _program.COUNTERS.size, 1, "ka_counters")
            fds["info"] = _bpf.map_create(_bpf.BPF_MAP_TYPE_ARRAY, 4, _INFO_SIZE, 1, "ka_info")
            _bpf.map_update(fds["policy"], _KEY0, policy_value)
            _bpf.map_update(fds["info"], _KEY0, info_value)
        except _bpf.BpfError as exc:
            raise _explain(exc, "creating the program's maps") from None
        code = _program.build(fds["policy"], fds["counters"])
        try:
            fds["program"] = _bpf.prog_load(
                _bpf.BPF_PROG_TYPE_SOCK_OPS, code, _bpf.BPF_CGROUP_SOCK_OPS, "keepalive_enforce"
            )
        except _bpf.VerifierError as exc:
            raise _refused(exc) from None
        except _bpf.BpfError as exc:
            raise _explain(exc, "loading the sock_ops program") from None
        try:
            fds["link"] = _bpf.link_create(fds["program"], cgroup_fd, _bpf.BPF_CGROUP_SOCK_OPS)
        except _bpf.BpfError as exc:
            raise _explain(exc, "attaching the program to the cgroup (BPF_LINK_CREATE, Linux 5.7+)") from None
        try:
            os.makedirs(pin_dir)
            for name in reversed(_PINS):  # the link last: a directory with a link is complete
                _bpf.obj_pin(fds[name], os.path.join(pin_dir, name))
        except OSError as exc:
            raise EnforcementError(f"cannot pin the program under {os.path.dirname(pin_dir)}: {exc}") from None
    except BaseException:
        shutil.rmtree(pin_dir, ignore_errors=True)
        raise
    finally:
        for fd in fds.values():
            os.close(fd)  # from here on the link stays attached only through its pin


def _explain(exc: _bpf.BpfError, doing: str) -> EnforcementError:
    if exc.errno in (errno.EPERM, errno.EACCES):
        return EnforcementError(f"{doing} was refused ({exc.strerror}): needs CAP_BPF and CAP_NET_ADMIN (root)")
    if exc.errno == errno.ENOSYS:
        return EnforcementError(f"{doing}: this kernel has no bpf(2) ({exc})")
    return EnforcementError(f"{doing} failed: {exc}")


def _refused(exc: _bpf.VerifierError) -> EnforcementError:
    text = exc.log
    if "unknown func" in text or "invalid func" in text:
        what = "this kernel lacks a helper the program calls (bpf_getsockopt/bpf_setsockopt in sock_ops)"
    elif exc.errno == errno.EINVAL and not text:
        what = "this kernel does not support sock_ops programs (CONFIG_CGROUP_BPF) or one of their features"
    else:
        what = "the kernel's verifier refused the sock_ops program"
    tail = "\n".join(text.strip().splitlines()[-20:])
    return EnforcementError(
        f"{what} ({exc.strerror})" + (f"; verifier log:\n{tail}" if tail else ""), verifier_log=text
    )


def remove_enforcement(cgroup: str | os.PathLike[str]) -> bool:
    """Detach the program from ``cgroup`` and remove its pins; False if it was not enforced there.

    ``cgroup`` may be a cgroup that no longer exists (found by the path recorded when it was enforced).
    """
    _check_privileges()
    bpffs = _bpffs(required=False)
    if not bpffs:
        return False
    text = os.fspath(cgroup)
    real = os.path.realpath(text)
    candidates: list[str] = []
    if os.path.isdir(real):
        real, cgroup_id = cgroup_dir(real)
        candidates.append(_pin_dir(bpffs, cgroup_id))
    for entry in _entries(bpffs):
        if entry.cgroup == real and entry.pin_dir not in candidates:
            candidates.append(entry.pin_dir)
    removed = False
    for pin_dir in candidates:
        if os.path.isdir(pin_dir):
            _unpin(pin_dir)
            removed = True
    if removed:
        log.info("removed enforcement from cgroup %s", real, extra={"keepalive_cgroup": real})
    return removed


def _entries(bpffs: str) -> list[Enforcement]:
    root = os.path.join(bpffs, PIN_ROOT)
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        if not name.startswith("cgroup-") or name.endswith(".tmp"):
            continue
        try:
            found.append(_read(os.path.join(root, name)))
        except (OSError, ValueError) as exc:
            log.warning("cannot read the enforcement pinned at %s: %s", os.path.join(root, name), exc)
    return found


def enforcement_status() -> list[Enforcement]:
    """Every cgroup enforced on this node (pinned under the BPF filesystem), with its policy and counters."""
    _check_privileges()
    bpffs = _bpffs(required=False)
    return _entries(bpffs) if bpffs else []
