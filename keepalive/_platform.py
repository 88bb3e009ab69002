"""Policy -> setsockopt calls, per platform. Probed once at import; the hot path only replays a compiled plan.

Option names and numbers per platform:

========== =============================== =========================== ===================================
platform   idle                            interval / count            user timeout
========== =============================== =========================== ===================================
Linux      TCP_KEEPIDLE (4)                TCP_KEEPINTVL (5) / CNT (6) TCP_USER_TIMEOUT (18), milliseconds
macOS      TCP_KEEPALIVE (0x10)            TCP_KEEPINTVL (0x101) /     not available
                                           TCP_KEEPCNT (0x102)
FreeBSD    TCP_KEEPIDLE (256)              TCP_KEEPINTVL (512) /       not available
                                           TCP_KEEPCNT (1024)
Windows    TCP_KEEPIDLE (3), from 10 1709  TCP_KEEPINTVL (17) from     not available
           else SIO_KEEPALIVE_VALS ioctl   1709 / TCP_KEEPCNT (16)
           (on, idle ms, interval ms)      from 1703
========== =============================== =========================== ===================================
"""

from __future__ import annotations

import socket
import sys
from types import ModuleType

from keepalive._value import Value

# Not `from typing import TYPE_CHECKING`: typing costs ~2 ms to import, and mypy knows this name.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import ClassVar, Final

    from keepalive._policy import Policy

__all__ = ["CURRENT", "Applied", "Plan", "PlatformInfo", "compile_plan", "detect"]

# The idle option's name on each platform: macOS calls it TCP_KEEPALIVE, and several libraries get this wrong.
_DARWIN_TCP_KEEPALIVE: Final = 0x10
_DARWIN_TCP_KEEPINTVL: Final = 0x101
_DARWIN_TCP_KEEPCNT: Final = 0x102
_WINDOWS_SIO_KEEPALIVE_VALS: Final = 0x98000004
_WINDOWS_BUILD_KEEPIDLE: Final = 16299  # Windows 10 1709: TCP_KEEPIDLE and TCP_KEEPINTVL
_WINDOWS_BUILD_KEEPCNT: Final = 15063  # Windows 10 1703: TCP_KEEPCNT


class PlatformInfo(Value):
    """What this platform can set. ``None`` means the option is not available here.

    Frozen and keyword-only like :class:`keepalive.Policy` (works with :mod:`dataclasses` functions too).
    """

    __slots__ = (
        "count",
        "idle",
        "idle_name",
        "interval",
        "ipproto_tcp",
        "name",
        "sio_keepalive_vals",
        "so_keepalive",
        "sol_socket",
        "user_timeout",
    )
    _field_types: ClassVar[dict[str, str]] = {
        "name": "str",
        "sol_socket": "int",
        "so_keepalive": "int",
        "ipproto_tcp": "int",
        "idle_name": "str",
        "idle": "int | None",
        "interval": "int | None",
        "count": "int | None",
        "user_timeout": "int | None",
        "sio_keepalive_vals": "int | None",
    }

    name: str
    sol_socket: int
    so_keepalive: int
    ipproto_tcp: int
    idle_name: str
    idle: int | None
    interval: int | None
    count: int | None
    user_timeout: int | None
    #: Windows before 10 1709: SIO_KEEPALIVE_VALS through ``sock.ioctl`` sets idle and interval (ms).
    sio_keepalive_vals: int | None

    def __init__(
        self,
        *,
        name: str,
        sol_socket: int,
        so_keepalive: int,
        ipproto_tcp: int,
        idle_name: str,
        idle: int | None,
        interval: int | None,
        count: int | None,
        user_timeout: int | None,
        sio_keepalive_vals: int | None = None,
    ) -> None:
        for key, value in (
            ("name", name),
            ("sol_socket", sol_socket),
            ("so_keepalive", so_keepalive),
            ("ipproto_tcp", ipproto_tcp),
            ("idle_name", idle_name),
            ("idle", idle),
            ("interval", interval),
            ("count", count),
            ("user_timeout", user_timeout),
            ("sio_keepalive_vals", sio_keepalive_vals),
        ):
            object.__setattr__(self, key, value)

    def supported(self) -> dict[str, bool]:
        """Option name -> whether a policy's value for it can be set on this platform."""
        ioctl = self.sio_keepalive_vals is not None
        return {
            "SO_KEEPALIVE": True,
            self.idle_name: self.idle is not None or ioctl,
            "TCP_KEEPINTVL": self.interval is not None or ioctl,
            "TCP_KEEPCNT": self.count is not None,
            "TCP_USER_TIMEOUT": self.user_timeout is not None,
        }


class Applied(Value):
    """The result of :func:`keepalive.apply`: what was set on the socket and what was not.

    Attributes:
        policy: the policy applied.
        set: option names set on the socket, in order.
        unsupported: option names this platform cannot set (known at import; not an error).
        failed: (option name, the error the kernel returned) for options that should have worked.
        skipped: why nothing was applied (not a TCP socket, closed socket), or None.

    Frozen and keyword-only like :class:`keepalive.Policy` (works with :mod:`dataclasses` functions too).
    """

    __slots__ = ("failed", "policy", "set", "skipped", "unsupported")
    _field_types: ClassVar[dict[str, str]] = {
        "policy": "Policy",
        "set": "tuple[str, ...]",
        "unsupported": "tuple[str, ...]",
        "failed": "tuple[tuple[str, str], ...]",
        "skipped": "str | None",
    }

    policy: Policy
    set: tuple[str, ...]
    unsupported: tuple[str, ...]
    failed: tuple[tuple[str, str], ...]
    skipped: str | None

    def __init__(
        self,
        *,
        policy: Policy,
        set: tuple[str, ...] = (),
        unsupported: tuple[str, ...] = (),
        failed: tuple[tuple[str, str], ...] = (),
        skipped: str | None = None,
    ) -> None:
        object.__setattr__(self, "policy", policy)
        object.__setattr__(self, "set", set)
        object.__setattr__(self, "unsupported", unsupported)
        object.__setattr__(self, "failed", failed)
        object.__setattr__(self, "skipped", skipped)

    @property
    def ok(self) -> bool:
        """True when every option this platform supports was set."""
        return self.skipped is None and not self.failed


class Plan(Value):
    """A policy compiled for one platform: the exact calls :func:`keepalive.apply` makes.

    ``calls``: (option name, level, optname, value), in call order. TCP-level options come first, so a socket
    that is not TCP fails on the first call with nothing changed; SO_KEEPALIVE comes last. ``ioctl``: Windows'
    fallback, (SIO_KEEPALIVE_VALS, (1, idle_ms, interval_ms)) for ``sock.ioctl``, or None. ``success``: the
    result when every call succeeds (shared, so the hot path allocates nothing).
    """

    __slots__ = ("calls", "ioctl", "success")
    _field_types: ClassVar[dict[str, str]] = {
        "calls": "tuple[tuple[str, int, int, int], ...]",
        "ioctl": "tuple[int, tuple[int, int, int]] | None",
        "success": "Applied",
    }

    calls: tuple[tuple[str, int, int, int], ...]
    ioctl: tuple[int, tuple[int, int, int]] | None
    success: Applied

    def __init__(
        self,
        *,
        calls: tuple[tuple[str, int, int, int], ...],
        ioctl: tuple[int, tuple[int, int, int]] | None,
        success: Applied,
    ) -> None:
        object.__setattr__(self, "calls", calls)
        object.__setattr__(self, "ioctl", ioctl)
        object.__setattr__(self, "success", success)


def compile_plan(policy: Policy, platform: PlatformInfo) -> Plan:
    """Translate ``policy`` into the calls that ``platform`` needs."""
    tcp = platform.ipproto_tcp
    calls: list[tuple[str, int, int, int]] = []
    unsupported: list[str] = []
    ioctl: tuple[int, tuple[int, int, int]] | None = None
    if platform.idle is not None:
        calls.append((platform.idle_name, tcp, platform.idle, policy.idle))
    if platform.interval is not None:
        calls.append(("TCP_KEEPINTVL", tcp, platform.interval, policy.interval))
    if platform.idle is None or platform.interval is None:
        if platform.sio_keepalive_vals is not None:
            ioctl = (platform.sio_keepalive_vals, (1, policy.idle * 1000, policy.interval * 1000))
        else:
            if platform.idle is None:
                unsupported.append(platform.idle_name)
            if platform.interval is None:
                unsupported.append("TCP_KEEPINTVL")
    if platform.count is not None:
        calls.append(("TCP_KEEPCNT", tcp, platform.count, policy.count))
    else:
        unsupported.append("TCP_KEEPCNT")
    user_timeout_ms = policy.user_timeout_ms
    if user_timeout_ms is not None:
        if platform.user_timeout is not None:
            calls.append(("TCP_USER_TIMEOUT", tcp, platform.user_timeout, user_timeout_ms))
        else:
            unsupported.append("TCP_USER_TIMEOUT")
    calls.append(("SO_KEEPALIVE", platform.sol_socket, platform.so_keepalive, 1))
    names = tuple(name for name, *_ in calls)
    if ioctl is not None:
        names += ("SIO_KEEPALIVE_VALS",)
    success = Applied(policy=policy, set=names, unsupported=tuple(unsupported))
    return Plan(calls=tuple(calls), ioctl=ioctl, success=success)


def detect(
    sys_platform: str | None = None,
    module: ModuleType | None = None,
    windows_build: int | None = None,
) -> PlatformInfo:
    """Probe the options of a platform (by default this one) from its ``socket`` module's constants."""
    plat = sys.platform if sys_platform is None else sys_platform
    mod = socket if module is None else module

    def const(name: str) -> int | None:
        value = getattr(mod, name, None)
        return value if isinstance(value, int) else None

    sol_socket = const("SOL_SOCKET")
    so_keepalive = const("SO_KEEPALIVE")
    ipproto_tcp = const("IPPROTO_TCP")
    if sol_socket is None or so_keepalive is None or ipproto_tcp is None:
        raise RuntimeError(f"socket module of {plat!r} lacks SOL_SOCKET/SO_KEEPALIVE/IPPROTO_TCP")

    if plat == "darwin":
        return PlatformInfo(
            name="darwin",
            sol_socket=sol_socket,
            so_keepalive=so_keepalive,
            ipproto_tcp=ipproto_tcp,
            idle_name="TCP_KEEPALIVE",
            idle=const("TCP_KEEPALIVE") or _DARWIN_TCP_KEEPALIVE,
            interval=const("TCP_KEEPINTVL") or _DARWIN_TCP_KEEPINTVL,
            count=const("TCP_KEEPCNT") or _DARWIN_TCP_KEEPCNT,
            user_timeout=None,
        )
    if plat == "win32":
        build = windows_build
        if build is None:
            getwindowsversion = getattr(sys, "getwindowsversion", None)
            build = getwindowsversion().build if getwindowsversion is not None else 0
        has_idle = build >= _WINDOWS_BUILD_KEEPIDLE
        return PlatformInfo(
            name="windows",
            sol_socket=sol_socket,
            so_keepalive=so_keepalive,
            ipproto_tcp=ipproto_tcp,
            idle_name="TCP_KEEPIDLE",
            idle=const("TCP_KEEPIDLE") if has_idle else None,
            interval=const("TCP_KEEPINTVL") if has_idle else None,
            count=const("TCP_KEEPCNT") if build >= _WINDOWS_BUILD_KEEPCNT else None,
            user_timeout=None,
            sio_keepalive_vals=None if has_idle else (const("SIO_KEEPALIVE_VALS") or _WINDOWS_SIO_KEEPALIVE_VALS),
        )
    name = "linux" if plat.startswith("linux") else "freebsd" if plat.startswith("freebsd") else plat
    return PlatformInfo(
        name=name,
        sol_socket=sol_socket,
        so_keepalive=so_keepalive,
        ipproto_tcp=ipproto_tcp,
        idle_name="TCP_KEEPIDLE",
        idle=const("TCP_KEEPIDLE"),
        interval=const("TCP_KEEPINTVL"),
        count=const("TCP_KEEPCNT"),
        user_timeout=const("TCP_USER_TIMEOUT"),
    )


#: This process's platform, probed once at import.
CURRENT: Final = detect()
