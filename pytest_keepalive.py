"""pytest plugin of tcp-keepalive: ``--keepalive-strict`` fails a test that leaves a connection without keepalive.

Registered through the ``pytest11`` entry point, so every suite that has ``tcp-keepalive`` installed loads it; it
stays out of the way until asked. Without ``--keepalive-strict`` (or the ini option ``keepalive_strict = true``)
it only adds its options, the ``keepalive_exempt`` marker and the ``keepalive_connections`` fixture; it imports
nothing (not even ``keepalive``: this module lives outside the package so that loading it costs nothing) and
runs no hook of its own around tests.

With it, the hooks live on a separate object registered for the session (:class:`_Strict`):

- before a test's setup, the socket inodes of this process (``/proc/self/fd``) are noted;
- a module-, class-, package- or session-scoped fixture's setup is bracketed the same way: the sockets it opened
  belong to the fixture, not to the test that first asked for it, and are checked when the fixture is torn down
  (a finalizer that runs just before the fixture's own teardown, so the connections are still open);
- at the start of the test's teardown (function-scoped fixtures' connections still open), the sockets the test
  opened that are still open are read with :func:`keepalive.audit` and held to the policy; the test fails at
  teardown, after its fixtures were torn down, with one line per offending connection.

Only client connections count: listeners, unconnected sockets and connections accepted by a listener of this
process are left alone (a test's fake server is not the code under test). See docs/testing.md.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Generator, Iterable
from typing import TYPE_CHECKING, Any, Final

import pytest

if TYPE_CHECKING:
    from keepalive import Policy, SocketState

__all__ = ["KeepaliveConnections"]

_MARKER: Final = "keepalive_exempt"
_PLUGIN_NAME: Final = "keepalive-strict"
_WIDE_SCOPES: Final = frozenset({"module", "class", "package", "session"})
#: TCP states of an open connection (or one being opened). Not: listeners, unconnected or closed sockets, and
#: connections closing (CLOSE_WAIT: the peer has closed, keepalive no longer matters; FIN_WAIT*, LAST_ACK, ...).
_OPEN: Final = frozenset({"ESTABLISHED", "SYN_SENT"})

#: The fix for a connection, by the server's port: the adapter of the client that usually talks to it.
_HINTS: Final = {
    5432: "PostgreSQL: psycopg.connect(dsn, **keepalive.adapters.psycopg.connect_kwargs()) (psycopg2: "
    "keepalive.adapters.psycopg2), keepalive.adapters.asyncpg.connect/create_pool, or "
    "keepalive.adapters.sqlalchemy.instrument(engine) (docs/adapters/psycopg.md, asyncpg.md, sqlalchemy.md)",
    6379: "Redis: redis.Redis(..., **keepalive.adapters.redis.connection_kwargs()) (docs/adapters/redis.md)",
    3306: "MySQL/MariaDB: keepalive.adapters.pymysql.connect(...) or keepalive.adapters.aiomysql.connect(...) "
    "(docs/adapters/pymysql.md, aiomysql.md)",
    5672: "RabbitMQ: keepalive.adapters.aio_pika.connect_robust(url) or "
    "pika.BlockingConnection(keepalive.adapters.pika.connection_parameters(...)) (docs/adapters/aio_pika.md, pika.md)",
    4222: "NATS: await keepalive.adapters.nats.connect(servers) (docs/adapters/nats.md)",
}
_GENERIC_HINT: Final = (
    "keepalive.apply(sock) on the socket, keepalive.create_connection()/keepalive.asyncio.open_connection() "
    "where it is made, the client's adapter (docs/adapters.md), or KEEPALIVE_AUTO=1 for the whole process "
    "(docs/install.md)"
)
_HTTP_HINT: Final = (
    "an HTTP client: keepalive.adapters.requests / urllib3 / httpx / aiohttp (docs/adapters.md); otherwise "
    + _GENERIC_HINT
)


# ------------------------------------------------------------------------------------------------ availability


def proc_available() -> bool:
    """True where the check can run: Linux with ``/proc`` (the audit reads ``/proc/self/fd`` and ``net/tcp``)."""
    return sys.platform.startswith("linux") and os.path.exists("/proc/self/net/tcp")


def _socket_inodes() -> set[int]:
    """The inodes of this process's open sockets (``socket:[N]`` links in /proc/self/fd): cheap, no getsockopt."""
    inodes: set[int] = set()
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return inodes
    for name in names:
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # closed meanwhile, or the listing's own descriptor
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


# ------------------------------------------------------------------------------------------------- options


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("keepalive", "TCP keepalive of the connections tests open (tcp-keepalive)")
    group.addoption(
        "--keepalive-strict",
        action="store_true",
        default=None,
        help="fail a test that leaves a TCP connection open without keepalive fitting the policy",
    )
    group.addoption(
        "--keepalive-policy",
        metavar="SPEC",
        default=None,
        help="the policy connections must fit, as keepalive.Policy.parse takes it ('60,10,5', "
        "'idle=60,interval=10,count=5,user_timeout=keep'); default: the process default policy",
    )
    parser.addini("keepalive_strict", type="bool", default=False, help="same as --keepalive-strict")
    parser.addini("keepalive_policy", default="", help="same as --keepalive-policy")
    parser.addini(
        "keepalive_exempt_fixtures",
        type="linelist",
        default=[],
        help="names of module/session-scoped fixtures whose connections --keepalive-strict does not check",
    )


def _policy_spec(config: pytest.Config) -> tuple[str, str] | None:
    """(where it was given, spec) of the policy option, or None for the default policy."""
    spec = config.getoption("keepalive_policy")
    if spec is not None:
        return "--keepalive-policy", str(spec)
    spec = str(config.getini("keepalive_policy") or "").strip()
    return ("ini keepalive_policy", spec) if spec else None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{_MARKER}(reason=None): --keepalive-strict does not check the connections this test leaves open",
    )
    enabled = bool(config.getoption("keepalive_strict") or config.getini("keepalive_strict"))
    given = _policy_spec(config)
    policy = None if given is None else _parse_policy(*given)
    if not enabled:
        return
    if policy is None:
        policy = _default_policy()
    if not proc_available():
        config.stash[_unavailable_key] = (
            f"keepalive: --keepalive-strict is unavailable on {sys.platform} (it needs Linux's /proc); "
            "tests ran unchecked"
        )
        return
    exempt = frozenset(str(name) for name in config.getini("keepalive_exempt_fixtures"))
    config.pluginmanager.register(_Strict(policy, exempt), _PLUGIN_NAME)


def _parse_policy(where: str, spec: str) -> Policy:
    from keepalive import InvalidPolicy, Policy

    try:
        return Policy.parse(spec)
    except (InvalidPolicy, ValueError) as exc:
        raise pytest.UsageError(f"{where} {spec!r} is not a keepalive policy: {exc}") from None


def _default_policy() -> Policy:
    """The process default policy, resolved before any test changes the environment."""
    from keepalive import InvalidPolicy, default_policy

    try:
        return default_policy()
    except InvalidPolicy as exc:
        raise pytest.UsageError(
            f"--keepalive-strict: the default policy is broken: {exc}; fix the environment or give --keepalive-policy"
        ) from None


_unavailable_key = pytest.StashKey[str]()


def pytest_report_header(config: pytest.Config) -> str | None:
    strict = config.pluginmanager.get_plugin(_PLUGIN_NAME)
    if isinstance(strict, _Strict):
        return f"keepalive: --keepalive-strict, policy {strict.policy!r}"
    return None


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    message = config.stash.get(_unavailable_key, None)
    if message is not None:
        terminalreporter.write_line(message, yellow=True)


# ------------------------------------------------------------------------------------------------ judging


def _shortfalls(state: SocketState, policy: Policy) -> list[str]:
    """What keeps ``state`` from fitting ``policy``; empty when it fits.

    Fits: SO_KEEPALIVE on; idle, interval and count no larger than the policy's; when the policy sets a user
    timeout, TCP_USER_TIMEOUT set and no larger than it (a policy with ``user_timeout=keep`` or ``off`` asks
    nothing of it).
    """
    if state.keepalive is None:
        return [state.reason]
    if not state.keepalive:
        return ["SO_KEEPALIVE is off"]
    found: list[str] = []
    for name, have, want in (
        ("idle", state.idle, policy.idle),
        ("interval", state.interval, policy.interval),
        ("count", state.count, policy.count),
    ):
        if have is None:
            found.append(f"{name} unreadable")
        elif have > want:
            unit = "" if name == "count" else " s"
            found.append(f"{name} {have}{unit} > {want}{unit}")
    if policy.user_timeout:  # None (keep) and 0 (off) ask nothing of the socket
        if not state.user_timeout:
            found.append(f"no TCP_USER_TIMEOUT (policy: {policy.user_timeout:g} s)")
        elif state.user_timeout > policy.user_timeout:
            found.append(f"user timeout {state.user_timeout:g} s > {policy.user_timeout:g} s")
    return found


def _has(state: SocketState) -> str:
    if state.keepalive is None:
        return "keepalive unreadable"
    if not state.keepalive:
        return "no keepalive"
    timeout = f"{state.user_timeout:g} s" if state.user_timeout else "off"
    return f"keepalive idle {state.idle} s, interval {state.interval} s, count {state.count}, user timeout {timeout}"


def _hint(state: SocketState) -> str:
    """The fix for one connection: the adapter of the client that usually talks to its server's port."""
    port = int(state.remote.rpartition(":")[2] or 0)
    if port in _HINTS:
        return _HINTS[port]
    if port in (80, 443, 8000, 8080, 8443):
        return _HTTP_HINT
    return _GENERIC_HINT


def _describe(states: Iterable[SocketState], policy: Policy, whose: str) -> str | None:
    """The failure message for the ones among ``states`` that do not fit ``policy``, or None when all fit."""
    lines = [
        f"  {state.local} -> {state.remote}: {_has(state)} ({'; '.join(found)}); fix: {_hint(state)}"
        for state in states
        if (found := _shortfalls(state, policy))
    ]
    if not lines:
        return None
    many = "s" if len(lines) > 1 else ""
    head = (
        f"keepalive-strict: {len(lines)} connection{many} {whose} left open without keepalive fitting "
        f"{policy!r} (exempt with @pytest.mark.{_MARKER}(reason=...)):"
    )
    return "\n".join([head, *lines])


# ----------------------------------------------------------------------------------------- the test's sockets


def _connections(opened: set[int], policy: Policy) -> list[SocketState]:
    """The client connections among the sockets ``opened`` that are still open, with their keepalive state.

    Left out: a connection whose local address is that of a listening socket of this process (now): it was
    accepted, not opened by a client; and one whose other end is a socket of this process too: a loopback pair
    inside the process (a library's wake-up pair made over TCP, like pika's, or a fake server whose listener is
    closed already), which crosses no network. Listeners seen earlier are not remembered: their ports go back to
    the ephemeral range and may be a later client's local port.
    """
    if not opened:
        return []
    import keepalive

    states = keepalive.audit(policy)
    listeners = {address for state in states if state.state == "LISTEN" for address in (state.local, _wildcard(state))}
    ends = {
        (state.local, state.remote): state
        for state in states
        if state.state in _OPEN and state.local not in listeners and _wildcard(state) not in listeners
    }
    return [state for state in ends.values() if state.inode in opened and (state.remote, state.local) not in ends]


def _wildcard(state: SocketState) -> str:
    port = state.local.rpartition(":")[2]
    return f"[::]:{port}" if state.family == "ipv6" else f"0.0.0.0:{port}"


class KeepaliveConnections:
    """The ``keepalive_connections`` fixture: call it for the TCP connections the test opened so far.

    ``keepalive_connections()`` returns the :class:`keepalive.SocketState` of each client connection opened since
    the test started (under ``--keepalive-strict``: since its setup began; without it: since this fixture was set
    up) that is still open, without those of wider-scoped fixtures, listeners, connections accepted by a listener
    of the process and loopback pairs within the process.
    ``.policy`` is the policy ``--keepalive-strict`` holds them to; ``offending()`` lists those that do not fit it.
    """

    def __init__(self, baseline: set[int], policy: Policy, wider: set[int]) -> None:
        self._baseline = baseline
        self._wider = wider
        self.policy = policy

    def __call__(self) -> list[SocketState]:
        return _connections(_socket_inodes() - self._baseline - self._wider, self.policy)

    def offending(self) -> list[SocketState]:
        """The connections whose keepalive does not fit :attr:`policy`: those ``--keepalive-strict`` reports."""
        return [state for state in self() if _shortfalls(state, self.policy)]


@pytest.fixture
def keepalive_connections(request: pytest.FixtureRequest) -> KeepaliveConnections:
    """The test's open TCP connections with their keepalive state: ``keepalive_connections()`` (docs/testing.md)."""
    if not proc_available():
        pytest.skip(f"keepalive_connections needs Linux's /proc (this is {sys.platform})")
    strict = request.config.pluginmanager.get_plugin(_PLUGIN_NAME)
    if isinstance(strict, _Strict):
        baseline = strict.baselines.get(request.node.nodeid)
        return KeepaliveConnections(_socket_inodes() if baseline is None else baseline, strict.policy, strict.wider)
    given = _policy_spec(request.config)
    policy = _default_policy() if given is None else _parse_policy(*given)
    return KeepaliveConnections(_socket_inodes(), policy, set())


# ------------------------------------------------------------------------------------------------- strict mode


class _Strict:
    """The hooks of ``--keepalive-strict``, registered only when it is on."""

    def __init__(self, policy: Policy, exempt_fixtures: frozenset[str]) -> None:
        self.policy = policy
        self.exempt_fixtures = exempt_fixtures
        self.baselines: dict[str, set[int]] = {}
        #: sockets opened by wider-scoped fixtures: never a single test's.
        self.wider: set[int] = set()

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, object, object]:
        self.baselines[item.nodeid] = _socket_inodes()
        try:
            return (yield)
        except BaseException:  # a failed or skipped setup: its report says enough, the check would only add noise
            self.baselines.pop(item.nodeid, None)
            raise

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_fixture_setup(
        self, fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
    ) -> Generator[None, object, object]:
        if fixturedef.scope not in _WIDE_SCOPES:
            return (yield)
        before = _socket_inodes()
        claimed = set(self.wider)
        result = yield
        opened = _socket_inodes() - before - (self.wider - claimed)  # not those of the wider fixtures it set up
        self.wider |= opened
        if opened and fixturedef.argname not in self.exempt_fixtures:
            whose = f"that {fixturedef.scope}-scoped fixture {fixturedef.argname!r} opened"
            fixturedef.addfinalizer(lambda: self._check_fixture(opened, whose))
        return result

    def _check(self, opened: Callable[[], set[int]], whose: str) -> str | None:
        """The failure message for the connections among ``opened``, if any; never raises.

        The check runs before the teardown, while the test's monkeypatches are in place: one that breaks what the
        audit uses must not keep the fixtures from being torn down, so the error becomes the message.
        """
        try:
            return _describe(_connections(opened(), self.policy), self.policy, whose)
        except Exception as exc:
            return (
                f"keepalive-strict: could not check the connections {whose} ({type(exc).__name__}: {exc}); if it "
                f"patches os, socket or keepalive's audit, mark it @pytest.mark.{_MARKER}(reason=...)"
            )

    def _check_fixture(self, opened: set[int], whose: str) -> None:
        """Runs just before the fixture's own teardown: its connections are still open."""
        message = self._check(lambda: opened & _socket_inodes(), whose)
        self.wider -= opened
        if message is not None:
            pytest.fail(message, pytrace=False)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> Generator[None, object, object]:
        baseline = self.baselines.pop(item.nodeid, None)
        message = None
        if baseline is not None and item.get_closest_marker(_MARKER) is None:
            message = self._check(lambda: _socket_inodes() - baseline - self.wider, "this test opened")
        try:
            result = yield
        except BaseException as exc:
            if message is not None:
                exc.add_note(message)
            raise
        if message is not None:
            pytest.fail(message, pytrace=False)
        return result
