"""Zero-code activation: programs started with ``keepalive run`` or KEEPALIVE_AUTO=1 get keepalive on every
connection they make through the stdlib, asyncio, uvloop, trio, anyio, httpx and redis-py, with no adapter and no
mention of keepalive in their code (tests/install_child.py). Each case reads the options back from the live
socket inside the child."""

from __future__ import annotations

import json
import site
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keepalive import BUILTIN_POLICY, Policy
from keepalive._autostart import PTH_NAME
from keepalive._install_cli import build_env, hook_installed
from tests.helpers import LINUX, echo_server, environ_without_keepalive, expected_options, require_service
from tests.http_servers import OriginServer, serving

pytestmark = pytest.mark.skipif(not LINUX, reason="reads back Linux keepalive options")

ROOT = Path(__file__).resolve().parent.parent
CHILD = str(Path(__file__).resolve().parent / "install_child.py")
POLICY = Policy(idle=23, interval=6, count=4)
REDIS = ("127.0.0.1", 6379)
MARIADB = ("127.0.0.1", 3306)
POSTGRES = ("127.0.0.1", 5432)
#: redis-py 8 sets these itself before connect() (redis/_defaults.py); tighten-only keeps what is tighter.
REDIS_OWN = {"keepalive": 1, "idle": 30, "interval": 5, "count": 3}

SOCKET_CLIENTS = ["stdlib", "stdlib_connect_ex", "asyncio", "uvloop", "trio", "anyio_trio"]
HTTP_CLIENTS = ["httpx", "httpx_async"]
MORE_HTTP_CLIENTS = ["requests", "aiohttp"]
#: clients that connect from Python over the network services on loopback (the names are in install_child.py)
DATABASE_CLIENTS = ["pymysql", "asyncpg"]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without KEEPALIVE_* (the runtime check off: the children must stay quiet)."""
    env = environ_without_keepalive()
    env["KEEPALIVE_CHECK"] = "0"
    env.update(extra)
    return env


def run_child(argv: list[str], env: dict[str, str]) -> tuple[dict[str, Any], str]:
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False, cwd=ROOT)
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def child_argv(client: str, address: tuple[str, int]) -> list[str]:
    return [sys.executable, CHILD, client, address[0], str(address[1])]


def keepalive_run(*options: str) -> list[str]:
    return [sys.executable, "-m", "keepalive", "run", *options, "--"]


@pytest.fixture(scope="module", autouse=True)
def _hook_present() -> None:
    """The interpreter running the tests must have the start-up hook installed, else nothing here means much."""
    assert hook_installed(), (
        f"{PTH_NAME} is not in {site.getsitepackages()}: install the project (pip install -e .) to get the hook"
    )


@pytest.fixture(scope="module")
def echo() -> Iterator[tuple[str, int]]:
    with echo_server() as address:
        yield address


@pytest.fixture(scope="module")
def origin() -> Iterator[tuple[str, int]]:
    with serving(OriginServer()) as server:
        yield "127.0.0.1", server.port


def address_for(client: str, echo: tuple[str, int], origin: tuple[str, int]) -> tuple[str, int]:
    if client in HTTP_CLIENTS or client in MORE_HTTP_CLIENTS:
        return origin
    if client == "pymysql":
        require_service("mariadb", *MARIADB)
        return MARIADB
    if client == "asyncpg":
        require_service("postgres", *POSTGRES)
        return POSTGRES
    if client.startswith("redis"):
        require_service("redis", *REDIS)
        return REDIS
    return echo


@pytest.mark.parametrize("client", SOCKET_CLIENTS + HTTP_CLIENTS + ["redis_no_keepalive"])
def test_keepalive_run_gives_every_client_the_policy(
    client: str, echo: tuple[str, int], origin: tuple[str, int]
) -> None:
    """``keepalive run --policy 23,6,4 -- python child.py`` sets the policy on the client's live socket."""
    argv = keepalive_run("--policy", "23,6,4") + child_argv(client, address_for(client, echo, origin))
    report, stderr = run_child(argv, clean_env())
    assert report["installed"] is True
    assert report["options"] == expected_options(POLICY), stderr


@pytest.mark.parametrize(
    "client", SOCKET_CLIENTS + HTTP_CLIENTS + MORE_HTTP_CLIENTS + DATABASE_CLIENTS + ["redis_no_keepalive"]
)
def test_keepalive_auto_env_gives_every_client_the_policy(
    client: str, echo: tuple[str, int], origin: tuple[str, int]
) -> None:
    """KEEPALIVE_AUTO=1 plus KEEPALIVE_IDLE/_INTERVAL/_COUNT sets the policy on the client's live socket."""
    env = clean_env(KEEPALIVE_AUTO="1", KEEPALIVE_IDLE="23", KEEPALIVE_INTERVAL="6", KEEPALIVE_COUNT="4")
    report, stderr = run_child(child_argv(client, address_for(client, echo, origin)), env)
    assert report["installed"] is True
    assert report["options"] == expected_options(POLICY), stderr
    assert stderr == ""


@pytest.mark.parametrize("client", ["stdlib", "asyncio", "httpx", "redis_no_keepalive"])
def test_without_keepalive_auto_nothing_is_imported_or_set(
    client: str, echo: tuple[str, int], origin: tuple[str, int]
) -> None:
    """Without KEEPALIVE_AUTO the hook does not even import keepalive, and sockets keep the kernel's defaults."""
    report, stderr = run_child(child_argv(client, address_for(client, echo, origin)), clean_env())
    assert report["imported"] is False
    assert report["installed"] is False
    assert report["options"]["keepalive"] == 0
    assert stderr == ""


def test_keepalive_auto_without_a_policy_uses_the_process_default(echo: tuple[str, int]) -> None:
    """KEEPALIVE_AUTO=1 alone: the default policy (KEEPALIVE_PATH_TIMEOUT here, as a Deployment would set it)."""
    env = clean_env(KEEPALIVE_AUTO="1", KEEPALIVE_PATH_TIMEOUT="350")
    report, _ = run_child(child_argv("stdlib", echo), env)
    assert report["options"] == expected_options(Policy.below(350))


def test_keepalive_run_path_timeout_derives_the_policy(echo: tuple[str, int]) -> None:
    """``keepalive run --path-timeout 20`` gives the child Policy.below(20), replacing inherited timings."""
    env = clean_env(KEEPALIVE_IDLE="999")
    report, _ = run_child(keepalive_run("--path-timeout", "20") + child_argv("stdlib", echo), env)
    assert report["options"] == expected_options(Policy.below(20))


def test_redis_own_tighter_keepalive_survives_the_installed_policy() -> None:
    """redis-py 8 sets 30/5/3 itself before connect(): under 60/10/5 (tighten-only) it keeps its own timings and
    only gets the user timeout it lacks."""
    require_service("redis", *REDIS)
    env = clean_env(KEEPALIVE_AUTO="1", KEEPALIVE_IDLE="60", KEEPALIVE_INTERVAL="10", KEEPALIVE_COUNT="5")
    report, _ = run_child(child_argv("redis_default", REDIS), env)
    assert report["installed"] is True
    assert report["options"] == {**REDIS_OWN, "user_timeout_ms": 110_000}


def test_redis_own_keepalive_is_brought_down_by_a_tighter_policy() -> None:
    """Under 23/6/4 redis-py's 30/5/3 becomes 23/5/3: each option the smaller of the two."""
    require_service("redis", *REDIS)
    env = clean_env(KEEPALIVE_AUTO="1", KEEPALIVE_IDLE="23", KEEPALIVE_INTERVAL="6", KEEPALIVE_COUNT="4")
    report, _ = run_child(child_argv("redis_default", REDIS), env)
    options = dict(report["options"])
    options.pop("user_timeout_ms")
    assert options == {"keepalive": 1, "idle": 23, "interval": 5, "count": 3}


def test_broken_policy_setting_logs_one_error_and_the_program_runs(echo: tuple[str, int]) -> None:
    """A bad KEEPALIVE_IDLE: one clear line on stderr, the program runs, with the built-in policy."""
    env = clean_env(KEEPALIVE_AUTO="1", KEEPALIVE_IDLE="sixty")
    report, stderr = run_child(child_argv("stdlib", echo), env)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("keepalive: error: KEEPALIVE_IDLE='sixty'")
    assert "built-in policy" in lines[0]
    assert report["options"] == expected_options(BUILTIN_POLICY)


def test_unknown_keepalive_auto_value_logs_one_error_and_installs_nothing(echo: tuple[str, int]) -> None:
    """KEEPALIVE_AUTO=maybe: one clear line on stderr, the program runs without keepalive."""
    report, stderr = run_child(child_argv("stdlib", echo), clean_env(KEEPALIVE_AUTO="maybe"))
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "KEEPALIVE_AUTO='maybe'" in lines[0]
    assert report["installed"] is False
    assert report["options"]["keepalive"] == 0


@pytest.mark.parametrize("value", ["0", "off", "false", ""])
def test_keepalive_auto_off_values_install_nothing(value: str, echo: tuple[str, int]) -> None:
    """KEEPALIVE_AUTO=0/off/false/empty: nothing installed, nothing printed."""
    report, stderr = run_child(child_argv("stdlib", echo), clean_env(KEEPALIVE_AUTO=value))
    assert report["installed"] is False
    assert report["options"]["keepalive"] == 0
    assert stderr == ""


def test_keepalive_run_reaches_grandchild_python_processes(echo: tuple[str, int]) -> None:
    """The environment is inherited: a Python program started by the command is covered too."""
    inner = " ".join(child_argv("stdlib", echo))
    report, _ = run_child([*keepalive_run("--policy", "23,6,4"), "sh", "-c", f"exec {inner}"], clean_env())
    assert report["options"] == expected_options(POLICY)


def test_keepalive_run_passes_the_exit_status_on() -> None:
    """The command's exit status is keepalive run's exit status."""
    proc = subprocess.run(
        [*keepalive_run(), sys.executable, "-c", "raise SystemExit(7)"], env=clean_env(), timeout=60, check=False
    )
    assert proc.returncode == 7


def test_keepalive_run_reports_a_missing_command() -> None:
    """An unknown command: exit 127 and a message naming it."""
    proc = subprocess.run(
        [*keepalive_run(), "no-such-command-keepalive"],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 127
    assert "no-such-command-keepalive" in proc.stderr


@pytest.mark.parametrize("argv", [["run"], ["run", "--"], ["run", "--policy", "0,1,1", "--", "true"]])
def test_keepalive_run_usage_errors_exit_2(argv: list[str]) -> None:
    """No command, or an invalid policy: exit 2 with a message, nothing run."""
    proc = subprocess.run(
        [sys.executable, "-m", "keepalive", *argv],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "keepalive run: error:" in proc.stderr


def test_build_env_replaces_inherited_timings() -> None:
    """An explicit --policy replaces every inherited KEEPALIVE_* timing and sets KEEPALIVE_AUTO=1."""
    env = build_env({"KEEPALIVE_PATH_TIMEOUT": "10", "KEEPALIVE_IDLE": "5", "PATH": "/bin"}, policy=POLICY)
    assert env == {"PATH": "/bin", "KEEPALIVE_AUTO": "1", **POLICY.to_env()}
    assert Policy.from_env(env) == POLICY


def test_build_env_without_policy_keeps_inherited_timings() -> None:
    """Without a policy option the program's own KEEPALIVE_* settings stand."""
    env = build_env({"KEEPALIVE_IDLE": "5"})
    assert env == {"KEEPALIVE_IDLE": "5", "KEEPALIVE_AUTO": "1"}


def test_pth_line_is_cheap_and_conditional() -> None:
    """The shipped .pth holds one import line that only imports keepalive when KEEPALIVE_AUTO is set."""
    text = (ROOT / PTH_NAME).read_text()
    assert text.count("\n") == 1
    assert text.startswith("import os;")
    assert 'os.environ.get("KEEPALIVE_AUTO") and __import__("keepalive._autostart")' in text


def test_the_wheel_ships_the_hook_at_the_root_of_site_packages(tmp_path: Path) -> None:
    """The built wheel holds tcp_keepalive_auto.pth at its root (purelib = site-packages), same bytes as the repo's."""
    import zipfile

    from hatchling.builders.wheel import WheelBuilder

    wheel = next(WheelBuilder(str(ROOT)).build(directory=str(tmp_path), versions=["standard"]))
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read(PTH_NAME) == (ROOT / PTH_NAME).read_bytes()
        record = archive.read(next(n for n in archive.namelist() if n.endswith(".dist-info/RECORD"))).decode()
    assert f"\n{PTH_NAME}," in f"\n{record}"  # recorded, so pip uninstall removes it
