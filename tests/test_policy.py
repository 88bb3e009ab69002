"""Policy: validation, below(), from_env(), parse(), the process default."""

from __future__ import annotations

import math
import pickle

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import keepalive
from keepalive import BUILTIN_POLICY, InvalidPolicy, KeepaliveError, Policy


def test_defaults_are_below_azures_240_seconds() -> None:
    """The built-in default survives the lowest common cloud idle timeout even if one probe is lost."""
    policy = Policy()
    assert (policy.idle, policy.interval, policy.count, policy.user_timeout) == (60, 10, 5, 110)
    assert policy == BUILTIN_POLICY
    assert policy.idle + policy.interval < 240


def test_user_timeout_is_derived_unless_given() -> None:
    assert Policy(idle=30, interval=5, count=3).user_timeout == 45
    assert Policy(idle=30, interval=5, count=3, user_timeout=None).user_timeout is None
    assert Policy(idle=30, interval=5, count=3, user_timeout=12.5).user_timeout_ms == 12500
    assert Policy(user_timeout=0).user_timeout_ms == 0


def test_policy_is_frozen_hashable_and_has_a_readable_repr() -> None:
    policy = Policy(idle=60, interval=10, count=5)
    with pytest.raises(AttributeError):
        policy.idle = 5  # type: ignore[misc]
    assert not hasattr(policy, "__dict__")
    assert {policy, Policy()} == {policy}
    assert repr(policy) == "Policy(idle=60, interval=10, count=5, user_timeout=110)"
    assert str(policy) == "idle=60s interval=10s count=5 user_timeout=110s"
    assert pickle.loads(pickle.dumps(policy)) == policy


def test_keyword_only() -> None:
    with pytest.raises(TypeError):
        Policy(60, 10, 5)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("idle", 0, "idle must be in 1..32767 seconds, got 0"),
        ("idle", 32768, "idle must be in 1..32767 seconds, got 32768"),
        ("interval", 0, "interval must be in 1..32767 seconds, got 0"),
        ("count", 128, "count must be in 1..127 probes, got 128"),
        ("count", 0, "count must be in 1..127 probes, got 0"),
        ("idle", 1.5, "idle must be a whole number of seconds in 1..32767, got 1.5"),
        ("idle", True, "idle must be a whole number of seconds in 1..32767, got True"),
        ("idle", "60", "idle must be a whole number of seconds in 1..32767, got '60'"),
        ("user_timeout", -1, "user_timeout must be in 0..2147483.647 seconds (0 = off), got -1"),
        ("user_timeout", math.inf, "user_timeout must be in 0..2147483.647 seconds (0 = off), got inf"),
        ("user_timeout", 0.0001, "user_timeout must be 0 or at least 0.001 seconds"),
        ("user_timeout", "x", "user_timeout must be a number of seconds"),
    ],
)
def test_invalid_values_name_field_value_and_range(field: str, value: object, fragment: str) -> None:
    with pytest.raises(InvalidPolicy) as info:
        Policy(**{field: value})  # type: ignore[arg-type]
    assert fragment in str(info.value)
    assert isinstance(info.value, KeepaliveError)
    assert isinstance(info.value, ValueError)


@given(
    idle=st.integers(1, 32767),
    interval=st.integers(1, 32767),
    count=st.integers(1, 127),
)
def test_every_value_in_linux_ranges_is_accepted(idle: int, interval: int, count: int) -> None:
    policy = Policy(idle=idle, interval=interval, count=count)
    assert policy.user_timeout == min(idle + interval * count, 2147483)
    assert policy.user_timeout_ms is not None
    assert policy.user_timeout_ms <= 2**31 - 1


@given(st.one_of(st.integers(max_value=0), st.integers(min_value=32768)))
def test_every_idle_outside_the_range_is_rejected(idle: int) -> None:
    with pytest.raises(InvalidPolicy, match="idle"):
        Policy(idle=idle)


# -- below() ---------------------------------------------------------------------------------------------------

TEN_DAYS = 10 * 86400


@given(st.floats(min_value=3, max_value=TEN_DAYS, allow_nan=False))
@example(3)
@example(3.999)
@example(4)
@example(240)
@example(350)
@example(900)
@example(86400)
@example(432000)
@example(TEN_DAYS)
def test_below_keeps_the_entry_alive_even_if_one_probe_is_lost(timeout: float) -> None:
    """The second probe (the first one lost) reaches the middlebox within 75 % of its timeout."""
    policy = Policy.below(timeout)
    assert policy.idle + policy.interval < timeout
    assert policy.idle + policy.interval <= max(2, math.floor(timeout * 0.75))
    assert 1 <= policy.idle <= 300
    assert 1 <= policy.interval <= 30
    assert policy.count == 5
    assert policy.user_timeout == policy.idle + policy.interval * policy.count


@given(st.floats(min_value=3, max_value=TEN_DAYS, allow_nan=False))
def test_below_detects_dead_peers_within_minutes(timeout: float) -> None:
    assert Policy.below(timeout).detection_time <= 300 + 30 * 5


@given(st.floats(min_value=3, max_value=TEN_DAYS), st.floats(min_value=3, max_value=TEN_DAYS))
def test_below_is_monotonic(a: float, b: float) -> None:
    """A shorter path timeout never yields a looser policy."""
    lo, hi = sorted((a, b))
    assert Policy.below(lo).idle <= Policy.below(hi).idle


@pytest.mark.parametrize(
    ("timeout", "expected"),
    [
        (3, (1, 1)),
        (4, (2, 1)),
        (60, (40, 5)),
        (240, (158, 22)),
        (350, (232, 30)),
        (900, (300, 30)),
        (432000, (300, 30)),
    ],
)
def test_below_documented_values(timeout: float, expected: tuple[int, int]) -> None:
    policy = Policy.below(timeout)
    assert (policy.idle, policy.interval) == expected


@pytest.mark.parametrize("timeout", [2.999, 0, -5, math.nan, math.inf, "350", True, None])
def test_below_rejects_timeouts_it_cannot_satisfy(timeout: object) -> None:
    with pytest.raises(InvalidPolicy, match="timeout must be"):
        Policy.below(timeout)  # type: ignore[arg-type]


# -- from_env() -------------------------------------------------------------------------------------------------


def test_from_env_none_when_nothing_set() -> None:
    assert Policy.from_env({}) is None
    assert Policy.from_env({"KEEPALIVE_IDLE": "  "}) is None
    assert Policy.from_env({"UNRELATED": "1"}) is None


def test_from_env_overrides_fields_of_the_builtin_default() -> None:
    assert Policy.from_env({"KEEPALIVE_IDLE": "30"}) == Policy(idle=30, interval=10, count=5)
    assert Policy.from_env({"KEEPALIVE_IDLE": "30s", "KEEPALIVE_COUNT": "3"}) == Policy(idle=30, count=3)
    assert Policy.from_env({"KEEPALIVE_USER_TIMEOUT": "off"}) == Policy(user_timeout=0)
    assert Policy.from_env({"KEEPALIVE_USER_TIMEOUT": "keep"}) == Policy(user_timeout=None)
    assert Policy.from_env({"KEEPALIVE_USER_TIMEOUT": "2.5"}) == Policy(user_timeout=2.5)


def test_from_env_path_timeout_derives_with_below() -> None:
    assert Policy.from_env({"KEEPALIVE_PATH_TIMEOUT": "350"}) == Policy.below(350)
    assert Policy.from_env({"KEEPALIVE_PATH_TIMEOUT": "350", "KEEPALIVE_COUNT": "2"}) == Policy(
        idle=232, interval=30, count=2
    )


@pytest.mark.parametrize(
    ("environ", "fragment"),
    [
        ({"KEEPALIVE_IDLE": "abc"}, "KEEPALIVE_IDLE='abc'"),
        ({"KEEPALIVE_IDLE": "0"}, "KEEPALIVE_IDLE='0'"),
        ({"KEEPALIVE_INTERVAL": "1.5"}, "KEEPALIVE_INTERVAL='1.5'"),
        ({"KEEPALIVE_COUNT": "1000"}, "KEEPALIVE_COUNT='1000'"),
        ({"KEEPALIVE_USER_TIMEOUT": "-3"}, "KEEPALIVE_USER_TIMEOUT='-3'"),
        ({"KEEPALIVE_USER_TIMEOUT": "nan"}, "KEEPALIVE_USER_TIMEOUT='nan'"),
        ({"KEEPALIVE_PATH_TIMEOUT": "2"}, "KEEPALIVE_PATH_TIMEOUT='2'"),
        ({"KEEPALIVE_PATH_TIMEOUT": "350", "KEEPALIVE_IDLE": "400"}, "must stay below KEEPALIVE_PATH_TIMEOUT"),
    ],
)
def test_from_env_errors_name_the_variable_and_value(environ: dict[str, str], fragment: str) -> None:
    with pytest.raises(InvalidPolicy) as info:
        Policy.from_env(environ)
    assert fragment in str(info.value)


@given(
    st.dictionaries(
        st.sampled_from(
            [
                "KEEPALIVE_IDLE",
                "KEEPALIVE_INTERVAL",
                "KEEPALIVE_COUNT",
                "KEEPALIVE_USER_TIMEOUT",
                "KEEPALIVE_PATH_TIMEOUT",
            ]
        ),
        st.text(max_size=12),
    )
)
def test_from_env_either_returns_a_policy_or_raises_invalid_policy(environ: dict[str, str]) -> None:
    try:
        result = Policy.from_env(environ)
    except InvalidPolicy:
        return
    assert result is None or isinstance(result, Policy)


def test_to_env_round_trips() -> None:
    for policy in (Policy(), Policy.below(350), Policy(user_timeout=None), Policy(user_timeout=0.25)):
        assert Policy.from_env(policy.to_env()) == policy


# -- parse() ----------------------------------------------------------------------------------------------------


def test_parse_positional_and_named() -> None:
    assert Policy.parse("60,10,5") == Policy(idle=60, interval=10, count=5)
    assert Policy.parse("30, 5, 3, off") == Policy(idle=30, interval=5, count=3, user_timeout=0)
    assert Policy.parse("30, 5, 3, keep") == Policy(idle=30, interval=5, count=3, user_timeout=None)
    assert Policy.parse("idle=20,count=2") == Policy(idle=20, count=2)
    assert Policy.parse("user-timeout=7") == Policy(user_timeout=7)


@pytest.mark.parametrize("text", ["", "a,b,c", "1,2,3,4,5", "idle=0", "speed=3", "60,10,500"])
def test_parse_errors_quote_the_text(text: str) -> None:
    with pytest.raises(InvalidPolicy) as info:
        Policy.parse(text)
    assert repr(text) in str(info.value)


def test_replace_rederives_the_user_timeout() -> None:
    assert Policy().replace(idle=30) == Policy(idle=30)
    assert Policy(user_timeout=7).replace(idle=30) == Policy(idle=30, user_timeout=7)
    assert Policy().replace(user_timeout=None).user_timeout is None


# -- default_policy() -------------------------------------------------------------------------------------------


def test_default_policy_is_the_builtin_without_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("keepalive._policy._detect_path", lambda: None)
    assert keepalive.default_policy() == BUILTIN_POLICY


def test_default_policy_prefers_the_environment_and_is_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEPALIVE_IDLE", "42")
    first = keepalive.default_policy()
    assert first.idle == 42
    monkeypatch.setenv("KEEPALIVE_IDLE", "43")
    assert keepalive.default_policy() is first
    keepalive.reset_default_policy()
    assert keepalive.default_policy().idle == 43
    assert "environment" in keepalive.explain_default_policy()[1]


def test_default_policy_uses_an_explicit_path_timeout_from_the_checker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("keepalive._policy._detect_path", lambda: (350.0, True, "KEEPALIVE_PATH_TIMEOUT"))
    assert keepalive.default_policy() == Policy.below(350)


def test_a_detected_node_timeout_never_loosens_the_builtin(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pod or node conntrack timeout of a day says nothing about a cloud NAT further along the path."""
    monkeypatch.setattr("keepalive._policy._detect_path", lambda: (86400.0, False, "node"))
    assert keepalive.default_policy() == BUILTIN_POLICY
    keepalive.reset_default_policy()
    monkeypatch.setattr("keepalive._policy._detect_path", lambda: (4.0, False, "node"))
    assert keepalive.default_policy() == Policy.below(4)


def test_default_policy_raises_on_a_broken_environment_but_wrappers_fall_back(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("KEEPALIVE_IDLE", "soon")
    with pytest.raises(InvalidPolicy, match="KEEPALIVE_IDLE='soon'"):
        keepalive.default_policy()
    from keepalive._policy import resolve_default_policy

    with caplog.at_level("ERROR", logger="keepalive"):
        assert resolve_default_policy() == BUILTIN_POLICY
        assert resolve_default_policy() == BUILTIN_POLICY
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1
    assert "KEEPALIVE_IDLE='soon'" in errors[0].getMessage()


def test_a_broken_environment_raises_whatever_ran_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 14: after a wrapper resolved (and fell back), default_policy() still raises and check() still reports
    invalid-policy-environment."""
    from keepalive._policy import resolve_default_policy

    monkeypatch.setenv("KEEPALIVE_IDLE", "abc")
    assert resolve_default_policy() == BUILTIN_POLICY  # a wrapper ran first
    with pytest.raises(InvalidPolicy, match="KEEPALIVE_IDLE='abc'"):
        keepalive.default_policy()
    report = keepalive.check(proc_root="/proc")
    assert "invalid-policy-environment" in {f.code for f in report.findings}
    assert report.exit_code == 2


def test_explicit_timings_fill_the_other_fields_from_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("keepalive._policy._detect_path", lambda: (240.0, True, "middlebox azure-lb"))
    monkeypatch.setenv("KEEPALIVE_COUNT", "3")
    policy, why = keepalive.explain_default_policy()
    assert policy == Policy.below(240).replace(count=3)
    assert "KEEPALIVE_COUNT=3" in why


def test_fork_during_a_slow_first_resolution_does_not_deadlock_the_child(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 15 item 4: a fork while another thread holds the default-resolution lock; the child resolves anew."""
    import os
    import threading
    import warnings

    from keepalive import _policy
    from tests.helpers import forked_exit_code

    inside = threading.Event()
    release = threading.Event()

    def slow_detect() -> None:
        inside.set()
        release.wait(30)

    monkeypatch.setattr(_policy, "_detect_path", slow_detect)
    worker = threading.Thread(target=keepalive.default_policy, daemon=True)
    worker.start()
    try:
        assert inside.wait(30)  # the worker holds the lock now
        with warnings.catch_warnings():  # Python 3.12+ warns about fork() with threads: that is the point here
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the child: its default_policy() must not wait for the parent's thread
            code = 1
            try:
                release.set()  # the child's copy: no thread waits on it here
                monkeypatch.setattr(_policy, "_detect_path", lambda: None)
                code = 0 if keepalive.default_policy() == BUILTIN_POLICY else 3
            finally:
                os._exit(code)
        assert forked_exit_code(pid, within=60, deadlock="the child's default_policy() deadlocked after fork") == 0
    finally:
        release.set()
        worker.join(30)


@pytest.mark.parametrize(
    ("found", "expected"),
    [
        (None, None),
        ((350.0, True, "KEEPALIVE_PATH_TIMEOUT"), 350.0),  # named: the user's word
        ((86400.0, True, "KEEPALIVE_PATH_TIMEOUT"), 86400.0),
        (
            (86400.0, False, "node"),
            None,
        ),  # the node's own, looser than the built-in covers: the policy is the yardstick
        ((900.0, False, "kube-proxy ipvs.tcpTimeout"), None),
        ((40.0, False, "node"), 40.0),  # tighter than the built-in: used
        ((2.0, False, "node"), 2.0),
    ],
)
def test_explain_path_timeout_is_the_audits_yardstick(
    monkeypatch: pytest.MonkeyPatch, found: tuple[float, bool, str] | None, expected: float | None
) -> None:
    """The path timeout the audit's verdicts use follows the same rules as the default policy."""
    from keepalive._policy import explain_path_timeout

    monkeypatch.setattr("keepalive._policy._detect_path", lambda: found)
    timeout, why = explain_path_timeout()
    assert timeout == expected
    assert why
    assert explain_path_timeout(120) == (120.0, "given")
    with pytest.raises(ValueError, match="path_timeout"):
        explain_path_timeout(0)


# -- issue 15: the value class, exact round trips, one set of words, detection time ------------------------------


def test_dataclasses_functions_see_the_four_fields_and_replace_works() -> None:
    """dataclasses.replace/asdict/astuple/fields/is_dataclass treat Policy as a dataclass of its four fields; the
    plan cache is not one of them. dataclasses.replace copies user_timeout as it is; Policy.replace re-derives."""
    import dataclasses
    import socket

    policy = Policy(idle=60, interval=10, count=5)
    with socket.socket() as sock:
        assert keepalive.apply(sock, policy).ok  # caches the compiled plan on the instance: it must stay invisible
    assert dataclasses.is_dataclass(policy)
    assert dataclasses.is_dataclass(Policy)
    assert [f.name for f in dataclasses.fields(policy)] == ["idle", "interval", "count", "user_timeout"]
    assert dataclasses.asdict(policy) == {"idle": 60, "interval": 10, "count": 5, "user_timeout": 110}
    assert dataclasses.astuple(policy) == (60, 10, 5, 110)
    assert dataclasses.replace(policy, idle=30) == Policy(idle=30, interval=10, count=5, user_timeout=110)
    assert policy.replace(idle=30) == Policy(idle=30, interval=10, count=5)  # re-derived: 80
    with pytest.raises(InvalidPolicy):
        dataclasses.replace(policy, idle=0)


def test_policy_value_behaviour_pickle_copy_match_and_immutability() -> None:
    import copy

    policy = Policy(idle=7, interval=3, count=2, user_timeout=1234.5678)
    for clone in (pickle.loads(pickle.dumps(policy)), copy.copy(policy), copy.deepcopy(policy)):
        assert clone == policy
        assert hash(clone) == hash(policy)
        assert repr(clone) == repr(policy)
    keep = Policy(user_timeout=None)
    assert pickle.loads(pickle.dumps(keep)).user_timeout is None
    match policy:
        case Policy(7, 3, 2, user_timeout):
            assert user_timeout == 1234.5678
        case _:  # pragma: no cover - the assertion below reports it
            pytest.fail("positional match on Policy failed")
    with pytest.raises(AttributeError, match="frozen"):
        policy.count = 3  # type: ignore[misc]
    with pytest.raises(AttributeError, match="frozen"):
        del policy.idle  # type: ignore[misc]
    with pytest.raises(AttributeError):
        policy.color = "red"  # type: ignore[attr-defined]
    assert policy != (7, 3, 2, 1234.5678)
    assert Policy() != Policy(user_timeout=None)
    assert Policy(user_timeout=0) != Policy(user_timeout=None)


def test_import_keepalive_does_not_import_dataclasses() -> None:
    """import keepalive stays cheap: dataclasses (with inspect, ast, dis) is imported only when asked for."""
    import subprocess
    import sys

    code = (
        "import sys, keepalive; keepalive.Policy(idle=5); keepalive.BUILTIN_POLICY.replace(idle=3);"
        "import socket; s = socket.socket(); keepalive.apply(s, keepalive.Policy(idle=9)); s.close();"
        "print(sorted(m for m in ('dataclasses', 'inspect', 'ast', 'dis') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("user_timeout", "env", "text"),
    [
        (2147483, "2147483", "2147483s"),
        (1234.5678, "1234.5678", "1234.5678s"),
        (1234567, "1234567", "1234567s"),
        (0.001, "0.001", "0.001s"),
        (2147483.647, "2147483.647", "2147483.647s"),
        (0, "0", "off"),
        (None, "keep", "keep"),
    ],
)
def test_user_timeout_text_round_trips_exactly(user_timeout: float | None, env: str, text: str) -> None:
    """to_env(), str() and repr() write user_timeout so that it reads back as exactly the same number."""
    policy = Policy(user_timeout=user_timeout)
    assert policy.to_env()["KEEPALIVE_USER_TIMEOUT"] == env
    assert str(policy).endswith(f"user_timeout={text}")
    assert Policy.from_env(policy.to_env()) == policy
    assert Policy.parse(f"60,10,5,{env}") == policy
    assert eval(repr(policy), {"Policy": Policy}) == policy


_user_timeouts = st.one_of(
    st.none(),
    st.just(0),
    st.integers(min_value=1, max_value=2147483),
    st.floats(min_value=0.001, max_value=2147483.647, allow_nan=False, allow_infinity=False),
)


@given(
    idle=st.integers(1, 32767),
    interval=st.integers(1, 32767),
    count=st.integers(1, 127),
    user_timeout=_user_timeouts,
)
@example(idle=60, interval=10, count=5, user_timeout=1234.5678)
@example(idle=60, interval=10, count=5, user_timeout=0.001)
def test_policy_round_trips_through_env_parse_and_repr(
    idle: int, interval: int, count: int, user_timeout: float | None
) -> None:
    policy = Policy(idle=idle, interval=interval, count=count, user_timeout=user_timeout)
    assert Policy.from_env(policy.to_env()) == policy
    env = policy.to_env()
    spec = ",".join(env[f"KEEPALIVE_{name}"] for name in ("IDLE", "INTERVAL", "COUNT", "USER_TIMEOUT"))
    assert Policy.parse(spec) == policy
    assert eval(repr(policy), {"Policy": Policy}) == policy


@pytest.mark.parametrize("word", ["off", "OFF", " no ", "false", "disabled", "0", "0s", "0.0"])
def test_off_words_turn_the_user_timeout_off_everywhere(word: str) -> None:
    """One meaning for "off": TCP_USER_TIMEOUT is set to 0, in the environment and in --policy alike."""
    assert Policy.from_env({"KEEPALIVE_USER_TIMEOUT": word}) == Policy(user_timeout=0)
    assert Policy.parse(f"60,10,5,{word}").user_timeout == 0
    assert Policy.parse(f"user_timeout={word}").user_timeout_ms == 0


@pytest.mark.parametrize("word", ["keep", "KEEP", "none", " None "])
def test_keep_words_leave_the_sockets_user_timeout(word: str) -> None:
    assert Policy.from_env({"KEEPALIVE_USER_TIMEOUT": word}) == Policy(user_timeout=None)
    assert Policy.parse(f"60,10,5,{word}").user_timeout is None


def test_switch_words_are_one_set() -> None:
    from keepalive import _words

    assert _words.switch("KEEPALIVE_X", None, default=True) is True
    assert _words.switch("KEEPALIVE_X", "  ", default=False) is False
    assert all(_words.switch("KEEPALIVE_X", word, default=False) for word in _words.ON_WORDS)
    assert not any(_words.switch("KEEPALIVE_X", word.upper(), default=True) for word in _words.OFF_WORDS)
    assert not (_words.ON_WORDS & _words.OFF_WORDS)
    assert not (_words.OFF_WORDS & _words.KEEP_WORDS)
    with pytest.raises(ValueError, match="KEEPALIVE_X='maybe'"):
        _words.switch("KEEPALIVE_X", "maybe", default=True)


@pytest.mark.parametrize(
    ("idle", "interval", "count", "user_timeout", "seconds"),
    [
        (1, 1, 2, None, 3),  # no user timeout: idle + interval * count
        (1, 1, 2, 0, 3),  # off: the same
        (60, 10, 5, 110, 110),  # the derived default: both mechanisms agree
        (1, 1, 2, 8, 8),  # longer than keepalive: Linux ignores TCP_KEEPCNT and waits for it (issue 15: 8.2 s)
        (60, 10, 5, 600, 600),  # a stream that may stall: 10 minutes
        (60, 10, 5, 605, 610),  # only checked at a keepalive timer: the next one after 605 s
        (60, 10, 5, 80, 80),  # shorter: aborts at the first timer after 80 s of silence
        (60, 10, 5, 75, 80),
        (60, 10, 5, 1, 70),  # at least one probe must go unanswered: idle + interval
        (10, 5, 3, 12.5, 15),
    ],
)
def test_detection_time_follows_linux_keepalive_timer(
    idle: int, interval: int, count: int, user_timeout: float | None, seconds: float
) -> None:
    """Linux's tcp_keepalive_timer: with a user timeout it aborts at the first timer (idle, idle + interval, ...)
    after user_timeout of silence with a probe out; without one after count unanswered probes."""
    policy = Policy(idle=idle, interval=interval, count=count, user_timeout=user_timeout)
    assert policy.detection_time == seconds


def test_keepalive_policy_prints_the_detection_time(capsys: pytest.CaptureFixture[str]) -> None:
    from keepalive._cli import main

    assert main(["policy", "--policy", "1,1,2,8"]) == 0
    out = capsys.readouterr().out
    assert "a silent peer is noticed after about 8 s" in out
    assert "user_timeout=8s" in out


@pytest.mark.parametrize("seconds", [2147483.0, 1234.5678, 1234567.0, 350.0, 3.001])
def test_keepalive_run_path_timeout_is_passed_on_exactly(seconds: float) -> None:
    """`keepalive run --path-timeout` hands the child the same number it was given (no :g rounding)."""
    from keepalive._install_cli import build_env

    env = build_env({}, path_timeout=seconds)
    assert float(env["KEEPALIVE_PATH_TIMEOUT"]) == seconds
    assert Policy.from_env(env) == Policy.below(seconds)


# -- mutation testing (CONTRIBUTING.md): behaviours no test pinned down before -----------------------------------


def test_whole_floats_become_ints() -> None:
    policy = Policy(idle=30.0, interval=5.0, count=3.0)  # type: ignore[arg-type]
    assert (policy.idle, policy.interval, policy.count) == (30, 5, 3)
    assert all(type(value) is int for value in (policy.idle, policy.interval, policy.count))
    assert Policy(user_timeout=2147483.0).to_env()["KEEPALIVE_USER_TIMEOUT"] == "2147483"
    assert repr(Policy.from_env({"KEEPALIVE_USER_TIMEOUT": "110"})).endswith("user_timeout=110)")


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"KEEPALIVE_COUNT": "1000"}, "KEEPALIVE_COUNT='1000': KEEPALIVE_COUNT must be in 1..127 probes, got 1000"),
        (
            {"KEEPALIVE_IDLE": "1.5"},
            "KEEPALIVE_IDLE='1.5': KEEPALIVE_IDLE must be a whole number of seconds in 1..32767, got 1.5",
        ),
        ({"KEEPALIVE_INTERVAL": "0"}, "KEEPALIVE_INTERVAL='0': KEEPALIVE_INTERVAL must be in 1..32767 seconds, got 0"),
        ({"KEEPALIVE_PATH_TIMEOUT": "soon"}, "KEEPALIVE_PATH_TIMEOUT='soon': expected a number of seconds"),
        ({"KEEPALIVE_PATH_TIMEOUT": "inf"}, "KEEPALIVE_PATH_TIMEOUT='inf': expected a finite number of seconds"),
        (
            {"KEEPALIVE_USER_TIMEOUT": "-2"},
            "KEEPALIVE_USER_TIMEOUT='-2': KEEPALIVE_USER_TIMEOUT must be in 0..2147483.647 seconds (0 = off), got -2",
        ),
        (
            {"KEEPALIVE_PATH_TIMEOUT": "350", "KEEPALIVE_IDLE": "340"},
            "KEEPALIVE_IDLE=340 + KEEPALIVE_INTERVAL=30 must stay below KEEPALIVE_PATH_TIMEOUT='350', or the path "
            "forgets idle connections before the second probe",
        ),
    ],
)
def test_from_env_error_messages_are_exact(environ: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidPolicy) as info:
        Policy.from_env(environ)
    assert str(info.value) == message


def test_from_env_path_timeout_bound_is_strict() -> None:
    """idle + interval must stay strictly below the path timeout: equal is too late."""
    with pytest.raises(InvalidPolicy):
        Policy.from_env({"KEEPALIVE_PATH_TIMEOUT": "350", "KEEPALIVE_IDLE": "320"})  # 320 + 30 == 350
    with pytest.raises(InvalidPolicy):
        Policy.from_env({"KEEPALIVE_PATH_TIMEOUT": "350", "KEEPALIVE_IDLE": "300", "KEEPALIVE_INTERVAL": "60"})
    assert Policy.from_env({"KEEPALIVE_PATH_TIMEOUT": "350", "KEEPALIVE_IDLE": "319"}) == Policy(
        idle=319, interval=30, count=5
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "policy must look like 'idle,interval,count' (e.g. '60,10,5'), got None"),
        ("   ", "policy must look like 'idle,interval,count' (e.g. '60,10,5'), got '   '"),
        ("idle=off", "policy 'idle=off': idle must be a number, got 'off'"),
        ("speed=3", "policy 'speed=3': unknown field 'speed'; expected one of idle, interval, count, user_timeout"),
    ],
)
def test_parse_error_messages_are_exact(text: str, message: str) -> None:
    with pytest.raises(InvalidPolicy) as info:
        Policy.parse(text)
    assert str(info.value) == message


def test_parse_reads_fields_after_a_user_timeout_word() -> None:
    assert Policy.parse("user_timeout=keep,idle=30") == Policy(idle=30, user_timeout=None)
    assert Policy.parse("user_timeout=off,count=2") == Policy(count=2, user_timeout=0)
