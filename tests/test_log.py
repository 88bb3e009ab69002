"""keepalive's loggers: named ``keepalive.<area>``, and ``logging`` is not imported until something else needs it.

pytest has imported ``logging`` long before these tests run, so the stand-in is exercised in fresh interpreters.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.helpers import environ_without_keepalive

ROOT = Path(__file__).resolve().parent.parent


def _fresh(code: str, **env: str) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter (no KEEPALIVE_* variables but ``env``); it prints one JSON object."""
    environ = environ_without_keepalive(**env)
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
    result: dict[str, object] = json.loads(proc.stdout)
    return result


def test_get_logger_returns_the_real_child_logger_once_logging_is_loaded() -> None:
    from keepalive._log import get_logger

    log = get_logger("socket")
    assert log is logging.getLogger("keepalive.socket")
    assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger("keepalive").handlers)


def test_import_keepalive_does_not_import_logging() -> None:
    out = _fresh("""
        import json, sys
        import keepalive
        print(json.dumps({"logging": "logging" in sys.modules}))
    """)
    assert out == {"logging": False}


def test_keepalive_auto_start_up_does_not_import_logging() -> None:
    """The start-up hook installs process-wide keepalive (and logs at debug level) without importing logging."""
    out = _fresh(
        """
        import json, sys
        import keepalive
        print(json.dumps({"logging": "logging" in sys.modules, "installed": keepalive.is_installed()}))
        """,
        KEEPALIVE_AUTO="1",
    )
    assert out == {"logging": False, "installed": True}


def test_calls_before_logging_is_imported_are_dropped_without_importing_it() -> None:
    out = _fresh("""
        import json, sys
        from keepalive._log import get_logger
        log = get_logger("probe")
        log.debug("d %s", 1)
        log.info("i")
        log.warning("w")
        log.error("e", extra={"x": 1})
        log.log(40, "l")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("x")
        print(json.dumps({"logging": "logging" in sys.modules, "repr": repr(log)}))
    """)
    assert out == {"logging": False, "repr": "<keepalive logger keepalive.probe (logging not imported yet)>"}


def test_stand_in_becomes_the_real_logger_after_logging_is_configured() -> None:
    """Records reach the application's handlers with the caller's file, function and line, not the stand-in's;
    the package logger gets its NullHandler on first use; attributes are the real logger's."""
    out = _fresh("""
        import json, sys
        from keepalive._log import get_logger
        log = get_logger("probe")
        import logging
        records = []
        class Keep(logging.Handler):
            def emit(self, record):
                records.append([record.levelname, record.getMessage(), record.funcName,
                                record.filename, record.lineno, record.exc_info is not None])
        logging.getLogger().addHandler(Keep())
        logging.getLogger().setLevel(logging.DEBUG)
        def caller():
            log.debug("first %s", 1)   # through the stand-in: resolves the real logger
            log.warning("second")      # the real logger's method, copied onto the stand-in
            try:
                raise ValueError("boom")
            except ValueError:
                log.exception("third")
            log.log(logging.INFO, "fourth")
        caller()
        handlers = [type(h).__name__ for h in logging.getLogger("keepalive").handlers]
        print(json.dumps({"records": records, "name": log.name, "level": log.getEffectiveLevel(),
                          "handlers": handlers}))
    """)
    records = out["records"]
    assert isinstance(records, list)
    assert [r[:2] for r in records] == [["DEBUG", "first 1"], ["WARNING", "second"], ["ERROR", "third"],
                                        ["INFO", "fourth"]]  # fmt: skip
    assert {(r[2], r[3]) for r in records} == {("caller", "<string>")}
    assert [r[5] for r in records] == [False, False, True, False]
    assert out["name"] == "keepalive.probe"
    assert out["level"] == logging.DEBUG
    assert out["handlers"] == ["NullHandler"]


def test_null_handler_is_attached_once() -> None:
    out = _fresh("""
        import json, logging
        import keepalive
        from keepalive._log import attach_null_handler, get_logger
        attach_null_handler()
        get_logger("a").debug("x")
        print(json.dumps({"handlers": [type(h).__name__ for h in logging.getLogger("keepalive").handlers]}))
    """)
    assert out == {"handlers": ["NullHandler"]}
