"""The bpf(2) commands the enforcer needs, through ctypes and libc's ``syscall``.

``union bpf_attr`` is built with ``struct.pack_into`` at the offsets of ``include/uapi/linux/bpf.h`` (checked
against the header with offsetof on x86_64). The buffer is larger than any command's part of the union and
zero-filled, which the kernel accepts (``bpf_check_uarg_tail_zero``).
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from typing import Final

__all__ = [
    "BpfError",
    "VerifierError",
    "enable_stats",
    "fdinfo",
    "link_create",
    "link_detach",
    "link_info",
    "map_create",
    "map_lookup",
    "map_update",
    "obj_get",
    "obj_pin",
    "prog_info",
    "prog_load",
]

#: __NR_bpf per ``os.uname().machine`` (arch/*/include/uapi/asm/unistd*.h, tools/include/uapi/asm-generic).
SYSCALL_NUMBERS: Final = {
    "x86_64": 321,
    "i386": 357,
    "i686": 357,
    "aarch64": 280,
    "arm64": 280,
    "riscv64": 280,
    "loongarch64": 280,
    "armv7l": 386,
    "armv6l": 386,
    "ppc64le": 361,
    "ppc64": 361,
    "s390x": 351,
}

# enum bpf_cmd.
BPF_MAP_CREATE: Final = 0
BPF_MAP_LOOKUP_ELEM: Final = 1
BPF_MAP_UPDATE_ELEM: Final = 2
BPF_PROG_LOAD: Final = 5
BPF_OBJ_PIN: Final = 6
BPF_OBJ_GET: Final = 7
BPF_OBJ_GET_INFO_BY_FD: Final = 15
BPF_LINK_CREATE: Final = 28
BPF_ENABLE_STATS: Final = 32
BPF_LINK_DETACH: Final = 34

BPF_MAP_TYPE_ARRAY: Final = 2
BPF_PROG_TYPE_SOCK_OPS: Final = 13
BPF_CGROUP_SOCK_OPS: Final = 3
BPF_LINK_TYPE_CGROUP: Final = 3

_ATTR_SIZE: Final = 160
_OBJ_NAME_LEN: Final = 16


class BpfError(OSError):
    """A bpf(2) command failed; ``command`` names it."""

    def __init__(self, code: int, command: str, detail: str = "") -> None:
        message = f"bpf({command}): {os.strerror(code)}"
        super().__init__(code, message + (f": {detail}" if detail else ""))
        self.command = command


class VerifierError(BpfError):
    """BPF_PROG_LOAD was refused; ``log`` is the verifier's log."""

    def __init__(self, code: int, log: str) -> None:
        super().__init__(code, "BPF_PROG_LOAD")
        self.log = log


_syscall_fn: ctypes._CFuncPtr | None = None  # type: ignore[name-defined]


def _nr() -> int:
    machine = os.uname().machine
    try:
        return SYSCALL_NUMBERS[machine]
    except KeyError:
        raise BpfError(errno.ENOSYS, "syscall", f"no bpf(2) syscall number known for {machine}") from None


def _bpf(cmd: int, attr: ctypes.Array[ctypes.c_char], name: str) -> int:
    global _syscall_fn
    if _syscall_fn is None:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.syscall
        fn.restype = ctypes.c_long
        fn.argtypes = (ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_uint)
        _syscall_fn = fn
    result = int(_syscall_fn(_nr(), cmd, ctypes.addressof(attr), len(attr)))
    if result < 0:
        raise BpfError(ctypes.get_errno(), name)
    return result


def _attr() -> ctypes.Array[ctypes.c_char]:
    return ctypes.create_string_buffer(_ATTR_SIZE)


def _name(text: str) -> bytes:
    return text.encode("ascii")[: _OBJ_NAME_LEN - 1]


def map_create(map_type: int, key_size: int, value_size: int, max_entries: int, name: str) -> int:
    """A new map's file descriptor."""
    attr = _attr()
    struct.pack_into("=5I", attr, 0, map_type, key_size, value_size, max_entries, 0)
    struct.pack_into("16s", attr, 28, _name(name))  # map_name
    try:
        return _bpf(BPF_MAP_CREATE, attr, "BPF_MAP_CREATE")
    except BpfError as exc:
        if exc.errno == errno.EINVAL:  # an older kernel without map names
            struct.pack_into("16s", attr, 28, b"")
            return _bpf(BPF_MAP_CREATE, attr, "BPF_MAP_CREATE")
        raise


def map_update(map_fd: int, key: bytes, value: bytes) -> None:
    """Write ``value`` at ``key`` (BPF_ANY)."""
    key_buf = ctypes.create_string_buffer(key, len(key))
    value_buf = ctypes.create_string_buffer(value, len(value))
    attr = _attr()
    struct.pack_into("=IIQQQ", attr, 0, map_fd, 0, ctypes.addressof(key_buf), ctypes.addressof(value_buf), 0)
    _bpf(BPF_MAP_UPDATE_ELEM, attr, "BPF_MAP_UPDATE_ELEM")


def map_lookup(map_fd: int, key: bytes, value_size: int) -> bytes:
    """The value at ``key``."""
    key_buf = ctypes.create_string_buffer(key, len(key))
    value_buf = ctypes.create_string_buffer(value_size)
    attr = _attr()
    struct.pack_into("=IIQQQ", attr, 0, map_fd, 0, ctypes.addressof(key_buf), ctypes.addressof(value_buf), 0)
    _bpf(BPF_MAP_LOOKUP_ELEM, attr, "BPF_MAP_LOOKUP_ELEM")
    return value_buf.raw


def prog_load(prog_type: int, insns: bytes, expected_attach_type: int, name: str, log_size: int = 1 << 20) -> int:
    """A loaded program's file descriptor; VerifierError (with the verifier's log) if the kernel refuses it.

    The program is first loaded without a log (fast); only a refusal is retried with log level 1 to explain it.
    """
    code_buf = ctypes.create_string_buffer(insns, len(insns))
    license_buf = ctypes.create_string_buffer(b"GPL")
    attr = _attr()
    struct.pack_into(
        "=IIQQ", attr, 0, prog_type, len(insns) // 8, ctypes.addressof(code_buf), ctypes.addressof(license_buf)
    )
    struct.pack_into("16s", attr, 48, _name(name))  # prog_name
    struct.pack_into("=I", attr, 68, expected_attach_type)
    try:
        return _bpf(BPF_PROG_LOAD, attr, "BPF_PROG_LOAD")
    except BpfError as exc:
        if exc.errno in (errno.EPERM, errno.ENOSYS):
            raise
        first = exc
    log_buf = ctypes.create_string_buffer(log_size)
    struct.pack_into("=IIQ", attr, 24, 1, log_size, ctypes.addressof(log_buf))  # log_level, log_size, log_buf
    try:
        fd = _bpf(BPF_PROG_LOAD, attr, "BPF_PROG_LOAD")
    except BpfError as exc:
        log = log_buf.value.decode("utf-8", "replace")
        raise VerifierError(exc.errno or first.errno or errno.EINVAL, log) from None
    os.close(fd)  # loaded with a log but not without one: report the first refusal
    raise VerifierError(first.errno or errno.EINVAL, "")


def obj_pin(fd: int, path: str) -> None:
    """Pin the object behind ``fd`` at ``path`` on a BPF filesystem."""
    path_buf = ctypes.create_string_buffer(os.fsencode(path))
    attr = _attr()
    struct.pack_into("=QII", attr, 0, ctypes.addressof(path_buf), fd, 0)
    _bpf(BPF_OBJ_PIN, attr, "BPF_OBJ_PIN")


def obj_get(path: str) -> int:
    """A new file descriptor for the object pinned at ``path``."""
    path_buf = ctypes.create_string_buffer(os.fsencode(path))
    attr = _attr()
    struct.pack_into("=QII", attr, 0, ctypes.addressof(path_buf), 0, 0)
    return _bpf(BPF_OBJ_GET, attr, "BPF_OBJ_GET")


def link_create(prog_fd: int, target_fd: int, attach_type: int) -> int:
    """A link attaching ``prog_fd`` to ``target_fd`` (a cgroup directory); closing its last reference detaches."""
    attr = _attr()
    struct.pack_into("=IIII", attr, 0, prog_fd, target_fd, attach_type, 0)
    return _bpf(BPF_LINK_CREATE, attr, "BPF_LINK_CREATE")


def link_detach(link_fd: int) -> None:
    """Detach the link now, whoever else holds it (its pins then hold a defunct link)."""
    attr = _attr()
    struct.pack_into("=I", attr, 0, link_fd)
    _bpf(BPF_LINK_DETACH, attr, "BPF_LINK_DETACH")


def link_info(link_fd: int) -> tuple[int, int, int, int]:
    """(link type, link id, program id, cgroup id) of a link; the cgroup id is 0 once the link is detached."""
    info = ctypes.create_string_buffer(48)  # sizeof(struct bpf_link_info) on 6.x is larger; 48 covers cgroup
    attr = _attr()
    struct.pack_into("=IIQ", attr, 0, link_fd, len(info), ctypes.addressof(info))
    _bpf(BPF_OBJ_GET_INFO_BY_FD, attr, "BPF_OBJ_GET_INFO_BY_FD")
    link_type, link_id, prog_id = struct.unpack_from("=III", info, 0)
    (cgroup_id,) = struct.unpack_from("=Q", info, 16)
    return link_type, link_id, prog_id, cgroup_id


def fdinfo(fd: int) -> dict[str, str]:
    """``/proc/self/fdinfo/<fd>`` as a dict: for BPF objects it has ``memlock`` (bytes charged), ids and types."""
    fields: dict[str, str] = {}
    with open(f"/proc/self/fdinfo/{fd}", encoding="ascii", errors="replace") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    return fields


def prog_info(prog_fd: int) -> tuple[int, int]:
    """(translated size, JIT-compiled size) of a loaded program, in bytes (struct bpf_prog_info)."""
    info = ctypes.create_string_buffer(64)
    attr = _attr()
    struct.pack_into("=IIQ", attr, 0, prog_fd, len(info), ctypes.addressof(info))
    _bpf(BPF_OBJ_GET_INFO_BY_FD, attr, "BPF_OBJ_GET_INFO_BY_FD")
    jited, xlated = struct.unpack_from("=II", info, 16)
    return xlated, jited


def enable_stats() -> int:
    """BPF_ENABLE_STATS(BPF_STATS_RUN_TIME): while the returned fd is open the kernel counts every program's
    runs and run time (``run_cnt``/``run_time_ns`` in fdinfo). Needs CAP_SYS_ADMIN; close the fd to stop."""
    attr = _attr()
    struct.pack_into("=I", attr, 0, 0)  # enable_stats.type = BPF_STATS_RUN_TIME
    return _bpf(BPF_ENABLE_STATS, attr, "BPF_ENABLE_STATS")
