"""The pytest plugin (pytest_keepalive.py): ``--keepalive-strict`` run on real test suites through ``pytester``.

Every sample suite opens real TCP connections on loopback (to a listener it starts, or to the local services) and
the plugin reads them back with getsockopt through :func:`keepalive.audit`.
"""

from __future__ import annotations

import re
import sys
import zipfile
from pathlib import Path

import pytest

import pytest_keepalive

pytest_plugins = ["pytester"]

INI = """
[pytest]
addopts = --strict-markers -p no:cacheprovider
filterwarnings = error
asyncio_mode = strict
asyncio_default_fixture_loop_scope = function
"""

#: A sample suite's conftest: a listener that accepts in the background and keeps the accepted sockets open.
CONFTEST = """
import socket
import threading

import pytest


class Server:
    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = self.sock.getsockname()
        self.accepted = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self):
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def server():
    srv = Server()
    yield srv
    srv.close()


KEEP = []  # connections a test leaves open on purpose


@pytest.fixture(autouse=True)
def _close_left_open():
    yield
    while KEEP:
        KEEP.pop().close()
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    """A sample project with pytest configured like ours (warnings are errors, strict markers) and a server."""
    pytester.makeini(INI)
    pytester.makeconftest(CONFTEST)
    return pytester


def teardown_lines(result: pytest.RunResult) -> list[str]:
    """The plugin's per-connection lines in the output, from the error reports (not the short test summary, which
    repeats them in full when the ``CI`` variable is set)."""
    lines: list[str] = []
    for line in result.outlines:
        if "short test summary info" in line:
            break
        if re.match(r"\s+\S+:\d+ -> \S+:\d+: ", line):
            lines.append(line)
    return lines


# ----------------------------------------------------------------------------------------------------- inert


def test_without_the_option_the_plugin_imports_nothing_and_runs_no_hook(suite: pytest.Pytester) -> None:
    """Loaded through the entry point in every run, the plugin imports no keepalive module and adds no fixtures."""
    suite.makepyfile(
        """
        import socket
        import sys

        from conftest import KEEP

        def test_plain(request, server):
            KEEP.append(socket.create_connection(server.address))  # no keepalive, and nobody minds
            assert request.config.pluginmanager.has_plugin("keepalive")  # the entry point loaded the module
            assert request.config.pluginmanager.get_plugin("keepalive-strict") is None
            assert [name for name in request.fixturenames if "keepalive" in name] == []  # no autouse fixture
            hooks = request.config.hook
            for hook in (hooks.pytest_runtest_setup, hooks.pytest_runtest_teardown, hooks.pytest_fixture_setup):
                assert [impl.plugin_name for impl in hook.get_hookimpls() if "keepalive" in impl.plugin_name] == []
            assert sorted(name for name in sys.modules if name.split(".")[0] == "keepalive") == []
        """
    )
    result = suite.runpytest_subprocess()
    result.assert_outcomes(passed=1)


def test_the_wheel_ships_the_plugin_module_and_its_entry_point(tmp_path: Path) -> None:
    """pytest finds the plugin in an installed wheel: the module at the root and a pytest11 entry point."""
    from hatchling.builders.wheel import WheelBuilder

    root = Path(pytest_keepalive.__file__).resolve().parent
    wheel = next(WheelBuilder(str(root)).build(directory=str(tmp_path), versions=["standard"]))
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read("pytest_keepalive.py") == (root / "pytest_keepalive.py").read_bytes()
        names = archive.namelist()
        entry_points = archive.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert "[pytest11]\nkeepalive = pytest_keepalive\n" in entry_points


def test_the_marker_is_registered_without_the_option(suite: pytest.Pytester) -> None:
    """Suites with --strict-markers can mark tests keepalive_exempt whether or not the check is on."""
    suite.makepyfile(
        """
        import pytest

        @pytest.mark.keepalive_exempt(reason="talks to a server that closes idle clients itself")
        def test_marked():
            pass
        """
    )
    suite.runpytest().assert_outcomes(passed=1)


# ------------------------------------------------------------------------------------------------ sync sockets

SYNC = """
import socket

import pytest

import keepalive
from conftest import KEEP


def test_bare_socket(server):
    KEEP.append(socket.create_connection(server.address))


def test_keepalive_connection(server):
    KEEP.append(keepalive.create_connection(server.address))


def test_loose_timings(server):
    sock = socket.create_connection(server.address)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 7200)
    KEEP.append(sock)


def test_closed_before_the_end(server):
    socket.create_connection(server.address).close()


def test_listener_only():
    KEEP.append(socket.create_server(("127.0.0.1", 0)))


@pytest.mark.keepalive_exempt(reason="checked elsewhere")
def test_exempt(server):
    KEEP.append(socket.create_connection(server.address))
"""


def test_strict_fails_each_connection_without_fitting_keepalive_at_teardown(suite: pytest.Pytester) -> None:
    """Only the tests that leave a client connection without fitting keepalive fail, at teardown, one line each."""
    suite.makepyfile(SYNC)
    result = suite.runpytest("--keepalive-strict", "-rE")
    result.assert_outcomes(passed=6, errors=2)
    errors = sorted(line.split()[1].rpartition("::")[2] for line in result.outlines if line.startswith("ERROR "))
    assert errors == ["test_bare_socket", "test_loose_timings"]
    lines = teardown_lines(result)
    assert len(lines) == 2  # the accepted server ends and the listener are not the tests' connections
    assert "no keepalive (SO_KEEPALIVE is off)" in lines[0]
    assert "idle 7200 s > 60 s" in lines[1]
    assert all(re.match(r"\s+127\.0\.0\.1:\d+ -> 127\.0\.0\.1:\d+: ", line) for line in lines)
    assert all("fix: keepalive.apply(sock)" in line for line in lines)
    result.stdout.fnmatch_lines(
        ["*ERROR at teardown of test_bare_socket*", "keepalive-strict: 1 connection this test*"]
    )


def test_a_loopback_pair_within_the_process_is_not_a_connection_to_check(suite: pytest.Pytester) -> None:
    """Both ends in the process and no listener left (a wake-up pair made over TCP, a fake server that closed its
    listener): nothing crosses a network, nothing is reported; a client of a server elsewhere still is."""
    suite.makepyfile(
        """
        import socket

        import pytest

        from conftest import KEEP

        @pytest.fixture
        def pair():
            listener = socket.create_server(("127.0.0.1", 0))
            client = socket.create_connection(listener.getsockname())
            server, _ = listener.accept()
            listener.close()
            yield client, server
            client.close()
            server.close()

        def test_pair(pair):
            pair[0].sendall(b"x")

        def test_pair_and_a_client(pair, server):
            KEEP.append(socket.create_connection(server.address))
        """
    )
    result = suite.runpytest("--keepalive-strict", "-rE")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["ERROR *test_pair_and_a_client*"])
    assert len(teardown_lines(result)) == 1


def test_a_connection_the_peer_closed_is_not_checked(suite: pytest.Pytester) -> None:
    """A client whose server hung up (CLOSE_WAIT) holds no live connection: keepalive no longer matters for it."""
    suite.makepyfile(
        """
        import socket
        import time

        from conftest import KEEP

        def test_server_hung_up(server):
            sock = socket.create_connection(server.address)
            KEEP.append(sock)
            while not server.accepted:
                time.sleep(0.01)
            server.accepted[0].close()
            assert sock.recv(1) == b""  # the FIN arrived: CLOSE_WAIT on this side
        """
    )
    suite.runpytest("--keepalive-strict").assert_outcomes(passed=1)


def test_a_check_that_breaks_fails_the_test_and_still_tears_it_down(suite: pytest.Pytester) -> None:
    """A test that patches what the check uses gets an error naming it; its fixtures are torn down as usual."""
    suite.makepyfile(
        """
        import pytest

        import keepalive

        TORN_DOWN = []

        @pytest.fixture
        def resource():
            yield
            TORN_DOWN.append(True)

        def test_patches_the_audit(resource, monkeypatch, server):
            def broken(*args, **kwargs):
                raise RuntimeError("audit patched away")

            monkeypatch.setattr(keepalive, "audit", broken)
            import socket
            from conftest import KEEP
            KEEP.append(socket.create_connection(server.address))

        def test_after(resource):
            assert TORN_DOWN == [True]
        """
    )
    result = suite.runpytest("--keepalive-strict")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        ["keepalive-strict: could not check the connections this test opened (RuntimeError: audit patched away)*"]
    )


def test_ini_option_turns_the_check_on(suite: pytest.Pytester) -> None:
    """``keepalive_strict = true`` in the ini file is the same as --keepalive-strict."""
    suite.makeini(INI + "keepalive_strict = true\n")
    suite.makepyfile(SYNC)
    suite.runpytest().assert_outcomes(passed=6, errors=2)


def test_policy_option_sets_the_yardstick(suite: pytest.Pytester) -> None:
    """A tighter --keepalive-policy fails connections that fit the default; a looser one passes slower ones."""
    suite.makepyfile(SYNC)
    tight = suite.runpytest("--keepalive-strict", "--keepalive-policy", "idle=20,interval=5,count=3")
    tight.assert_outcomes(passed=6, errors=3)
    assert any("idle 60 s > 20 s" in line and "count 5 > 3" in line for line in teardown_lines(tight))
    loose = suite.runpytest(
        "--keepalive-strict", "--keepalive-policy", "idle=7200,interval=75,count=9,user_timeout=off"
    )
    loose.assert_outcomes(passed=6, errors=1)  # only the socket without SO_KEEPALIVE


def test_user_timeout_must_be_set_when_the_policy_sets_one(suite: pytest.Pytester) -> None:
    """Keepalive timings alone don't fit a policy with a user timeout; ``user_timeout=off`` asks for none."""
    suite.makepyfile(
        """
        import socket

        from conftest import KEEP

        def test_timings_without_user_timeout(server):
            sock = socket.create_connection(server.address)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            for option, value in ((socket.TCP_KEEPIDLE, 60), (socket.TCP_KEEPINTVL, 10), (socket.TCP_KEEPCNT, 5)):
                sock.setsockopt(socket.IPPROTO_TCP, option, value)
            KEEP.append(sock)
        """
    )
    result = suite.runpytest("--keepalive-strict", "--keepalive-policy", "60,10,5")
    result.assert_outcomes(passed=1, errors=1)
    assert "no TCP_USER_TIMEOUT (policy: 110 s)" in teardown_lines(result)[0]
    off = suite.runpytest("--keepalive-strict", "--keepalive-policy", "idle=60,interval=10,count=5,user_timeout=off")
    off.assert_outcomes(passed=1)


def test_ini_policy_sets_the_yardstick(suite: pytest.Pytester) -> None:
    """``keepalive_policy`` in the ini file works like --keepalive-policy; the command line wins over it."""
    suite.makeini(INI + "keepalive_policy = idle=20,interval=5,count=3\n")
    suite.makepyfile(SYNC)
    suite.runpytest("--keepalive-strict").assert_outcomes(passed=6, errors=3)
    suite.runpytest("--keepalive-strict", "--keepalive-policy", "60,10,5").assert_outcomes(passed=6, errors=2)


@pytest.mark.parametrize("spec", ["sixty", "idle=0", "idle=60,bogus=1"])
def test_unparsable_policy_is_a_usage_error_naming_it(suite: pytest.Pytester, spec: str) -> None:
    """pytest exits with its usage error (4) and the message names the value."""
    suite.makepyfile("def test_nothing():\n    pass\n")
    result = suite.runpytest("--keepalive-strict", "--keepalive-policy", spec)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--keepalive-policy {spec!r} is not a keepalive policy*"])


def test_unparsable_ini_policy_is_a_usage_error_naming_it(suite: pytest.Pytester) -> None:
    """The same for the ini option, which the message names as such."""
    suite.makeini(INI + "keepalive_policy = idle=sixty\n")
    suite.makepyfile("def test_nothing():\n    pass\n")
    result = suite.runpytest("--keepalive-strict")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ini keepalive_policy 'idle=sixty' is not a keepalive policy*"])


def test_a_broken_keepalive_environment_is_a_usage_error(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --keepalive-policy the default policy is the yardstick; a malformed KEEPALIVE_* variable is named."""
    monkeypatch.setenv("KEEPALIVE_IDLE", "sixty")
    suite.makepyfile("def test_nothing():\n    pass\n")
    result = suite.runpytest("--keepalive-strict")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*the default policy is broken: KEEPALIVE_IDLE='sixty'*"])
    suite.runpytest("--keepalive-strict", "--keepalive-policy", "60,10,5").assert_outcomes(passed=1)


def test_the_environment_sets_the_default_policy(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """KEEPALIVE_* variables make the default policy, as for the code under test (docs/policy.md)."""
    monkeypatch.setenv("KEEPALIVE_IDLE", "20")
    monkeypatch.setenv("KEEPALIVE_INTERVAL", "5")
    monkeypatch.setenv("KEEPALIVE_COUNT", "3")
    suite.makepyfile(SYNC)
    result = suite.runpytest("--keepalive-strict")
    result.assert_outcomes(passed=6, errors=2)  # keepalive.create_connection() follows the same environment
    result.stdout.fnmatch_lines(["keepalive: --keepalive-strict, policy Policy(idle=20, interval=5, count=3*"])


def test_a_failed_setup_is_not_also_checked(suite: pytest.Pytester) -> None:
    """A test whose setup fails or skips after opening a connection gets only its own error or skip."""
    suite.makepyfile(
        """
        import socket

        import pytest

        from conftest import KEEP

        @pytest.fixture
        def broken(server):
            KEEP.append(socket.create_connection(server.address))
            raise RuntimeError("setup broke")

        @pytest.fixture
        def skipping(server):
            KEEP.append(socket.create_connection(server.address))
            pytest.skip("not here")

        def test_broken(broken):
            pass

        def test_skipped(skipping):
            pass
        """
    )
    result = suite.runpytest("--keepalive-strict")
    result.assert_outcomes(errors=1, skipped=1)
    assert teardown_lines(result) == []


def test_without_proc_the_check_says_so_once_and_tests_pass(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where /proc is missing (macOS, Windows) the run says once that nothing was checked; results are unchanged."""
    monkeypatch.setattr(pytest_keepalive, "proc_available", lambda: False)
    suite.makepyfile(SYNC + "\n\ndef test_asks_for_connections(keepalive_connections):\n    pass\n")
    result = suite.runpytest("--keepalive-strict")
    result.assert_outcomes(passed=6, skipped=1)  # the fixture skips the test that asks for it
    said = [line for line in result.outlines if "--keepalive-strict is unavailable" in line]
    assert said == [
        f"keepalive: --keepalive-strict is unavailable on {sys.platform} (it needs Linux's /proc); tests ran unchecked"
    ]


# --------------------------------------------------------------------------------------------- wider fixtures

WIDE = """
import socket

import pytest

import keepalive


@pytest.fixture(scope="module")
def shared_client(request):
    from conftest import Server

    srv = Server()
    sock = socket.create_connection(srv.address)  # no keepalive
    yield sock
    sock.close()
    srv.close()


@pytest.fixture(scope="session")
def good_client():
    from conftest import Server

    srv = Server()
    sock = keepalive.create_connection(srv.address)
    yield sock
    sock.close()
    srv.close()


def test_first_user(shared_client, good_client):
    shared_client.sendall(b"x")


def test_second_user(shared_client):
    shared_client.sendall(b"y")


def test_unrelated():
    pass
"""


def test_a_wider_fixtures_connections_are_checked_at_its_teardown_not_in_the_tests(suite: pytest.Pytester) -> None:
    """The tests that use a module fixture pass; its connection fails the teardown of the fixture (last test)."""
    suite.makepyfile(WIDE)
    result = suite.runpytest("--keepalive-strict")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_unrelated*",
            "keepalive-strict: 1 connection that module-scoped fixture 'shared_client' opened left open *",
        ]
    )
    assert len(teardown_lines(result)) == 1  # the session fixture's connection has keepalive


def test_a_fixture_can_be_exempted_by_name_in_the_ini(suite: pytest.Pytester) -> None:
    """``keepalive_exempt_fixtures`` lists wider fixtures whose connections are not checked."""
    suite.makeini(INI + "keepalive_exempt_fixtures = shared_client\n")
    suite.makepyfile(WIDE)
    suite.runpytest("--keepalive-strict").assert_outcomes(passed=3)


def test_function_fixtures_connections_are_the_tests(suite: pytest.Pytester) -> None:
    """A function-scoped client fixture's connection is checked with the test, before the fixture closes it."""
    suite.makepyfile(
        """
        import socket

        import pytest

        @pytest.fixture
        def client(server):
            sock = socket.create_connection(server.address)
            yield sock
            sock.close()

        def test_uses_client(client):
            client.sendall(b"x")
        """
    )
    result = suite.runpytest("--keepalive-strict")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_uses_client*"])


def test_a_failing_teardown_keeps_the_keepalive_report(suite: pytest.Pytester) -> None:
    """When a fixture's teardown raises too, the connection lines are attached to that error, not lost."""
    suite.makepyfile(
        """
        import socket

        import pytest

        @pytest.fixture
        def client(server):
            sock = socket.create_connection(server.address)
            yield sock
            sock.close()
            raise RuntimeError("teardown broke")

        def test_uses_client(client):
            pass
        """
    )
    result = suite.runpytest("--keepalive-strict")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*RuntimeError: teardown broke", "E *keepalive-strict: 1 connection this test*"])


# ------------------------------------------------------------------------------------- keepalive_connections


CONNECTIONS = """
import socket

import keepalive
from conftest import KEEP


def test_sees_its_connections(server, keepalive_connections):
    assert keepalive_connections() == []
    good = keepalive.create_connection(server.address)
    bad = socket.create_connection(server.address)
    KEEP.extend([good, bad])
    states = {state.local: state for state in keepalive_connections()}
    assert set(states) == {"%s:%d" % good.getsockname(), "%s:%d" % bad.getsockname()}
    assert states["%s:%d" % good.getsockname()].keepalive is True
    assert states["%s:%d" % good.getsockname()].idle == keepalive_connections.policy.idle
    assert states["%s:%d" % bad.getsockname()].keepalive is False
    assert [state.local for state in keepalive_connections.offending()] == ["%s:%d" % bad.getsockname()]
    bad.close()
    assert [state.local for state in keepalive_connections()] == ["%s:%d" % good.getsockname()]
"""


@pytest.mark.parametrize("strict", [True, False], ids=["strict", "without-strict"])
def test_keepalive_connections_returns_the_tests_open_connections(suite: pytest.Pytester, strict: bool) -> None:
    """The fixture gives the SocketStates of the connections the test opened and still holds, strict or not."""
    suite.makepyfile(CONNECTIONS)
    args = ["--keepalive-strict"] if strict else []
    suite.runpytest(*args).assert_outcomes(passed=1)
