"""Option mapping per platform, through a recording fake socket carrying each platform's real constants.

The constants below are the values of the platforms' system headers (macOS <netinet/tcp.h>, FreeBSD
<netinet/tcp.h>, Windows <ws2ipdef.h>/<mstcpip.h>), so a wrong mapping would show up as a wrong number here.
"""

from __future__ import annotations

import socket
import types
from typing import Any

import pytest

from keepalive import Policy
from keepalive._platform import CURRENT, compile_plan, detect
from keepalive._socket import _apply_with


def fake_socket_module(**constants: int) -> types.ModuleType:
    module = types.ModuleType("fake_socket")
    for name, value in constants.items():
        setattr(module, name, value)
    return module


DARWIN = fake_socket_module(
    SOL_SOCKET=0xFFFF, SO_KEEPALIVE=0x0008, IPPROTO_TCP=6, TCP_KEEPALIVE=0x10, TCP_KEEPINTVL=0x101, TCP_KEEPCNT=0x102
)
# Python on macOS before 3.10 lacks socket.TCP_KEEPALIVE: the mapping must still use 0x10, never TCP_KEEPIDLE.
DARWIN_OLD_PYTHON = fake_socket_module(SOL_SOCKET=0xFFFF, SO_KEEPALIVE=0x0008, IPPROTO_TCP=6)
FREEBSD = fake_socket_module(
    SOL_SOCKET=0xFFFF, SO_KEEPALIVE=0x0008, IPPROTO_TCP=6, TCP_KEEPIDLE=256, TCP_KEEPINTVL=512, TCP_KEEPCNT=1024
)
WINDOWS = fake_socket_module(
    SOL_SOCKET=0xFFFF,
    SO_KEEPALIVE=0x0008,
    IPPROTO_TCP=6,
    TCP_KEEPIDLE=3,
    TCP_KEEPINTVL=17,
    TCP_KEEPCNT=16,
    SIO_KEEPALIVE_VALS=0x98000004,
)
LINUX = fake_socket_module(
    SOL_SOCKET=1,
    SO_KEEPALIVE=9,
    IPPROTO_TCP=6,
    TCP_KEEPIDLE=4,
    TCP_KEEPINTVL=5,
    TCP_KEEPCNT=6,
    TCP_USER_TIMEOUT=18,
)


class RecordingSocket:
    """Records setsockopt/ioctl calls; optionally refuses some options like a kernel would."""

    def __init__(self, refuse: set[tuple[int, int]] | None = None, *, has_ioctl: bool = True) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.refuse = refuse or set()
        self.family = socket.AF_INET
        self.type = socket.SOCK_STREAM
        if has_ioctl:
            self.ioctl = self._ioctl

    def setsockopt(self, level: int, optname: int, value: int) -> None:
        if (level, optname) in self.refuse:
            raise OSError(92, "Protocol not available")
        self.calls.append(("setsockopt", level, optname, value))

    def _ioctl(self, control: int, option: tuple[int, int, int]) -> None:
        self.calls.append(("ioctl", control, option))

    def fileno(self) -> int:
        return 3


POLICY = Policy(idle=60, interval=10, count=5)


def test_macos_uses_tcp_keepalive_0x10_for_the_idle_time() -> None:
    platform = detect("darwin", DARWIN)
    sock = RecordingSocket()
    applied = _apply_with(sock, POLICY, platform)
    assert sock.calls == [
        ("setsockopt", 6, 0x10, 60),
        ("setsockopt", 6, 0x101, 10),
        ("setsockopt", 6, 0x102, 5),
        ("setsockopt", 0xFFFF, 0x0008, 1),
    ]
    assert applied.set == ("TCP_KEEPALIVE", "TCP_KEEPINTVL", "TCP_KEEPCNT", "SO_KEEPALIVE")
    assert applied.unsupported == ("TCP_USER_TIMEOUT",)
    assert applied.ok


def test_macos_mapping_does_not_depend_on_pythons_constants() -> None:
    assert detect("darwin", DARWIN_OLD_PYTHON) == detect("darwin", DARWIN)


def test_freebsd_uses_its_own_numbers_and_has_no_user_timeout() -> None:
    sock = RecordingSocket()
    applied = _apply_with(sock, POLICY, detect("freebsd14", FREEBSD))
    assert sock.calls == [
        ("setsockopt", 6, 256, 60),
        ("setsockopt", 6, 512, 10),
        ("setsockopt", 6, 1024, 5),
        ("setsockopt", 0xFFFF, 0x0008, 1),
    ]
    assert applied.unsupported == ("TCP_USER_TIMEOUT",)


def test_windows_10_1709_and_later_use_socket_options() -> None:
    sock = RecordingSocket()
    applied = _apply_with(sock, POLICY, detect("win32", WINDOWS, windows_build=19045))
    assert sock.calls == [
        ("setsockopt", 6, 3, 60),
        ("setsockopt", 6, 17, 10),
        ("setsockopt", 6, 16, 5),
        ("setsockopt", 0xFFFF, 0x0008, 1),
    ]
    assert applied.unsupported == ("TCP_USER_TIMEOUT",)


def test_windows_1703_falls_back_to_sio_keepalive_vals_for_idle_and_interval() -> None:
    sock = RecordingSocket()
    applied = _apply_with(sock, POLICY, detect("win32", WINDOWS, windows_build=15063))
    assert sock.calls == [
        ("setsockopt", 6, 16, 5),
        ("setsockopt", 0xFFFF, 0x0008, 1),
        ("ioctl", 0x98000004, (1, 60_000, 10_000)),
    ]
    assert "SIO_KEEPALIVE_VALS" in applied.set
    assert applied.unsupported == ("TCP_USER_TIMEOUT",)


def test_old_windows_cannot_set_the_probe_count() -> None:
    sock = RecordingSocket()
    applied = _apply_with(sock, POLICY, detect("win32", WINDOWS, windows_build=14393))
    assert sock.calls == [("setsockopt", 0xFFFF, 0x0008, 1), ("ioctl", 0x98000004, (1, 60_000, 10_000))]
    assert applied.unsupported == ("TCP_KEEPCNT", "TCP_USER_TIMEOUT")


def test_linux_sets_user_timeout_in_milliseconds_and_so_keepalive_last() -> None:
    sock = RecordingSocket()
    _apply_with(sock, Policy(idle=7, interval=3, count=2, user_timeout=1.5), detect("linux", LINUX))
    assert sock.calls == [
        ("setsockopt", 6, 4, 7),
        ("setsockopt", 6, 5, 3),
        ("setsockopt", 6, 6, 2),
        ("setsockopt", 6, 18, 1500),
        ("setsockopt", 1, 9, 1),
    ]


def test_a_none_user_timeout_leaves_the_socket_alone() -> None:
    sock = RecordingSocket()
    applied = _apply_with(sock, Policy(user_timeout=None), detect("linux", LINUX))
    assert all(call[2] != 18 for call in sock.calls)
    assert "TCP_USER_TIMEOUT" not in applied.unsupported


def test_a_refused_option_is_reported_and_the_rest_still_set() -> None:
    """An old kernel or a sandbox (gVisor) may refuse TCP_USER_TIMEOUT: the other options must still be set."""
    sock = RecordingSocket(refuse={(6, 18)})
    applied = _apply_with(sock, POLICY, detect("linux", LINUX))
    assert ("setsockopt", 1, 9, 1) in sock.calls
    assert applied.set == ("TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT", "SO_KEEPALIVE")
    assert [name for name, _ in applied.failed] == ["TCP_USER_TIMEOUT"]
    assert "ENOPROTOOPT" in applied.failed[0][1]
    assert not applied.ok


def test_current_platform_is_probed_once_from_the_socket_module() -> None:
    assert detect() == CURRENT
    if hasattr(socket, "TCP_KEEPIDLE"):
        assert CURRENT.idle == socket.TCP_KEEPIDLE


def test_supported_lists_every_option() -> None:
    assert detect("darwin", DARWIN).supported() == {
        "SO_KEEPALIVE": True,
        "TCP_KEEPALIVE": True,
        "TCP_KEEPINTVL": True,
        "TCP_KEEPCNT": True,
        "TCP_USER_TIMEOUT": False,
    }


def test_unknown_platform_without_options_reports_all_unsupported() -> None:
    bare = fake_socket_module(SOL_SOCKET=1, SO_KEEPALIVE=9, IPPROTO_TCP=6)
    plan = compile_plan(POLICY, detect("sunos5", bare))
    assert plan.calls == (("SO_KEEPALIVE", 1, 9, 1),)
    assert plan.success.unsupported == ("TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT", "TCP_USER_TIMEOUT")


def test_a_socket_module_without_basics_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="SO_KEEPALIVE"):
        detect("linux", fake_socket_module())


# -- mutation testing (CONTRIBUTING.md): behaviours no test pinned down before -----------------------------------


def test_old_windows_reports_idle_and_interval_as_supported_through_the_ioctl() -> None:
    assert detect("win32", WINDOWS, windows_build=14393).supported() == {
        "SO_KEEPALIVE": True,
        "TCP_KEEPIDLE": True,
        "TCP_KEEPINTVL": True,
        "TCP_KEEPCNT": False,
        "TCP_USER_TIMEOUT": False,
    }
    bare = fake_socket_module(SOL_SOCKET=1, SO_KEEPALIVE=9, IPPROTO_TCP=6)
    assert detect("sunos5", bare).supported()["TCP_KEEPIDLE"] is False


@pytest.mark.parametrize(("missing", "present"), [("TCP_KEEPINTVL", "TCP_KEEPIDLE"), ("TCP_KEEPIDLE", "TCP_KEEPINTVL")])
def test_a_platform_missing_one_of_idle_and_interval_reports_just_that_one(missing: str, present: str) -> None:
    """Each of idle and interval is judged on its own: the one that exists is set, the other is unsupported."""
    constants = {"SOL_SOCKET": 1, "SO_KEEPALIVE": 9, "IPPROTO_TCP": 6, "TCP_KEEPCNT": 6, present: 4}
    plan = compile_plan(POLICY, detect("linux", fake_socket_module(**constants)))
    assert [name for name, *_ in plan.calls] == [present, "TCP_KEEPCNT", "SO_KEEPALIVE"]
    assert plan.success.unsupported == (missing, "TCP_USER_TIMEOUT")
    assert plan.ioctl is None


def test_old_windows_plan_lists_every_call_it_makes() -> None:
    plan = compile_plan(POLICY, detect("win32", WINDOWS, windows_build=15063))
    assert plan.success.set == ("TCP_KEEPCNT", "SO_KEEPALIVE", "SIO_KEEPALIVE_VALS")


def test_a_refusal_on_another_platform_keeps_the_policy_and_names_the_error() -> None:
    sock = RecordingSocket(refuse={(6, 16)})
    applied = _apply_with(sock, POLICY, detect("win32", WINDOWS, windows_build=16299))
    assert applied.policy is POLICY
    assert applied.failed == (("TCP_KEEPCNT", "ENOPROTOOPT: Protocol not available"),)


def test_a_socket_without_ioctl_on_old_windows_reports_the_ioctl_failed() -> None:
    sock = RecordingSocket(has_ioctl=False)
    applied = _apply_with(sock, POLICY, detect("win32", WINDOWS, windows_build=14393))
    assert applied.set == ("SO_KEEPALIVE",)
    assert [name for name, _ in applied.failed] == ["SIO_KEEPALIVE_VALS"]
    import errno
    import os

    code = errno.EOPNOTSUPP
    assert applied.failed[0][1] == f"{errno.errorcode[code]}: {os.strerror(code)}"


class _UdpRecordingSocket(RecordingSocket):
    """A fake UDP socket: the kernel refuses TCP-level options on it."""

    def __init__(self) -> None:
        super().__init__(refuse={(6, 0x10), (6, 0x101), (6, 0x102)})
        self.type = socket.SOCK_DGRAM


def test_results_keep_the_platforms_unsupported_options_when_skipped_or_partial() -> None:
    darwin = detect("darwin", DARWIN)
    skipped = _apply_with(_UdpRecordingSocket(), POLICY, darwin)
    assert skipped.skipped == "not a TCP socket (type SOCK_DGRAM)"
    assert skipped.unsupported == ("TCP_USER_TIMEOUT",)
    assert skipped.policy is POLICY
    partial = _apply_with(RecordingSocket(refuse={(6, 0x102)}), POLICY, darwin)
    assert partial.unsupported == ("TCP_USER_TIMEOUT",)
    assert partial.set == ("TCP_KEEPALIVE", "TCP_KEEPINTVL", "SO_KEEPALIVE")


def test_strict_refusal_names_each_option_and_error() -> None:
    from keepalive import KeepaliveError

    with pytest.raises(KeepaliveError) as info:
        _apply_with(RecordingSocket(refuse={(6, 18), (6, 6)}), POLICY, detect("linux", LINUX), strict=True)
    assert str(info.value) == (
        "cannot apply keepalive: TCP_KEEPCNT: ENOPROTOOPT: Protocol not available, "
        "TCP_USER_TIMEOUT: ENOPROTOOPT: Protocol not available"
    )


def test_old_windows_still_sets_the_ioctl_when_an_option_is_refused() -> None:
    sock = RecordingSocket(refuse={(0xFFFF, 0x0008)})
    applied = _apply_with(sock, POLICY, detect("win32", WINDOWS, windows_build=15063))
    assert applied.set == ("TCP_KEEPCNT", "SIO_KEEPALIVE_VALS")
    assert [name for name, _ in applied.failed] == ["SO_KEEPALIVE"]
    assert ("ioctl", 0x98000004, (1, 60_000, 10_000)) in sock.calls


def test_failure_logs_carry_the_socket_and_the_facts(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The DEBUG lines name the socket (fd, family, type) and carry the facts in `extra`; a refusal that is not
    an OSError (a ValueError from an odd socket object) is warned about under its exception name."""
    import logging

    from keepalive import _socket

    monkeypatch.setattr(_socket, "_warned", {})

    class ValueErrorSocket(RecordingSocket):
        def setsockopt(self, level: int, optname: int, value: int) -> None:
            if optname == 18:
                raise ValueError("out of range")
            super().setsockopt(level, optname, value)

    linux = detect("linux", LINUX)
    with caplog.at_level(logging.DEBUG, logger="keepalive.socket"):
        _apply_with(_UdpRecordingSocket(), POLICY, detect("darwin", DARWIN))
        _apply_with(ValueErrorSocket(), POLICY, linux)
    skipped, partial, warning = caplog.records
    assert skipped.getMessage().startswith("keepalive not applied to fd=3 family=")
    assert skipped.keepalive_skipped == "not a TCP socket (type SOCK_DGRAM)"  # type: ignore[attr-defined]
    assert partial.getMessage().startswith("keepalive partly applied to fd=3 family=")
    assert partial.getMessage().endswith("failed TCP_USER_TIMEOUT (ValueError: out of range)")
    assert partial.keepalive_failed == {"TCP_USER_TIMEOUT": "ValueError: out of range"}  # type: ignore[attr-defined]
    assert warning.levelname == "WARNING"
    assert warning.keepalive_errno == "ValueError"  # type: ignore[attr-defined]
    assert warning.keepalive_error == "ValueError: out of range"  # type: ignore[attr-defined]
    assert "fd=3" in warning.getMessage()


def test_platform_names_and_the_windows_1709_boundary() -> None:
    assert detect("darwin", DARWIN).name == "darwin"
    assert detect("win32", WINDOWS, windows_build=16299).name == "windows"
    assert detect("linux", LINUX).name == "linux"
    assert detect("freebsd14", FREEBSD).name == "freebsd"
    assert detect("sunos5", fake_socket_module(SOL_SOCKET=1, SO_KEEPALIVE=9, IPPROTO_TCP=6)).name == "sunos5"
    at_1709 = detect("win32", WINDOWS, windows_build=16299)  # the first build with TCP_KEEPIDLE
    assert (at_1709.idle, at_1709.interval, at_1709.sio_keepalive_vals) == (3, 17, None)
    before = detect("win32", WINDOWS, windows_build=16298)
    assert (before.idle, before.interval, before.sio_keepalive_vals) == (None, None, 0x98000004)
    assert detect("win32", WINDOWS, windows_build=15062).count is None


@pytest.mark.parametrize("missing", ["SOL_SOCKET", "SO_KEEPALIVE", "IPPROTO_TCP"])
def test_each_basic_constant_is_required(missing: str) -> None:
    constants = {"SOL_SOCKET": 1, "SO_KEEPALIVE": 9, "IPPROTO_TCP": 6}
    del constants[missing]
    with pytest.raises(RuntimeError, match="lacks SOL_SOCKET/SO_KEEPALIVE/IPPROTO_TCP"):
        detect("linux", fake_socket_module(**constants))
