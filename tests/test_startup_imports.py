"""What ``import keepalive`` and the KEEPALIVE_AUTO start-up hook load (issue 18): only what the first connection
needs, never the modules that make start-up slow (typing, threading, dataclasses, inspect, logging, the checker).

Each check runs a fresh interpreter and compares its ``sys.modules`` with a baseline ``python -c pass`` in the same
environment (site and the venv import some modules before keepalive runs). The times themselves are measured by
``python -m benchmarks --only startup``, never here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from keepalive import _autostart, _policy
from tests.helpers import environ_without_keepalive

ROOT = Path(__file__).resolve().parent.parent

#: Modules whose import costs milliseconds and that start-up must not need.
SLOW = ("typing", "threading", "dataclasses", "inspect", "logging", "importlib.machinery", "re", "ctypes")
#: keepalive's own heavy parts: the checker, the audit engine, the path model, the runtime check.
HEAVY_OWN = ("keepalive.checker", "keepalive._audit", "keepalive._path", "keepalive._runtime", "keepalive._tighten")

_PRINT = "import sys, json; print(json.dumps(sorted(sys.modules)))"


def _env(**extra: str) -> dict[str, str]:
    env = environ_without_keepalive()
    env["KEEPALIVE_CHECK"] = "0"
    env.update(extra)
    return env


def _modules(code: str, env: dict[str, str]) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-c", f"{code}\n{_PRINT}"], env=env, capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert proc.stderr == "", proc.stderr
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


def _loaded_beyond_baseline(code: str, **extra: str) -> set[str]:
    baseline = _modules("pass", _env())
    return _modules(code, _env(**extra)) - baseline


def _slow_or_heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m in SLOW or any(m == h or m.startswith(h + ".") for h in HEAVY_OWN))


def test_import_keepalive_loads_nothing_slow() -> None:
    """``import keepalive`` loads the package and none of typing/threading/dataclasses/inspect/logging (every
    public name is loaded on first use)."""
    loaded = _loaded_beyond_baseline("import keepalive")
    assert "keepalive" in loaded
    assert _slow_or_heavy(loaded) == []
    assert not {"keepalive._socket", "keepalive._platform", "keepalive._install"} & loaded


def test_first_use_of_a_public_name_loads_its_module_and_still_nothing_slow() -> None:
    """``keepalive.apply`` / ``keepalive.Policy`` load the core on first use; the core itself stays cheap."""
    loaded = _loaded_beyond_baseline("import keepalive; keepalive.apply; keepalive.Policy; keepalive.install")
    assert {"keepalive._socket", "keepalive._platform", "keepalive._policy", "keepalive._install"} <= loaded
    assert _slow_or_heavy(loaded) == []


def test_the_keepalive_auto_hook_installs_and_loads_nothing_slow() -> None:
    """KEEPALIVE_AUTO=1: the hook installs (so the check below is not vacuous) and loads none of the slow modules,
    nor keepalive._policy when no policy variable is set."""
    code = "import keepalive; assert keepalive.is_installed(), 'the KEEPALIVE_AUTO hook did not install'"
    baseline = _modules("pass", _env())
    loaded = _modules(code, _env(KEEPALIVE_AUTO="1")) - baseline
    assert "keepalive._autostart" in loaded
    assert _slow_or_heavy(loaded) == []
    assert "keepalive._policy" not in loaded


def test_the_keepalive_auto_hook_with_a_policy_variable_checks_it_and_loads_nothing_slow() -> None:
    """With a policy variable set the hook validates it at start-up (loading keepalive._policy), still cheaply."""
    loaded = _loaded_beyond_baseline(
        "import keepalive; assert keepalive.is_installed()", KEEPALIVE_AUTO="yes", KEEPALIVE_IDLE="30"
    )
    assert {"keepalive._autostart", "keepalive._policy"} <= loaded
    assert _slow_or_heavy(loaded) == []


def test_the_hook_knows_every_variable_policy_from_env_reads() -> None:
    """The hook skips keepalive._policy when none of these is set: the list must be Policy.from_env()'s own."""
    assert _autostart.POLICY_VARIABLES == _policy._ENV_VARS


@pytest.mark.parametrize("value", ["enabled", " ON ", "True"])
def test_keepalive_auto_takes_every_on_word_of_keepalive_words(value: str) -> None:
    """KEEPALIVE_AUTO uses keepalive._words' one set of on/off words (``enabled`` included)."""
    assert _autostart.main({"KEEPALIVE_AUTO": value, "KEEPALIVE_SWEEP": "0"}) is True
    import keepalive

    try:
        assert keepalive.is_installed()
    finally:
        keepalive.uninstall()


@pytest.mark.parametrize("value", ["disabled", "0", "", "  "])
def test_keepalive_auto_off_words_do_nothing(value: str) -> None:
    assert _autostart.main({"KEEPALIVE_AUTO": value}) is False


def test_the_sweep_threads_stop_signal_and_handle_work_without_threading() -> None:
    """The sweep thread's _thread-based stop signal and handle behave like threading.Event / Thread for it: wait()
    times out until set() (then returns at once, every time), a second set() is harmless, and join() returns once
    the thread has finished (is_alive() turns False)."""
    from keepalive._install import _DaemonThread, _Stop

    stop = _Stop()
    assert stop.wait(0.01) is False
    rounds: list[int] = []

    def loop(signal: _Stop) -> None:
        while not signal.wait(0.01):
            rounds.append(1)

    thread = _DaemonThread(loop, stop)
    thread.start()
    assert thread.is_alive()
    stop.set()
    stop.set()
    thread.join(10)
    assert not thread.is_alive()
    assert stop.wait(0) is True
    assert stop.wait(0) is True
