"""keepalive._tighten.tighten(): the one tighten-only operation behind install(), the sweep and keepalive run.

On real sockets, with values read back with getsockopt: each timing ends at the smaller of the socket's and the
policy's, keepalive is on, a missing user timeout is filled and an existing one kept; nothing is ever loosened.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keepalive import Policy
from keepalive._tighten import describe, tighten
from tests.helpers import LINUX, keepalive_options
from tests.reach_support import accepting_listener

pytestmark = pytest.mark.skipif(not LINUX, reason="reads back Linux keepalive options")

timing = st.integers(min_value=1, max_value=32767)
counts = st.integers(min_value=1, max_value=127)


@pytest.fixture(scope="module")
def listener() -> Iterator[tuple[str, int]]:
    with accepting_listener() as address:
        yield address


@settings(max_examples=60, deadline=None)
@given(
    on=st.booleans(),
    idle=timing,
    interval=timing,
    count=counts,
    user_timeout_ms=st.sampled_from([0, 1, 5_000, 3_600_000]),
    policy=st.builds(Policy, idle=timing, interval=timing, count=counts),
    connected=st.booleans(),
    verify=st.booleans(),
)
def test_each_value_ends_at_the_smaller_and_nothing_is_loosened(
    listener: tuple[str, int],
    on: bool,
    idle: int,
    interval: int,
    count: int,
    user_timeout_ms: int,
    policy: Policy,
    connected: bool,
    verify: bool,
) -> None:
    """For any socket state and policy: min per timing, keepalive on, user timeout filled only where it was 0.
    ``after`` is what getsockopt reads, whether tighten() read it back (``verify``) or computed it (install())."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, int(on))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, user_timeout_ms)
        if connected:
            sock.connect(listener)
        result = tighten(sock, policy, verify=verify)
        got = keepalive_options(sock)
    want_user_timeout = user_timeout_ms or (policy.user_timeout_ms or 0)
    assert got == {
        "keepalive": 1,
        "idle": min(idle, policy.idle),
        "interval": min(interval, policy.interval),
        "count": min(count, policy.count),
        "user_timeout_ms": want_user_timeout,
    }
    assert result.error is None
    assert not result.loosened
    assert result.after == (True, got["idle"], got["interval"], got["count"], got["user_timeout_ms"])
    assert result.before == (on, idle, interval, count, user_timeout_ms)
    assert bool(result.changed) == (result.before != result.after)


def test_a_socket_already_within_the_policy_is_not_written() -> None:
    """Nothing to lower: no setsockopt, changed is empty (the sweep's steady state)."""
    policy = Policy(idle=60, interval=10, count=5)
    with socket.socket() as sock:
        first = tighten(sock, policy)
        second = tighten(sock, policy)
    assert set(first.changed) == {"keepalive", "idle", "interval", "count", "user_timeout"}
    assert second.changed == ()
    assert second.before == second.after


def test_a_policy_without_user_timeout_leaves_it_unset() -> None:
    """user_timeout=None in the policy: TCP_USER_TIMEOUT stays 0 (the kernel's retransmission limits)."""
    with socket.socket() as sock:
        tighten(sock, Policy(idle=60, interval=10, count=5, user_timeout=None))
        assert keepalive_options(sock)["user_timeout_ms"] == 0


def test_a_closed_socket_reports_the_error_and_does_not_raise() -> None:
    """A descriptor closed under the sweep: the error is in the result, nothing raised."""
    sock = socket.socket()
    sock.close()
    result = tighten(sock, Policy())
    assert result.error is not None
    assert result.changed == ()


def test_describe_says_off_or_the_timings() -> None:
    """The values as the log and keepalive run -v print them."""
    assert describe((False, 7200, 75, 9, 0)) == "off (7200/75/9)"
    assert describe((True, 60, 10, 5, 110_000)) == "60/10/5, user timeout 110 s"
    assert describe((None, None, None, None, None)) == "unreadable"
