"""The public face: every name in keepalive.__all__ imports, is documented, and `import keepalive` stays light."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import keepalive


def _isort_key(name: str) -> tuple[int, str]:
    """ruff's RUF022 order: CONSTANTS, then Classes, then everything else, each alphabetical."""
    return (0 if name.isupper() else 1 if name[:1].isupper() else 2, name)


def test_all_is_sorted_and_unique() -> None:
    assert len(set(keepalive.__all__)) == len(keepalive.__all__)
    assert keepalive.__all__ == sorted(keepalive.__all__, key=_isort_key)


#: Names in a private module's ``__all__`` that the package does not re-export, and why.
INTERNAL = {
    "keepalive._async_common": {
        "ACCEPTED_INHERIT": "the async wrappers' shared platform fact",
        "PRELOAD": "what the async wrappers import before their loop runs",
        "preload": "called by each async wrapper when it is imported",
    },
    "keepalive.adapters._internals": dict.fromkeys(
        (
            "apply_to_fd",
            "apply_to_transport",
            "client_version",
            "internals_changed",
            "libpq_params",
            "tcp_level_options",
        ),
        "shared by the adapters",
    ),
    "keepalive.checker._check": {
        "ENV_MIDDLEBOX": "the variable is documented in docs/checker.md",
        "parse_path_timeout": "the checker's own parser",
        "run_check": "the checker's engine behind check() and keepalive check",
    },
    "keepalive.checker._cli": {"add_arguments": "CLI subcommand contract", "run": "CLI subcommand contract"},
    "keepalive.checker._findings": {
        "FULL_RATIO": "a threshold documented in docs/checker.md",
        "Facts": "the checker's evaluation input",
        "evaluate": "the checker's rule engine",
    },
    "keepalive.checker._model": {"Number": "a typing alias", "plain": "the model's JSON helper"},
    "keepalive.checker._runtime": {
        "detected_path_timeout": "contract with the core's default policy (CONTRIBUTING.md)",
        "reset": "for tests",
        "run_once": "contract with keepalive._runtime (CONTRIBUTING.md)",
        "wait": "for tests: wait for the background runtime check",
        "ENV_SAMPLE": "the variable is documented in docs/checker.md and docs/policy.md",
        "check_policy": "the runtime check's synchronous body (for tests and the background thread)",
        "STEPS": "the runtime check's imports, one at a time (tests/test_runtime_stall.py)",
    },
    "keepalive.lab._command": {"run": "the lab's command runner"},
    "keepalive.lab._guard": {
        "GUARD_PROTO": "the guard routes' marker, documented in docs/lab.md",
        "add_host_guards": "used by Lab",
        "remove_host_guards": "used by Lab",
        "remove_stale_host_guards": "used by cleanup_stale()",
    },
    "keepalive.lab._cli": {"add_arguments": "CLI subcommand contract", "run": "CLI subcommand contract"},
    "keepalive._audit": {
        "Verdict": "typing alias of SocketState.verdict's values, described in docs/audit.md (Verdicts); exporting it "
        "needs an entry in docs/api.md"
    },
    "keepalive._audit_cli": {"add_arguments": "CLI subcommand contract", "run": "CLI subcommand contract"},
    "keepalive._autostart": {
        "ENV_AUTO": "the variable is documented in docs/install.md",
        "PTH_NAME": "the .pth hook's file name",
        "main": "the .pth hook's entry point",
    },
    "keepalive._cli": {"main": "the console script's entry point"},
    "keepalive._enforce_cli": {"add_arguments": "CLI subcommand contract", "run": "CLI subcommand contract"},
    "keepalive._install_cli": {
        "SUPERVISOR_SWEEP_INTERVAL": "keepalive run's default sweep interval, documented in docs/install.md",
        "add_arguments": "CLI subcommand contract",
        "build_env": "keepalive run's environment",
        "hook_installed": "keepalive run's check",
        "run": "CLI subcommand contract",
    },
    "keepalive._platform": {
        "CURRENT": "exported as keepalive.PLATFORM",
        "Plan": "apply()'s compiled calls",
        "compile_plan": "for wrappers and adapters (CONTRIBUTING.md)",
        "detect": "probes a platform; tests drive other platforms through it",
    },
    "keepalive._policy": {
        "ENV_COUNT": "variable names, documented in docs/policy.md",
        "ENV_IDLE": "variable names, documented in docs/policy.md",
        "ENV_INTERVAL": "variable names, documented in docs/policy.md",
        "ENV_PATH_TIMEOUT": "variable names, documented in docs/policy.md",
        "ENV_USER_TIMEOUT": "variable names, documented in docs/policy.md",
        "resolve_default_policy": "for wrappers and adapters (never raises)",
    },
    "keepalive._policy_cli": {"add_arguments": "CLI subcommand contract", "run": "CLI subcommand contract"},
    "keepalive._runtime": {
        "ENV_CHECK": "the variable is documented in docs/logging.md",
        "check_enabled": "for wrappers and adapters",
        "reset": "for tests",
        "resolve": "for wrappers and adapters (CONTRIBUTING.md)",
    },
    "keepalive._supervisor": dict.fromkeys(
        ("FORWARDED", "descendants", "set_subreaper", "supervise"), "keepalive run's supervisor"
    ),
    "keepalive._tighten": dict.fromkeys(
        ("Tightened", "log_tightened", "tighten"), "tighten-only, shared by install(), the sweep and keepalive run"
    ),
    "keepalive._value": {"Value": "the base of the frozen value classes"},
    "keepalive._words": {
        "KEEP_WORDS": "the words, documented in docs/policy.md",
        "OFF_WORDS": "the words, documented in docs/policy.md",
        "ON_WORDS": "the words, documented in docs/policy.md",
        "is_keep": "word parsing for the core",
        "is_off": "word parsing for the core",
        "is_on": "word parsing for the core",
        "switch": "word parsing for the core",
    },
}


def _submodules() -> list[str]:
    import pkgutil

    return sorted(
        info.name for info in pkgutil.walk_packages(keepalive.__path__, "keepalive.") if ".__main__" not in info.name
    )


#: Private packages: everything below them is internal.
INTERNAL_PACKAGES = {
    "keepalive._path": "the path model shared by the core's default policy and the checker",
    "keepalive._enforce": "the BPF program's assembler, loader and program; its API is exported by keepalive",
}


def _private(module_name: str) -> bool:
    return module_name.rsplit(".", 1)[1].startswith("_")


def _below_internal_package(module_name: str) -> bool:
    return any(module_name.startswith(package + ".") or module_name == package for package in INTERNAL_PACKAGES)


@pytest.mark.parametrize(
    "module_name", [name for name in _submodules() if _private(name) and not _below_internal_package(name)]
)
def test_private_modules_public_names_are_exported_or_listed_as_internal(module_name: str) -> None:
    """A name in a private module's __all__ is public by intent: its package (keepalive, keepalive.checker,
    keepalive.lab, ...) exports that very object, or INTERNAL says why not (issue 15: keepalive.installed_policy
    was in keepalive._install.__all__ but not exported)."""
    import importlib

    module = importlib.import_module(module_name)
    package = importlib.import_module(module_name.rsplit(".", 1)[0])
    exported = getattr(package, "__all__", ())
    internal = INTERNAL.get(module_name, {})
    for name in getattr(module, "__all__", ()):
        if name in internal:
            assert name not in exported, f"{module_name}.{name} is exported: drop it from INTERNAL"
            continue
        assert name in exported, f"{module_name}.{name} is neither exported by {package.__name__} nor in INTERNAL"
        assert getattr(package, name) is getattr(module, name), name
    assert set(internal) <= set(getattr(module, "__all__", ())), f"stale INTERNAL entries for {module_name}"


@pytest.mark.parametrize(
    "module_name",
    [name for name in _submodules() if not any(part.startswith("_") for part in name.split(".")[1:])],
)
def test_public_modules_all_names_exist(module_name: str) -> None:
    """Every name a public module (keepalive.asyncio, keepalive.adapters.httpx, ...) lists in __all__ is there."""
    import importlib

    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        pytest.skip(f"{module_name}: optional dependency missing: {exc}")
    names = getattr(module, "__all__", None)
    assert names is not None, f"{module_name} has no __all__"
    missing = [name for name in names if not hasattr(module, name)]
    assert missing == [], f"{module_name}.__all__ lists missing names {missing}"


@pytest.mark.parametrize("name", sorted(keepalive.__all__))
def test_every_public_name_imports_and_is_documented(name: str) -> None:
    obj = getattr(keepalive, name)
    if name.startswith("__") or not (inspect.isclass(obj) or inspect.isfunction(obj)):
        return
    assert inspect.getdoc(obj), f"keepalive.{name} has no docstring"
    assert obj.__module__.startswith("keepalive"), obj.__module__


def test_import_keepalive_needs_only_the_standard_library() -> None:
    """No optional client or runtime is imported by `import keepalive`."""
    code = (
        "import sys, keepalive\n"
        "heavy = {'anyio','trio','httpx','requests','urllib3','aiohttp','psycopg','psycopg2','asyncpg','redis',"
        "'sqlalchemy','pymysql','aiomysql','aio_pika','pika','nats','yaml','uvloop'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_logger_has_a_null_handler() -> None:
    import logging

    assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger("keepalive").handlers)


def test_package_is_typed() -> None:
    from importlib.resources import files

    assert files("keepalive").joinpath("py.typed").is_file()
