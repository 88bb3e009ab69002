"""The public face: every name in keepalive.__all__ imports, is documented, and `import keepalive` stays light."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import keepalive


def test_all_is_sorted_and_unique() -> None:
    assert len(set(keepalive.__all__)) == len(keepalive.__all__)


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
