"""The database, cache and broker adapters import their client at the top and name the extra when it is missing."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys

import pytest

CASES = [
    ("psycopg", ["psycopg", "psycopg2"], "tcp-keepalive[psycopg]"),
    ("psycopg2", ["psycopg2"], "tcp-keepalive[psycopg2]"),
    ("asyncpg", ["asyncpg"], "tcp-keepalive[asyncpg]"),
    ("redis", ["redis"], "tcp-keepalive[redis]"),
    ("sqlalchemy", ["sqlalchemy"], "tcp-keepalive[sqlalchemy]"),
    ("pymysql", ["pymysql"], "tcp-keepalive[pymysql]"),
    ("aiomysql", ["aiomysql"], "tcp-keepalive[aiomysql]"),
    ("aio_pika", ["aio_pika"], "tcp-keepalive[aio-pika]"),
    ("pika", ["pika"], "tcp-keepalive[pika]"),
    ("nats", ["nats"], "tcp-keepalive[nats]"),
]


@pytest.mark.parametrize(("adapter", "clients", "extra"), CASES, ids=[case[0] for case in CASES])
def test_a_missing_client_raises_importerror_naming_the_extra(
    adapter: str, clients: list[str], extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for client in clients:
        monkeypatch.setitem(sys.modules, client, None)  # makes `import client` raise ImportError
    monkeypatch.delitem(sys.modules, f"keepalive.adapters.{adapter}", raising=False)
    with pytest.raises(ImportError, match=re.escape(extra)):
        importlib.import_module(f"keepalive.adapters.{adapter}")


def test_import_keepalive_does_not_import_the_clients() -> None:
    """``import keepalive`` alone never pulls in an optional client (checked in a fresh interpreter)."""
    code = (
        "import sys, keepalive, keepalive.adapters; "
        "clients = ['psycopg', 'psycopg2', 'asyncpg', 'redis', 'sqlalchemy', 'pymysql', 'aiomysql', "
        "'aio_pika', 'aiormq', 'pika', 'nats']; "
        "loaded = [c for c in clients if c in sys.modules]; "
        "assert not loaded, loaded"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
